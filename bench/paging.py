"""ReadFlows deep pages: by page token vs by offset, through gRPC to a `flowservice serve`.

`.venv/bin/python bench/paging.py [--flows 120000] [--depth 100000] [--postgres yes|no]`

Why: a page by offset reads and discards every row before it, so its cost
grows with its depth; a page by token starts at an index position and should
cost the same at any depth. The script loads the flows straight into a
migrated database in Prefect's storage formats (seconds), starts the server
pinned to CPU 0 (this process runs on CPU 1), and times the same page, the
one after `depth` flows, both ways and for each sort; it also times the page
after the first one by token, for the cost at depth 0. Under three minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sqlite3
import statistics
import time
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
from dataset import uuid4_texts
from servers import FLOWSERVICE, FlowService, _spawn, free_port, taskset

from flowservice.v1 import flow_service_pb2 as s
from flowservice.v1 import flow_service_pb2_grpc
from flowservice_server.config import DatabaseSettings
from flowservice_server.db.factory import open_database

if TYPE_CHECKING:
    from collections.abc import Callable

WORK = Path(__file__).resolve().parent / ".work" / "paging"
PAGE_SIZE = 100
SORTS = (
    s.FLOW_SORT_NAME_ASC,
    s.FLOW_SORT_NAME_DESC,
    s.FLOW_SORT_CREATED_DESC,
    s.FLOW_SORT_UPDATED_DESC,
)
BASE = datetime(2025, 1, 1, tzinfo=UTC)
Row = tuple[str, str, str, str, str, str]


def flow_rows(count: int) -> list[Row]:
    """Flows in Prefect's SQLite formats; created instants repeat in threes (ties by id)."""
    rng = random.Random(158)  # noqa: S311  # test data
    ids = uuid4_texts(rng, count)
    fmt = "%Y-%m-%d %H:%M:%S.%f"
    rows = []
    for i, flow_id in enumerate(ids):
        created = (BASE + timedelta(milliseconds=i // 3)).strftime(fmt)
        updated = (BASE + timedelta(microseconds=rng.randrange(10**10))).strftime(fmt)
        rows.append(
            (flow_id, created, updated, f"flow-{rng.randrange(10**12):012d}-{i}", "[]", "{}")
        )
    return rows


async def migrate(url: str) -> None:
    database = await open_database(DatabaseSettings(url=url), migrate=True)
    await database.close()


def load_sqlite(path: Path, rows: list[Row]) -> str:
    for stale in path.parent.glob(path.name + "*"):
        stale.unlink()
    url = f"sqlite+aiosqlite:///{path}"
    asyncio.run(migrate(url))
    with sqlite3.connect(path) as connection:
        connection.executemany(
            "INSERT INTO flow (id, created, updated, name, tags, labels) VALUES (?, ?, ?, ?, ?, ?)",
            rows,
        )
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return url


async def load_postgres(database: str, rows: list[Row]) -> str:
    import asyncpg  # noqa: PLC0415  # only for the PostgreSQL part

    admin = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/postgres")
    try:
        await admin.execute(f'CREATE DATABASE "{database}"')
    finally:
        await admin.close()
    url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{database}"
    await migrate(url)
    connection = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:5432/{database}")
    try:
        records = [
            (flow_id, created + "+00", updated + "+00", name, tags, labels)
            for flow_id, created, updated, name, tags, labels in rows
        ]
        await connection.execute(
            "CREATE TEMP TABLE staging (id text, created text, updated text, name text, "
            "tags text, labels text)"
        )
        await connection.copy_records_to_table("staging", records=records)
        await connection.execute(
            "INSERT INTO flow (id, created, updated, name, tags, labels) SELECT id::uuid, "
            "created::timestamptz, updated::timestamptz, name, tags::jsonb, labels::jsonb "
            "FROM staging"
        )
        await connection.execute("ANALYZE flow")
    finally:
        await connection.close()
    return url


async def drop_postgres(database: str) -> None:
    import asyncpg  # noqa: PLC0415

    admin = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/postgres")
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    finally:
        await admin.close()


def start_server(url: str, log_path: Path) -> FlowService:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWSERVICE_")}
    command = [
        taskset(),
        "-c",
        "0",
        str(FLOWSERVICE),
        "serve",
        "--database-url",
        url,
        "--address",
        f"127.0.0.1:{port}",
        "--workers",
        "1",
        "--access-log",
        "false",
    ]
    server = FlowService(_spawn(command, env, log_path), port, log_path)
    server.wait_ready()
    return server


def p50_ms(call: Callable[[], object], repeats: int) -> float:
    call()  # warm-up: statement cache, page cache
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def measure(target: str, depth: int, repeats: int) -> list[tuple[str, float, float, float]]:
    """Per sort: p50 of page 1 by token, of the page at `depth` by token, by offset (ms)."""
    results = []
    with grpc.insecure_channel(target) as channel:
        stub = flow_service_pb2_grpc.FlowServiceStub(channel)
        for sort in SORTS:

            def read(
                sort: s.FlowSort.ValueType = sort, offset: int = 0, token: str = ""
            ) -> s.ReadFlowsResponse:
                request = s.ReadFlowsRequest(
                    sort=sort, offset=offset, limit=PAGE_SIZE, page_token=token
                )
                return stub.ReadFlows(request, timeout=60)

            shallow = read().next_page_token
            deep = read(offset=depth - PAGE_SIZE).next_page_token  # after `depth` flows
            by_token = [f.id for f in read(token=deep).flows]
            by_offset = [f.id for f in read(offset=depth).flows]
            assert by_token == by_offset, "the token and the offset must give the same page"
            assert len(by_token) == PAGE_SIZE
            results.append(
                (
                    s.FlowSort.Name(sort),
                    p50_ms(partial(read, token=shallow), repeats),
                    p50_ms(partial(read, token=deep), repeats),
                    p50_ms(partial(read, offset=depth), repeats),
                )
            )
    return results


def report(
    backend: str, flows: int, depth: int, rows: list[tuple[str, float, float, float]]
) -> None:
    print(f"\n{backend}: {flows:,} flows, page size {PAGE_SIZE}, page after {depth:,} flows")
    print(f"| sort | token, page 2 | token, depth {depth:,} | offset {depth:,} | offset / token |")
    print("|---|---|---|---|---|")
    for sort, shallow, deep, offset in rows:
        ratio = offset / deep
        print(f"| {sort} | {shallow:.2f} ms | {deep:.2f} ms | {offset:.2f} ms | {ratio:.0f}× |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flows", type=int, default=120_000)
    parser.add_argument("--depth", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--postgres", choices=("yes", "no"), default="yes")
    args = parser.parse_args()
    if args.depth + PAGE_SIZE > args.flows:
        raise SystemExit("--flows must exceed --depth by a page")
    if len(os.sched_getaffinity(0)) > 1:
        os.sched_setaffinity(0, {1})  # the server has CPU 0
    WORK.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    rows = flow_rows(args.flows)

    url = load_sqlite(WORK / "paging.db", rows)
    print(f"loaded SQLite in {time.monotonic() - started:.1f} s")
    server = start_server(url, WORK / "sqlite.log")
    try:
        report("SQLite", args.flows, args.depth, measure(server.target, args.depth, args.repeats))
    finally:
        server.stop()

    if args.postgres == "yes":
        database = f"flowbench_paging_{os.getpid()}"
        try:
            loaded = time.monotonic()
            url = asyncio.run(load_postgres(database, rows))
            print(f"\nloaded PostgreSQL in {time.monotonic() - loaded:.1f} s")
            server = start_server(url, WORK / "postgres.log")
            try:
                results = measure(server.target, args.depth, args.repeats)
                report("PostgreSQL", args.flows, args.depth, results)
            finally:
                server.stop()
        finally:
            asyncio.run(drop_postgres(database))
    print(f"\nwall time {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
