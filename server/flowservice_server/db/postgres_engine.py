"""PostgreSQL units of work: asyncpg on the event loop, the model function through `run_sync`.

The transaction has a statement timeout as long as the time left, and a
cancelled call cancels its query (asyncpg does that); the server rolls back
whatever a dropped connection had begun.

A short read (`engine.short_read`: one row by key, the count of all flows)
runs on a pool of its own whose connections are in autocommit: the
statement alone, without BEGIN, SET LOCAL statement_timeout and ROLLBACK
around it (and the pool's pre-ping is one round trip instead of three). Its
deadline is held by cancelling the call, which cancels the query; it takes no
locks that a timeout would have to bound. A short read marked with its
statement skips SQLAlchemy altogether: asyncpg runs it on a pool of its own
(`db.postgres_direct`, `--database-direct-reads`). With
`--database-lean-writes`, a write begins its own transaction on an engine
without pre-ping instead (`db.postgres_writes`).

A stream (`Database.stream`) reads through a server-side cursor in one
REPEATABLE READ, READ ONLY transaction: one snapshot for all its batches,
each fetched when the caller asks for it.

Everything a unit of work sets lasts only as long as its transaction (`SET
LOCAL`, `SET TRANSACTION`, transaction-scoped advisory locks), so the same
code runs through a pooler in transaction mode, such as PgBouncer, which
hands the server connection to another client after each transaction. Only
prepared statements would outlive one: asyncpg and SQLAlchemy's dialect keep
named ones per connection, which on a pooler land on server connections that
never prepared them, or collide with another client's of the same name.
Behind a pooler (`--database-pooler`) both caches are off and every statement
is prepared unnamed inside its own transaction, on the server connection
that runs it.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, TypeVar, cast

from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from flowservice_server.db.engine import (
    Database,
    cancel_after,
    deadline_after,
    direct_read_plan,
    expired,
    remaining,
    short_read_direct,
    short_read_shape,
    to_completion,
)
from flowservice_server.db.postgres_direct import NOT_DIRECT, DirectReads
from flowservice_server.db.postgres_writes import LeanWrites

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Callable, Sequence

    import sqlalchemy as sa
    from sqlalchemy.engine import Dialect
    from sqlalchemy.pool import Pool

    from flowservice_server.config import DatabaseSettings

T = TypeVar("T")


def statement_timeout(connection: sa.Connection, seconds: float | None) -> None:
    """PostgreSQL: the transaction's statements (and lock waits) end at the call's deadline."""
    if seconds is not None:
        milliseconds = max(1, int(seconds * 1000))
        connection.exec_driver_sql(f"SET LOCAL statement_timeout = {milliseconds}")


def repeatable_read(connection: sa.Connection) -> None:
    """PostgreSQL: this (read) transaction's statements all see one snapshot.

    Must come before the transaction's first query; REPEATABLE READ takes its
    snapshot at that query and keeps it to the end. READ ONLY: a read never writes.
    """
    connection.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")


def connect_args(settings: DatabaseSettings) -> dict[str, Any]:
    """asyncpg's connect arguments; behind a pooler, no statement outlives its transaction."""
    arguments: dict[str, Any] = {"timeout": settings.connect_timeout}
    if settings.behind_pooler:
        arguments["statement_cache_size"] = 0  # asyncpg's own named statements
        arguments["prepared_statement_cache_size"] = 0  # SQLAlchemy's, on top of asyncpg
    return arguments


class PostgresDatabase(Database):
    def __init__(self, settings: DatabaseSettings) -> None:
        self.engine = create_async_engine(
            settings.url,
            pool_size=settings.pool_size,
            max_overflow=settings.max_overflow,
            pool_timeout=settings.pool_timeout,
            pool_recycle=settings.pool_recycle or -1,
            pool_pre_ping=settings.pool_pre_ping,
            connect_args=connect_args(settings),
        )
        self._short_reads = (
            None
            if not settings.inline_reads
            else create_async_engine(
                settings.url,
                isolation_level="AUTOCOMMIT",
                pool_size=settings.pool_size,
                max_overflow=0,  # short: waiting for a connection beats opening more
                pool_timeout=settings.pool_timeout,
                pool_recycle=settings.pool_recycle or -1,
                pool_pre_ping=settings.pool_pre_ping,
                connect_args=connect_args(settings),
            )
        )
        # The name's read is worth reading first only when it is a short read.
        self.read_before_create = settings.inline_reads
        self._direct = (
            DirectReads(settings, self.engine.dialect)
            if settings.inline_reads and settings.direct_reads
            else None
        )

        #: ReadFlows pages of one statement on the direct path too (`--database-inline-pages`).
        self._direct_pages = self._direct is not None and settings.inline_pages
        self._writes_engine = (
            None
            if not settings.lean_writes
            else create_async_engine(
                settings.url,
                isolation_level="AUTOCOMMIT",  # the unit makes its own transaction
                pool_size=settings.pool_size,
                max_overflow=settings.max_overflow,
                pool_timeout=settings.pool_timeout,
                pool_recycle=settings.pool_recycle or -1,
                pool_pre_ping=False,  # BEGIN finds a dead connection before anything is sent
                connect_args=connect_args(settings),
            )
        )
        self._lean = None if self._writes_engine is None else LeanWrites(self._writes_engine)

    @property
    def lean_writes(self) -> LeanWrites | None:
        """Writes in three round trips (`db.postgres_writes`), when that is on."""
        return self._lean

    @property
    def direct_reads(self) -> DirectReads | None:
        """The asyncpg path of short reads marked with their statement, when it is on."""
        return self._direct

    @property
    def dialect(self) -> Dialect:
        return self.engine.dialect

    @property
    def pool(self) -> Pool:
        return self.engine.pool

    async def maintain(self, work: Callable[[sa.Connection], None]) -> None:
        async with self.engine.connect() as connection:
            await connection.run_sync(work)
            await connection.commit()

    async def close(self) -> None:
        if self._direct is not None:
            await self._direct.close()
        if self._writes_engine is not None:
            await self._writes_engine.dispose()
        if self._short_reads is not None:
            await self._short_reads.dispose()
        await self.engine.dispose()

    async def run(
        self,
        work: Callable[[sa.Connection], T],
        time_left: float | None,
        *,
        write: bool,
        snapshot: bool = False,
    ) -> T:
        short_path = self._short_reads is not None and not write and not snapshot
        direct = short_read_direct(work) if short_path and self._direct is not None else None
        if direct is not None:
            assert self._direct is not None
            async with cancel_after(time_left):
                return cast("T", await self._direct.read(*direct))
        plan = direct_read_plan(work) if short_path and self._direct_pages else None
        if plan is not None:
            assert self._direct is not None
            async with cancel_after(time_left):
                answer = await self._direct.read_plan(plan)
            if answer is not NOT_DIRECT:
                return cast("T", answer)
        if short_path and short_read_shape(work) is not None:
            assert self._short_reads is not None
            async with cancel_after(time_left), self._short_reads.connect() as connection:
                return await connection.run_sync(work)
        if write and self._lean is not None:
            return await self._lean.write(work, time_left)
        deadline = deadline_after(time_left)

        def unit(connection: sa.Connection) -> T:
            if snapshot and not write:
                repeatable_read(connection)
            statement_timeout(connection, remaining(deadline))
            result = work(connection)
            if write and expired(deadline):
                raise TimeoutError  # too late: roll back rather than commit
            return result

        async with cancel_after(time_left):
            if write:
                async with self.engine.begin() as connection:
                    return await connection.run_sync(unit)
            async with self.engine.connect() as connection:
                return await connection.run_sync(unit)

    async def stream_batches(
        self, query: sa.Select[Any], batch_size: int, deadline: float | None
    ) -> AsyncGenerator[Sequence[sa.Row[Any]], None]:
        """A server-side cursor, fetched a batch at a time; see `Database.stream`.

        `yield_per` makes SQLAlchemy buffer at most one batch; between batches
        the session is idle in its transaction, holding its snapshot and no
        running query. A cancellation during a fetch cancels the query
        (asyncpg does that); whatever ends the stream, the transaction is
        rolled back and the connection returned, or dropped when it cannot be.
        """
        async with cancel_after(remaining(deadline)):
            connection = await self.engine.connect()
        try:
            await connection.execution_options(
                isolation_level="REPEATABLE READ", postgresql_readonly=True
            )
            await connection.begin()
            async with cancel_after(remaining(deadline)):
                await connection.run_sync(statement_timeout, remaining(deadline))
                result = await connection.stream(query, execution_options={"yield_per": batch_size})
            while True:
                if expired(deadline):  # the caller took its time with the last batch
                    raise TimeoutError
                async with cancel_after(remaining(deadline)):
                    rows = await result.fetchmany(batch_size)
                if not rows:
                    return
                yield rows
        finally:
            await _release(connection)


async def _release(connection: AsyncConnection) -> None:
    """Roll back and return the connection; if it cannot roll back, drop it.

    Shielded, so that a second cancellation cannot leave the connection
    half-released; PostgreSQL rolls back a dropped connection's transaction.
    """

    async def release() -> None:
        try:
            await connection.close()
        except Exception:  # noqa: BLE001  # a connection that cannot roll back is dropped
            with contextlib.suppress(Exception):
                await connection.invalidate()

    await to_completion(release())
