"""The engine and the unit of work: one connection (and, for writes, one transaction) per RPC."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from flowservice_server.db import dialect
from flowservice_server.db.migrate import check_prefect_schema, upgrade_to_head

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from flowservice_server.config import DatabaseSettings


def create_engine(settings: DatabaseSettings) -> AsyncEngine:
    """An engine with the configured pool and the dialect's connection setup."""
    backend = sa.make_url(settings.url).get_backend_name()
    engine = create_async_engine(
        settings.url,
        pool_size=settings.pool_size,
        max_overflow=settings.max_overflow,
        pool_timeout=settings.pool_timeout,
        pool_recycle=settings.pool_recycle or -1,
        **dialect.engine_arguments(
            backend, connect_timeout=settings.connect_timeout, pre_ping=settings.pool_pre_ping
        ),
    )
    hook = dialect.on_connect(backend, busy_timeout=settings.busy_timeout)
    if hook is not None:
        sa.event.listen(engine.sync_engine, "connect", hook)
    return engine


class Database:
    """Hands out connections for reads and transactions for writes.

    Model functions receive the connection and never commit: the unit of work
    here commits a write when the block ends and rolls it back on error.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        # SQLite admits one writer at a time: queue this process's writers on
        # a lock rather than have them sleep in SQLite's busy handler.
        self._write_lock = asyncio.Lock() if dialect.serializes_writes(engine.dialect) else None

    @classmethod
    async def open(cls, settings: DatabaseSettings, *, migrate: bool) -> Database:
        """Connect; migrate the managed schema when `migrate` is set, else check Prefect's."""
        database = cls(create_engine(settings))
        try:
            async with database.engine.connect() as connection:
                if migrate:
                    await connection.run_sync(upgrade_to_head)
                    await connection.commit()
                else:
                    await connection.run_sync(check_prefect_schema)
            await database.ping()
        except BaseException:
            await database.close()
            raise
        return database

    async def ping(self) -> None:
        async with self.engine.connect() as connection:
            await connection.execute(sa.text("SELECT 1"))

    @contextlib.asynccontextmanager
    async def read(self, time_left: float | None = None) -> AsyncIterator[AsyncConnection]:
        """A connection for reads; `time_left` (seconds, the call's deadline) bounds its work."""
        async with (
            _deadline(time_left),
            self.engine.connect() as connection,
            _bounded(connection, time_left, write=False),
        ):
            yield connection

    @contextlib.asynccontextmanager
    async def write(self, time_left: float | None = None) -> AsyncIterator[AsyncConnection]:
        """One transaction, committed when the block ends; never once the deadline has passed."""
        async with (
            _deadline(time_left),
            self._writer_turn(),
            self.engine.begin() as connection,
            _bounded(connection, time_left, write=True),
        ):
            yield connection

    @contextlib.asynccontextmanager
    async def _writer_turn(self) -> AsyncIterator[None]:
        if self._write_lock is None:
            yield
            return
        async with self._write_lock:
            yield

    async def close(self) -> None:
        await self.engine.dispose()


def _deadline(time_left: float | None) -> contextlib.AbstractAsyncContextManager[object]:
    """Cancel the work when `time_left` seconds have passed (TimeoutError: DEADLINE_EXCEEDED)."""
    if time_left is None:
        return contextlib.nullcontext()
    return asyncio.timeout(max(time_left, 0.0))


@contextlib.asynccontextmanager
async def _bounded(
    connection: AsyncConnection, time_left: float | None, *, write: bool
) -> AsyncIterator[None]:
    """Bound the database's own waiting by the deadline; stop the statement on cancellation."""
    if time_left is None:
        await dialect.unbound(connection, write=write)
    else:
        await dialect.bound_by_deadline(connection, time_left, write=write)
    try:
        yield
    except asyncio.CancelledError:  # the deadline passed, or the client cancelled
        await dialect.interrupt(connection)
        raise
