"""`buf curl` over the Connect protocol and gRPC-Web prints what it prints over gRPC.

buf curl is a client written by others for all three protocols, so it checks
the HTTP listener against the protocols' own reading of them: each call is
made three times (gRPC on the gRPC port, Connect and gRPC-Web on the HTTP
port) with the schema read from the local protos (`--schema .`), and the
outputs, exit codes and error statuses must agree. buf curl runs as a child
process through asyncio: the server shares the test's event loop.
"""

from __future__ import annotations

import asyncio
import json
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
BUF = Path(sys.executable).with_name("buf")
SERVICE = "flowservice.v1.FlowService"
TIMEOUT = 60.0

pytestmark = pytest.mark.skipif(not BUF.exists(), reason=f"{BUF} is missing: install '.[dev]'")


@pytest.fixture
async def running(database_url: str) -> AsyncIterator[RunningServer]:
    settings = Settings(
        address="127.0.0.1:0",
        http_address="127.0.0.1:0",
        database=DatabaseSettings(url=database_url),
    )
    server = await start_server(settings)
    yield server
    await server.stop(grace=None)


async def buf_curl(
    running: RunningServer, protocol: str, method: str, data: dict[str, Any], *extra: str
) -> tuple[int, str, Any]:
    """Exit code, stdout, and the error status buf curl printed on stderr (or None)."""
    if protocol == "grpc":
        target = [f"http://127.0.0.1:{running.port}", "--http2-prior-knowledge"]
    else:
        target = [f"http://127.0.0.1:{running.http_port}"]
    process = await asyncio.create_subprocess_exec(
        str(BUF),
        "curl",
        "--schema",
        ".",
        "--protocol",
        protocol,
        "--data",
        json.dumps(data),
        *extra,
        *target[1:],
        f"{target[0]}/{SERVICE}/{method}",
        cwd=ROOT,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), TIMEOUT)
    assert process.returncode is not None
    error = json.loads(stderr) if process.returncode and stderr.strip().startswith(b"{") else None
    if error is not None:
        for detail in error.get("details", []):
            detail.pop("debug", None)  # only a Connect server sends it; buf curl echoes it
    return process.returncode, stdout.decode(), error


SEED = {"name": "etl", "tags": ["nightly"], "labels": {"team": "data"}}
#: Each answers the same however often it is made (CreateFlow of an existing name).
CALLS: list[tuple[str, dict[str, Any]]] = [
    ("CreateFlow", {"name": "etl"}),
    ("ReadFlowByName", {"name": "etl"}),
    ("ReadFlows", {"flows": {"tags": {"all": ["nightly"]}}, "include_total_size": True}),
    ("CountFlows", {}),
    ("StreamFlows", {"batch_size": 1}),
    ("ReadFlow", {"id": "nope"}),
    ("ReadFlow", {"id": "3f2f054e-3137-49b6-a5a3-0f1d6e7f2a10"}),
    ("StreamFlows", {"batch_size": -1}),
    ("ReadFlows", {"nope": 1}),
]


async def test_buf_curl_answers_alike_over_grpc_connect_and_grpcweb(
    running: RunningServer,
) -> None:
    code, created, _ = await buf_curl(running, "connect", "CreateFlow", SEED)
    assert code == 0
    assert json.loads(created)["created"] is True
    seen_errors = 0
    for method, data in CALLS:
        over_grpc = await buf_curl(running, "grpc", method, data)
        for protocol in ("connect", "grpcweb"):
            assert await buf_curl(running, protocol, method, data) == over_grpc, (
                protocol,
                method,
                data,
            )
        seen_errors += over_grpc[0] != 0
    assert seen_errors == 4  # three statuses from the server, one field buf refuses itself


async def test_a_streaming_call_with_a_deadline(running: RunningServer) -> None:
    for protocol in ("connect", "grpcweb"):
        code, _stdout, error = await buf_curl(
            running, protocol, "WatchFlows", {}, "--connect-timeout", "5", "--max-time", "1"
        )
        assert code != 0, protocol
        assert error is None or error["code"] == "deadline_exceeded", (protocol, error)
