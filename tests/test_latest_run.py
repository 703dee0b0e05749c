"""The latest-run filter: a flow matches when its latest run (greatest start_time, runs never
started left out, ties by the greater id) meets the filter; checked on both databases against
an evaluation in Python of the same definition."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import grpc
import pytest

from flowservice.v1 import flow_service_pb2
from tests.helpers import expect_error, names

if TYPE_CHECKING:
    from flowservice.client import FlowClient
    from tests.factories import Seeder

T0 = datetime(2026, 11, 27, 2, 0, tzinfo=UTC)
FAILED = {"state": {"type": {"any": ["FAILED"]}}}


async def _run(
    seed: Seeder, flow_id: uuid.UUID, state: str, start: datetime | None, **values: Any
) -> uuid.UUID:
    values.setdefault("expected_start_time", start or T0)
    return await seed.flow_run(
        flow_id, f"run-{uuid.uuid4().hex[:8]}", state_type=state, start_time=start, **values
    )


async def test_only_the_latest_started_run_counts(client: FlowClient, seed: Seeder) -> None:
    recovered = await seed.flow("recovered")  # failed, then completed
    await _run(seed, recovered, "FAILED", T0)
    await _run(seed, recovered, "COMPLETED", T0 + timedelta(hours=1))
    broken = await seed.flow("broken")  # completed, then failed
    await _run(seed, broken, "COMPLETED", T0)
    await _run(seed, broken, "FAILED", T0 + timedelta(hours=1))
    waiting = await seed.flow("waiting")  # failed; a newer run never started
    await _run(seed, waiting, "FAILED", T0)
    await _run(seed, waiting, "SCHEDULED", None, expected_start_time=T0 + timedelta(days=1))
    never = await seed.flow("never-started")  # no run has started
    await _run(seed, never, "SCHEDULED", None)
    await seed.flow("no-runs")

    assert names(await client.read_flows(latest_flow_run=FAILED)) == ["broken", "waiting"]
    assert await client.count_flows(latest_flow_run=FAILED) == 2
    # "any run failed" is another question, with another answer.
    assert names(await client.read_flows(flow_runs=FAILED)) == ["broken", "recovered", "waiting"]
    # {}: the flow has a run that started.
    assert names(await client.read_flows(latest_flow_run={})) == ["broken", "recovered", "waiting"]
    assert await client.count_flows(latest_flow_run={}) == 3


async def test_runs_started_at_the_same_instant_are_ordered_by_id(
    client: FlowClient, seed: Seeder
) -> None:
    tied = await seed.flow("tied")
    low, high = sorted([uuid.uuid4(), uuid.uuid4()], key=str)
    await _run(seed, tied, "FAILED", T0, id=high)
    await _run(seed, tied, "COMPLETED", T0, id=low)
    assert names(await client.read_flows(latest_flow_run=FAILED)) == ["tied"]
    completed = {"state": {"type": {"any": ["COMPLETED"]}}}
    assert names(await client.read_flows(latest_flow_run=completed)) == []


async def test_latest_run_combines_with_the_other_filters(client: FlowClient, seed: Seeder) -> None:
    for name, tags, states in [
        ("etl", ["prod"], ["FAILED", "FAILED"]),
        ("reports", ["prod"], ["FAILED", "COMPLETED"]),
        ("sandbox", ["dev"], ["COMPLETED", "FAILED"]),
    ]:
        flow_id = await seed.flow(name, tags=tags)
        for hour, state in enumerate(states):
            await _run(seed, flow_id, state, T0 + timedelta(hours=hour), tags=[name])
    prod = {"tags": {"all": ["prod"]}}
    assert names(await client.read_flows(flows=prod, latest_flow_run=FAILED)) == ["etl"]
    # Some run failed (flow_runs) and the latest completed (latest_flow_run).
    completed = {"state": {"type": {"any": ["COMPLETED"]}}}
    assert names(await client.read_flows(flow_runs=FAILED, latest_flow_run=completed)) == [
        "reports"
    ]
    by_run_tag = {"tags": {"all": ["sandbox"]}, **FAILED}
    assert names(await client.read_flows(latest_flow_run=by_run_tag)) == ["sandbox"]
    # A count with the latest-run filter alone starts from the runs meeting it.
    assert await client.count_flows(latest_flow_run=by_run_tag) == 1
    assert await client.count_flows(latest_flow_run=FAILED) == 2
    assert await client.count_flows(flows=prod, latest_flow_run=FAILED) == 1


async def test_a_bad_latest_run_filter_is_invalid_argument(client: FlowClient) -> None:
    bad = {"state": {"type": {"any": ["EXPLODED"]}}}
    await expect_error(
        client.read_flows(latest_flow_run=bad),
        grpc.StatusCode.INVALID_ARGUMENT,
        "latest_flow_run.state.type.any[0]",
    )
    await expect_error(
        client.count_flows(latest_flow_run=bad),
        grpc.StatusCode.INVALID_ARGUMENT,
        "latest_flow_run.state.type.any[0]",
    )


async def test_agrees_with_the_definition_on_random_runs(client: FlowClient, seed: Seeder) -> None:
    rng = random.Random(20261206)
    states = ["COMPLETED", "FAILED", "RUNNING", "SCHEDULED"]
    expected: dict[str, set[str]] = {state: set() for state in states}
    for number in range(40):
        name = f"flow-{number:02d}"
        flow_id = await seed.flow(name)
        runs: list[tuple[datetime, str, str]] = []
        for _ in range(rng.randint(0, 5)):
            start = None if rng.random() < 0.2 else T0 + timedelta(minutes=rng.randint(0, 3))
            state = rng.choice(states)
            run_id = uuid.uuid4()
            await _run(seed, flow_id, state, start, id=run_id)
            if start is not None:
                runs.append((start, str(run_id), state))
        if runs:
            expected[max(runs)[2]].add(name)
    for state in states:
        wanted = {"state": {"type": {"any": [state]}}}
        found = names(await client.read_flows(latest_flow_run=wanted))
        assert found == sorted(expected[state]), state
        assert await client.count_flows(latest_flow_run=wanted) == len(expected[state])


@pytest.mark.parametrize("field", ["ReadFlowsRequest", "CountFlowsRequest", "StreamFlowsRequest"])
def test_every_flow_query_carries_the_filter(field: str) -> None:
    message = getattr(flow_service_pb2, field)
    assert message.DESCRIPTOR.fields_by_name["latest_flow_run"].message_type.name == "FlowRunFilter"
