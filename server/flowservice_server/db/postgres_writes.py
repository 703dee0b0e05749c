"""PostgreSQL writes in three round trips instead of seven.

A unit of work that writes, through SQLAlchemy, costs the pool's pre-ping
(BEGIN, `;`, ROLLBACK), BEGIN, `SET LOCAL statement_timeout`, its statements
and COMMIT. Here (`--database-lean-writes`) it runs on a connection of an
engine in autocommit without a pre-ping, in a transaction of its own making:

* `BEGIN; SET LOCAL statement_timeout = …` in one message (one round trip);
  a connection found dead there has sent nothing of the write, so it is
  dropped with the pool's other idle connections (a dead one usually means
  the server restarted) and the write begins once more on a fresh one;
* the model function's statements, through SQLAlchemy as before (the
  dialect starts no transaction of its own in autocommit);
* COMMIT, only while the deadline has not passed, else ROLLBACK.

Whatever ends the unit early (an error, the deadline's cancellation), the
transaction is rolled back before the connection goes back to its pool, or
the connection is dropped, which makes the server roll it back. What the
transaction does is unchanged: one transaction, its statement timeout the
call's time left, the change feed's triggers and their transaction-scoped
advisory lock, the same errors (asyncpg's wrapped as SQLAlchemy's).
"""

from __future__ import annotations

import contextlib
from collections import Counter
from typing import TYPE_CHECKING, Any, TypeVar

from flowservice_server.db.engine import (
    cancel_after,
    deadline_after,
    expired,
    remaining,
    to_completion,
)
from flowservice_server.db.postgres_direct import as_sqlalchemy, dead

if TYPE_CHECKING:
    from collections.abc import Callable

    import sqlalchemy as sa
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

T = TypeVar("T")


def begin(seconds: float | None) -> str:
    """BEGIN, with the statement timeout of the time left: one simple-query message."""
    if seconds is None:
        return "BEGIN"
    return f"BEGIN; SET LOCAL statement_timeout = {max(1, int(seconds * 1000))}"


class LeanWrites:
    """Runs write units on `engine` (autocommit, no pre-ping); see the module's docstring."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        #: "written": units committed; "rebegun": units begun again on a fresh connection.
        self.outcomes: Counter[str] = Counter()

    async def write(self, work: Callable[[sa.Connection], T], time_left: float | None) -> T:
        deadline = deadline_after(time_left)
        async with cancel_after(time_left):
            for attempt in (1, 2):
                connection = await self._engine.connect()
                try:
                    driver = await _driver(connection)
                    sql = begin(remaining(deadline))
                    try:
                        await driver.execute(sql)
                    except Exception as error:
                        if attempt == 1 and dead(error, driver):
                            self.outcomes["rebegun"] += 1
                            await connection.invalidate()
                            await self._engine.dispose(close=False)
                            continue
                        raise _wrapped(error, connection, driver, sql) from error
                    result = await connection.run_sync(work)
                    if expired(deadline):
                        raise TimeoutError  # too late: roll back rather than commit
                    try:
                        await driver.execute("COMMIT")
                    except Exception as error:
                        raise _wrapped(error, connection, driver, "COMMIT") from error
                    self.outcomes["written"] += 1
                    return result
                finally:
                    await _release(connection)
        raise AssertionError("not reached: the second attempt returns or raises")


async def _driver(connection: AsyncConnection) -> Any:
    """The asyncpg connection under SQLAlchemy's."""
    raw = await connection.get_raw_connection()
    return raw.driver_connection


def _wrapped(error: Exception, connection: AsyncConnection, driver: Any, sql: str) -> Exception:
    return as_sqlalchemy(error, connection.dialect, sql, None, invalidated=bool(driver.is_closed()))


async def _release(connection: AsyncConnection) -> None:
    """Roll back what is still open, then return the connection; if that fails, drop it.

    Shielded, so that a second cancellation cannot leave the connection
    half-released; PostgreSQL rolls back a dropped connection's transaction.
    """

    async def release() -> None:
        try:
            if not connection.invalidated:
                driver = await _driver(connection)
                if driver.is_in_transaction():
                    await driver.execute("ROLLBACK")
            await connection.close()
        except Exception:  # noqa: BLE001  # a connection that cannot roll back is dropped
            with contextlib.suppress(Exception):
                await connection.invalidate()
            with contextlib.suppress(Exception):
                await connection.close()

    await to_completion(release())
