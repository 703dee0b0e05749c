"""A real Prefect 3.9.1 server as a child process, and a tiny stdlib client for its REST API.

Prefect lives only in its own virtualenv (a cache shared with CI), never in the
test environment: the test process talks to it over HTTP with `urllib`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PREFECT_VERSION = "3.9.1"
PREFECT_VENV = Path("/root/.cache/flowservice/venvs") / f"prefect-{PREFECT_VERSION}"
START_TIMEOUT = 90.0
STOP_TIMEOUT = 15.0


class PrefectError(Exception):
    """Prefect could not be installed or started; the message carries its output."""


# --- the virtualenv ------------------------------------------------------------


def _installed_version(venv: Path) -> str | None:
    """The prefect version installed in `venv`, without importing prefect (that takes seconds)."""
    python = venv / "bin" / "python"
    if not (venv / "bin" / "prefect").exists() or not python.exists():
        return None
    result = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('prefect'))"],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout.strip() if result.returncode == 0 else None


def ensure_prefect_venv(venv: Path = PREFECT_VENV) -> Path:
    """The `prefect` executable of a venv holding exactly prefect==3.9.1, installing it if needed.

    A lock file serialises concurrent sessions (and CI jobs) on the shared cache.
    """
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f"{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _installed_version(venv) != PREFECT_VERSION:
            steps = [
                [sys.executable, "-m", "venv", "--clear", str(venv)],
                [str(venv / "bin" / "pip"), "install", "--quiet", f"prefect=={PREFECT_VERSION}"],
            ]
            for step in steps:
                result = subprocess.run(step, capture_output=True, text=True, check=False)
                if result.returncode != 0:
                    raise PrefectError(f"{' '.join(step)} failed:\n{result.stdout}{result.stderr}")
            if (found := _installed_version(venv)) != PREFECT_VERSION:
                raise PrefectError(f"{venv} holds prefect {found}, not {PREFECT_VERSION}")
    return venv / "bin" / "prefect"


# --- HTTP ------------------------------------------------------------------------

# No proxies: every request goes to the loopback server we started.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class Response:
    status: int
    body: Any


class PrefectApi:
    """Blocking JSON calls to `http://127.0.0.1:<port>/api`."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
    ) -> Response:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.base_url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json", **(headers or {})},
        )
        try:
            with _OPENER.open(request, timeout=60) as reply:
                status, raw = reply.status, reply.read()
        except urllib.error.HTTPError as error:
            with error:
                status, raw = error.code, error.read()
        return Response(status, json.loads(raw) if raw else None)

    def ok(self, method: str, path: str, body: Any = None, **kwargs: Any) -> Any:
        """The body of a 2xx reply; anything else fails with Prefect's answer."""
        response = self.call(method, path, body, **kwargs)
        if not 200 <= response.status < 300:
            raise PrefectError(f"{method} {path} {json.dumps(body)} -> {response}")
        return response.body

    @staticmethod
    def quote(segment: str) -> str:
        return urllib.parse.quote(segment, safe="")


# --- the server process ------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def prefect_environment(home: Path, database_url: str) -> dict[str, str]:
    """This environment without any PREFECT_*/FLOWSERVICE_* setting, plus the server's own."""
    inherited = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PREFECT_", "FLOWSERVICE_"))
    }
    return {
        **inherited,
        "PREFECT_HOME": str(home),
        "PREFECT_API_DATABASE_CONNECTION_URL": database_url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_UI_ENABLED": "false",
    }


class PrefectServer:
    """`prefect server start --no-services` on a free port, with its log in a file."""

    def __init__(self, process: subprocess.Popen[bytes], port: int, log_path: Path) -> None:
        self.process = process
        self.port = port
        self.log_path = log_path
        self.api = PrefectApi(f"http://127.0.0.1:{port}/api")

    @classmethod
    def start(cls, prefect: Path, home: Path, database_url: str) -> PrefectServer:
        home.mkdir(parents=True, exist_ok=True)
        port = free_port()
        log_path = home / "server.log"
        command = [str(prefect), "server", "start", "--no-services", "--host", "127.0.0.1"]
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                [*command, "--port", str(port)],
                env=prefect_environment(home, database_url),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, so a stray child dies with it
            )
        server = cls(process, port, log_path)
        try:
            server._wait_until_healthy()
        except BaseException:
            server.stop()
            raise
        return server

    def _wait_until_healthy(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise PrefectError(
                    f"prefect server exited ({self.process.returncode}):\n{self.log()}"
                )
            with contextlib.suppress(OSError):
                if self.api.call("GET", "/health").body is True:
                    return
            time.sleep(0.1)
        raise PrefectError(f"prefect server not healthy after {START_TIMEOUT} s:\n{self.log()}")

    def log(self, tail: int = 60) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-tail:])

    def stop(self) -> None:
        """SIGTERM by PID; SIGKILL (its process group) if it has not exited in time."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
