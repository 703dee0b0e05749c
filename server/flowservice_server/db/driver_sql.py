"""SQLAlchemy statements run on a driver directly: compiled once per shape, bound per call.

A read whose statement varies with the request (a ReadFlows page: filters,
sort, token) can still skip SQLAlchemy's execution, which costs more than the
SQL for a page: SQLAlchemy compiles the statement once per cache key (its
shape, whatever its values), and each call puts its own values in the compiled
parameters' places, as SQLAlchemy's execution does. Only statements whose rows
the driver returns as SQLAlchemy would (no column with a result conversion)
are compiled here; the others keep SQLAlchemy's path. The SQLite inline reader
and PostgreSQL's direct reads both run their plans through this.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import exc as sa_exc
from sqlalchemy.sql.compiler import SQLCompiler

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    import sqlalchemy as sa
    from sqlalchemy.engine import Dialect

#: Compiled statements kept (oldest out first).
PLAN_CACHE_SIZE = 500
#: A cached shape whose rows SQLAlchemy would convert: it runs through SQLAlchemy.
_NOT_DIRECT = object()


class CompiledShapes:
    """Statements compiled for one dialect, by SQLAlchemy cache key; bounded."""

    def __init__(self, dialect: Dialect, size: int = PLAN_CACHE_SIZE) -> None:
        self._dialect = dialect
        self._size = size
        self._compiled: dict[Any, SQLCompiler | object] = {}

    def get(self, statement: sa.Select[Any], cache_key: Any) -> SQLCompiler | None:
        """The statement compiled, once per cache key; None: not for the driver."""
        key = cache_key.key
        compiled = self._compiled.get(key)
        if compiled is None:
            compiled = self._compile(statement, cache_key)
            if len(self._compiled) >= self._size:
                del self._compiled[next(iter(self._compiled))]
            self._compiled[key] = compiled
        return compiled if isinstance(compiled, SQLCompiler) else None

    def _compile(self, statement: sa.Select[Any], cache_key: Any) -> SQLCompiler | object:
        """`_NOT_DIRECT` when the driver's rows would differ from SQLAlchemy's."""
        dialect = self._dialect
        compiled = statement.compile(dialect=dialect, cache_key=cache_key)
        if not isinstance(compiled, SQLCompiler) or not compiled.positional:
            return _NOT_DIRECT
        if compiled.literal_execute_params or compiled.schema_translate_map:
            return _NOT_DIRECT
        for column in compiled._result_columns:
            if column.type.dialect_impl(dialect).result_processor(dialect, None) is not None:
                return _NOT_DIRECT  # SQLAlchemy would convert this column's values
        return compiled


class FixedStatements:
    """Statements of one fixed shape each (the short reads' module constants), compiled
    once per statement: the SQL, and per call its positional parameters."""

    def __init__(self, dialect: Dialect) -> None:
        self._dialect = dialect
        #: By statement identity; each entry keeps its statement alive, so that no
        #: other takes its id: the SQL, parameter names and their bind processors.
        self._compiled: dict[int, tuple[str, tuple[str, ...], tuple[Any, ...], object]] = {}

    def bind(
        self, statement: sa.Select[Any], values: Mapping[str, Any]
    ) -> tuple[str, tuple[Any, ...]]:
        compiled = self._compiled.get(id(statement))
        if compiled is None:
            compiled = self._compiled[id(statement)] = (*self._compile(statement), statement)
        sql, names, processors, _ = compiled
        return sql, tuple(
            values[name] if process is None else process(values[name])
            for name, process in zip(names, processors, strict=True)
        )

    def _compile(self, statement: sa.Select[Any]) -> tuple[str, tuple[str, ...], tuple[Any, ...]]:
        dialect = self._dialect
        compiled = statement.compile(dialect=dialect)
        names = tuple(compiled.positiontup or ())
        processors = tuple(
            compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect)
            for name in names
        )
        return compiled.string, names, processors


def answer_of(rows: Sequence[Any], answer: str) -> Any:
    """A short read's answer from its rows, as `engine.short_read` defines it: "count", the
    first column of the one row as an int; "row", the one row or None."""
    if answer == "count":
        return int(rows[0][0])
    if len(rows) > 1:
        raise sa_exc.MultipleResultsFound("more than one row where one or none was required")
    return rows[0] if rows else None


def bound(
    compiled: SQLCompiler, cache_key: Any, values: Mapping[str, Any]
) -> tuple[str, tuple[Any, ...]]:
    """The SQL and positional parameters of one statement of a compiled shape.

    As SQLAlchemy's own execution does: the values of this statement's bound
    parameters (extracted with its cache key) and `values` put in the compiled
    parameters' places, IN lists expanded, each through its type's bind processor.
    """
    parameters = compiled.construct_params(
        values, escape_names=False, extracted_parameters=cache_key.bindparams
    )
    sql = compiled.string
    processors: Mapping[str, Any] = compiled._bind_processors
    positions: Sequence[str] = compiled.positiontup or ()
    if compiled.post_compile_params:  # IN lists: one placeholder per item
        expanded = compiled._process_parameters_for_postcompile(parameters)
        sql = expanded.statement
        processors = {**processors, **expanded.processors}
        positions = expanded.positiontup or ()
    return sql, tuple(
        processors[name](parameters[name]) if name in processors else parameters[name]
        for name in positions
    )
