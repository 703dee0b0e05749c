"""Shared fixtures: database_url (sqlite, postgresql) -> server -> client, and a seeder.

Every test that uses `server` or `client` runs once per backend; a test of what
cannot differ by backend uses `any_backend_server` or `any_backend_client`
instead, which run once, on SQLite (see `any_backend_url`). The SQLite
backend gets a fresh file per test, copied from a migrated template; the
PostgreSQL backend gets one fresh database per session (dropped at the end)
whose tables are emptied before each test. The PostgreSQL server is the one
FLOWSERVICE_TEST_POSTGRES_URL names (CI sets it); without it, a throwaway
cluster this session starts itself where PostgreSQL's binaries are installed
(`tests/pg_cluster.py`); elsewhere the PostgreSQL tests skip, saying why. The
end of the run says how many tests ran and, grouped by reason, why the others
skipped.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections import Counter
from typing import TYPE_CHECKING, TypeVar

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from sqlalchemy.ext.asyncio import create_async_engine

from flowservice.client import FlowClient
from flowservice_server.app import RunningServer, start_server
from flowservice_server.config import DatabaseSettings, Settings
from flowservice_server.db.factory import open_database
from tests.factories import Seeder
from tests.helpers import WriteBlocker, direct_engine, run_sync
from tests.pg_cluster import (
    PgBouncer,
    PostgresCluster,
    Upstream,
    missing_postgres_reason,
    pgbouncer_binary,
    scratch_directory,
)
from tests.postgres import admin

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator
    from pathlib import Path

POSTGRES_URL_VARIABLE = "FLOWSERVICE_TEST_POSTGRES_URL"
TABLES = ("task_run", "flow_run", "deployment", "work_queue", "work_pool", "flow")

hypothesis_settings.register_profile(
    "ci",
    deadline=None,
    max_examples=40,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

T = TypeVar("T")


async def migrate(url: str) -> None:
    database = await open_database(DatabaseSettings(url=url), migrate=True)
    await database.close()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "flowservice.db"
    run_sync(migrate(f"sqlite+aiosqlite:///{path}"))
    return path


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """The PostgreSQL server's URL: the variable's, else a throwaway cluster of this session."""
    url = os.environ.get(POSTGRES_URL_VARIABLE)
    if url:
        yield url
        return
    reason = missing_postgres_reason()
    if reason is not None:
        pytest.skip(
            f"PostgreSQL tests need PostgreSQL: {reason}; install them (Debian: postgresql) "
            f"or set {POSTGRES_URL_VARIABLE}, e.g. postgresql+asyncpg://postgres@127.0.0.1:5432/test"
        )
    with scratch_directory() as directory:
        cluster = PostgresCluster.create(directory, locale="C.UTF-8")
        cluster.start()
        try:
            yield cluster.url()
        finally:
            cluster.stop()


@pytest.fixture(scope="session")
def pgbouncer(postgres_server_url: str) -> Iterator[PgBouncer]:
    """A PgBouncer in transaction pooling mode in front of the PostgreSQL server, few connections.

    Three server connections for any number of clients: each of a server's
    transactions may run on a different one, and one server connection serves
    many clients' transactions in turn.
    """
    if pgbouncer_binary() is None:
        pytest.skip("PgBouncer tests need pgbouncer installed (Debian: pgbouncer)")
    url = sa.make_url(postgres_server_url)
    user = url.username or "postgres"
    upstream = Upstream(url.host or "127.0.0.1", url.port or 5432)
    with scratch_directory("flowservice-pgbouncer-") as directory:
        bouncer = PgBouncer(upstream, directory, pool_size=3, users={user: url.password or ""})
        bouncer.start()
        try:
            yield bouncer
        finally:
            bouncer.stop()


def through_pgbouncer(bouncer: PgBouncer, database_url: str) -> str:
    """`database_url`'s database, reached through `bouncer`."""
    url = sa.make_url(database_url)
    return url.set(host="127.0.0.1", port=bouncer.port).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def postgres_database(postgres_server_url: str) -> Iterator[str]:
    """A fresh, migrated database for this test session, dropped at the end."""
    name = f"flowservice_test_{uuid.uuid4().hex[:12]}"
    run_sync(admin(postgres_server_url, f'CREATE DATABASE "{name}"'))
    url = sa.make_url(postgres_server_url).set(database=name).render_as_string(False)
    try:
        run_sync(migrate(url))
        yield url
    finally:
        run_sync(admin(postgres_server_url, f'DROP DATABASE "{name}" WITH (FORCE)'))


@pytest.fixture
def scratch_postgres(postgres_server_url: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database of this test's own (for outages and races)."""
    name = f"flowservice_scratch_{uuid.uuid4().hex[:12]}"
    run_sync(admin(postgres_server_url, f'CREATE DATABASE "{name}"'))
    try:
        yield sa.make_url(postgres_server_url).set(database=name).render_as_string(False)
    finally:
        run_sync(admin(postgres_server_url, f'DROP DATABASE "{name}" WITH (FORCE)'))


async def _empty_tables(url: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.exec_driver_sql(f"TRUNCATE {', '.join(TABLES)} CASCADE")
    finally:
        await engine.dispose()


def _sqlite_copy(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    path = tmp_path / "flowservice.db"
    shutil.copy(request.getfixturevalue("sqlite_template"), path)
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty, migrated database of each backend."""
    if request.param == "sqlite":
        return _sqlite_copy(request, tmp_path)
    url: str = request.getfixturevalue("postgres_database")
    run_sync(_empty_tables(url))
    return url


@pytest.fixture
def any_backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty, migrated SQLite database: one backend, for what cannot differ by backend.

    Request validation, authentication, TLS, transport limits, reflection, health,
    access logs and spans are decided before any SQL runs (or without any), so a
    test of them alone would only repeat itself on PostgreSQL. A test whose outcome
    involves the database at all uses `database_url`, `server` or `client`, which
    run once per backend.
    """
    return _sqlite_copy(request, tmp_path)


@pytest.fixture
def backend(database_url: str) -> str:
    """ "sqlite" or "postgresql": for the few assertions that differ by design."""
    return sa.make_url(database_url).get_backend_name()


@contextlib.asynccontextmanager
async def serving(url: str) -> AsyncIterator[RunningServer]:
    """A real server on 127.0.0.1 (a free port) over the database at `url`."""
    settings = Settings(address="127.0.0.1:0", database=DatabaseSettings(url=url))
    running = await start_server(settings)
    try:
        yield running
    finally:
        await running.stop(grace=None)


@pytest.fixture
async def server(database_url: str) -> AsyncIterator[RunningServer]:
    async with serving(database_url) as running:
        yield running


@pytest.fixture
async def client(server: RunningServer) -> AsyncIterator[FlowClient]:
    async with FlowClient(f"127.0.0.1:{server.port}", timeout=30) as flow_client:
        yield flow_client


@pytest.fixture
async def any_backend_server(any_backend_url: str) -> AsyncIterator[RunningServer]:
    """`server`, run once, on SQLite: see `any_backend_url` for when that suffices."""
    async with serving(any_backend_url) as running:
        yield running


@pytest.fixture
async def any_backend_client(any_backend_server: RunningServer) -> AsyncIterator[FlowClient]:
    """`client`, run once, on SQLite: see `any_backend_url` for when that suffices."""
    async with FlowClient(f"127.0.0.1:{any_backend_server.port}", timeout=30) as flow_client:
        yield flow_client


@pytest.fixture
async def seed(database_url: str) -> AsyncIterator[Seeder]:
    """Writes rows directly, through its own engine on the server's database."""
    engine = direct_engine(database_url)
    yield Seeder(engine)
    await engine.dispose()


@pytest.fixture
async def blocker(database_url: str) -> AsyncIterator[WriteBlocker]:
    """Holds the database's write lock from outside the server, until released."""
    blocking = WriteBlocker(database_url)
    yield blocking
    await blocking.release()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """One line of what ran, then why the rest skipped, grouped by reason (most first)."""
    stats = terminalreporter.stats
    ran = sum(
        1
        for outcome in ("passed", "failed", "error", "xfailed", "xpassed")
        for report in stats.get(outcome, [])
        if getattr(report, "when", "call") == "call" or outcome == "error"
    )
    reasons: Counter[str] = Counter()
    for report in stats.get("skipped", []):
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        reasons[reason.removeprefix("Skipped: ")] += 1
    skipped = sum(reasons.values())
    total = ran + skipped
    if not total:
        return
    terminalreporter.write_sep("=", "what ran")
    share = f" ({100 * ran // total} %)" if skipped else ""
    terminalreporter.write_line(f"{ran} of {total} tests ran{share}; {skipped} skipped")
    for reason, count in reasons.most_common():
        terminalreporter.write_line(f"  {count:5d} skipped: {reason}")
