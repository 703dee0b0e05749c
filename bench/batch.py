"""Batches: BatchGetFlows and BatchCreateFlows vs the same work as single calls, through gRPC.

`.venv/bin/python bench/batch.py [--flows 10000] [--size 100] [--repeats 30] [--postgres yes|no]`

Why: a batch exists to save round trips and per-call work (one request, one
transaction, one query) for a client that needs many flows at once. This
shows how much it saves against what a client would do without it: the same
ids read by sequential ReadFlow calls, and by concurrent ones
(asyncio.gather on one channel), which already overlap the round trips; and
`--size` new flows made by one BatchCreateFlows vs sequential CreateFlow calls.

The flows are loaded straight into a migrated FlowService database in
Prefect's storage formats (SQLite executemany; COPY on PostgreSQL, in a
database `flowbench_batch_<pid>` that is dropped at the end), then
`flowservice serve --workers 1` runs pinned to CPU 0 while this process, on
CPU 1, times each variant `--repeats` times (after warm-up rounds that are
discarded) with a raw grpc.aio stub. Each round draws fresh ids and runs the
variants in a rotating order, so none always goes first with a cold cache.
Every reply is checked. Under three minutes; the section
`<!-- bench:batch:… -->` of `--out` (bench/RESULTS.md) is replaced.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import platform
import random
import sqlite3
import statistics
import subprocess
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg
import grpc.aio
from dataset import uuid4_texts
from report import merge_document
from servers import FLOWSERVICE, FlowService, _spawn, free_port, taskset

from flowservice.v1 import flow_service_pb2 as s
from flowservice.v1 import flow_service_pb2_grpc
from flowservice_server.config import DatabaseSettings
from flowservice_server.db.factory import open_database

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

BENCH = Path(__file__).resolve().parent
WORK = BENCH / ".work" / "batch"
POSTGRES = "postgresql://postgres@127.0.0.1:5432"
BASE = datetime(2026, 1, 1, tzinfo=UTC)
WARMUP = 3
TIMEOUT = 60.0
Row = tuple[str, datetime, str]


def flow_rows(count: int) -> list[Row]:
    """(id, created = updated, name): seeded ids, a second apart, unrelated name order."""
    rng = random.Random(314)  # noqa: S311  # test data
    ids = uuid4_texts(rng, count)
    return [
        (flow_id, BASE + timedelta(seconds=i), f"flow-{rng.randrange(10**9):09d}-{i}")
        for i, flow_id in enumerate(ids)
    ]


async def migrate(url: str) -> None:
    database = await open_database(DatabaseSettings(url=url), migrate=True)
    await database.close()


def load_sqlite(path: Path, rows: list[Row]) -> str:
    """FlowService's schema, then the flows in Prefect's SQLite formats (db/types.py)."""
    for stale in path.parent.glob(path.name + "*"):
        stale.unlink()
    url = f"sqlite+aiosqlite:///{path}"
    asyncio.run(migrate(url))
    fmt = "%Y-%m-%d %H:%M:%S.%f"
    with contextlib.closing(sqlite3.connect(path)) as connection:
        with connection:
            connection.executemany(
                "INSERT INTO flow (id, created, updated, name, tags, labels) "
                "VALUES (?, ?, ?, ?, '[]', '{}')",
                [(i, t.strftime(fmt), t.strftime(fmt), n) for i, t, n in rows],
            )
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return url


async def admin(statement: str) -> None:
    connection = await asyncpg.connect(f"{POSTGRES}/postgres")
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


async def load_postgres(database: str, rows: list[Row]) -> str:
    """FlowService's schema, then the flows with COPY and VACUUM (ANALYZE)."""
    await admin(f'CREATE DATABASE "{database}"')
    url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{database}"
    await migrate(url)
    connection = await asyncpg.connect(f"{POSTGRES}/{database}")
    try:
        await connection.copy_records_to_table(
            "flow",
            records=[(uuid.UUID(i), t, t, n, "[]", "{}") for i, t, n in rows],
            columns=["id", "created", "updated", "name", "tags", "labels"],
        )
        await connection.execute("VACUUM (ANALYZE) flow")  # as autovacuum would, soon after
    finally:
        await connection.close()
    return url


def start_server(url: str, log_path: Path) -> FlowService:
    """`flowservice serve --workers 1` on CPU 0 (FlowService's own schema, default mode)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWSERVICE_")}
    command = [
        taskset(), "-c", "0", str(FLOWSERVICE), "serve",
        "--database-url", url, "--address", f"127.0.0.1:{port}",
        "--workers", "1", "--access-log", "false",
    ]  # fmt: skip
    server = FlowService(_spawn(command, env, log_path), port, log_path)
    server.wait_ready()
    return server


@dataclass
class Timing:
    backend: str
    call: str
    seconds: list[float]

    @property
    def p50_ms(self) -> float:
        return statistics.median(self.seconds) * 1000

    @property
    def p95_ms(self) -> float:  # nearest rank
        ordered = sorted(self.seconds)
        return ordered[math.ceil(0.95 * len(ordered)) - 1] * 1000


BATCH_IDS = "BatchGetFlows, ids"
BATCH_NAMES = "BatchGetFlows, names"
SEQUENTIAL = "ReadFlow ×n, sequential"
CONCURRENT = "ReadFlow ×n, concurrent"
BATCH_CREATE = "BatchCreateFlows"
SEQUENTIAL_CREATE = "CreateFlow ×n, sequential"


async def measure(
    backend: str, target: str, rows: list[Row], size: int, repeats: int
) -> list[Timing]:
    rng = random.Random(2718)  # noqa: S311  # the ids drawn
    names_of = {i: n for i, _, n in rows}
    ids = list(names_of)
    async with grpc.aio.insecure_channel(target) as channel:
        stub = flow_service_pb2_grpc.FlowServiceStub(channel)
        await stub.CountFlows(s.CountFlowsRequest(), timeout=TIMEOUT)  # connected

        async def batch_ids(sample: list[str]) -> list[str]:
            reply = await stub.BatchGetFlows(s.BatchGetFlowsRequest(ids=sample), timeout=TIMEOUT)
            return [f.id for f in reply.flows]

        async def batch_names(sample: list[str]) -> list[str]:
            names = [names_of[i] for i in sample]
            reply = await stub.BatchGetFlows(s.BatchGetFlowsRequest(names=names), timeout=TIMEOUT)
            return [f.id for f in reply.flows]

        async def read_one(flow_id: str) -> str:
            reply = await stub.ReadFlow(s.ReadFlowRequest(id=flow_id), timeout=TIMEOUT)
            return str(reply.flow.id)

        async def sequential(sample: list[str]) -> list[str]:
            return [await read_one(i) for i in sample]

        async def concurrent(sample: list[str]) -> list[str]:
            return list(await asyncio.gather(*(read_one(i) for i in sample)))

        reads: dict[str, Callable[[list[str]], Awaitable[list[str]]]] = {
            BATCH_IDS: batch_ids,
            SEQUENTIAL: sequential,
            CONCURRENT: concurrent,
            BATCH_NAMES: batch_names,
        }
        times: dict[str, list[float]] = {call: [] for call in (*reads, BATCH_CREATE)}
        times[SEQUENTIAL_CREATE] = []
        for round_ in range(WARMUP + repeats):
            sample = rng.sample(ids, size)
            order = list(reads)
            shift = round_ % len(order)
            for call in order[shift:] + order[:shift]:
                started = time.perf_counter()
                got = await reads[call](sample)
                elapsed = time.perf_counter() - started
                if got != sample:
                    raise RuntimeError(f"{backend} {call}: wrong flows or order")
                if round_ >= WARMUP:
                    times[call].append(elapsed)

        async def batch_create(names: list[str]) -> list[bool]:
            request = s.BatchCreateFlowsRequest(
                requests=[s.CreateFlowRequest(name=n, tags=["bench"]) for n in names]
            )
            reply = await stub.BatchCreateFlows(request, timeout=TIMEOUT)
            assert [r.flow.name for r in reply.responses] == names
            return [r.created for r in reply.responses]

        async def sequential_create(names: list[str]) -> list[bool]:
            created = []
            for name in names:
                request = s.CreateFlowRequest(name=name, tags=["bench"])
                reply = await stub.CreateFlow(request, timeout=TIMEOUT)
                assert reply.flow.name == name
                created.append(reply.created)
            return created

        creates = {BATCH_CREATE: batch_create, SEQUENTIAL_CREATE: sequential_create}
        for round_ in range(WARMUP + repeats):
            order = list(creates) if round_ % 2 == 0 else list(creates)[::-1]
            for call in order:
                kind = "b" if call == BATCH_CREATE else "s"
                names = [f"new-{kind}-{round_:03d}-{k:04d}" for k in range(size)]
                started = time.perf_counter()
                created = await creates[call](names)
                elapsed = time.perf_counter() - started
                if not all(created):
                    raise RuntimeError(f"{backend} {call}: a new name was not created")
                if round_ >= WARMUP:
                    times[call].append(elapsed)
    return [Timing(backend, call, seconds) for call, seconds in times.items()]


def ratio(timings: list[Timing], backend: str, numerator: str, denominator: str) -> float:
    by_call = {t.call: t for t in timings if t.backend == backend}
    return by_call[numerator].p50_ms / by_call[denominator].p50_ms


RATIOS = (
    ("BatchGetFlows (ids) ÷ sequential ReadFlow", BATCH_IDS, SEQUENTIAL),
    ("BatchGetFlows (ids) ÷ concurrent ReadFlow", BATCH_IDS, CONCURRENT),
    ("BatchGetFlows (names) ÷ BatchGetFlows (ids)", BATCH_NAMES, BATCH_IDS),
    ("BatchCreateFlows ÷ sequential CreateFlow", BATCH_CREATE, SEQUENTIAL_CREATE),
)


def table(timings: list[Timing], size: int) -> list[str]:
    lines = [
        f"| database | call ({size} flows) | p50 ms | p95 ms | p50 per flow µs |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {t.backend} | {t.call.replace('×n', f'×{size}')} | {t.p50_ms:.1f} | "
        f"{t.p95_ms:.1f} | {t.p50_ms * 1000 / size:.0f} |"
        for t in timings
    ]
    backends = list(dict.fromkeys(t.backend for t in timings))
    lines += [
        "",
        "| ratio of p50s | " + " | ".join(backends) + " |",
        "|---" * (1 + len(backends)) + "|",
    ]
    for label, numerator, denominator in RATIOS:
        cells = [f"{ratio(timings, b, numerator, denominator):.2f}" for b in backends]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def section(
    args: argparse.Namespace, timings: list[Timing], wall: float, loads: tuple[str, str]
) -> str:
    git = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607  # git from PATH
        capture_output=True,
        text=True,
        check=False,
        cwd=BENCH,
    ).stdout.strip()
    return "\n".join(
        [
            "<!-- bench:batch:start -->",
            "## Batches (`bench/batch.py`)",
            "",
            f"Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC · command: `.venv/bin/python "
            f"bench/batch.py` · FlowService git {git} · Python {platform.python_version()}, "
            f"SQLite {sqlite3.sqlite_version}, {os.cpu_count()} cores · wall time {wall:.0f} s "
            f"· load average (1, 5, 15 min) at start {loads[0]}, at end {loads[1]} (the machine "
            "is shared: other processes' load slows a call down, most of all the long "
            "sequential ones)",
            "",
            f"- {args.flows:,} flows (no tags, no runs) loaded straight into FlowService's "
            "schema in Prefect's storage formats; `flowservice serve --workers 1 --access-log "
            "false` pinned to CPU 0, a raw grpc.aio stub on one channel in the benchmark "
            "process on CPU 1",
            f"- reads: {args.repeats} rounds (after {WARMUP} discarded), each with "
            f"{args.size} ids drawn afresh and read four ways in a rotating order — one "
            "BatchGetFlows by id, the same by name, ReadFlow one after another, and ReadFlow "
            "all at once (asyncio.gather); every reply checked against the ids asked for",
            f"- creates: {args.repeats} rounds (after {WARMUP}) of {args.size} new names each, "
            "one BatchCreateFlows vs CreateFlow one after another, alternating which goes "
            "first; each flow checked as created",
            "- p95 is the nearest rank; a ratio below 1 means the batch is faster",
            "",
            *table(timings, args.size),
            "<!-- bench:batch:end -->",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--flows", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=100, help="flows per batch (1 to 1000)")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--postgres", choices=("yes", "no"), default="yes")
    parser.add_argument("--out", type=Path, default=BENCH / "RESULTS.md")
    args = parser.parse_args()
    if not 1 <= args.size <= min(1000, args.flows):
        raise SystemExit("--size must be from 1 to 1000 and at most --flows")
    started = time.monotonic()
    load_at_start = load_average()
    WORK.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setaffinity(0, {1})  # the server has CPU 0
    rows = flow_rows(args.flows)

    url = load_sqlite(WORK / "batch.db", rows)
    print(f"SQLite: {args.flows:,} flows loaded at {time.monotonic() - started:.1f} s", flush=True)
    server = start_server(url, WORK / "sqlite.log")
    try:
        timings = asyncio.run(measure("SQLite", server.target, rows, args.size, args.repeats))
    finally:
        server.stop()

    if args.postgres == "yes":
        database = f"flowbench_batch_{os.getpid()}"
        try:
            url = asyncio.run(load_postgres(database, rows))
            print(f"PostgreSQL: loaded at {time.monotonic() - started:.1f} s", flush=True)
            server = start_server(url, WORK / "postgres.log")
            try:
                timings += asyncio.run(
                    measure("PostgreSQL", server.target, rows, args.size, args.repeats)
                )
            finally:
                server.stop()
        finally:
            asyncio.run(admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))

    wall = time.monotonic() - started
    text = section(args, timings, wall, (load_at_start, load_average()))
    print("\n".join(table(timings, args.size)))
    print(f"\nwall time {wall:.0f} s, load average {load_at_start} → {load_average()}")
    existing = args.out.read_text() if args.out.exists() else None
    args.out.write_text(merge_document(existing, text, "batch"))


if __name__ == "__main__":
    main()
