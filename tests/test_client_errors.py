"""The client's error classes: one per status, chosen from the call, and bad local input
(a misspelled dict filter, an id of the wrong type) raised as InvalidArgument before any call."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import grpc
import pytest

from flowservice import errors
from flowservice.client import (
    Aborted,
    FlowClient,
    FlowClientSync,
    FlowNotFound,
    InvalidArgument,
    NotFound,
    RpcError,
    Unavailable,
)

if TYPE_CHECKING:
    from flowservice_server.app import RunningServer


def test_every_status_but_ok_has_its_class() -> None:
    for code in grpc.StatusCode:
        if code != grpc.StatusCode.OK:
            cls = errors.ERROR_CLASSES[code]
            assert issubclass(cls, RpcError)
            assert cls.__doc__ is not None
            assert cls.__doc__.startswith(code.name)


async def test_a_missing_flow_is_flow_not_found(any_backend_client: FlowClient) -> None:
    gone = uuid.uuid4()
    with pytest.raises(FlowNotFound) as raised:
        await any_backend_client.read_flow(gone)  # a uuid.UUID is an id too
    assert isinstance(raised.value, NotFound)
    assert raised.value.code == grpc.StatusCode.NOT_FOUND
    assert raised.value.resource_info is not None
    assert raised.value.resource_info.resource_name == str(gone)
    with pytest.raises(FlowNotFound):
        await any_backend_client.batch_get_flows(ids=[gone])


async def test_a_stale_etag_is_aborted(any_backend_client: FlowClient) -> None:
    flow, _ = await any_backend_client.create_flow("etl")
    await any_backend_client.update_flow(flow.id, tags=["a"])
    with pytest.raises(Aborted) as raised:
        await any_backend_client.delete_flow(uuid.UUID(flow.id), etag=flow.etag)
    assert raised.value.code == grpc.StatusCode.ABORTED


async def test_server_violation_is_printed_once(any_backend_client: FlowClient) -> None:
    with pytest.raises(InvalidArgument) as raised:
        await any_backend_client.read_flow("not-a-uuid")
    text = str(raised.value)
    assert raised.value.field_violations[0].field == "id"
    violation = raised.value.field_violations[0]
    assert text.count(violation.description) == 1, text


async def test_uuid_ids_work_everywhere(any_backend_client: FlowClient) -> None:
    flow, _ = await any_backend_client.create_flow("etl")
    flow_id = uuid.UUID(flow.id)
    assert (await any_backend_client.read_flow(flow_id)).name == "etl"
    assert [f.name for f in await any_backend_client.batch_get_flows(ids=[flow_id])] == ["etl"]
    updated = await any_backend_client.update_flow(flow_id, tags=["x"])
    await any_backend_client.delete_flow(flow_id, etag=updated.etag)


LOCAL_BAD_INPUT: list[Any] = [
    pytest.param(lambda c: c.read_flows(flows={"nmae": {"any": ["x"]}}), "flows", id="typo"),
    pytest.param(lambda c: c.count_flows(flow_runs={"state": 3}), "flow_runs", id="wrong-type"),
    pytest.param(lambda c: c.read_flow(42), "id", id="int-id"),
    pytest.param(lambda c: c.delete_flow(b"x"), "id", id="bytes-id"),
    pytest.param(lambda c: c.batch_get_flows(ids=["x", 7]), "ids[1]", id="int-in-ids"),
    pytest.param(lambda c: c.batch_get_flows(ids=str(uuid.uuid4())), "ids", id="str-as-ids"),
]


@pytest.mark.parametrize(("call", "field"), LOCAL_BAD_INPUT)
async def test_bad_local_input_is_invalid_argument(call: Any, field: str) -> None:
    """Raised before any call: no server is listening on this port."""
    async with FlowClient("127.0.0.1:1", wait_for_ready=False) as client:
        with pytest.raises(InvalidArgument) as raised:
            await call(client)
    assert raised.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in raised.value.field_violations] == [field]
    assert str(raised.value).count(raised.value.field_violations[0].description) == 1


@pytest.mark.parametrize(("call", "field"), LOCAL_BAD_INPUT)
def test_bad_local_input_is_invalid_argument_sync(call: Any, field: str) -> None:
    with (
        FlowClientSync("127.0.0.1:1", wait_for_ready=False) as client,
        pytest.raises(InvalidArgument) as raised,
    ):
        call(client)
    assert [v.field for v in raised.value.field_violations] == [field]


async def test_no_server_is_unavailable(any_backend_server: RunningServer) -> None:
    async with FlowClient("127.0.0.1:1", wait_for_ready=False, timeout=10) as client:
        with pytest.raises(Unavailable):
            await client.count_flows()
