"""PostgreSQL short reads: autocommit on a pool of their own, the deadline held by cancelling.

Those marked with their statement run on asyncpg itself (`db.postgres_direct`):
the same answers, statuses and details as through SQLAlchemy, a connection
killed server-side retried on a fresh one, a stopped server UNAVAILABLE, a
blocked query cancelled at the deadline, and PgBouncer in between.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from functools import partial
from typing import TYPE_CHECKING, Any

import asyncpg
import grpc
import grpc.aio
import pytest
import sqlalchemy as sa
from google.protobuf import json_format

from flowservice.client import FlowClient, RpcError
from flowservice.v1 import flow_service_pb2 as pb
from flowservice_server.config import DatabaseSettings
from flowservice_server.db.engine import short_read
from flowservice_server.db.postgres_direct import pool_arguments
from flowservice_server.db.postgres_engine import PostgresDatabase
from flowservice_server.models import flows
from tests.conftest import through_pgbouncer
from tests.factories import Seeder
from tests.helpers import (
    NO_RETRIES,
    database_name,
    direct_engine,
    expect_error,
    run_sync,
    serving,
    unretried_client,
)
from tests.pg_cluster import PostgresCluster, missing_postgres_reason, scratch_directory
from tests.postgres import admin
from tests.test_inline_pages import PAGE_SHAPES

if TYPE_CHECKING:
    from google.protobuf.message import Message

    from flowservice_server.app import RunningServer
    from flowservice_server.db.postgres_direct import DirectReads
    from tests.pg_cluster import PgBouncer

pytestmark = pytest.mark.postgresql


@short_read("deliberately slow")
def _sleep_then_one(connection: sa.Connection) -> int:
    return int(connection.exec_driver_sql("SELECT 1 FROM pg_sleep(5)").scalar_one())


@short_read("statement timeout")
def _statement_timeout(connection: sa.Connection) -> str:
    """The session's statement timeout: a unit of work sets one for its transaction."""
    return str(connection.exec_driver_sql("SHOW statement_timeout").scalar_one())


@pytest.mark.parametrize("inline_reads", [True, False])
async def test_short_reads_answer_alike_on_either_path(
    postgres_database: str, inline_reads: bool
) -> None:
    async with serving(postgres_database, inline_reads=inline_reads) as running:
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
    async with serving(postgres_database, inline_reads=True) as running:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await running.database.read(_sleep_then_one, 0.2)
        assert time.monotonic() - started < 2
        assert await running.database.read(_statement_timeout, 30) == "0"  # the pool goes on


# --- on asyncpg directly ---------------------------------------------------------------


def _direct(running: RunningServer) -> DirectReads:
    assert isinstance(running.database, PostgresDatabase)
    direct = running.database.direct_reads
    assert direct is not None
    return direct


def _plain_dsn(url: str) -> str:
    """The URL as asyncpg itself takes it."""
    return sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


Answer = tuple[grpc.StatusCode, bytes | str | None, bytes | None]


async def _raw(port: int, method: str, request: Message) -> Answer:
    """The call's status with its response bytes, or its details and rich status bytes."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=NO_RETRIES) as channel:
        call: grpc.aio.UnaryUnaryMultiCallable[Message, bytes] = channel.unary_unary(
            f"/flowservice.v1.FlowService/{method}",
            request_serializer=lambda message: message.SerializeToString(),
        )
        try:
            response: bytes = await call(request, timeout=30)
        except grpc.aio.AioRpcError as error:
            trailers = dict(error.trailing_metadata() or ())
            details = trailers.get("grpc-status-details-bin")
            return error.code(), error.details(), details if isinstance(details, bytes) else None
        return grpc.StatusCode.OK, response, None


@pytest.mark.parametrize("memo", [10_000, 0])
async def test_every_short_read_answers_the_same_bytes_with_the_direct_path_off(
    scratch_postgres: str, memo: int
) -> None:
    """With the memo, and without it (the rows converted one by one)."""
    async with (
        serving(scratch_postgres, memo_size=memo) as direct,
        serving(scratch_postgres, memo_size=memo, direct_reads=False) as plain,
    ):
        assert isinstance(plain.database, PostgresDatabase)
        assert plain.database.direct_reads is None
        async with FlowClient(f"127.0.0.1:{plain.port}", timeout=30) as client:
            flow, _ = await client.create_flow("alike", tags=["a", "b"], labels={"k": "v", "n": 1})
            bare, _ = await client.create_flow("bare")
        requests: list[tuple[str, Message]] = [
            ("ReadFlow", pb.ReadFlowRequest(id=flow.id)),
            ("ReadFlow", pb.ReadFlowRequest(id=bare.id)),
            ("ReadFlow", pb.ReadFlowRequest(id=str(uuid.uuid4()))),
            ("ReadFlowByName", pb.ReadFlowByNameRequest(name="alike")),
            ("ReadFlowByName", pb.ReadFlowByNameRequest(name="bare")),
            ("ReadFlowByName", pb.ReadFlowByNameRequest(name="missing")),
            ("CountFlows", pb.CountFlowsRequest()),
            ("CreateFlow", pb.CreateFlowRequest(name="alike", tags=["other"])),
            ("CreateFlow", pb.CreateFlowRequest(name="bare")),
        ]
        outcomes = _direct(direct).outcomes
        before = outcomes["direct"]
        for method, request in requests:
            answer = await _raw(direct.port, method, request)
            assert answer == await _raw(plain.port, method, request), (method, request)
        assert outcomes["direct"] - before == len(requests)
        # A name PostgreSQL refuses to compare: the same status and database detail.
        refused = pb.ReadFlowByNameRequest(name="nul\x00name")
        answer = await _raw(direct.port, "ReadFlowByName", refused)
        assert answer[0] == grpc.StatusCode.INVALID_ARGUMENT
        assert "0x00" in str(answer[1])
        assert answer == await _raw(plain.port, "ReadFlowByName", refused)


def test_the_pool_connects_as_the_engine_does() -> None:
    """The URL's query (TLS options, say) reaches asyncpg; SQLAlchemy's own options do not."""
    url = (
        "postgresql+asyncpg://u:p@db.example:6432/flows?ssl=require&prepared_statement_cache_size=5"
    )
    settings = DatabaseSettings(url=url, pooler="pgbouncer", connect_timeout=3, pool_size=7)
    dialect = sa.create_engine(sa.make_url(url).set(drivername="postgresql+asyncpg")).dialect
    arguments = pool_arguments(settings, dialect)
    assert {key: arguments[key] for key in ("host", "port", "user", "password", "database")} == {
        "host": "db.example",
        "port": 6432,
        "user": "u",
        "password": "p",
        "database": "flows",
    }
    assert arguments["ssl"] == "require"
    assert arguments["timeout"] == 3
    assert arguments["statement_cache_size"] == 0  # behind a pooler
    assert arguments["max_size"] == 7
    assert "prepared_statement_cache_size" not in arguments


async def _terminate(server_url: str, database: str) -> int:
    """End every other session on `database`, waiting until each has gone."""
    (rows,) = await admin(
        server_url,
        "SELECT count(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity "
        f"WHERE datname = '{database}' AND pid <> pg_backend_pid()",
    )
    (count,) = rows[0]
    assert isinstance(count, int)
    return count


async def test_a_connection_killed_server_side_is_replaced_and_the_read_answered(
    scratch_postgres: str, postgres_server_url: str
) -> None:
    name = database_name(scratch_postgres)
    async with serving(scratch_postgres, pool_size=4) as running:
        direct = _direct(running)
        async with FlowClient(
            f"127.0.0.1:{running.port}", timeout=30, options=NO_RETRIES
        ) as client:
            flow, _ = await client.create_flow("survivor")
            await asyncio.gather(*(client.read_flow(flow.id) for _ in range(8)))
            # Killed while this loop is held, so the pool cannot have seen them go:
            # the read meets a dead connection, and answers from a fresh one.
            assert run_sync(_terminate(postgres_server_url, name)) >= 1
            work = partial(flows.read_flow, flow_id=uuid.UUID(flow.id))
            row = await running.database.read(work, 10)
            assert row is not None
            assert tuple(row)[3] == "survivor"
            assert direct.outcomes["retried"] == 1
            # Killed while the server is idle: every short read still answers.
            for _ in range(2):
                assert await _terminate(postgres_server_url, name) >= 1
                reads = [client.read_flow(flow.id) for _ in range(6)]
                reads += [client.read_flow_by_name("survivor") for _ in range(6)]
                assert {f.id for f in await asyncio.gather(*reads)} == {flow.id}
                assert await client.count_flows() == 1


async def test_a_stopped_postgresql_is_unavailable_then_serves_again() -> None:
    """Reads on either path, and writes on either (`--database-lean-writes`), alike."""
    reason = missing_postgres_reason()
    if reason is not None:
        pytest.skip(f"a PostgreSQL of the test's own needs the server binaries: {reason}")
    with scratch_directory() as directory:
        cluster = PostgresCluster.create(directory / "cluster")
        cluster.start()
        try:
            await admin(cluster.url(), 'CREATE DATABASE "flowservice"')
            url = cluster.url("flowservice")
            async with (
                serving(url, pool_size=2, pool_timeout=2, lean_writes=True) as direct,
                serving(url, pool_size=2, pool_timeout=2, direct_reads=False) as plain,
            ):
                async with FlowClient(f"127.0.0.1:{direct.port}", timeout=10) as client:
                    flow, _ = await client.create_flow("outage")
                cluster.stop()
                failures = []
                for running in (direct, plain):
                    target = f"127.0.0.1:{running.port}"
                    async with FlowClient(target, timeout=10, options=NO_RETRIES) as client:
                        for call in (
                            client.read_flow(flow.id),
                            client.read_flow_by_name("outage"),
                            client.count_flows(),
                            client.create_flow("outage"),
                            client.update_flow(flow.id, tags=["x"]),
                            client.delete_flow(flow.id),
                        ):
                            error = await expect_error(call, grpc.StatusCode.UNAVAILABLE)
                            assert error.retry_info is not None
                            assert error.error_info is not None
                            failures.append((error.message, error.error_info.reason))
                assert failures[:6] == failures[6:]
                cluster.start()
                async with FlowClient(f"127.0.0.1:{direct.port}", timeout=10) as client:
                    assert (await client.read_flow(flow.id)).name == "outage"
                    assert (await client.read_flow_by_name("outage")).id == flow.id
                    assert await client.count_flows() == 1
                    assert list((await client.update_flow(flow.id, tags=["y"])).tags) == ["y"]
        finally:
            cluster.stop("immediate")


async def _blocked_reads(url: str, database: str) -> int:
    """Sessions on `database` waiting for a lock on a flow query."""
    (rows,) = await admin(
        url,
        "SELECT count(*) FROM pg_stat_activity WHERE datname = "
        f"'{database}' AND wait_event_type = 'Lock' AND query LIKE '%FROM flow%'",
    )
    (count,) = rows[0]
    assert isinstance(count, int)
    return count


async def _until(check: Any, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await check():
            return True
        await asyncio.sleep(0.02)
    return False


async def test_a_blocked_direct_read_ends_at_its_deadline_and_its_query_is_cancelled(
    scratch_postgres: str, postgres_server_url: str
) -> None:
    name = database_name(scratch_postgres)
    async with serving(scratch_postgres) as running:
        outcomes = _direct(running).outcomes
        async with FlowClient(
            f"127.0.0.1:{running.port}", timeout=30, options=NO_RETRIES
        ) as client:
            flow, _ = await client.create_flow("locked")
            locker = await asyncpg.connect(_plain_dsn(scratch_postgres))
            try:
                async with locker.transaction():
                    await locker.execute("LOCK TABLE flow IN ACCESS EXCLUSIVE MODE")
                    started = time.monotonic()
                    blocked = asyncio.ensure_future(client.read_flow(flow.id, timeout=1.0))

                    async def waiting() -> bool:
                        return await _blocked_reads(postgres_server_url, name) == 1

                    assert await _until(waiting, 1.0), "the read should wait for the lock"
                    with pytest.raises(RpcError) as late:  # the client's deadline, or ours
                        await blocked
                    assert late.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
                    assert time.monotonic() - started < 2.0

                    async def cancelled() -> bool:
                        return await _blocked_reads(postgres_server_url, name) == 0

                    assert await _until(cancelled, 2.0), "the server should cancel the query"
                    # The same, without gRPC: the deadline ends the read.
                    work = partial(flows.read_flow, flow_id=uuid.UUID(flow.id))
                    started = time.monotonic()
                    with pytest.raises(TimeoutError):
                        await running.database.read(work, 0.3)
                    assert time.monotonic() - started < 1.5
            finally:
                await locker.close()
            before = outcomes["direct"]
            assert (await client.read_flow(flow.id)).name == "locked"  # the pool goes on
            assert outcomes["direct"] == before + 1
            assert await _blocked_reads(postgres_server_url, name) == 0


@pytest.mark.parametrize("direct_reads", [True, False])
async def test_no_free_connection_within_the_pool_timeout_is_unavailable(
    scratch_postgres: str, postgres_server_url: str, direct_reads: bool
) -> None:
    """One connection, held by a read blocked behind a lock: the next read gives up
    after the pool timeout as the SQLAlchemy pool does, UNAVAILABLE, on either path."""
    name = database_name(scratch_postgres)
    settings: dict[str, Any] = {"pool_size": 1, "pool_timeout": 0.3, "direct_reads": direct_reads}
    async with (
        serving(scratch_postgres, **settings) as running,
        unretried_client(running) as client,
    ):
        flow, _ = await client.create_flow("crowded")
        locker = await asyncpg.connect(_plain_dsn(scratch_postgres))
        try:
            async with locker.transaction():
                await locker.execute("LOCK TABLE flow IN ACCESS EXCLUSIVE MODE")
                holding = asyncio.ensure_future(client.read_flow(flow.id, timeout=5))

                async def waiting() -> bool:
                    return await _blocked_reads(postgres_server_url, name) == 1

                assert await _until(waiting, 2.0)
                started = time.monotonic()
                error = await expect_error(
                    client.read_flow_by_name("crowded"), grpc.StatusCode.UNAVAILABLE
                )
                assert error.retry_info is not None
                assert time.monotonic() - started < 2.0
        finally:
            await locker.close()
        assert (await holding).name == "crowded"


async def test_direct_reads_run_behind_pgbouncer(
    scratch_postgres: str, pgbouncer: PgBouncer
) -> None:
    url = through_pgbouncer(pgbouncer, scratch_postgres)
    async with serving(url, pooler="pgbouncer", pool_size=6) as running:
        direct = _direct(running)
        async with FlowClient(
            f"127.0.0.1:{running.port}", timeout=30, options=NO_RETRIES
        ) as client:
            created = [(await client.create_flow(f"bounced-{n}"))[0] for n in range(6)]

            async def worker(number: int) -> None:
                for round_ in range(10):
                    flow = created[(number + round_) % len(created)]
                    assert (await client.read_flow(flow.id)).name == flow.name
                    assert (await client.read_flow_by_name(flow.name)).id == flow.id
                    assert await client.count_flows() == len(created)
                    assert (await client.create_flow(flow.name))[1] is False

            before = direct.outcomes["direct"]
            await asyncio.gather(*(worker(number) for number in range(8)))
            assert direct.outcomes["direct"] - before == 8 * 10 * 4


# --- ReadFlows pages on asyncpg directly -------------------------------------------------


async def test_every_page_shape_answers_the_same_bytes_with_direct_pages_off(
    scratch_postgres: str,
) -> None:
    """A page without its total runs on asyncpg; with it, in SQLAlchemy's snapshot."""
    async with (
        serving(scratch_postgres) as direct,
        serving(scratch_postgres, inline_pages=False) as plain,
    ):
        async with FlowClient(f"127.0.0.1:{plain.port}", timeout=30) as client:
            created = await client.batch_create_flows(
                (
                    f"flow-{n * 7919 % 1000:03d}-{n}",
                    sorted({("etl", "ml", "nightly")[n % 3], ("a", "b")[n % 2]}),
                    {"team": f"t{n % 4}"} if n % 5 else None,
                )
                for n in range(230)
            )
        flow_ids = [flow.id for flow, _ in created]
        engine = direct_engine(scratch_postgres)
        seed = Seeder(engine)
        try:
            states = ("COMPLETED", "FAILED", "RUNNING", "SCHEDULED")
            for n, flow_id in enumerate(flow_ids[:40]):
                await seed.flow_run(uuid.UUID(flow_id), f"run-{n}", state_type=states[n % 4])
        finally:
            await engine.dispose()
        shapes = [*PAGE_SHAPES, {"flows": {"id": {"any": flow_ids[3:40]}}}]
        outcomes = _direct(direct).outcomes
        for shape in shapes:
            request = json_format.ParseDict(shape, pb.ReadFlowsRequest())
            before = outcomes["plan"]
            for _ in range(2):  # compiled, then from the cache
                answer = await _raw(direct.port, "ReadFlows", request)
                assert answer[0] == grpc.StatusCode.OK, (shape, answer)
                assert answer == await _raw(plain.port, "ReadFlows", request), shape
            # A page with its total reads two statements in one snapshot: SQLAlchemy's path.
            direct_pages = 0 if shape.get("include_total_size") else 2
            assert outcomes["plan"] - before == direct_pages, (shape, outcomes)
        # Page tokens walk every flow alike.
        request = pb.ReadFlowsRequest(limit=60, sort=pb.FLOW_SORT_UPDATED_DESC)
        seen: list[str] = []
        while True:
            answer = await _raw(direct.port, "ReadFlows", request)
            assert answer == await _raw(plain.port, "ReadFlows", request)
            assert isinstance(answer[1], bytes)
            page = pb.ReadFlowsResponse.FromString(answer[1])
            seen += [flow.id for flow in page.flows]
            if not page.next_page_token:
                break
            request.page_token = page.next_page_token
        assert sorted(seen) == sorted(flow_ids)
