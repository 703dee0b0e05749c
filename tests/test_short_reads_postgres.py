"""PostgreSQL short reads: autocommit on a pool of their own, the deadline held by cancelling."""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING

import pytest

from flowservice.client import FlowClient
from flowservice_server.app import start_server
from flowservice_server.config import DatabaseSettings, Settings
from flowservice_server.db.engine import short_read
from flowservice_server.db.postgres_engine import PostgresDatabase

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    import sqlalchemy as sa

    from flowservice_server.app import RunningServer

pytestmark = pytest.mark.postgresql


@short_read("deliberately slow")
def _sleep_then_one(connection: sa.Connection) -> int:
    return int(connection.exec_driver_sql("SELECT 1 FROM pg_sleep(5)").scalar_one())


@short_read("statement timeout")
def _statement_timeout(connection: sa.Connection) -> str:
    """The session's statement timeout: a unit of work sets one for its transaction."""
    return str(connection.exec_driver_sql("SHOW statement_timeout").scalar_one())


@contextlib.asynccontextmanager
async def _serving(url: str, *, inline_reads: bool) -> AsyncIterator[RunningServer]:
    database = DatabaseSettings(url=url, inline_reads=inline_reads)
    running = await start_server(Settings(address="127.0.0.1:0", database=database))
    try:
        yield running
    finally:
        await running.stop(grace=None)


@pytest.mark.parametrize("inline_reads", [True, False])
async def test_short_reads_answer_alike_on_either_path(
    postgres_database: str, inline_reads: bool
) -> None:
    async with _serving(postgres_database, inline_reads=inline_reads) as running:
        assert isinstance(running.database, PostgresDatabase)
        async with FlowClient(f"127.0.0.1:{running.port}", timeout=30) as client:
            before = await client.count_flows()  # the session's database is shared
            name = f"short-{inline_reads}"
            flow, _ = await client.create_flow(name, tags=["a"], labels={"k": "v"})
            assert await client.read_flow(flow.id) == flow
            assert await client.read_flow_by_name(name) == flow
            assert await client.count_flows() == before + 1
        # The short path is the statement alone; a unit of work sets the
        # deadline as its transaction's statement timeout first.
        timeout = await running.database.read(_statement_timeout, 30)
        assert (timeout == "0") is inline_reads, timeout


async def test_the_deadline_cancels_a_short_read(postgres_database: str) -> None:
    async with _serving(postgres_database, inline_reads=True) as running:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await running.database.read(_sleep_then_one, 0.2)
        assert time.monotonic() - started < 2
        assert await running.database.read(_statement_timeout, 30) == "0"  # the pool goes on
