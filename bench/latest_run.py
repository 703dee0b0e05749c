"""The latest-run filter at 1,000,000 flow runs: FlowService vs the window-function query.

    .venv/bin/python bench/latest_run.py --reuse-dataset          # SQLite and PostgreSQL
    .venv/bin/python bench/latest_run.py --reuse-dataset --keep-postgres   # keep the PG copy

"Flows whose latest run is FAILED" (`latest_flow_run: {state: {type: {any: [FAILED]}}}`),
on run.py's large data set (`--scale 50`, same cache in bench/.work): ReadFlows (a page of
200 by name) and CountFlows through real gRPC against `flowservice serve --database-mode
prefect --workers 1` pinned to CPU 0, with `flow_runs` (any run FAILED) for contrast; then
FlowService's own SQL (captured from a tracing server, as floor.py does) against the
obvious window-function query, in-process, both checked to give the same flows and count.
Writes the section "latest-run" of bench/RESULTS.md. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import sqlite3
import statistics
import sys
import time
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import databases  # noqa: E402  # bench modules, importable once BENCH is on the path
import dataset  # noqa: E402
import floor  # noqa: E402
import grpc  # noqa: E402
import report  # noqa: E402
import run  # noqa: E402
from load_grpc import count_flows_request, read_flows_request  # noqa: E402
from loadstats import percentile, pin_to_cpu  # noqa: E402
from servers import FlowService  # noqa: E402

from flowservice.v1 import flow_service_pb2_grpc  # noqa: E402

WORK, CACHE = run.WORK, run.CACHE
SECTION = "latest-run"
TARGET_MS = 100.0
PAGE = 200
FAILED = {"state": {"type": {"any_": ["FAILED"]}}}

#: What is measured: (name, kind, Prefect-style body, whether it is the latest-run filter).
OPS: list[dict[str, Any]] = [
    {
        "name": "ReadFlows latest run FAILED (200 by name)",
        "kind": "read_flows",
        "body": {"latest_flow_run": FAILED, "limit": PAGE},
        "latest": True,
    },
    {
        "name": "CountFlows latest run FAILED",
        "kind": "count_flows",
        "body": {"latest_flow_run": FAILED},
        "latest": True,
    },
    {
        "name": "ReadFlows any run FAILED (200 by name)",
        "kind": "read_flows",
        "body": {"flow_runs": FAILED, "limit": PAGE},
        "latest": False,
    },
    {
        "name": "CountFlows any run FAILED",
        "kind": "count_flows",
        "body": {"flow_runs": FAILED},
        "latest": False,
    },
]

# --- the baseline: the window-function query ----------------------------------------

_RANKED = """WITH ranked AS (
  SELECT flow_id, state_type,
         ROW_NUMBER() OVER (PARTITION BY flow_id ORDER BY start_time DESC, id DESC) AS rn
  FROM flow_run
  WHERE start_time IS NOT NULL
)"""
BASELINE = {
    "read_flows": _RANKED
    + """
SELECT flow.id, flow.created, flow.updated, flow.name, flow.tags, flow.labels
FROM flow JOIN ranked ON ranked.flow_id = flow.id
WHERE ranked.rn = 1 AND ranked.state_type = 'FAILED'
ORDER BY flow.name
LIMIT 200""",
    "count_flows": _RANKED
    + """
SELECT count(*) FROM ranked WHERE ranked.rn = 1 AND ranked.state_type = 'FAILED'""",
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=50, help="run.py's sizes times K")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--calls", type=int, default=30, help="measured gRPC calls per operation")
    parser.add_argument("--floor-seconds", type=float, default=2.0, help="per SQL floor row")
    parser.add_argument(
        "--reuse-dataset",
        action="store_true",
        help="reuse run.py's SQLite data set (same sizes and seed), this script's working copy "
        "and a kept PostgreSQL copy",
    )
    parser.add_argument("--postgres", choices=("yes", "no"), default="yes")
    parser.add_argument(
        "--keep-postgres",
        action="store_true",
        help="leave the loaded PostgreSQL database for the next --reuse-dataset run",
    )
    parser.add_argument("--out", type=Path, default=BENCH / "RESULTS.md")
    parser.add_argument(
        "--report-only", action="store_true", help="rewrite the section from the last results"
    )
    parser.add_argument(
        "--compare",
        type=Path,
        help="an earlier run's results JSON (say, before a change): the section shows both",
    )
    parser.add_argument("--note", action="append", default=[], help="a line for the section")
    return parser.parse_args()


say = run.say


# --- gRPC ------------------------------------------------------------------------------


def grpc_calls(target: str, op: dict[str, Any], calls: int) -> dict[str, Any]:
    """`calls` sequential calls (after 2 discarded) from this process on the client CPU."""
    before = os.sched_getaffinity(0)
    pin_to_cpu(run.CLIENT_CPU)
    latencies: list[float] = []
    try:
        with grpc.insecure_channel(target) as channel:
            stub = flow_service_pb2_grpc.FlowServiceStub(channel)
            if op["kind"] == "read_flows":
                request: Any = read_flows_request(op["body"])
                call: Any = stub.ReadFlows
            else:
                request = count_flows_request(op["body"])
                call = stub.CountFlows
            for n in range(calls + 2):
                started = time.perf_counter()
                reply = call(request, timeout=120)
                if n >= 2:
                    latencies.append(time.perf_counter() - started)
    finally:
        os.sched_setaffinity(0, before)
    latencies.sort()
    answer: Any = (
        [flow.id for flow in reply.flows] if op["kind"] == "read_flows" else int(reply.count)
    )
    return {
        "calls": len(latencies),
        "p50_ms": round(1000 * statistics.median(latencies), 2),
        "p95_ms": round(1000 * (percentile(latencies, 0.95) or 0), 2),
        "answer": answer,
    }


def measure_grpc(url: str, backend: str, calls: int) -> dict[str, dict[str, Any]]:
    say(f"{backend}: starting FlowService on CPU {run.SERVER_CPU} …")
    server = FlowService.start(url, WORK / f"flowservice-latest-{backend}.log", cpu=run.SERVER_CPU)
    results = {}
    try:
        for op in OPS:
            results[op["name"]] = found = grpc_calls(server.target, op, calls)
            say(
                f"  {backend} gRPC {op['name']:44} p50 {found['p50_ms']:9.2f} ms  "
                f"p95 {found['p95_ms']:9.2f} ms"
            )
    finally:
        server.stop()
    return results


# --- SQL: FlowService's own vs the baseline ------------------------------------------------


def _answer(kind: str, rows: list[Any]) -> Any:
    """A page as its flow ids (text), a count as an int."""
    if kind == "read_flows":
        return [str(row[0]) for row in rows]
    return int(rows[0][0])


def _sqlite_rows(path: Path, item: floor.Captured) -> list[Any]:
    connection = sqlite3.connect(path)
    try:
        for pragma in item.setup:
            connection.execute(pragma).fetchall()
        rows: list[Any] = []
        for sql, params in item.statements:
            named = params["named"] if isinstance(params, dict) else tuple(params)
            rows = connection.execute(sql, named).fetchall()
        return rows
    finally:
        connection.close()


async def _postgres_rows(dsn: str, item: floor.Captured) -> list[Any]:
    import asyncpg  # noqa: PLC0415

    connection = await asyncpg.connect(dsn, server_settings={"timezone": "UTC"})
    try:
        rows: list[Any] = []
        for sql, params in item.statements:
            rows = await connection.fetch(sql, *[_pg_value(value) for value in params])
        return rows
    finally:
        await connection.close()


def _pg_value(value: Any) -> Any:
    """A captured parameter as asyncpg takes it (floor.py tags datetimes and UUIDs)."""
    import uuid  # noqa: PLC0415

    if isinstance(value, dict) and "datetime" in value:
        return datetime.fromisoformat(value["datetime"])
    if isinstance(value, dict) and "uuid" in value:
        return uuid.UUID(value["uuid"])
    if isinstance(value, list):
        return [_pg_value(item) for item in value]
    return value


def measure_sql(
    url: str, path: Path | None, backend: str, floor_seconds: float
) -> dict[str, dict[str, Any]]:
    """FlowService's SQL (captured) and, for the latest-run operations, the baseline's."""
    say(f"{backend}: capturing FlowService's SQL …")
    summary_flow = ("00000000-0000-0000-0000-000000000000", "-")
    captured = floor.capture(url, OPS, summary_flow, WORK)
    dsn = url.replace("postgresql+asyncpg", "postgresql")
    results: dict[str, dict[str, Any]] = {}
    for op in OPS:
        item = captured[op["name"]]
        items = {"flowservice": item}
        if op["latest"]:
            items["baseline"] = floor.Captured(
                op["name"], item.dialect, [(BASELINE[op["kind"]], [])], item.setup
            )
        entry: dict[str, Any] = {}
        for who, statements in items.items():
            if path is not None:
                timing = floor.measure_sqlite(
                    path, statements, duration=floor_seconds, cpu=run.SERVER_CPU, timeout=300
                )
                plans = floor.sqlite_plans(path, statements)
                rows = _sqlite_rows(path, statements)
            else:
                found = asyncio.run(floor.postgres_plans(dsn, statements, runs=5))
                timing, plans = {"p50_ms": found["p50_ms"]}, found["plans"]
                rows = asyncio.run(_postgres_rows(dsn, statements))
            entry[who] = {
                **timing,
                "plans": plans,
                "sql": floor.statements_text(statements),
                "answer": _answer(op["kind"], rows),
            }
            say(f"  {backend} SQL {who:11} {op['name']:44} p50 {timing.get('p50_ms')} ms")
        if "baseline" in entry:
            same = entry["flowservice"]["answer"] == entry["baseline"]["answer"]
            assert same, f"{backend}, {op['name']}: FlowService and the baseline disagree"
        results[op["name"]] = entry
    return results


# --- data sets -----------------------------------------------------------------------


def sqlite_working_copy(pristine: Path, reuse: bool) -> Path:
    working = WORK / "db-latest-run.db"
    if reuse and working.exists():
        say(f"reusing the working copy {working.name}")
    else:
        say(f"copying the data set to {working.name} …")
        databases.copy_database(pristine, working)
    return working


async def _pg_marker(name: str) -> str | None:
    import asyncpg  # noqa: PLC0415

    admin = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/postgres")
    try:
        return await admin.fetchval(  # type: ignore[no-any-return]
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1",
            name,
        )
    finally:
        await admin.close()


async def _pg_mark(name: str, marker: str) -> None:
    import asyncpg  # noqa: PLC0415

    admin = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/postgres")
    try:
        await admin.execute(f"COMMENT ON DATABASE \"{name}\" IS '{marker}'")
    finally:
        await admin.close()


def postgres_copy(
    args: argparse.Namespace, sizes: dataset.Sizes, summary: dataset.Summary, lines: list[str]
) -> str:
    """The data set in PostgreSQL (as run.py loads it), reused when complete and asked to."""
    key = "_".join(str(n) for n in (*asdict(sizes).values(), args.seed))
    name = f"flowbench_latest_{key}"
    marker = f"complete {summary.now}"
    if args.reuse_dataset and asyncio.run(_pg_marker(name)) == marker:
        say(f"PostgreSQL: reusing {name}")
        lines.append(f"PostgreSQL: the same rows, in a database kept from an earlier run ({name})")
    else:
        say(f"PostgreSQL: creating {name} with Prefect's migrations and loading it …")
        started = time.perf_counter()
        asyncio.run(databases.create_postgres(name, run.PREFECT_HOME))
        generator = dataset.Generator(
            sizes, seed=args.seed, now=datetime.fromisoformat(summary.now)
        )
        asyncio.run(databases.load_postgres(name, generator))
        lines.append(
            "PostgreSQL: the same rows (same seed and 'now') loaded with COPY as run.py does, "
            f"in {time.perf_counter() - started:.0f} s"
        )
        asyncio.run(_pg_mark(name, "loaded"))
    url = databases.postgres_url(name)
    run.add_flowservice_indexes(args, url)
    asyncio.run(databases.analyze_postgres(name))
    asyncio.run(_pg_mark(name, marker))
    return name


# --- report -----------------------------------------------------------------------------


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:,.1f}"


def table(backend: dict[str, Any]) -> str:
    head = (
        "| operation | gRPC p50 ms | gRPC p95 ms | SQL p50 ms | baseline SQL p50 ms "
        "| baseline / FlowService SQL | answer |\n|---|---:|---:|---:|---:|---:|---|"
    )
    lines = [head]
    for op in OPS:
        g, q = backend["grpc"][op["name"]], backend["sql"][op["name"]]
        fs, base = q["flowservice"], q.get("baseline")
        ratio = (
            f"{base['p50_ms'] / fs['p50_ms']:.1f}×" if base and fs.get("p50_ms") else "– (contrast)"
        )
        answer = g["answer"]
        shown = f"{len(answer)} flows" if isinstance(answer, list) else f"count {answer:,}"
        lines.append(
            f"| {op['name']} | {_ms(g['p50_ms'])} | {_ms(g['p95_ms'])} | {_ms(fs.get('p50_ms'))} "
            f"| {_ms(base['p50_ms']) if base else '–'} | {ratio} | {shown} |"
        )
    return "\n".join(lines)


def targets(backends: dict[str, Any]) -> list[str]:
    out = []
    for name, backend in backends.items():
        for op in OPS:
            if not op["latest"]:
                continue
            p50 = backend["grpc"][op["name"]]["p50_ms"]
            verdict = "**met**" if p50 < TARGET_MS else "**missed**"
            q = backend["sql"][op["name"]]
            ratio = q["baseline"]["p50_ms"] / q["flowservice"]["p50_ms"]
            faster = f"{ratio:.1f}× faster" if ratio >= 1 else f"{1 / ratio:.1f}× slower"
            out.append(
                f"- {name}, {op['name']}: gRPC p50 {p50:,.1f} ms (target < {TARGET_MS:.0f} ms): "
                f"{verdict}; SQL {q['flowservice']['p50_ms']:,.1f} ms vs the window-function "
                f"baseline {q['baseline']['p50_ms']:,.1f} ms ({faster} than the baseline)"
            )
    return out


def comparison(results: dict[str, Any], earlier: dict[str, Any]) -> list[str]:
    """The latest-run rows of an earlier run next to this one's."""
    version = next((line for line in earlier["lines"] if line.startswith("FlowService:")), "")
    lines = [
        f"Compared with an earlier run ({earlier['date']}; {version.split(';')[0]}):",
        "",
        "| database | operation | gRPC p50 ms then | now | SQL p50 ms then | now |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for name, backend in results["backends"].items():
        then = earlier["backends"].get(name)
        if then is None:
            continue
        for op in OPS:
            if op["latest"]:
                was, now = then, backend
                cells = [
                    _ms(was["grpc"][op["name"]]["p50_ms"]),
                    _ms(now["grpc"][op["name"]]["p50_ms"]),
                    _ms(was["sql"][op["name"]]["flowservice"]["p50_ms"]),
                    _ms(now["sql"][op["name"]]["flowservice"]["p50_ms"]),
                ]
                lines.append(f"| {name} | {op['name']} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def section(results: dict[str, Any]) -> str:
    lines = [
        f"<!-- bench:{SECTION}:start -->",
        "## Latest-run filter at 1,000,000 flow runs",
        "",
        f"Date: {results['date']} · command: `{results['command']}`",
        "",
        'Target (product owner): at 1,000,000 flow runs, "flows whose latest run is FAILED" '
        "(`latest_flow_run: {state: {type: {any: [FAILED]}}}`) answers in under 100 ms p50 on "
        "SQLite and on PostgreSQL, through gRPC; baseline: the window-function query "
        "(ROW_NUMBER() OVER (PARTITION BY flow_id ORDER BY start_time DESC, id DESC) = 1 among "
        "started runs), whose answers FlowService's are checked against (same page of flow ids, "
        "same count).",
        "",
        "### Machine, data set and method",
        "",
    ]
    lines += [f"- {line}" for line in results["lines"]]
    for name, backend in results["backends"].items():
        lines += ["", f"### {name}", "", table(backend), ""]
    if results.get("earlier"):
        lines += comparison(results, results["earlier"])
    lines += ["### Targets", "", *targets(results["backends"])]
    lines += ["", "### The SQL and its plans", ""]
    for name, backend in results["backends"].items():
        for op in OPS:
            if not op["latest"]:
                continue
            for who, entry in backend["sql"][op["name"]].items():
                lines += [f"#### {name}: {op['name']}, {who}", "", "```sql", entry["sql"], "```"]
                for plan in entry["plans"]:
                    lines += ["", "```", plan, "```"]
                lines.append("")
    lines.append(f"<!-- bench:{SECTION}:end -->")
    return "\n".join(lines)


def write_report(results: dict[str, Any], out: Path) -> None:
    for name, backend in results["backends"].items():
        print(f"\n{name}\n{table(backend)}")
    print("\nTargets:\n" + "\n".join(targets(results["backends"])))
    existing = out.read_text() if out.exists() else None
    out.write_text(report.merge_document(existing, section(results), SECTION))
    say(f"wrote {out}")


# --- main ---------------------------------------------------------------------------------


def main() -> None:
    args = parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    saved = WORK / "results-latest-run.json"
    if args.report_only:
        results = json.loads(saved.read_text())
        results["lines"] += args.note
        if args.compare:
            results["earlier"] = json.loads(args.compare.read_text())
        write_report(results, args.out)
        return
    args.flowservice_indexes = True  # run.add_flowservice_indexes reads it
    sizes = dataset.Sizes().scaled(args.scale)
    started = time.perf_counter()
    env = run.environment()
    pristine, summary, data_lines = run.build_dataset(sizes, args.seed, args.reuse_dataset)
    lines = [f"{key}: {value}" for key, value in env["facts"].items()]
    lines += data_lines[:3]
    working = sqlite_working_copy(pristine, args.reuse_dataset)
    sqlite_url = f"sqlite+aiosqlite:///{working}"
    run.add_flowservice_indexes(args, sqlite_url)
    backends: dict[str, Any] = {
        "SQLite": {
            "grpc": measure_grpc(sqlite_url, "SQLite", args.calls),
            "sql": measure_sql(sqlite_url, working, "SQLite", args.floor_seconds),
        }
    }
    if args.postgres == "yes":
        name = postgres_copy(args, sizes, summary, lines)
        url = databases.postgres_url(name)
        try:
            backends["PostgreSQL"] = {
                "grpc": measure_grpc(url, "PostgreSQL", args.calls),
                "sql": measure_sql(url, None, "PostgreSQL", args.floor_seconds),
            }
            lines.append("PostgreSQL " + run.pg_version(name))
        finally:
            if not args.keep_postgres:
                asyncio.run(databases.drop_postgres(name))
                say(f"PostgreSQL: dropped {name}")
    for name, backend in backends.items():  # the layers agree: gRPC answers = SQL answers
        for op in OPS:
            grpc_answer = backend["grpc"][op["name"]]["answer"]
            sql_answer = backend["sql"][op["name"]]["flowservice"]["answer"]
            assert grpc_answer == sql_answer, f"{name}, {op['name']}: gRPC and SQL disagree"
    lines += [
        "indexes: `flowservice indexes add` (among them flow_run (flow_id, start_time, id, "
        "state_type) for the latest run, and (state_type, flow_id) for 'any run FAILED'); "
        "PostgreSQL then ANALYZE",
        f"gRPC: `flowservice serve --database-mode prefect --workers 1 --access-log false` "
        f"pinned to CPU {run.SERVER_CPU}; the client (sync stub, one channel) in this process "
        f"pinned to CPU {run.CLIENT_CPU}; {args.calls} sequential calls per operation after 2 "
        "discarded; p50 = median, p95 nearest rank",
        "SQL: FlowService's statements captured from a tracing server (floor.py) and the "
        "baseline, replayed in-process; SQLite: Python's sqlite3 on CPU 0 with FlowService's "
        f"pragmas, median over {args.floor_seconds:g} s (at least 3 calls, after 1 discarded); "
        "PostgreSQL: asyncpg, median of 5, plans by EXPLAIN (ANALYZE, BUFFERS)",
        "'any run FAILED' rows are for contrast (no baseline)",
        f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; wall time "
        f"{time.perf_counter() - started:.0f} s; the machine's 2 cores are shared with other "
        "work",
    ]
    lines += args.note
    command = ".venv/bin/python bench/latest_run.py " + shlex.join(sys.argv[1:])
    results = {
        "date": env["date"],
        "command": command.strip(),
        "lines": lines,
        "backends": backends,
    }
    saved.write_text(json.dumps(results, indent=1, default=str))
    if args.compare:
        results["earlier"] = json.loads(args.compare.read_text())
    write_report(results, args.out)


if __name__ == "__main__":
    main()
