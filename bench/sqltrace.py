"""Run `flowservice` with every SQLite statement (and its parameters) appended to a file.

Usage: python sqltrace.py TRACE.jsonl serve ARGS...

Why: the floor must replay exactly the SQL FlowService sends, whatever its
code looks like today (another engineer is changing it). Hooking Python's
sqlite3 module sees the final statements and bound values, below SQLAlchemy
and any statement cache. Only for capturing; never used while measuring.
"""

from __future__ import annotations

import datetime
import json
import sqlite3
import sqlite3.dbapi2
import sys
import threading
import uuid
from typing import Any

_lock = threading.Lock()
_out = open(sys.argv[1], "a", buffering=1)  # noqa: SIM115  # open for the process's lifetime


def _log(sql: str, parameters: Any, many: bool = False, dialect: str = "sqlite") -> None:
    if isinstance(parameters, dict):
        params: Any = {"named": parameters}
    elif many:
        params = {"many": [list(p) for p in parameters]}
    else:
        params = list(parameters)
    line = json.dumps({"dialect": dialect, "sql": sql, "params": params}, default=repr)
    with _lock:
        _out.write(line + "\n")


class TracingCursor(sqlite3.Cursor):
    def execute(self, sql: str, parameters: Any = (), /) -> TracingCursor:
        _log(sql, parameters)
        return super().execute(sql, parameters)

    def executemany(self, sql: str, parameters: Any, /) -> TracingCursor:
        parameters = list(parameters)
        _log(sql, parameters, many=True)
        return super().executemany(sql, parameters)


class TracingConnection(sqlite3.Connection):
    def cursor(self, factory: Any = TracingCursor) -> Any:
        return super().cursor(factory)

    def execute(self, sql: str, parameters: Any = (), /) -> Any:
        return self.cursor().execute(sql, parameters)


_connect = sqlite3.connect


def _tracing_connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
    kwargs.setdefault("factory", TracingConnection)
    connection: sqlite3.Connection = _connect(*args, **kwargs)
    return connection


sqlite3.connect = _tracing_connect  # type: ignore[assignment]
sqlite3.dbapi2.connect = _tracing_connect  # type: ignore[assignment]


def _tagged(value: Any) -> Any:
    """A PostgreSQL parameter as JSON that `floor.py` can turn back into the value."""
    if isinstance(value, datetime.datetime):
        return {"datetime": value.isoformat()}
    if isinstance(value, uuid.UUID):
        return {"uuid": str(value)}
    if isinstance(value, list | tuple):
        return [_tagged(item) for item in value]
    return value


def _trace_asyncpg() -> None:
    """Log the statements asyncpg runs (SQLAlchemy's prepared ones and plain ones)."""
    try:
        import asyncpg.connection  # noqa: PLC0415
        import asyncpg.prepared_stmt  # noqa: PLC0415
    except ImportError:
        return
    prepared_fetch = asyncpg.prepared_stmt.PreparedStatement.fetch

    async def fetch(self: Any, *args: Any, **kwargs: Any) -> Any:
        _log(self.get_query(), [_tagged(arg) for arg in args], dialect="postgresql")
        return await prepared_fetch(self, *args, **kwargs)

    plain_execute = asyncpg.connection.Connection._execute

    async def execute(self: Any, query: str, args: Any, *rest: Any, **kwargs: Any) -> Any:
        _log(query, [_tagged(arg) for arg in args], dialect="postgresql")
        return await plain_execute(self, query, args, *rest, **kwargs)

    asyncpg.prepared_stmt.PreparedStatement.fetch = fetch
    asyncpg.connection.Connection._execute = execute


_trace_asyncpg()

if __name__ == "__main__":
    from flowservice_server.cli import main

    raise SystemExit(main(sys.argv[2:]))
