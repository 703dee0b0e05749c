"""FlowService against grpc.aio's own ceiling: every operation as % of a no-op call, one run.

    .venv/bin/python bench/ceiling.py --reuse-dataset       # the whole table, ~8 minutes

A no-op unary call (gRPC Health/Check) is the most grpc.aio can serve on one
core; each operation's throughput is shown as a share of it, measured on the
same server process in the same minute. The load is h2load (nghttp2, C) on
the other core, one HTTP/2 connection with c concurrent streams, posting the
operation's length-prefixed request: it needs far less CPU per call than a
Python client, so the server, not the client, is what saturates (its CPU %
is reported per row). h2load sees HTTP statuses only, not gRPC's: every
request body is first sent once through a gRPC stub and its reply checked,
and the writes (whose bodies must differ per call) are driven by
`load_grpc.py`, which checks every reply.

Variants, started one at a time on fresh copies of the data set, in an order
that rotates per round (alternating A/B; the machine is shared): `before`
(the code of `--baseline`, default `main`, extracted with git archive),
`after` (this checkout, defaults), and this checkout with each lever off.
PostgreSQL: before/after and Prefect on the same rows. Prefect 3.9.1 on
both databases with `load_rest.py` (c=16). The floor of a 200-row page is
FlowService's SQL replayed in process (`floor.py`). Writes the `ceiling`
section of RESULTS.md; raw JSON in .work/results-ceiling.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

import databases  # noqa: E402  # bench modules, importable once BENCH is on the path
import dataset  # noqa: E402
import grpc  # noqa: E402
import operations  # noqa: E402
import run as bench_run  # noqa: E402
from grpc_health.v1 import health_pb2  # noqa: E402
from load_grpc import count_flows_request, read_flows_request  # noqa: E402
from loadstats import process_tree_cpu  # noqa: E402
from servers import FlowService, Prefect, Server, taskset  # noqa: E402

from flowservice.v1 import flow_service_pb2 as s  # noqa: E402
from flowservice.v1 import flow_service_pb2_grpc  # noqa: E402

WORK = bench_run.WORK
SERVER_CPU, CLIENT_CPU = bench_run.SERVER_CPU, bench_run.CLIENT_CPU
H2LOAD = "/usr/bin/h2load"
RESULTS = BENCH / "RESULTS.md"
SECTION = "ceiling"
CONCURRENCY = 16
#: The operations of the ceiling table, all measured with h2load.
CEILING_OPS = (
    "Health check (no-op)",
    "ReadFlow (by id)",
    "ReadFlowByName",
    "CountFlows: no filter",
    "CreateFlow: existing name",
    "ReadFlows: no filter (200 rows)",
)
#: this checkout's serve flags per variant: each lever off on its own, then all on.
LEVERS: dict[str, list[str]] = {
    "after": [],
    "inline off": ["--database-inline-reads", "false"],
    "pages off": ["--database-inline-pages", "false"],
    "direct off": ["--database-direct-reads", "false"],
    "memo off": ["--response-memo-size", "0"],
}
#: The levers each backend has (`direct off` is PostgreSQL's alone).
BACKEND_LEVERS = {
    "SQLite": ["after", "inline off", "pages off", "memo off"],
    "PostgreSQL": ["after", "inline off", "direct off", "pages off", "memo off"],
}
READ_PAGE = "ReadFlows: no filter (200 rows)"


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- requests ----------------------------------------------------------------------


def requests_for(summary: dataset.Summary, pool: str) -> dict[str, tuple[str, bytes, Any]]:
    """Each h2load operation: its gRPC path, request message bytes, and a reply check."""
    flow_id, name = summary.flow_ids[0], summary.flow_names[0]
    ops: dict[str, tuple[str, bytes, Any]] = {
        "Health check (no-op)": (
            "/grpc.health.v1.Health/Check",
            health_pb2.HealthCheckRequest().SerializeToString(),
            lambda r: r.status == health_pb2.HealthCheckResponse.SERVING,
        ),
        "ReadFlow (by id)": (
            "/flowservice.v1.FlowService/ReadFlow",
            s.ReadFlowRequest(id=flow_id).SerializeToString(),
            lambda r: r.flow.id == flow_id,
        ),
        "ReadFlowByName": (
            "/flowservice.v1.FlowService/ReadFlowByName",
            s.ReadFlowByNameRequest(name=name).SerializeToString(),
            lambda r: r.flow.name == name,
        ),
        "CreateFlow: existing name": (
            "/flowservice.v1.FlowService/CreateFlow",
            s.CreateFlowRequest(name=name, tags=["bench"]).SerializeToString(),
            lambda r: not r.created and r.flow.name == name,
        ),
    }
    for op in operations.read_operations(summary.since, pool):
        if op["kind"] == "read_flows":
            request = read_flows_request(op["body"]).SerializeToString()
            ops[op["name"]] = ("/flowservice.v1.FlowService/ReadFlows", request, lambda r: True)
        elif op["kind"] == "count_flows":
            request = count_flows_request(op["body"]).SerializeToString()
            ops[op["name"]] = ("/flowservice.v1.FlowService/CountFlows", request, lambda r: True)
    return ops


_REPLIES = {
    "Check": health_pb2.HealthCheckResponse,
    "ReadFlow": s.ReadFlowResponse,
    "ReadFlowByName": s.ReadFlowByNameResponse,
    "CreateFlow": s.CreateFlowResponse,
    "ReadFlows": s.ReadFlowsResponse,
    "CountFlows": s.CountFlowsResponse,
}


def check_once(target: str, path: str, body: bytes, check: Any) -> str:
    """One call through a gRPC channel: OK, and the reply what the operation expects."""
    reply_type = _REPLIES[path.rsplit("/", 1)[1]]
    with grpc.insecure_channel(target) as channel:
        call: Any = channel.unary_unary(
            path, request_serializer=None, response_deserializer=reply_type.FromString
        )
        reply = call(body, timeout=30)
    if not check(reply):
        raise RuntimeError(f"{path}: unexpected reply {reply}")
    if path.endswith("/ReadFlows"):
        return f"{len(reply.flows)} flows"
    if path.endswith("/CountFlows"):
        return f"count {reply.count}"
    return "ok"


# --- h2load --------------------------------------------------------------------------

_FINISHED = re.compile(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s")
_REQUEST_TIME = re.compile(r"time for request:\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)\b")
_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}
_REQUESTS = re.compile(
    r"requests: (\d+) total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed"
)


def h2load(
    server: Server, path: str, body: bytes, *, duration: float, warmup: float, concurrency: int
) -> dict[str, Any]:
    """Requests per second of one operation, with server and client CPU over the run."""
    body_path = WORK / "h2load-body.bin"
    body_path.write_bytes(b"\x00" + len(body).to_bytes(4, "big") + body)  # a gRPC frame

    def command(seconds: float) -> list[str]:
        return [
            taskset(),
            "-c",
            str(CLIENT_CPU),
            H2LOAD,
            "-c",
            "1",
            "-t",
            "1",
            "-m",
            str(concurrency),
            "-D",
            f"{round(seconds * 1000)}ms",
            "-d",
            str(body_path),
            "-H",
            "content-type: application/grpc",
            "-H",
            "te: trailers",
            f"http://{server.target}{path}",
        ]

    if warmup > 0:
        subprocess.run(command(warmup), capture_output=True, check=True)  # noqa: S603
    before_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_before = process_tree_cpu(server.pid)
    out = subprocess.run(command(duration), capture_output=True, text=True, check=True)  # noqa: S603
    server_cpu = process_tree_cpu(server.pid) - server_before
    after_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    client_cpu = (after_children.ru_utime - before_children.ru_utime) + (
        after_children.ru_stime - before_children.ru_stime
    )
    finished = _FINISHED.search(out.stdout)
    counts = _REQUESTS.search(out.stdout)
    if finished is None or counts is None:
        raise RuntimeError(f"h2load output not understood:\n{out.stdout}\n{out.stderr}")
    request_time = _REQUEST_TIME.search(out.stdout)
    elapsed = float(finished.group(1)) / (1000 if finished.group(2) == "ms" else 1)
    rps = float(finished.group(3))
    succeeded, failed = int(counts.group(2)), int(counts.group(3))
    return {
        "rps": rps,
        "requests": succeeded,
        "failed_http": failed,
        "elapsed_s": elapsed,
        "server_cpu_pct": round(100 * server_cpu / elapsed, 1),
        "server_cpu_ms_per_request": round(1000 * server_cpu / succeeded, 4) if succeeded else None,
        "client_cpu_pct": round(100 * client_cpu / elapsed, 1),
        "mean_ms": (
            round(float(request_time.group(1)) * _UNIT_MS[request_time.group(2)], 4)
            if request_time
            else None
        ),
    }


# --- servers --------------------------------------------------------------------------


def baseline_tree(ref: str) -> tuple[Path, str]:
    """The server and client code where this checkout forked from `ref` (git merge-base),
    extracted once into .work/ with git archive."""
    git = shutil.which("git") or "git"
    commit = subprocess.run(  # noqa: S603  # our own argument list
        [git, "-C", str(ROOT), "merge-base", "HEAD", ref],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    target = WORK / f"baseline-{commit[:12]}"
    if not (target / "server").exists():
        target.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(  # noqa: S603  # our own argument list
            [git, "-C", str(ROOT), "archive", "--format=tar", commit, "server", "client"],
            capture_output=True,
            check=True,
        ).stdout
        tar_path = target / "code.tar"
        tar_path.write_bytes(archive)
        with tarfile.open(tar_path) as tar:
            tar.extractall(target, filter="data")
        tar_path.unlink()
    return target, commit[:12]


def start_variant(
    variant: str, url: str, log: Path, baseline: Path | None, extra: list[str] | None = None
) -> FlowService:
    if variant == "before":
        assert baseline is not None
        paths = f"{baseline / 'server'}:{baseline / 'client'}"
        return FlowService.start(
            url,
            log,
            cpu=SERVER_CPU,
            launcher=[str(bench_run.FS_PYTHON), "-m", "flowservice_server"],
            environment={"PYTHONPATH": paths},
            options=extra,
        )
    return FlowService.start(url, log, cpu=SERVER_CPU, options=[*LEVERS[variant], *(extra or [])])


def python_load(
    server: Server,
    ops: list[dict[str, Any]],
    summary: dataset.Summary,
    args: argparse.Namespace,
    *,
    name: str,
    backend: str,
    concurrency: list[int],
    delete_ids: list[str] | None = None,
) -> list[dict[str, Any]]:
    plan = bench_run.base_plan(args, summary, timeout=bench_run.REQUEST_TIMEOUT)
    plan["concurrency"] = concurrency
    if delete_ids is not None:
        plan["delete_ids"] = delete_ids
    return bench_run.run_load(server, {**plan, "ops": ops}, name, backend)


# --- one database -----------------------------------------------------------------------


def measure_variant(
    variant: str,
    url: str,
    *,
    log: Path,
    baseline: Path | None,
    requests: dict[str, tuple[str, bytes, Any]],
    names: list[str],
    args: argparse.Namespace,
    backend: str,
) -> dict[str, dict[str, Any]]:
    say(f"{backend}: {variant} …")
    server = start_variant(variant, url, log, baseline)
    results: dict[str, dict[str, Any]] = {}
    try:
        for name in names:
            path, body, check = requests[name]
            result = check_once(server.target, path, body, check)
            m = h2load(
                server,
                path,
                body,
                duration=args.duration,
                warmup=args.warmup,
                concurrency=CONCURRENCY,
            )
            m["result"] = result
            results[name] = m
            say(
                f"  {backend} {variant:10} {name:40} {m['rps']:9.1f} req/s  server "
                f"{m['server_cpu_ms_per_request']} ms CPU/call ({m['server_cpu_pct']}%), h2load "
                f"{m['client_cpu_pct']}% CPU"
            )
        if variant in ("before", "after") and READ_PAGE in results:
            # One call at a time, as h2load sees it (no Python client's decoding): the
            # page's latency against the floor, beside the no-op's.
            for name in (CEILING_OPS[0], READ_PAGE):
                path, body, _ = requests[name]
                single = h2load(
                    server, path, body, duration=args.duration, warmup=0.5, concurrency=1
                )
                results[name]["c1_mean_ms"] = single["mean_ms"]
                say(f"  {backend} {variant:10} {name + ' (c=1)':40} mean {single['mean_ms']} ms")
        noop = results.get(CEILING_OPS[0])
        if noop is not None and len(names) > 1:
            # The no-op again, last: each share is over the higher of the no-op measured
            # on both sides of the operations (a just-started server is often slower).
            path, body, _ = requests[CEILING_OPS[0]]
            again = h2load(
                server, path, body, duration=args.duration, warmup=0, concurrency=CONCURRENCY
            )
            noop["rps_end"] = again["rps"]
            noop["cpu_end"] = again["server_cpu_ms_per_request"]
            say(f"  {backend} {variant:10} {'(no-op again)':40} {again['rps']:9.1f} req/s")
    finally:
        server.stop()
    return results


def measure_writes(
    variant: str,
    path: Path | None,
    url: str,
    *,
    baseline: Path | None,
    summary: dataset.Summary,
    args: argparse.Namespace,
    backend: str,
) -> list[dict[str, Any]]:
    """Writes at c=16 through load_grpc.py (each reply checked), with its own no-op for scale."""
    tag = f"{backend}-{variant}".replace(" ", "-").lower()
    delete_ids = None
    if path is not None:
        delete_ids = databases.add_disposable_flows(path, f"bench-del-{tag}", 20_000)
    server = start_variant(variant, url, WORK / f"ceiling-{tag}-writes.log", baseline)
    try:
        if delete_ids is None:  # PostgreSQL: flows without runs, made through the server
            delete_ids = postgres_disposable_flows(server, f"bench-del-{tag}", 6_000)
        ops = [operations.HEALTH, *operations.write_operations(f"bench-new-{tag}")]
        page = {**_read_op(summary, READ_PAGE), "concurrency": [1]}
        single_noop = {**operations.HEALTH, "concurrency": [1]}
        return python_load(
            server,
            [*ops, single_noop, page],
            summary,
            args,
            name=f"ceiling-{tag}",
            backend=backend,
            concurrency=[CONCURRENCY],
            delete_ids=delete_ids,
        )
    finally:
        server.stop()


def _read_op(summary: dataset.Summary, name: str) -> dict[str, Any]:
    ops = operations.read_operations(summary.since, summary.work_pool_names[1])
    return next(op for op in ops if op["name"] == name)


def postgres_disposable_flows(server: Server, prefix: str, count: int) -> list[str]:
    with grpc.insecure_channel(server.target) as channel:
        stub = flow_service_pb2_grpc.FlowServiceStub(channel)
        ids = []
        for start in range(0, count, 500):
            request = s.BatchCreateFlowsRequest(
                requests=[
                    s.CreateFlowRequest(name=f"{prefix}-{n}")
                    for n in range(start, min(start + 500, count))
                ]
            )
            ids += [answer.flow.id for answer in stub.BatchCreateFlows(request).responses]
    return ids


def prefect_reads(
    url: str, summary: dataset.Summary, args: argparse.Namespace, backend: str
) -> list[dict[str, Any]]:
    ops = operations.read_operations(summary.since, summary.work_pool_names[1])
    ops += operations.write_operations("unused")
    wanted = [op for op in ops if op["name"] in (operations.HEALTH["name"], *CEILING_OPS)]
    say(f"{backend}: Prefect …")
    server = Prefect.start(
        url, bench_run.PREFECT_HOME, WORK / f"ceiling-prefect-{backend}.log", cpu=SERVER_CPU
    )
    try:
        return python_load(
            server,
            wanted,
            summary,
            args,
            name=f"ceiling-prefect-{backend}",
            backend=backend,
            concurrency=[CONCURRENCY],
        )
    finally:
        server.stop()


def sqlite_backend(
    args: argparse.Namespace,
    pristine: Path,
    summary: dataset.Summary,
    baseline: Path,
) -> dict[str, Any]:
    indexed = WORK / "ceiling-indexed.db"
    databases.copy_database(pristine, indexed)
    bench_run.add_flowservice_indexes(args, f"sqlite+aiosqlite:///{indexed}")
    requests = requests_for(summary, summary.work_pool_names[1])
    all_reads = [
        op["name"] for op in operations.read_operations(summary.since, summary.work_pool_names[1])
    ]
    all_reads[0] = CEILING_OPS[0]
    all_reads.append("CreateFlow: existing name")  # no write: the name exists
    variants = ["before", *BACKEND_LEVERS["SQLite"]]
    rounds: list[dict[str, dict[str, dict[str, Any]]]] = []
    for round_number in range(args.rounds):
        shift = round_number % len(variants)
        order = variants[shift:] + variants[:shift]
        measured: dict[str, dict[str, dict[str, Any]]] = {}
        for variant in order:
            path = WORK / "ceiling-sqlite.db"
            databases.copy_database(indexed, path)
            # Every read row before and after (round 1); the levers on the ceiling rows.
            names = (
                all_reads
                if variant in ("before", "after") and round_number == 0
                else [name for name in all_reads if name in CEILING_OPS]
            )
            measured[variant] = measure_variant(
                variant,
                f"sqlite+aiosqlite:///{path}",
                log=WORK / f"ceiling-sqlite-{variant.replace(' ', '-')}.log",
                baseline=baseline,
                requests=requests,
                names=names,
                args=args,
                backend="SQLite",
            )
        rounds.append(measured)
    writes = {}
    for variant in ("before", "after"):
        path = WORK / "ceiling-sqlite.db"
        databases.copy_database(indexed, path)
        writes[variant] = measure_writes(
            variant,
            path,
            f"sqlite+aiosqlite:///{path}",
            baseline=baseline,
            summary=summary,
            args=args,
            backend="SQLite",
        )
    backend: dict[str, Any] = {"rounds": rounds, "writes": writes}
    if not args.skip_prefect:
        path = WORK / "ceiling-prefect.db"
        databases.copy_database(indexed, path)
        backend["prefect"] = prefect_reads(f"sqlite+aiosqlite:///{path}", summary, args, "SQLite")
    floor_ops = [_read_op(summary, READ_PAGE)]
    floors, _, _ = bench_run.measure_floor(
        f"sqlite+aiosqlite:///{indexed}", indexed, floor_ops, summary, args.duration
    )
    backend["floor"] = floors
    return backend


def postgres_backend(
    args: argparse.Namespace, sizes: dataset.Sizes, summary: dataset.Summary, baseline: Path
) -> dict[str, Any]:
    name = f"flowbench_ceiling_{os.getpid()}"
    say(f"PostgreSQL: creating {name} with Prefect's migrations and loading it …")
    asyncio.run(databases.create_postgres(name, bench_run.PREFECT_HOME))
    try:
        generator = dataset.Generator(
            sizes, seed=args.seed, now=datetime.fromisoformat(summary.now)
        )
        asyncio.run(databases.load_postgres(name, generator))
        url = databases.postgres_url(name)
        bench_run.add_flowservice_indexes(args, url)
        asyncio.run(databases.analyze_postgres(name))
        requests = requests_for(summary, summary.work_pool_names[1])
        variants = ["before", *BACKEND_LEVERS["PostgreSQL"]]
        rounds = []
        for round_number in range(args.postgres_rounds):
            shift = round_number % len(variants)
            order = variants[shift:] + variants[:shift]
            measured = {}
            for variant in order:
                measured[variant] = measure_variant(
                    variant,
                    url,
                    log=WORK / f"ceiling-pg-{variant.replace(' ', '-')}.log",
                    baseline=baseline,
                    requests=requests,
                    names=list(CEILING_OPS),
                    args=args,
                    backend="PostgreSQL",
                )
            rounds.append(measured)
        writes = {
            variant: measure_writes(
                variant,
                None,
                url,
                baseline=baseline,
                summary=summary,
                args=args,
                backend="PostgreSQL",
            )
            for variant in ("before", "after")
        }
        backend: dict[str, Any] = {"rounds": rounds, "writes": writes}
        if not args.skip_prefect:
            backend["prefect"] = prefect_reads(url, summary, args, "PostgreSQL")
        return backend
    finally:
        asyncio.run(databases.drop_postgres(name))
        say(f"PostgreSQL: dropped {name}")


# --- report ---------------------------------------------------------------------------


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _rps(backend: dict[str, Any], variant: str, op: str) -> list[float]:
    """The operation's req/s per round (the no-op's: the warmer of its two measurements)."""
    if op == CEILING_OPS[0]:
        return [_noop_rps(r[variant]) for r in backend["rounds"] if op in r.get(variant, {})]
    return [r[variant][op]["rps"] for r in backend["rounds"] if op in r.get(variant, {})]


def _fmt(value: float | None, digits: int = 0) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def _pct(a: float | None, b: float | None) -> str:
    return "–" if a is None or not b else f"{100 * a / b:.0f} %"


def _prefect_rps(backend: dict[str, Any], op: str) -> float | None:
    aliases = {CEILING_OPS[0]: operations.HEALTH["name"]}
    for m in backend.get("prefect", []):
        if m["op"] == aliases.get(op, op):
            return float(m["rps"]) if not m.get("error_count") else None
    return None


def _noop_rps(measured: dict[str, Any]) -> float:
    """A session's no-op throughput: the higher of its first and last measurement.

    The first comes right after the server started and is often the lower (a
    fresh process); the ceiling is what the warm server reached.
    """
    noop = measured[CEILING_OPS[0]]
    return max(float(noop["rps"]), float(noop.get("rps_end", noop["rps"])))


def _share(backend: dict[str, Any], variant: str, op: str) -> float | None:
    """Median over rounds of the operation's req/s over its own session's no-op."""
    if op == CEILING_OPS[0]:
        return 1.0 if _rps(backend, variant, op) else None
    return _median(
        [
            r[variant][op]["rps"] / _noop_rps(r[variant])
            for r in backend["rounds"]
            if op in r.get(variant, {}) and CEILING_OPS[0] in r[variant]
        ]
    )


def _share_text(share: float | None) -> str:
    return "–" if share is None else f"{100 * share:.0f} %"


def _single_call(backend: dict[str, Any], variant: str) -> tuple[float, float] | None:
    """h2load's mean at c=1 for the no-op and the page, from the first round measuring both."""
    for r in backend["rounds"]:
        measured = r.get(variant, {})
        noop = measured.get(CEILING_OPS[0], {}).get("c1_mean_ms")
        page = measured.get(READ_PAGE, {}).get("c1_mean_ms")
        if noop and page:
            return noop, page
    return None


def _cpu(backend: dict[str, Any], variant: str, op: str) -> float | None:
    """Median server CPU ms per call over the rounds (the no-op's: the warmer of its two)."""
    values = [
        min(
            r[variant][op]["server_cpu_ms_per_request"],
            r[variant][op].get("cpu_end") or r[variant][op]["server_cpu_ms_per_request"],
        )
        for r in backend["rounds"]
        if op in r.get(variant, {}) and r[variant][op]["server_cpu_ms_per_request"]
    ]
    return _median(values)


def backend_table(name: str, backend: dict[str, Any], targets: dict[str, float]) -> list[str]:
    variants = list(backend["rounds"][0])
    levers = [v for v in variants if v not in ("before", "after")]
    noop_cpu = {v: _cpu(backend, v, CEILING_OPS[0]) for v in variants}
    head = (
        "| operation (c=16, h2load) | before req/s | after req/s | after/before | "
        "before % of no-op | **after % of no-op** | before / **after**: % of no-op by CPU | "
        + " | ".join(f"{lever}: req/s (% of its no-op)" for lever in levers)
        + " | server CPU ms/call before / after | h2load CPU | Prefect req/s | after/Prefect "
        "| target (by req/s) |"
    )
    lines = [f"**{name}**", "", head, "|" + "---|" * (head.count("|") - 1)]
    ops = list(backend["rounds"][0]["before"])
    for op in ops:
        before = _median(_rps(backend, "before", op))
        after = _median(_rps(backend, "after", op))
        cpu_before, cpu_after = _cpu(backend, "before", op), _cpu(backend, "after", op)
        after_m = next(r["after"][op] for r in backend["rounds"] if op in r["after"])
        lever_cells = [
            f"{_fmt(_median(_rps(backend, lever, op)))} ({_share_text(_share(backend, lever, op))})"
            if _rps(backend, lever, op)
            else "–"
            for lever in levers
        ]
        prefect = _prefect_rps(backend, op)
        target = targets.get(op)
        verdict = ""
        if op == CEILING_OPS[0]:
            verdict = "the ceiling"
        elif target is not None and (share := _share(backend, "after", op)) is not None:
            verdict = f"≥ {target:.0%}: {'met' if share >= target else '**missed**'}"
        if prefect and after and name == "PostgreSQL" and op != CEILING_OPS[0]:
            verdict += f"; ≥ 5× Prefect: {'met' if after / prefect >= 5 else '**missed**'}"
        if prefect and after and op == READ_PAGE:
            verdict += f"; ≥ 15× Prefect: {'met' if after / prefect >= 15 else '**missed**'}"
        spread = _rps(backend, "after", op)
        spread_note = f" ({min(spread):,.0f}–{max(spread):,.0f})" if len(spread) > 1 else ""
        by_cpu = (
            f"{_pct(noop_cpu['before'], cpu_before)} / **{_pct(noop_cpu['after'], cpu_after)}**"
        )
        lines.append(
            f"| {op} | {_fmt(before)} | {_fmt(after)}{spread_note} | "
            f"{_fmt(after / before if after and before else None, 2)} | "
            f"{_share_text(_share(backend, 'before', op))} | "
            f"**{_share_text(_share(backend, 'after', op))}** | {by_cpu} | "
            + " | ".join(lever_cells)
            + f" | {_fmt(cpu_before, 3)} / {_fmt(cpu_after, 3)} | {after_m['client_cpu_pct']} % | "
            f"{_fmt(prefect)} | {_fmt(after / prefect if after and prefect else None, 1)}× | "
            f"{verdict.removeprefix('; ')} |"
        )
    return lines


def writes_table(name: str, backend: dict[str, Any]) -> list[str]:
    lines = [
        "",
        f"{name}, writes (c=16) and the 200-row page at c=1, driven by `load_grpc.py` (Python; "
        "every reply checked; its own no-op row gives the scale for this client):",
        "",
        "| operation | before req/s | after req/s | after/before | after % of this client's "
        "no-op | failed (before/after) | p50 ms (before/after) | load generator CPU |",
        "|---|---|---|---|---|---|---|---|",
    ]
    by = {v: {(m["op"], m["concurrency"]): m for m in ms} for v, ms in backend["writes"].items()}
    noop = by["after"].get((operations.HEALTH["name"], CONCURRENCY), {}).get("rps")
    for key, after in by["after"].items():
        before = by["before"].get(key, {})
        target = ""
        if key[0].startswith(("UpdateFlow", "DeleteFlow")) and noop:
            met = after["rps"] / noop >= 0.5
            target = f" (≥ 50 %: {'met' if met else '**missed**'})"
        lines.append(
            f"| {key[0]} (c={key[1]}) | {_fmt(before.get('rps'))} | {_fmt(after['rps'])} | "
            f"{_fmt(after['rps'] / before['rps'] if before.get('rps') else None, 2)} | "
            f"{_pct(after['rps'], noop)}{target} | "
            f"{before.get('error_count', '–')}/{after['error_count']} | "
            f"{before.get('p50_ms', '–')}/{after['p50_ms']} | {after['client_cpu_pct']} % |"
        )
    return lines


def markdown(results: dict[str, Any]) -> str:
    targets = {op: 0.75 for op in CEILING_OPS[1:5]}
    out = [
        f"## FlowService against grpc.aio's ceiling ({results['date']})",
        "",
        "`.venv/bin/python bench/ceiling.py --reuse-dataset` (see README.md). Server pinned to "
        "CPU 0, load on CPU 1. `before` = the code at the merge-base with "
        f"`{results['baseline']}`; `after` = this checkout with its defaults (every lever on: "
        "short reads and pages on the driver, on the event loop on SQLite, on asyncpg itself "
        "on PostgreSQL; single-row writes on the loop on SQLite, in three round trips on "
        "PostgreSQL; the memo of serialized flows); the other columns switch one lever off: "
        "inline off `--database-inline-reads false` (short reads and pages through SQLAlchemy, "
        "in a worker thread on SQLite), pages off `--database-inline-pages false`, direct off "
        "`--database-direct-reads false` (PostgreSQL: short reads through SQLAlchemy in "
        "autocommit), memo off `--response-memo-size 0`. Each cell is the median "
        f"of {results['rounds']} SQLite round(s) ({results.get('postgres_rounds', 1)} on "
        "PostgreSQL) with the variants in rotating order; the spread of `after` over rounds in "
        "brackets. % of no-op: the operation's req/s over the same server's Health/Check "
        "req/s, measured just before and again just after its operations (the higher of the "
        "two: the first often comes from a server just started), per round, then the median "
        "over rounds; by CPU: the no-op's server CPU per call "
        "over the operation's (the share that does not depend on how much of CPU 0 other "
        "processes took).",
        "",
        f"Noise: load average {results['load_before']} before, {results['load_after']} after "
        f"(2 cores, shared with other work). {results['dataset']}",
        "",
    ]
    for name, backend in results["backends"].items():
        out += backend_table(name, backend, targets)
        out += writes_table(name, backend)
        floor_m = backend.get("floor", {}).get(READ_PAGE)
        if floor_m and "p50_ms" in floor_m:
            page = {
                v: next((m for m in ms if m["op"] == READ_PAGE and m["concurrency"] == 1), None)
                for v, ms in backend["writes"].items()
            }
            noops = {
                v: next(
                    (
                        m
                        for m in ms
                        if m["op"] == operations.HEALTH["name"] and m["concurrency"] == 1
                    ),
                    None,
                )
                for v, ms in backend["writes"].items()
            }
            for v, m in page.items():
                if m:
                    ratio = m["p50_ms"] / floor_m["p50_ms"]
                    verdict = "met" if ratio <= 3 else "**missed**"
                    noop_m = noops.get(v)
                    out.append(
                        f"\n{name} {v}: {READ_PAGE} at c=1 p50 {m['p50_ms']} ms = "
                        f"{ratio:.1f}× the in-process SQL floor ({floor_m['p50_ms']} ms)"
                        + (f"; target ≤ 3×: {verdict}" if v == "after" else "")
                        + (
                            f" (the same Python client's no-op at c=1: p50 {noop_m['p50_ms']} ms)"
                            if noop_m
                            else ""
                        )
                    )
                single = _single_call(backend, v)
                if single is not None:
                    noop_ms, page_ms = single
                    out.append(
                        f"\n{name} {v}: one call at a time through h2load (no Python client): "
                        f"{READ_PAGE} mean {page_ms} ms = {page_ms / floor_m['p50_ms']:.1f}× "
                        f"the floor; the no-op's mean {noop_ms} ms"
                    )
        out.append("")
    return "\n".join(out)


def write_section(text: str) -> None:
    start, end = f"<!-- bench:{SECTION}:start -->", f"<!-- bench:{SECTION}:end -->"
    current = RESULTS.read_text()
    block = f"{start}\n{text}\n{end}"
    if start in current:
        before, rest = current.split(start, 1)
        _, after = rest.split(end, 1)
        RESULTS.write_text(before + block + after)
    else:
        RESULTS.write_text(current.rstrip("\n") + "\n\n" + block + "\n")


# --- main --------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=2, help="SQLite rounds of all variants")
    parser.add_argument("--postgres-rounds", type=int, default=1)
    parser.add_argument("--baseline", default="main")
    parser.add_argument("--postgres", choices=("yes", "no"), default="yes")
    parser.add_argument("--skip-prefect", action="store_true")
    parser.add_argument("--reuse-dataset", action="store_true")
    parser.add_argument("--seed", type=int, default=7)  # run.py's: the same data set
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    args.flowservice_indexes = True
    args.concurrency = str(CONCURRENCY)
    raw = WORK / "results-ceiling.json"
    if args.report_only:
        write_section(markdown(json.loads(raw.read_text())))
        return
    WORK.mkdir(exist_ok=True)
    started = time.monotonic()
    load_before = os.getloadavg()[0]
    sizes = dataset.Sizes()
    pristine, summary, lines = bench_run.build_dataset(sizes, args.seed, args.reuse_dataset)
    baseline, commit = baseline_tree(args.baseline)
    backends = {"SQLite": sqlite_backend(args, pristine, summary, baseline)}
    if args.postgres == "yes":
        backends["PostgreSQL"] = postgres_backend(args, sizes, summary, baseline)
    results = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "baseline": f"{args.baseline} ({commit})",
        "rounds": args.rounds,
        "postgres_rounds": args.postgres_rounds,
        "load_before": f"{load_before:.2f}",
        "load_after": f"{os.getloadavg()[0]:.2f}",
        "dataset": lines[0] if lines else "",
        "seconds": round(time.monotonic() - started),
        "backends": backends,
    }
    raw.write_text(json.dumps(results, indent=1))
    write_section(markdown(results))
    say(f"done in {results['seconds']} s; RESULTS.md section `{SECTION}` written")


if __name__ == "__main__":
    main()
