"""FlowClientSync, the blocking client: every method through a real server, its errors
and deadlines, and its API kept in step with FlowClient's.

The `server` fixture runs the server on the test's event loop, so each blocking
call runs in a worker thread (`asyncio.to_thread`) while the loop serves it.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import time
import uuid
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio
import pytest

from flowservice.client import FlowClient, FlowClientSync, RpcError, any_of, flow_labels
from flowservice.v1 import filters_pb2, flow_service_pb2
from flowservice_server.app import start_server
from flowservice_server.config import AuthSettings, DatabaseSettings, Settings
from tests.test_errors import BAD_INPUT

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator

    from flowservice_server.app import RunningServer
    from tests.factories import Seeder
    from tests.helpers import WriteBlocker

NO_RETRIES = [("grpc.enable_retries", 0)]


@pytest.fixture
def sync_client(server: RunningServer) -> Iterator[FlowClientSync]:
    with FlowClientSync(f"127.0.0.1:{server.port}", timeout=30) as flow_client:
        yield flow_client


async def raised_by(call: Callable[[], Any]) -> RpcError:
    """Run a blocking call in a worker thread: the RpcError it raised."""
    with pytest.raises(RpcError) as raised:
        await asyncio.to_thread(call)
    return raised.value


async def expect_sync_error(call: Callable[[], Any], code: grpc.StatusCode) -> RpcError:
    """The blocking call fails with `code` and FlowService's ErrorInfo."""
    error = await raised_by(call)
    assert error.code == code, str(error)
    assert error.error_info is not None
    assert error.error_info.domain == "flowservice.v1"
    return error


# --- the two clients' APIs -------------------------------------------------------------


def _public(cls: type) -> dict[str, Any]:
    return {name: member for name, member in vars(cls).items() if not name.startswith("_")}


def _parameters(function: Any) -> list[tuple[str, Any, Any, Any]]:
    """Name, kind, default and annotation (as written) of each parameter but `self`."""
    signature = inspect.signature(function)
    return [
        (p.name, p.kind, p.default, p.annotation)
        for p in signature.parameters.values()
        if p.name != "self"
    ]


def test_both_clients_have_the_same_public_methods() -> None:
    assert sorted(_public(FlowClient)) == sorted(_public(FlowClientSync))
    assert {"close", "create_flow", "read_flows", "delete_flow"} <= set(_public(FlowClient))


@pytest.mark.parametrize("name", sorted(_public(FlowClient)))
def test_each_method_has_the_same_signature_and_docstring(name: str) -> None:
    asynchronous, blocking = getattr(FlowClient, name), getattr(FlowClientSync, name)
    returns = inspect.signature(asynchronous).return_annotation
    if inspect.isasyncgenfunction(asynchronous):
        # An async iterator of flows is, blocking, an iterator of the same flows.
        assert inspect.isgeneratorfunction(blocking)
        returns = re.sub(r"^AsyncIterator\[(.*)\]$", r"Iterator[\1]", returns)
        returns = re.sub(r"^AsyncGenerator\[(.*), None\]$", r"Generator[\1, None, None]", returns)
    elif isinstance(vars(FlowClient)[name], classmethod):
        # An alternative constructor (from_env): each builds its own class.
        assert isinstance(vars(FlowClientSync)[name], classmethod)
        assert not inspect.iscoroutinefunction(asynchronous)
        assert returns == "FlowClient"
        returns = "FlowClientSync"
    else:
        assert inspect.iscoroutinefunction(asynchronous)
        assert not inspect.iscoroutinefunction(blocking)
    # An `async def` is annotated with what awaiting it gives, so the two must be equal.
    assert returns == inspect.signature(blocking).return_annotation
    assert _parameters(asynchronous) == _parameters(blocking)
    assert inspect.getdoc(asynchronous) == inspect.getdoc(blocking)


def test_both_clients_are_built_and_closed_alike() -> None:
    assert _parameters(FlowClient.__init__) == _parameters(FlowClientSync.__init__)
    assert _parameters(FlowClient.__aexit__) == _parameters(FlowClientSync.__exit__)
    assert inspect.signature(FlowClient.__aenter__).return_annotation == "FlowClient"
    assert inspect.signature(FlowClientSync.__enter__).return_annotation == "FlowClientSync"
    # The class docstrings differ in their first word and usage line, and only there.
    asynchronous = (inspect.getdoc(FlowClient) or "").splitlines()
    blocking = (inspect.getdoc(FlowClientSync) or "").splitlines()
    assert asynchronous[0].replace("Async ", "Blocking ", 1) == blocking[0]
    assert asynchronous[2].replace("async with FlowClient(", "with FlowClientSync(") == blocking[2]
    assert asynchronous[3:] == blocking[3:]
    assert len(asynchronous) > 3


# --- every method through a real server ------------------------------------------------


async def test_create_flow_gets_or_creates_by_name(sync_client: FlowClientSync) -> None:
    labels: dict[str, bool | int | float | str] = {
        "env": "dev",
        "count": 3,
        "ratio": 1.5,
        "on": True,
    }
    created_flow, created = await asyncio.to_thread(
        sync_client.create_flow, "sync-flow", tags=["b", "a", "b"], labels=labels
    )
    assert created
    assert created_flow.name == "sync-flow"
    assert created_flow.id == str(uuid.UUID(created_flow.id))
    assert list(created_flow.tags) == ["b", "a", "b"]
    assert flow_labels(created_flow) == labels
    again, created_again = await asyncio.to_thread(
        sync_client.create_flow, "sync-flow", tags=["other"]
    )
    assert not created_again
    assert again == created_flow


async def test_create_flow_keeps_absent_and_empty_labels_apart(
    sync_client: FlowClientSync,
) -> None:
    bare, _ = await asyncio.to_thread(sync_client.create_flow, "bare")
    empty, _ = await asyncio.to_thread(sync_client.create_flow, "empty", labels={})
    assert flow_labels(bare) is None
    assert flow_labels(empty) == {}


async def test_read_flow_and_read_flow_by_name(
    sync_client: FlowClientSync, client: FlowClient
) -> None:
    created_flow, _ = await client.create_flow("readable", tags=["x"])
    by_id = await asyncio.to_thread(sync_client.read_flow, created_flow.id)
    by_upper_id = await asyncio.to_thread(sync_client.read_flow, created_flow.id.upper())
    by_name = await asyncio.to_thread(sync_client.read_flow_by_name, "readable")
    assert by_id == by_upper_id == by_name == created_flow
    assert by_id == await client.read_flow(created_flow.id)  # the same answer as the async one


async def test_read_flows_filters_sorts_and_pages(
    sync_client: FlowClientSync, client: FlowClient, seed: Seeder
) -> None:
    for name, tags in (("c-flow", ["db"]), ("a-flow", ["db", "blue"]), ("b-flow", [])):
        await client.create_flow(name, tags=tags)
    b_flow = await client.read_flow_by_name("b-flow")
    await seed.flow_run(uuid.UUID(b_flow.id), "a-run", tags=["nightly"])

    def read(**kwargs: Any) -> list[str]:
        return [flow.name for flow in sync_client.read_flows(**kwargs)]

    assert await asyncio.to_thread(read) == ["a-flow", "b-flow", "c-flow"]
    assert await asyncio.to_thread(read, flows={"tags": {"all": ["db"]}}) == ["a-flow", "c-flow"]
    message = filters_pb2.FlowFilter(name=filters_pb2.FlowFilterName(any=any_of("c-flow")))
    assert await asyncio.to_thread(read, flows=message) == ["c-flow"]
    assert await asyncio.to_thread(read, flows={"name": {"any": []}}) == []
    runs = {"tags": {"all": ["nightly"]}}
    assert await asyncio.to_thread(read, flow_runs=runs) == ["b-flow"]
    descending = flow_service_pb2.FLOW_SORT_NAME_DESC
    assert await asyncio.to_thread(read, sort=descending) == ["c-flow", "b-flow", "a-flow"]
    assert await asyncio.to_thread(read, offset=1, limit=1) == ["b-flow"]
    assert await asyncio.to_thread(read, limit=0) == []
    every_way: list[dict[str, Any]] = [
        {},
        {"flows": {"tags": {"all": ["db"]}}},
        {"flow_runs": runs},
    ]
    for kwargs in every_way:
        assert await asyncio.to_thread(sync_client.read_flows, **kwargs) == (
            await client.read_flows(**kwargs)
        )


async def test_count_flows_counts_what_read_flows_returns(
    sync_client: FlowClientSync, client: FlowClient
) -> None:
    assert await asyncio.to_thread(sync_client.count_flows) == 0
    for number in range(3):
        await client.create_flow(f"counted-{number}", tags=["db"] if number else [])
    assert await asyncio.to_thread(sync_client.count_flows) == 3
    tagged = {"tags": {"all": ["db"]}}
    assert await asyncio.to_thread(lambda: sync_client.count_flows(flows=tagged)) == 2
    empty = filters_pb2.FlowFilter(name=filters_pb2.FlowFilterName(any=any_of()))
    assert await asyncio.to_thread(lambda: sync_client.count_flows(flows=empty)) == 0


async def test_update_flow_replaces_keeps_or_clears_the_tags(
    sync_client: FlowClientSync,
) -> None:
    created_flow, _ = await asyncio.to_thread(sync_client.create_flow, "tagged", tags=["db"])
    replaced = await asyncio.to_thread(
        lambda: sync_client.update_flow(created_flow.id, tags=["c", "a", "c"])
    )
    assert list(replaced.tags) == ["c", "a", "c"]
    kept = await asyncio.to_thread(sync_client.update_flow, created_flow.id)
    assert list(kept.tags) == ["c", "a", "c"]
    assert kept.updated.ToDatetime() >= replaced.updated.ToDatetime()
    cleared = await asyncio.to_thread(lambda: sync_client.update_flow(created_flow.id, tags=[]))
    assert list(cleared.tags) == []
    assert list((await asyncio.to_thread(sync_client.read_flow, created_flow.id)).tags) == []


async def test_delete_flow_then_it_is_not_found(sync_client: FlowClientSync) -> None:
    created_flow, _ = await asyncio.to_thread(sync_client.create_flow, "doomed")
    await asyncio.to_thread(sync_client.delete_flow, created_flow.id)
    error = await expect_sync_error(
        lambda: sync_client.delete_flow(created_flow.id), grpc.StatusCode.NOT_FOUND
    )
    assert error.resource_info is not None
    assert error.resource_info.resource_name == created_flow.id
    assert await asyncio.to_thread(sync_client.count_flows) == 0


# --- errors: the same RpcError as the async client's ---------------------------------


@pytest.mark.parametrize(("call", "fields"), BAD_INPUT)
async def test_bad_input_raises_the_same_error_as_the_async_client(
    any_backend_server: RunningServer, any_backend_client: FlowClient, call: Any, fields: list[str]
) -> None:
    with FlowClientSync(f"127.0.0.1:{any_backend_server.port}", timeout=30) as blocking:
        error = await expect_sync_error(lambda: call(blocking), grpc.StatusCode.INVALID_ARGUMENT)
    assert [v.field for v in error.field_violations] == fields
    assert all(v.description for v in error.field_violations)
    with pytest.raises(RpcError) as raised:
        await call(any_backend_client)
    assert error == raised.value  # code, message and every decoded detail


@pytest.mark.parametrize(
    "method",
    ["read_flow", "read_flow_by_name", "update_flow", "delete_flow"],
)
async def test_not_found_raises_the_same_error_as_the_async_client(
    sync_client: FlowClientSync, client: FlowClient, method: str
) -> None:
    missing = "no-such-flow" if method == "read_flow_by_name" else str(uuid.uuid4())
    error = await expect_sync_error(
        lambda: getattr(sync_client, method)(missing), grpc.StatusCode.NOT_FOUND
    )
    assert error.resource_info is not None
    assert error.resource_info.resource_type == "flowservice.v1.Flow"
    assert error.resource_info.resource_name == missing
    with pytest.raises(RpcError) as raised:
        await getattr(client, method)(missing)
    assert error == raised.value


async def test_a_token_is_sent_and_a_wrong_one_is_unauthenticated(
    any_backend_url: str,
) -> None:
    settings = Settings(
        address="127.0.0.1:0",
        database=DatabaseSettings(url=any_backend_url),
        auth=AuthSettings(tokens=("s3cret-sync-token",)),
    )
    running = await start_server(settings)
    target = f"127.0.0.1:{running.port}"
    try:
        with FlowClientSync(target, token="wrong", options=NO_RETRIES) as intruder:
            error = await expect_sync_error(intruder.count_flows, grpc.StatusCode.UNAUTHENTICATED)
        assert "Bearer" in error.message
        with FlowClientSync(target, token="s3cret-sync-token") as allowed:
            flow, created = await asyncio.to_thread(allowed.create_flow, "allowed")
            assert created
            assert (await asyncio.to_thread(allowed.read_flow, flow.id)).name == "allowed"
    finally:
        await running.stop(grace=None)


# --- deadlines and retries --------------------------------------------------------------


async def test_a_50ms_deadline_on_a_waiting_write_is_deadline_exceeded_and_nothing_lands(
    server: RunningServer, client: FlowClient, blocker: WriteBlocker
) -> None:
    await blocker.hold()
    with FlowClientSync(f"127.0.0.1:{server.port}", timeout=0.05, options=NO_RETRIES) as hurried:
        started = time.monotonic()
        error = await raised_by(lambda: hurried.create_flow("late"))
        assert error.code == grpc.StatusCode.DEADLINE_EXCEEDED
        assert time.monotonic() - started < 1.0
    await blocker.release()
    await asyncio.sleep(0.3)
    assert await client.count_flows() == 0  # no work continued after the deadline


async def test_without_a_timeout_a_call_waits_for_a_busy_database(
    server: RunningServer, blocker: WriteBlocker
) -> None:
    await blocker.hold()
    with FlowClientSync(f"127.0.0.1:{server.port}") as patient:
        waiting = asyncio.create_task(asyncio.to_thread(patient.create_flow, "patient"))
        await asyncio.sleep(0.3)
        assert not waiting.done()
        await blocker.release()
        flow, created = await asyncio.wait_for(waiting, timeout=10)
    assert created
    assert flow.name == "patient"


@pytest.fixture
async def flaky_count() -> AsyncIterator[tuple[str, list[int]]]:
    """A stand-in FlowService whose CountFlows is UNAVAILABLE twice, then answers 7.

    UNAVAILABLE is what the real server answers while its database is busy or
    unreachable; this one fails on cue. Yields its address and the attempts seen.
    """
    attempts: list[int] = []

    async def count_flows(request: flow_service_pb2.CountFlowsRequest, context: Any) -> Any:
        attempts.append(len(attempts) + 1)
        if len(attempts) <= 2:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "database busy")
        return flow_service_pb2.CountFlowsResponse(count=7)

    server = grpc.aio.server()
    handler = grpc.unary_unary_rpc_method_handler(
        count_flows,
        request_deserializer=flow_service_pb2.CountFlowsRequest.FromString,
        response_serializer=flow_service_pb2.CountFlowsResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "flowservice.v1.FlowService", {"CountFlows": handler}
            ),
        )
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield f"127.0.0.1:{port}", attempts
    await server.stop(None)


async def test_unavailable_is_retried_as_by_the_async_client(
    flaky_count: tuple[str, list[int]],
) -> None:
    target, attempts = flaky_count
    with FlowClientSync(target, timeout=10) as blocking:
        assert await asyncio.to_thread(blocking.count_flows) == 7
    assert attempts == [1, 2, 3]
    attempts.clear()
    async with FlowClient(target, timeout=10) as asynchronous:
        assert await asynchronous.count_flows() == 7
    assert attempts == [1, 2, 3]


async def test_without_retries_unavailable_is_raised_at_once(
    flaky_count: tuple[str, list[int]],
) -> None:
    target, attempts = flaky_count
    with FlowClientSync(target, timeout=10, options=NO_RETRIES) as blocking:
        error = await raised_by(blocking.count_flows)
    assert error.code == grpc.StatusCode.UNAVAILABLE
    assert error.message == "database busy"
    assert attempts == [1]
