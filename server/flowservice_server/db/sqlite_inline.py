"""SQLite short reads and ReadFlows pages on the event-loop thread, bounded so that they
can never stall it.

Handing a read to a worker thread costs more than the read itself (the hand-off,
the wakeups, a pool checkout) when the read is one index lookup, and about as
much as SQLAlchemy's execution when it is a 200-row page. So the model functions
marked `short_read` run here, on the loop's thread, with this module's own
connection, and so do those marked `direct_read` (a page): their statements run
on the sqlite3 driver, compiled once per SQLAlchemy cache key. Under three bounds:

* a progress handler, called every `STEP_OPCODES` SQLite VM instructions,
  interrupts the statement once the run's budget (`inline_read_budget`) or the
  call's deadline has passed: the loop is held for at most about the budget.
  The budget counts this thread's CPU time (`time.thread_time`), so that a
  read preempted by another process is not taken for a slow shape;
* busy timeout 0: a lock (another process's exclusive lock, WAL recovery) is
  never waited for here; SQLITE_BUSY hands the read to a worker thread;
* a shape that hit the budget is demoted: for `DEMOTION_SECONDS`, every call of
  it goes to a worker thread straight away (a page's shape: its statements'
  cache keys, so a slow filter does not demote the plain page). So is one that finished past its
  budget twice in a row: SQLite counts a whole index (`count_all_flows`) in one
  VM instruction, which no progress handler sees, at about 50 ns per index
  page (some 250 µs for a million flows).

A read has no side effects, so a read stopped at its budget or refused with
SQLITE_BUSY is simply run again in a worker thread (`db.sqlite_engine`). One
stopped at the call's deadline ends the call with DEADLINE_EXCEEDED. Reads run
outside a transaction, like the worker threads' reads: each statement sees
what was committed before it began.
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
from flowservice_server.db.driver_sql import CompiledShapes, FixedStatements, answer_of, bound
from flowservice_server.db.engine import short_read_direct

if TYPE_CHECKING:
    from collections.abc import Callable, Hashable, Mapping

    from sqlalchemy.sql.compiler import SQLCompiler

    from flowservice_server.db.engine import DirectPlan

T = TypeVar("T")

#: VM instructions between two calls of the progress handler (inline reads and
#: writes): a one-row lookup takes fewer, a one-row write with its triggers a
#: few hundred, so they rarely pay for the handler.
STEP_OPCODES = 1_000
#: How long a shape that ran past its budget goes to worker threads.
DEMOTION_SECONDS = 60.0
#: Shapes remembered as slow or demoted.
_SHAPES_KEPT = 10_000


class NotRun(enum.Enum):
    """Why an inline read did not give a result: the caller runs it in a worker thread."""

    DEMOTED = "demoted"
    OVER_BUDGET = "over_budget"
    BUSY = "busy"
    UNEXPECTED = "unexpected"


class ShapeDemotions:
    """Which statement shapes go to worker threads for now, and which ran slow once.

    A shape stopped at its budget is demoted for `DEMOTION_SECONDS`; so is one
    that finished past its budget twice in a row (once may be a first compile,
    or a pause). Bounded: plans make shapes, so only live entries are kept.
    """

    def __init__(self) -> None:
        self._until: dict[Hashable, float] = {}
        self._slow_once: set[Hashable] = set()

    def demoted(self, shape: Hashable) -> bool:
        return self._until.get(shape, 0.0) > time.monotonic()

    def demote(self, shape: Hashable) -> None:
        now = time.monotonic()
        if len(self._until) >= _SHAPES_KEPT:
            self._until = {s: t for s, t in self._until.items() if t > now}
        self._until[shape] = now + DEMOTION_SECONDS

    def finished(self, shape: Hashable, *, slow: bool) -> None:
        """A run of `shape` that was not stopped: `slow`, past its budget."""
        if not slow:
            self._slow_once.discard(shape)
            return
        if shape in self._slow_once:
            self.demote(shape)
        self._slow_once.add(shape)
        if len(self._slow_once) > _SHAPES_KEPT:
            self._slow_once.clear()  # forgetting a first slow run costs one more

    def count(self) -> int:
        now = time.monotonic()
        return sum(1 for until in self._until.values() if until > now)


class InlineReader:
    """One connection, used only on the event-loop thread, for bounded short reads."""

    def __init__(
        self, engine: sa.Engine, *, budget: float, prepare: Callable[[Any, Any], None]
    ) -> None:
        # Same file, same pragmas, but its own connection with busy timeout 0.
        # timeout 0: even opening it never waits for a lock (sqlite3's default is 5 s).
        self._engine = sa.create_engine(
            engine.url,
            poolclass=StaticPool,
            connect_args={"check_same_thread": False, "timeout": 0},
        )
        sa.event.listen(self._engine, "connect", prepare)
        self._budget = budget
        self._connection: sa.Connection | None = None
        self._demotions = ShapeDemotions()
        #: Plan statements compiled by SQLAlchemy cache key.
        self._plans = CompiledShapes(self._engine.dialect)
        #: Short reads marked with their statement, compiled once each.
        self._fixed = FixedStatements(self._engine.dialect)
        self._stop_at = 0.0
        self._deadline: float | None = None
        self._steps = 0
        self._stopped_for_deadline = False
        #: Outcomes by kind ("inline", of which "direct" on the driver itself;
        #: "slow", "demoted", "over_budget", "busy", "deadline"): for tests and the bench.
        self.outcomes: Counter[str] = Counter()

    def run(
        self, shape: str, work: Callable[[sa.Connection], T], deadline: float | None
    ) -> T | NotRun:
        """`work`'s result, or why it was not run here; TimeoutError at the deadline."""
        result: T | NotRun = self._bounded(shape, deadline, lambda c: self._execute(c, shape, work))
        return result

    def run_plan(self, plan: DirectPlan, deadline: float | None) -> Any:
        """A planned read (`engine.direct_read`) on the driver: its answer, or why not.

        Each statement is compiled once per SQLAlchemy cache key (the shape of
        the statement, whatever its values) and demoted by it, so a slow
        filtered page never sends the plain page to worker threads. Several
        statements read one snapshot (BEGIN DEFERRED, then ROLLBACK).
        """
        prepared: list[tuple[SQLCompiler, Any, Mapping[str, Any]]] = []
        keys: list[Any] = []
        for statement, values in plan.statements:
            cache_key = statement._generate_cache_key()  # SQLAlchemy's own key
            compiled = None if cache_key is None else self._plans.get(statement, cache_key)
            if cache_key is None or compiled is None:  # not cacheable; rows to convert
                self.outcomes["unexpected"] += 1
                return NotRun.UNEXPECTED
            keys.append(cache_key.key)
            prepared.append((compiled, cache_key, values))
        shape = ("plan", *keys)

        def execute(connection: sa.Connection) -> Any:
            driver = connection.connection.driver_connection
            assert driver is not None
            statements = [bound(*statement) for statement in prepared]  # not for a demoted shape
            try:
                results = self._fetch_all(driver, statements)
            except sa_exc.OperationalError:
                raise
            except sqlite3.Error:  # not for this path to report: a worker thread will
                return NotRun.UNEXPECTED
            return plan.finish(results)

        result = self._bounded(shape, deadline, execute)
        if not isinstance(result, NotRun):
            self.outcomes["direct"] += 1
        return result

    def _fetch_all(
        self, driver: Any, statements: list[tuple[str, tuple[Any, ...]]]
    ) -> list[list[Any]]:
        """Every statement's rows; several in one read transaction (one snapshot).

        Errors come back SQLAlchemy-wrapped, as from a unit of work. The
        transaction ends whatever happens (an interrupt may have ended it
        already), and nothing may interrupt its end: a transaction left open
        would keep its old snapshot for the next read.
        """
        try:
            if len(statements) == 1:
                sql, parameters = statements[0]
                return [driver.execute(sql, parameters).fetchall()]
            driver.execute("BEGIN DEFERRED")
            try:
                return [driver.execute(sql, values).fetchall() for sql, values in statements]
            finally:
                if driver.in_transaction:
                    self._stop_at, self._deadline = math.inf, None
                    driver.execute("ROLLBACK")
        except sqlite3.OperationalError as error:
            raise sa_exc.OperationalError("a planned read", None, error) from error

    def _bounded(
        self, shape: Hashable, deadline: float | None, execute: Callable[[sa.Connection], Any]
    ) -> Any:
        """`execute` with the inline connection under the bounds; NotRun: not done here."""
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            self.outcomes["deadline"] += 1
            raise TimeoutError  # as a worker thread would: no work once out of time
        if self._demotions.demoted(shape):
            self.outcomes["demoted"] += 1
            return NotRun.DEMOTED
        self._deadline = deadline
        self._steps = 0
        self._stopped_for_deadline = False
        try:
            connection = self._connection or self._connect()
            started = time.thread_time()
            self._stop_at = started + self._budget
            result = execute(connection)
            if isinstance(result, NotRun):
                return result
        except sa_exc.OperationalError as error:
            if self._stopped_for_deadline:
                self.outcomes["deadline"] += 1
                raise TimeoutError from error
            if self._steps > 0 and interrupted(error):
                self._demotions.demote(shape)
                self.outcomes["over_budget"] += 1
                return NotRun.OVER_BUDGET
            if dialect.is_busy(error):
                self.outcomes["busy"] += 1
                return NotRun.BUSY
            raise
        finally:
            self._stop_at = math.inf  # nothing else runs on this connection, but be sure
        # Past its budget without a step the handler could stop (a count of a whole
        # index is one VM instruction): its result stands.
        slow = time.thread_time() - started > self._budget
        if slow:
            self.outcomes["slow"] += 1
        self._demotions.finished(shape, slow=slow)
        self.outcomes["inline"] += 1
        return result

    def _execute(
        self, connection: sa.Connection, shape: str, work: Callable[[sa.Connection], T]
    ) -> T | NotRun:
        direct = short_read_direct(work)
        if direct is None:
            return work(connection)
        answer = self._direct(connection, shape, *direct)
        return answer if isinstance(answer, NotRun) else cast("T", answer)

    def _direct(
        self,
        connection: sa.Connection,
        shape: str,
        statement: sa.Select[Any],
        answer: str,
        values: dict[str, Any],
    ) -> Any:
        """The statement on the sqlite3 connection itself: SQLAlchemy compiles it once.

        The rows are the tuples the driver returns, which is what SQLAlchemy
        would return for these columns (none has a result conversion). Errors
        come back SQLAlchemy-wrapped, as from `work`; one this path does not
        know how to report (anything but an operational error) hands the read
        to a worker thread, which reports it as usual.
        """
        sql, parameters = self._fixed.bind(statement, values)
        driver = connection.connection.driver_connection
        assert driver is not None
        try:
            rows = driver.execute(sql, parameters).fetchall()
        except sqlite3.OperationalError as error:
            raise sa_exc.OperationalError(sql, parameters, error) from error
        except sqlite3.Error:
            return NotRun.UNEXPECTED
        self.outcomes["direct"] += 1
        return answer_of(rows, answer)

    def demoted(self, shape: Hashable) -> bool:
        return self._demotions.demoted(shape)

    def demoted_shapes(self) -> int:
        """How many shapes go to worker threads now: for tests and the bench."""
        return self._demotions.count()

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        self._engine.dispose()

    def _connect(self) -> sa.Connection:
        connection = self._engine.connect()
        driver = connection.connection.driver_connection
        assert driver is not None
        driver.set_progress_handler(self._progress, STEP_OPCODES)
        self._connection = connection
        return connection

    def _progress(self) -> int:
        """SQLite's progress handler: nonzero interrupts the running statement."""
        self._steps += 1
        if self._deadline is not None and time.monotonic() >= self._deadline:
            self._stopped_for_deadline = True
            return 1
        return 1 if time.thread_time() >= self._stop_at else 0


def interrupted(error: sa_exc.OperationalError) -> bool:
    return "interrupted" in str(getattr(error, "orig", error))
