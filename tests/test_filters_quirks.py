"""Prefect's filter quirks that users depend on, one named test each (docs/semantics.md#filters).

Each test builds the few rows it needs and asks through ReadFlows and
CountFlows, which must always agree.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from flowservice.client import FlowClient
    from tests.factories import Seeder

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


async def found(client: FlowClient, **filters: Any) -> list[str]:
    """The names of the flows matching, after checking that CountFlows agrees."""
    flows = await client.read_flows(**filters)
    assert await client.count_flows(**filters) == len(flows)
    return sorted(flow.name for flow in flows)


@dataclass
class World:
    """Flows `ran` (runs and task runs), `deployed` (deployments in a pool), `idle` (nothing)."""

    ran: uuid.UUID
    deployed: uuid.UUID
    idle: uuid.UUID
    failed_run: uuid.UUID
    pending_run: uuid.UUID
    task: uuid.UUID
    orphan_task: uuid.UUID
    queued_deployment: uuid.UUID
    loose_deployment: uuid.UUID
    pool: uuid.UUID


@pytest.fixture
async def world(seed: Seeder, client: FlowClient) -> World:
    ran = await seed.flow("ran", tags=["db"])
    deployed = await seed.flow("deployed")
    idle = await seed.flow("idle", tags=["db", "blue"])
    pool = await seed.work_pool("pool-a", type="kubernetes")
    queue = await seed.work_queue(pool, "default")
    queued_deployment = await seed.deployment(
        deployed, "on-a-queue", tags=["prod"], paused=True, work_queue_id=queue
    )
    loose_deployment = await seed.deployment(
        deployed, "no-queue", work_queue_name="default", tags=[]
    )
    failed_run = await seed.flow_run(
        ran,
        "failed-run",
        tags=["nightly", "db"],
        state_type="FAILED",
        state_name="Failed",
        start_time=T0,
        end_time=T0 + timedelta(minutes=5),
        idempotency_key="key-1",
        created_by={"id": str(uuid.UUID(int=7)), "type": "DEPLOYMENT"},
    )
    pending_run = await seed.flow_run(
        ran,
        "pending_run",
        state_type="PENDING",
        state_name="Late",
        expected_start_time=T0 + timedelta(hours=2),
        next_scheduled_start_time=T0 + timedelta(hours=2),
    )
    task = await seed.task_run(failed_run, "extract", tags=["io"], state_type="COMPLETED")
    orphan_task = await seed.task_run(None, "autonomous", state_type="FAILED")
    return World(
        ran,
        deployed,
        idle,
        failed_run,
        pending_run,
        task,
        orphan_task,
        queued_deployment,
        loose_deployment,
        pool,
    )


# --- present but empty -------------------------------------------------------------


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        pytest.param({"flow_runs": {}}, ["ran"], id="flow-runs-means-has-a-run"),
        pytest.param({"task_runs": {}}, ["ran"], id="task-runs-means-a-run-with-a-task-run"),
        pytest.param({"deployments": {}}, ["deployed"], id="deployments-means-has-a-deployment"),
        pytest.param({"work_pools": {}}, ["deployed"], id="work-pools-means-a-queued-deployment"),
        pytest.param({"flows": {}}, ["deployed", "idle", "ran"], id="flows-is-no-condition"),
    ],
)
async def test_a_present_but_empty_filter_requires_a_related_row(
    client: FlowClient, world: World, filters: dict[str, Any], expected: list[str]
) -> None:
    assert await found(client, **filters) == expected


async def test_an_absent_filter_adds_nothing(client: FlowClient, world: World) -> None:
    assert await found(client) == ["deployed", "idle", "ran"]


# --- lists and strings -------------------------------------------------------------


@pytest.mark.parametrize(
    "filters",
    [
        pytest.param({"flows": {"id": {"any": []}}}, id="flow-id"),
        pytest.param({"flow_runs": {"name": {"any": []}}}, id="flow-run-name"),
        pytest.param({"flow_runs": {"tags": {"any": []}}}, id="flow-run-tags"),
        pytest.param({"flow_runs": {"state": {"type": {"any": []}}}}, id="flow-run-state-type"),
        pytest.param({"flow_runs": {"created_by": {"type": []}}}, id="created-by-type"),
        pytest.param({"task_runs": {"id": {"any": []}}}, id="task-run-id"),
        pytest.param({"task_runs": {"flow_run_id": {"any": []}}}, id="task-run-flow-run-id"),
        pytest.param({"deployments": {"tags": {"any": []}}}, id="deployment-tags"),
        pytest.param({"work_pools": {"name": {"any": []}}}, id="work-pool-name"),
    ],
)
async def test_any_empty_matches_nothing(
    client: FlowClient, world: World, filters: dict[str, Any]
) -> None:
    assert await found(client, **filters) == []


@pytest.mark.parametrize(
    "filters",
    [
        pytest.param({"flow_runs": {"id": {"not_any": []}}}, id="not-any"),
        pytest.param({"flow_runs": {"tags": {"all": []}}}, id="all"),
        pytest.param({"flow_runs": {"name": {"like": ""}}}, id="like"),
        pytest.param({"deployments": {"flow_or_deployment_name": {"like": ""}}}, id="or-name"),
    ],
)
async def test_empty_not_any_all_and_like_are_ignored(
    client: FlowClient, world: World, filters: dict[str, Any]
) -> None:
    entity = next(iter(filters))
    assert await found(client, **filters) == await found(client, **{entity: {}})


async def test_not_any_never_matches_a_null_column(client: FlowClient, world: World) -> None:
    # Only the failed run has an idempotency key; the pending run's NULL is not "not key-2".
    filters = {"flow_runs": {"idempotency_key": {"not_any": ["key-2"]}}}
    assert await found(client, **filters) == ["ran"]
    await_id = {"flow_runs": {"idempotency_key": {"not_any": ["key-1"]}}}
    assert await found(client, **await_id) == []


@pytest.mark.parametrize(
    ("like", "expected"),
    [
        pytest.param("PENDING_", ["ran"], id="case-insensitive"),
        pytest.param("pending%run", ["ran"], id="percent-is-a-wildcard"),
        pytest.param("failed_run", ["ran"], id="underscore-is-a-wildcard"),
        pytest.param("failed__run", [], id="underscore-is-exactly-one-character"),
    ],
)
async def test_like_is_a_case_insensitive_substring_with_wildcards(
    client: FlowClient, world: World, like: str, expected: list[str]
) -> None:
    assert await found(client, flow_runs={"name": {"like": like}}) == expected


async def test_deployment_or_flow_name_like_matches_either_name(
    client: FlowClient, world: World
) -> None:
    by_deployment = {"flow_or_deployment_name": {"like": "ON-A-Q"}}
    by_flow = {"flow_or_deployment_name": {"like": "ployed"}}
    assert await found(client, deployments=by_deployment) == ["deployed"]
    assert await found(client, deployments=by_flow) == ["deployed"]
    assert await found(client, deployments={"flow_or_deployment_name": {"like": "idle"}}) == []


# --- operators ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entity", "empty_child"),
    [
        pytest.param("flow_runs", {"name": {}}, id="flow-run-filter"),
        pytest.param("flow_runs", {"tags": {"all": []}}, id="flow-run-effectively-empty"),
        pytest.param("task_runs", {"name": {"like": ""}}, id="task-run-filter"),
        pytest.param("deployments", {"paused": {}}, id="deployment-filter"),
        pytest.param("work_pools", {"type": {}}, id="work-pool-filter"),
    ],
)
async def test_or_with_an_empty_child_matches_every_related_row(
    client: FlowClient, world: World, entity: str, empty_child: dict[str, Any]
) -> None:
    nothing = {"id": {"any": [str(uuid.uuid4())]}}
    assert await found(client, **{entity: nothing}) == []
    either = {"operator": "OPERATOR_OR", **nothing, **empty_child}
    assert await found(client, **{entity: either}) == await found(client, **{entity: {}})


async def test_state_filters_drop_empty_children_even_under_or(
    client: FlowClient, world: World
) -> None:
    state = {"operator": "OPERATOR_OR", "type": {"any": ["COMPLETED"]}, "name": {}}
    assert await found(client, flow_runs={"state": state}) == []
    task_state = {"operator": "OPERATOR_OR", "type": {"any": ["COMPLETED"]}, "name": {}}
    assert await found(client, task_runs={"state": task_state}) == ["ran"]
    both_empty = {"operator": "OPERATOR_OR", "type": {}, "name": {}}
    assert await found(client, flow_runs={"state": both_empty}) == ["ran"]


async def test_state_type_with_any_and_not_any_applies_both(
    client: FlowClient, world: World
) -> None:
    state = {"type": {"any": ["FAILED", "PENDING"], "not_any": ["FAILED"]}}
    runs = await client.read_flows(flow_runs={"state": state})
    assert [flow.name for flow in runs] == ["ran"]
    only_failed_excluded = {"state": {"type": {"any": ["FAILED"], "not_any": ["FAILED"]}}}
    assert await found(client, flow_runs=only_failed_excluded) == []


async def test_operator_or_unions_flow_run_criteria(client: FlowClient, world: World) -> None:
    either = {
        "operator": "OPERATOR_OR",
        "id": {"any": [str(world.pending_run)]},
        "tags": {"all": ["nope"]},
    }
    assert await found(client, flow_runs=either) == ["ran"]


# --- tags and states ---------------------------------------------------------------


async def test_tags_is_null_means_an_empty_list(client: FlowClient, world: World) -> None:
    assert await found(client, flow_runs={"tags": {"is_null": True}}) == ["ran"]  # pending
    only_tagged = {"tags": {"is_null": False}, "id": {"any": [str(world.pending_run)]}}
    assert await found(client, flow_runs=only_tagged) == []
    assert await found(client, deployments={"tags": {"is_null": True}}) == ["deployed"]
    assert await found(client, task_runs={"tags": {"is_null": True}}) == []


async def test_tags_any_is_an_overlap(client: FlowClient, world: World) -> None:
    assert await found(client, flow_runs={"tags": {"any": ["x", "nightly"]}}) == ["ran"]
    assert await found(client, deployments={"tags": {"any": ["prod"]}}) == ["deployed"]


async def test_state_names_are_exact(client: FlowClient, world: World) -> None:
    assert await found(client, flow_runs={"state": {"name": {"any": ["Late"]}}}) == ["ran"]
    assert await found(client, flow_runs={"state": {"name": {"any": ["late"]}}}) == []
    assert await found(client, flow_runs={"state": {"name": {"not_any": ["Late", "Failed"]}}}) == []


# --- times -------------------------------------------------------------------------


async def test_flow_run_start_time_bounds_use_the_expected_start_when_not_started(
    client: FlowClient, world: World
) -> None:
    later = {"start_time": {"after": iso(T0 + timedelta(hours=1))}}
    assert await found(client, flow_runs={**later, "id": {"any": [str(world.pending_run)]}}) == [
        "ran"
    ]
    never_started = {"start_time": {"is_null": True}, "id": {"any": [str(world.pending_run)]}}
    assert await found(client, flow_runs=never_started) == ["ran"]


async def test_task_run_start_time_bounds_do_not_fall_back(
    client: FlowClient, seed: Seeder
) -> None:
    flow_id = await seed.flow("waiting")
    run = await seed.flow_run(flow_id, "run")
    await seed.task_run(run, "not-started", expected_start_time=T0)
    assert (
        await found(client, task_runs={"start_time": {"after": iso(T0 - timedelta(days=1))}}) == []
    )
    assert await found(client, task_runs={"expected_start_time": {"before": iso(T0)}}) == [
        "waiting"
    ]


@pytest.mark.parametrize(
    ("bound", "expected"),
    [
        pytest.param({"before": iso(T0)}, ["ran"], id="before-is-inclusive"),
        pytest.param({"after": iso(T0)}, ["ran"], id="after-is-inclusive"),
        pytest.param({"after": iso(T0 + timedelta(microseconds=1))}, [], id="after-excludes"),
        pytest.param({"before": iso(T0 - timedelta(microseconds=1))}, [], id="before-excludes"),
        pytest.param(
            {"after": iso(T0 - timedelta(hours=1)), "before": iso(T0 + timedelta(hours=1))},
            ["ran"],
            id="window",
        ),
    ],
)
async def test_time_bounds_are_inclusive(
    client: FlowClient, world: World, bound: dict[str, str], expected: list[str]
) -> None:
    only_failed = {"id": {"any": [str(world.failed_run)]}}
    assert await found(client, flow_runs={**only_failed, "start_time": bound}) == expected


async def test_end_expected_and_next_scheduled_times(client: FlowClient, world: World) -> None:
    assert await found(client, flow_runs={"end_time": {"after": iso(T0)}}) == ["ran"]
    assert await found(client, flow_runs={"end_time": {"is_null": False}}) == ["ran"]
    in_two_hours = iso(T0 + timedelta(hours=2))
    assert await found(client, flow_runs={"expected_start_time": {"after": in_two_hours}}) == [
        "ran"
    ]
    scheduled = {"next_scheduled_start_time": {"before": in_two_hours, "after": in_two_hours}}
    assert await found(client, flow_runs=scheduled) == ["ran"]


# --- cross-entity ------------------------------------------------------------------


async def test_task_run_flow_run_id_is_null_defaults_to_false(
    client: FlowClient, world: World
) -> None:
    # The only FAILED task run has no flow run: it can never select a flow.
    assert await found(client, task_runs={"state": {"type": {"any": ["FAILED"]}}}) == []
    assert await found(client, task_runs={"flow_run_id": {}}) == ["ran"]
    assert await found(client, task_runs={"flow_run_id": {"is_null": True}}) == []
    ignores_any = {"flow_run_id": {"is_null": True, "any": [str(world.failed_run)]}}
    assert await found(client, task_runs=ignores_any) == []
    by_run = {"flow_run_id": {"any": [str(world.failed_run)]}}
    assert await found(client, task_runs=by_run) == ["ran"]


async def test_flow_run_and_task_run_filters_hold_on_the_same_run(
    client: FlowClient, world: World
) -> None:
    same_run = {"flow_runs": {"state": {"type": {"any": ["FAILED"]}}}, "task_runs": {}}
    assert await found(client, **same_run) == ["ran"]
    other_run = {"flow_runs": {"state": {"type": {"any": ["PENDING"]}}}, "task_runs": {}}
    assert await found(client, **other_run) == []


async def test_deployment_and_work_pool_filters_hold_on_the_same_deployment(
    client: FlowClient, world: World
) -> None:
    queued = {"deployments": {"name": {"any": ["on-a-queue"]}}, "work_pools": {}}
    assert await found(client, **queued) == ["deployed"]
    loose = {"deployments": {"name": {"any": ["no-queue"]}}, "work_pools": {}}
    assert await found(client, **loose) == []
    by_type = {"work_pools": {"type": {"any": ["kubernetes"]}, "id": {"any": [str(world.pool)]}}}
    assert await found(client, **by_type) == ["deployed"]


async def test_deployment_concurrency_limit_is_accepted_and_ignored(
    client: FlowClient, world: World
) -> None:
    ignored = {"concurrency_limit": {"ge": 1000, "le": 1, "is_null": True}}
    assert await found(client, deployments=ignored) == ["deployed"]
    # Not even an always-true child: Prefect never reads the field, so it
    # cannot turn an OPERATOR_OR filter into "every deployment".
    either = {"operator": "OPERATOR_OR", "concurrency_limit": {"ge": 0}, "name": {"any": []}}
    assert await found(client, deployments=either) == []


async def test_deployment_paused_and_work_queue_name(client: FlowClient, world: World) -> None:
    assert await found(client, deployments={"paused": {"eq": True}}) == ["deployed"]
    only_loose = {"paused": {"eq": False}, "name": {"any": ["no-queue"]}}
    assert await found(client, deployments=only_loose) == ["deployed"]
    # The name recorded on the deployment, not looked up through its queue.
    by_name = {
        "work_queue_name": {"any": ["default"]},
        "id": {"any": [str(world.queued_deployment)]},
    }
    assert await found(client, deployments=by_name) == []


async def test_a_subflow_run_counts_for_its_own_flow(client: FlowClient, seed: Seeder) -> None:
    parent_flow = await seed.flow("parent")
    child_flow = await seed.flow("child")
    parent_run = await seed.flow_run(parent_flow, "parent-run")
    spawning_task = await seed.task_run(parent_run, "spawn")
    await seed.flow_run(child_flow, "child-run", parent_task_run_id=spawning_task)
    assert await found(client, flow_runs={"parent_task_run_id": {"is_null": False}}) == ["child"]
    by_parent = {"parent_flow_run_id": {"any": [str(parent_run)]}}
    assert await found(client, flow_runs=by_parent) == ["child"]
    assert await found(client, task_runs={"subflow_runs": {"exists": True}}) == ["parent"]
    no_subflows = {"subflow_runs": {"exists": False}}
    assert await found(client, task_runs=no_subflows) == []


async def test_created_by_matches_the_json_record(client: FlowClient, world: World) -> None:
    creator = str(uuid.UUID(int=7))
    assert await found(client, flow_runs={"created_by": {"id": [creator.upper()]}}) == ["ran"]
    assert await found(client, flow_runs={"created_by": {"type": ["DEPLOYMENT"]}}) == ["ran"]
    assert await found(client, flow_runs={"created_by": {"type": ["deployment"]}}) == []
    no_record = {"created_by": {"is_null": True}, "id": {"any": [str(world.pending_run)]}}
    assert await found(client, flow_runs=no_record) == ["ran"]


async def test_flow_run_deployment_and_work_queue_fields(client: FlowClient, seed: Seeder) -> None:
    flow_id = await seed.flow("queued")
    deployment_id = uuid.uuid4()  # flow_run.deployment_id has no foreign key
    await seed.flow_run(flow_id, "r", deployment_id=deployment_id, work_queue_name="q1")
    await seed.flow(name="unqueued")
    by_deployment = {"deployment_id": {"any": [str(deployment_id)]}}
    assert await found(client, flow_runs=by_deployment) == ["queued"]
    assert await found(client, flow_runs={"deployment_id": {"is_null": True}}) == []
    assert await found(client, flow_runs={"work_queue_name": {"any": ["q1"]}}) == ["queued"]
    assert await found(client, flow_runs={"work_queue_name": {"is_null": True}}) == []
