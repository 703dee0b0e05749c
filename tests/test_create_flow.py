"""CreateFlow: get-or-create by name (docs/semantics.md#createflow, docs/semantics.md#names)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import grpc
import pytest

from flowservice.client import FlowClient, flow_labels
from flowservice_server.db.tables import flow
from tests.helpers import expect_error, when

if TYPE_CHECKING:
    from tests.factories import Seeder


async def test_creates_a_flow_with_its_name_and_a_new_id(client: FlowClient) -> None:
    created_flow, created = await client.create_flow("my-flow")
    assert created
    assert created_flow.name == "my-flow"
    assert created_flow.id == str(uuid.UUID(created_flow.id))  # lower-case, hyphenated
    assert list(created_flow.tags) == []


async def test_the_same_name_again_returns_the_first_flow_unchanged(client: FlowClient) -> None:
    first, first_created = await client.create_flow("my-flow", tags=["green"], labels={"a": 1})
    again, again_created = await client.create_flow("my-flow", tags=["blue"], labels={"b": 2})
    assert (first_created, again_created) == (True, False)
    assert again == first  # tags, labels and even `updated` are the first call's


async def test_created_and_updated_are_set_when_the_flow_is_created(client: FlowClient) -> None:
    before = datetime.now(UTC)
    created_flow, _ = await client.create_flow("timed")
    after = datetime.now(UTC)
    assert before <= when(created_flow.created) <= after
    assert when(created_flow.updated) >= when(created_flow.created)


async def test_tags_keep_their_order_and_duplicates(client: FlowClient) -> None:
    created_flow, _ = await client.create_flow("tagged", tags=["b", "a", "b", "ü"])
    assert list(created_flow.tags) == ["b", "a", "b", "ü"]
    assert list((await client.read_flow(created_flow.id)).tags) == ["b", "a", "b", "ü"]


async def test_labels_keep_their_value_types(client: FlowClient) -> None:
    labels: dict[str, bool | int | float | str] = {
        "env": "dev",
        "count": 3,
        "ratio": 1.5,
        "on": True,
        "digits": "1",
        "off": False,
    }
    created_flow, _ = await client.create_flow("labelled", labels=labels)
    stored = flow_labels(await client.read_flow(created_flow.id))
    assert stored == labels
    assert stored is not None
    assert [type(stored[k]) for k in labels] == [str, int, float, bool, str, bool]


async def test_labels_absent_and_empty_are_different(client: FlowClient) -> None:
    without, _ = await client.create_flow("no-labels")
    empty, _ = await client.create_flow("empty-labels", labels={})
    assert not without.HasField("labels")
    assert flow_labels(without) is None
    assert empty.HasField("labels")
    assert flow_labels(empty) == {}


async def test_labels_are_stored_as_prefect_stores_them(client: FlowClient, seed: Seeder) -> None:
    created_flow, _ = await client.create_flow("stored", labels={"env": "dev", "n": 1})
    (row,) = await seed.fetch(flow.select().where(flow.c.name == "stored"))
    assert str(row.id) == created_flow.id
    assert row.labels == {"env": "dev", "n": 1}
    assert isinstance(row.labels["n"], int)


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("my flow", id="space"),
        pytest.param("my:flow", id="colon"),
        pytest.param("my\\flow", id="backslash"),
        pytest.param("my👍flow", id="emoji"),
        pytest.param("my|flow", id="pipe"),
        pytest.param("   ", id="only-spaces"),
        pytest.param(" padded ", id="not-trimmed"),
        pytest.param("tab\tand\nnewline", id="control-characters"),
        pytest.param("#?'\"", id="punctuation"),
        pytest.param("x" * 10_000, id="no-length-limit"),
    ],
)
async def test_accepts_every_name_without_a_banned_character(client: FlowClient, name: str) -> None:
    created_flow, created = await client.create_flow(name)
    assert created
    assert created_flow.name == name
    assert (await client.read_flow_by_name(name)).id == created_flow.id


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("my/flow", id="slash"),
        pytest.param("my%flow", id="percent"),
        pytest.param("a&b", id="ampersand"),
        pytest.param("a>b", id="greater-than"),
        pytest.param("a<b", id="less-than"),
        pytest.param("", id="empty"),
    ],
)
async def test_rejects_names_prefect_rejects(any_backend_client: FlowClient, name: str) -> None:
    await expect_error(
        any_backend_client.create_flow(name), grpc.StatusCode.INVALID_ARGUMENT, "name"
    )
    assert await any_backend_client.count_flows() == 0


async def test_names_are_case_sensitive(client: FlowClient) -> None:
    upper, _ = await client.create_flow("Beta")
    lower, created = await client.create_flow("beta")
    assert created
    assert upper.id != lower.id


async def test_fifty_concurrent_creates_of_one_name_make_one_flow(
    client: FlowClient, seed: Seeder
) -> None:
    results = await asyncio.gather(
        *(client.create_flow("contended", tags=[str(i)]) for i in range(50))
    )
    assert len({created_flow.id for created_flow, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    assert await seed.count(flow) == 1


async def test_concurrent_creates_of_many_names_all_succeed(client: FlowClient) -> None:
    results = await asyncio.gather(*(client.create_flow(f"flow-{i % 10}") for i in range(60)))
    assert sum(created for _, created in results) == 10
    assert await client.count_flows() == 10
