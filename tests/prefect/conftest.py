"""Fixtures of the differential suite: a real Prefect 3.9.1 server and FlowService, one database.

Opt-in: every test in this directory is marked `prefect` and skips unless
FLOWSERVICE_TEST_PREFECT=1, because it starts Prefect's server (from its own
virtualenv, installed on first use). Per backend (sqlite, postgresql) one
Prefect server is started on a fresh database, which its own migrations
create; the data set is written through its REST API once; then FlowService
serves that same database in `prefect` mode, with the indexes `flowservice
indexes add` gives it. The PostgreSQL backend uses the tests' PostgreSQL
server (`postgres_server_url`: FLOWSERVICE_TEST_POSTGRES_URL's, or a throwaway
cluster), and skips, saying why, where there is none.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest
import sqlalchemy as sa

from flowservice.client import FlowClient
from flowservice.prefect_compat import count_body, translate_filters, translate_read
from flowservice_server.app import start_server
from flowservice_server.config import DatabaseSettings, Settings
from tests.helpers import run_sync
from tests.postgres import admin
from tests.prefect.compare import FlowView, describe_difference, from_flowservice, from_prefect
from tests.prefect.prefect_process import (
    PREFECT_VERSION,
    PrefectServer,
    Response,
    ensure_prefect_venv,
)
from tests.prefect.seed import Seed, seed
from tests.processes import run

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

PREFECT_VARIABLE = "FLOWSERVICE_TEST_PREFECT"
HERE = Path(__file__).parent
T = TypeVar("T")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark this directory's tests `prefect`; skip them unless they were asked for."""
    enabled = os.environ.get(PREFECT_VARIABLE) == "1"
    skip = pytest.mark.skip(
        reason=f"differential tests against a real Prefect {PREFECT_VERSION} server are "
        f"opt-in: set {PREFECT_VARIABLE}=1 (they install Prefect into its own cached venv "
        "on first use and start its server)"
    )
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.prefect)
            if not enabled:
                item.add_marker(skip)


@pytest.fixture(
    scope="session",
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)],
)
def prefect_backend(request: pytest.FixtureRequest) -> str:
    backend: str = request.param
    return backend


@pytest.fixture(scope="session")
def prefect_executable() -> Path:
    """Prefect's CLI from its own venv (created and installed here when missing or wrong)."""
    return ensure_prefect_venv()


@pytest.fixture(scope="session")
def prefect_database(
    prefect_backend: str, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[str]:
    """A fresh, empty database for Prefect to create its schema in; dropped afterwards."""
    if prefect_backend == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('prefect-sqlite') / 'prefect.db'}"
        return
    server_url: str = request.getfixturevalue("postgres_server_url")  # skips where there is none
    name = f"prefect_diff_{uuid.uuid4().hex[:12]}"
    # C.UTF-8: byte-order names, as on SQLite, so one expected order serves both.
    run_sync(
        admin(
            server_url,
            f"CREATE DATABASE \"{name}\" TEMPLATE template0 ENCODING 'UTF8' "
            "LC_COLLATE 'C.UTF-8' LC_CTYPE 'C.UTF-8'",
        )
    )
    try:
        yield sa.make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        run_sync(admin(server_url, f'DROP DATABASE "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def prefect_server(
    prefect_executable: Path, prefect_database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PrefectServer]:
    server = PrefectServer.start(
        prefect_executable, tmp_path_factory.mktemp("prefect-home"), prefect_database
    )
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def prefect_seed(prefect_server: PrefectServer) -> Seed:
    return seed(prefect_server.api)


@pytest.fixture(scope="session")
async def flowservice_indexes(
    prefect_database: str, prefect_seed: Seed, tmp_path_factory: pytest.TempPathFactory
) -> str:
    """`flowservice indexes add` on the seeded database, as its README recommends.

    Every differential query then runs with FlowService's indexes present,
    and Prefect keeps serving (and writing) the same database beside them.
    """
    code, output = await run(
        ["indexes", "add", "--database-url", prefect_database],
        tmp_path_factory.mktemp("indexes"),
        {},
    )
    assert code == 0, output
    assert "added" in output, output
    return output


@pytest.fixture(scope="session")
async def flowservice(prefect_database: str, flowservice_indexes: str) -> AsyncIterator[FlowClient]:
    """FlowService serving the database Prefect created (and seeded), in `prefect` mode."""
    settings = Settings(
        address="127.0.0.1:0", database=DatabaseSettings(mode="prefect", url=prefect_database)
    )
    running = await start_server(settings)
    try:
        async with FlowClient(f"127.0.0.1:{running.port}", timeout=30) as client:
            yield client
    finally:
        await running.stop(grace=None)


@dataclass
class Differential:
    """Both servers on one database, with the seed both of them see."""

    backend: str
    prefect_server: PrefectServer
    seed: Seed
    client: FlowClient

    async def prefect(self, method: str, path: str, body: Any = None, **kwargs: Any) -> Response:
        """A Prefect REST call, off the event loop (FlowService's server runs on it)."""
        return await asyncio.to_thread(self.prefect_server.api.call, method, path, body, **kwargs)

    async def prefect_ok(self, method: str, path: str, body: Any = None, **kwargs: Any) -> Any:
        return await asyncio.to_thread(self.prefect_server.api.ok, method, path, body, **kwargs)

    async def answers(self, body: dict[str, Any]) -> Answers:
        """One `/flows/filter` body asked of both: Prefect's REST API and FlowService."""
        prefect_reply = await self.prefect_ok("POST", "/flows/filter", body)
        prefect_count = await self.prefect_ok("POST", "/flows/count", count_body(body))
        arguments = translate_read(body)
        read = await self.client.read_flows(**arguments)
        count = await self.client.count_flows(**translate_filters(body))
        return Answers(
            prefect=[from_prefect(flow) for flow in prefect_reply],
            flowservice=[from_flowservice(flow) for flow in read],
            prefect_count=prefect_count,
            flowservice_count=count,
            context=f"on {self.backend}\n"
            f"  prefect body:     {json.dumps(body, ensure_ascii=False)}\n"
            f"  flowservice args: {arguments}\n",
        )


@dataclass
class Answers:
    prefect: list[FlowView]
    flowservice: list[FlowView]
    prefect_count: int
    flowservice_count: int
    context: str

    def assert_same(self) -> None:
        """The flows agree exactly and in order, and so do the counts."""
        assert self.flowservice == self.prefect, (
            "ReadFlows differs from Prefect "
            + self.context
            + describe_difference(self.prefect, self.flowservice)
        )
        assert self.flowservice_count == self.prefect_count, (
            f"CountFlows {self.flowservice_count} != Prefect's /flows/count "
            f"{self.prefect_count} " + self.context
        )


@pytest.fixture
def both(
    prefect_backend: str, prefect_server: PrefectServer, prefect_seed: Seed, flowservice: FlowClient
) -> Differential:
    return Differential(prefect_backend, prefect_server, prefect_seed, flowservice)
