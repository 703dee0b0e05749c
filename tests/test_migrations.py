"""Migrations: run on start, only once however many servers start, never on a Prefect database."""

from __future__ import annotations

import asyncio
import sqlite3
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy.ext.asyncio import create_async_engine

from flowservice_server.config import DatabaseSettings
from flowservice_server.db.factory import open_database
from flowservice_server.db.migrate import ForeignSchemaError, alembic_config

HEAD = "0007"

if TYPE_CHECKING:
    from pathlib import Path


def _tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as database:
        return {
            row[0] for row in database.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }


async def test_migrating_an_empty_file_creates_the_six_tables(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    database = await open_database(
        DatabaseSettings(url=f"sqlite+aiosqlite:///{path}"), migrate=True
    )
    await database.close()
    assert _tables(path) == {
        "flow",
        "flow_run",
        "task_run",
        "deployment",
        "work_queue",
        "work_pool",
        "flowservice_alembic_version",
        # WatchFlows' change capture (0007).
        "flowservice_flow_change",
        "flowservice_flow_change_state",
    }
    with sqlite3.connect(path) as connection:
        versions = connection.execute("SELECT version_num FROM flowservice_alembic_version")
        assert versions.fetchall() == [(HEAD,)]


async def test_servers_starting_together_migrate_once(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"
    databases = await asyncio.gather(
        *(open_database(DatabaseSettings(url=url), migrate=True) for _ in range(4))
    )
    for database in databases:
        await database.close()
    assert "flow" in _tables(tmp_path / "shared.db")


async def test_a_second_start_finds_nothing_to_do(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'twice.db'}"
    for _ in range(2):
        database = await open_database(DatabaseSettings(url=url), migrate=True)
        await database.close()


@pytest.mark.parametrize(
    ("existing", "message"),
    [
        ("CREATE TABLE alembic_version (version_num VARCHAR(32))", "created by a Prefect server"),
        ("CREATE TABLE flow (id CHAR(36))", "did not create them"),
    ],
)
async def test_a_foreign_schema_is_refused_untouched(
    tmp_path: Path, existing: str, message: str
) -> None:
    path = tmp_path / "foreign.db"
    with sqlite3.connect(path) as connection:
        connection.execute(existing)
    before = _tables(path)
    with pytest.raises(ForeignSchemaError, match=message):
        await open_database(DatabaseSettings(url=f"sqlite+aiosqlite:///{path}"), migrate=True)
    assert _tables(path) == before


async def test_downgrade_and_upgrade_round_trip(database_url: str) -> None:
    engine = create_async_engine(database_url)

    def cycle(connection: sa.Connection) -> None:
        command.downgrade(alembic_config(connection), "base")
        command.upgrade(alembic_config(connection), "head")

    try:
        async with engine.connect() as connection:
            await connection.run_sync(cycle)
            await connection.commit()
        async with engine.connect() as connection:
            tables = await connection.run_sync(lambda c: set(sa.inspect(c).get_table_names()))
        assert {"flow", "flow_run", "task_run", "deployment", "work_queue", "work_pool"} <= tables
    finally:
        await engine.dispose()
