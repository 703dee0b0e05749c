"""WatchFlows: what change capture costs writers, and how fast changes reach watchers.

Run `.venv/bin/python bench/watch.py [--postgres URL]`; it prints a markdown
section for bench/RESULTS.md. Loopback only, bounded load:

* write throughput: CreateFlow then UpdateFlow by 8 concurrent callers for
  a few seconds, through one server process, with the triggers in place and
  then with them dropped (same database, same process), and the ratio;
* delivery latency: 1, 100 and 1,000 watches open on a server process while
  another server process on the same database takes 20 creates a second;
  the latency of one event is from just before its write was sent to its
  arrival at a watcher (so it includes the write itself), over every
  (watcher, event) pair.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc.aio
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from flowservice.client import FlowClient
from flowservice.v1 import flow_service_pb2, flow_service_pb2_grpc

FLOWSERVICE = str(Path(sys.executable).with_name("flowservice"))
LISTENING = re.compile(r"listening on 127\.0\.0\.1:(\d+)")
WRITE_SECONDS = 4.0
WRITERS = 8
EVENTS = 60
RATE = 20.0  # creates per second while watchers listen


async def serve(url: str, *extra: str) -> tuple[asyncio.subprocess.Process, str]:
    process = await asyncio.create_subprocess_exec(
        FLOWSERVICE,
        "serve",
        "--address",
        "127.0.0.1:0",
        "--workers",
        "1",
        "--access-log",
        "false",
        "--database-url",
        url,
        *extra,
        env={k: v for k, v in os.environ.items() if not k.startswith("FLOWSERVICE_")},
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    while True:
        line = (await asyncio.wait_for(process.stderr.readline(), 60)).decode()
        if not line:
            raise RuntimeError("the server exited before listening")
        if match := LISTENING.search(line):
            asyncio.create_task(_drain(process.stderr))  # noqa: RUF006  # ends with the process
            return process, f"127.0.0.1:{match.group(1)}"


async def _drain(stream: asyncio.StreamReader) -> None:
    while await stream.readline():
        pass


async def stop(process: asyncio.subprocess.Process) -> None:
    process.terminate()
    await process.wait()


async def write_throughput(address: str, prefix: str) -> float:
    """Writes per second (a create and an update count as two) for WRITE_SECONDS."""
    done = 0
    end = time.monotonic() + WRITE_SECONDS

    async def writer(client: FlowClient, index: int) -> None:
        nonlocal done
        n = 0
        while time.monotonic() < end:
            flow, _ = await client.create_flow(f"{prefix}-{index}-{n}")
            await client.update_flow(flow.id, tags=["x"])
            done += 2
            n += 1

    async with FlowClient(address, timeout=30) as client:
        started = time.monotonic()
        await asyncio.gather(*(writer(client, i) for i in range(WRITERS)))
        return done / (time.monotonic() - started)


async def set_capture(url: str, *, on: bool) -> None:
    """Drop the managed schema's triggers (off), or put them back by re-running their DDL."""
    from flowservice_server.db import changefeed_schema as schema  # noqa: PLC0415

    engine = create_async_engine(url)
    sqlite = url.startswith("sqlite")
    async with engine.begin() as connection:
        if not on:
            names = schema.SQLITE_TRIGGERS if sqlite else schema.POSTGRES_TRIGGERS
            for name in names:
                suffix = "" if sqlite else " ON flow"
                await connection.exec_driver_sql(f"DROP TRIGGER {name}{suffix}")
        else:
            ddl = schema.sqlite_ddl() if sqlite else schema.postgres_ddl()
            for statement in ddl:
                if statement.startswith("CREATE TRIGGER"):
                    await connection.exec_driver_sql(statement)
    await engine.dispose()


async def delivery(url: str, watchers: int) -> tuple[float, float, int]:
    """p50 and p99 (ms) of write-to-event latency with `watchers` watches open; pairs seen."""
    engine = create_async_engine(url)  # empty initial states: the watches start at once
    async with engine.begin() as connection:
        await connection.exec_driver_sql("DELETE FROM flow")
    await engine.dispose()
    watch_process, watch_address = await serve(url, "--watch-max-watchers", str(watchers + 10))
    write_process, write_address = await serve(url)
    sent: dict[str, float] = {}
    latencies: list[float] = []
    # One connection per 100 watches (the server's default stream limit per connection);
    # a local subchannel pool keeps channels to one address from sharing a connection.
    own_connection = [("grpc.use_local_subchannel_pool", 1)]
    channels = [
        grpc.aio.insecure_channel(watch_address, options=own_connection)
        for _ in range(max(watchers // 100, 1))
    ]
    try:
        ready = 0
        all_ready = asyncio.Event()

        async def watch(index: int) -> None:
            nonlocal ready
            stub: Any = flow_service_pb2_grpc.FlowServiceStub(channels[index % len(channels)])
            request = flow_service_pb2.WatchFlowsRequest(send_initial_state=True)
            seen = 0
            async for response in stub.WatchFlows(request):
                kind = response.WhichOneof("event")
                if kind == "initial_state_done":
                    ready += 1
                    if ready == watchers:
                        all_ready.set()
                elif kind == "created":
                    latencies.append(time.monotonic() - sent[response.created.name])
                    seen += 1
                    if seen == EVENTS:
                        return

        tasks = [asyncio.create_task(watch(i)) for i in range(watchers)]
        ready_wait = asyncio.create_task(all_ready.wait())
        await asyncio.wait([ready_wait, *tasks], timeout=120, return_when=asyncio.FIRST_COMPLETED)
        if not all_ready.is_set():
            for task in tasks:
                if task.done():
                    task.result()  # a watch that failed says why
            raise TimeoutError("the watches did not all start")
        async with FlowClient(write_address, timeout=30) as client:
            for n in range(EVENTS):
                name = f"w{watchers}-{n}-{time.time_ns()}"
                sent[name] = time.monotonic()
                await client.create_flow(name)
                await asyncio.sleep(1 / RATE)
        await asyncio.wait_for(asyncio.gather(*tasks), 120)
    finally:
        for channel in channels:
            await channel.close()
        await stop(watch_process)
        await stop(write_process)
    latencies.sort()
    p99 = latencies[min(int(len(latencies) * 0.99), len(latencies) - 1)]
    return statistics.median(latencies) * 1000, p99 * 1000, len(latencies)


async def migrate(url: str) -> None:
    from flowservice_server.config import DatabaseSettings  # noqa: PLC0415
    from flowservice_server.db.factory import open_database  # noqa: PLC0415

    database = await open_database(DatabaseSettings(url=url), migrate=True)
    await database.close()


async def bench(url: str, label: str) -> list[str]:
    await migrate(url)
    lines = [f"#### {label}", "", "| capture | writes/s |", "|---|---|"]
    rates = {}
    for on in (True, False):  # the migrated schema has the triggers: measure, drop, measure
        if not on:
            await set_capture(url, on=False)
        process, address = await serve(url)
        try:
            rates[on] = await write_throughput(address, f"t{int(on)}-{time.time_ns()}")
        finally:
            await stop(process)
    await set_capture(url, on=True)
    lines += [f"| on | {rates[True]:,.0f} |", f"| off | {rates[False]:,.0f} |", ""]
    lines += [f"Ratio on/off: **{rates[True] / rates[False]:.2f}**", ""]
    lines += ["| watchers | events seen | p50 ms | p99 ms |", "|---|---|---|---|"]
    for watchers in (1, 100, 1000):
        p50, p99, pairs = await delivery(url, watchers)
        lines.append(f"| {watchers:,} | {pairs:,} | {p50:.1f} | {p99:.1f} |")
    return [*lines, ""]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", help="a PostgreSQL server URL; a scratch database is made")
    arguments = parser.parse_args()
    lines = ["## WatchFlows", "", f"Generated by `bench/watch.py`, {time.ctime()}.", ""]
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "watch.db"
        sqlite3.connect(path).close()
        lines += await bench(f"sqlite+aiosqlite:///{path}", "SQLite")
    if arguments.postgres:
        name = f"flowservice_watch_bench_{os.getpid()}"
        admin = create_async_engine(arguments.postgres, isolation_level="AUTOCOMMIT")
        async with admin.connect() as connection:
            await connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        try:
            url = sa.make_url(arguments.postgres).set(database=name)
            lines += await bench(url.render_as_string(hide_password=False), "PostgreSQL")
        finally:
            async with admin.connect() as connection:
                await connection.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
            await admin.dispose()
    print("\n".join(lines))


if __name__ == "__main__":
    asyncio.run(main())
