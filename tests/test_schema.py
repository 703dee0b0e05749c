"""The managed schema is Prefect 3.9.1's, and rows are stored in Prefect's formats.

See docs/semantics.md#storage.

`data/prefect-3.9.1/schema-sqlite.sql` is the schema a Prefect 3.9.1 server's
own migrations produce (sqlite3 `.schema`, alembic head 27d8f4e1a6c9).
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from flowservice.client import FlowClient

PREFECT_SQLITE = Path(__file__).parent / "data" / "prefect-3.9.1" / "schema-sqlite.sql"
TABLES = ("flow", "flow_run", "task_run", "deployment", "work_queue", "work_pool")
#: Tables outside the six; FlowService's schema has no foreign keys to them.
OUTSIDE = {"flow_run_state", "block_document", "concurrency_limit_v2"}
#: Indexes FlowService adds for its filters (migrations 0002, 0004 and 0006), and nothing else.
OUR_INDEXES = {
    "flow_run": {
        "ix_flow_run__state_type_coalesce_start_time_flow_id",
        "ix_flow_run__state_type_flow_id",
        "ix_flow_run__flow_id_start_time_id_state_type",
    }
}


def _squash(sql: str | None) -> str | None:
    return None if sql is None else re.sub(r"\s+", "", sql)


def _describe(database: sqlite3.Connection, table: str) -> dict[str, Any]:
    columns = [
        (name, kind, notnull, _squash(default), pk)
        for _, name, kind, notnull, default, pk, _hidden in database.execute(
            f"PRAGMA table_xinfo({table})"
        )
    ]
    indexes = {}
    for _, name, unique, origin, partial in database.execute(f"PRAGMA index_list({table})"):
        if origin != "c":  # implicit indexes of PRIMARY KEY / UNIQUE constraints
            continue
        (sql,) = database.execute(
            "SELECT sql FROM sqlite_master WHERE name = ?", (name,)
        ).fetchone()
        indexes[name] = (unique, partial, _squash(sql.lower().replace(" on ", " ON ")))
    foreign_keys = {
        (row[2], row[3], row[4], row[6])
        for row in database.execute(f"PRAGMA foreign_key_list({table})")
    }
    return {"columns": columns, "indexes": indexes, "foreign_keys": foreign_keys}


@pytest.fixture(scope="module")
def prefect() -> sqlite3.Connection:
    database = sqlite3.connect(":memory:")
    database.executescript(PREFECT_SQLITE.read_text())
    return database


@pytest.mark.parametrize("table", TABLES)
def test_sqlite_tables_match_prefect(
    prefect: sqlite3.Connection, sqlite_template: Path, table: str
) -> None:
    ours = _describe(sqlite3.connect(sqlite_template), table)
    theirs = _describe(prefect, table)
    assert ours["columns"] == theirs["columns"]
    extra = OUR_INDEXES.get(table, set())
    assert {k: v for k, v in ours["indexes"].items() if k not in extra} == theirs["indexes"]
    assert extra <= set(ours["indexes"])
    assert ours["foreign_keys"] == {fk for fk in theirs["foreign_keys"] if fk[0] not in OUTSIDE}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_sqlite_rows_are_stored_in_prefect_formats(
    client: FlowClient, database_url: str
) -> None:
    created_flow, _ = await client.create_flow("ü", tags=["x", "ü"], labels={"env": "dév", "n": 1})
    await client.create_flow("plain")
    path = database_url.removeprefix("sqlite+aiosqlite:///")
    with sqlite3.connect(path) as database:
        rows = database.execute(
            "SELECT id, created, updated, tags, labels, typeof(labels) FROM flow ORDER BY name"
        ).fetchall()
    (identifier, created, updated, tags, labels, _), (*_, plain_labels, plain_type) = (
        rows[1],
        rows[0],
    )
    assert identifier == created_flow.id
    assert len(identifier) == 36
    assert identifier == identifier.lower()
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}", created)
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}", updated)
    assert tags == '["x", "\\u00fc"]'
    assert labels == '{"env": "d\\u00e9v", "n": 1}'  # keys sorted: a protobuf map has no order
    assert (plain_labels, plain_type) == (None, "null")
