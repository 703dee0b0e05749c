"""FlowService vs Prefect 3.9.1 on the same database: one command, one table.

    .venv/bin/python bench/run.py                       # default sizes, ~8 minutes
    .venv/bin/python bench/run.py --scale 50            # 1,000,000 flow runs, SQLite + PostgreSQL

Builds the data set (Prefect's schema by Prefect's migrations, rows written
directly), runs each server alone on CPU 0 with the load generator on CPU 1,
measures the same operations against both, replays FlowService's SQL in
process for the floor, and writes the table to bench/RESULTS.md (only this
mode's section is replaced). See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import platform
import shlex
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

import databases  # noqa: E402  # bench modules, importable once BENCH is on the path
import dataset  # noqa: E402
import floor  # noqa: E402
import operations  # noqa: E402
import report  # noqa: E402
from servers import FlowService, Prefect, Server  # noqa: E402

WORK = BENCH / ".work"
CACHE = BENCH / ".cache"
PREFECT_HOME = CACHE / "prefect-home"
FS_PYTHON = ROOT / ".venv" / "bin" / "python"
SERVER_CPU, CLIENT_CPU = 0, 1
LARGE_RUNS = 500_000  # from this many flow runs on, the large mode's operations
DISPOSABLE_FLOWS = 40_000  # flows without runs, inserted for DeleteFlow
FLOOR_SECONDS = 2.0  # per floor row
REQUEST_TIMEOUT = 60.0  # a call that takes longer counts as failed ("client timeout")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sizes = dataset.Sizes()
    for name in ("flows", "flow_runs", "task_runs", "deployments", "work_pools"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(sizes, name))
    parser.add_argument("--scale", type=int, default=1, help="multiply every size by K")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds measured per row")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds discarded first")
    parser.add_argument("--concurrency", default="1,16")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=BENCH / "RESULTS.md")
    parser.add_argument(
        "--postgres",
        choices=("auto", "yes", "no"),
        default="auto",
        help="also PostgreSQL (auto: in the large mode only)",
    )
    parser.add_argument(
        "--reuse-dataset",
        action="store_true",
        help="reuse the SQLite data set of an earlier run with the same sizes and seed",
    )
    parser.add_argument("--skip-prefect", action="store_true", help="measure FlowService only")
    parser.add_argument(
        "--no-flowservice-indexes",
        dest="flowservice_indexes",
        action="store_false",
        help="leave Prefect's schema as it is (by default `flowservice indexes add` gives the "
        "database both servers read FlowService's indexes, as the README recommends)",
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="measure nothing: rewrite the report from this mode's last saved results",
    )
    return parser.parse_args()


def sizes_from(args: argparse.Namespace) -> dataset.Sizes:
    sizes = dataset.Sizes(
        args.flows, args.flow_runs, args.task_runs, args.deployments, args.work_pools
    )
    return sizes.scaled(args.scale) if args.scale != 1 else sizes


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- environment ---------------------------------------------------------------------


def _command_output(command: list[str]) -> str:
    result = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
    return result.stdout.strip()


def environment() -> dict[str, Any]:
    """Machine, load and versions, for the report."""
    import grpc  # noqa: PLC0415
    import sqlalchemy  # noqa: PLC0415
    from google import protobuf  # noqa: PLC0415

    lscpu = dict(
        line.split(":", 1) for line in _command_output(["lscpu"]).splitlines() if ":" in line
    )
    prefect_versions = json.loads(
        _command_output(
            [
                str(databases.PREFECT_PYTHON),
                "-c",
                "import importlib.metadata as m, json, sqlite3, platform; print(json.dumps("
                "{p: m.version(p) for p in ('prefect', 'sqlalchemy', 'aiosqlite', 'asyncpg',"
                " 'fastapi', 'uvicorn', 'httpx', 'pydantic')}"
                " | {'python': platform.python_version(),"
                " 'sqlite': sqlite3.sqlite_version}))",
            ]
        )
    )
    commit = _command_output(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    changed = _command_output(["git", "-C", str(ROOT), "status", "--porcelain", "--", "server"])
    diff = _command_output(["git", "-C", str(ROOT), "diff", "HEAD", "--", "server"])
    state = (
        f" + uncommitted changes to {len(changed.splitlines())} server file(s), "
        f"diff sha1 {hashlib.sha1(diff.encode()).hexdigest()[:10]}"  # noqa: S324  # an id
        if changed
        else ""
    )
    mem = next(
        line for line in Path("/proc/meminfo").read_text().splitlines() if "MemTotal" in line
    )
    facts = {
        "CPU": f"{lscpu.get('Model name', '?').strip()}, {os.cpu_count()} cores "
        f"({lscpu.get('Hypervisor vendor', 'no hypervisor').strip()} guest)",
        "memory": mem.split(":", 1)[1].strip(),
        "OS": platform.platform(),
        "load average at start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "FlowService": f"git {commit}{state}; Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}, grpcio {grpc.__version__}, "
        f"protobuf {protobuf.__version__}, SQLAlchemy {sqlalchemy.__version__}",
        "Prefect": f"{prefect_versions['prefect']}; Python {prefect_versions['python']}, "
        f"SQLite {prefect_versions['sqlite']}, SQLAlchemy {prefect_versions['sqlalchemy']}, "
        f"aiosqlite {prefect_versions['aiosqlite']}, FastAPI {prefect_versions['fastapi']}, "
        f"uvicorn {prefect_versions['uvicorn']}, pydantic {prefect_versions['pydantic']}; "
        f"client httpx {prefect_versions['httpx']}",
    }
    return {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "facts": facts}


# --- data set --------------------------------------------------------------------------


def build_dataset(
    sizes: dataset.Sizes, seed: int, reuse: bool
) -> tuple[Path, dataset.Summary, list[str]]:
    """The pristine SQLite data set (built, or reused when asked and present)."""
    key = "-".join(str(n) for n in (*asdict(sizes).values(), seed))
    path, summary_path = WORK / f"dataset-{key}.db", WORK / f"dataset-{key}.json"
    if reuse and path.exists() and summary_path.exists():
        saved = json.loads(summary_path.read_text())
        say(f"reusing the data set {path.name} (built {saved['built']})")
        return (
            path,
            dataset.Summary(**saved["summary"]),
            saved["lines"] + [f"reused from an earlier run (built {saved['built']})"],
        )
    say("building the data set …")
    started = time.perf_counter()
    template = databases.sqlite_schema(CACHE)
    schema_s = time.perf_counter() - started
    generator = dataset.Generator(sizes, seed=seed)
    timings = databases.load_sqlite(path, template, generator)
    total = time.perf_counter() - started
    summary = generator.summary
    lines = describe_dataset(sizes, summary, path)
    lines.append(
        f"built in {total:.1f} s with load average {os.getloadavg()[0]:.2f} (schema "
        f"{'from cache' if schema_s < 1 else f'by migrations in {schema_s:.1f} s'}; "
        + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items() if v >= 0.05)
        + ")"
    )
    summary_path.write_text(
        json.dumps({"summary": asdict(summary), "lines": lines, "built": time.ctime()})
    )
    say(f"data set built in {total:.1f} s: {path.name} ({path.stat().st_size / 1e6:,.0f} MB)")
    return path, summary, lines


def describe_dataset(sizes: dataset.Sizes, summary: dataset.Summary, path: Path) -> list[str]:
    runs = max(sizes.flow_runs, 1)
    by_state = ", ".join(
        f"{state} {n:,} ({100 * n / runs:.0f}%)" for state, n in summary.flow_runs_by_state.items()
    )
    tasks = ", ".join(f"{state} {n:,}" for state, n in sorted(summary.task_runs_by_state.items()))
    return [
        f"{sizes.flows:,} flows, {sizes.flow_runs:,} flow runs, {sizes.task_runs:,} task runs, "
        f"{sizes.deployments:,} deployments, {sizes.work_pools:,} work pools "
        f"({3 * sizes.work_pools:,} work queues); SQLite file "
        f"{path.stat().st_size / 1e6:,.0f} MB",
        f"flow runs by state: {by_state}",
        f"task runs by state: {tasks}",
        f"{summary.runs_with_deployment:,} flow runs "
        f"({100 * summary.runs_with_deployment / runs:.0f}%)"
        f" have a deployment; {summary.flows_with_runs:,} flows have runs; "
        f"{summary.paused_deployments:,} deployments are paused; times spread over the 30 days "
        f"before {summary.now}; 'since T' = {summary.since}",
        "schema made by Prefect's own migrations (`prefect server database reset -y`); rows "
        "written with sqlite3 executemany in Prefect's storage formats; secondary indexes "
        "dropped during the load and recreated from their own SQL; **no ANALYZE** "
        "(a Prefect server never runs it, so SQLite has no statistics: no sqlite_stat1)",
        "flow_run.state_id / task_run.state_id are NULL (no state-history rows are generated; "
        "the flow API never reads them)",
    ]


def add_flowservice_indexes(args: argparse.Namespace, url: str) -> None:
    """`flowservice indexes add` on a working database, unless told not to."""
    if not args.flowservice_indexes:
        return
    started = time.perf_counter()
    result = subprocess.run(  # noqa: S603  # our own argument list
        [str(FS_PYTHON.with_name("flowservice")), "indexes", "add", "--database-url", url],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"flowservice indexes add failed:\n{result.stderr}")
    say(f"  flowservice indexes add: {time.perf_counter() - started:.1f} s")


# --- load --------------------------------------------------------------------------


def run_load(server: Server, plan: dict[str, Any], name: str, backend: str) -> list[dict[str, Any]]:
    """Run a load generator in its own process (pinned to the client CPU); its JSON results."""
    if isinstance(server, Prefect):
        command = [str(databases.PREFECT_PYTHON), str(BENCH / "load_rest.py")]
        plan = {**plan, "target": server.base_url}
    else:
        command = [str(FS_PYTHON), str(BENCH / "load_grpc.py")]
        plan = {**plan, "target": server.target}
    plan = {**plan, "server_pid": server.pid, "cpu": CLIENT_CPU}
    plan_path = WORK / f"plan-{name}.json"
    plan_path.write_text(json.dumps(plan))
    out_path = WORK / f"results-{name}.json"
    env = {**os.environ, "PYTHONPATH": str(BENCH)}
    with open(out_path, "w") as out:
        process = subprocess.Popen(  # noqa: S603  # our own argument list
            [*command, str(plan_path)], stdout=out, stderr=subprocess.PIPE, text=True, env=env
        )
        assert process.stderr is not None
        for line in process.stderr:
            try:
                m = json.loads(line)
            except json.JSONDecodeError:
                print("   ", line.rstrip(), flush=True)
                continue
            errors = f" FAILED {m['errors']}" if m["errors"] else ""
            say(
                f"  {backend} {server.kind:11} {m['op']:42} c={m['concurrency']:<3} "
                f"{m['rps']:8.1f} req/s  p50 {m['p50_ms'] or 0:8.2f} ms  "
                f"p99 {m['p99_ms'] or 0:8.2f} ms{errors}"
            )
        process.wait()
    if process.returncode != 0:
        raise RuntimeError(f"load generator {command[-1]} exited {process.returncode}")
    results: list[dict[str, Any]] = json.loads(out_path.read_text())["results"]
    kinds = {op["name"]: op for op in plan["ops"]}
    for m in results:
        m["write"] = bool(kinds[m["op"]].get("write"))
        m["reference"] = bool(kinds[m["op"]].get("reference"))
    return results


def base_plan(args: argparse.Namespace, summary: dataset.Summary, timeout: float) -> dict[str, Any]:
    return {
        "duration": args.duration,
        "warmup": args.warmup,
        "request_timeout": timeout,
        "concurrency": [int(c) for c in args.concurrency.split(",")],
        "flow_ids": summary.flow_ids,
        "flow_names": summary.flow_names,
    }


def schema_check(path: Path, before: list[tuple[str, str]], who: str) -> list[str]:
    notes = []
    if databases.index_names(path) != before:
        notes.append(f"warning: the indexes changed while {who} ran on the database")
    if databases.has_statistics(path):
        notes.append(f"warning: planner statistics (sqlite_stat*) appeared after {who} ran")
    return notes


def measure_server_default(
    kind: str, args: argparse.Namespace, pristine: Path, summary: dataset.Summary
) -> tuple[list[dict[str, Any]], list[str]]:
    """One server on a fresh copy of the data set: reads, then writes."""
    path = WORK / f"db-{kind}.db"
    databases.copy_database(pristine, path)
    url = f"sqlite+aiosqlite:///{path}"
    add_flowservice_indexes(args, url)
    indexes = databases.index_names(path)
    say(f"starting {kind} on CPU {SERVER_CPU} …")
    server: Server = (
        Prefect.start(url, PREFECT_HOME, WORK / f"{kind}.log", cpu=SERVER_CPU)
        if kind == "prefect"
        else FlowService.start(url, WORK / f"{kind}.log", cpu=SERVER_CPU)
    )
    try:
        plan = base_plan(args, summary, timeout=REQUEST_TIMEOUT)
        reads = operations.read_operations(
            summary.since, summary.work_pool_names[1 % len(summary.work_pool_names)]
        )
        results = run_load(server, {**plan, "ops": reads}, f"{kind}-reads", "SQLite")
        prefix = f"bench-del-{kind}"
        plan["delete_ids"] = databases.add_disposable_flows(path, prefix, DISPOSABLE_FLOWS)
        writes = operations.write_operations(f"bench-new-{kind}")
        results += run_load(server, {**plan, "ops": writes}, f"{kind}-writes", "SQLite")
    finally:
        server.stop()
    notes = schema_check(path, indexes, kind)
    return results, notes


def measure_floor(
    url: str,
    path: Path | None,
    ops: list[dict[str, Any]],
    summary: dataset.Summary,
    duration: float,
) -> tuple[dict[str, Any], dict[str, list[str]], dict[str, str]]:
    """The floor (SQLite) or server-side time (PostgreSQL), plans, and the SQL itself."""
    wanted = [op for op in ops if op.get("floor")]
    say("capturing FlowService's SQL for the floor …")
    captured = floor.capture(url, wanted, (summary.flow_ids[0], summary.flow_names[0]), WORK)
    floors: dict[str, Any] = {}
    plans: dict[str, list[str]] = {}
    statements: dict[str, str] = {}
    for name, item in captured.items():
        statements[name] = floor.statements_text(item)
        try:
            if path is not None:
                floors[name] = floor.measure_sqlite(
                    path, item, duration=min(duration, FLOOR_SECONDS), cpu=SERVER_CPU
                )
                plans[name] = floor.sqlite_plans(path, item)
            else:
                dsn = url.replace("postgresql+asyncpg", "postgresql")
                found = asyncio.run(floor.postgres_plans(dsn, item))
                floors[name] = {"p50_ms": found["p50_ms"]}
                plans[name] = found["plans"]
        except Exception as error:  # noqa: BLE001  # reported in the table, the run goes on
            floors[name] = {"error": f"{type(error).__name__}: {error}"}
        say(f"  floor {name:42} {floors[name]}")
    return floors, plans, statements


# --- modes ---------------------------------------------------------------------------


def default_mode(args: argparse.Namespace, sizes: dataset.Sizes) -> dict[str, Any]:
    pristine, summary, data_lines = build_dataset(sizes, args.seed, args.reuse_dataset)
    backend: dict[str, Any] = {"notes": []}
    kinds = ["flowservice"] if args.skip_prefect else ["prefect", "flowservice"]
    for kind in kinds:
        results, notes = measure_server_default(kind, args, pristine, summary)
        backend[kind] = results
        backend["notes"] += notes
    floor_db = WORK / "db-floor.db"
    databases.copy_database(pristine, floor_db)
    add_flowservice_indexes(args, f"sqlite+aiosqlite:///{floor_db}")
    reads = operations.read_operations(summary.since, summary.work_pool_names[1])
    backend["floor"], backend["plans"], backend["statements"] = measure_floor(
        f"sqlite+aiosqlite:///{floor_db}", floor_db, reads, summary, args.duration
    )
    return {"mode": "default", "dataset": {"lines": data_lines}, "backends": {"SQLite": backend}}


def probe_prefect(server: Prefect, op: dict[str, Any], timeout: float) -> float | None:
    """Seconds one call of `op` takes on Prefect, or None if it fails or exceeds `timeout`."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    path = "/flows/count" if op["kind"] == "count_flows" else "/flows/filter"
    if op["kind"] == "read_flow":
        return 0.0
    body = json.dumps(op["body"]).encode()
    request = urllib.request.Request(  # noqa: S310  # loopback http only
        server.base_url + path, data=body, headers={"Content-Type": "application/json"}
    )
    started = time.perf_counter()
    try:
        with opener.open(request, timeout=timeout) as reply:
            reply.read()
    except (OSError, urllib.error.HTTPError):
        return None
    return time.perf_counter() - started


def large_backend(
    args: argparse.Namespace,
    backend_name: str,
    url: str,
    path: Path | None,
    summary: dataset.Summary,
) -> dict[str, Any]:
    """The large mode on one database: FlowService fully, Prefect bounded in time."""
    ops = operations.large_operations(summary.since)
    plan = base_plan(args, summary, timeout=120.0)
    backend: dict[str, Any] = {"notes": []}
    before = databases.index_names(path) if path else []
    say(f"{backend_name}: starting FlowService …")
    server: Server = FlowService.start(
        url, WORK / f"flowservice-{backend_name}.log", cpu=SERVER_CPU
    )
    try:
        backend["flowservice"] = run_load(
            server, {**plan, "ops": ops}, f"fs-{backend_name}", backend_name
        )
    finally:
        server.stop()
    if not args.skip_prefect:
        backend["prefect"], notes = large_prefect(args, backend_name, url, ops, plan)
        backend["notes"] += notes
    if path is not None:
        backend["notes"] += schema_check(path, before, "the servers")
    backend["floor"], backend["plans"], backend["statements"] = measure_floor(
        url, path, ops, summary, args.duration
    )
    if path is None:
        backend["notes"].append(
            "floor on PostgreSQL = the same SQL through asyncpg from this process (no RPC), "
            "median of 5; plans are EXPLAIN (ANALYZE, BUFFERS)"
        )
    return backend


PROBE_TIMEOUT = 60.0


def large_prefect(
    args: argparse.Namespace,
    backend_name: str,
    url: str,
    ops: list[dict[str, Any]],
    plan: dict[str, Any],
) -> tuple[list[dict[str, Any]], list[str]]:
    """Prefect at a million runs, bounded: each operation is probed once first; one that
    takes over a minute is not measured; one that takes over a second only at c=1."""
    notes, runnable, skipped = [], [], []
    say(f"{backend_name}: starting Prefect …")
    server = Prefect.start(url, PREFECT_HOME, WORK / f"prefect-{backend_name}.log", cpu=SERVER_CPU)
    try:
        for op in ops:
            seconds = probe_prefect(server, op, PROBE_TIMEOUT)
            if seconds is None:
                notes.append(
                    f"Prefect, {op['name']}: one call did not finish within {PROBE_TIMEOUT:.0f} s "
                    "(or failed); not measured, server restarted"
                )
                skipped.append(
                    {"op": op["name"], "concurrency": 1, "note": f"> {PROBE_TIMEOUT:.0f} s"}
                )
                server.stop()
                server = Prefect.start(
                    url, PREFECT_HOME, WORK / f"prefect-{backend_name}.log", cpu=SERVER_CPU
                )
                continue
            if seconds > 1.0:
                notes.append(
                    f"Prefect, {op['name']}: one call took {seconds:.1f} s, so measured at c=1 only"
                )
                runnable.append(
                    {**op, "concurrency": [1], "duration": max(args.duration, 3 * seconds)}
                )
                continue
            runnable.append(op)
        results = run_load(
            server, {**plan, "ops": runnable}, f"prefect-{backend_name}", backend_name
        )
    finally:
        server.stop()
    for item in skipped:
        results.append(
            {
                "op": item["op"],
                "concurrency": 1,
                "requests": 0,
                "errors": {},
                "error_count": 0,
                "rps": None,
                "p50_ms": None,
                "p99_ms": None,
                "note": item["note"],
                "result": "–",
                "write": False,
            }
        )
    return results, notes


def large_mode(args: argparse.Namespace, sizes: dataset.Sizes) -> dict[str, Any]:
    pristine, summary, data_lines = build_dataset(sizes, args.seed, args.reuse_dataset)
    working = WORK / "db-large.db"
    say(f"copying the data set to {working.name} …")
    databases.copy_database(pristine, working)
    add_flowservice_indexes(args, f"sqlite+aiosqlite:///{working}")
    try:
        backends = {
            "SQLite": large_backend(
                args, "SQLite", f"sqlite+aiosqlite:///{working}", working, summary
            )
        }
    finally:
        for leftover in working.parent.glob(working.name + "*"):
            leftover.unlink()
    if args.postgres != "no":
        name = f"flowbench_{os.getpid()}"
        say(f"PostgreSQL: creating {name} with Prefect's migrations and loading it …")
        started = time.perf_counter()
        asyncio.run(databases.create_postgres(name, PREFECT_HOME))
        generator = dataset.Generator(
            sizes, seed=args.seed, now=datetime.fromisoformat(summary.now)
        )
        try:
            timings = asyncio.run(databases.load_postgres(name, generator))
            if args.flowservice_indexes:
                add_flowservice_indexes(args, databases.postgres_url(name))
                asyncio.run(databases.analyze_postgres(name))
            total = time.perf_counter() - started
            data_lines.append(
                "PostgreSQL: the same rows (same seed and 'now') loaded with COPY in "
                f"{total:.0f} s "
                "(schema by `prefect server database upgrade -y`, secondary indexes rebuilt after "
                "the load, then VACUUM (ANALYZE) as autovacuum would): "
                + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items())
            )
            backends["PostgreSQL"] = large_backend(
                args, "PostgreSQL", databases.postgres_url(name), None, summary
            )
            backends["PostgreSQL"]["notes"].append(pg_version(name))
        finally:
            asyncio.run(databases.drop_postgres(name))
            say(f"PostgreSQL: dropped {name}")
    return {"mode": "large", "dataset": {"lines": data_lines}, "backends": backends}


def pg_version(database: str) -> str:
    import asyncpg  # noqa: PLC0415

    async def version() -> str:
        connection = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:5432/{database}")
        try:
            return str(await connection.fetchval("SELECT version()"))
        finally:
            await connection.close()

    return "server: " + asyncio.run(version()) + " (not pinned; shared with the machine)"


# --- main --------------------------------------------------------------------------


def settings_lines(args: argparse.Namespace, mode: str) -> list[str]:
    lines = [
        f"each server runs alone (one after the other) pinned to CPU {SERVER_CPU} with `taskset -c "
        f"{SERVER_CPU}`; the load generator runs in its own process pinned to CPU {CLIENT_CPU} "
        "(`os.sched_setaffinity`)",
        "FlowService: `flowservice serve --database-mode prefect --workers 1 --access-log false`; "
        "client: the raw generated stub on one grpc.aio channel (`bench/load_grpc.py`)",
        "Prefect: `prefect server start --no-services` (UI and analytics off); client: "
        "httpx.AsyncClient with one keep-alive connection per concurrent worker "
        "(`bench/load_rest.py`, run by Prefect's venv)",
        f"per row: {args.warmup:g} s warm-up (discarded), then {args.duration:g} s of back-to-back "
        "calls by c concurrent workers; every call checked (status, and the returned flow's "
        "id/name); latencies are over successful calls; every other outcome is counted under "
        "'failed' by HTTP status, exception or gRPC code",
        "'result' is the first successful call's answer (rows returned or count), to compare "
        "the servers' answers",
        "floor: FlowService's own SQL, captured from a running FlowService by hooking the sqlite3 "
        "driver (`bench/sqltrace.py`), replayed in-process with Python's sqlite3 on CPU 0 with the "
        "same connection pragmas, rows fetched; median over the measured period",
    ]
    if mode == "default":
        lines += [
            "the reads run first, then the writes, each server on a fresh copy of the data set",
            "CreateFlow new name: a unique name per call; existing name: the data set's flows; "
            "UpdateFlow: tags of existing flows (cycled); DeleteFlow: flows **without runs**, "
            f"{DISPOSABLE_FLOWS:,} of them inserted just before the write phase",
        ]
    else:
        lines += [
            "reads only, both servers on one copy of the data set; Prefect bounded: each "
            f"operation probed once, not measured if one call takes over {PROBE_TIMEOUT:.0f} s, "
            "at c=1 only if over 1 s",
        ]
    lines.append(
        "indexes: `flowservice indexes add` gave the database both servers read FlowService's "
        "indexes (flow_run (state_type, flow_id) and (state_type, COALESCE(start_time, "
        "expected_start_time), flow_id, …); on PostgreSQL also GIN on tags, then ANALYZE)"
        if args.flowservice_indexes
        else "indexes: Prefect's own only (--no-flowservice-indexes)"
    )
    return lines


def main() -> None:
    args = parse_args()
    sizes = sizes_from(args)
    WORK.mkdir(parents=True, exist_ok=True)
    mode = "large" if sizes.flow_runs >= LARGE_RUNS else "default"
    # Each mode, with and without FlowService's indexes, has its own section.
    key = mode if args.flowservice_indexes else f"{mode}-prefect-schema"
    if args.report_only:
        write_report(json.loads((WORK / f"results-{key}.json").read_text()), args.out)
        return
    env = environment()
    say(f"{mode} run: {sizes}")
    started = time.perf_counter()
    results = large_mode(args, sizes) if mode == "large" else default_mode(args, sizes)
    env["facts"]["load average at end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    env["facts"]["wall time of the run"] = f"{time.perf_counter() - started:.0f} s"
    command = ".venv/bin/python bench/run.py " + shlex.join(sys.argv[1:])
    results |= {
        "section": key,
        "environment": env,
        "settings": {"command": command.strip(), "lines": settings_lines(args, mode)},
    }
    (WORK / f"results-{key}.json").write_text(json.dumps(results, indent=1, default=str))
    write_report(results, args.out)


def write_report(results: dict[str, Any], out: Path) -> None:
    """The tables and targets on the console, and this mode's section of `out`."""
    mode = results["mode"]
    for name, backend in results["backends"].items():
        print(f"\n{name}\n" + report.console_table(backend))
    targets = (
        report.default_targets(results["backends"]["SQLite"])
        if mode == "default"
        else report.large_targets(results["backends"])
    )
    print("\nTargets:\n" + "\n".join(targets))
    existing = out.read_text() if out.exists() else None
    key = results.get("section", mode)
    out.write_text(report.merge_document(existing, report.section(results), key))
    say(f"wrote {out}")


if __name__ == "__main__":
    main()
