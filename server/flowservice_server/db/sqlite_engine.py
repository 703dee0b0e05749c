"""SQLite units of work: each runs whole in one worker thread, with Python's sqlite3.

A thread cannot be cut off, so a unit of work is never abandoned: when its
call is cancelled, or its deadline passes, its running statement is
interrupted and the call ends only once the unit has rolled back. Writers
queue on an in-process lock (SQLite has one writer at a time) rather than
in SQLite's busy handler; another process's write lock is waited for in
short slices, retried from here, so that a cancelled call is noticed within
one slice (an interrupt cannot end SQLite's own busy wait).

Short reads and single-row writes first try the event loop's thread
(`db.sqlite_inline`, `db.sqlite_inline_writes`, writes with the write lock
held); what they do not finish there runs here as any other unit.

A stream (`Database.stream`) keeps one connection, one read transaction and
one open statement for its whole length; each batch is a step of that
statement, run in a worker thread only when the caller asks for it. WAL
mode lets writers go on meanwhile; the stream keeps reading its snapshot
(and, while it lasts, a checkpoint cannot recycle the WAL past it).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from flowservice_server.db import dialect
from flowservice_server.db.engine import (
    Database,
    cancel_after,
    deadline_after,
    direct_read_plan,
    expired,
    remaining,
    short_read_shape,
    short_write_shape,
    to_completion,
)
from flowservice_server.db.sqlite_inline import InlineReader, NotRun
from flowservice_server.db.sqlite_inline_writes import InlineWriter, NotWritten

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Callable, Iterator, Sequence

    from sqlalchemy.engine import Dialect
    from sqlalchemy.pool import Pool

    from flowservice_server.config import DatabaseSettings

T = TypeVar("T")


# --- connections -------------------------------------------------------------------


def engine_arguments() -> dict[str, Any]:
    """Extra `create_engine` arguments for SQLite (Python's sqlite3 driver)."""
    # pysqlite then opens a transaction with BEGIN IMMEDIATE right before the
    # first INSERT/UPDATE/DELETE, so a write takes the database's write lock
    # up front instead of failing to upgrade a read lock later, and plain
    # reads run without a transaction. A local file needs no pre-ping: it
    # would only add a round trip to every call. Nor a reset on return: a read
    # never opens a transaction here, and a write's unit of work ends its own.
    return {
        "connect_args": {"isolation_level": "IMMEDIATE"},
        "pool_pre_ping": False,
        "pool_reset_on_return": None,
    }


def prepare_sqlite(*, busy_timeout: float) -> Callable[[Any, Any], None]:
    """The hook that prepares each new SQLite connection."""
    busy_timeout_ms = round(busy_timeout * 1000)

    def prepare(dbapi_connection: Any, record: Any) -> None:
        cursor = dbapi_connection.cursor()
        # WAL: readers never block the writer nor the writer them.
        cursor.execute("PRAGMA journal_mode = WAL")
        # Prefect relies on FK cascades to delete a flow's runs and deployments.
        cursor.execute("PRAGMA foreign_keys = ON")
        # A writer from another process waits this long for the lock.
        cursor.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")
        record.info[_CURRENT_BUSY] = busy_timeout_ms
        # In WAL mode NORMAL is durable across application crashes; only a
        # power loss can lose the last commits.
        cursor.execute("PRAGMA synchronous = NORMAL")
        # Prefect's page cache size (about 80 MB with 4 KiB pages).
        cursor.execute("PRAGMA cache_size = 20000")
        cursor.close()

    return prepare


#: SQLite waits for another process's write lock this long per attempt.
SQLITE_BUSY_SLICE_MS = 50


def wait_for_other_writers(connection: sa.Connection, seconds: float | None) -> None:
    """SQLite: a write waits for another process's lock for one short slice at most.

    The unit of work retries (see `db.sqlite_engine`) until the busy timeout
    or the deadline; reads never wait.
    """
    slice_ms = SQLITE_BUSY_SLICE_MS
    if seconds is not None:
        slice_ms = max(1, min(slice_ms, int(seconds * 1000)))
    if connection.info.get(_CURRENT_BUSY) != slice_ms:
        connection.exec_driver_sql(f"PRAGMA busy_timeout = {slice_ms}")
        connection.info[_CURRENT_BUSY] = slice_ms


_CURRENT_BUSY = "flowservice_busy_ms"


class SqliteDatabase(Database):
    def __init__(self, settings: DatabaseSettings) -> None:
        # The configured URL names aiosqlite (as Prefect's does); the units
        # run in our own threads with the synchronous driver underneath it.
        url = sa.make_url(settings.url).set(drivername="sqlite+pysqlite")
        self.engine = sa.create_engine(
            url,
            pool_size=settings.pool_size,
            max_overflow=settings.max_overflow,
            pool_timeout=settings.pool_timeout,
            pool_recycle=settings.pool_recycle or -1,
            **engine_arguments(),
        )
        sa.event.listen(self.engine, "connect", prepare_sqlite(busy_timeout=settings.busy_timeout))
        # As many threads as connections: a unit never waits for the pool.
        self._threads = ThreadPoolExecutor(
            max_workers=settings.pool_size + settings.max_overflow,
            thread_name_prefix="flowservice-sqlite",
        )
        self._write_lock = asyncio.Lock()
        #: Calls waiting for `_write_lock` (or about to take it after a wait).
        self._write_waiters = 0
        self._busy_timeout = settings.busy_timeout
        #: Short reads on the event-loop thread (None: every unit in a worker thread).
        self.inline: InlineReader | None = None
        #: Planned reads (ReadFlows pages) on the loop too, through the same reader.
        self._inline_plans = settings.inline_reads and settings.inline_pages
        if settings.inline_reads:
            self.inline = InlineReader(
                self.engine,
                budget=settings.inline_read_budget,
                prepare=prepare_sqlite(busy_timeout=0),
            )
        #: Single-row writes on the event-loop thread (None: in a worker thread).
        self.inline_writes: InlineWriter | None = None
        if settings.inline_writes:
            self.inline_writes = InlineWriter(
                self.engine,
                budget=settings.inline_write_budget,
                prepare=prepare_sqlite(busy_timeout=0),
            )

    @property
    def dialect(self) -> Dialect:
        return self.engine.dialect

    @property
    def pool(self) -> Pool:
        return self.engine.pool

    async def maintain(self, work: Callable[[sa.Connection], None]) -> None:
        def maintenance() -> None:
            with self.engine.connect() as connection:
                work(connection)
                connection.commit()

        await asyncio.get_running_loop().run_in_executor(self._threads, maintenance)

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._threads.shutdown)
        if self.inline is not None:
            self.inline.close()
        if self.inline_writes is not None:
            self.inline_writes.close()
        self.engine.dispose()

    async def run(
        self,
        work: Callable[[sa.Connection], T],
        time_left: float | None,
        *,
        write: bool,
        snapshot: bool = False,
    ) -> T:
        deadline = deadline_after(time_left)
        if not write:
            if self.inline is not None:
                result = self._inline(self.inline, work, deadline, snapshot=snapshot)
                if not isinstance(result, NotRun):
                    return result
            if snapshot:
                work = partial(_in_read_transaction, work)
            return await self._attempt(work, deadline, write=False)
        await self._take_write_lock(time_left)
        try:
            return await self._write(work, deadline)
        finally:
            self._write_lock.release()

    def _inline(
        self,
        inline: InlineReader,
        work: Callable[[sa.Connection], T],
        deadline: float | None,
        *,
        snapshot: bool,
    ) -> T | NotRun:
        """A read on the loop when it may be (a short read; a planned one, snapshot or not)."""
        if self._inline_plans:
            plan = direct_read_plan(work)
            if plan is not None:  # its statements run in one snapshot when there are several
                result: T | NotRun = inline.run_plan(plan, deadline)
                return result
        shape = None if snapshot else short_read_shape(work)
        if shape is None:
            return NotRun.UNEXPECTED
        return inline.run(shape, work, deadline)

    async def _write(self, work: Callable[[sa.Connection], T], deadline: float | None) -> T:
        """A write, the write lock held: on the loop when it is short, else in a worker thread."""
        checkpoint = False
        inline = self.inline_writes
        if inline is not None:
            shape = short_write_shape(work)
            if shape is not None:
                written = inline.run(shape, work, deadline)
                if not isinstance(written, NotWritten):
                    return written
            checkpoint = inline.checkpoint_due
        give_up = time.monotonic() + self._busy_timeout
        if deadline is not None:
            give_up = min(give_up, deadline)
        while True:
            try:
                result = await self._attempt(work, deadline, write=True, checkpoint=checkpoint)
            except sa_exc.OperationalError as error:
                if not (dialect.is_busy(error) and time.monotonic() < give_up):
                    raise
            else:
                if checkpoint and inline is not None:
                    inline.checkpointed()
                return result

    async def _take_write_lock(self, time_left: float | None) -> None:
        """One writer at a time in the process; waiting for our turn is bounded by the deadline.

        Free and with nobody waiting, the lock is taken at once: no timer is needed.
        """
        if not self._write_lock.locked() and self._write_waiters == 0:
            await self._write_lock.acquire()  # returns without suspending
            return
        self._write_waiters += 1
        try:
            async with cancel_after(time_left):  # waiting for our turn is not database work
                await self._write_lock.acquire()
        finally:
            self._write_waiters -= 1

    async def _attempt(
        self,
        work: Callable[[sa.Connection], T],
        deadline: float | None,
        *,
        write: bool,
        checkpoint: bool = False,
    ) -> T:
        """One unit in a worker thread; on cancellation, stop it and wait until it has.

        `checkpoint`: a write first checkpoints the WAL that inline writes filled.
        """
        loop = asyncio.get_running_loop()
        unit = _Unit(deadline)
        job = loop.run_in_executor(self._threads, self._unit, work, unit, write, checkpoint)
        timer = None if deadline is None else loop.call_at(_loop_time(loop, deadline), unit.stop)
        try:
            return await to_completion(job, unit.cancel)  # cancelled: stop; never commit
        finally:
            if timer is not None:
                timer.cancel()

    def _unit(
        self, work: Callable[[sa.Connection], T], unit: _Unit, write: bool, checkpoint: bool
    ) -> T:
        """Runs in a worker thread: the whole unit of work, commit or rollback included."""
        with self.engine.connect() as connection:
            unit.attach(connection.connection.driver_connection)
            try:
                if checkpoint:
                    # Under the in-process write lock: it copies the whole WAL unless a
                    # reader holds on to it, and this write then starts the WAL over.
                    connection.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").close()
                if write:
                    wait_for_other_writers(connection, remaining(unit.deadline))
                result = work(connection)
                if unit.too_late():
                    raise TimeoutError  # roll back rather than commit
                if write:
                    connection.commit()
                return result
            except sa_exc.DBAPIError as error:
                if unit.too_late():  # interrupted at the deadline, or cancelled
                    raise TimeoutError from error
                raise
            finally:
                unit.detach()

    def stream_batches(
        self, query: sa.Select[Any], batch_size: int, deadline: float | None
    ) -> AsyncGenerator[Sequence[sa.Row[Any]], None]:
        return _stream(self.engine, self._threads, query, batch_size, deadline)


# --- streams -----------------------------------------------------------------------


async def _stream(
    engine: sa.Engine,
    threads: ThreadPoolExecutor,
    query: sa.Select[Any],
    batch_size: int,
    deadline: float | None,
) -> AsyncGenerator[Sequence[sa.Row[Any]], None]:
    """One statement, stepped a batch at a time in worker threads; see `Database.stream`.

    Between batches no thread is held, only the connection. Whatever ends the
    stream (the last row, an error, the deadline, `aclose`, a cancellation),
    the statement is stopped and the connection rolled back and returned
    before the stream is gone.
    """
    loop = asyncio.get_running_loop()
    unit = _Unit(deadline)
    reader = _SnapshotReader(engine, unit)
    timer = None if deadline is None else loop.call_at(_loop_time(loop, deadline), unit.stop)
    try:
        await _stoppable(loop, threads, partial(reader.open, query), unit)
        while True:
            rows = await _stoppable(loop, threads, partial(reader.fetch, batch_size), unit)
            if not rows:
                return
            yield rows
    finally:
        if timer is not None:
            timer.cancel()
        unit.cancel()  # from here on, nothing may start another step
        await to_completion(loop.run_in_executor(threads, reader.close))


async def _stoppable(
    loop: asyncio.AbstractEventLoop, threads: ThreadPoolExecutor, step: Callable[[], T], unit: _Unit
) -> T:
    """Run one step in a worker thread; if the call is cancelled, interrupt it and wait."""
    return await to_completion(loop.run_in_executor(threads, step), unit.cancel)


class _SnapshotReader:
    """A stream's connection, transaction and statement; each method runs in a worker thread.

    Only one method runs at a time (the stream awaits each), though not
    always in the same thread: the pool's SQLite connections may move
    between threads (SQLAlchemy opens file databases with that allowed).
    """

    def __init__(self, engine: sa.Engine, unit: _Unit) -> None:
        self._engine = engine
        self._unit = unit
        self._connection: sa.Connection | None = None
        self._result: sa.CursorResult[Any] | None = None

    def open(self, query: sa.Select[Any]) -> None:
        self._connection = self._engine.connect()
        with self._stoppable(self._connection):
            # A deferred transaction: its snapshot is taken by the query's
            # first read and kept until the rollback in `close`.
            self._connection.exec_driver_sql("BEGIN")
            self._result = self._connection.execute(query)

    def fetch(self, batch_size: int) -> Sequence[sa.Row[Any]]:
        assert self._connection is not None
        assert self._result is not None
        with self._stoppable(self._connection):
            return self._result.fetchmany(batch_size)

    def close(self) -> None:
        """End the statement first (an interrupt stays pending while it is open), then the rest."""
        connection, result = self._connection, self._result
        self._connection = self._result = None
        if connection is None:
            return
        try:
            if result is not None:
                result.close()
            connection.rollback()
        finally:
            connection.close()

    @contextlib.contextmanager
    def _stoppable(self, connection: sa.Connection) -> Iterator[None]:
        self._unit.attach(connection.connection.driver_connection)
        try:
            yield
        except sa_exc.DBAPIError as error:
            if self._unit.too_late():  # interrupted at the deadline, or cancelled
                raise TimeoutError from error
            raise
        finally:
            self._unit.detach()


def _in_read_transaction(work: Callable[[sa.Connection], T], connection: sa.Connection) -> T:
    """Run `work` in one read transaction: every SELECT sees the same snapshot.

    Reads otherwise run outside a transaction (pysqlite begins one only
    before a write), each statement on the database as it is then. BEGIN
    DEFERRED takes no lock; in WAL mode the first SELECT fixes the snapshot,
    which holds until the transaction ends, and writers are not blocked.
    """
    connection.exec_driver_sql("BEGIN DEFERRED")
    try:
        return work(connection)
    finally:
        connection.rollback()  # a read has nothing to commit


class _Unit:
    """One unit of work's handle, through which the event loop stops its statement."""

    def __init__(self, deadline: float | None) -> None:
        self.deadline = deadline
        self.cancelled = False
        self._lock = threading.Lock()  # an interrupt never reaches the next unit's statement
        self._driver: Any = None

    def attach(self, driver: Any) -> None:
        with self._lock:
            if self.too_late():  # cancelled, or out of time, while queued for a thread
                raise TimeoutError
            self._driver = driver

    def detach(self) -> None:
        with self._lock:
            self._driver = None

    def stop(self) -> None:
        """Interrupt the running statement, if any (sqlite3 allows it from any thread)."""
        with self._lock:
            if self._driver is not None:
                self._driver.interrupt()

    def cancel(self) -> None:
        self.cancelled = True
        self.stop()

    def too_late(self) -> bool:
        return self.cancelled or expired(self.deadline)


def _loop_time(loop: asyncio.AbstractEventLoop, deadline: float) -> float:
    """The event loop's clock at the monotonic `deadline` (the loop's clock may differ)."""
    return loop.time() + (deadline - time.monotonic())
