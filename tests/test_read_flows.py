"""ReadFlows with flow filters, sorting and paging.

See docs/semantics.md#readflows, docs/semantics.md#sorting, docs/semantics.md#paging
and, for FlowFilter, docs/semantics.md#filters.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import grpc
import pytest

from flowservice.client import FlowClient, any_of
from flowservice.v1 import filters_pb2, flow_service_pb2
from tests.helpers import expect_error, names

if TYPE_CHECKING:
    from tests.factories import Seeder


@pytest.fixture
async def two_flows(client: FlowClient) -> tuple[str, str]:
    first, _ = await client.create_flow("my-flow-1", tags=["db", "blue"])
    second, _ = await client.create_flow("my-flow-2", tags=["db"])
    return first.id, second.id


async def test_no_filter_returns_every_flow(client: FlowClient, two_flows: tuple[str, str]) -> None:
    assert names(await client.read_flows()) == ["my-flow-1", "my-flow-2"]


async def test_an_empty_database_returns_nothing(client: FlowClient) -> None:
    assert await client.read_flows() == []


async def test_limit_and_offset_page_in_name_order(
    client: FlowClient, two_flows: tuple[str, str]
) -> None:
    assert names(await client.read_flows(limit=1)) == ["my-flow-1"]
    assert names(await client.read_flows(offset=1)) == ["my-flow-2"]
    assert names(await client.read_flows(offset=1, limit=1)) == ["my-flow-2"]
    assert await client.read_flows(offset=2) == []


async def test_limit_zero_returns_nothing(client: FlowClient, two_flows: tuple[str, str]) -> None:
    assert await client.read_flows(limit=0) == []


async def test_without_a_limit_at_most_200_flows_come_back(
    client: FlowClient, seed: Seeder
) -> None:
    await asyncio.gather(*(seed.flow(f"flow-{i:03}") for i in range(201)))
    page = await client.read_flows()
    assert len(page) == 200
    assert page[-1].name == "flow-199"
    assert len(await client.read_flows(limit=200)) == 200


async def test_sorts_by_name_both_ways(client: FlowClient, two_flows: tuple[str, str]) -> None:
    ascending = await client.read_flows(sort=flow_service_pb2.FLOW_SORT_NAME_ASC)
    descending = await client.read_flows(sort=flow_service_pb2.FLOW_SORT_NAME_DESC)
    assert names(ascending) == ["my-flow-1", "my-flow-2"]
    assert names(descending) == ["my-flow-2", "my-flow-1"]


async def test_name_order_is_byte_order(client: FlowClient) -> None:
    for name in ["gamma_x", "alpha", "gammaYx", "Beta", "üNï", "ÜNÏ"]:
        await client.create_flow(name)
    expected = ["Beta", "alpha", "gammaYx", "gamma_x", "ÜNÏ", "üNï"]
    assert names(await client.read_flows()) == expected
    assert (
        names(await client.read_flows(sort=flow_service_pb2.FLOW_SORT_NAME_DESC)) == expected[::-1]
    )


async def test_sorts_by_created_and_updated_newest_first(client: FlowClient) -> None:
    for name in ["a", "b", "c"]:
        await client.create_flow(name)
    by_created = await client.read_flows(sort=flow_service_pb2.FLOW_SORT_CREATED_DESC)
    assert names(by_created) == ["c", "b", "a"]
    first = (await client.read_flow_by_name("a")).id
    await client.update_flow(first, tags=["touched"])
    assert names(await client.read_flows(sort=flow_service_pb2.FLOW_SORT_UPDATED_DESC)) == [
        "a",
        "c",
        "b",
    ]


async def test_time_sorts_break_ties_by_id_so_pages_are_stable(
    client: FlowClient, seed: Seeder
) -> None:
    same = datetime(2026, 1, 1, tzinfo=UTC)
    ids = [uuid.UUID(int=i) for i in (3, 1, 2)]
    for number, flow_id in enumerate(ids):
        await seed.flow(f"tied-{number}", id=flow_id, created=same, updated=same)
    for sort in (flow_service_pb2.FLOW_SORT_CREATED_DESC, flow_service_pb2.FLOW_SORT_UPDATED_DESC):
        pages = [await client.read_flows(sort=sort, offset=i, limit=1) for i in range(3)]
        assert [page[0].id for page in pages] == [str(uuid.UUID(int=i)) for i in (3, 2, 1)]


async def test_tags_all_needs_every_tag(client: FlowClient, two_flows: tuple[str, str]) -> None:
    await client.create_flow("my-flow-3")
    assert names(await client.read_flows(flows={"tags": {"all": ["db", "blue"]}})) == ["my-flow-1"]
    assert names(await client.read_flows(flows={"tags": {"all": ["db"]}})) == [
        "my-flow-1",
        "my-flow-2",
    ]
    assert await client.read_flows(flows={"tags": {"all": ["db", "red"]}}) == []
    assert len(await client.read_flows(flows={"tags": {"all": ["db", "db"]}})) == 2


async def test_tags_is_null_means_no_tags(client: FlowClient, two_flows: tuple[str, str]) -> None:
    await client.create_flow("my-flow-3")
    assert names(await client.read_flows(flows={"tags": {"is_null": True}})) == ["my-flow-3"]
    assert names(await client.read_flows(flows={"tags": {"is_null": False}})) == [
        "my-flow-1",
        "my-flow-2",
    ]


async def test_name_any_matches_exact_names(client: FlowClient, two_flows: tuple[str, str]) -> None:
    await client.create_flow("my-flow-3")
    assert names(await client.read_flows(flows={"name": {"any": ["my-flow-1"]}})) == ["my-flow-1"]
    chosen = await client.read_flows(flows={"name": {"any": ["my-flow-1", "my-flow-3"]}})
    assert names(chosen) == ["my-flow-1", "my-flow-3"]
    assert await client.read_flows(flows={"name": {"any": ["MY-FLOW-1", "my-flow"]}}) == []


async def test_id_any_and_not_any(client: FlowClient, two_flows: tuple[str, str]) -> None:
    first, second = two_flows
    third, _ = await client.create_flow("my-flow-3")
    assert names(await client.read_flows(flows={"id": {"any": [first]}})) == ["my-flow-1"]
    both = await client.read_flows(flows={"id": {"any": [first, third.id.upper()]}})
    assert names(both) == ["my-flow-1", "my-flow-3"]
    kept = await client.read_flows(
        flows={"id": {"any": [first, second, third.id], "not_any": [second]}}
    )
    assert names(kept) == ["my-flow-1", "my-flow-3"]
    assert await client.read_flows(flows={"id": {"any": [str(uuid.uuid4())]}}) == []


async def test_an_empty_any_list_matches_nothing(
    client: FlowClient, two_flows: tuple[str, str]
) -> None:
    assert await client.read_flows(flows={"name": {"any": []}}) == []
    assert await client.read_flows(flows={"id": {"any": []}}) == []
    assert (
        await client.read_flows(
            flows=filters_pb2.FlowFilter(name=filters_pb2.FlowFilterName(any=any_of()))
        )
        == []
    )


async def test_empty_not_any_all_and_like_are_ignored(
    client: FlowClient, two_flows: tuple[str, str]
) -> None:
    ignored = {"id": {"not_any": []}, "tags": {"all": []}, "name": {"like": ""}}
    assert len(await client.read_flows(flows=ignored)) == 2


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        pytest.param("flow", ["Other_FLOW", "my-flow-1", "my-flow-2"], id="substring"),
        pytest.param("FLOW-1", ["my-flow-1"], id="case-insensitive"),
        pytest.param("_", ["Other_FLOW", "my-flow-1", "my-flow-2"], id="underscore-wildcard"),
        pytest.param("r_f", ["Other_FLOW"], id="underscore-matches-one-character"),
        pytest.param("my%2", ["my-flow-2"], id="percent-is-a-wildcard"),
        pytest.param("nope", [], id="no-match"),
    ],
)
async def test_name_like_is_a_case_insensitive_substring_with_wildcards(
    client: FlowClient, two_flows: tuple[str, str], pattern: str, expected: list[str]
) -> None:
    await client.create_flow("Other_FLOW")
    assert names(await client.read_flows(flows={"name": {"like": pattern}})) == expected


async def test_operator_or_takes_either_condition(
    client: FlowClient, two_flows: tuple[str, str]
) -> None:
    await client.create_flow("my-flow-3")
    either = {
        "operator": "OPERATOR_OR",
        "name": {"any": ["my-flow-3"]},
        "tags": {"all": ["blue"]},
    }
    assert names(await client.read_flows(flows=either)) == ["my-flow-1", "my-flow-3"]
    both = {**either, "operator": "OPERATOR_AND"}
    assert await client.read_flows(flows=both) == []


@pytest.mark.parametrize(
    "empty_child",
    [
        pytest.param({"name": {}}, id="empty-object"),
        pytest.param({"name": {"like": ""}}, id="empty-like"),
        pytest.param({"tags": {"all": []}}, id="empty-all"),
        pytest.param({"deployment": {}}, id="empty-deployment"),
    ],
)
async def test_or_with_an_empty_child_matches_everything(
    client: FlowClient, two_flows: tuple[str, str], empty_child: dict[str, object]
) -> None:
    flows = {"operator": "OPERATOR_OR", "name": {"any": ["my-flow-1"]}, **empty_child}
    assert len(await client.read_flows(flows=flows)) == 2


async def test_an_empty_flow_filter_matches_everything(
    client: FlowClient, two_flows: tuple[str, str]
) -> None:
    assert len(await client.read_flows(flows={})) == 2
    assert len(await client.read_flows(flows={"operator": "OPERATOR_OR"})) == 2


async def test_deployment_is_null_tells_deployed_flows(
    client: FlowClient, seed: Seeder, two_flows: tuple[str, str]
) -> None:
    first, _ = two_flows
    assert len(await client.read_flows(flows={"deployment": {"is_null": True}})) == 2
    await seed.deployment(uuid.UUID(first), "d-1")
    assert names(await client.read_flows(flows={"deployment": {"is_null": True}})) == ["my-flow-2"]
    assert names(await client.read_flows(flows={"deployment": {"is_null": False}})) == ["my-flow-1"]


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [
        pytest.param({"limit": 201}, "limit", id="limit-above-200"),
        pytest.param({"limit": -1}, "limit", id="negative-limit"),
        pytest.param({"offset": -1}, "offset", id="negative-offset"),
        pytest.param({"sort": 99}, "sort", id="unknown-sort"),
    ],
)
async def test_rejects_bad_paging_and_sorting(
    any_backend_client: FlowClient, request_fields: dict[str, int], field: str
) -> None:
    await expect_error(
        any_backend_client.read_flows(**request_fields),  # type: ignore[arg-type]  # deliberately out of range
        grpc.StatusCode.INVALID_ARGUMENT,
        field,
    )
