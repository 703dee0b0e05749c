"""Profile FlowService under load with py-spy: where does a call's CPU time go?

    .venv/bin/python bench/profile.py                      # the profiles RESULTS.md cites
    .venv/bin/python bench/profile.py --op "ReadFlow (by id)" --seconds 15

Starts FlowService (pinned to CPU 0) on a copy of the default data set, drives
one operation at a time with load_grpc.py (CPU 1) and records it with py-spy
(`--nonblocking`, on CPU 1): a flame graph (SVG) per operation, and a text
summary of CPU time by layer (gRPC, SQLAlchemy, the SQLite unit-of-work
thread, asyncio, protobuf, FlowService's own code) and by function, in
bench/profiles/. By default: the three operations whose profiles RESULTS.md
cites, c=16, py-spy at 200 Hz for 8 s. py-spy is installed into a scratch venv
under bench/.cache on first use (from PyPI).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import re
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import databases  # noqa: E402
import dataset  # noqa: E402
import operations  # noqa: E402
from servers import FlowService, taskset  # noqa: E402

WORK = BENCH / ".work"
OUT = BENCH / "profiles"
PYSPY_VENV = BENCH / ".cache" / "pyspy-venv"
PYSPY = PYSPY_VENV / "bin" / "py-spy"
FS_PYTHON = BENCH.parent / ".venv" / "bin" / "python"
#: The operations whose profiles RESULTS.md cites.
DEFAULT_OPS = ("ReadFlow (by id)", "ReadFlows: no filter (200 rows)", "CreateFlow: new name")
#: file-path fragment -> layer, first match wins
LAYERS = (
    ("flowservice_server/db/sqlite_engine", "FlowService SQLite unit-of-work thread"),
    ("flowservice_server/db/sqlite_inline", "FlowService SQLite inline reads (event loop)"),
    ("flowservice_server", "FlowService (server code)"),
    ("flowservice/", "FlowService (generated/client code)"),
    ("sqlalchemy", "SQLAlchemy"),
    ("aiosqlite", "aiosqlite (driver thread and hand-off)"),
    ("grpc", "gRPC (grpc.aio, Cython)"),
    ("google/protobuf", "protobuf"),
    ("asyncio", "asyncio event loop"),
    ("sqlite3", "sqlite3"),
    ("threading", "threading"),
    ("concurrent", "threading"),
)


def ensure_pyspy() -> Path:
    if not PYSPY.exists():
        subprocess.run([sys.executable, "-m", "venv", str(PYSPY_VENV)], check=True)  # noqa: S603
        pip = str(PYSPY_VENV / "bin" / "pip")
        subprocess.run([pip, "install", "--quiet", "py-spy"], check=True)  # noqa: S603
    return PYSPY


def layer(frame: str) -> str:
    match = re.search(r"\((.*?)(:\d+)?\)$", frame)
    path = match.group(1) if match else frame
    for fragment, name in LAYERS:
        if fragment in path:
            return name
    return "other Python"


def summarize(raw: Path, top: int = 25) -> str:
    """Self time by layer, inclusive and self time by function, from py-spy's collapsed stacks."""
    self_by_layer: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    self_time: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";")]
        total += count
        # The thread's name is the first frame py-spy writes; skip it for the layers.
        self_by_layer[layer(frames[-1])] += count
        self_time[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    if not total:
        return "no samples\n"

    def pct(n: int) -> str:
        return f"{100 * n / total:5.1f}%"

    lines = [
        f"{total} samples (all threads, idle excluded). Python frames only: time in C and",
        "Cython (grpc.aio's core, asyncio's C tasks, the sqlite3 module) is charged to the",
        "Python frame that called it; 'Handle._run' self time is mostly grpc.aio's Cython",
        "callbacks and asyncio's C task steps.",
        "",
        "self time by layer:",
    ]
    lines += [f"  {pct(n)}  {name}" for name, n in self_by_layer.most_common()]
    lines += ["", f"inclusive time, top {top} functions:"]
    lines += [f"  {pct(n)}  {name}" for name, n in inclusive.most_common(top)]
    lines += ["", f"self time, top {top} functions:"]
    lines += [f"  {pct(n)}  {name}" for name, n in self_time.most_common(top)]
    return "\n".join(lines) + "\n"


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--op", action="append", help="operation name (repeatable)")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=8.0, help="seconds recorded")
    parser.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    parser.add_argument("--prefix", default="", help="prefix of the files written to profiles/")
    parser.add_argument(
        "--postgres", action="store_true", help="the same rows in a PostgreSQL database"
    )
    args = parser.parse_args()
    pyspy = ensure_pyspy()
    OUT.mkdir(exist_ok=True)
    WORK.mkdir(exist_ok=True)
    generator = dataset.Generator(dataset.Sizes())
    path = WORK / "db-profile.db"
    databases.load_sqlite(path, databases.sqlite_schema(BENCH / ".cache"), generator)
    summary = generator.summary
    url = f"sqlite+aiosqlite:///{path}"
    postgres = f"flowbench_profile_{os.getpid()}"
    if args.postgres:
        asyncio.run(databases.create_postgres(postgres, BENCH / ".cache" / "prefect-home"))
        again = dataset.Generator(dataset.Sizes(), now=datetime.fromisoformat(summary.now))
        asyncio.run(databases.load_postgres(postgres, again))
        url = databases.postgres_url(postgres)
    try:
        record(args, pyspy, summary, url)
    finally:
        if args.postgres:
            asyncio.run(databases.drop_postgres(postgres))


def record(args: argparse.Namespace, pyspy: Path, summary: dataset.Summary, url: str) -> None:
    """Each operation under load while py-spy records the server."""
    known = {
        op["name"]: op
        for op in operations.read_operations(summary.since, summary.work_pool_names[1])
        + operations.write_operations("bench-profile")
    }
    names = args.op or list(DEFAULT_OPS)
    server = FlowService.start(url, WORK / "flowservice-profile.log")
    try:
        for name in names:
            op = known[name]
            plan = {
                "target": server.target,
                "server_pid": server.pid,
                "cpu": 1,
                "duration": args.seconds + 2,
                "warmup": 1.0,
                "request_timeout": 60.0,
                "concurrency": [args.concurrency],
                "flow_ids": summary.flow_ids,
                "flow_names": summary.flow_names,
                "ops": [op],
            }
            plan_path = WORK / "plan-profile.json"
            plan_path.write_text(json.dumps(plan))
            load = subprocess.Popen(  # noqa: S603
                [str(FS_PYTHON), str(BENCH / "load_grpc.py"), str(plan_path)],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                env={**os.environ, "PYTHONPATH": str(BENCH)},
            )
            time.sleep(2.5)  # past the settle check and the warm-up
            base = OUT / (args.prefix + slug(name))
            with contextlib.ExitStack() as logs:
                recorders = [
                    subprocess.Popen(  # noqa: S603
                        [
                            taskset(),
                            "-c",
                            "1",
                            str(pyspy),
                            "record",
                            "--pid",
                            str(server.pid),
                            "--nonblocking",  # do not pause the server per sample
                            "--rate",
                            str(args.rate),
                            "--duration",
                            str(int(args.seconds)),
                            "--format",
                            fmt,
                            "-o",
                            str(out),
                        ],
                        stdout=subprocess.DEVNULL,
                        stderr=logs.enter_context(open(WORK / f"py-spy-{fmt}.log", "w")),
                    )
                    for fmt, out in (
                        ("flamegraph", base.with_suffix(".svg")),
                        ("raw", base.with_suffix(".txt")),
                    )
                ]
                for recorder in recorders:
                    recorder.wait()
            stdout, _ = load.communicate()
            result = json.loads(stdout)["results"][0]
            text = (
                f"{name}, c={args.concurrency}: {result['rps']} req/s, p50 {result['p50_ms']} ms, "
                f"p99 {result['p99_ms']} ms, server CPU {result['server_cpu_ms_per_request']} "
                f"ms per call ({result['server_cpu_pct']}% of a core)\n\n"
                + summarize(base.with_suffix(".txt"))
            )
            base.with_suffix(".summary.txt").write_text(text)
            print(text)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
