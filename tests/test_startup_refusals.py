"""A server that refuses to start leaves everything as it found it: a refused SQLite file is
unchanged byte for byte (nothing created beside it), and an address another server holds
is not shared."""

from __future__ import annotations

import socket
import sqlite3
from typing import TYPE_CHECKING

import pytest

from flowservice.client import FlowClient
from tests.processes import run, start

if TYPE_CHECKING:
    from pathlib import Path


def _files(directory: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in directory.iterdir()}


def _other_schema(path: Path) -> None:
    """A SQLite database in rollback-journal mode with no Prefect tables."""
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
        connection.execute("INSERT INTO notes (body) VALUES ('keep me')")
    connection.close()


def _prefects_history(path: Path) -> None:
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
        connection.execute("INSERT INTO alembic_version VALUES ('3c841a1800a1')")
    connection.close()


@pytest.mark.parametrize(
    ("mode", "make", "says"),
    [
        pytest.param(
            "prefect", _other_schema, "missing table flow", id="prefect-mode-other-schema"
        ),
        pytest.param(
            "prefect", lambda path: path.touch(), "missing table flow", id="prefect-mode-empty-file"
        ),
        pytest.param(
            "managed",
            _prefects_history,
            "created by a Prefect server",
            id="managed-mode-prefects-database",
        ),
    ],
)
async def test_a_refused_sqlite_file_is_left_byte_for_byte_as_it_was(
    tmp_path: Path, mode: str, make: object, says: str
) -> None:
    directory = tmp_path / "data"
    directory.mkdir()
    database = directory / "refused.db"
    make(database)  # type: ignore[operator]
    before = _files(directory)
    code, output = await run(
        [
            "serve",
            "--address",
            "127.0.0.1:0",
            "--workers",
            "1",
            "--database-mode",
            mode,
            "--database-url",
            f"sqlite:///{database}",
        ],
        tmp_path,
        {},
    )
    assert code == 1, output
    assert says in output
    assert "Traceback" not in output
    assert _files(directory) == before  # same names (no -wal, -shm, journal), same bytes


async def test_prefect_mode_creates_no_file_where_there_is_none(tmp_path: Path) -> None:
    code, output = await run(
        [
            "serve",
            "--address",
            "127.0.0.1:0",
            "--database-mode",
            "prefect",
            "--database-url",
            f"sqlite:///{tmp_path / 'absent.db'}",
        ],
        tmp_path,
        {},
    )
    assert code == 1
    assert "there is no SQLite database" in output
    assert not (tmp_path / "absent.db").exists()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.mark.parametrize("second_workers", [1, 2])
async def test_a_second_server_on_a_taken_address_exits_instead_of_sharing_it(
    tmp_path: Path, second_workers: int
) -> None:
    """SO_REUSEPORT once let a second server's workers join the first's port and answer
    half of its calls from another database."""
    address = f"127.0.0.1:{_free_port()}"
    first = await start(
        [
            "--address",
            address,
            "--workers",
            "2",
            "--database-url",
            f"sqlite:///{tmp_path / 'a.db'}",
        ],
        tmp_path,
        {},
    )
    try:
        async with FlowClient(address, timeout=10) as client:
            await client.create_flow("only-in-a")
        code, output = await run(
            [
                "serve",
                "--address",
                address,
                "--workers",
                str(second_workers),
                "--database-url",
                f"sqlite:///{tmp_path / 'b.db'}",
            ],
            tmp_path,
            {},
        )
        assert code == 1, output
        assert f"cannot listen on {address}" in output
        assert "Traceback" not in output
        for _ in range(20):  # fresh connections, spread over every listener there is
            async with FlowClient(address, timeout=10) as client:
                assert (await client.read_flow_by_name("only-in-a")).name == "only-in-a"
    finally:
        assert await first.stop() == 0
