"""SQL that differs between SQLite and PostgreSQL, and what each one's errors mean.

Callers build dialect-neutral expressions (`tags_have_all(column, values)`);
the SQL each dialect gets is decided here, at compile time, so that the
filter compiler never asks which database it runs on. `classify` names what
a database error means for the call that met it, for both backends.

The other differences live beside what they concern: column types that
store differently in `db.types`, each backend's connections and units of
work in `db.sqlite_engine` and `db.postgres_engine`, the migration lock in
`db.migrate`, and DDL that differs in the migrations themselves.
"""

from __future__ import annotations

import enum
import json
import re
import sqlite3
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

if TYPE_CHECKING:
    from sqlalchemy.engine import Dialect
    from sqlalchemy.sql.compiler import SQLCompiler
    from sqlalchemy.sql.dml import Insert
    from sqlalchemy.types import TypeEngine

# --- inserts that ignore a unique conflict -----------------------------------


def insert_ignoring_conflict(
    dialect_name: str, table: sa.Table, conflict_columns: Sequence[sa.Column[Any]]
) -> Insert:
    """INSERT … ON CONFLICT (columns) DO NOTHING, in the dialect's own construct."""
    build = postgresql.insert if dialect_name == "postgresql" else sqlite.insert
    return build(table).on_conflict_do_nothing(index_elements=conflict_columns)


# --- JSON tag operators ------------------------------------------------------


class StringList(sa.TypeDecorator[Sequence[str]]):
    """A bound list of strings: a text[] array on PostgreSQL, JSON array text on SQLite."""

    impl = sa.String
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(postgresql.ARRAY(sa.String()))
        return dialect.type_descriptor(sa.String())

    def process_bind_param(self, value: Sequence[str] | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        return list(value) if dialect.name == "postgresql" else json.dumps(list(value))


def _string_list(values: Sequence[str]) -> sa.BindParameter[Sequence[str]]:
    return sa.bindparam(None, list(values), type_=StringList())


class tags_have_all(FunctionElement[bool]):  # noqa: N801  # SQL function style
    """The JSON array column holds every one of the strings (a superset test).

    On SQLite, a text search for each needle's JSON form comes first: it
    rules out most rows before the exact test unpacks their arrays with
    json_each (about 4x faster). It is only a pre-filter, so it may keep rows
    the exact test then drops, never the reverse: it is used only for tags
    whose JSON form every serializer writes alike.
    """

    type = sa.Boolean()
    name = "tags_have_all"
    inherit_cache = True

    def __init__(self, column: sa.ColumnElement[Any], values: Sequence[str]) -> None:
        # The hints are clauses of their own, so their number is part of the
        # statement's shape, and of its cache key.
        forms = [form for form in map(json.dumps, dict.fromkeys(values)) if _plain(form)]
        hints = [sa.bindparam(None, form, type_=sa.String()) for form in forms[:_MAX_HINTS]]
        super().__init__(column, _string_list(values), *hints)


#: A few needles rule out nearly every row; each hint is one more AND, and
#: SQLite refuses an expression deeper than 1,000 terms.
_MAX_HINTS = 8


#: Characters every JSON serializer writes as themselves (no \u escapes, no
#: HTML-safe escaping of < > &, no escaped solidus).
_PLAIN_TAG = re.compile(r'"[A-Za-z0-9 _.:@+=,;!#$%()*?^|~\[\]{}-]*"')


def _plain(json_text: str) -> bool:
    return _PLAIN_TAG.fullmatch(json_text) is not None


class tags_have_any(FunctionElement[bool]):  # noqa: N801  # SQL function style
    """The JSON array column holds at least one of the strings; none for an empty list."""

    type = sa.Boolean()
    name = "tags_have_any"
    inherit_cache = True

    def __init__(self, column: sa.ColumnElement[Any], values: Sequence[str]) -> None:
        super().__init__(column, _string_list(values))


class tags_are_empty(FunctionElement[bool]):  # noqa: N801  # SQL function style
    """The JSON array column is the empty array (Prefect's `tags.is_null_`)."""

    type = sa.Boolean()
    name = "tags_are_empty"
    inherit_cache = True


def _args(element: FunctionElement[Any], compiler: SQLCompiler, **kw: Any) -> list[str]:
    return [compiler.process(arg, **kw) for arg in element.clauses]


@compiles(tags_have_all, "sqlite")
def _sqlite_tags_have_all(element: tags_have_all, compiler: SQLCompiler, **kw: Any) -> str:
    column, needles, *hints = _args(element, compiler, **kw)
    # Compiled fragments and bound parameters only: no value is formatted in.
    exact = (
        f"NOT EXISTS (SELECT 1 FROM json_each({needles}) AS needle "  # noqa: S608
        f"WHERE needle.value NOT IN (SELECT tag.value FROM json_each({column}) AS tag))"
    )
    if not hints:
        return exact
    # CASE, not AND: SQLAlchemy compares the whole test with 1, and SQLite
    # then runs the subquery for every row, even where an instr() is false.
    prefilter = " AND ".join(f"instr({column}, {hint}) > 0" for hint in hints)
    return f"CASE WHEN {prefilter} THEN {exact} ELSE 0 END"


@compiles(tags_have_any, "sqlite")
def _sqlite_tags_have_any(element: tags_have_any, compiler: SQLCompiler, **kw: Any) -> str:
    column, needles = _args(element, compiler, **kw)
    # Compiled fragments and bound parameters only: no value is formatted in.
    return (
        f"EXISTS (SELECT 1 FROM json_each({column}) AS tag "  # noqa: S608
        f"WHERE tag.value IN (SELECT needle.value FROM json_each({needles}) AS needle))"
    )


@compiles(tags_are_empty, "sqlite")
def _sqlite_tags_are_empty(element: tags_are_empty, compiler: SQLCompiler, **kw: Any) -> str:
    # Every writer (Prefect's and ours) serialises an empty list as exactly "[]".
    (column,) = _args(element, compiler, **kw)
    return f"{column} = '[]'"


@compiles(tags_have_all, "postgresql")
def _pg_tags_have_all(element: tags_have_all, compiler: SQLCompiler, **kw: Any) -> str:
    # The GIN index needs no pre-filter: the hints are left out, uncompiled.
    column, needles = (compiler.process(arg, **kw) for arg in list(element.clauses)[:2])
    return f"({column} ?& {needles})"


@compiles(tags_have_any, "postgresql")
def _pg_tags_have_any(element: tags_have_any, compiler: SQLCompiler, **kw: Any) -> str:
    column, needles = _args(element, compiler, **kw)
    return f"({column} ?| {needles})"


@compiles(tags_are_empty, "postgresql")
def _pg_tags_are_empty(element: tags_are_empty, compiler: SQLCompiler, **kw: Any) -> str:
    (column,) = _args(element, compiler, **kw)
    return f"({column} = '[]'::jsonb)"


# --- failures ------------------------------------------------------------------


class Failure(enum.Enum):
    """What a database error means for the call that met it."""

    UNAVAILABLE = "the database is busy or unreachable; a retry can succeed"
    DEADLINE = "the statement was cancelled because the call's deadline expired"
    BAD_VALUE = "the database cannot store or compare a value of the request"


_SQLITE_BUSY = ("database is locked", "database table is locked", "unable to open database")
#: SQLSTATE classes and codes after which a retry can succeed: connection
#: exceptions, insufficient resources, admin/crash shutdown and "cannot
#: connect now", serialization failures and deadlocks.
_PG_TRANSIENT = ("08", "53", "57P01", "57P02", "57P03", "40001", "40P01")
_PG_QUERY_CANCELED = "57014"
#: Data exceptions (NUL in text, say) and program limits (a name too long for
#: its unique index, say): the request's values, not the server, are at fault.
_PG_BAD_VALUE = ("22", "54")


def classify(error: BaseException) -> Failure | None:
    """The meaning of a database error, or None when it is not one we can name."""
    if isinstance(error, sa_exc.TimeoutError | OSError):  # no pooled connection; refused
        return Failure.UNAVAILABLE
    if not isinstance(error, sa_exc.DBAPIError):
        return None
    if error.connection_invalidated or error.statement is None:  # lost, or never made
        return Failure.UNAVAILABLE
    if isinstance(error.orig, sqlite3.OperationalError):
        return Failure.UNAVAILABLE if str(error.orig).startswith(_SQLITE_BUSY) else None
    return _by_sqlstate(getattr(error.orig, "sqlstate", None) or "")


def _by_sqlstate(sqlstate: str) -> Failure | None:
    if sqlstate.startswith(_PG_TRANSIENT):
        return Failure.UNAVAILABLE
    if sqlstate == _PG_QUERY_CANCELED:
        return Failure.DEADLINE
    if sqlstate.startswith(_PG_BAD_VALUE):
        return Failure.BAD_VALUE
    return None


def failure_detail(error: BaseException) -> str:
    """The database's own one-line reason, without statement or parameters."""
    original = error.orig if isinstance(error, sa_exc.DBAPIError) else error
    text = str(original).splitlines()[0] if str(original) else type(original).__name__
    return text.removeprefix("(sqlalchemy.dialects.postgresql.asyncpg.Error) ")


def is_busy(error: BaseException) -> bool:
    """SQLite could not get the write lock within the busy timeout."""
    original = getattr(error, "orig", None)
    return isinstance(original, sqlite3.OperationalError) and str(original).startswith(
        _SQLITE_BUSY[:2]
    )
