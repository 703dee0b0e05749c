"""ReadFlow and ReadFlowByName (docs/semantics.md#readflow-and-readflowbyname)."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import grpc
import pytest

from tests.helpers import expect_error

if TYPE_CHECKING:
    from flowservice.client import FlowClient


async def test_reads_a_flow_by_id(client: FlowClient) -> None:
    created_flow, _ = await client.create_flow("my-flow", tags=["a"])
    assert await client.read_flow(created_flow.id) == created_flow


@pytest.mark.parametrize(
    "spelling",
    [
        pytest.param(str.upper, id="upper-case"),
        pytest.param(lambda i: i.replace("-", ""), id="no-hyphens"),
        pytest.param(lambda i: i.replace("-", "").upper(), id="no-hyphens-upper-case"),
        pytest.param(lambda i: "{" + i + "}", id="braces"),
        pytest.param(lambda i: "urn:uuid:" + i, id="urn"),
    ],
)
async def test_accepts_every_uuid_spelling_prefect_accepts(client: FlowClient, spelling) -> None:  # type: ignore[no-untyped-def]  # parametrized callable
    created_flow, _ = await client.create_flow("my-flow")
    assert (await client.read_flow(spelling(created_flow.id))).id == created_flow.id


async def test_an_unknown_id_is_not_found(client: FlowClient) -> None:
    missing = str(uuid.uuid4())
    error = await expect_error(client.read_flow(missing), grpc.StatusCode.NOT_FOUND)
    assert error.resource_info is not None
    assert error.resource_info.resource_type == "flowservice.v1.Flow"
    assert error.resource_info.resource_name == missing
    assert error.error_info is not None
    assert error.error_info.reason == "FLOW_NOT_FOUND"
    assert dict(error.error_info.metadata) == {"id": missing}


async def test_reads_a_flow_by_name(client: FlowClient) -> None:
    created_flow, _ = await client.create_flow("my-flow")
    await client.create_flow("my-flow-2")
    assert await client.read_flow_by_name("my-flow") == created_flow


@pytest.mark.parametrize(
    "name", ["my flow", "my:flow", "my\\flow", "my👍flow", "my|flow", "it's", "a.b-c"]
)
async def test_reads_unusual_names_exactly(client: FlowClient, name: str) -> None:
    created_flow, _ = await client.create_flow(name)
    assert (await client.read_flow_by_name(name)).id == created_flow.id


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("my-flows", id="unknown"),
        pytest.param("MY-FLOW", id="case-sensitive"),
        pytest.param(" my-flow", id="not-trimmed"),
        pytest.param("my/flow", id="banned-slash"),
        pytest.param("my%flow", id="banned-percent"),
    ],
)
async def test_any_other_name_is_not_found(client: FlowClient, name: str) -> None:
    await client.create_flow("my-flow")
    error = await expect_error(client.read_flow_by_name(name), grpc.StatusCode.NOT_FOUND)
    assert error.resource_info is not None
    assert error.resource_info.resource_name == name
