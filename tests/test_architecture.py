"""docs/architecture.md stays true: every file it names exists, and it names every module of
the server and the client, so that a newcomer's map has no holes."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAP = ROOT / "docs" / "architecture.md"
#: A repository path in backticks: a folder and a file with an extension.
NAMED_FILE = re.compile(r"`((?:protos|server|client|scripts|tests|docs)/[\w/.<>-]+\.\w+)`")


def named_files() -> set[str]:
    return set(NAMED_FILE.findall(MAP.read_text()))


def test_every_file_the_map_names_exists() -> None:
    named = {name for name in named_files() if "<" not in name}  # `<name>_engine.py`: a pattern
    assert len(named) > 40
    missing = sorted(name for name in named if not (ROOT / name).is_file())
    assert not missing, f"docs/architecture.md names files that do not exist: {missing}"


def test_the_map_names_every_server_and_client_module() -> None:
    modules = [
        *(ROOT / "server" / "flowservice_server").rglob("*.py"),
        *(ROOT / "client" / "flowservice").glob("*.py"),
    ]
    expected = {
        str(path.relative_to(ROOT))
        for path in modules
        if path.name not in ("__init__.py", "__main__.py") and "versions" not in path.parts
    }
    unmapped = sorted(expected - named_files())
    assert not unmapped, f"add these modules to docs/architecture.md: {unmapped}"
