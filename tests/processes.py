"""`flowservice serve` as a real child process, for tests of the command and of several servers."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

FLOWSERVICE = str(Path(sys.executable).with_name("flowservice"))
LISTENING = re.compile(r"listening on 127\.0\.0\.1:(\d+)")


@dataclass
class ServerProcess:
    process: asyncio.subprocess.Process
    port: int
    log: list[str] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def stop(self, signum: int = signal.SIGTERM) -> int:
        """Signal the server, collect the rest of its log, and return its exit code."""
        if self.process.returncode is None:
            self.process.send_signal(signum)
        assert self.process.stderr is not None
        rest = await asyncio.wait_for(self.process.stderr.read(), timeout=30)
        self.log += rest.decode().splitlines()
        return await asyncio.wait_for(self.process.wait(), timeout=30)


def environment(extra: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without FLOWSERVICE_* settings, plus `extra`."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("FLOWSERVICE_")}
    return {**inherited, **extra}


async def run(args: list[str], cwd: Path, environ: Mapping[str, str]) -> tuple[int, str]:
    """Run `flowservice ARGS` to completion: exit code and combined output."""
    process = await asyncio.create_subprocess_exec(
        FLOWSERVICE,
        *args,
        cwd=cwd,
        env=environment(environ),
        stderr=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    return await process.wait(), (stdout + stderr).decode()


async def start(
    args: list[str], cwd: Path, environ: Mapping[str, str], prefix: Sequence[str] = ()
) -> ServerProcess:
    """Start `flowservice serve ARGS` (run by `prefix`, e.g. taskset, if given) and wait
    until it logs the port it listens on."""
    process = await asyncio.create_subprocess_exec(
        *prefix,
        FLOWSERVICE,
        "serve",
        *args,
        cwd=cwd,
        env=environment(environ),
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    log: list[str] = []
    while True:
        line = (await asyncio.wait_for(process.stderr.readline(), timeout=60)).decode()
        if not line:
            raise AssertionError("server exited before listening:\n" + "\n".join(log))
        log.append(line.rstrip())
        if match := LISTENING.search(line):
            return ServerProcess(process, int(match.group(1)), log)
