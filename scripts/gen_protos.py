"""Regenerate the Python code for the contract in protos/ into client/.

The only writer of client/flowservice/v1/*_pb2*.py(i): messages and gRPC stubs
from grpcio-tools' protoc, typed stubs (.pyi) from mypy-protobuf. The proto
package `flowservice.v1` is the Python import path, so nothing is rewritten.

    python scripts/gen_protos.py            # write into client/
    python scripts/gen_protos.py --out DIR  # write into DIR (staleness test)
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
PACKAGE = Path("flowservice") / "v1"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi")


def generated_files(out: Path) -> list[Path]:
    """The generated modules currently under `out`, sorted."""
    pkg = out / PACKAGE
    return sorted(p for p in pkg.iterdir() if p.name.endswith(GENERATED_SUFFIXES))


def generate(out: Path) -> None:
    """Compile every .proto of the package into `out`, replacing old output."""
    pkg = out / PACKAGE
    pkg.mkdir(parents=True, exist_ok=True)
    for stale in generated_files(out):
        stale.unlink()
    bindir = Path(sys.executable).parent
    protos = sorted(str(p.relative_to(PROTOS)) for p in (PROTOS / PACKAGE).glob("*.proto"))
    include = Path(protoc.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{PROTOS}",
        f"-I{include}",
        f"--plugin=protoc-gen-mypy={shutil.which('protoc-gen-mypy', path=str(bindir))}",
        f"--plugin=protoc-gen-mypy_grpc={shutil.which('protoc-gen-mypy_grpc', path=str(bindir))}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--mypy_out={out}",
        f"--mypy_grpc_out={out}",
        *protos,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    (pkg / "__init__.py").touch()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "client")
    generate(parser.parse_args().out)


if __name__ == "__main__":
    main()
