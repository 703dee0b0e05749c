"""The 200-row ReadFlows page against its SQL floor, with pages inline on and off: a quick A/B.

    .venv/bin/python bench/page.py --database bench/.work/db-profile.db --rounds 2

Why: the lever `--database-inline-pages` is about this one call. In one run,
on one data set (any Prefect-schema SQLite file, such as the one
`bench/profile.py` builds): the floor (`floor.py`: FlowService's own SQL
replayed in process), then per variant, alternating, a fresh server (CPU 0)
and the page at c=1 through `load_grpc.py` (Python, CPU 1: p50 against the
floor, and a no-op call's p50 for what any call costs) and at c=16 through
h2load (req/s, server CPU per call). A shortened form of what
`bench/ceiling.py` does for the whole table.

First, `--interleaved N` calls at c=1 with both variants running at once and
a blocking client alternating between them (and a no-op call): on a shared
machine, whatever slows one variant down slows the other in the same second,
so their p50s compare even when the absolute numbers drift.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import ceiling  # noqa: E402  # bench modules, importable once BENCH is on the path
import databases  # noqa: E402
import floor  # noqa: E402
import grpc  # noqa: E402
import operations  # noqa: E402
import run as bench_run  # noqa: E402
from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402
from load_grpc import read_flows_request  # noqa: E402
from servers import FlowService  # noqa: E402

from flowservice.v1 import flow_service_pb2_grpc  # noqa: E402

PAGE = {"name": "ReadFlows: no filter (200 rows)", "kind": "read_flows", "body": {}, "floor": True}
PATH = "/flowservice.v1.FlowService/ReadFlows"
VARIANTS = {"pages inline": [], "pages off": ["--database-inline-pages", "false"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=8.0, help="per measurement")
    parser.add_argument("--interleaved", type=int, default=500, help="calls per variant")
    parser.add_argument(
        "--body", default="{}", help="the ReadFlows request, as Prefect's JSON (default: none)"
    )
    args = parser.parse_args()
    page = {**PAGE, "body": json.loads(args.body)}
    if page["body"]:
        page["name"] = f"ReadFlows: {args.body}"
    bench_run.WORK.mkdir(exist_ok=True)
    with sqlite3.connect(args.database) as db:
        flow_id, flow_name = db.execute("SELECT id, name FROM flow LIMIT 1").fetchone()
    url = f"sqlite+aiosqlite:///{args.database}"
    captured = floor.capture(url, [page], (flow_id, flow_name), bench_run.WORK)[page["name"]]
    floor_m = floor.measure_sqlite(args.database, captured, duration=5.0, cpu=bench_run.SERVER_CPU)
    print(f"floor: {json.dumps(floor_m)}", flush=True)
    if args.interleaved:
        p50 = interleaved(args.database, page["body"], args.interleaved)
        ratios = {name: round(ms / floor_m["p50_ms"], 2) for name, ms in p50.items()}
        print(f"interleaved c=1 p50 ms: {json.dumps(p50)}; / floor: {json.dumps(ratios)}")
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in VARIANTS}
    body = read_flows_request(page["body"]).SerializeToString()
    for round_number in range(args.rounds):
        names = list(VARIANTS)[round_number % 2 :] + list(VARIANTS)[: round_number % 2]
        for name in names:
            copy = bench_run.WORK / "page-bench.db"
            databases.copy_database(args.database, copy)
            server = FlowService.start(
                f"sqlite+aiosqlite:///{copy}",
                bench_run.WORK / "page-bench.log",
                cpu=bench_run.SERVER_CPU,
                options=VARIANTS[name],
            )
            try:
                plan = {
                    "duration": args.seconds,
                    "warmup": 1.0,
                    "request_timeout": 30.0,
                    "concurrency": [1],
                    "flow_ids": [flow_id],
                    "flow_names": [flow_name],
                    "ops": [operations.HEALTH, page],  # the no-op: what any call costs
                }
                noop, c1 = bench_run.run_load(server, plan, "page-bench", "SQLite")
                c16 = ceiling.h2load(
                    server, PATH, body, duration=min(args.seconds, 5.0), warmup=1.0, concurrency=16
                )
            finally:
                server.stop()
            row = {
                "c1_noop_p50_ms": noop["p50_ms"],
                "c1_p50_ms": c1["p50_ms"],
                "c1_vs_floor": round(c1["p50_ms"] / floor_m["p50_ms"], 2),
                "c16_rps": c16["rps"],
                "c16_server_cpu_ms": c16["server_cpu_ms_per_request"],
            }
            results[name].append(row)
            print(f"round {round_number + 1} {name}: {json.dumps(row)}", flush=True)
    print(json.dumps({"floor": floor_m, "results": results}, indent=1))


def interleaved(database: Path, body: dict[str, Any], calls: int) -> dict[str, float]:
    """p50 (ms) of each variant and of a no-op, called in turn from one blocking client."""
    servers: dict[str, FlowService] = {}
    try:
        for name, options in VARIANTS.items():
            copy = bench_run.WORK / f"page-bench-{name.replace(' ', '-')}.db"
            databases.copy_database(database, copy)
            servers[name] = FlowService.start(
                f"sqlite+aiosqlite:///{copy}",
                bench_run.WORK / "page-bench.log",
                cpu=bench_run.SERVER_CPU,
                options=options,
            )
        os.sched_setaffinity(0, {bench_run.CLIENT_CPU})
        request = read_flows_request(body)
        calls_by_name = {
            name: flow_service_pb2_grpc.FlowServiceStub(
                grpc.insecure_channel(server.target)
            ).ReadFlows
            for name, server in servers.items()
        }
        first = next(iter(servers.values()))
        check = health_pb2_grpc.HealthStub(grpc.insecure_channel(first.target)).Check
        noop = health_pb2.HealthCheckRequest()
        latencies: dict[str, list[float]] = {name: [] for name in [*servers, "no-op"]}
        for number in range(calls + 50):  # the first 50 warm up
            for name, call in calls_by_name.items():
                started = time.perf_counter()
                call(request, timeout=30)
                if number >= 50:
                    latencies[name].append(time.perf_counter() - started)
            started = time.perf_counter()
            check(noop, timeout=30)
            if number >= 50:
                latencies["no-op"].append(time.perf_counter() - started)
    finally:
        for server in servers.values():
            server.stop()
    return {name: round(1000 * statistics.median(v), 3) for name, v in latencies.items()}


if __name__ == "__main__":
    main()
