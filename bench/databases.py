"""Prefect's schema (by Prefect's own migrations) and bulk loading of the generated rows.

Why: the schema must be exactly what a Prefect 3.9.1 server creates, so it is
made by `prefect server database reset/upgrade` (cached for SQLite: the
migrations take seconds); the rows are then written straight into the tables,
which is how a million flow runs load in about a minute.
"""

from __future__ import annotations

import csv
import io
import multiprocessing
import os
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dataset import COLUMNS, TABLES

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterable

    from dataset import Generator, Row

PREFECT_VERSION = "3.9.1"
PREFECT_VENV = Path("/root/.cache/flowservice/venvs") / f"prefect-{PREFECT_VERSION}"
PREFECT = PREFECT_VENV / "bin" / "prefect"
PREFECT_PYTHON = PREFECT_VENV / "bin" / "python"


def prefect_environment(home: Path, database_url: str) -> dict[str, str]:
    """This environment without PREFECT_*/FLOWSERVICE_* settings, plus the server's own."""
    inherited = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PREFECT_", "FLOWSERVICE_"))
    }
    home.mkdir(parents=True, exist_ok=True)
    return {
        **inherited,
        "PREFECT_HOME": str(home),
        "PREFECT_API_DATABASE_CONNECTION_URL": database_url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_UI_ENABLED": "false",
    }


def run_prefect(args: list[str], home: Path, database_url: str) -> None:
    """Run a `prefect` CLI command; its output is shown only if it fails."""
    result = subprocess.run(  # noqa: S603  # our own argument list, no shell
        [str(PREFECT), *args],
        env=prefect_environment(home, database_url),
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"prefect {' '.join(args)} failed:\n{result.stdout}{result.stderr}")


# --- SQLite --------------------------------------------------------------------


def sqlite_schema(cache: Path) -> Path:
    """An empty Prefect SQLite database at Alembic head, made once per Prefect version."""
    template = cache / f"prefect-{PREFECT_VERSION}-empty.db"
    if template.exists():
        return template
    cache.mkdir(parents=True, exist_ok=True)
    partial = cache / "schema-in-progress.db"
    for stale in cache.glob("schema-in-progress.db*"):
        stale.unlink()
    run_prefect(
        ["server", "database", "reset", "-y"],
        cache / "prefect-home",
        f"sqlite+aiosqlite:///{partial}",
    )
    with sqlite3.connect(partial) as connection:  # fold the WAL into the file
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    partial.rename(template)
    return template


def required_columns_missing(columns: dict[str, set[tuple[str, bool]]]) -> list[str]:
    """NOT NULL columns without a default that the generator does not fill."""
    missing = []
    for table, found in columns.items():
        for name, required in found:
            if required and name not in COLUMNS[table]:
                missing.append(f"{table}.{name}")
    return missing


def _sqlite_columns(connection: sqlite3.Connection) -> dict[str, set[tuple[str, bool]]]:
    result: dict[str, set[tuple[str, bool]]] = {}
    for table in TABLES:
        rows = connection.execute(f"PRAGMA table_info({table})").fetchall()
        # (cid, name, type, notnull, default, pk): required = NOT NULL and no default
        result[table] = {(row[1], bool(row[3]) and row[4] is None) for row in rows}
        unknown = set(COLUMNS[table]) - {row[1] for row in rows}
        if unknown:
            raise RuntimeError(f"{table} has no columns {sorted(unknown)}")
    return result


def _bulk_connection(path: Path) -> sqlite3.Connection:
    """A connection for loading only: no journal, no fsync, a large cache and mmap."""
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode = OFF")
    connection.execute("PRAGMA synchronous = OFF")
    connection.execute("PRAGMA cache_size = -4000000")
    connection.execute("PRAGMA mmap_size = 2147418112")
    connection.execute("PRAGMA temp_store = MEMORY")
    connection.execute("PRAGMA threads = 2")
    return connection


def _secondary_indexes(connection: sqlite3.Connection, tables: tuple[str, ...]) -> list[Any]:
    """(name, sql) of the explicit indexes of `tables`, in creation order."""
    return connection.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL "  # noqa: S608  # placeholders only
        f"AND tbl_name IN ({', '.join('?' * len(tables))}) ORDER BY rowid",
        tables,
    ).fetchall()


def _insert(connection: sqlite3.Connection, table: str, rows: Iterable[Row]) -> None:
    columns = COLUMNS[table]
    insert = (
        f"INSERT INTO {table} ({', '.join(columns)}) "  # noqa: S608  # constant names
        f"VALUES ({', '.join('?' * len(columns))})"
    )
    connection.executemany(insert, rows)


def _fill(connection: sqlite3.Connection, tables: dict[str, Iterable[Row]]) -> dict[str, float]:
    """Insert rows with the tables' secondary indexes dropped, then rebuild them (sorted).

    The indexes are recreated from their own SQL in their original order, so
    the schema ends up identical (SQLite's planner sees the same index list).
    """
    timings: dict[str, float] = {}
    indexes = _secondary_indexes(connection, tuple(tables))
    connection.execute("BEGIN")
    for name, _ in indexes:
        connection.execute(f'DROP INDEX "{name}"')
    for table, rows in tables.items():
        mark = time.perf_counter()
        _insert(connection, table, rows)
        timings[f"insert {table}"] = time.perf_counter() - mark
    mark = time.perf_counter()
    for _, sql in indexes:
        connection.execute(sql)
    timings["recreate indexes"] = time.perf_counter() - mark
    connection.execute("COMMIT")
    return timings


def _flow_run_file_worker(path: Path, rows: list[Row], results: Any) -> None:
    """Child process: flow_run rows and their indexes in a file of their own."""
    connection = _bulk_connection(path)
    try:
        timings = _fill(connection, {"flow_run": rows})
    finally:
        connection.close()
    results.send(timings)


def load_sqlite(path: Path, template: Path, generator: Generator) -> dict[str, float]:
    """Copy the empty schema to `path` and write every row, using both cores.

    Flow runs are written by a forked child into a copy of the empty schema
    while this process writes everything else (task runs are the bulk); they
    are then moved over with `INSERT INTO flow_run SELECT * FROM side.flow_run`,
    which SQLite runs as a raw transfer of records and index entries (the
    tables and their indexes are identical and the target is empty). No
    ANALYZE: a Prefect server never runs it, so there are no planner statistics.
    """
    timings: dict[str, float] = {}
    started = time.perf_counter()
    side_path = path.with_name(path.name + ".side")
    for stale in [*path.parent.glob(path.name + "*")]:
        stale.unlink()
    shutil.copyfile(template, path)
    shutil.copyfile(template, side_path)
    connection = _bulk_connection(path)
    try:
        missing = required_columns_missing(_sqlite_columns(connection))
        if missing:
            raise RuntimeError(f"the generator leaves NOT NULL columns empty: {missing}")
        mark = time.perf_counter()
        flow_runs = list(generator.flow_runs())  # task runs need the runs' times and states
        timings["generate flow_run"] = time.perf_counter() - mark
        context = multiprocessing.get_context("fork")
        receive, send = context.Pipe(duplex=False)
        child = context.Process(target=_flow_run_file_worker, args=(side_path, flow_runs, send))
        child.start()
        send.close()  # the child holds the only writer: its exit ends `recv`
        del flow_runs
        try:
            rest: dict[str, Iterable[Row]] = {
                "work_pool": generator.pools,
                "work_queue": generator.queues,
                "flow": generator.flows,
                "deployment": generator.deployments,
                "task_run": generator.task_runs(),
            }
            timings |= _fill(connection, rest)
            mark = time.perf_counter()
            try:
                child_timings = receive.recv()
            except EOFError:
                raise RuntimeError("the flow-run builder (a child process) failed") from None
            child.join()
        finally:
            if child.is_alive():
                child.kill()
                child.join()
        timings["wait for flow runs"] = time.perf_counter() - mark
        timings |= {f"(child) {key}": value for key, value in child_timings.items()}
        mark = time.perf_counter()
        connection.execute("ATTACH DATABASE ? AS side", (str(side_path),))
        connection.execute("BEGIN")
        connection.execute("INSERT INTO main.flow_run SELECT * FROM side.flow_run")
        connection.execute("COMMIT")
        connection.execute("DETACH DATABASE side")
        timings["transfer flow_run"] = time.perf_counter() - mark
        connection.execute("PRAGMA journal_mode = WAL")
    finally:
        connection.close()
        side_path.unlink(missing_ok=True)
    timings["total"] = time.perf_counter() - started
    return timings


def _rows(generator: Generator, table: str, interval: Any = None) -> Iterable[Row]:
    if table == "flow_run":
        return generator.flow_runs(interval) if interval else generator.flow_runs()
    if table == "task_run":
        return generator.task_runs(interval) if interval else generator.task_runs()
    return {
        "work_pool": generator.pools,
        "work_queue": generator.queues,
        "flow": generator.flows,
        "deployment": generator.deployments,
    }[table]


def index_names(path: Path) -> list[tuple[str, str]]:
    """(table, index) pairs, to check that no server changed the schema."""
    with sqlite3.connect(path) as connection:
        return connection.execute(
            "SELECT tbl_name, name FROM sqlite_master WHERE type = 'index' ORDER BY 1, 2"
        ).fetchall()


def has_statistics(path: Path) -> bool:
    with sqlite3.connect(path) as connection:
        found = connection.execute(
            "SELECT count(*) FROM sqlite_master WHERE name LIKE 'sqlite_stat%'"
        ).fetchone()[0]
        return bool(found)


def copy_database(source: Path, target: Path) -> None:
    """A fresh working copy of a (checkpointed) SQLite database."""
    for stale in target.parent.glob(target.name + "*"):
        stale.unlink()
    with sqlite3.connect(source) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    shutil.copyfile(source, target)


def add_disposable_flows(path: Path, prefix: str, count: int) -> list[str]:
    """Insert `count` flows without runs (for DeleteFlow), returning their ids.

    Written with sqlite3 while a server runs on the file; WAL lets both work.
    """
    import random  # noqa: PLC0415

    from dataset import uuid4_texts  # noqa: PLC0415  # only the write phase needs it

    ids = uuid4_texts(random.Random(prefix), count)  # noqa: S311  # test data, not secrets
    stamp = time.strftime("%Y-%m-%d %H:%M:%S.000000", time.gmtime())
    rows = [
        (flow_id, stamp, stamp, f"{prefix}-{i:06d}", "[]", "{}") for i, flow_id in enumerate(ids)
    ]
    connection = sqlite3.connect(path, isolation_level=None, timeout=60)
    try:
        connection.execute("PRAGMA busy_timeout = 60000")
        connection.execute("BEGIN IMMEDIATE")
        connection.executemany(
            "INSERT INTO flow (id, created, updated, name, tags, labels) VALUES (?, ?, ?, ?, ?, ?)",
            rows,
        )
        connection.execute("COMMIT")
    finally:
        connection.close()
    return ids


# --- PostgreSQL ----------------------------------------------------------------


def postgres_url(database: str, driver: str = "asyncpg") -> str:
    return f"postgresql+{driver}://postgres@127.0.0.1:5432/{database}"


async def create_postgres(database: str, home: Path) -> None:
    """A new database with Prefect's schema, made by `prefect server database upgrade`."""
    import asyncpg  # noqa: PLC0415  # PostgreSQL is only for the large run

    admin = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/postgres")
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}"')
        await admin.execute(f'CREATE DATABASE "{database}"')
    finally:
        await admin.close()
    run_prefect(["server", "database", "upgrade", "-y"], home, postgres_url(database))


async def drop_postgres(database: str) -> None:
    import asyncpg  # noqa: PLC0415

    admin = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/postgres")
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    finally:
        await admin.close()


async def analyze_postgres(database: str) -> None:
    """ANALYZE again: statistics for the expressions of indexes added after the load."""
    import asyncpg  # noqa: PLC0415

    connection = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:5432/{database}")
    try:
        await connection.execute("ANALYZE")
    finally:
        await connection.close()


async def load_postgres(database: str, generator: Generator) -> dict[str, float]:
    """COPY every row (CSV) with secondary indexes dropped and rebuilt, then VACUUM (ANALYZE).

    Because PostgreSQL's autovacuum would, on its own, shortly after such a
    load: vacuum the inserted tables (setting the visibility map that
    index-only scans rely on) and gather statistics. SQLite has nothing of
    the kind.
    """
    import asyncpg  # noqa: PLC0415

    timings: dict[str, float] = {}
    started = time.perf_counter()
    connection = await asyncpg.connect(
        f"postgresql://postgres@127.0.0.1:5432/{database}",
        server_settings={"timezone": "UTC", "synchronous_commit": "off"},
    )
    try:
        await connection.execute("SET maintenance_work_mem = '512MB'")
        # work_pool and work_queue reference each other: check no foreign keys while
        # loading (the rows are consistent by construction), as pg_restore does.
        await connection.execute("SET session_replication_role = replica")
        columns = await connection.fetch(
            "SELECT table_name, column_name, is_nullable = 'NO' AND column_default IS NULL "
            "AS required FROM information_schema.columns WHERE table_schema = 'public' "
            "AND table_name = ANY($1::text[])",
            list(TABLES),
        )
        found: dict[str, set[tuple[str, bool]]] = {table: set() for table in TABLES}
        for row in columns:
            found[row["table_name"]].add((row["column_name"], row["required"]))
        missing = required_columns_missing(found)
        if missing:
            raise RuntimeError(f"the generator leaves NOT NULL columns empty: {missing}")
        indexes = await connection.fetch(
            "SELECT i.indexname, i.indexdef FROM pg_indexes i WHERE i.schemaname = 'public' "
            "AND i.tablename = ANY($1::text[]) AND NOT EXISTS (SELECT 1 FROM pg_constraint c "
            "WHERE c.conname = i.indexname)",
            list(TABLES),
        )
        for index in indexes:
            await connection.execute(f'DROP INDEX "{index["indexname"]}"')
        for table in TABLES:
            mark = time.perf_counter()
            await connection.copy_to_table(
                table,
                source=_csv_chunks(_rows(generator, table, _pg_interval)),
                columns=list(COLUMNS[table]),
                format="csv",
                null="\\N",
            )
            timings[f"copy {table}"] = time.perf_counter() - mark
        mark = time.perf_counter()
        for index in indexes:
            await connection.execute(index["indexdef"])
        timings["recreate indexes"] = time.perf_counter() - mark
        mark = time.perf_counter()
        await connection.execute("VACUUM (ANALYZE)")
        timings["vacuum analyze"] = time.perf_counter() - mark
    finally:
        await connection.close()
    timings["total"] = time.perf_counter() - started
    return timings


def _pg_interval(microseconds: int) -> str:
    return f"{microseconds} microseconds"


async def _csv_chunks(rows: Iterable[Row], batch: int = 20_000) -> AsyncIterator[bytes]:
    """Rows as CSV bytes, `batch` rows at a time; None is written as the \\N marker."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    pending = 0
    for row in rows:
        writer.writerow(["\\N" if value is None else value for value in row])
        pending += 1
        if pending == batch:
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
            pending = 0
    if pending:
        yield buffer.getvalue().encode()
