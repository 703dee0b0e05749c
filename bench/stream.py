"""StreamFlows over a million flows: throughput through real gRPC, and the server's memory.

Why: StreamFlows promises that the server holds one batch, not the result set,
however large it is. This loads `--flows` flows (default 1,000,000) straight
into a FlowService SQLite file (and, with `--postgres yes`, a PostgreSQL
database) in Prefect's storage formats, starts `flowservice serve --workers 1`
pinned to CPU 0, streams every flow through a raw grpc.aio stub from this
process (pinned to CPU 1), and reports flows/s and the server's resident
memory: VmRSS just before the stream, and its peak (VmHWM) after it.

    .venv/bin/python bench/stream.py                  # SQLite and PostgreSQL, ~3 min
    .venv/bin/python bench/stream.py --postgres no --flows 200000

The section `<!-- bench:stream:… -->` of `--out` (bench/RESULTS.md) is
replaced with the results. Everything else it writes goes to bench/.work/.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import sqlite3
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg
import grpc
import grpc.aio
import sqlalchemy as sa
from report import merge_document
from servers import free_port, taskset

from flowservice.v1 import flow_service_pb2, flow_service_pb2_grpc
from flowservice_server.config import DatabaseSettings
from flowservice_server.db.factory import open_database

if TYPE_CHECKING:
    from collections.abc import Iterator

BENCH = Path(__file__).resolve().parent
WORK = BENCH / ".work" / "stream"
FLOWSERVICE = Path(sys.executable).with_name("flowservice")
POSTGRES_SERVER = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
BATCH_SIZES = (100, 1000)
#: Rows per executemany / COPY call while loading.
CHUNK = 50_000
START = datetime(2026, 11, 1, tzinfo=UTC)


def flow_rows(count: int) -> Iterator[tuple[uuid.UUID, datetime, str, str]]:
    """(id, created = updated, name, tags JSON) for each flow: a second apart, no tags."""
    for i in range(count):
        yield uuid.uuid4(), START + timedelta(seconds=i), f"flow-{i:07d}", "[]"


def chunks(count: int) -> Iterator[list[tuple[uuid.UUID, datetime, str, str]]]:
    chunk: list[tuple[uuid.UUID, datetime, str, str]] = []
    for row in flow_rows(count):
        chunk.append(row)
        if len(chunk) == CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


async def migrate(url: str) -> None:
    database = await open_database(DatabaseSettings(url=url), migrate=True)
    await database.close()


def load_sqlite(path: Path, count: int) -> float:
    """FlowService's schema, then the flows with sqlite3 executemany; seconds taken."""
    for stale in path.parent.glob(path.name + "*"):
        stale.unlink()
    asyncio.run(migrate(f"sqlite+aiosqlite:///{path}"))
    started = time.monotonic()
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("PRAGMA synchronous = OFF")
        connection.execute("PRAGMA cache_size = -1000000")
        connection.execute("BEGIN")
        for chunk in chunks(count):
            # Prefect's SQLite formats: hyphenated lower-case UUID text, UTC text
            # 'YYYY-MM-DD HH:MM:SS.ffffff', JSON text (db/types.py).
            connection.executemany(
                "INSERT INTO flow (id, created, updated, name, tags) VALUES (?, ?, ?, ?, ?)",
                [
                    (
                        str(i),
                        t.strftime("%Y-%m-%d %H:%M:%S.%f"),
                        t.strftime("%Y-%m-%d %H:%M:%S.%f"),
                        n,
                        g,
                    )
                    for i, t, n, g in chunk
                ],
            )
        connection.execute("COMMIT")
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        connection.close()
    return time.monotonic() - started


async def load_postgres(url: str, count: int) -> float:
    """FlowService's schema, then the flows with COPY and VACUUM (ANALYZE); seconds taken."""
    await migrate(url)
    started = time.monotonic()
    connection = await asyncpg.connect(
        sa.make_url(url).set(drivername="postgresql").render_as_string(False)
    )
    try:
        for chunk in chunks(count):
            await connection.copy_records_to_table(
                "flow",
                records=[(i, t, t, n, g) for i, t, n, g in chunk],
                columns=["id", "created", "updated", "name", "tags"],
            )
        await connection.execute("VACUUM (ANALYZE) flow")  # as autovacuum would, soon after
    finally:
        await connection.close()
    return time.monotonic() - started


async def admin(statement: str) -> None:
    connection = await asyncpg.connect(
        sa.make_url(POSTGRES_SERVER).set(drivername="postgresql").render_as_string(False)
    )
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


def memory_kib(pid: int, field: str) -> int:
    """VmRSS (now) or VmHWM (peak) of a process, in KiB."""
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(rf"^{field}:\s+(\d+) kB", status, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"no {field} in /proc/{pid}/status")
    return int(match.group(1))


@contextlib.contextmanager
def flowservice(database_url: str, log: Path) -> Iterator[tuple[int, int]]:
    """`flowservice serve --workers 1` on CPU 0: (pid, port) while it runs."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWSERVICE_")}
    command = [
        taskset(), "-c", "0", str(FLOWSERVICE), "serve",
        "--database-url", database_url, "--address", f"127.0.0.1:{port}",
        "--workers", "1", "--access-log", "false",
    ]  # fmt: skip
    with log.open("wb") as output:
        process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)  # noqa: S603
    try:
        give_up = time.monotonic() + 60
        while f"listening on 127.0.0.1:{port}" not in log.read_text(errors="replace"):
            if process.poll() is not None or time.monotonic() > give_up:
                raise RuntimeError("flowservice did not start:\n" + log.read_text())
            time.sleep(0.1)
        yield process.pid, port
    finally:
        process.terminate()
        process.wait(timeout=30)


#: Run in a child process: how much reading every flow, in the stream's order, with
#: the server's page cache size and nothing else, grows a process (MiB).
PAGE_CACHE_PROBE = """
import re, sqlite3, sys
from pathlib import Path
def rss():
    return int(re.search(r"VmRSS:\\s+(\\d+)", Path("/proc/self/status").read_text()).group(1))
connection = sqlite3.connect(sys.argv[1])
connection.execute("PRAGMA cache_size = 20000")
before = rss()
query = "SELECT id, created, updated, name, tags, labels FROM flow ORDER BY name"
cursor = connection.execute(query)
while cursor.fetchmany(1000):
    pass
print((rss() - before) // 1024)
"""


def page_cache_growth(path: Path) -> int:
    """SQLite's page cache alone, filled by the same read as the stream's (MiB)."""
    probe = [sys.executable, "-c", PAGE_CACHE_PROBE, str(path)]
    result = subprocess.run(probe, capture_output=True, text=True, check=True)  # noqa: S603
    return int(result.stdout)


@dataclass
class Measurement:
    backend: str
    batch_size: int
    flows: int
    seconds: float
    first_response_ms: float
    rss_before_kib: int
    peak_kib: int

    @property
    def flows_per_second(self) -> float:
        return self.flows / self.seconds


async def stream_all(port: int, pid: int, backend: str, batch_size: int) -> Measurement:
    """One StreamFlows call reading every flow, as fast as this process can decode them."""
    async with grpc.aio.insecure_channel(
        f"127.0.0.1:{port}", options=[("grpc.max_receive_message_length", 64 << 20)]
    ) as channel:
        stub = flow_service_pb2_grpc.FlowServiceStub(channel)
        await stub.CountFlows(flow_service_pb2.CountFlowsRequest())  # connected and warm
        rss_before = memory_kib(pid, "VmRSS")
        received = 0
        first_ms = 0.0
        started = time.perf_counter()
        async for response in stub.StreamFlows(
            flow_service_pb2.StreamFlowsRequest(batch_size=batch_size)
        ):
            if not received:
                first_ms = (time.perf_counter() - started) * 1000
            received += len(response.flows)
        seconds = time.perf_counter() - started
    return Measurement(
        backend, batch_size, received, seconds, first_ms, rss_before, memory_kib(pid, "VmHWM")
    )


def measure(backend: str, database_url: str, expected: int) -> list[Measurement]:
    results = []
    for batch_size in BATCH_SIZES:  # a fresh server each: VmHWM is then this stream's peak
        with flowservice(database_url, WORK / f"server-{backend}-{batch_size}.log") as (pid, port):
            measurement = asyncio.run(stream_all(port, pid, backend, batch_size))
        if measurement.flows != expected:
            raise RuntimeError(f"streamed {measurement.flows} flows of {expected}")
        print(
            f"{backend:10} batch {batch_size:5}: {measurement.flows:,} flows in "
            f"{measurement.seconds:.1f} s = {measurement.flows_per_second:,.0f} flows/s; "
            f"first response {measurement.first_response_ms:.0f} ms; server RSS "
            f"{measurement.rss_before_kib / 1024:.0f} MiB before, peak "
            f"{measurement.peak_kib / 1024:.0f} MiB",
            flush=True,
        )
        results.append(measurement)
    return results


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def section(
    flows: int,
    loads: dict[str, float],
    *,
    results: list[Measurement],
    cache_mib: int,
    wall: float,
    loads_average: tuple[str, str],
) -> str:
    rows = [
        f"| {m.backend} | {m.batch_size} | {m.flows:,} | {m.seconds:.1f} | "
        f"{m.flows_per_second:,.0f} | {m.first_response_ms:.0f} | "
        f"{m.rss_before_kib / 1024:.0f} | {m.peak_kib / 1024:.0f} | "
        f"{(m.peak_kib - m.rss_before_kib) / 1024:+.0f} |"
        for m in results
    ]
    loaded = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in loads.items())
    git = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607  # git from PATH
        capture_output=True,
        text=True,
        check=False,
        cwd=BENCH,
    ).stdout.strip()
    return "\n".join(
        [
            "<!-- bench:stream:start -->",
            f"## StreamFlows over {flows:,} flows (`bench/stream.py`)",
            "",
            f"Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC · command: `.venv/bin/python "
            f"bench/stream.py` · FlowService git {git} · Python "
            f"{platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
            f"{os.cpu_count()} cores · wall time {wall:.0f} s · load average at start "
            f"{loads_average[0]}, at end {loads_average[1]} (the machine is shared: other "
            "processes' load slows a row down)",
            "",
            f"- {flows:,} flows (no tags, no runs) loaded straight into FlowService's schema "
            f"in Prefect's storage formats ({loaded})",
            "- `flowservice serve --workers 1 --access-log false` pinned to CPU 0, a fresh "
            "server per row; one StreamFlows call (default sort, by name) reads every flow "
            "through a raw grpc.aio stub in the benchmark process on CPU 1",
            "- RSS before: the server's VmRSS after one CountFlows, just before the stream; "
            "peak: its VmHWM after the stream (the whole process's high-water mark)",
            "",
            "| database | batch_size | flows | seconds | flows/s | first response ms "
            "| RSS before MiB | peak MiB | peak − before MiB |",
            "|---|---|---|---|---|---|---|---|---|",
            *rows,
            "",
            "On SQLite the growth is the connection's page cache (`PRAGMA cache_size = 20000`, "
            "Prefect's, about 80 MB), which fills as the stream reads the file and stops at "
            "that size however many rows follow: Python's sqlite3 alone, reading the same rows "
            f"in the same order with that cache size, grows a process by {cache_mib} MiB. "
            "PostgreSQL's server-side cursor keeps the rows in the database server.",
            "<!-- bench:stream:end -->",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--flows", type=int, default=1_000_000)
    parser.add_argument("--postgres", choices=("yes", "no"), default="yes")
    parser.add_argument("--out", type=Path, default=BENCH / "RESULTS.md")
    args = parser.parse_args()
    started = time.monotonic()
    load_at_start = load_average()
    WORK.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setaffinity(0, {1})

    loads: dict[str, float] = {}
    path = WORK / "flows.db"
    loads["SQLite"] = load_sqlite(path, args.flows)
    print(f"SQLite: {args.flows:,} flows loaded in {loads['SQLite']:.1f} s", flush=True)
    results = measure("SQLite", f"sqlite+aiosqlite:///{path}", args.flows)
    cache_mib = page_cache_growth(path)
    print(f"SQLite page cache alone, same read: {cache_mib} MiB", flush=True)

    if args.postgres == "yes":
        name = f"flowbench_stream_{os.getpid()}"
        asyncio.run(admin(f'CREATE DATABASE "{name}"'))
        try:
            url = sa.make_url(POSTGRES_SERVER).set(database=name).render_as_string(False)
            loads["PostgreSQL"] = asyncio.run(load_postgres(url, args.flows))
            print(f"PostgreSQL: loaded in {loads['PostgreSQL']:.1f} s", flush=True)
            results += measure("PostgreSQL", url, args.flows)
        finally:
            asyncio.run(admin(f'DROP DATABASE "{name}" WITH (FORCE)'))

    wall = time.monotonic() - started
    text = section(
        args.flows,
        loads,
        results=results,
        cache_mib=cache_mib,
        wall=wall,
        loads_average=(load_at_start, load_average()),
    )
    existing = args.out.read_text() if args.out.exists() else None
    args.out.write_text(merge_document(existing, text, "stream"))
    print(json.dumps({"results": [vars(m) for m in results]}, default=str))


if __name__ == "__main__":
    main()
