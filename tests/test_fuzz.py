"""Fuzzing every FlowService method with generated and with malformed requests.

Whatever arrives, a call ends in a status the caller can act on: never
UNKNOWN or INTERNAL, and INVALID_ARGUMENT says why in `google.rpc` details.
The server keeps serving, a read writes nothing, and a failed call writes
nothing either. Requests come from the message descriptors
(tests/fuzzing.py), so every method and field is covered as the contract grows.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio
import pytest
import sqlalchemy as sa
from google.protobuf.message_factory import GetMessageClass
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from flowservice.errors import RpcError, from_failed_call
from flowservice.v1 import flow_service_pb2
from flowservice_server.config import GrpcSettings
from flowservice_server.db.tables import (
    deployment,
    flow,
    flow_run,
    task_run,
    work_pool,
    work_queue,
)
from tests import fuzzing

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

    from google.protobuf.descriptor import MethodDescriptor
    from sqlalchemy.ext.asyncio import AsyncEngine

    from flowservice_server.app import RunningServer
    from tests.factories import Seeder

SERVICE = flow_service_pb2.DESCRIPTOR.services_by_name["FlowService"]
METHODS = list(SERVICE.methods)
READS = frozenset({"ReadFlow", "ReadFlowByName", "ReadFlows", "CountFlows"})
#: In the order a delete must go (children first).
TABLES = (task_run, flow_run, deployment, work_queue, work_pool, flow)
#: DEADLINE_EXCEEDED too: the call's deadline is so generous, for a dozen rows,
#: that missing it means a hang.
NEVER = frozenset(
    {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL, grpc.StatusCode.DEADLINE_EXCEEDED}
)
#: How long a WatchFlows call is read before its deadline ends it.
WATCH_READ = 0.5
CALL_TIMEOUT = 20.0
#: The server's default limit; only a larger request may be RESOURCE_EXHAUSTED.
MAX_REQUEST_BYTES = GrpcSettings().max_receive_message_size
#: Examples per test and backend: the module takes 30-50 s on two busy cores. Multiply
#: them for a longer hunt, e.g. FLOWSERVICE_FUZZ_SCALE=20.
SCALE = float(os.environ.get("FLOWSERVICE_FUZZ_SCALE", "1"))


def budget(examples: int) -> settings:
    return settings(
        max_examples=round(examples * SCALE),
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


Snapshot = dict[str, list[tuple[Any, ...]]]


# --- the database: a small dataset to filter over, and snapshots of it ---------------


async def reseed(engine: AsyncEngine) -> None:
    """Empty every table and insert rows with the ids the strategies draw from."""
    now = datetime(2026, 11, 27, 12, tzinfo=UTC)
    base = {"created": now, "updated": now}
    flows = [
        {**base, "id": i, "name": n, "tags": t, "labels": {"env": "dev"}}
        for i, n, t in zip(
            fuzzing.FLOW_IDS, fuzzing.SEEDED_NAMES, (["db"], [], ["db", "x_y"]), strict=True
        )
    ]
    pools = [
        {**base, "id": i, "name": f"pool-{n}", "type": "process"}
        for n, i in enumerate(fuzzing.POOL_IDS)
    ]
    queue_id = fuzzing.POOL_IDS[0]  # ids of different tables may coincide
    queues = [{**base, "id": queue_id, "name": "default", "work_pool_id": fuzzing.POOL_IDS[0]}]
    deployments = [
        {**base, "id": i, "name": f"dep-{n}", "flow_id": fuzzing.FLOW_IDS[n], "paused": n == 1}
        | {"tags": ["db"], "work_queue_id": queue_id, "work_queue_name": "default"}
        for n, i in enumerate(fuzzing.DEPLOYMENT_IDS)
    ]
    states = ("COMPLETED", "FAILED", None)
    runs = [
        {**base, "id": i, "name": f"run-{n}", "flow_id": fuzzing.FLOW_IDS[n % 2]}
        | {"state_type": states[n], "state_name": "Failed", "start_time": now, "tags": ["db"]}
        | {"deployment_id": fuzzing.DEPLOYMENT_IDS[0], "work_queue_id": queue_id}
        | {"idempotency_key": f"k{n}", "flow_version": "1.0"}
        | {"created_by": {"id": str(fuzzing.DEPLOYMENT_IDS[0]), "type": "DEPLOYMENT"}}
        for n, i in enumerate(fuzzing.RUN_IDS)
    ]
    task_runs = [
        {**base, "id": i, "name": f"task-{n}", "flow_run_id": fuzzing.RUN_IDS[n]}
        | {"state_type": "RUNNING", "tags": [], "task_key": "t", "dynamic_key": str(n)}
        for n, i in enumerate(fuzzing.TASK_RUN_IDS)
    ]
    async with engine.begin() as connection:
        for table in TABLES:
            await connection.execute(table.delete())
        for table, rows in (
            (flow, flows),
            (work_pool, pools),
            (work_queue, queues),
            (deployment, deployments),
            (flow_run, runs),
            (task_run, task_runs),
        ):
            await connection.execute(table.insert(), rows)
        await connection.execute(
            flow_run.update()
            .where(flow_run.c.id == fuzzing.RUN_IDS[2])
            .values(parent_task_run_id=fuzzing.TASK_RUN_IDS[0])
        )


async def snapshot(engine: AsyncEngine) -> Snapshot:
    """Every row of every table, in id order."""
    async with engine.connect() as connection:
        return {
            table.name: [
                tuple(row)
                for row in await connection.execute(sa.select(table).order_by(table.c.id))
            ]
            for table in TABLES
        }


# --- calls -------------------------------------------------------------------------------


@pytest.fixture
async def channel(server: RunningServer) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as opened:
        yield opened


async def outcome(
    channel: grpc.aio.Channel, method: MethodDescriptor, request: bytes
) -> RpcError | None:
    """Send the bytes as the method's request: the error, or None for proper responses.

    A stream is read to its end; a watch never ends by itself, so it is read
    for a moment, and its deadline passing then is the proper end.
    """
    path = f"/{SERVICE.full_name}/{method.name}"
    watching = method.name == "WatchFlows"
    responses: list[bytes] = []
    try:
        if method.server_streaming:
            stream: grpc.aio.UnaryStreamMultiCallable[bytes, bytes] = channel.unary_stream(
                path, request_serializer=None, response_deserializer=None
            )
            call = stream(request, timeout=WATCH_READ if watching else CALL_TIMEOUT)
            responses = [response async for response in call]
        else:
            unary: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
                path, request_serializer=None, response_deserializer=None
            )
            responses = [await unary(request, timeout=CALL_TIMEOUT)]
    except grpc.aio.AioRpcError as failed:
        if not (watching and failed.code() == grpc.StatusCode.DEADLINE_EXCEEDED):
            error = from_failed_call(failed)
            event(f"{method.name}: {error.code.name}")  # see --hypothesis-show-statistics
            return error
    event(f"{method.name}: OK")
    for response in responses:
        GetMessageClass(method.output_type).FromString(response)  # a response of its type
    return None


def assert_proper(error: RpcError | None, request: bytes) -> None:
    """A status the caller can act on, with the details it needs."""
    if error is None:
        return
    assert error.code not in NEVER, str(error)
    if error.code == grpc.StatusCode.INVALID_ARGUMENT:
        assert error.field_violations or error.error_info, f"no details: {error}"
    if error.code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        assert len(request) > MAX_REQUEST_BYTES, f"a request of {len(request)} bytes: {error}"


async def check_calls(
    channel: grpc.aio.Channel,
    engine: AsyncEngine,
    calls: Sequence[tuple[str, bytes]],
) -> None:
    """The calls in turn on freshly seeded rows: each ends in a proper status, neither a
    read nor a failed call writes, and the server is still serving after them."""
    await reseed(engine)
    before = await snapshot(engine)
    for name, request in calls:
        method = SERVICE.methods_by_name[name]
        error = await outcome(channel, method, request)
        assert_proper(error, request)
        after = await snapshot(engine)
        if name in READS or error is not None:
            assert after == before, f"{name} changed the database"
        before = after
    await assert_serving(channel)


async def assert_serving(channel: grpc.aio.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    request = health_pb2.HealthCheckRequest(service=SERVICE.full_name)
    response = await health.Check(request, timeout=CALL_TIMEOUT)
    assert response.status == health_pb2.HealthCheckResponse.SERVING


# --- requests: a method's name and the bytes to send (a failure shows both) ---------------


@st.composite
def generated(draw: st.DrawFn) -> tuple[str, bytes]:
    method = draw(st.sampled_from(METHODS))
    return method.name, draw(fuzzing.messages(method.input_type)).SerializeToString()


@st.composite
def malformed(draw: st.DrawFn) -> tuple[str, bytes]:
    method = draw(st.sampled_from(METHODS))
    return method.name, draw(fuzzing.malformed(method.input_type))


@st.composite
def oversized(draw: st.DrawFn) -> tuple[str, fuzzing.Oversized]:
    method = draw(st.sampled_from(METHODS))
    return method.name, draw(fuzzing.oversized(method.input_type))


# --- the tests -----------------------------------------------------------------------------


@budget(150)
@given(calls=st.lists(generated(), min_size=1, max_size=4))
async def test_generated_requests_end_in_a_proper_status(
    channel: grpc.aio.Channel, seed: Seeder, calls: list[tuple[str, bytes]]
) -> None:
    await check_calls(channel, seed.engine, calls)


@budget(120)
@given(calls=st.lists(malformed(), min_size=1, max_size=4))
async def test_malformed_bytes_end_in_a_proper_status(
    channel: grpc.aio.Channel, seed: Seeder, calls: list[tuple[str, bytes]]
) -> None:
    await check_calls(channel, seed.engine, calls)


@budget(25)
@given(call=oversized())
async def test_oversized_requests_end_in_a_proper_status(
    channel: grpc.aio.Channel, seed: Seeder, call: tuple[str, fuzzing.Oversized]
) -> None:
    """Lists of thousands, strings of tens of thousands of characters, past 4 MiB.

    Until the validation limits for list sizes and `like` lengths land, such
    requests may end INTERNAL (the database refuses the statement); that alone
    is tolerated, the rest is checked as for any request.
    """
    name, recipe = call
    message = recipe.build(SERVICE.methods_by_name[name].input_type)
    calls = [(name, message.SerializeToString())]
    await check_calls(channel, seed.engine, calls)
