"""Reads with 0 and 1 PostgreSQL hot standbys at equal total CPU, and what read-your-writes costs.

`.venv/bin/python bench/replicas.py [--flows 20000] [--duration 5] [--rounds 300]`

Why: reads on a standby take work off the primary; read-your-writes makes a
read wait until a standby has replayed the caller's write. This measures
both on this machine, honestly: with two cores there is no spare CPU to
give a standby, so the databases (primary, and standby when used) share
CPU 0 in both modes, FlowService (`serve --workers 1`) and this load
generator share CPU 1. At equal total CPU a standby cannot add throughput;
what the numbers can show is where each read's database CPU is spent (the
primary's share drops to its health probes) and what routing costs.

The primary and standby are throwaway clusters (`tests/pg_cluster.py`:
initdb, `pg_basebackup -R`, fsync off) with `synchronous_commit = on`, the
production default, so a commit reaches the standby at once. Flows are
created through BatchCreateFlows; throughput rows drive `--concurrency`
back-to-back calls on one raw grpc.aio channel for `--duration` seconds
after a discarded warm-up; every reply is checked. CPU per read comes from
/proc (the process trees of each postmaster and of the server). Per-target
read counts come from the server's own metrics. The section
`<!-- bench:replicas:… -->` of `--out` (bench/RESULTS.md) is replaced.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import random
import statistics
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio
from loadstats import percentile, pin_to_cpu
from prometheus_client.parser import text_string_to_metric_families
from report import merge_document
from servers import FLOWSERVICE, FlowService, _spawn, free_port, taskset

from flowservice.v1 import flow_service_pb2 as s
from flowservice.v1 import flow_service_pb2_grpc

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))  # the tests' throwaway clusters
from tests.pg_cluster import PostgresCluster, scratch_directory  # noqa: E402

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

WORK = BENCH / ".work" / "replicas"
DATABASE = "flowservice"
DATABASE_CPU = 0
SERVICE_CPU = 1
TIMEOUT = 30.0
TICK = os.sysconf("SC_CLK_TCK")


# --- clusters --------------------------------------------------------------------------


def postmaster_pid(cluster: PostgresCluster) -> int:
    return int((cluster.directory / "postmaster.pid").read_text().split()[0])


def pin_tree(pid: int, cpu: int) -> None:
    """Pin a postmaster and its children to `cpu`; backends it forks later inherit it."""
    for child in [pid, *_descendants(pid)]:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(child, {cpu})


def tree_cpu(pid: int) -> float:
    """CPU seconds of `pid` and its descendants, those that have exited included.

    A PostgreSQL backend or autovacuum worker that exits is reaped by the
    postmaster, whose `cutime`/`cstime` then hold its CPU time.
    """
    total = 0.0
    for member in [pid, *_descendants(pid)]:
        with contextlib.suppress(OSError):
            text = Path(f"/proc/{member}/stat").read_text()
            fields = text[text.rindex(")") + 2 :].split()
            total += sum(int(value) for value in fields[11:15]) / TICK
    return total


def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                children = [int(c) for c in task.read_text().split()]
                found += children
                todo += children
    return found


@contextlib.contextmanager
def primary_and_standby() -> Iterator[tuple[PostgresCluster, PostgresCluster]]:
    with scratch_directory("flowbench-replicas-") as directory:
        primary = PostgresCluster.create(directory / "cluster")
        primary.set(synchronous_commit="on")
        primary.start()
        standby: PostgresCluster | None = None
        try:
            subprocess.run(  # noqa: S603  # our own argument list
                [
                    *(str(primary.bindir / "createdb"), "-h", "127.0.0.1"),
                    *("-p", str(primary.port), "-U", "postgres", DATABASE),
                ],
                check=True,
            )
            standby = primary.standby()
            standby.start()
            for cluster in (primary, standby):
                pin_tree(postmaster_pid(cluster), DATABASE_CPU)
            yield primary, standby
        finally:
            if standby is not None:
                standby.stop("immediate")
            primary.stop("immediate")


def start_service(primary: PostgresCluster, read_urls: list[str], log: Path) -> tuple[Any, int]:
    port, metrics_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWSERVICE_")}
    command = [
        taskset(), "-c", str(SERVICE_CPU), str(FLOWSERVICE), "serve",
        "--database-url", primary.url(DATABASE), "--address", f"127.0.0.1:{port}",
        "--workers", "1", "--access-log", "false",
        "--metrics-address", f"127.0.0.1:{metrics_port}",
        *(arg for url in read_urls for arg in ("--database-read-url", url)),
    ]  # fmt: skip
    server = FlowService(_spawn(command, env, log), port, log)
    server.wait_ready()
    return server, metrics_port


def reads_by_target(metrics_port: int) -> dict[str, float]:
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:  # our own loopback
        text = response.read().decode()
    return {
        sample.labels["target"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "flowservice_db_reads_total"
    }


async def replayed(primary: PostgresCluster, standby: PostgresCluster) -> None:
    """Until the standby has replayed what the primary had written."""
    import asyncpg  # noqa: PLC0415

    source = await asyncpg.connect(primary.url(DATABASE, driver="postgresql"))
    target = await asyncpg.connect(standby.url(DATABASE, driver="postgresql"))
    try:
        position = await source.fetchval("SELECT pg_current_wal_insert_lsn()")
        caught_up = False
        while not caught_up:
            await asyncio.sleep(0.05)
            caught_up = await target.fetchval("SELECT pg_last_wal_replay_lsn() >= $1", position)
    finally:
        await source.close()
        await target.close()


# --- load ------------------------------------------------------------------------------


@dataclass
class Row:
    name: str
    values: dict[str, Any] = field(default_factory=dict)


async def throughput(
    call: Callable[[int], Awaitable[None]],
    *,
    concurrency: int,
    duration: float,
    warmup: float,
    pids: dict[str, int],
) -> dict[str, Any]:
    latencies: list[float] = []
    errors: dict[str, int] = {}
    counter = [0]

    async def drive(seconds: float, record: bool) -> None:
        end = time.monotonic() + seconds

        async def worker() -> None:
            while time.monotonic() < end:
                counter[0] += 1
                started = time.perf_counter()
                try:
                    await call(counter[0])
                except Exception as error:  # noqa: BLE001  # counted, never dropped
                    kind = (
                        error.code().name
                        if isinstance(error, grpc.aio.AioRpcError)
                        else repr(error)
                    )
                    errors[kind] = errors.get(kind, 0) + 1
                    continue
                if record:
                    latencies.append(time.perf_counter() - started)

        await asyncio.gather(*(worker() for _ in range(concurrency)))

    await drive(warmup, record=False)
    errors.clear()
    cpu_before = {name: tree_cpu(pid) for name, pid in pids.items()}
    started = time.monotonic()
    await drive(duration, record=True)
    elapsed = time.monotonic() - started
    cpu = {name: tree_cpu(pid) - cpu_before[name] for name, pid in pids.items()}
    latencies.sort()
    done = len(latencies)
    result: dict[str, Any] = {
        "reads": done,
        "rps": done / elapsed,
        "p50_ms": 1000 * (percentile(latencies, 0.5) or 0),
        "p99_ms": 1000 * (percentile(latencies, 0.99) or 0),
        "errors": sum(errors.values()),
    }
    for name, seconds in cpu.items():
        result[f"{name}_cpu_us"] = 1e6 * seconds / done if done else None
    return result


async def read_after_write(
    stub: flow_service_pb2_grpc.FlowServiceAsyncStub, flow_id: str, rounds: int, *, with_token: bool
) -> dict[str, Any]:
    """UpdateFlow then at once ReadFlow (with the write's token or without): the read's latency."""
    reads: list[float] = []
    stale = 0
    for number in range(rounds):
        tag = f"round-{number}-{random.random()}"  # noqa: S311  # a fresh value, not a secret
        write = stub.UpdateFlow(s.UpdateFlowRequest(id=flow_id, tags=[tag]), timeout=TIMEOUT)
        await write
        metadata: tuple[tuple[str, str], ...] = ()
        if with_token:
            positions = [v for k, v in await write.trailing_metadata() if k == "x-flowservice-lsn"]
            metadata = tuple(("x-flowservice-min-lsn", str(p)) for p in positions)
        started = time.perf_counter()
        answer = await stub.ReadFlow(
            s.ReadFlowRequest(id=flow_id), metadata=metadata, timeout=TIMEOUT
        )
        reads.append(time.perf_counter() - started)
        stale += list(answer.flow.tags) != [tag]
    reads.sort()
    return {
        "p50_ms": 1000 * (percentile(reads, 0.5) or 0),
        "p95_ms": 1000 * (percentile(reads, 0.95) or 0),
        "mean_ms": 1000 * statistics.fmean(reads),
        "stale": stale,
    }


@contextlib.asynccontextmanager
async def service(
    primary: PostgresCluster, standby: PostgresCluster, replicas: int, log_name: str
) -> AsyncIterator[tuple[Any, int, flow_service_pb2_grpc.FlowServiceAsyncStub]]:
    read_urls = [standby.url(DATABASE)] if replicas else []
    server, metrics_port = start_service(primary, read_urls, WORK / f"{log_name}.log")
    try:
        async with grpc.aio.insecure_channel(server.target) as channel:
            yield server, metrics_port, flow_service_pb2_grpc.FlowServiceStub(channel)
    finally:
        server.stop()


def _label(replicas: int) -> str:
    return "1 standby" if replicas == 1 else f"{replicas} standbys"


def _standby_share(before: dict[str, float], after: dict[str, float]) -> float:
    """The share of reads between two scrapes that a standby served (warm-up included).

    The metrics count reads by target only when there are standbys: none is 0.
    """
    on_primary = after.get("primary", 0) - before.get("primary", 0)
    served = sum(after.values()) - sum(before.values())
    return (served - on_primary) / served if served else 0.0


async def measure_throughput(
    primary: PostgresCluster,
    standby: PostgresCluster,
    replicas: int,
    ids: list[str],
    args: argparse.Namespace,
) -> list[Row]:
    rows: list[Row] = []
    async with service(primary, standby, replicas, f"throughput-{replicas}") as (
        server,
        metrics_port,
        stub,
    ):
        pids = {
            "primary": postmaster_pid(primary),
            "standby": postmaster_pid(standby),
            "service": server.pid,
        }
        rng = random.Random(7)  # noqa: S311  # which flow to read

        async def read_flow(_: int) -> None:
            flow_id = ids[rng.randrange(len(ids))]
            answer = await stub.ReadFlow(s.ReadFlowRequest(id=flow_id), timeout=TIMEOUT)
            assert answer.flow.id == flow_id

        async def count_like(number: int) -> None:
            request = s.CountFlowsRequest()
            request.flows.name.like = f"x{number % 1000:03d}x"
            answer = await stub.CountFlows(request, timeout=TIMEOUT)
            assert answer.count == len(ids) // 1000

        operations = (("ReadFlow by id", read_flow), ("CountFlows, name like (scan)", count_like))
        for name, call in operations:
            before = reads_by_target(metrics_port)
            values = await throughput(
                call,
                concurrency=args.concurrency,
                duration=args.duration,
                warmup=args.warmup,
                pids=pids,
            )
            after = reads_by_target(metrics_port)
            values["on_standby"] = _standby_share(before, after)
            rows.append(Row(f"{name} | {_label(replicas)}", values))
    return rows


async def measure_read_after_write(
    primary: PostgresCluster,
    standby: PostgresCluster,
    replicas: int,
    flow_id: str,
    args: argparse.Namespace,
    *,
    apply_delay_ms: int = 0,
) -> list[Row]:
    rows: list[Row] = []
    label = _label(replicas) + (f" applying {apply_delay_ms} ms late" if apply_delay_ms else "")
    if apply_delay_ms:
        standby.set(recovery_min_apply_delay=f"'{apply_delay_ms}ms'")
    try:
        async with service(primary, standby, replicas, f"latency-{replicas}") as (_, port, stub):
            variants = [("no token", False)]
            if replicas:
                variants.append(("token (read-your-writes)", True))
            for variant, with_token in variants:
                before = reads_by_target(port)
                values = await read_after_write(stub, flow_id, args.rounds, with_token=with_token)
                after = reads_by_target(port)
                values["on_standby"] = _standby_share(before, after)
                rows.append(Row(f"{label}, {variant}", values))
    finally:
        if apply_delay_ms:
            standby.set(recovery_min_apply_delay="0")
    return rows


async def load_flows(primary: PostgresCluster, standby: PostgresCluster, count: int) -> list[str]:
    """Create the flows, VACUUM (ANALYZE) them as autovacuum would, wait for the standby."""
    import asyncpg  # noqa: PLC0415

    async with service(primary, standby, 0, "load") as (_, _, stub):
        ids = await _flows(stub, count)
    connection = await asyncpg.connect(primary.url(DATABASE, driver="postgresql"))
    try:
        await connection.execute("VACUUM (ANALYZE)")
    finally:
        await connection.close()
    await replayed(primary, standby)
    return ids


async def _flows(stub: flow_service_pb2_grpc.FlowServiceAsyncStub, count: int) -> list[str]:
    """`count` flows named `bench-<i>-x<i mod 1000>x`, created in batches of 1,000 (or found)."""
    ids: list[str] = []
    for start in range(0, count, 1000):
        request = s.BatchCreateFlowsRequest(
            requests=[
                s.CreateFlowRequest(name=f"bench-{i:06d}-x{i % 1000:03d}x")
                for i in range(start, min(start + 1000, count))
            ]
        )
        answer = await stub.BatchCreateFlows(request, timeout=TIMEOUT)
        ids += [item.flow.id for item in answer.responses]
    return ids


# --- report ----------------------------------------------------------------------------


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def section(
    args: argparse.Namespace, throughput_rows: list[Row], latency_rows: list[Row], wall: float
) -> str:
    load = os.getloadavg()
    lines = [
        "<!-- bench:replicas:start -->",
        "## Reads on a hot standby, and read-your-writes",
        "",
        f"Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC · command: "
        f"`.venv/bin/python bench/replicas.py --flows {args.flows} --duration {args.duration} "
        f"--rounds {args.rounds} --repetitions {args.repetitions} --apply-delay-ms "
        f"{args.apply_delay_ms}` · FlowService git {_git_head()} · Python "
        f"{platform.python_version()}, {os.cpu_count()} cores · wall time {wall:.0f} s · load "
        f"average at end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (the machine is shared)",
        "",
        f"- {args.flows:,} flows; PostgreSQL primary and streaming hot standby "
        "(`pg_basebackup -R`, `synchronous_commit = on`, fsync off) **both on CPU 0**, "
        "FlowService (`--workers 1`) and this load generator on CPU 1: equal total CPU "
        "with 0 and 1 standby",
        f"- throughput: {args.concurrency} concurrent calls on one channel for "
        f"{args.duration} s after {args.warmup} s of warm-up; CPU µs per read from /proc; "
        "`on standby`: share of reads the standby served (server metrics)",
        f"- each throughput row is one of {args.repetitions} runs per mode, the modes "
        "alternating; the flows were VACUUM (ANALYZE)d and replayed first",
        f"- read after write: {args.rounds} sequential UpdateFlow → ReadFlow rounds; "
        "`stale`: reads that did not show the write just made; the last two rows with "
        f"the standby's `recovery_min_apply_delay` at {args.apply_delay_ms} ms",
        "",
        "| read | databases | reads/s | p50 ms | p99 ms | errors | on standby | "
        "primary CPU µs/read | standby CPU µs/read | FlowService CPU µs/read |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in throughput_rows:
        v = row.values
        lines.append(
            f"| {row.name} | {_fmt(v['rps'], 0)} | {_fmt(v['p50_ms'], 2)} | "
            f"{_fmt(v['p99_ms'], 2)} | {v['errors']} | {100 * v['on_standby']:.0f} % | "
            f"{_fmt(v['primary_cpu_us'], 0)} | {_fmt(v['standby_cpu_us'], 0)} | "
            f"{_fmt(v['service_cpu_us'], 0)} |"
        )
    lines += [
        "",
        "| read right after a write | read p50 ms | read p95 ms | read mean ms | stale | "
        "served by standby |",
        "|---|---|---|---|---|---|",
    ]
    for row in latency_rows:
        v = row.values
        lines.append(
            f"| {row.name} | {_fmt(v['p50_ms'], 2)} | {_fmt(v['p95_ms'], 2)} | "
            f"{_fmt(v['mean_ms'], 2)} | {v['stale']} of {args.rounds} | "
            f"{100 * v['on_standby']:.0f} % |"
        )
    lines += [
        "",
        "What two cores can and cannot show:",
        "",
        "- **No scale-out.** Both modes give the databases the same single core, so a "
        "standby cannot add read capacity here; with a standby on its own machine the "
        "primary's share below is what it no longer spends. The load of other processes on "
        "this shared machine moves reads/s between runs of the same mode by large factors: "
        "compare modes by the CPU columns, not by one reads/s figure.",
        "- **Where reads' database CPU goes**: with a standby the primary spends nothing on "
        "reads (its health probes aside), the standby what the primary spent before.",
        "- **What routing costs FlowService**: the FlowService CPU column, with and without "
        "a standby (the per-standby probe runs once per interval, not per read).",
        "- **Read-your-writes**: a read with the token waits until the standby has replayed "
        "the write (polled every 2 ms while any read waits), so it costs about the "
        "replication delay; without the token the same standby can answer with the state "
        "before the write (`stale`), as the delayed rows show.",
        "",
        "<!-- bench:replicas:end -->",
    ]
    return "\n".join(lines)


def _git_head() -> str:
    completed = subprocess.run(  # noqa: S603  # our own argument list
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],  # noqa: S607
        capture_output=True,
        text=True,
        check=False,
    )
    return completed.stdout.strip() or "unknown"


async def main_async(args: argparse.Namespace) -> str:
    started = time.monotonic()
    throughput_rows: list[Row] = []
    latency_rows: list[Row] = []
    with primary_and_standby() as (primary, standby):
        ids = await load_flows(primary, standby, args.flows)
        for repetition in range(args.repetitions):  # alternating: no mode always goes first
            for replicas in (0, 1) if repetition % 2 == 0 else (1, 0):
                throughput_rows += await measure_throughput(primary, standby, replicas, ids, args)
        for replicas in (0, 1):
            latency_rows += await measure_read_after_write(primary, standby, replicas, ids[0], args)
        latency_rows += await measure_read_after_write(
            primary, standby, 1, ids[0], args, apply_delay_ms=args.apply_delay_ms
        )
    ordered = sorted(throughput_rows, key=lambda row: row.name)
    return section(args, ordered, latency_rows, time.monotonic() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flows", type=int, default=20_000)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--repetitions", type=int, default=2)
    parser.add_argument("--apply-delay-ms", type=int, default=20)
    parser.add_argument("--out", type=Path, default=BENCH / "RESULTS.md")
    args = parser.parse_args()
    pin_to_cpu(SERVICE_CPU)
    WORK.mkdir(parents=True, exist_ok=True)
    text = asyncio.run(main_async(args))
    existing = args.out.read_text() if args.out.exists() else None
    args.out.write_text(merge_document(existing, text, "replicas"))
    print(text)


if __name__ == "__main__":
    main()
