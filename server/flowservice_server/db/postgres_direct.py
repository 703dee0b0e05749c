"""PostgreSQL short reads on asyncpg itself: the statement alone, on a pool of our own.

A short read marked with its statement (`engine.short_read(..., statement=…)`:
one flow by id or name, the count of all flows) is one SELECT in autocommit.
Through SQLAlchemy it costs more CPU than the query: a pre-ping round trip,
the hop into a greenlet (`run_sync`), the result machinery. Here SQLAlchemy
compiles each statement once (positional `$n` SQL and the bind processors of
its parameters) and asyncpg runs it on a connection from an `asyncpg` pool
sized like the short-read pool, with the same connect arguments as the
engine's (the URL's query, TLS included; the connect timeout; behind a
pooler, no named statements).

* No pre-ping: a connection found dead by the read itself (closed, or an
  interface or socket error) is dropped, every idle connection of the pool
  is replaced (a dead one usually means the server restarted), and the read
  is run once more on a fresh one. A second failure is the call's.
* The deadline is held by cancelling the read (`engine.cancel_after`): asyncpg
  then cancels the query on the server before the connection is reused.
* Errors come back as SQLAlchemy would have raised them (`DBAPIError`
  wrapping the dialect's translation of asyncpg's exception), so that
  `dialect.classify`, the status a call ends with and its details are the
  same on either path; a wait for a free connection past the pool timeout is
  SQLAlchemy's pool `TimeoutError`.
* A planned read (`engine.direct_read`: a ReadFlows page) of one statement
  runs here too, its statement compiled once per SQLAlchemy cache key and
  bound per call (`db.driver_sql`); a page with its total (two statements,
  one snapshot) keeps SQLAlchemy's REPEATABLE READ transaction.
* Rows are asyncpg's records: the values the SQLAlchemy path gives for the
  same statement (its columns have no result conversion), unpacked by
  position and equal as tuples.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import TYPE_CHECKING, Any

import asyncpg
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url

from flowservice_server.db.driver_sql import CompiledShapes, FixedStatements, answer_of, bound

if TYPE_CHECKING:
    from collections.abc import Sequence

    import sqlalchemy as sa
    from sqlalchemy.engine import Dialect

    from flowservice_server.config import DatabaseSettings
    from flowservice_server.db.engine import DirectPlan

#: How long closing waits for reads still running before it drops their connections.
CLOSE_TIMEOUT = 5.0

#: `DirectReads.read_plan`: this plan is not for the direct path.
NOT_DIRECT = object()

#: Connect arguments of SQLAlchemy's asyncpg dialect that asyncpg itself does not take.
_SQLALCHEMY_ONLY = ("prepared_statement_cache_size", "prepared_statement_name_func")


def pool_arguments(settings: DatabaseSettings, dialect: Dialect) -> dict[str, Any]:
    """`asyncpg.create_pool`'s arguments: the engine's connect arguments, the pool's size."""
    _, arguments = dialect.create_connect_args(make_url(settings.url))
    arguments["timeout"] = settings.connect_timeout
    if settings.behind_pooler:
        arguments["statement_cache_size"] = 0  # unnamed statements, prepared where they run
    for name in _SQLALCHEMY_ONLY:
        arguments.pop(name, None)
    return {
        **arguments,
        "min_size": 0,
        "max_size": settings.pool_size,
        "max_inactive_connection_lifetime": settings.pool_recycle,
        "reset": _nothing_to_reset,
    }


async def _nothing_to_reset(connection: asyncpg.Connection) -> None:
    """A short read leaves nothing behind on its connection (asyncpg would reset
    session state with one more round trip per read)."""


class DirectReads:
    """Short reads marked with their statement, run on asyncpg; see the module's docstring."""

    def __init__(self, settings: DatabaseSettings, dialect: Dialect) -> None:
        self._dialect = dialect
        self._arguments = pool_arguments(settings, dialect)
        self._pool_timeout = settings.pool_timeout
        self._pool: asyncpg.Pool | None = None
        self._closed = False
        self._opening = asyncio.Lock()
        #: Short reads' statements, compiled once each.
        self._fixed = FixedStatements(dialect)
        #: Planned reads' statements (pages), compiled by SQLAlchemy cache key.
        self._shapes = CompiledShapes(dialect)
        #: "direct": short reads answered; "plan": planned reads answered;
        #: "retried": reads run again on a fresh connection.
        self.outcomes: Counter[str] = Counter()

    async def read(self, statement: sa.Select[Any], answer: str, values: dict[str, Any]) -> Any:
        """The statement's answer ("row": the row or None; "count": an int).

        The caller bounds it by the call's deadline (`cancel_after`).
        """
        sql, parameters = self._fixed.bind(statement, values)
        rows = await self._fetch(sql, list(parameters))
        self.outcomes["direct"] += 1
        return answer_of(rows, answer)

    async def read_plan(self, plan: DirectPlan) -> Any:
        """A planned read of one statement (a ReadFlows page without its total): its answer,
        or `NOT_DIRECT` when the plan is not for this path.

        A plan of several statements needs one snapshot (a REPEATABLE READ
        transaction), and a statement whose rows SQLAlchemy would convert
        cannot skip it: both keep the SQLAlchemy path.
        """
        if len(plan.statements) != 1:
            return NOT_DIRECT
        statement, values = plan.statements[0]
        cache_key = statement._generate_cache_key()  # SQLAlchemy's own key
        compiled = None if cache_key is None else self._shapes.get(statement, cache_key)
        if cache_key is None or compiled is None:
            return NOT_DIRECT
        sql, parameters = bound(compiled, cache_key, values)
        rows = await self._fetch(sql, list(parameters))
        self.outcomes["plan"] += 1
        return plan.finish([rows])

    async def _fetch(self, sql: str, parameters: list[Any]) -> list[Any]:
        pool = self._pool or await self._open()
        for attempt in (1, 2):
            connection = await self._acquire(pool)
            try:
                rows: list[Any] = await connection.fetch(sql, *parameters)
                return rows
            except Exception as error:
                if attempt == 1 and dead(error, connection):
                    self.outcomes["retried"] += 1
                    await pool.expire_connections()
                    continue
                raise self._as_sqlalchemy(error, sql, parameters, connection) from error
            finally:
                await pool.release(connection)
        raise AssertionError("not reached: the second attempt returns or raises")

    async def _acquire(self, pool: asyncpg.Pool) -> asyncpg.Connection:
        """A connection; waiting past the pool timeout is SQLAlchemy's pool TimeoutError."""
        try:
            async with asyncio.timeout(self._pool_timeout) as waiting:
                connection: asyncpg.Connection = await pool.acquire()
                return connection
        except TimeoutError as error:
            if waiting.expired():
                raise sa_exc.TimeoutError(
                    f"no free short-read connection after {self._pool_timeout:.2f}s"
                ) from error
            raise  # asyncpg's connect timeout, as SQLAlchemy lets it through
        except Exception as error:
            raise self._as_sqlalchemy(error, None, None, None) from error

    async def _open(self) -> asyncpg.Pool:
        async with self._opening:
            if self._closed:  # a pool opened now would never be closed
                raise ConnectionError("the database is closed")
            if self._pool is None:
                self._pool = await asyncpg.create_pool(**self._arguments)
            return self._pool

    def _as_sqlalchemy(
        self,
        error: Exception,
        sql: str | None,
        parameters: list[Any] | None,
        connection: asyncpg.Connection | None,
    ) -> Exception:
        invalidated = connection is not None and _closed(connection)
        return as_sqlalchemy(error, self._dialect, sql, parameters, invalidated=invalidated)

    async def close(self) -> None:
        self._closed = True
        pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await pool.close()
        except TimeoutError:
            pool.terminate()


def as_sqlalchemy(
    error: Exception,
    dialect: Dialect,
    sql: str | None,
    parameters: Sequence[Any] | None,
    *,
    invalidated: bool,
) -> Exception:
    """`error` as SQLAlchemy's asyncpg dialect raises it; others (OSError…) as they are."""
    dbapi = dialect.loaded_dbapi
    translate = dbapi._asyncpg_error_translate  # the dialect's own map
    for kind in type(error).__mro__:
        if kind in translate:
            translated = translate[kind](error.args[0] if error.args else "", error)
            translated.__cause__ = error
            wrapped: Exception = sa_exc.DBAPIError.instance(
                sql,
                tuple(parameters) if parameters is not None else None,
                translated,
                dbapi.Error,
                connection_invalidated=invalidated,
            )
            return wrapped
    return error


def dead(error: Exception, connection: asyncpg.Connection) -> bool:
    """The connection failed, not the read: a fresh connection may answer it.

    The call's deadline (a TimeoutError, which is an OSError) is not a dead connection.
    """
    if isinstance(error, TimeoutError):
        return False
    lost = (asyncpg.InterfaceError, asyncpg.PostgresConnectionError, OSError)
    return isinstance(error, lost) or _closed(connection)


def _closed(connection: asyncpg.Connection) -> bool:
    """Whether the connection is gone; the pool takes back one that closed under a read."""
    try:
        return bool(connection.is_closed())
    except asyncpg.InterfaceError:  # released to the pool when it closed
        return True
