"""FlowService and Prefect's REST server as child processes pinned to one CPU.

Why pinned: the issue compares the servers on one core each, with the load
generator on the other core, so neither the client nor the other server
steals the server's CPU. `taskset` (util-linux) sets the affinity before the
server's interpreter starts, and children (Prefect's uvicorn) inherit it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

from databases import PREFECT, prefect_environment

ROOT = Path(__file__).resolve().parent.parent
FLOWSERVICE = ROOT / ".venv" / "bin" / "flowservice"
START_TIMEOUT = 120.0
STOP_TIMEOUT = 20.0
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def taskset() -> str:
    found = shutil.which("taskset")
    if found is None:
        raise SystemExit("taskset (util-linux) is needed to pin the servers to a CPU")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Server:
    """A server process in its own session; stopped by its PID (SIGTERM, then SIGKILL)."""

    kind = "server"

    def __init__(self, process: subprocess.Popen[bytes], port: int, log_path: Path) -> None:
        self.process = process
        self.port = port
        self.log_path = log_path

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def ready(self) -> bool:
        raise NotImplementedError

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.kind} exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            if self.ready():
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.kind} not ready after {START_TIMEOUT} s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)  # its own session: its children
        self.process.wait()


def _spawn(command: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        return subprocess.Popen(  # noqa: S603  # our own argument list, no shell
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


class FlowService(Server):
    """`flowservice serve --database-mode prefect` with one worker and no access log."""

    kind = "FlowService"

    @classmethod
    def start(
        cls,
        database_url: str,
        log_path: Path,
        *,
        cpu: int = 0,
        launcher: list[str] | None = None,
        options: list[str] | None = None,
        environment: dict[str, str] | None = None,
    ) -> FlowService:
        """Start it; `launcher` replaces the `flowservice` executable (the SQL tracer, another
        checkout's code), `options` are more `serve` flags, `environment` more variables."""
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWSERVICE_")}
        env.update(environment or {})
        command = [
            taskset(),
            "-c",
            str(cpu),
            *(launcher or [str(FLOWSERVICE)]),
            "serve",
            "--database-mode",
            "prefect",
            "--database-url",
            database_url,
            "--address",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
            "--access-log",
            "false",
            *(options or []),
        ]
        server = cls(_spawn(command, env, log_path), port, log_path)
        server.wait_ready()
        return server

    def ready(self) -> bool:
        text = self.log_path.read_text(errors="replace")
        return re.search(rf"listening on 127\.0\.0\.1:{self.port}\b", text) is not None


class Prefect(Server):
    """`prefect server start --no-services`, UI and analytics off."""

    kind = "Prefect"

    @classmethod
    def start(cls, database_url: str, home: Path, log_path: Path, *, cpu: int = 0) -> Prefect:
        port = free_port()
        command = [
            taskset(),
            "-c",
            str(cpu),
            str(PREFECT),
            "server",
            "start",
            "--no-services",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ]
        server = cls(
            _spawn(command, prefect_environment(home, database_url), log_path), port, log_path
        )
        server.wait_ready()
        return server

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def ready(self) -> bool:
        try:
            with _NO_PROXY.open(self.base_url + "/health", timeout=2) as reply:
                return bool(json.loads(reply.read()) is True)
        except OSError:
            return False
