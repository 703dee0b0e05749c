"""Clients for other languages from buf.gen.yaml, and a Go client built from them.

Why: the language options in the protos and buf.gen.yaml are only worth
something if `buf generate` runs with the tools a machine can install (Debian
packages, no remote plugins) and the generated code is a working client. The
Go client (tests/e2e/go/main.go) is built offline against Debian's Go gRPC
packages in GOPATH mode and calls the real server on both databases.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from flowservice_server.app import RunningServer

ROOT = Path(__file__).resolve().parents[2]
BUF = str(Path(sys.executable).with_name("buf"))
GO_CLIENT = Path(__file__).parent / "go" / "main.go"
#: Debian's Go packages, where GOPATH mode finds google.golang.org/grpc and protobuf.
DEBIAN_GOPATH = Path("/usr/share/gocode")
GO_IMPORT_PATH = "flowservice.dev/gen/go/flowservice/v1"  # the protos' go_package

#: The tools buf.gen.yaml runs, and the Debian package of each (for the skip reason).
TOOLS = {
    "protoc": "protobuf-compiler",
    "grpc_cpp_plugin": "protobuf-compiler-grpc",
    "grpc_java_plugin": "protobuf-compiler-grpc-java-plugin",
    "protoc-gen-go": "protoc-gen-go",
    "protoc-gen-go-grpc": "protoc-gen-go-grpc",
    "go": "golang-go",
}
MISSING = [package for tool, package in TOOLS.items() if shutil.which(tool) is None]

pytestmark = pytest.mark.skipif(
    bool(MISSING), reason=f"buf.gen.yaml's tools are missing: apt-get install {' '.join(MISSING)}"
)

#: One generated file per language and kind that proves the plugin ran.
EXPECTED = [
    "cpp/flowservice/v1/flow_service.pb.h",
    "cpp/flowservice/v1/flow_service.grpc.pb.h",
    "csharp/FlowService.cs",
    "java/dev/flowservice/v1/ReadFlowsRequest.java",
    "java/dev/flowservice/v1/FlowServiceGrpc.java",
    "kotlin/dev/flowservice/v1/FlowKt.kt",
    "objc/flowservice/v1/FlowService.pbobjc.h",
    "php/FlowService/V1/Flow.php",
    "php/FlowService/V1/FlowServiceClient.php",
    "ruby/flowservice/v1/flow_service_pb.rb",
    "ruby/flowservice/v1/flow_service_services_pb.rb",
    f"go/{GO_IMPORT_PATH}/flow_service.pb.go",
    f"go/{GO_IMPORT_PATH}/flow_service_grpc.pb.go",
]


async def _run(*command: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run a command without blocking the event loop; its stdout, or fail with its output."""
    process = await asyncio.create_subprocess_exec(
        *command,
        cwd=cwd,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=100)
    if process.returncode != 0:
        pytest.fail(f"{' '.join(command)} exited {process.returncode}:\n{stderr.decode()}")
    return stdout.decode()


@pytest.fixture(scope="module")
async def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`buf generate` with the repository's buf.gen.yaml, into a fresh directory."""
    out = tmp_path_factory.mktemp("generated")
    env = {**os.environ, "BUF_CACHE_DIR": str(out.parent / "buf-cache")}
    await _run(BUF, "generate", "--template", "buf.gen.yaml", "-o", str(out), cwd=ROOT, env=env)
    return out


@pytest.fixture(scope="module")
async def go_client(generated: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/e2e/go built offline: GOPATH mode, Debian's packages, no module proxy."""
    gopath = tmp_path_factory.mktemp("gopath")
    shutil.copytree(generated / "go", gopath / "src")
    program = gopath / "src" / "flowclient"
    program.mkdir()
    shutil.copy(GO_CLIENT, program / "main.go")
    env = {
        **os.environ,
        "GO111MODULE": "off",
        "GOPATH": f"{gopath}{os.pathsep}{DEBIAN_GOPATH}",
        "GOPROXY": "off",
        "GOFLAGS": "",
    }
    binary = gopath / "flowclient"
    await _run("go", "build", "-o", str(binary), ".", cwd=program, env=env)
    return binary


async def test_buf_generate_writes_every_language(generated: Path) -> None:
    missing = [name for name in EXPECTED if not (generated / name).is_file()]
    assert not missing, missing
    go_code = (generated / "go" / GO_IMPORT_PATH / "flow_service.pb.go").read_text()
    assert "package flowservicev1" in go_code


async def test_a_go_client_calls_the_server(server: RunningServer, go_client: Path) -> None:
    output = await _run(str(go_client), f"127.0.0.1:{server.port}", cwd=go_client.parent)
    seen = json.loads(output)
    assert seen == {
        "created": True,
        "read_name": "from-go",
        "read_tags": ["go"],
        "streamed": ["from-go"],
        "missing_code": "NotFound",
    }
