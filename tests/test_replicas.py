"""Reads on a real PostgreSQL hot standby, read-your-writes tokens, and standby outages.

A primary and a streaming standby (`pg_basebackup -R`) are started by the
tests themselves (`tests/replication.py`); they skip only where PostgreSQL's
server binaries are missing, and CI fails on that skip.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from flowservice.client import FlowClient, FlowClientSync, RpcError
from flowservice.errors import from_failed_call
from flowservice.v1 import flow_service_pb2, flow_service_pb2_grpc
from flowservice_server.db.postgres_engine import PostgresDatabase
from flowservice_server.db.replicas import ReplicatedDatabase
from tests.http_transports import TRANSPORTS, GrpcCaller, caller
from tests.pg_cluster import missing_postgres_reason
from tests.replication import (
    Replicated,
    query,
    reads_by_target,
    replicated_cluster,
    serving_with_standby,
    standby_target,
    wait_replayed,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    from flowservice_server.app import RunningServer

#: The client's own retries would hide a failed read; these tests must see every one.
NO_RETRIES = [("grpc.enable_retries", 0)]


@pytest.fixture(scope="module")
def cluster() -> Iterator[Replicated]:
    reason = missing_postgres_reason()
    if reason is not None:
        pytest.skip(f"a primary and hot standby need PostgreSQL's server binaries: {reason}")
    with replicated_cluster() as started:
        yield started


@pytest.fixture
async def paused_standby(cluster: Replicated) -> AsyncIterator[Replicated]:
    """The standby with replay paused: it keeps receiving WAL but shows none of it."""
    await wait_replayed(cluster)
    await query(cluster.standby_url, "SELECT pg_wal_replay_pause()")
    try:
        yield cluster
    finally:
        await query(cluster.standby_url, "SELECT pg_wal_replay_resume()")
        await wait_replayed(cluster)


def target(running: RunningServer) -> str:
    return f"127.0.0.1:{running.port}"


async def test_reads_are_served_by_the_standby(paused_standby: Replicated) -> None:
    cluster = paused_standby
    async with (
        serving_with_standby(cluster, max_replica_lag=3600) as running,
        FlowClient(target(running), timeout=30, options=NO_RETRIES) as client,
    ):
        new, created = await client.create_flow("written-after-the-pause")
        assert created
        # The standby has not replayed the create: a read it serves cannot find the flow.
        for _ in range(5):
            with pytest.raises(RpcError) as missing:
                await client.read_flow(new.id)
            assert missing.value.code == grpc.StatusCode.NOT_FOUND
        assert await client.count_flows(flows={"name": {"any": [new.name]}}) == 0
        assert [f async for f in client.stream_flows(flows={"name": {"any": [new.name]}})] == []

        counts = reads_by_target(running)
        assert counts.get(standby_target(cluster), 0) == 7
        assert counts.get("primary", 0) == 0
        # While reads run, PostgreSQL itself shows them running on the standby only.
        assert (
            await _sightings_of_flow_reads(
                client, new.name, cluster.standby_url, stop_at_first=True
            )
            > 0
        )
        assert (
            await _sightings_of_flow_reads(
                client, new.name, cluster.primary_url, stop_at_first=False
            )
            == 0
        )


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_tokens_travel_over_every_transport(
    paused_standby: Replicated, transport: str
) -> None:
    """A write's position comes back as trailing metadata over gRPC, Connect and gRPC-Web,
    and a read that sends it back as request metadata sees the write."""
    cluster = paused_standby
    async with (
        serving_with_standby(cluster, max_replica_lag=3600, replica_wait=0.2, http=True) as running,
        grpc.aio.insecure_channel(target(running)) as channel,
    ):
        assert running.http_port is not None
        plain = caller(transport, channel, running.http_port)
        name = f"token-over-{transport}"
        written = await plain.call("CreateFlow", flow_service_pb2.CreateFlowRequest(name=name))
        assert written.code == grpc.StatusCode.OK
        position = written.trailers["x-flowservice-lsn"]
        read = flow_service_pb2.ReadFlowByNameRequest(name=name)
        stale = await plain.call("ReadFlowByName", read)
        assert stale.code == grpc.StatusCode.NOT_FOUND  # the paused standby answered
        token = (("x-flowservice-min-lsn", position),)
        if isinstance(plain, GrpcCaller):
            plain.metadata = token
        else:
            plain.headers.update(token)
        fresh = await plain.call("ReadFlowByName", read)
        assert fresh.code == grpc.StatusCode.OK, fresh.message
        assert "x-flowservice-lsn" not in fresh.trailers  # reads answer no position


async def _sightings_of_flow_reads(
    client: FlowClient, name: str, url: str, *, stop_at_first: bool
) -> int:
    """How many sessions at `url`, in up to 50 looks at `pg_stat_activity`, were running or
    had just run a flow query (the change feed's queries on the primary do not count)."""
    stop = asyncio.Event()

    async def read() -> None:
        while not stop.is_set():
            await client.count_flows(flows={"name": {"like": name}})

    readers = [asyncio.create_task(read()) for _ in range(4)]
    sightings = 0
    try:
        for _ in range(50):
            [(running,)] = await query(
                url,
                "SELECT count(*) FROM pg_stat_activity WHERE datname = 'flowservice' "
                "AND pid <> pg_backend_pid() AND query ~ 'FROM flow\\M'",
            )
            sightings += int(str(running))
            if sightings and stop_at_first:
                break
    finally:
        stop.set()
        await asyncio.gather(*readers)
    return sightings


async def test_a_write_answers_with_its_wal_position(cluster: Replicated) -> None:
    async with (
        serving_with_standby(cluster) as running,
        grpc.aio.insecure_channel(target(running)) as channel,
    ):
        stub = flow_service_pb2_grpc.FlowServiceStub(channel)
        call = stub.CreateFlow(flow_service_pb2.CreateFlowRequest(name="positioned"))
        await call
        positions = [v for k, v in await call.trailing_metadata() if k == "x-flowservice-lsn"]
        assert len(positions) == 1
        position = positions[0] if isinstance(positions[0], str) else positions[0].decode()
        [(reached,)] = await query(
            cluster.primary_url, f"SELECT '{position}'::pg_lsn <= pg_current_wal_lsn()"
        )
        assert reached
        read = stub.ReadFlowByName(
            flow_service_pb2.ReadFlowByNameRequest(name="positioned"),
            metadata=(("x-flowservice-min-lsn", position),),
        )
        assert (await read).flow.name == "positioned"  # reads answer no position of their own
        assert not [k for k, _ in await read.trailing_metadata() if k == "x-flowservice-lsn"]


@pytest.mark.parametrize("blocking", [False, True], ids=["FlowClient", "FlowClientSync"])
async def test_the_client_reads_its_own_writes_past_a_paused_standby(
    paused_standby: Replicated, blocking: bool
) -> None:
    """The standby shows nothing new: reads with a token wait, then the primary serves them."""
    async with serving_with_standby(
        paused_standby, max_replica_lag=3600, replica_wait=0.2
    ) as running:
        name = f"own-write-{'sync' if blocking else 'async'}"

        def write_then_read(consistency: str, suffix: str) -> tuple[str, str]:
            with FlowClientSync(
                target(running), timeout=30, options=NO_RETRIES, consistency=consistency
            ) as client:
                flow, _ = client.create_flow(name + suffix)
                try:
                    return flow.id, client.read_flow(flow.id).name
                except RpcError as error:
                    return flow.id, error.code.name

        async def write_then_read_async(consistency: str, suffix: str) -> tuple[str, str]:
            async with FlowClient(
                target(running), timeout=30, options=NO_RETRIES, consistency=consistency
            ) as client:
                flow, _ = await client.create_flow(name + suffix)
                try:
                    return flow.id, (await client.read_flow(flow.id)).name
                except RpcError as error:
                    return flow.id, error.code.name

        async def run(consistency: str, suffix: str) -> tuple[str, str]:
            if blocking:
                return await asyncio.to_thread(write_then_read, consistency, suffix)
            return await write_then_read_async(consistency, suffix)

        assert (await run("read_your_writes", "-mine"))[1] == name + "-mine"
        # The standby answered: the flow is not there yet.
        assert (await run("eventual", "-stale"))[1] == "NOT_FOUND"
        counts = reads_by_target(running)
        assert counts.get("primary") == 1
        assert counts.get(standby_target(paused_standby)) == 1


async def test_read_your_writes_over_a_lagging_standby_never_sees_old_state(
    cluster: Replicated,
) -> None:
    """1,000 writes, each read back at once through a standby that applies commits 10 ms late."""
    await asyncio.to_thread(cluster.standby.set, recovery_min_apply_delay="'10ms'")
    try:
        async with (
            serving_with_standby(cluster, replica_wait=2.0) as running,
            FlowClient(
                target(running), timeout=30, options=NO_RETRIES, consistency="read_your_writes"
            ) as client,
        ):
            flow, _ = await client.create_flow("read-your-writes")
            stale = []
            for round_number in range(1000):
                tag = f"round-{round_number}"
                await client.update_flow(flow.id, tags=[tag])
                if round_number % 2:
                    seen = list((await client.read_flow(flow.id)).tags)
                else:
                    count = await client.count_flows(flows={"tags": {"all": [tag]}})
                    seen = [tag] if count == 1 else []
                if seen != [tag]:
                    stale.append((round_number, seen))
            assert stale == []
            counts = reads_by_target(running)
            assert counts.get(standby_target(cluster), 0) >= 900, counts

            # Without the token the same standby does show old state: the lag is real.
            async with FlowClient(target(running), timeout=30, options=NO_RETRIES) as eventual:
                old = 0
                for round_number in range(20):
                    tag = f"eventual-{round_number}"
                    await eventual.update_flow(flow.id, tags=[tag])
                    old += list((await eventual.read_flow(flow.id)).tags) != [tag]
                assert old > 0
    finally:
        await asyncio.to_thread(cluster.standby.set, recovery_min_apply_delay="0")


async def _health(running: RunningServer) -> int:
    async with grpc.aio.insecure_channel(target(running)) as channel:
        answer = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=5
        )
        return int(answer.status)


async def test_a_standby_stopped_under_load_fails_no_read_and_serves_again_once_back(
    cluster: Replicated,
) -> None:
    async with (
        serving_with_standby(cluster) as running,
        FlowClient(target(running), timeout=30, options=NO_RETRIES) as client,
    ):
        flow, _ = await client.create_flow("read-under-load")
        await wait_replayed(cluster)
        failures: list[str] = []
        served = 0
        stop = asyncio.Event()

        async def reader(kind: int) -> None:
            nonlocal served
            while not stop.is_set():
                try:
                    if kind == 0:
                        assert (await client.read_flow(flow.id)).name == flow.name
                    elif kind == 1:
                        page = await client.read_flows_page(
                            flows={"name": {"any": [flow.name]}}, include_total_size=True
                        )
                        assert page.total_size == 1
                    else:
                        assert await client.count_flows(flows={"name": {"any": [flow.name]}}) == 1
                    served += 1
                except (RpcError, AssertionError) as error:
                    failures.append(repr(error))

        readers = [asyncio.create_task(reader(kind % 3)) for kind in range(6)]
        try:
            await asyncio.sleep(0.5)
            before_stop = reads_by_target(running)
            assert before_stop.get(standby_target(cluster), 0) > 0
            await asyncio.to_thread(cluster.standby.stop, "immediate")
            await asyncio.sleep(1.0)
            assert await _health(running) == health_pb2.HealthCheckResponse.SERVING
            while_down = reads_by_target(running)
            assert while_down.get("primary", 0) > before_stop.get("primary", 0)

            await asyncio.to_thread(cluster.standby.start)
            back = while_down.get(standby_target(cluster), 0)
            deadline = time.monotonic() + 20
            while reads_by_target(running).get(standby_target(cluster), 0) <= back:
                assert time.monotonic() < deadline, "the standby was not used again"
                await asyncio.sleep(0.1)
            assert await _health(running) == health_pb2.HealthCheckResponse.SERVING
        finally:
            stop.set()
            await asyncio.gather(*readers)
        assert failures == []
        assert served > 100


async def test_a_standby_lagging_past_the_bound_is_skipped(paused_standby: Replicated) -> None:
    """Replay paused while writes go on: its lag grows past 0.3 s and reads move to the primary."""
    async with (
        serving_with_standby(paused_standby, max_replica_lag=0.3) as running,
        FlowClient(target(running), timeout=30, options=NO_RETRIES) as client,
    ):
        flow, _ = await client.create_flow("outgrown")
        deadline = time.monotonic() + 10
        while True:  # the probe finds the lag within its interval
            await client.update_flow(flow.id, tags=[str(time.monotonic())])
            try:
                await client.read_flow(flow.id)
                break
            except RpcError as error:
                failed = error.code
            assert failed == grpc.StatusCode.NOT_FOUND
            assert time.monotonic() < deadline, "the lagging standby kept serving reads"
            await asyncio.sleep(0.05)
        assert reads_by_target(running).get("primary", 0) >= 1


async def test_a_malformed_token_is_invalid_argument(cluster: Replicated) -> None:
    async with (
        serving_with_standby(cluster) as running,
        grpc.aio.insecure_channel(target(running)) as channel,
    ):
        stub = flow_service_pb2_grpc.FlowServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.CountFlows(
                flow_service_pb2.CountFlowsRequest(),
                metadata=(("x-flowservice-min-lsn", "yesterday"),),
            )
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "x-flowservice-min-lsn" in (refused.value.details() or "")


async def test_tokens_are_harmless_without_standbys(any_backend_server: RunningServer) -> None:
    """One database sees every write anyway: no token comes back, a valid one changes nothing,
    and a malformed one is still refused with a field violation."""
    async with FlowClient(
        target(any_backend_server), timeout=30, consistency="read_your_writes"
    ) as client:
        flow, _ = await client.create_flow("single-database")
        assert (await client.read_flow(flow.id)).name == "single-database"
    async with grpc.aio.insecure_channel(target(any_backend_server)) as channel:
        stub = flow_service_pb2_grpc.FlowServiceStub(channel)
        call = stub.CreateFlow(flow_service_pb2.CreateFlowRequest(name="no-token"))
        await call
        assert not [k for k, _ in await call.trailing_metadata() if k.startswith("x-flowservice")]
        found = await stub.ReadFlowByName(
            flow_service_pb2.ReadFlowByNameRequest(name="no-token"),
            metadata=(("x-flowservice-min-lsn", "FFFFFFFF/FFFFFFFF"),),
        )
        assert found.flow.name == "no-token"
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.ReadFlows(
                flow_service_pb2.ReadFlowsRequest(),
                metadata=(("x-flowservice-min-lsn", "0/XYZ"),),
            )
    error = from_failed_call(refused.value)
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in error.field_violations] == ["x-flowservice-min-lsn"]


def test_the_client_refuses_an_unknown_consistency() -> None:
    with pytest.raises(RpcError) as refused:
        FlowClientSync("127.0.0.1:1", consistency="strong")
    assert [v.field for v in refused.value.field_violations] == ["consistency"]


async def test_reads_fail_over_at_once_when_the_standby_dies_between_probes(
    cluster: Replicated,
) -> None:
    """The probe still thinks the standby is up: each kind of read finds it gone and moves on."""
    async with (
        serving_with_standby(cluster, probe_interval=3600) as running,
        FlowClient(target(running), timeout=30, options=NO_RETRIES) as client,
    ):
        flow, _ = await client.create_flow("failing-over")
        await wait_replayed(cluster)
        assert (await client.read_flow(flow.id)).name == flow.name
        assert reads_by_target(running) == {standby_target(cluster): 1.0}
        await asyncio.to_thread(cluster.standby.stop, "immediate")
        try:
            only = {"name": {"any": [flow.name]}}
            assert [f.name async for f in client.stream_flows(flows=only)] == [flow.name]
            assert (
                await client.read_flows_page(flows=only, include_total_size=True)
            ).total_size == 1
            assert await client.count_flows(flows=only) == 1
            assert (await client.read_flow(flow.id)).name == flow.name
            assert reads_by_target(running) == {standby_target(cluster): 1.0, "primary": 4.0}
        finally:
            await asyncio.to_thread(cluster.standby.start)


async def test_short_reads_on_the_standby_run_on_asyncpg_and_creates_stay_on_the_primary(
    cluster: Replicated,
) -> None:
    """A standby's short reads take the direct path; CreateFlow of an existing name does not
    read it first there (a lagging standby could still hold a deleted flow)."""
    async with (
        serving_with_standby(cluster) as running,
        FlowClient(target(running), timeout=30, options=NO_RETRIES) as client,
    ):
        flow, _ = await client.create_flow("direct-on-the-standby")
        await wait_replayed(cluster)
        database = running.database
        assert isinstance(database, ReplicatedDatabase)
        assert not database.read_before_create
        standby = database.standbys[0].database
        assert isinstance(standby, PostgresDatabase)
        assert standby.direct_reads is not None
        before = standby.direct_reads.outcomes["direct"]
        assert (await client.read_flow(flow.id)).name == flow.name
        assert (await client.read_flow_by_name(flow.name)).id == flow.id
        assert await client.count_flows() >= 1
        assert standby.direct_reads.outcomes["direct"] == before + 3
        assert reads_by_target(running) == {standby_target(cluster): 3.0}
        again, created = await client.create_flow(flow.name)
        assert (again.id, created) == (flow.id, False)
        assert standby.direct_reads.outcomes["direct"] == before + 3
        assert reads_by_target(running) == {standby_target(cluster): 3.0}


async def test_streams_cancelled_by_the_client_end_cleanly(
    any_backend_server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    """gRPC may close a cancelled stream's generator from another context: the per-call
    consistency state must not turn that into an internal error."""
    async with grpc.aio.insecure_channel(target(any_backend_server)) as channel:
        stub = flow_service_pb2_grpc.FlowServiceStub(channel)
        first = stub.WatchFlows(flow_service_pb2.WatchFlowsRequest(send_initial_state=True))
        token = await _next_token(first)  # an empty database: initial_state_done
        first.cancel()
        batch = flow_service_pb2.BatchCreateFlowsRequest(
            requests=[flow_service_pb2.CreateFlowRequest(name=f"watched-{i}") for i in range(200)]
        )
        await stub.BatchCreateFlows(batch)
        for _ in range(20):  # resume, take a few changes, hang up while more are on their way
            call = stub.WatchFlows(flow_service_pb2.WatchFlowsRequest(resume_token=token))
            for _ in range(5):
                token = await _next_token(call)
            call.cancel()
        await asyncio.sleep(0.5)  # the server finishes the cancelled calls
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == []


async def _next_token(call: grpc.aio.UnaryStreamCall[Any, Any]) -> str:
    response = await call.read()
    assert isinstance(response, flow_service_pb2.WatchFlowsResponse)
    return response.resume_token
