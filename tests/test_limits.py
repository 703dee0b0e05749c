"""Bounds on request size: every list and string has one, a request within them is served
(its SQL stays inside SQLite's and PostgreSQL's own limits), and one past them is
INVALID_ARGUMENT naming the field, cheaply, with details that fit in a client's trailers."""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from google.protobuf.descriptor import FieldDescriptor

from flowservice.client import FlowClient
from flowservice.v1 import flow_service_pb2
from flowservice_server.db.types import STATE_TYPES
from flowservice_server.errors import MAX_REPORTED_VIOLATIONS, clip
from flowservice_server.limits import MAX_ITEMS, MAX_TEXT_LENGTH, MAX_TOTAL_ITEMS
from tests.helpers import expect_error, names
from tests.processes import start

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from google.protobuf.descriptor import Descriptor
    from google.protobuf.message import Message

    from tests.factories import Seeder

INVALID = grpc.StatusCode.INVALID_ARGUMENT
TOO_LONG = "n" * (MAX_TEXT_LENGTH + 1)


def list_paths(descriptor: Descriptor, prefix: str = "") -> Iterator[str]:
    """Every list in a request: repeated strings and `ListValue`s, by field path."""
    for field in descriptor.fields:
        path = f"{prefix}{field.name}"
        if field.type != FieldDescriptor.TYPE_MESSAGE:
            if field.is_repeated:
                yield path
        else:
            message = field.message_type
            assert message is not None
            if message.full_name == "google.protobuf.ListValue":
                yield path
            elif not message.full_name.startswith("google.protobuf."):
                yield from list_paths(message, f"{path}.")


FILTER_LISTS = sorted(list_paths(flow_service_pb2.CountFlowsRequest.DESCRIPTOR))


def valid_items(path: str, count: int) -> list[str]:
    """`count` values that the field at `path` accepts."""
    segments = path.split(".")
    if segments[-3:-1] == ["state", "type"]:
        return [STATE_TYPES[i % len(STATE_TYPES)] for i in range(count)]
    if any(segment == "id" or segment.endswith("_id") for segment in segments):
        return [str(uuid.UUID(int=i + 1)) for i in range(count)]
    return [f"item-{i}" for i in range(count)]


def fill(request: Message, path: str, items: list[str]) -> None:
    *parents, name = path.split(".")
    message = request
    for parent in parents:
        message = getattr(message, parent)
    target = getattr(message, name)
    target.extend(items)  # a ListValue or a repeated string field


async def call(client: FlowClient, method: str, request: Message) -> Any:
    return await client._call(getattr(client._stub, method), request)


def test_the_walk_finds_every_filter_list() -> None:
    # A list the walk misses would go untested below.
    assert len(FILTER_LISTS) == 55  # 37, and the flow-run filter again as latest_flow_run
    assert "flows.tags.all" in FILTER_LISTS
    assert "flow_runs.created_by.id" in FILTER_LISTS


@pytest.mark.parametrize("path", FILTER_LISTS)
async def test_each_filter_list_is_served_at_its_limit_and_refused_past_it(
    client: FlowClient, path: str
) -> None:
    for request_type, method in (
        (flow_service_pb2.ReadFlowsRequest, "ReadFlows"),
        (flow_service_pb2.CountFlowsRequest, "CountFlows"),
    ):
        at_limit = request_type()
        fill(at_limit, path, valid_items(path, MAX_ITEMS))
        await call(client, method, at_limit)
        past = request_type()
        fill(past, path, valid_items(path, MAX_ITEMS + 1))
        error = await expect_error(call(client, method, past), INVALID, path)
        assert f"at most {MAX_ITEMS:,}" in error.field_violations[0].description


async def test_a_request_may_fill_lists_up_to_the_total(client: FlowClient) -> None:
    """Ten full lists: 10,000 bound values, within PostgreSQL's 32,767 parameters."""
    lists = [p for p in FILTER_LISTS if p.startswith(("flows.", "flow_runs."))][:11]
    request = flow_service_pb2.ReadFlowsRequest()
    for path in lists[:10]:
        fill(request, path, valid_items(path, MAX_ITEMS))
    await call(client, "ReadFlows", request)
    fill(request, lists[10], valid_items(lists[10], 1))
    error = await expect_error(call(client, "ReadFlows", request), INVALID)
    (violation,) = error.field_violations  # on the list that crossed the total, in field order
    assert violation.field in lists
    assert f"more than {MAX_TOTAL_ITEMS:,} items" in violation.description


async def test_all_tags_at_the_limit_match_exactly(client: FlowClient, seed: Seeder) -> None:
    """One condition per tag once exceeded SQLite's expression depth at ~1,000 tags."""
    tags = [f"tag-{i}" for i in range(MAX_ITEMS)]
    await client.create_flow("every-tag", tags=tags)
    await client.create_flow("all-but-one", tags=tags[:-1])
    other = await seed.flow("runs")
    await seed.flow_run(other, "tagged-run", tags=tags)
    assert names(await client.read_flows(flows={"tags": {"all": tags}})) == ["every-tag"]
    assert await client.count_flows(flows={"tags": {"all": tags}}) == 1
    assert names(await client.read_flows(flow_runs={"tags": {"all": tags}})) == ["runs"]
    assert names(await client.read_flows(flow_runs={"tags": {"all": tags[::-1]}})) == ["runs"]


async def test_a_like_pattern_past_the_limit_is_refused_not_internal(client: FlowClient) -> None:
    await client.create_flow("🌊" * MAX_TEXT_LENGTH)
    found = await client.read_flows(flows={"name": {"like": "🌊" * MAX_TEXT_LENGTH}})
    assert len(found) == 1
    error = await expect_error(
        client.read_flows(flows={"name": {"like": "x" * 50_000}}), INVALID, "flows.name.like"
    )
    assert "50,000 characters long" in error.field_violations[0].description


@pytest.mark.parametrize(
    ("method", "request_", "field"),
    [
        pytest.param(
            "CreateFlow", flow_service_pb2.CreateFlowRequest(name=TOO_LONG), "name", id="name"
        ),
        pytest.param(
            "CreateFlow",
            flow_service_pb2.CreateFlowRequest(name="n", tags=[TOO_LONG]),
            "tags[0]",
            id="tag",
        ),
        pytest.param(
            "CreateFlow",
            flow_service_pb2.CreateFlowRequest(name="n", tags=["t"] * 1_001),
            "tags",
            id="tags",
        ),
        pytest.param(
            "ReadFlowByName",
            flow_service_pb2.ReadFlowByNameRequest(name=TOO_LONG),
            "name",
            id="lookup",
        ),
        pytest.param(
            "ReadFlow", flow_service_pb2.ReadFlowRequest(id="0" * 4_000_000), "id", id="id-4MB"
        ),
        pytest.param(
            "UpdateFlow",
            flow_service_pb2.UpdateFlowRequest(id=str(uuid.uuid4()), tags=["t"] * 100_000),
            "tags",
            id="update-100k-tags",
        ),
    ],
)
async def test_strings_and_lists_of_every_rpc_are_bounded(
    any_backend_client: FlowClient, method: str, request_: Message, field: str
) -> None:
    error = await expect_error(call(any_backend_client, method, request_), INVALID, field)
    assert "at most" in error.field_violations[0].description
    assert len(error.message) < 400


async def test_labels_are_bounded(client: FlowClient) -> None:
    request = flow_service_pb2.CreateFlowRequest(name="labelled")
    request.labels.update({"note": "v" * MAX_TEXT_LENGTH})
    await call(client, "CreateFlow", request)
    request = flow_service_pb2.CreateFlowRequest(name="too-long")
    request.labels.update({"note": "v" * (MAX_TEXT_LENGTH + 1), "k" * (MAX_TEXT_LENGTH + 1): 1})
    error = await expect_error(call(client, "CreateFlow", request), INVALID)
    assert sorted(v.field for v in error.field_violations) == [
        "labels.`" + "k" * 40 + "…`",
        "labels.note",
    ]
    many = flow_service_pb2.CreateFlowRequest(name="many")
    many.labels.update({f"k{i}": i for i in range(MAX_ITEMS + 1)})
    await expect_error(call(client, "CreateFlow", many), INVALID, "labels")


async def test_a_huge_list_is_refused_before_its_items_are_examined(
    any_backend_client: FlowClient,
) -> None:
    """100,000 items once cost seconds and hundreds of MB; now one short violation."""
    request = flow_service_pb2.ReadFlowsRequest()
    request.flows.name.any.extend(f"name-{i}" for i in range(100_000))
    error = await expect_error(
        call(any_backend_client, "ReadFlows", request), INVALID, "flows.name.any"
    )
    assert "100,000 items" in error.field_violations[0].description


async def test_many_violations_are_counted_but_reported_briefly(
    any_backend_client: FlowClient,
) -> None:
    """Trailers past 8 KiB would fail on the client's side with another status."""
    bad = [f"{'z' * 900}-{i}" for i in range(MAX_ITEMS)]
    error = await expect_error(
        any_backend_client.read_flows(flows={"id": {"any": bad}}),
        INVALID,
        *[f"flows.id.any[{i}]" for i in range(MAX_REPORTED_VIOLATIONS)],
    )
    assert f"(and {MAX_ITEMS - 1} more)" in error.message
    assert all(len(v.description) <= 300 for v in error.field_violations)


async def test_not_found_for_the_longest_unicode_name_fits_the_trailers(
    client: FlowClient,
) -> None:
    name = "🌊" * MAX_TEXT_LENGTH  # 40,000 bytes; grpc-message would percent-encode them
    error = await expect_error(client.read_flow_by_name(name), grpc.StatusCode.NOT_FOUND)
    assert error.resource_info is not None
    assert error.resource_info.resource_name == clip(name)
    assert len(error.message) < 200


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def test_memory_returns_to_its_level_after_oversized_requests(tmp_path: Path) -> None:
    """Oversized requests once raised the server's memory by hundreds of MB, and it kept
    climbing; now, after a first round, more rounds leave it where it was."""
    database = tmp_path / "memory.db"
    server = await start(
        ["--address", "127.0.0.1:0", "--workers", "1", "--database-url", f"sqlite:///{database}"],
        tmp_path,
        {"FLOWSERVICE_ACCESS_LOG": "false"},
    )
    try:
        async with FlowClient(server.address, timeout=60) as client:
            huge = flow_service_pb2.ReadFlowsRequest()
            huge.flows.name.any.extend(f"name-{i}" for i in range(100_000))
            large = flow_service_pb2.ReadFlowsRequest()
            large.flows.tags.all.extend(f"tag-{i}" for i in range(MAX_ITEMS))
            large.flow_runs.name.any.extend(f"run-{i}" for i in range(MAX_ITEMS))

            async def one_round() -> None:
                for _ in range(4):
                    await expect_error(call(client, "ReadFlows", huge), INVALID)
                    await call(client, "ReadFlows", large)
                    await call(
                        client, "CountFlows", flow_service_pb2.CountFlowsRequest(flows=large.flows)
                    )

            await one_round()
            await asyncio.sleep(0.2)
            settled = _rss_kib(server.process.pid)
            for _ in range(3):
                await one_round()
            after = _rss_kib(server.process.pid)
        assert after - settled < 40 * 1024, f"RSS grew from {settled} KiB to {after} KiB"
    finally:
        assert await server.stop() == 0
