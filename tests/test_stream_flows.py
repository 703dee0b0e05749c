"""StreamFlows through the real server on both databases: ReadFlows' order without its page
cap, batches, limit, validation, one snapshot, flow control, cancellation and deadlines.

Flow control is observed through `Database.rows_streamed` (the rows every stream has
fetched from the database) on the running server object; the clients that test it turn
off gRPC's bandwidth-delay probing, so that the transport's window stays at its small
initial size and does not itself hold most of the result set.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio
import pytest
import sqlalchemy as sa
from sqlalchemy.pool import QueuePool

from flowservice.client import FlowClient, FlowClientSync, RpcError
from flowservice.v1 import flow_service_pb2 as s
from flowservice.v1 import flow_service_pb2_grpc
from flowservice_server.db.tables import flow
from flowservice_server.limits import MAX_ITEMS
from tests.helpers import expect_error, names
from tests.processes import start

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from flowservice.v1 import flow_pb2
    from flowservice_server.app import RunningServer
    from tests.factories import Seeder

SORTS = [
    s.FLOW_SORT_UNSPECIFIED,
    s.FLOW_SORT_NAME_ASC,
    s.FLOW_SORT_NAME_DESC,
    s.FLOW_SORT_CREATED_DESC,
    s.FLOW_SORT_UPDATED_DESC,
]
#: A client whose transport window stays small, so that unread responses cannot
#: fill it with most of a test's flows (see the module docstring).
SMALL_WINDOW = [("grpc.http2.bdp_probe", 0)]


async def many_flows(seed: Seeder, count: int, *, tags: list[Any] | None = None) -> list[str]:
    """`count` flows inserted at once: names in shuffled order and mixed case, created three
    at a time in the same microsecond, updated in another order with ties too. Their names."""
    shuffled = random.Random(count).sample(range(count), count)
    base = datetime(2026, 1, 1, tzinfo=UTC)
    rows: list[dict[str, Any]] = [
        {
            "id": uuid.uuid4(),
            "name": f"{'Ff'[i % 2]}low-{i:06}",
            "tags": tags if tags is not None else [f"t{i % 3}"],
            "created": base + timedelta(seconds=position // 3),
            "updated": base + timedelta(seconds=(position * 7919) % count // 2),
        }
        for position, i in enumerate(shuffled)
    ]
    async with seed.engine.begin() as connection:
        await connection.execute(flow.insert(), rows)
    return [row["name"] for row in rows]


def stub(server: RunningServer, options: list[tuple[str, Any]] | None = None) -> Any:
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}", options=options)
    return channel, flow_service_pb2_grpc.FlowServiceStub(channel)


async def responses(server: RunningServer, **request: Any) -> list[s.StreamFlowsResponse]:
    channel, service = stub(server)
    async with channel:
        return [response async for response in service.StreamFlows(s.StreamFlowsRequest(**request))]


async def drain(flows: AsyncIterator[flow_pb2.Flow]) -> list[flow_pb2.Flow]:
    return [found async for found in flows]


async def all_pages(client: FlowClient, sort: s.FlowSort.ValueType) -> list[flow_pb2.Flow]:
    """Every flow through ReadFlows, 200 at a time."""
    found: list[flow_pb2.Flow] = []
    while page := await client.read_flows(sort=sort, offset=len(found)):
        found += page
    return found


def checked_out(server: RunningServer) -> int:
    """The server's database connections in use now."""
    pool = server.database.pool
    assert isinstance(pool, QueuePool)
    return pool.checkedout()


async def eventually(condition: Callable[[], Awaitable[bool]], within: float = 10) -> None:
    give_up = time.monotonic() + within
    while not await condition():
        assert time.monotonic() < give_up, "the condition never held"
        await asyncio.sleep(0.02)


async def settled(server: RunningServer) -> int:
    """rows_streamed once it has stopped moving: as far as the server reads ahead."""
    before = -1
    while (now := server.database.rows_streamed) != before:
        before = now
        await asyncio.sleep(0.3)
    return now


async def database_is_idle(server: RunningServer, seed: Seeder, backend: str) -> bool:
    """No stream holds a connection, a transaction or a running query any more."""
    if checked_out(server) != 0:
        return False
    async with seed.engine.connect() as connection:
        if backend == "sqlite":
            # A checkpoint that truncates the WAL must wait for every reader of it:
            # busy (1) while any read transaction, a stream's included, is open.
            await connection.exec_driver_sql("PRAGMA busy_timeout = 0")
            result = await connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            return bool(result.one()[0] == 0)
        result = await connection.exec_driver_sql(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid() AND state IN ('active', 'idle in transaction')"
        )
        return bool(result.scalar_one() == 0)


# --- results -----------------------------------------------------------------------


@pytest.mark.parametrize("sort", SORTS, ids=s.FlowSort.Name)
async def test_streams_every_flow_in_read_flows_order(
    client: FlowClient, seed: Seeder, sort: s.FlowSort.ValueType
) -> None:
    await many_flows(seed, 450)
    expected = await all_pages(client, sort)
    assert len(expected) == 450
    streamed = await drain(client.stream_flows(sort=sort, batch_size=64))
    assert streamed == expected  # whole messages: ids, names, tags, times


async def test_filters_mean_what_they_mean_in_read_flows(client: FlowClient, seed: Seeder) -> None:
    await many_flows(seed, 300)
    filters: dict[str, Any]
    for filters in (
        {"flows": {"tags": {"all": ["t1"]}}},
        {"flows": {"name": {"like": "low-0001"}}},
        {"flows": {"id": {"any": []}}},
        {"flow_runs": {}},
    ):
        expected = await client.read_flows(**filters, sort=s.FLOW_SORT_NAME_DESC)
        assert len(expected) < 200
        streamed = await drain(client.stream_flows(**filters, sort=s.FLOW_SORT_NAME_DESC))
        assert streamed == expected, filters


async def test_flows_with_runs_are_found_through_the_run_filters(
    client: FlowClient, seed: Seeder
) -> None:
    ran = await seed.flow("ran")
    await seed.flow("never-ran")
    await seed.flow_run(ran, "run-1", state_type="FAILED")
    failed = {"state": {"type": {"any": ["FAILED"]}}}
    assert names(await drain(client.stream_flows(flow_runs=failed))) == ["ran"]


async def test_responses_hold_at_most_batch_size_flows_and_are_never_empty(
    server: RunningServer, seed: Seeder
) -> None:
    await many_flows(seed, 250)

    async def sizes(**request: Any) -> list[int]:
        return [len(response.flows) for response in await responses(server, **request)]

    assert await sizes() == [100, 100, 50]  # 0 means the default, 100
    assert await sizes(batch_size=7) == [7] * 35 + [5]
    assert await sizes(batch_size=1) == [1] * 250
    assert await sizes(batch_size=1000) == [250]
    assert await sizes(batch_size=50) == [50] * 5  # no empty last response
    assert await sizes(flows={"name": {"any": []}}) == []  # nothing matches: no response


async def test_limit_caps_the_flows_in_all(server: RunningServer, seed: Seeder) -> None:
    await many_flows(seed, 30)

    async def sizes(**request: Any) -> list[int]:
        return [len(response.flows) for response in await responses(server, **request)]

    assert await sizes(limit=13, batch_size=5) == [5, 5, 3]
    assert await sizes(limit=10, batch_size=5) == [5, 5]
    assert await sizes(limit=0) == []
    assert await sizes(limit=2**40) == [30]


async def test_an_empty_database_streams_nothing(client: FlowClient) -> None:
    assert await drain(client.stream_flows()) == []


async def test_the_blocking_client_streams_the_same_flows(
    server: RunningServer, client: FlowClient, seed: Seeder
) -> None:
    await many_flows(seed, 120)

    def blocking() -> list[flow_pb2.Flow]:
        with FlowClientSync(f"127.0.0.1:{server.port}", timeout=30) as sync_client:
            return list(sync_client.stream_flows(sort=s.FLOW_SORT_CREATED_DESC, batch_size=9))

    expected = await client.read_flows(sort=s.FLOW_SORT_CREATED_DESC)
    assert await asyncio.to_thread(blocking) == expected


# --- validation --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_fields", "fields"),
    [
        ({"batch_size": -1}, ["batch_size"]),
        ({"batch_size": 1001}, ["batch_size"]),
        ({"limit": -1}, ["limit"]),
        ({"sort": 99}, ["sort"]),
        (
            {"flows": {"id": {"any": ["nope"]}}, "limit": -5, "batch_size": 5000},
            ["flows.id.any[0]", "limit", "batch_size"],
        ),
    ],
)
async def test_invalid_requests_name_every_bad_field(
    client: FlowClient, request_fields: dict[str, Any], fields: list[str]
) -> None:
    error = await expect_error(
        drain(client.stream_flows(**request_fields)), grpc.StatusCode.INVALID_ARGUMENT, *fields
    )
    assert error.field_violations


async def test_the_request_limits_apply_to_its_lists(client: FlowClient) -> None:
    """The limits checked as requests are decoded cover StreamFlows with nothing added."""
    at_limit = [f"t{i}" for i in range(MAX_ITEMS)]
    assert await drain(client.stream_flows(flows={"tags": {"all": at_limit}})) == []
    error = await expect_error(
        drain(client.stream_flows(flows={"tags": {"all": [*at_limit, "one-more"]}})),
        grpc.StatusCode.INVALID_ARGUMENT,
        "flows.tags.all",
    )
    assert f"at most {MAX_ITEMS:,}" in error.field_violations[0].description


# --- one snapshot ------------------------------------------------------------------


async def test_the_stream_reads_the_database_as_it_was_when_it_began(
    server: RunningServer, seed: Seeder
) -> None:
    """Created after the start: not seen. Deleted after the start: still seen. Both past
    the point the server has read up to when they change, so only the snapshot hides them."""
    count = 5000
    await many_flows(seed, count)
    async with FlowClient(f"127.0.0.1:{server.port}", timeout=30, options=SMALL_WINDOW) as client:
        ordered = await all_pages(client, s.FLOW_SORT_NAME_ASC)
        last = ordered[-1]
        stream = client.stream_flows(batch_size=10)
        first = await anext(stream)
        assert await settled(server) < count - 1  # the server has not reached `last` yet

        await client.delete_flow(last.id)
        created, _ = await client.create_flow("zzz-created-after-the-start")
        assert names(await client.read_flows(offset=count - 2)) == [ordered[-2].name, created.name]

        rest = await drain(stream)
        assert [first, *rest] == ordered
        assert created.id not in {found.id for found in rest}


# --- flow control, cancellation and deadlines --------------------------------------


async def test_a_slow_client_holds_the_server_back(server: RunningServer, seed: Seeder) -> None:
    """The server fetches what the client reads plus what the transport holds, not more."""
    count = 20_000
    await many_flows(seed, count)
    channel, service = stub(server, SMALL_WINDOW)
    async with channel:
        call = service.StreamFlows(s.StreamFlowsRequest(batch_size=10))
        await call.read()
        ahead = await settled(server)
        assert ahead < count // 4  # a server that read the result set first would be at count
        for _ in range(20):
            await call.read()
        assert await settled(server) - ahead <= 1_000  # 200 read, a few batches more fetched
        call.cancel()


def resident_kib(pid: int) -> int:
    """A process's resident set size now (VmRSS, KiB)."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE).group(1))  # type: ignore[union-attr]


async def test_a_slow_client_leaves_the_server_process_memory_bounded(
    database_url: str, seed: Seeder, tmp_path: Path
) -> None:
    """The whole server, from outside: a stream of about 80 MB of rows, read one response at
    a time, grows a `flowservice serve` process by a few MB (what the transport and one
    batch hold), where reading the result set first would grow it by the rows' size."""
    await many_flows(seed, 60_000, tags=[f"{i:03}" + "x" * 125 for i in range(8)])
    server = await start(
        ["--address", "127.0.0.1:0", "--database-url", database_url, "--workers", "1"],
        tmp_path,
        {"FLOWSERVICE_ACCESS_LOG": "false"},
    )
    try:
        pid = server.process.pid
        async with FlowClient(server.address, timeout=60, options=SMALL_WINDOW) as client:
            await client.count_flows()  # connections and code paths warmed up
            before = resident_kib(pid)
            stream = client.stream_flows(batch_size=100)
            for _ in range(300):
                await anext(stream)
            await asyncio.sleep(1)  # time to run ahead, if it would
            grown = resident_kib(pid) - before
            await stream.aclose()
        assert grown < 30_000, f"the server grew by {grown} KiB"
    finally:
        await server.stop()


async def test_a_cancelled_stream_stops_its_database_work(
    server: RunningServer, seed: Seeder, backend: str
) -> None:
    await many_flows(seed, 5000)
    channel, service = stub(server, SMALL_WINDOW)
    async with channel:
        call = service.StreamFlows(s.StreamFlowsRequest(batch_size=10))
        await call.read()
        # While the stream lasts it holds a connection and its snapshot: the checks see it.
        assert checked_out(server) == 1
        assert not await database_is_idle(server, seed, backend)

        call.cancel()
        await eventually(lambda: database_is_idle(server, seed, backend))
        await asyncio.wait_for(seed.flow("written-after-the-cancel"), timeout=5)


async def test_a_client_that_stops_iterating_cancels_the_call(
    server: RunningServer, seed: Seeder, backend: str
) -> None:
    await many_flows(seed, 5000)
    async with FlowClient(f"127.0.0.1:{server.port}", options=SMALL_WINDOW) as client:
        stream = client.stream_flows(batch_size=10)
        async for _ in stream:
            break
        await stream.aclose()  # what `async for` leaves to the caller (or to the finalizer)
        await eventually(lambda: database_is_idle(server, seed, backend))


async def test_an_expired_deadline_ends_the_stream_and_its_database_work(
    server: RunningServer, seed: Seeder, backend: str
) -> None:
    await many_flows(seed, 5000)
    async with FlowClient(f"127.0.0.1:{server.port}", timeout=1.0, options=SMALL_WINDOW) as client:
        stream = client.stream_flows(batch_size=10)
        await anext(stream)
        await asyncio.sleep(1.5)
        with pytest.raises(RpcError) as raised:  # gRPC's own status: no details
            await drain(stream)
        assert raised.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    await eventually(lambda: database_is_idle(server, seed, backend))


async def test_a_database_stream_past_its_deadline_stops_with_timeout_error(
    server: RunningServer, seed: Seeder, backend: str
) -> None:
    """`Database.stream` itself: the next batch, asked for after the deadline, is not
    fetched (TimeoutError, which the servicer's callers see as DEADLINE_EXCEEDED)."""
    await many_flows(seed, 300)
    query = sa.select(flow.c.name).order_by(flow.c.name)
    stream = server.database.stream(query, 10, time_left=0.3)
    assert len(await anext(stream)) == 10
    await asyncio.sleep(0.5)
    with pytest.raises(TimeoutError):
        await anext(stream)
    await eventually(lambda: database_is_idle(server, seed, backend))


async def test_an_error_in_the_middle_of_a_stream_reaches_the_client_as_a_status(
    server: RunningServer, client: FlowClient, seed: Seeder, backend: str
) -> None:
    """The third batch holds a flow whose stored tags are not strings, so the servicer
    fails after two responses: the client gets them, then INTERNAL with an ErrorInfo."""
    await many_flows(seed, 20)
    await seed.flow("zzz-damaged", tags=[1])  # type: ignore[list-item]  # what is stored
    channel, service = stub(server)
    async with channel:
        call = service.StreamFlows(s.StreamFlowsRequest(batch_size=10))
        received = [len((await call.read()).flows) for _ in range(2)]
        assert received == [10, 10]
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await call.read()
        assert raised.value.code() == grpc.StatusCode.INTERNAL
    error = await expect_error(drain(client.stream_flows(batch_size=10)), grpc.StatusCode.INTERNAL)
    assert error.error_info is not None
    assert error.error_info.reason
    await eventually(lambda: database_is_idle(server, seed, backend))
