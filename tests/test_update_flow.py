"""UpdateFlow: tags only, `updated` always (docs/semantics.md#updateflow)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import grpc
import pytest

from flowservice.errors import from_failed_call
from flowservice.v1 import flow_service_pb2, flow_service_pb2_grpc
from tests.helpers import expect_error, when

if TYPE_CHECKING:
    from flowservice.client import FlowClient


async def test_replaces_the_tags(client: FlowClient) -> None:
    created_flow, _ = await client.create_flow("my-flow", tags=["db", "blue"])
    updated = await client.update_flow(created_flow.id, tags=["TB12"])
    assert list(updated.tags) == ["TB12"]
    reread = await client.read_flow(created_flow.id)
    assert reread.id == created_flow.id
    assert list(reread.tags) == ["TB12"]


async def test_tags_are_replaced_whole_with_order_and_duplicates(client: FlowClient) -> None:
    created_flow, _ = await client.create_flow("my-flow", tags=["a", "b"])
    updated = await client.update_flow(created_flow.id, tags=["c", "a", "c"])
    assert list(updated.tags) == ["c", "a", "c"]


async def test_sets_updated_and_keeps_everything_else(client: FlowClient) -> None:
    created_flow, _ = await client.create_flow("my-flow", labels={"env": "dev"})
    before = datetime.now(UTC)
    updated = await client.update_flow(created_flow.id, tags=["x"])
    assert when(updated.updated) >= before
    assert when(updated.updated) > when(created_flow.updated)
    assert updated.created == created_flow.created
    assert (updated.name, updated.labels) == (created_flow.name, created_flow.labels)


async def test_an_update_without_tags_changes_only_updated(client: FlowClient) -> None:
    created_flow, _ = await client.create_flow("my-flow", tags=["db"])
    before = datetime.now(UTC)
    updated = await client.update_flow(created_flow.id)
    assert list(updated.tags) == ["db"]
    assert when(updated.updated) >= before
    assert list((await client.read_flow(created_flow.id)).tags) == ["db"]


async def test_an_empty_list_under_the_tags_mask_clears_the_tags(client: FlowClient) -> None:
    created_flow, _ = await client.create_flow("my-flow", tags=["db"])
    assert list((await client.update_flow(created_flow.id, tags=[])).tags) == []


@pytest.fixture
async def stub(client: FlowClient) -> flow_service_pb2_grpc.FlowServiceAsyncStub:
    return client._stub  # the raw stub, to send masks the typed client never builds


async def test_update_mask_decides_what_is_written(
    client: FlowClient, stub: flow_service_pb2_grpc.FlowServiceAsyncStub
) -> None:
    created_flow, _ = await client.create_flow("my-flow", tags=["db"])
    no_mask = flow_service_pb2.UpdateFlowRequest(id=created_flow.id)
    assert list((await stub.UpdateFlow(no_mask)).flow.tags) == ["db"]
    implied = flow_service_pb2.UpdateFlowRequest(id=created_flow.id, tags=["x"])
    assert list((await stub.UpdateFlow(implied)).flow.tags) == ["x"]
    star = flow_service_pb2.UpdateFlowRequest(id=created_flow.id, tags=[])
    star.update_mask.paths.append("*")
    assert list((await stub.UpdateFlow(star)).flow.tags) == []
    empty_mask = flow_service_pb2.UpdateFlowRequest(id=created_flow.id, tags=["ignored"])
    empty_mask.update_mask.SetInParent()
    assert list((await stub.UpdateFlow(empty_mask)).flow.tags) == []


@pytest.mark.parametrize("path", ["name", "labels", "id", "created", "tag"])
async def test_only_tags_can_be_updated(any_backend_client: FlowClient, path: str) -> None:
    created_flow, _ = await any_backend_client.create_flow("my-flow")
    request = flow_service_pb2.UpdateFlowRequest(id=created_flow.id, tags=["x"])
    request.update_mask.paths.extend(["tags", path])
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await any_backend_client._stub.UpdateFlow(request)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "update_mask.paths[1]" in (raised.value.details() or "")
    assert list((await any_backend_client.read_flow(created_flow.id)).tags) == []


async def test_an_unknown_id_is_not_found(client: FlowClient) -> None:
    await expect_error(client.update_flow(str(uuid.uuid4()), tags=["x"]), grpc.StatusCode.NOT_FOUND)


async def test_a_bad_id_and_a_bad_mask_are_reported_together(
    any_backend_client: FlowClient,
) -> None:
    request = flow_service_pb2.UpdateFlowRequest(id="not-a-uuid", tags=["x"])
    request.update_mask.paths.append("name")
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await any_backend_client._stub.UpdateFlow(request)
    error = from_failed_call(raised.value)
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in error.field_violations] == ["id", "update_mask.paths[0]"]
