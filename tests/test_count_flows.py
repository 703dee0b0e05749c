"""CountFlows agrees with ReadFlows (docs/semantics.md#countflows)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from flowservice.client import FlowClient


@pytest.fixture
async def flows(client: FlowClient) -> None:
    await client.create_flow("my-flow-1", tags=["db", "blue"])
    await client.create_flow("my-flow-2", tags=["db"])
    await client.create_flow("other")


async def test_an_empty_database_counts_zero(client: FlowClient) -> None:
    assert await client.count_flows() == 0


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        pytest.param({}, 3, id="no-filter"),
        pytest.param({"flows": {}}, 3, id="empty-flow-filter"),
        pytest.param({"flows": {"tags": {"all": ["db"]}}}, 2, id="tags-all"),
        pytest.param({"flows": {"tags": {"is_null": True}}}, 1, id="tags-is-null"),
        pytest.param({"flows": {"name": {"like": "my"}}}, 2, id="name-like"),
        pytest.param({"flows": {"name": {"any": []}}}, 0, id="empty-any"),
        pytest.param(
            {
                "flows": {
                    "operator": "OPERATOR_OR",
                    "name": {"any": ["other"]},
                    "tags": {"all": ["blue"]},
                }
            },
            2,
            id="operator-or",
        ),
    ],
)
async def test_counts_what_read_flows_returns(
    client: FlowClient, flows: None, filters: dict[str, Any], expected: int
) -> None:
    count = await client.count_flows(**filters)
    assert count == expected
    assert count == len(await client.read_flows(**filters))


async def test_count_ignores_the_page_size_limit(client: FlowClient) -> None:
    for number in range(205):
        await client.create_flow(f"flow-{number}")
    assert await client.count_flows() == 205
