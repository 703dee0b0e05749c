"""The README's HTTP examples run as written: curl and buf curl against a real server.

Each `sh` block between the `http-examples` markers is run with bash from the
repository root, top to bottom, against one server started empty (the address
127.0.0.1:8080 replaced by the test server's HTTP address), and what it prints
must be the `json` block that follows it: the same JSON values, with ids,
times and etags made alike on both sides. The commands run as child processes
through asyncio: the server shares the test's event loop.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from flowservice_server.app import start_server
from flowservice_server.config import DatabaseSettings, Settings

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from flowservice_server.app import RunningServer

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOC_ADDRESS = "127.0.0.1:8080"
BUF = Path(sys.executable).with_name("buf")
BLOCKS = re.compile(r"^```sh\n(.*?)^```\n```json\n(.*?)^```$", re.MULTILINE | re.DOTALL)
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
ETAG = re.compile(r"^[A-Za-z0-9_-]{16}$")

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not on PATH")


def examples() -> list[tuple[str, str]]:
    text = README.read_text(encoding="utf-8")
    start = text.index("<!-- http-examples -->")
    end = text.index("<!-- /http-examples -->")
    return BLOCKS.findall(text[start:end])


def json_values(text: str) -> list[Any]:
    """Every JSON value printed, one after another (buf curl prints one per message)."""
    decoder = json.JSONDecoder()
    values, position = [], 0
    text = text.strip()
    while position < len(text):
        value, position = decoder.raw_decode(text, position)
        values.append(value)
        while position < len(text) and text[position].isspace():
            position += 1
    return values


def alike(value: Any, key: str = "") -> Any:
    """Ids, times and etags replaced by what they are, so two runs compare equal."""
    if isinstance(value, dict):
        return {k: alike(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [alike(v) for v in value]
    if isinstance(value, str):
        if UUID.fullmatch(value):
            return "<id>"
        if TIME.match(value):
            return "<time>"
        if key == "etag" and ETAG.match(value):
            return "<etag>"
    return value


@pytest.fixture
async def running(any_backend_url: str) -> AsyncIterator[RunningServer]:
    settings = Settings(
        address="127.0.0.1:0",
        http_address="127.0.0.1:0",
        database=DatabaseSettings(url=any_backend_url),
    )
    server = await start_server(settings)
    yield server
    await server.stop(grace=None)


def test_the_readme_has_examples() -> None:
    found = examples()
    assert len(found) >= 5
    assert any("--protocol connect" in command for command, _ in found)
    assert any("--protocol grpcweb" in command for command, _ in found)


async def test_the_readme_examples_print_what_the_readme_shows(running: RunningServer) -> None:
    for command, shown in examples():
        script = command.replace(DOC_ADDRESS, f"127.0.0.1:{running.http_port}")
        script = script.replace(".venv/bin/buf", str(BUF))
        process = await asyncio.create_subprocess_exec(
            "bash",
            "-euo",
            "pipefail",
            "-c",
            script,
            cwd=ROOT,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode == 0, (command, stderr.decode())
        assert alike(json_values(stdout.decode())) == alike(json_values(shown)), command
