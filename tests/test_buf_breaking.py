"""scripts/buf_breaking.py: buf's breaking rules, with first-time language options allowed."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from scripts import buf_breaking

ROOT = Path(__file__).resolve().parent.parent

LANGUAGE_OPTION = re.compile(r"^option (?!optimize_for)\w+ = .*;\n", re.MULTILINE)


def _image(tmp_path: Path, name: str, edit: dict[str, tuple[str, str]] | None = None) -> Path:
    """A buf image of a copy of protos/ (with third_party/), each file edited by (pattern, repl)."""
    module = tmp_path / name
    shutil.copytree(ROOT / "protos", module / "protos")
    shutil.copytree(ROOT / "third_party", module / "third_party")  # google/api, a buf module
    shutil.copy(ROOT / "buf.yaml", module / "buf.yaml")
    for file, (pattern, replacement) in (edit or {}).items():
        path = module / "protos" / "flowservice" / "v1" / file
        path.write_text(re.sub(pattern, replacement, path.read_text(), flags=re.MULTILINE))
    image = tmp_path / f"{name}.binpb"
    subprocess.run(
        [buf_breaking.BUF, "build", str(module), "-o", str(image)],
        check=True,
        capture_output=True,
        env={"BUF_CACHE_DIR": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin"},
    )
    return image


@pytest.fixture
def current(tmp_path: Path) -> Path:
    return _image(tmp_path, "current")


def test_setting_language_options_for_the_first_time_passes(tmp_path: Path, current: Path) -> None:
    files = ("filters.proto", "flow.proto", "flow_service.proto")
    bare = _image(tmp_path, "bare", dict.fromkeys(files, (LANGUAGE_OPTION.pattern, "")))
    assert buf_breaking.unset_options(bare)["flowservice/v1/flow.proto"] >= {"go_package"}
    assert buf_breaking.refused(current, bare) == []


def test_changing_a_set_language_option_is_refused(tmp_path: Path, current: Path) -> None:
    moved = _image(
        tmp_path, "moved", {"flow.proto": (r'java_package = "[^"]*"', 'java_package = "x.y"')}
    )
    findings = buf_breaking.refused(current, moved)
    assert len(findings) == 1
    assert 'File option "java_package" changed' in findings[0]


def test_other_breaking_changes_are_refused(tmp_path: Path, current: Path) -> None:
    renamed = _image(
        tmp_path, "renamed", {"flow.proto": (r"^  string name = ", "  string title = ")}
    )
    findings = buf_breaking.refused(renamed, current)
    assert any('changed name from "name" to "title"' in finding for finding in findings), findings
