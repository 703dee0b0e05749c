"""`flowservice serve` as a real process: settings from flags and variables, clean stops."""

from __future__ import annotations

import signal
import sqlite3
from typing import TYPE_CHECKING

import pytest

from flowservice.client import FlowClient
from tests.processes import ServerProcess, run, start

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[ServerProcess]:
    process = await start([], tmp_path, {"FLOWSERVICE_ADDRESS": "127.0.0.1:0"})
    yield process
    if process.process.returncode is None:
        await process.stop(signal.SIGKILL)


async def test_serves_on_a_sqlite_file_in_the_working_directory(
    served: ServerProcess, tmp_path: Path
) -> None:
    async with FlowClient(f"127.0.0.1:{served.port}") as client:
        created_flow, _ = await client.create_flow("from-the-cli")
    assert (tmp_path / "flowservice.db").exists()
    with sqlite3.connect(tmp_path / "flowservice.db") as database:
        assert database.execute("SELECT id FROM flow").fetchall() == [(created_flow.id,)]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_stops_cleanly_on_sigterm_and_sigint(served: ServerProcess, signum: int) -> None:
    assert await served.stop(signum) == 0
    assert any("stopped" in line for line in served.log)
    assert not any("Traceback" in line for line in served.log)


async def test_flags_win_over_variables(tmp_path: Path) -> None:
    database = tmp_path / "chosen.db"
    process = await start(
        ["--address", "127.0.0.1:0", "--database-url", f"sqlite:///{database}"],
        tmp_path,
        {"FLOWSERVICE_ADDRESS": "not-an-address", "FLOWSERVICE_LOG_LEVEL": "DEBUG"},
    )
    assert await process.stop() == 0
    assert database.exists()
    assert any(" DEBUG " in line for line in process.log)


async def test_a_bad_setting_exits_2_naming_flag_and_variable(tmp_path: Path) -> None:
    code, output = await run(["serve"], tmp_path, {"FLOWSERVICE_LOG_LEVEL": "chatty"})
    assert code == 2
    assert "--log-level / FLOWSERVICE_LOG_LEVEL" in output


async def test_serve_help_documents_every_setting(tmp_path: Path) -> None:
    code, output = await run(["serve", "--help"], tmp_path, {})
    assert code == 0
    for name in ("ADDRESS", "DATABASE_URL", "LOG_LEVEL"):
        assert f"FLOWSERVICE_{name}" in output


async def test_a_prefect_database_is_refused_not_migrated(tmp_path: Path) -> None:
    database = tmp_path / "prefect.db"
    with sqlite3.connect(database) as connection:
        connection.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
    code, output = await run(
        ["serve", "--address", "127.0.0.1:0", "--database-url", f"sqlite:///{database}"],
        tmp_path,
        {},
    )
    assert code == 1
    assert "created by a Prefect server" in output
    assert "Traceback" not in output
    with sqlite3.connect(database) as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
    assert tables == {"alembic_version"}


async def test_an_unreachable_database_fails_without_leaking_the_password(tmp_path: Path) -> None:
    url = "postgresql://flows:hunter2@127.0.0.1:1/flows"
    code, output = await run(
        ["serve", "--address", "127.0.0.1:0", "--database-url", url], tmp_path, {}
    )
    assert code == 1
    assert "cannot start" in output
    assert "hunter2" not in output
    assert "Traceback" not in output
