"""Alternative SQL shapes for the two slow large-mode queries, timed on a SQLite data set.

    .venv/bin/python bench/shapes.py bench/.work/dataset-100000-1000000-3000000-25000-250-7.db

Why: at a million runs FlowService's count and "FAILED since T" queries miss
100 ms on SQLite; this shows what the same answers cost in other shapes on
Prefect's own indexes, and with one extra covering index (created inside a
transaction that is rolled back, so the file is left as it was).
"""

from __future__ import annotations

import argparse
import sqlite3
import time
from pathlib import Path

COLUMNS = "flow.id, flow.created, flow.updated, flow.name, flow.tags, flow.labels"
SINCE = "coalesce(flow_run.start_time, flow_run.expected_start_time) >= :since"
SHAPES: dict[str, str] = {
    "count: count(DISTINCT flow_id) over the state_type index (FlowService today)": (
        "SELECT count(DISTINCT flow_run.flow_id) FROM flow_run "
        "WHERE flow_run.state_type IN ('FAILED')"
    ),
    "count: flows with EXISTS, probing runs per flow via ix_flow_run__flow_id": (
        "SELECT count(*) FROM flow WHERE EXISTS (SELECT 1 FROM flow_run "
        "WHERE flow_run.flow_id = flow.id AND +flow_run.state_type = 'FAILED')"
    ),
    "since T: IN (subquery) + temp B-tree sort (FlowService today)": (
        f"SELECT {COLUMNS} FROM flow WHERE flow.id IN (SELECT flow_run.flow_id FROM flow_run "  # noqa: S608  # constants
        f"WHERE flow_run.state_type IN ('FAILED') AND {SINCE}) ORDER BY flow.name LIMIT 200"
    ),
    "since T: walk flows by name, EXISTS probe per flow via ix_flow_run__flow_id": (
        f"SELECT {COLUMNS} FROM flow WHERE EXISTS (SELECT 1 FROM flow_run "  # noqa: S608  # constants
        f"WHERE flow_run.flow_id = flow.id AND +flow_run.state_type = 'FAILED' "
        f"AND +{SINCE}) ORDER BY flow.name LIMIT 200"
    ),
}
EXTRA_INDEX = "CREATE INDEX bench_flow_run__state_type_flow_id ON flow_run (state_type, flow_id)"


def timed(connection: sqlite3.Connection, sql: str, since: str, runs: int = 5) -> str:
    params = {"since": since} if ":since" in sql else {}
    plan = [row[3] for row in connection.execute("EXPLAIN QUERY PLAN " + sql, params)]
    times, rows = [], 0
    for _ in range(runs):
        started = time.perf_counter()
        rows = len(connection.execute(sql, params).fetchall())
        times.append(time.perf_counter() - started)
        if sum(times) > 30:
            break
    times.sort()
    return f"{1000 * times[len(times) // 2]:9.1f} ms  ({rows} rows)  plan: {' / '.join(plan)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("database", type=Path)
    parser.add_argument("--since", default=None, help="default: 7 days before the newest run")
    args = parser.parse_args()
    connection = sqlite3.connect(args.database, isolation_level=None)
    connection.execute("PRAGMA cache_size = 20000")  # FlowService's and Prefect's setting
    since = (
        args.since
        or connection.execute(
            "SELECT datetime(max(end_time), '-7 days') || '.000000' FROM flow_run"
        ).fetchone()[0]
    )
    print(f"since = {since}\n\nPrefect's indexes only:")
    for name, sql in SHAPES.items():
        print(f"  {name}\n    {timed(connection, sql, since)}")
    connection.execute("BEGIN")
    try:
        started = time.perf_counter()
        connection.execute(EXTRA_INDEX)
        print(f"\nwith {EXTRA_INDEX} (built in {time.perf_counter() - started:.1f} s):")
        for name, sql in SHAPES.items():
            print(f"  {name}\n    {timed(connection, sql, since)}")
    finally:
        connection.execute("ROLLBACK")
        connection.close()


if __name__ == "__main__":
    main()
