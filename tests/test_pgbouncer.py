"""FlowService behind a real PgBouncer in transaction pooling mode.

PgBouncer (`tests/pg_cluster.py`, fixture `pgbouncer`) keeps three server
connections for any number of clients and hands a server connection to
another client after every transaction. A server started with
`--database-pooler pgbouncer` migrates an empty database through it and
answers every RPC under concurrent load without an error; the same server
without the setting fails, because asyncpg's named prepared statements land
on server connections that other clients share.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import TYPE_CHECKING, Any

import grpc
import pytest
import sqlalchemy as sa

from flowservice.client import FlowClient, RpcError
from flowservice_server.app import RunningServer, start_server
from flowservice_server.config import DatabaseSettings, Settings, WatchSettings
from tests.conftest import through_pgbouncer
from tests.postgres import admin

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from flowservice.v1 import flow_service_pb2
    from tests.pg_cluster import PgBouncer

pytestmark = pytest.mark.postgresql

WORKERS = 12
ROUNDS = 6


def _settings(url: str, pooler: str) -> Settings:
    return Settings(
        address="127.0.0.1:0",
        access_log=False,
        database=DatabaseSettings(url=url, pooler=pooler, pool_size=8, max_overflow=4),
        watch=WatchSettings(poll_interval=0.05),
    )


@contextlib.asynccontextmanager
async def _serving(url: str, pooler: str) -> AsyncIterator[RunningServer]:
    running = await start_server(_settings(url, pooler))
    try:
        yield running
    finally:
        await running.stop(grace=None)


@pytest.fixture
def bounced_url(scratch_postgres: str, pgbouncer: PgBouncer) -> str:
    """A fresh, empty database of this test's own, reached through PgBouncer."""
    return through_pgbouncer(pgbouncer, scratch_postgres)


async def _exercise(client: FlowClient, worker: int, errors: list[BaseException]) -> set[str]:
    """Every unary and streaming RPC, `ROUNDS` times; the ids this worker deleted."""
    deleted: set[str] = set()
    for round_ in range(ROUNDS):
        name = f"pool-{worker}-{round_}"
        try:
            flow, created = await client.create_flow(name, tags=["a"], labels={"w": worker})
            assert created
            assert (await client.create_flow(name))[1] is False  # get-or-create
            assert (await client.read_flow(flow.id)).name == name
            assert (await client.read_flow_by_name(name)).id == flow.id
            updated = await client.update_flow(flow.id, tags=["a", "b"], etag=flow.etag)
            assert list(updated.tags) == ["a", "b"]
            stale = client.update_flow(flow.id, tags=["c"], etag=flow.etag)
            with pytest.raises(RpcError) as raised:
                await stale
            assert raised.value.code == grpc.StatusCode.ABORTED
            page = await client.read_flows_page(
                flows={"name": {"like": f"pool-{worker}-"}}, limit=1, include_total_size=True
            )
            assert page.total_size is not None
            assert page.total_size >= 1
            if page.next_page_token:
                await client.read_flows_page(
                    flows={"name": {"like": f"pool-{worker}-"}},
                    limit=1,
                    page_token=page.next_page_token,
                )
            assert await client.count_flows(flows={"tags": {"all": ["b"]}}) >= 1
            streamed = [
                f.name
                async for f in client.stream_flows(
                    flows={"name": {"like": f"pool-{worker}-"}}, batch_size=1
                )
            ]
            assert name in streamed
            batch = await client.batch_create_flows([(f"{name}-x",), (f"{name}-y", ["z"])])
            assert [created for _, created in batch] == [True, True]
            got = await client.batch_get_flows(ids=[flow.id], names=[f"{name}-x", f"{name}-y"])
            assert [f.name for f in got] == [name, f"{name}-x", f"{name}-y"]
            await client.delete_flow(flow.id, etag=updated.etag)
            deleted.add(flow.id)
        except BaseException as error:  # noqa: BLE001  # counted and shown below
            errors.append(error)
    return deleted


async def _watch(client: FlowClient, seen: list[flow_service_pb2.WatchFlowsResponse]) -> None:
    async for response in client.watch_flows(send_initial_state=True):
        seen.append(response)


async def _load(client: FlowClient) -> tuple[list[BaseException], set[str]]:
    errors: list[BaseException] = []
    results = await asyncio.gather(*(_exercise(client, w, errors) for w in range(WORKERS)))
    return errors, set().union(*results)


async def _backends(server_url: str, database: str) -> int:
    rows = await admin(
        server_url, f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{database}'"
    )
    return int(str(rows[0][0][0]))


async def test_every_rpc_through_pgbouncer_in_transaction_mode_under_concurrency(
    bounced_url: str, scratch_postgres: str, postgres_server_url: str
) -> None:
    # The server migrates the empty database through PgBouncer, then serves.
    async with (
        _serving(bounced_url, "pgbouncer") as running,
        FlowClient(f"127.0.0.1:{running.port}", timeout=60) as client,
    ):
        seen: list[flow_service_pb2.WatchFlowsResponse] = []
        watcher = asyncio.create_task(_watch(client, seen))
        await asyncio.sleep(0.5)  # the watch is open before the first write
        errors, deleted = await _load(client)
        assert not errors, f"{len(errors)} failed calls, e.g. {errors[:3]!r}"
        assert len(deleted) == WORKERS * ROUNDS

        # Many client connections shared few server connections.
        pool = running.database.pool
        assert pool.checkedin() + pool.checkedout() > 3  # type: ignore[attr-defined]
        database = sa.make_url(scratch_postgres).database
        assert database is not None
        assert await _backends(postgres_server_url, database) <= 3

        # WatchFlows saw every delete (it polls: LISTEN needs a session).
        for _ in range(100):
            gone = {r.deleted.id for r in seen if r.WhichOneof("event") == "deleted"}
            if deleted <= gone:
                break
            await asyncio.sleep(0.1)
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        assert deleted <= gone
        kinds = {r.WhichOneof("event") for r in seen}
        assert {"initial_state_done", "created", "updated", "deleted"} <= kinds


async def test_without_the_pooler_setting_asyncpgs_prepared_statements_break(
    bounced_url: str, scratch_postgres: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The naive configuration: named prepared statements on shared server connections."""
    async with _serving(scratch_postgres, "none"):  # migrated directly: the start is not the test
        pass
    async with (
        _serving(bounced_url, "none") as running,
        FlowClient(f"127.0.0.1:{running.port}", timeout=60) as client,
    ):
        errors, _ = await _load(client)
    failed: list[Any] = [e for e in errors if isinstance(e, RpcError)]
    assert failed, "named prepared statements through a transaction pooler should have failed"
    assert 'prepared statement "__asyncpg_stmt_' in caplog.text


async def test_a_second_server_finds_the_schema_current_through_pgbouncer(
    bounced_url: str,
) -> None:
    """Migrations take a transaction-scoped lock: two starting at once through PgBouncer."""
    async with contextlib.AsyncExitStack() as stack:
        servers = await asyncio.gather(
            *(stack.enter_async_context(_serving(bounced_url, "pgbouncer")) for _ in range(2))
        )
        for running in servers:
            async with FlowClient(f"127.0.0.1:{running.port}", timeout=30) as client:
                await client.create_flow(f"both-{uuid.uuid4().hex[:6]}")
