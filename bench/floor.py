"""The floor: FlowService's own SQL replayed in-process (sqlite3), with no RPC in between.

Why: "how much of the time is ours". The statements are captured from a real
FlowService process (sqltrace.py hooks the driver), one call per operation,
so they are exactly what the current code sends: same text, same bound
values, same connection pragmas. They are then run here, on the server's
CPU, with the rows fetched as Python tuples, and timed. The same capture
gives the query plans (EXPLAIN QUERY PLAN; EXPLAIN ANALYZE on PostgreSQL).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
from load_grpc import count_flows_request, read_flows_request
from loadstats import percentile
from servers import FlowService

from flowservice.v1 import flow_service_pb2 as s
from flowservice.v1 import flow_service_pb2_grpc

if TYPE_CHECKING:
    from collections.abc import Iterator

BENCH = Path(__file__).resolve().parent
#: Statements that are not the operation's own (the health probe).
NOT_QUERIES = ("SELECT 1",)


@dataclass
class Captured:
    """The statements one call made, and the connection setup before them."""

    op: str
    dialect: str
    statements: list[tuple[str, Any]]
    setup: list[str] = field(default_factory=list)


def _trace_lines(path: Path, start: int) -> list[dict[str, Any]]:
    with open(path) as file:
        file.seek(start)
        return [json.loads(line) for line in file if line.strip()]


def _is_query(sql: str) -> bool:
    """A statement of the operation itself: a SELECT (or WITH), not a health probe."""
    text = sql.strip().upper()
    return text.startswith(("SELECT", "WITH")) and text not in NOT_QUERIES


def _setup_pragmas(lines: list[dict[str, Any]]) -> list[str]:
    """The value-setting PRAGMAs FlowService runs on a new connection, in order, once each."""
    seen: list[str] = []
    for line in lines:
        sql = line["sql"].strip()
        if sql.upper().startswith("PRAGMA") and "=" in sql and sql not in seen:
            seen.append(sql)
    return seen


def _call(
    stub: flow_service_pb2_grpc.FlowServiceStub, op: dict[str, Any], flow_id: str, flow_name: str
) -> None:
    if op["kind"] == "read_flow":
        stub.ReadFlow(s.ReadFlowRequest(id=flow_id), timeout=600)
    elif op["kind"] == "read_flow_by_name":
        stub.ReadFlowByName(s.ReadFlowByNameRequest(name=flow_name), timeout=600)
    elif op["kind"] == "read_flows":
        stub.ReadFlows(read_flows_request(op["body"]), timeout=600)
    elif op["kind"] == "count_flows":
        stub.CountFlows(count_flows_request(op["body"]), timeout=600)
    else:
        raise ValueError(f"no floor for {op['kind']}")


def capture(
    database_url: str, ops: list[dict[str, Any]], flow: tuple[str, str], work: Path
) -> dict[str, Captured]:
    """Start a tracing FlowService on the database and record each operation's statements.

    Each call is made twice and the second one is kept (the first may open
    the connection); only the calls' own statements are kept.
    """
    trace = work / "sqltrace.jsonl"
    trace.unlink(missing_ok=True)
    trace.touch()
    launcher = [
        str(BENCH.parent / ".venv" / "bin" / "python"),
        str(BENCH / "sqltrace.py"),
        str(trace),
    ]
    server = FlowService.start(database_url, work / "flowservice-trace.log", launcher=launcher)
    captured: dict[str, Captured] = {}
    try:
        with grpc.insecure_channel(server.target) as channel:
            stub = flow_service_pb2_grpc.FlowServiceStub(channel)
            for op in ops:
                for _ in range(2):
                    mark = trace.stat().st_size
                    _call(stub, op, *flow)
                    lines = _trace_lines(trace, mark)
                dialect = lines[0]["dialect"] if lines else "sqlite"
                statements = [
                    (line["sql"], line["params"]) for line in lines if _is_query(line["sql"])
                ]
                captured[op["name"]] = Captured(op["name"], dialect, statements)
    finally:
        server.stop()
    setup = _setup_pragmas(_trace_lines(trace, 0))
    for item in captured.values():
        item.setup = setup
    return captured


# --- SQLite: replay and plans ---------------------------------------------------------


def _sqlite_params(params: Any) -> Any:
    if isinstance(params, dict) and "named" in params:
        return params["named"]
    return tuple(params)


@contextlib.contextmanager
def on_cpu(cpu: int) -> Iterator[None]:
    """Run the block on `cpu` (the servers' CPU), then restore the affinity."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def measure_sqlite(
    path: Path, item: Captured, *, duration: float, cpu: int = 0, timeout: float = 120.0
) -> dict[str, Any]:
    """Run the call's statements back to back for `duration` s; latency per call."""
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        for pragma in item.setup:
            connection.execute(pragma).fetchall()
        statements = [(sql, _sqlite_params(params)) for sql, params in item.statements]
        latencies: list[float] = []
        rows = 0
        timer = threading.Timer(timeout, connection.interrupt)  # a runaway query is stopped
        timer.start()
        try:
            with on_cpu(cpu):
                for sql, params in statements:  # warm-up
                    connection.execute(sql, params).fetchall()
                deadline = time.perf_counter() + duration
                while time.perf_counter() < deadline or len(latencies) < 3:
                    started = time.perf_counter()
                    for sql, params in statements:
                        rows = len(connection.execute(sql, params).fetchall())
                    latencies.append(time.perf_counter() - started)
                    if time.perf_counter() > deadline + timeout:
                        break
        except sqlite3.OperationalError as error:  # interrupted
            return {"error": f"{error} after {timeout} s", "statements": len(statements)}
        finally:
            timer.cancel()
    finally:
        connection.close()
    latencies.sort()
    return {
        "iterations": len(latencies),
        "p50_ms": round(1000 * (percentile(latencies, 0.5) or 0), 3),
        "p99_ms": round(1000 * (percentile(latencies, 0.99) or 0), 3),
        "rows": rows,
        "statements": len(statements),
    }


def sqlite_plans(path: Path, item: Captured) -> list[str]:
    """EXPLAIN QUERY PLAN of each statement, as an indented tree."""
    out = []
    with sqlite3.connect(path) as connection:
        for sql, params in item.statements:
            rows = connection.execute(
                "EXPLAIN QUERY PLAN " + sql, _sqlite_params(params)
            ).fetchall()
            depth: dict[int, int] = {0: -1}
            lines = []
            for node, parent, _, detail in rows:
                depth[node] = depth.get(parent, -1) + 1
                lines.append("  " * depth[node] + detail)
            out.append("\n".join(lines))
    return out


# --- PostgreSQL: plans ----------------------------------------------------------------


def _pg_value(value: Any) -> Any:
    if isinstance(value, dict) and "datetime" in value:
        return datetime.datetime.fromisoformat(value["datetime"])
    if isinstance(value, dict) and "uuid" in value:
        return uuid.UUID(value["uuid"])
    if isinstance(value, list):
        return [_pg_value(item) for item in value]
    return value


async def postgres_plans(dsn: str, item: Captured, runs: int = 5) -> dict[str, Any]:
    """EXPLAIN (ANALYZE, BUFFERS) of each statement, and its server-side time over `runs` runs."""
    import asyncpg  # noqa: PLC0415

    connection = await asyncpg.connect(dsn, server_settings={"timezone": "UTC"})
    plans, timings = [], []
    try:
        for sql, params in item.statements:
            values = [_pg_value(value) for value in params]
            for _ in range(runs):
                started = time.perf_counter()
                await connection.fetch(sql, *values)
                timings.append(time.perf_counter() - started)
            rows = await connection.fetch("EXPLAIN (ANALYZE, BUFFERS) " + sql, *values)
            plans.append("\n".join(row[0] for row in rows))
    finally:
        await connection.close()
    timings.sort()
    return {"plans": plans, "p50_ms": round(1000 * (percentile(timings, 0.5) or 0), 3)}


def statements_text(item: Captured) -> str:
    """The statements with their parameters, for the report."""
    return "\n\n".join(
        f"{sql}\n-- parameters: {json.dumps(params)}" for sql, params in item.statements
    )
