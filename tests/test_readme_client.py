"""The README's Python client sections run as written: each `python` block, as a script
of its own, against a real server (its address put where the README says 127.0.0.1:50051).

Blocks tagged `python prefect` show Prefect's client for comparison; they need a
Prefect server, so here they are only compiled.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from flowservice_server.app import RunningServer

README = Path(__file__).resolve().parent.parent / "README.md"
SECTIONS = ("## The Python client\n", "## Moving from Prefect's client\n")
BLOCK = re.compile(r"^```(python[^\n]*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def client_blocks() -> list[tuple[str, str]]:
    """(info string, code) of every code block in the client sections, in order."""
    text = README.read_text(encoding="utf-8")
    blocks: list[tuple[str, str]] = []
    for heading in SECTIONS:
        start = text.index(heading)
        end = text.find("\n## ", start + len(heading))
        blocks += BLOCK.findall(text[start : end if end >= 0 else len(text)])
    return blocks


RUNNABLE = [code for info, code in client_blocks() if info == "python"]
PREFECT = [code for info, code in client_blocks() if info == "python prefect"]


def test_the_sections_have_blocks() -> None:
    assert len(RUNNABLE) >= 5
    assert len(PREFECT) >= 1


@pytest.mark.parametrize("code", PREFECT)
def test_prefect_blocks_compile(code: str) -> None:
    compile(code, "README.md", "exec")


@pytest.mark.parametrize("code", RUNNABLE, ids=[f"block-{i}" for i in range(len(RUNNABLE))])
async def test_block_runs_as_a_script(any_backend_server: RunningServer, code: str) -> None:
    target = f"127.0.0.1:{any_backend_server.port}"
    script = code.replace("127.0.0.1:50051", target)
    environment = {**os.environ, "FLOWSERVICE_TARGET": target}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        script,
        env=environment,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, stderr.decode()
