"""The engine and the unit of work: one connection (and, for writes, one transaction) per RPC.

A unit of work runs one model function with a connection and ends within the
call's deadline. What it must never do is keep working, or keep a lock, after
its call is gone:

* PostgreSQL: the transaction has a statement timeout as long as the time
  left, and a cancelled call cancels the query (asyncpg does that); the
  server rolls back whatever the dropped connection had begun.
* SQLite: a statement cut off mid-flight would keep running in the driver's
  thread and could even take the write lock after the call has ended. So the
  unit of work is never cut off: at the deadline, or when the call is
  cancelled, its statement is interrupted, and the call ends only once the
  transaction has been rolled back. Lock waits are bounded by a busy timeout
  no longer than the time left.

In both, a transaction is never committed once the deadline has passed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, TypeVar

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from flowservice_server.db import dialect
from flowservice_server.db.migrate import check_prefect_schema, upgrade_to_head

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from flowservice_server.config import DatabaseSettings

T = TypeVar("T")


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
    """Runs units of work: a model function with a connection, bounded by the call's deadline.

    Model functions receive the connection and never commit: a write's unit of
    work commits when the function returns and rolls back when it raises.
    """

    def __init__(self, engine: AsyncEngine, *, busy_timeout: float = 10.0) -> None:
        self.engine = engine
        self._busy_timeout = busy_timeout
        # SQLite admits one writer at a time: queue this process's writers on
        # a lock rather than have them sleep in SQLite's busy handler.
        self._write_lock = asyncio.Lock() if dialect.serializes_writes(engine.dialect) else None
        self._finish_on_cancel = dialect.finishes_work_on_cancel(engine.dialect)

    @classmethod
    async def open(cls, settings: DatabaseSettings, *, migrate: bool) -> Database:
        """Connect; migrate the managed schema when `migrate` is set, else check Prefect's."""
        database = cls(create_engine(settings), busy_timeout=settings.busy_timeout)
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

    async def read(
        self, work: Callable[[AsyncConnection], Awaitable[T]], time_left: float | None = None
    ) -> T:
        """Run `work` with a connection; `time_left` (the call's deadline, seconds) bounds it."""
        return await self._run(work, time_left, write=False)

    async def write(
        self, work: Callable[[AsyncConnection], Awaitable[T]], time_left: float | None = None
    ) -> T:
        """Run `work` in one transaction: committed if it returns in time, else rolled back."""
        return await self._run(work, time_left, write=True)

    async def close(self) -> None:
        await self.engine.dispose()

    async def _run(
        self,
        work: Callable[[AsyncConnection], Awaitable[T]],
        time_left: float | None,
        *,
        write: bool,
    ) -> T:
        deadline = None if time_left is None else time.monotonic() + max(time_left, 0.0)
        if not self._finish_on_cancel:
            async with _deadline(time_left):
                return await self._unit(work, deadline, write=write)
        # SQLite: wait for another process's write lock in short slices, so that
        # a cancelled call is noticed within one slice (an interrupt cannot end
        # SQLite's own busy wait), for at most the busy timeout or the deadline.
        give_up = time.monotonic() + self._busy_timeout
        if deadline is not None:
            give_up = min(give_up, deadline)
        while True:
            unit = _Unit()
            job = asyncio.ensure_future(self._unit(work, deadline, write=write, unit=unit))
            try:
                return await asyncio.shield(job)
            except asyncio.CancelledError:  # the call was cancelled: stop; never commit
                unit.cancelled = True
                await unit.interrupt()
                with contextlib.suppress(BaseException):
                    await job
                raise
            except sa_exc.OperationalError as error:
                if not (write and dialect.is_busy(error) and time.monotonic() < give_up):
                    raise

    async def _unit(
        self,
        work: Callable[[AsyncConnection], Awaitable[T]],
        deadline: float | None,
        *,
        write: bool,
        unit: _Unit | None = None,
    ) -> T:
        async with self._transaction(write, deadline) as connection:
            if unit is not None:
                await unit.attach(connection, deadline)
            try:
                result = await work(connection)
            except sa_exc.DBAPIError as error:
                if _expired(deadline):  # interrupted at the deadline
                    raise TimeoutError from error
                raise
            finally:
                if unit is not None:
                    unit.detach()
            if _expired(deadline) or (unit is not None and unit.cancelled):
                raise TimeoutError  # too late: roll back rather than commit
            return result

    @contextlib.asynccontextmanager
    async def _transaction(
        self, write: bool, deadline: float | None
    ) -> AsyncIterator[AsyncConnection]:
        if not write:
            async with self.engine.connect() as connection:
                await dialect.bound_by_deadline(connection, _remaining(deadline), write=False)
                yield connection
            return
        async with self._writer_turn(_remaining(deadline)), self.engine.begin() as connection:
            await dialect.bound_by_deadline(connection, _remaining(deadline), write=True)
            yield connection

    @contextlib.asynccontextmanager
    async def _writer_turn(self, time_left: float | None) -> AsyncIterator[None]:
        if self._write_lock is None:
            yield
            return
        async with _deadline(time_left):  # waiting for the lock is not database work
            await self._write_lock.acquire()
        try:
            yield
        finally:
            self._write_lock.release()


class _Unit:
    """The handle that stops a unit of work's running statement (SQLite)."""

    def __init__(self) -> None:
        self._interrupt: Callable[[], Awaitable[None]] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.cancelled = False

    async def attach(self, connection: AsyncConnection, deadline: float | None) -> None:
        self._interrupt = await dialect.interrupter(connection)
        if deadline is not None and self._interrupt is not None:
            loop = asyncio.get_running_loop()
            delay = max(deadline - time.monotonic(), 0.0)
            self._timer = loop.call_later(delay, lambda: asyncio.ensure_future(self.interrupt()))

    def detach(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._interrupt = None

    async def interrupt(self) -> None:
        if self._interrupt is not None:
            with contextlib.suppress(Exception):  # the statement may be over already
                await self._interrupt()


def _deadline(time_left: float | None) -> contextlib.AbstractAsyncContextManager[object]:
    """Cancel the work when `time_left` seconds have passed (TimeoutError: DEADLINE_EXCEEDED)."""
    if time_left is None:
        return contextlib.nullcontext()
    return asyncio.timeout(max(time_left, 0.0))


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(deadline - time.monotonic(), 0.0)


def _expired(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() >= deadline
