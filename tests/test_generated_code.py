"""The committed generated code is exactly what scripts/gen_protos.py writes today."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMMITTED = ROOT / "client" / "flowservice" / "v1"


def test_generated_code_is_current(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_protos.py"), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    fresh = tmp_path / "flowservice" / "v1"
    fresh_files = sorted(p.name for p in fresh.iterdir())
    assert sorted(p.name for p in COMMITTED.iterdir() if p.is_file()) == fresh_files
    stale = [
        name
        for name in fresh_files
        if (fresh / name).read_bytes() != (COMMITTED / name).read_bytes()
    ]
    assert not stale, f"stale generated code, run scripts/gen_protos.py: {stale}"
