"""`flowservice indexes add|drop`: the managed schema's indexes, on a Prefect server's database.

Each test builds Prefect 3.9.1's own schema (its dumped DDL) and runs the
command as a real process. What `add` creates must be exactly what the
migrations create, and `drop` must leave Prefect's schema as it was.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.helpers import run_sync
from tests.postgres import admin, prefect_schema_statements
from tests.processes import run

PREFECT_SQLITE = Path(__file__).parent / "data" / "prefect-3.9.1" / "schema-sqlite.sql"
#: The indexes the migrations add beyond Prefect's schema, per backend.
OURS = {
    "sqlite": {
        "ix_flow_run__state_type_coalesce_start_time_flow_id",
        "ix_flow_run__state_type_flow_id",
        "ix_flow_run__flow_id_start_time_id_state_type",
    },
    "postgresql": {
        "ix_flow_run__state_type_coalesce_start_time_flow_id",
        "ix_flow_run__state_type_flow_id",
        "ix_flow__tags",
        "ix_flow_run__tags",
        "ix_deployment__tags",
        "ix_flow_run__flow_id_start_time_id_state_type",
    },
}


def _indexes(url: str) -> dict[str, str]:
    """Every index of the database: name -> its definition, as the database states it."""
    if url.startswith("sqlite"):
        with sqlite3.connect(str(sa.make_url(url).database)) as database:
            rows = database.execute(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
            ).fetchall()
        return {name: re.sub(r"\s+", " ", sql) for name, sql in rows}
    (rows,) = run_sync(
        admin(url, "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'")
    )
    return {str(name): str(definition) for name, definition in rows}


@pytest.fixture
def prefect_url(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> str:
    """An empty database of `backend` with Prefect 3.9.1's schema, as its migrations leave it."""
    if backend == "sqlite":
        path = tmp_path / "prefect.db"
        with sqlite3.connect(path) as database:
            database.executescript(PREFECT_SQLITE.read_text())
        return f"sqlite+aiosqlite:///{path}"
    url: str = request.getfixturevalue("scratch_postgres")
    run_sync(admin(url, *prefect_schema_statements()))
    return url


async def flowservice_indexes(action: str, url: str, cwd: Path) -> tuple[int, str]:
    return await run(["indexes", action, "--database-url", url], cwd, {})


async def test_add_gives_a_prefect_database_the_managed_schemas_indexes(
    database_url: str, backend: str, prefect_url: str, tmp_path: Path
) -> None:
    prefects = _indexes(prefect_url)
    assert not OURS[backend] & set(prefects)
    code, output = await flowservice_indexes("add", prefect_url, tmp_path)
    assert code == 0, output
    assert f"added {len(OURS[backend])} index(es)" in output
    after = _indexes(prefect_url)
    managed = _indexes(database_url)
    # Exactly the migrations' definitions, and nothing of Prefect's changed.
    assert after == prefects | {name: managed[name] for name in OURS[backend]}


async def test_add_twice_finds_nothing_to_do_and_drop_restores_prefects_schema(
    backend: str, prefect_url: str, tmp_path: Path
) -> None:
    prefects = _indexes(prefect_url)
    for expected in ("added", "nothing to do"):
        code, output = await flowservice_indexes("add", prefect_url, tmp_path)
        assert (code, expected in output) == (0, True), output
    code, output = await flowservice_indexes("drop", prefect_url, tmp_path)
    assert code == 0, output
    assert f"dropped {len(OURS[backend])} index(es)" in output
    assert _indexes(prefect_url) == prefects


def _create(url: str, sql: str) -> None:
    if url.startswith("sqlite"):
        with sqlite3.connect(str(sa.make_url(url).database)) as database:
            database.execute(sql)
    else:
        run_sync(admin(url, sql))


async def test_add_replaces_an_index_an_earlier_version_added(
    backend: str, prefect_url: str, tmp_path: Path
) -> None:
    """0006 replaced 0005's latest-run index: `add` on a database that has the old one (from an
    earlier `flowservice indexes add`) creates the new one and drops the old; `drop` drops it."""
    prefects = _indexes(prefect_url)
    retired = "ix_flow_run__flow_id_start_time_id"
    _create(prefect_url, f"CREATE INDEX {retired} ON flow_run (flow_id, start_time, id)")
    code, output = await flowservice_indexes("add", prefect_url, tmp_path)
    assert code == 0, output
    assert set(_indexes(prefect_url)) == set(prefects) | OURS[backend]
    _create(prefect_url, f"CREATE INDEX {retired} ON flow_run (flow_id, start_time, id)")
    code, output = await flowservice_indexes("drop", prefect_url, tmp_path)
    assert code == 0, output
    assert _indexes(prefect_url) == prefects


async def test_a_managed_database_is_refused_unchanged(database_url: str, tmp_path: Path) -> None:
    before = _indexes(database_url)
    code, output = await flowservice_indexes("drop", database_url, tmp_path)
    assert code == 1
    assert "cannot change indexes: this database is FlowService's own" in output
    assert "Traceback" not in output
    assert _indexes(database_url) == before


async def test_no_sqlite_file_is_created_where_there_was_none(tmp_path: Path) -> None:
    missing = tmp_path / "typo.db"
    code, output = await flowservice_indexes("add", f"sqlite+aiosqlite:///{missing}", tmp_path)
    assert code == 1
    assert f"there is no SQLite database at {missing}" in output
    assert not missing.exists()
