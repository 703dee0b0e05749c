"""Prefect's keywords and filter shapes through the client, against a real server:
each Prefect form must select exactly what FlowService's own form selects."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from flowservice import prefect_compat
from flowservice.client import FlowClient, FlowClientSync, InvalidArgument
from flowservice.v1 import flow_service_pb2

if TYPE_CHECKING:
    from collections.abc import Sequence


class FakeModel:
    """Stands in for a pydantic filter (Prefect is not installed here): what
    `model_dump(mode="json", exclude_unset=...)` gives is all the client uses."""

    def __init__(self, dumped: dict[str, Any], unset: Sequence[str] = ()) -> None:
        self.dumped = dumped
        self.unset = unset
        self.calls: list[dict[str, Any]] = []

    def model_dump(self, *, mode: str = "python", exclude_unset: bool = False) -> dict[str, Any]:
        self.calls.append({"mode": mode, "exclude_unset": exclude_unset})
        if exclude_unset:
            return {k: v for k, v in self.dumped.items() if k not in self.unset}
        return dict(self.dumped)


def names(flows: Any) -> list[str]:
    return [flow.name for flow in flows]


async def _seed(client: FlowClient) -> None:
    await client.batch_create_flows([("etl-a", ["db"]), ("etl-b", ["db", "prod"]), ("report", [])])


async def test_prefect_keywords_and_json(client: FlowClient) -> None:
    await _seed(client)
    prefect = {"operator": "and_", "name": {"like_": "etl", "any_": None}, "tags": {"all_": ["db"]}}
    ours = {"operator": "OPERATOR_AND", "name": {"like": "etl"}, "tags": {"all": ["db"]}}
    expected = names(await client.read_flows(flows=ours, sort="FLOW_SORT_NAME_ASC"))
    assert expected == ["etl-a", "etl-b"]
    assert names(await client.read_flows(flow_filter=prefect, sort="NAME_ASC")) == expected
    # Prefect's JSON under our keyword is recognised and translated too.
    assert names(await client.read_flows(flows=prefect, sort="NAME_ASC")) == expected
    assert await client.count_flows(flow_filter=prefect) == 2
    page = await client.read_flows_page(flow_filter=prefect, sort="NAME_DESC", limit=1)
    assert names(page.flows) == ["etl-b"]
    assert names([f async for f in client.iter_flows(flow_filter=prefect, sort="NAME_ASC")]) == (
        expected
    )
    streamed = [f async for f in client.stream_flows(flow_filter=prefect, sort="NAME_ASC")]
    assert names(streamed) == expected
    assert await client.count_flows(deployment_filter={"id": {"any_": []}}) == 0


async def test_prefect_objects_are_dumped_as_prefects_client_does(client: FlowClient) -> None:
    await _seed(client)
    flow_filter = FakeModel({"operator": "and_", "id": None, "tags": {"all_": ["prod"]}})
    assert names(await client.read_flows(flow_filter=flow_filter)) == ["etl-b"]
    assert flow_filter.calls == [{"mode": "json", "exclude_unset": False}]
    run_filter = FakeModel({"state": None, "name": {"any_": ["x"]}}, unset=["name"])
    # name unset: left out, so this is the empty filter ("has some run"), not "named x".
    expected = await client.count_flows(flow_runs={})
    assert await client.count_flows(flow_run_filter=run_filter) == expected
    assert run_filter.calls == [{"mode": "json", "exclude_unset": True}]


def test_the_sync_client_takes_them_too() -> None:
    signature_async = FlowClient.read_flows.__annotations__
    signature_sync = FlowClientSync.read_flows.__annotations__
    for keyword in prefect_compat.KEYWORDS:
        assert signature_async[keyword] == signature_sync[keyword] == "PrefectFilter"


BAD: list[Any] = [
    pytest.param({"flows": {}, "flow_filter": {}}, "flows", id="both-forms"),
    pytest.param({"flow_filter": {"name": {"startswith_": "a"}}}, "flows", id="untranslatable"),
    pytest.param({"flow_filter": 3}, "flows", id="not-a-filter"),
    pytest.param({"sort": "NAME_SIDEWAYS"}, "sort", id="unknown-sort"),
    pytest.param(
        {"task_run_filter": {"flow_run_id": {"is_null_": None}}}, "task_runs", id="explicit-null"
    ),
]


@pytest.mark.parametrize(("arguments", "field"), BAD)
async def test_bad_prefect_input_is_invalid_argument(arguments: dict[str, Any], field: str) -> None:
    async with FlowClient("127.0.0.1:1", wait_for_ready=False) as client:
        with pytest.raises(InvalidArgument) as raised:
            await client.read_flows(**arguments)
    assert [v.field for v in raised.value.field_violations] == [field]


def test_translate_sort() -> None:
    assert prefect_compat.translate_sort("NAME_ASC") == flow_service_pb2.FLOW_SORT_NAME_ASC
    assert prefect_compat.translate_sort("FLOW_SORT_CREATED_DESC") == (
        flow_service_pb2.FLOW_SORT_CREATED_DESC
    )
