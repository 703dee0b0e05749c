"""Small assertions and helpers shared by the test modules."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from flowservice.client import FlowClient, RpcError
from flowservice_server.app import start_server
from flowservice_server.config import DatabaseSettings, Settings
from flowservice_server.db.sqlite_engine import prepare_sqlite
from tests.postgres import admin

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Coroutine

    import grpc

    from flowservice.v1 import flow_pb2
    from flowservice_server.app import RunningServer

T = TypeVar("T")


async def expect_error(call: Awaitable[Any], code: grpc.StatusCode, *fields: str) -> RpcError:
    """The call fails with `code`; for INVALID_ARGUMENT, the violations name exactly `fields`."""
    with pytest.raises(RpcError) as raised:
        await call
    error = raised.value
    assert error.code == code, str(error)
    assert error.error_info is not None
    assert error.error_info.domain == "flowservice.v1"
    if fields:
        assert [v.field for v in error.field_violations] == list(fields), str(error)
        assert all(v.description for v in error.field_violations)
    return error


def run_sync(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from synchronous fixture code (own loop, own thread)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def when(timestamp: Any) -> datetime:
    """A Timestamp field as an aware UTC datetime."""
    moment: datetime = timestamp.ToDatetime(tzinfo=UTC)
    return moment


def names(flows: list[flow_pb2.Flow]) -> list[str]:
    return [flow.name for flow in flows]


def direct_engine(url: str) -> AsyncEngine:
    """The tests' own engine on the server's database, with the server's SQLite pragmas."""
    engine = create_async_engine(url)
    if engine.dialect.name == "sqlite":
        sa.event.listen(engine.sync_engine, "connect", prepare_sqlite(busy_timeout=10))
    return engine


class WriteBlocker:
    """Holds the database's write lock (SQLite) or a lock on the flow table (PostgreSQL)
    from outside the server, so that a write through the server waits."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.backend = sa.make_url(url).get_backend_name()
        self._sqlite: sqlite3.Connection | None = None
        self._postgres: AsyncConnection | None = None
        self._engine: AsyncEngine | None = None

    async def hold(self) -> None:
        if self.backend == "sqlite":
            path = self.url.removeprefix("sqlite+aiosqlite:///")
            self._sqlite = sqlite3.connect(path, isolation_level=None)
            self._sqlite.execute("BEGIN IMMEDIATE")
        else:
            self._engine = create_async_engine(self.url)
            self._postgres = await self._engine.connect()
            await self._postgres.begin()
            await self._postgres.exec_driver_sql("LOCK TABLE flow IN EXCLUSIVE MODE")

    async def release(self) -> None:
        if self._sqlite is not None:
            self._sqlite.rollback()
            self._sqlite.close()
            self._sqlite = None
        if self._postgres is not None:
            await self._postgres.rollback()
            await self._postgres.close()
            self._postgres = None
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None

    async def waiting_inserts(self) -> int:
        """PostgreSQL: statements of the server still waiting to insert into flow."""
        database = sa.make_url(self.url).database
        (rows,) = await admin(
            self.url,
            "SELECT count(*) FROM pg_stat_activity WHERE datname = "
            f"'{database}' AND state = 'active' AND query LIKE 'INSERT INTO flow%'",
        )
        (count,) = rows[0]
        assert isinstance(count, int)
        return count


@contextlib.asynccontextmanager
async def serving(
    url: str, *, memo_size: int | None = None, **database: Any
) -> AsyncIterator[RunningServer]:
    """A server on `url`, run in this test's own event loop (so that a `Heartbeat` sees
    how long its work holds the loop), with `database` settings; stopped at the end."""
    settings = Settings(address="127.0.0.1:0", database=DatabaseSettings(url=url, **database))
    if memo_size is not None:
        settings = dataclasses.replace(settings, response_memo_size=memo_size)
    running = await start_server(settings)
    try:
        yield running
    finally:
        await running.stop(grace=None)


class Heartbeat:
    """Ticks every millisecond on the loop; `longest` is the longest the loop was held."""

    def __init__(self) -> None:
        self.longest = 0.0
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Heartbeat:
        self._task = asyncio.create_task(self._beat())
        await asyncio.sleep(0.01)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _beat(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.001)
            now = time.monotonic()
            self.longest = max(self.longest, now - last)
            last = now


#: Channel options for a client that must see every failure (no transparent retries).
NO_RETRIES = [("grpc.enable_retries", 0)]


def unretried_client(running: RunningServer) -> FlowClient:
    """A client of `running` that retries nothing, so that every failed call shows."""
    return FlowClient(f"127.0.0.1:{running.port}", timeout=30, options=NO_RETRIES)


def database_name(url: str) -> str:
    name = sa.make_url(url).database
    assert name is not None
    return name
