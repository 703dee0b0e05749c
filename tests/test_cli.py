"""`flowservice serve` as a real process: settings from flags and variables, clean stops."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sqlite3
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from flowservice.client import FlowClient

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping

FLOWSERVICE = str(Path(sys.executable).with_name("flowservice"))
LISTENING = re.compile(r"listening on 127\.0\.0\.1:(\d+)")


@dataclass
class Process:
    process: asyncio.subprocess.Process
    port: int
    log: list[str]

    async def stop(self, signum: int = signal.SIGTERM) -> int:
        self.process.send_signal(signum)
        assert self.process.stderr is not None
        rest = await asyncio.wait_for(self.process.stderr.read(), timeout=20)
        self.log += rest.decode().splitlines()
        return await asyncio.wait_for(self.process.wait(), timeout=20)


def _environment(extra: Mapping[str, str]) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("FLOWSERVICE_")}
    return {**environ, **extra}


async def _run(args: list[str], cwd: Path, environ: Mapping[str, str]) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        FLOWSERVICE,
        *args,
        cwd=cwd,
        env=_environment(environ),
        stderr=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
    return await process.wait(), (stdout + stderr).decode()


async def _start(args: list[str], cwd: Path, environ: Mapping[str, str]) -> Process:
    process = await asyncio.create_subprocess_exec(
        FLOWSERVICE,
        "serve",
        *args,
        cwd=cwd,
        env=_environment(environ),
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    log: list[str] = []
    while True:
        line = (await asyncio.wait_for(process.stderr.readline(), timeout=30)).decode()
        if not line:
            raise AssertionError("server exited before listening:\n" + "".join(log))
        log.append(line.rstrip())
        if match := LISTENING.search(line):
            return Process(process, int(match.group(1)), log)


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Process]:
    process = await _start([], tmp_path, {"FLOWSERVICE_ADDRESS": "127.0.0.1:0"})
    yield process
    if process.process.returncode is None:
        await process.stop(signal.SIGKILL)


async def test_serves_on_a_sqlite_file_in_the_working_directory(
    served: Process, tmp_path: Path
) -> None:
    async with FlowClient(f"127.0.0.1:{served.port}") as client:
        created_flow, _ = await client.create_flow("from-the-cli")
    assert (tmp_path / "flowservice.db").exists()
    with sqlite3.connect(tmp_path / "flowservice.db") as database:
        assert database.execute("SELECT id FROM flow").fetchall() == [(created_flow.id,)]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_stops_cleanly_on_sigterm_and_sigint(served: Process, signum: int) -> None:
    assert await served.stop(signum) == 0
    assert any("stopped" in line for line in served.log)
    assert not any("Traceback" in line for line in served.log)


async def test_flags_win_over_variables(tmp_path: Path) -> None:
    database = tmp_path / "chosen.db"
    process = await _start(
        ["--address", "127.0.0.1:0", "--database-url", f"sqlite:///{database}"],
        tmp_path,
        {"FLOWSERVICE_ADDRESS": "not-an-address", "FLOWSERVICE_LOG_LEVEL": "DEBUG"},
    )
    assert await process.stop() == 0
    assert database.exists()
    assert any(" DEBUG " in line for line in process.log)


async def test_a_bad_setting_exits_2_naming_flag_and_variable(tmp_path: Path) -> None:
    code, output = await _run(["serve"], tmp_path, {"FLOWSERVICE_LOG_LEVEL": "chatty"})
    assert code == 2
    assert "--log-level / FLOWSERVICE_LOG_LEVEL" in output


async def test_serve_help_documents_every_setting(tmp_path: Path) -> None:
    code, output = await _run(["serve", "--help"], tmp_path, {})
    assert code == 0
    for name in ("ADDRESS", "DATABASE_URL", "LOG_LEVEL"):
        assert f"FLOWSERVICE_{name}" in output


async def test_a_prefect_database_is_refused_not_migrated(tmp_path: Path) -> None:
    database = tmp_path / "prefect.db"
    with sqlite3.connect(database) as connection:
        connection.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
    code, output = await _run(
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
    code, output = await _run(
        ["serve", "--address", "127.0.0.1:0", "--database-url", url], tmp_path, {}
    )
    assert code == 1
    assert "cannot start" in output
    assert "hunter2" not in output
    assert "Traceback" not in output
