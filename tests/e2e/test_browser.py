"""A real page in headless Chromium calls FlowService through @connectrpc/connect-web.

The page (tests/e2e/browser/page.mjs, bundled with esbuild) is served from
its own origin, another port than the API, so the browser makes CORS
preflights that the server must answer for the allowed origin. It calls
ReadFlows, StreamFlows, WatchFlows (list-then-watch) and a failing ReadFlow
over Connect JSON, Connect binary and gRPC-Web, and the test asserts what the
page shows. Chromium is Debian's (/usr/bin/chromium), driven by playwright-core.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import http.server
import json
import os
import shutil
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from google.protobuf import descriptor_pb2

from flowservice.client import FlowClient
from flowservice.v1 import flow_service_pb2
from flowservice_server.app import start_server
from flowservice_server.config import DatabaseSettings, Settings

if TYPE_CHECKING:
    from collections.abc import Iterator

    from google.protobuf.descriptor import Descriptor, FileDescriptor

BROWSER_DIR = Path(__file__).parent / "browser"
NODE = shutil.which("node")
CHROMIUM = os.environ.get("FLOWSERVICE_TEST_CHROMIUM") or shutil.which("chromium")
TIMEOUT = 90.0

pytestmark = [
    pytest.mark.skipif(NODE is None, reason="node (Node.js >= 20) is not on PATH"),
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="chromium is not on PATH: apt-get install chromium "
        "(or set FLOWSERVICE_TEST_CHROMIUM to a Chromium binary)",
    ),
    pytest.mark.skipif(
        not (BROWSER_DIR / "node_modules").is_dir(),
        reason="tests/e2e/browser/node_modules is missing: "
        "run `npm ci --prefix tests/e2e/browser --ignore-scripts`",
    ),
]


def _with_json_names(proto: Any, message: Descriptor) -> None:
    """protoc records each field's JSON name; Python's CopyToProto leaves it out."""
    for field in proto.field:
        field.json_name = message.fields_by_name[field.name].json_name
    for nested in proto.nested_type:
        _with_json_names(nested, message.nested_types_by_name[nested.name])


def descriptor_set() -> bytes:
    """The service's .proto files and everything they import, dependencies first."""
    files = descriptor_pb2.FileDescriptorSet()
    seen: set[str] = set()

    def add(file: FileDescriptor) -> None:
        if file.name in seen:
            return
        seen.add(file.name)
        for dependency in file.dependencies:
            add(dependency)
        proto = descriptor_pb2.FileDescriptorProto()
        file.CopyToProto(proto)
        for message in proto.message_type:
            _with_json_names(message, file.message_types_by_name[message.name])
        files.file.append(proto)

    add(flow_service_pb2.DESCRIPTOR)
    return files.SerializeToString()


@contextlib.contextmanager
def static_site(directory: Path) -> Iterator[str]:
    """Serve `directory` on 127.0.0.1 (a free port) from a thread; yields its origin."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(directory))
    site = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=site.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{site.server_address[1]}"
    finally:
        site.shutdown()
        site.server_close()


async def node(*args: str) -> str:
    assert NODE is not None
    process = await asyncio.create_subprocess_exec(
        NODE,
        *args,
        cwd=BROWSER_DIR,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), TIMEOUT)
    except TimeoutError:
        process.kill()
        stdout, stderr = await process.communicate()
        pytest.fail(f"node {args[0]} still running after {TIMEOUT} s:\n{stderr.decode()}")
    assert process.returncode == 0, stderr.decode()
    return stdout.decode()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    directory = tmp_path_factory.mktemp("page")
    shutil.copy(BROWSER_DIR / "index.html", directory)
    (directory / "descriptors.binpb").write_bytes(descriptor_set())
    with static_site(directory) as origin:
        yield directory, origin


@pytest.mark.parametrize("protocol", ["connect", "connect-binary", "grpcweb"])
async def test_a_page_in_chromium_reads_streams_and_watches(
    database_url: str, site: tuple[Path, str], protocol: str
) -> None:
    directory, origin = site
    if not (directory / "bundle.js").exists():
        await node("build.mjs", str(directory))
    running = await start_server(
        Settings(
            address="127.0.0.1:0",
            http_address="127.0.0.1:0",
            http_allowed_origins=(origin,),
            database=DatabaseSettings(url=database_url),
        )
    )
    try:
        async with FlowClient(f"127.0.0.1:{running.port}") as client:
            await client.create_flow("etl", tags=["prod"])
            await client.create_flow("ingest", tags=["prod", "nightly"])
            await client.create_flow("sandbox", tags=["dev"])
        query = f"api=http://127.0.0.1:{running.http_port}"
        query += "&protocol=grpcweb" if protocol == "grpcweb" else ""
        query += "&binary=1" if protocol == "connect-binary" else ""
        assert CHROMIUM is not None
        shown = json.loads(await node("run.mjs", CHROMIUM, f"{origin}/index.html?{query}"))
    finally:
        await running.stop(grace=None)
    assert "failed" not in shown, shown
    assert shown["readFlows"] == ["etl", "ingest"]
    assert shown["totalSize"] == "2"
    assert shown["streamFlows"] == [["etl", "ingest"], ["sandbox"]]
    assert shown["watchFlows"] == [
        "existing etl",
        "existing ingest",
        "existing sandbox",
        "initialStateDone",
    ]
    assert shown["error"]["code"] == "InvalidArgument"
    assert "is not a UUID" in shown["error"]["message"]
    assert shown["error"]["details"] == ["google.rpc.BadRequest", "google.rpc.ErrorInfo"]
