"""SQLite single-row writes on the event-loop thread, bounded so that they can never stall it.

A one-row UPDATE or DELETE costs less than handing it to a worker thread (the
hand-off, the wake-ups, a pool checkout, the deadline's timer). So the model
functions marked `short_write` run here, on the loop's thread, with this
module's own connection, while the caller holds the in-process write lock
(one writer at a time in the process, as for every write), under the bounds
of inline reads (`db.sqlite_inline`):

* a progress handler, called every `STEP_OPCODES` VM instructions,
  interrupts the statement once the run's CPU budget (`inline_write_budget`,
  less the first compile of a statement) or the call's deadline has passed;
  the transaction is rolled back. Stopped at the budget, the write is rerun
  in a worker thread and its shape is demoted for `DEMOTION_SECONDS` (a
  delete whose foreign keys cascade to thousands of runs); stopped at the
  deadline, the call ends with DEADLINE_EXCEEDED. A write that finished past
  its budget twice in a row is demoted too;
* busy timeout 0: BEGIN IMMEDIATE never waits for another process's write
  lock (`--workers` processes share the file); SQLITE_BUSY hands the write to
  a worker thread, which waits for the lock in slices;
* the deadline is checked once more right before COMMIT: a late write is
  rolled back, never committed.

The change feed's triggers fire in the same transaction, as on any connection.
The model function's statements run on the sqlite3 connection itself
(`db.sqlite_direct`), each compiled by SQLAlchemy once; one that path does not
handle runs in a worker thread through SQLAlchemy, as does a unit that fails
with an error other than an operational one (so that it is reported as usual).

Checkpoints. In WAL mode a commit may checkpoint the WAL into the database
(page writes and an fsync: milliseconds) on the committing connection. This
connection has automatic checkpoints off. Instead, once `CHECKPOINT_EVERY`
inline commits have filled the WAL, the next write goes to a worker thread,
which first runs a PASSIVE checkpoint, then the write: it holds the
in-process write lock, so no writer of this process adds to the WAL while the
checkpoint copies it, the checkpoint copies all of it, and that same write
starts the WAL over from its beginning (syncing its new header) in the
thread. Writers wait for it as they wait for any write; the loop does not.
"""

from __future__ import annotations

import enum
import math
import sqlite3
import time
from collections import Counter
from typing import TYPE_CHECKING, Any, TypeVar, cast

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.pool import StaticPool

from flowservice_server.db import dialect
from flowservice_server.db.sqlite_direct import DriverConnection, DriverError
from flowservice_server.db.sqlite_inline import STEP_OPCODES, ShapeDemotions, interrupted

if TYPE_CHECKING:
    from collections.abc import Callable

T = TypeVar("T")

#: Inline commits between two checkpoints: a one-row write adds a handful of
#: pages to the WAL, so about SQLite's own default of 1,000 pages.
CHECKPOINT_EVERY = 250


class NotWritten(enum.Enum):
    """Why an inline write did not run (or was rolled back): run it in a worker thread."""

    DEMOTED = "demoted"
    OVER_BUDGET = "over_budget"
    BUSY = "busy"
    CHECKPOINT = "checkpoint"
    UNEXPECTED = "unexpected"


class InlineWriter:
    """One connection, used only on the event-loop thread, for bounded single-row writes.

    `run` must be called with the in-process write lock held.
    """

    def __init__(
        self, engine: sa.Engine, *, budget: float, prepare: Callable[[Any, Any], None]
    ) -> None:
        def prepare_for_loop(dbapi_connection: Any, record: Any) -> None:
            prepare(dbapi_connection, record)
            dbapi_connection.execute("PRAGMA wal_autocheckpoint = 0")

        # Same file and pragmas, its own connection: busy timeout 0, opened with
        # timeout 0, BEGIN IMMEDIATE before the first write (as the pool's).
        self._engine = sa.create_engine(
            engine.url,
            poolclass=StaticPool,
            connect_args={"check_same_thread": False, "timeout": 0, "isolation_level": "IMMEDIATE"},
        )
        sa.event.listen(self._engine, "connect", prepare_for_loop)
        self._commits_since_checkpoint = 0
        self._budget = budget
        self._raw: Any = None  # the pool's proxy of the one connection, kept open
        self._connection: DriverConnection | None = None
        self._demotions = ShapeDemotions()
        self._stop_at = math.inf
        self._deadline: float | None = None
        self._steps = 0
        self._stopped_for_deadline = False
        #: Outcomes by kind ("inline", "slow", "demoted", "over_budget", "busy",
        #: "deadline", "checkpoint", "unexpected"): for tests and the bench.
        self.outcomes: Counter[str] = Counter()

    def run(
        self, shape: str, work: Callable[[sa.Connection], T], deadline: float | None
    ) -> T | NotWritten:
        """`work`'s result once committed, or why it was not; TimeoutError at the deadline."""
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            self.outcomes["deadline"] += 1
            raise TimeoutError  # as a worker thread would: no work once out of time
        if self._demotions.demoted(shape):
            self.outcomes["demoted"] += 1
            return NotWritten.DEMOTED
        if self._commits_since_checkpoint >= CHECKPOINT_EVERY:
            self.outcomes["checkpoint"] += 1
            return NotWritten.CHECKPOINT  # the caller checkpoints, then writes, in a thread
        try:
            connection = self._connection or self._connect()
        except sa_exc.OperationalError as error:  # opening it met a lock: not waited for here
            if not dialect.is_busy(error):
                raise
            self.outcomes["busy"] += 1
            return NotWritten.BUSY
        started = _work_time(connection)
        result = self._transaction(connection, shape, work, deadline, started)
        if isinstance(result, NotWritten):
            return result
        # Finished past its budget between two calls of the handler: it stands.
        slow = _work_time(connection) - started > self._budget
        if slow:
            self.outcomes["slow"] += 1
        self._demotions.finished(shape, slow=slow)
        self.outcomes["inline"] += 1
        self._commits_since_checkpoint += 1
        return result

    def _transaction(
        self,
        connection: DriverConnection,
        shape: str,
        work: Callable[[sa.Connection], T],
        deadline: float | None,
        started: float,
    ) -> T | NotWritten:
        """`work` then COMMIT, or ROLLBACK whatever stopped it."""
        self._deadline = deadline
        self._steps = 0
        self._stopped_for_deadline = False
        self._stop_at = started + self._budget
        driver = connection.driver
        try:
            result = work(cast("sa.Connection", connection))
            if self._deadline is not None and time.monotonic() >= self._deadline:
                self.outcomes["deadline"] += 1
                raise TimeoutError  # never commit after the deadline
            self._stop_at, self._deadline = math.inf, None  # COMMIT is not interrupted
            _commit(driver)
            return result
        except (DriverError, sqlite3.DatabaseError):
            driver.rollback()
            self.outcomes["unexpected"] += 1
            return NotWritten.UNEXPECTED  # a worker thread reruns it and reports what fails
        except sa_exc.OperationalError as error:
            driver.rollback()
            if self._stopped_for_deadline:
                self.outcomes["deadline"] += 1
                raise TimeoutError from error
            if self._steps > 0 and interrupted(error):
                self._demotions.demote(shape)
                self.outcomes["over_budget"] += 1
                return NotWritten.OVER_BUDGET
            if dialect.is_busy(error):
                self.outcomes["busy"] += 1
                return NotWritten.BUSY
            raise
        except BaseException:
            driver.rollback()
            raise
        finally:
            self._stop_at, self._deadline = math.inf, None

    @property
    def checkpoint_due(self) -> bool:
        """Inline commits have filled the WAL: the next write checkpoints it first."""
        return self._commits_since_checkpoint >= CHECKPOINT_EVERY

    def checkpointed(self) -> None:
        """A write in a worker thread checkpointed the WAL (whole, or as far as readers allow)."""
        self._commits_since_checkpoint = 0

    def demoted(self, shape: str) -> bool:
        return self._demotions.demoted(shape)

    def close(self) -> None:
        if self._raw is not None:
            self._raw.close()
            self._raw = self._connection = None
        self._engine.dispose()

    def _connect(self) -> DriverConnection:
        try:
            self._raw = self._engine.raw_connection()
        except sqlite3.OperationalError as error:  # from the pragmas that prepare it
            raise sa_exc.OperationalError("connect", (), error) from error
        driver = self._raw.driver_connection
        assert driver is not None
        driver.set_progress_handler(self._progress, STEP_OPCODES)
        self._connection = DriverConnection(driver, self._engine.dialect)
        return self._connection

    def _progress(self) -> int:
        """SQLite's progress handler: nonzero interrupts the running statement."""
        self._steps += 1
        if self._deadline is not None and time.monotonic() >= self._deadline:
            self._stopped_for_deadline = True
            return 1
        assert self._connection is not None
        return 1 if _work_time(self._connection) >= self._stop_at else 0


def _work_time(connection: DriverConnection) -> float:
    """This thread's CPU time, less what it spent compiling statements (once per shape)."""
    return time.thread_time() - connection.compiling


def _commit(driver: sqlite3.Connection) -> None:
    try:
        driver.commit()
    except sqlite3.OperationalError as error:
        raise sa_exc.OperationalError("COMMIT", (), error) from error
