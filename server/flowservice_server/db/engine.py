"""The unit of work: one connection (and, for a write, one transaction) per RPC.

Model functions (`models.flows`) are plain functions of a synchronous
`sqlalchemy.Connection` that never commit. A `Database` runs one as a unit of
work and ends it within the call's deadline; what it must never do is keep
working, or keep a lock, after its call is gone, nor commit once the
deadline has passed. How that is done differs by backend:

* SQLite (`db.sqlite_engine`): the whole unit runs in one worker thread with
  Python's sqlite3 driver: one hand-off to a thread per call, where a driver
  that hops per DB-API call (aiosqlite) makes five or six.
* PostgreSQL (`db.postgres_engine`): asyncpg on the event loop.

A stream (`Database.stream`) is the one unit of work that outlives a single
await: it reads a query's rows batch by batch from one snapshot, fetching
the next batch only when the caller asks for it, and holds its connection
(and read transaction) until it ends, fails, is closed or is cancelled.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence

    import sqlalchemy as sa
    from sqlalchemy.engine import Dialect
    from sqlalchemy.pool import Pool


T = TypeVar("T")


class Database(abc.ABC):
    """Runs units of work: a model function with a connection, bounded by the call's deadline.

    A read's unit gets a connection; a write's gets a transaction, committed
    when the function returns in time and rolled back when it raises or is late.
    """

    async def read(
        self,
        work: Callable[[sa.Connection], T],
        time_left: float | None = None,
        *,
        snapshot: bool = False,
    ) -> T:
        """Run `work` with a connection; `time_left` (the call's deadline, seconds) bounds it.

        `snapshot`: every statement of `work` reads the same consistent snapshot
        of the database (one read-only transaction), for work whose several
        SELECTs must agree, such as a page and its total. Without it each
        statement may see the writes committed before it began.
        """
        return await self.run(work, time_left, write=False, snapshot=snapshot)

    async def write(self, work: Callable[[sa.Connection], T], time_left: float | None = None) -> T:
        """Run `work` in one transaction: committed if it returns in time, else rolled back."""
        return await self.run(work, time_left, write=True)

    #: Whether CreateFlow reads the name first, as a short read, and writes only
    #: when it is new (get-or-create of an existing name without a write
    #: transaction). Only where every read sees every write committed before it
    #: began: a lagging standby could still hold a flow the primary deleted.
    read_before_create = True

    #: Rows every stream of this database has handed to its caller, in all: how
    #: far streams have read ahead of their clients is visible from outside.
    rows_streamed = 0

    async def stream(
        self, query: sa.Select[Any], batch_size: int, time_left: float | None = None
    ) -> AsyncGenerator[Sequence[sa.Row[Any]], None]:
        """The rows of `query`, `batch_size` at a time, all read from one snapshot.

        Each batch is fetched only when the caller asks for the next one, so
        a slow caller holds one batch in memory, never the result set. No
        batch is empty. The connection and its read transaction are held
        until the stream ends; closing the iterator (`aclose`, or
        cancelling the task that iterates it) stops the running statement
        and returns the connection. `time_left` bounds the whole stream:
        past it, the stream ends with TimeoutError.
        """
        batches = self.stream_batches(query, batch_size, deadline_after(time_left))
        async with contextlib.aclosing(batches):
            async for rows in batches:
                self.rows_streamed += len(rows)
                yield rows

    @abc.abstractmethod
    def stream_batches(
        self, query: sa.Select[Any], batch_size: int, deadline: float | None
    ) -> AsyncGenerator[Sequence[sa.Row[Any]], None]:
        """The backend's `stream`: non-empty batches of at most `batch_size` rows, one snapshot."""

    async def ping(self) -> None:
        await self.read(_select_one)

    @abc.abstractmethod
    async def run(
        self,
        work: Callable[[sa.Connection], T],
        time_left: float | None,
        *,
        write: bool,
        snapshot: bool = False,
    ) -> T:
        """One unit of work; `snapshot` (reads only) as for `read`."""

    @abc.abstractmethod
    async def maintain(self, work: Callable[[sa.Connection], None]) -> None:
        """Run `work` (a migration, a schema check) with a connection, then commit."""

    @property
    @abc.abstractmethod
    def dialect(self) -> Dialect: ...

    @property
    @abc.abstractmethod
    def pool(self) -> Pool: ...

    @abc.abstractmethod
    async def close(self) -> None: ...


def _select_one(connection: sa.Connection) -> None:
    connection.exec_driver_sql("SELECT 1")


# --- short reads ---------------------------------------------------------------------

F = TypeVar("F", bound="Callable[..., Any]")
_SHAPE_ATTRIBUTE = "short_read_shape"


_DIRECT_ATTRIBUTE = "short_read_direct"


def short_read(
    shape: str, *, statement: sa.Select[Any] | None = None, answer: str = "row"
) -> Callable[[F], F]:
    """Mark a model function as a short read: its statements touch a bounded few rows.

    A backend may then run it without a hand-off to another thread (SQLite
    runs it on the event loop, bounded; see `db.sqlite_inline`). `shape`
    names the statement shape: one slow run demotes every call of it.

    `statement`: when the function is exactly this one statement, its keyword
    arguments the statement's parameters, and `answer` what it returns of the
    rows ("row": the one row or None; "count": the first column of the one row,
    as an int), a backend may run the statement on its driver directly.
    """

    def mark(function: F) -> F:
        setattr(function, _SHAPE_ATTRIBUTE, shape)
        if statement is not None:
            setattr(function, _DIRECT_ATTRIBUTE, (statement, answer))
        return function

    return mark


def short_read_direct(
    work: Callable[..., Any],
) -> tuple[sa.Select[Any], str, dict[str, Any]] | None:
    """The statement, answer and parameters `work` (a marked function or a partial of one)
    stands for, when it was marked with its statement."""
    function = getattr(work, "func", work)
    direct = getattr(function, _DIRECT_ATTRIBUTE, None)
    if direct is None or getattr(work, "args", None):
        return None
    statement, answer = direct
    return statement, answer, dict(getattr(work, "keywords", {}))


@dataclass(frozen=True)
class DirectPlan:
    """A read as statements a backend may run on its driver, and how their rows answer it.

    `statements`: each a SELECT and the values of its parameters without a
    value of their own (most carry theirs, as bound literals). Their rows are
    the driver's tuples, which must be what SQLAlchemy returns for them (no
    column with a result conversion); a backend checks that. Several
    statements must see one snapshot. `finish` makes the read's answer from
    the rows of each statement, in order.
    """

    statements: tuple[tuple[sa.Select[Any], Mapping[str, Any]], ...]
    finish: Callable[[list[list[tuple[Any, ...]]]], Any]


_PLAN_ATTRIBUTE = "direct_read_plan"


def direct_read(plan: Callable[..., DirectPlan]) -> Callable[[F], F]:
    """Mark a model function whose work `plan` (of the same keyword arguments) describes.

    Unlike a short read, the statements may be anything a request asks for
    (filters, sorts, pages): a backend that runs them on its driver bounds
    them itself (SQLite: `db.sqlite_inline`). Others run the function.
    """

    def mark(function: F) -> F:
        setattr(function, _PLAN_ATTRIBUTE, plan)
        return function

    return mark


def direct_read_plan(work: Callable[..., Any]) -> DirectPlan | None:
    """The plan of `work` (a function marked `direct_read`, or a keyword partial of one)."""
    function = getattr(work, "func", work)
    plan = getattr(function, _PLAN_ATTRIBUTE, None)
    if plan is None or getattr(work, "args", None):
        return None
    result: DirectPlan = plan(**getattr(work, "keywords", {}))
    return result


def short_read_shape(work: Callable[..., Any]) -> str | None:
    """The shape `work` (a marked function, or a partial of one) was marked with, if any."""
    function = getattr(work, "func", work)
    shape: str | None = getattr(function, _SHAPE_ATTRIBUTE, None)
    return shape


_WRITE_SHAPE_ATTRIBUTE = "short_write_shape"


def short_write(shape: str) -> Callable[[F], F]:
    """Mark a model function as a short write: it changes one row (and what cascades from it).

    A backend may then run it without a hand-off to another thread (SQLite
    runs it on the event loop, bounded, and reruns it in a worker thread when
    a bound stops it; see `db.sqlite_inline_writes`), so it must be safe to
    rerun after a rollback. `shape` names the statement shape, as for `short_read`.
    """

    def mark(function: F) -> F:
        setattr(function, _WRITE_SHAPE_ATTRIBUTE, shape)
        return function

    return mark


def short_write_shape(work: Callable[..., Any]) -> str | None:
    """The shape `work` (a function marked `short_write`, or a partial of one) was marked with."""
    function = getattr(work, "func", work)
    shape: str | None = getattr(function, _WRITE_SHAPE_ATTRIBUTE, None)
    return shape


# --- deadlines ---------------------------------------------------------------------


def deadline_after(time_left: float | None) -> float | None:
    """The monotonic time at which `time_left` seconds from now have passed."""
    return None if time_left is None else time.monotonic() + max(time_left, 0.0)


def remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(deadline - time.monotonic(), 0.0)


def expired(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() >= deadline


def cancel_after(time_left: float | None) -> contextlib.AbstractAsyncContextManager[object]:
    """Cancel the work when `time_left` seconds have passed (TimeoutError: DEADLINE_EXCEEDED)."""
    if time_left is None:
        return contextlib.nullcontext()
    return asyncio.timeout(max(time_left, 0.0))


async def to_completion(job: Awaitable[T], on_cancel: Callable[[], None] | None = None) -> T:
    """Await `job` to its end even when the call is cancelled meanwhile.

    A unit of work, or the release of its connection, must never be left
    half done: on cancellation `on_cancel` runs (to stop the work early),
    the job is still awaited, and only then does the cancellation go on.
    """
    future = asyncio.ensure_future(job)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        if on_cancel is not None:
            on_cancel()
        with contextlib.suppress(BaseException):
            await future
        raise
