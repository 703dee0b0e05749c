"""Core statements run on the sqlite3 connection itself, each compiled by SQLAlchemy once.

For a one-row write, SQLAlchemy's execution of an already compiled statement
(cache lookup, execution context, parameter processing, result wrapping)
costs more than SQLite's work. `DriverConnection` is the part of
`sqlalchemy.Connection` that the `short_write` model functions use (`execute`
with one dictionary of parameters, `dialect`), done as SQLAlchemy does it:
the same SQL (compiled with the parameters' names as column keys, as
SQLAlchemy compiles a DML statement for its parameters), the same bind
conversions in the same positional order. The rows are the driver's tuples,
which is what SQLAlchemy returns for the response columns (none has a
result conversion).

Transactions are the driver's: sqlite3 opens one before the first write (the
connection's isolation level) and the caller commits or rolls back on it.
An operational error comes back SQLAlchemy-wrapped, as from SQLAlchemy; any
other error of the driver or of a bind conversion, and a statement this module
does not handle, is `DriverError`: the caller runs the unit through SQLAlchemy
instead, which reports it as usual.
"""

from __future__ import annotations

import sqlite3
import time
from typing import TYPE_CHECKING, Any

from sqlalchemy import exc as sa_exc

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    import sqlalchemy as sa
    from sqlalchemy.engine import Dialect

_MISSING = object()


class DriverError(Exception):
    """The driver failed otherwise than operationally, or the statement is not handled here."""


class _Compiled:
    """One statement's SQL, and for each positional parameter: its key, fixed value, conversion."""

    def __init__(self, statement: sa.Executable, keys: Sequence[str], dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect, column_keys=list(keys))  # type: ignore[attr-defined]  # every Core statement compiles
        if compiled.positiontup is None and compiled.binds:
            raise DriverError("not a positional statement")
        self.sql: str = compiled.string
        self.parameters: list[tuple[str, Any, Any]] = []
        for name in compiled.positiontup or ():
            bind = compiled.binds[name]
            if bind.expanding:
                raise DriverError("expanding parameters are not handled here")
            fixed = _MISSING
            if bind.key not in keys:
                if bind.required or bind.callable is not None:
                    raise DriverError(f"no value for the parameter {bind.key!r}")
                fixed = bind.value
            process = bind.type.dialect_impl(dialect).bind_processor(dialect)
            self.parameters.append((bind.key, fixed, process))

    def values(self, given: Mapping[str, Any]) -> tuple[Any, ...]:
        values = []
        for key, fixed, process in self.parameters:
            value = given[key] if fixed is _MISSING else fixed
            values.append(value if process is None else process(value))
        return tuple(values)


class DriverResult:
    """A statement's rows (all fetched) and rowcount."""

    def __init__(self, rows: list[tuple[Any, ...]], rowcount: int) -> None:
        self._rows = rows
        self.rowcount = rowcount

    def one_or_none(self) -> tuple[Any, ...] | None:
        if len(self._rows) > 1:
            raise sa_exc.MultipleResultsFound("more than one row where one or none was required")
        return self._rows[0] if self._rows else None

    def one(self) -> tuple[Any, ...]:
        if len(self._rows) != 1:
            raise (sa_exc.MultipleResultsFound if self._rows else sa_exc.NoResultFound)(
                "exactly one row was required"
            )
        return self._rows[0]


class DriverConnection:
    """`execute` and `dialect`, on one sqlite3 connection; compiled statements are kept."""

    def __init__(self, driver: sqlite3.Connection, dialect: Dialect) -> None:
        self.driver = driver
        self.dialect = dialect
        self._compiled: dict[tuple[sa.Executable, tuple[str, ...]], _Compiled] = {}
        #: CPU seconds this thread spent compiling (once per shape), which a budget
        #: for the statements' own work leaves out.
        self.compiling = 0.0

    def execute(self, statement: sa.Executable, parameters: Mapping[str, Any]) -> DriverResult:
        keys = tuple(sorted(parameters))
        compiled = self._compiled.get((statement, keys))
        if compiled is None:
            began = time.thread_time()
            compiled = _Compiled(statement, keys, self.dialect)
            self._compiled[statement, keys] = compiled
            self.compiling += time.thread_time() - began
        try:
            values = compiled.values(parameters)
        except Exception as error:  # SQLAlchemy would wrap it (StatementError): let it
            raise DriverError(str(error)) from error
        try:
            cursor = self.driver.execute(compiled.sql, values)
            rows = cursor.fetchall()
        except sqlite3.OperationalError as error:
            raise sa_exc.OperationalError(compiled.sql, values, error) from error
        except sqlite3.Error as error:
            raise DriverError(str(error)) from error
        return DriverResult(rows, cursor.rowcount)
