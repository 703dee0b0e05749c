"""Prefect's cross-entity filter matrix for flows, over gRPC (docs/semantics.md#related-rows).

The fixture is the data of the module fixture in Prefect's
tests/server/models/test_filters.py, written down as records. The flow-count
rows are Prefect's numbers; every row also names the flows it must
return, so a wrong row is caught by id and not only by count. Rows of the
flow-run, task-run and deployment tables (row ids prefixed 67, 68 and 69
respectively) appear only where the
same filters sent to the flow endpoints have a flow-level answer that follows
from the fixture alone; their expected flows are derived here, and each says
from what.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest

from flowservice_server.db import tables

if TYPE_CHECKING:
    from collections.abc import Mapping

    from flowservice.client import FlowClient
    from flowservice.v1 import flow_pb2
    from tests.factories import Seeder

#: "now" when Prefect's fixture runs; every state of the fixture is stamped with it.
BASE_TIME = datetime(2026, 3, 14, 9, 30, tzinfo=UTC)

TABLES = (
    tables.flow,
    tables.deployment,
    tables.flow_run,
    tables.task_run,
    tables.work_pool,
    tables.work_queue,
)

#: An id the fixture never creates (Prefect uses a fresh uuid4 for the same purpose).
UNKNOWN_ID = uuid.UUID("3f1c9a52-7d0e-4b8a-9e61-5a2b7c4d8e90")


# ---------------------------------------------------------------------------
# The fixture, as data
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class State:
    """A Prefect state as the run row records it (type and name)."""

    type: str
    name: str


COMPLETED = State("COMPLETED", "Completed")
FAILED = State("FAILED", "Failed")
RUNNING = State("RUNNING", "Running")
SCHEDULED = State("SCHEDULED", "Scheduled")  # scheduled_time = "now" in Prefect's fixture


@dataclass(frozen=True)
class FlowRow:
    name: str
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class DeploymentRow:
    """`queue` is the key of the work queue the deployment is attached to (its FK)."""

    name: str
    flow: str
    paused: bool
    work_queue_name: str | None = None
    queue: str | None = None


@dataclass(frozen=True)
class FlowRunRow:
    """Prefect leaves most runs unnamed (it generates a two-word slug); these slugs stand
    in for them and contain none of the texts the rows search for."""

    key: str
    flow: str
    name: str
    tags: tuple[str, ...] = ()
    state: State | None = None
    deployment: str | None = None
    queue: str | None = None
    parent_task_run: str | None = None


@dataclass(frozen=True)
class TaskRunRow:
    key: str
    flow_run: str
    name: str
    task_key: str
    state: State | None = None


WORK_POOL = "Test Pool"  # created by Prefect with type "prefect-agent" and its queue "default"
DEFAULT_QUEUE = "queue:default"

FLOWS = (
    FlowRow("f-1", ("db", "blue")),
    FlowRow("f-2", ("db",)),
    FlowRow("f-3"),
    FlowRow("f-4"),
)

# d-1-1 and d-3-1 also carry a daily interval schedule in Prefect; no flow filter reads it.
DEPLOYMENTS = (
    DeploymentRow("d-1-1", flow="f-1", paused=False),
    DeploymentRow("d-1-2", flow="f-1", paused=True, work_queue_name="test-queue-for-filters"),
    DeploymentRow("d-3-1", flow="f-3", paused=False, queue=DEFAULT_QUEUE),
)

FLOW_RUNS = (
    # flow 1
    FlowRunRow("fr-1-1", "f-1", "test-happy-duck", ("db", "blue"), COMPLETED, deployment="d-1-1"),
    FlowRunRow("fr-1-2", "f-1", "sad-duck", ("db", "blue"), COMPLETED),
    FlowRunRow("fr-1-3", "f-1", "test-happy-mallard", ("db", "red"), FAILED, deployment="d-1-1"),
    FlowRunRow("fr-1-4", "f-1", "crimson-hippo", ("red",), RUNNING),
    FlowRunRow("fr-1-5", "f-1", "amber-otter", (), RUNNING, deployment="d-1-2"),
    # flow 2
    FlowRunRow("fr-2-1", "f-2", "another-test-happy-duck", ("db", "blue"), COMPLETED),
    FlowRunRow("fr-2-2", "f-2", "another-sad-duck", ("red",), RUNNING),
    FlowRunRow("fr-2-3", "f-2", "silent-heron", ("db", "red"), FAILED),
    # flow 3
    FlowRunRow(
        "fr-3-1", "f-3", "brisk-lynx", (), COMPLETED, deployment="d-3-1", queue=DEFAULT_QUEUE
    ),
    FlowRunRow("fr-3-2", "f-3", "mellow-crane", ("db", "red"), SCHEDULED),
    # flow 4: a parent run without a state, and its subflow run started by task run tr-4-1-b
    FlowRunRow("fr-4-1", "f-4", "dusky-ibis"),
    FlowRunRow("fr-4-2", "f-4", "lucky-newt", parent_task_run="tr-4-1-b"),
)

TASK_RUNS = (
    TaskRunRow("tr-1-1-a", "fr-1-1", "task-run-1", "a", RUNNING),
    TaskRunRow("tr-1-1-b", "fr-1-1", "task-run-2", "b", COMPLETED),
    TaskRunRow("tr-1-1-c", "fr-1-1", "task-run-2a", "c", COMPLETED),
    TaskRunRow("tr-2-2-a", "fr-2-2", "quiet-finch", "a", RUNNING),
    TaskRunRow("tr-2-2-b", "fr-2-2", "bold-marmot", "b", COMPLETED),
    TaskRunRow("tr-2-2-c", "fr-2-2", "clever-tapir", "c", COMPLETED),
    TaskRunRow("tr-3-1-a", "fr-3-1", "rapid-gecko", "a", FAILED),
    TaskRunRow("tr-4-1-a", "fr-4-1", "gentle-koala", "a"),
    TaskRunRow("tr-4-1-b", "fr-4-1", "noble-yak", "b"),
    TaskRunRow("tr-4-2-a", "fr-4-2", "plucky-wren", "a"),
)


def state_columns(state: State | None, *, flow_run: bool) -> dict[str, Any]:
    """The columns Prefect's global orchestration policy writes when a run is created in
    `state`, so the rows look as Prefect's would: type and name; expected start = the
    scheduled time for SCHEDULED, else the state's time; start time on RUNNING; next
    scheduled start on SCHEDULED (flow runs). No end time: Prefect sets one only for a
    run that has a start time, and no run here enters a final state after running."""
    if state is None:
        return {}
    columns: dict[str, Any] = {
        "state_type": state.type,
        "state_name": state.name,
        "expected_start_time": BASE_TIME,
    }
    if state == RUNNING:
        columns["start_time"] = BASE_TIME
    if state == SCHEDULED and flow_run:
        columns["next_scheduled_start_time"] = BASE_TIME
    return columns


async def seed_matrix(seed: Seeder) -> dict[str, uuid.UUID]:
    """Writes the fixture and returns every created id by key (flow and deployment names,
    run keys, the pool's name and DEFAULT_QUEUE)."""
    ids: dict[str, uuid.UUID] = {}
    ids[WORK_POOL] = await seed.work_pool(WORK_POOL, type="prefect-agent")
    ids[DEFAULT_QUEUE] = await seed.work_queue(ids[WORK_POOL], "default")
    for flow in FLOWS:
        ids[flow.name] = await seed.flow(flow.name, tags=flow.tags)
    for deployment in DEPLOYMENTS:
        ids[deployment.name] = await seed.deployment(
            ids[deployment.flow],
            deployment.name,
            paused=deployment.paused,
            work_queue_name=deployment.work_queue_name,
            work_queue_id=ids[deployment.queue] if deployment.queue else None,
        )
    # A subflow run needs its parent task run, which needs its own flow run: seed in
    # dependency order.
    runs, tasks = list(FLOW_RUNS), list(TASK_RUNS)
    while runs or tasks:
        ready_runs = [r for r in runs if r.parent_task_run in (None, *ids)]
        for run in ready_runs:
            ids[run.key] = await seed.flow_run(
                ids[run.flow],
                run.name,
                tags=run.tags,
                deployment_id=ids[run.deployment] if run.deployment else None,
                work_queue_id=ids[run.queue] if run.queue else None,
                parent_task_run_id=ids[run.parent_task_run] if run.parent_task_run else None,
                **state_columns(run.state, flow_run=True),
            )
            runs.remove(run)
        ready_tasks = [t for t in tasks if t.flow_run in ids]
        for task in ready_tasks:
            ids[task.key] = await seed.task_run(
                ids[task.flow_run],
                task.name,
                task_key=task.task_key,
                dynamic_key="0",
                **state_columns(task.state, flow_run=False),
            )
            tasks.remove(task)
        assert ready_runs or ready_tasks, "the fixture has a dependency cycle"
    return ids


# ---------------------------------------------------------------------------
# The rows
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Ref:
    """A fixture id inside a filter, resolved when the test runs."""

    key: str


def resolve(value: Any, ids: Mapping[str, uuid.UUID]) -> Any:
    """The filter with every Ref replaced by its id as a string."""
    if isinstance(value, Ref):
        return str(ids[value.key])
    if isinstance(value, dict):
        return {key: resolve(item, ids) for key, item in value.items()}
    if isinstance(value, list):
        return [resolve(item, ids) for item in value]
    return value


def case(case_id: str, filters: dict[str, Any], count: int, flows: set[str]) -> Any:
    """One row: the filters, the expected count and which flows (by name) make it up."""
    return pytest.param(filters, count, frozenset(flows), id=case_id)


F1, F2, F3, F4 = "f-1", "f-2", "f-3", "f-4"
TASK_FAILED = {"state": {"type": {"any": ["FAILED"]}}}

#: Prefect's TestCountFlowsModels, row for row, with Prefect's counts.
FLOW_COUNT_ROWS = [
    case("no-filter", {}, 4, {F1, F2, F3, F4}),
    case("flow-name-any-f1-f2", {"flows": {"name": {"any": ["f-1", "f-2"]}}}, 2, {F1, F2}),
    case("flow-name-any-f1-f100", {"flows": {"name": {"any": ["f-1", "f-100"]}}}, 1, {F1}),
    case("flow-name-any-f1", {"flows": {"name": {"any": ["f-1"]}}}, 1, {F1}),
    case("flow-name-like-f", {"flows": {"name": {"like": "f"}}}, 4, {F1, F2, F3, F4}),
    case("flow-name-like-1", {"flows": {"name": {"like": "1"}}}, 1, {F1}),
    case("flow-tags-all-db", {"flows": {"tags": {"all": ["db"]}}}, 2, {F1, F2}),
    case("flow-tags-all-db-blue", {"flows": {"tags": {"all": ["db", "blue"]}}}, 1, {F1}),
    case("flow-tags-all-db-red", {"flows": {"tags": {"all": ["db", "red"]}}}, 0, set()),
    case("run-tags-all-db-red", {"flow_runs": {"tags": {"all": ["db", "red"]}}}, 3, {F1, F2, F3}),
    case("run-tags-all-db-blue", {"flow_runs": {"tags": {"all": ["db", "blue"]}}}, 2, {F1, F2}),
    case("run-tags-is-null", {"flow_runs": {"tags": {"is_null": True}}}, 3, {F1, F3, F4}),
    case("run-name-like-test-happy", {"flow_runs": {"name": {"like": "test-happy"}}}, 2, {F1, F2}),
    case(
        "run-name-like-test-happy-mallard",
        {"flow_runs": {"name": {"like": "test-happy-mallard"}}},
        1,
        {F1},
    ),
    case("task-name-like-2a", {"task_runs": {"name": {"like": "2a"}}}, 1, {F1}),
    case("deployment-id-d-1-1", {"deployments": {"id": {"any": [Ref("d-1-1")]}}}, 1, {F1}),
    case("deployment-name-like-d-1", {"deployments": {"name": {"like": "d-1"}}}, 1, {F1}),
    case("task-state-failed", {"task_runs": TASK_FAILED}, 1, {F3}),
    case(
        "task-state-failed-and-run-tags-xyz",
        {"task_runs": TASK_FAILED, "flow_runs": {"tags": {"all": ["xyz"]}}},
        0,
        set(),
    ),
    case(
        "run-deployment-id-d-1-1-d-1-2",
        {"flow_runs": {"deployment_id": {"any": [Ref("d-1-1"), Ref("d-1-2")]}}},
        1,
        {F1},
    ),
    case(
        "run-deployment-id-d-1-1-d-3-1",
        {"flow_runs": {"deployment_id": {"any": [Ref("d-1-1"), Ref("d-3-1")]}}},
        2,
        {F1, F3},
    ),
    case("task-subflow-runs-exist", {"task_runs": {"subflow_runs": {"exists": True}}}, 1, {F4}),
    case(
        "run-parent-task-run-not-null",
        {"flow_runs": {"parent_task_run_id": {"is_null": False}}},
        1,
        {F4},
    ),
    case("empty-flow-filter", {"flows": {}}, 4, {F1, F2, F3, F4}),
    case("empty-flow-and-run-filters", {"flows": {}, "flow_runs": {}}, 4, {F1, F2, F3, F4}),
]

#: Rows of the other tables whose filters the flow endpoints accept and that
#: FLOW_COUNT_ROWS does not already hold. The count is the number of flows, derived from the
#: fixture (the comment gives Prefect's count for the other entity and which rows make it).
DERIVED_ROWS = [
    # --- 67: flow-run counts
    # 12 runs, of every flow
    case("67-flow-name-like-f-", {"flows": {"name": {"like": "f-"}}}, 4, {F1, F2, F3, F4}),
    # 3 runs: of d-1-1 and d-1-2 ("_" is a wildcard; d-3-1 does not match), both of f-1
    case("67-deployment-name-like-d_1", {"deployments": {"name": {"like": "d_1"}}}, 1, {F1}),
    # 1 run of f-3 has a FAILED task run, but no flow has the tag xyz
    case(
        "67-task-state-failed-and-flow-tags-xyz",
        {"task_runs": TASK_FAILED, "flows": {"tags": {"all": ["xyz"]}}},
        0,
        set(),
    ),
    # 0 runs
    case(
        "67-run-state-completed-named-not-completed",
        {
            "flow_runs": {
                "state": {"type": {"any": ["COMPLETED"]}, "name": {"any": ["NOT-COMPLETED"]}}
            }
        },
        0,
        set(),
    ),
    # 4 runs: fr-1-1, fr-1-2 (f-1), fr-2-1 (f-2), fr-3-1 (f-3)
    case(
        "67-run-state-name-completed",
        {"flow_runs": {"state": {"name": {"any": ["Completed"]}}}},
        3,
        {F1, F2, F3},
    ),
    # 2 runs: fr-1-3 (f-1), fr-2-3 (f-2)
    case(
        "67-run-state-name-failed",
        {"flow_runs": {"state": {"name": {"any": ["Failed"]}}}},
        2,
        {F1, F2},
    ),
    # 6 runs: the four completed and the two failed ones
    case(
        "67-run-state-name-failed-or-completed",
        {"flow_runs": {"state": {"name": {"any": ["Failed", "Completed"]}}}},
        3,
        {F1, F2, F3},
    ),
    # 2 runs: the two failed ones
    case(
        "67-run-state-failed-named-failed-or-completed",
        {
            "flow_runs": {
                "state": {"type": {"any": ["FAILED"]}, "name": {"any": ["Failed", "Completed"]}}
            }
        },
        2,
        {F1, F2},
    ),
    # 1 run (fr-3-1 sits on the pool's queue); for flows the path is deployment d-3-1 of
    # f-3, which sits on the same queue (docs/semantics.md#deployments-and-work-pools)
    case("67-work-pool-name-test-pool", {"work_pools": {"name": {"any": [WORK_POOL]}}}, 1, {F3}),
    # --- 68: task-run counts
    # 3 task runs, all of fr-1-1 (f-1)
    case("68-task-name-like-task-run", {"task_runs": {"name": {"like": "task-run"}}}, 1, {F1}),
    # 2 task runs: task-run-2 and task-run-2a, of fr-1-1 (f-1)
    case("68-task-name-like-run-2", {"task_runs": {"name": {"like": "run-2"}}}, 1, {F1}),
    # 4 task runs, of the completed runs fr-1-1 (f-1) and fr-3-1 (f-3); as a flow filter
    # every flow with a completed run: fr-1-1, fr-1-2 (f-1), fr-2-1 (f-2), fr-3-1 (f-3)
    case(
        "68-run-state-completed",
        {"flow_runs": {"state": {"type": {"any": ["COMPLETED"]}}}},
        3,
        {F1, F2, F3},
    ),
    # 0 task runs: no flow has the tag xyz
    case(
        "68-run-state-completed-and-flow-tags-xyz",
        {
            "flow_runs": {"state": {"type": {"any": ["COMPLETED"]}}},
            "flows": {"tags": {"all": ["xyz"]}},
        },
        0,
        set(),
    ),
    # 9 task runs, all but tr-4-1-b; they belong to runs of every flow
    case(
        "68-task-subflow-runs-do-not-exist",
        {"task_runs": {"subflow_runs": {"exists": False}}},
        4,
        {F1, F2, F3, F4},
    ),
    # 0 task runs: no task run has tags
    case(
        "68-task-subflow-runs-exist-and-tags-subflow",
        {"task_runs": {"subflow_runs": {"exists": True}, "tags": {"all": ["subflow"]}}},
        0,
        set(),
    ),
    # --- 69: deployment counts
    # 1 deployment, of f-1
    case("69-deployment-name-any-d-1-1", {"deployments": {"name": {"any": ["d-1-1"]}}}, 1, {F1}),
    # 3 deployments, of f-1 (two) and f-3
    case("69-deployment-name-like-d-", {"deployments": {"name": {"like": "d-"}}}, 2, {F1, F3}),
    # 1 deployment (d-1-2), of f-1
    case("69-deployment-name-like--1-2", {"deployments": {"name": {"like": "-1-2"}}}, 1, {F1}),
    # 2 deployments, both of f-1
    case(
        "69-deployment-name-any-d-1-1-d-1-2",
        {"deployments": {"name": {"any": ["d-1-1", "d-1-2"]}}},
        1,
        {F1},
    ),
    # 0 deployments
    case("69-deployment-name-any-zaphod", {"deployments": {"name": {"any": ["zaphod"]}}}, 0, set()),
    # 1 deployment, of f-3; the flow filter alone selects f-3
    case("69-flow-name-any-f-3", {"flows": {"name": {"any": ["f-3"]}}}, 1, {F3}),
    # 0 deployments (f-2 has none); the flow filter alone still selects f-2
    case("69-flow-name-like-f-2", {"flows": {"name": {"like": "f-2"}}}, 1, {F2}),
    # 0 deployments: no run has that name
    case("69-run-name-like-nothing", {"flow_runs": {"name": {"like": "nothing!"}}}, 0, set()),
    # 2 deployments, both of f-1; runs fr-1-1, fr-1-3, fr-1-5 are all of f-1
    case(
        "69-run-deployment-id-with-an-unknown-id",
        {"flow_runs": {"deployment_id": {"any": [Ref("d-1-1"), Ref("d-1-2"), str(UNKNOWN_ID)]}}},
        1,
        {F1},
    ),
    # 1 deployment: d-1-1 of f-1, and f-1 is among the flows named
    case(
        "69-deployment-d-1-1-and-flow-f-1-or-f-2",
        {
            "deployments": {"name": {"any": ["d-1-1"]}},
            "flows": {"name": {"any": ["f-1", "f-2"]}},
        },
        1,
        {F1},
    ),
    # 0 deployments: d-1-1 is not of f-2
    case(
        "69-deployment-d-1-1-and-flow-f-2",
        {"deployments": {"name": {"any": ["d-1-1"]}}, "flows": {"name": {"any": ["f-2"]}}},
        0,
        set(),
    ),
]


@pytest.fixture
async def matrix(seed: Seeder) -> dict[str, uuid.UUID]:
    """Prefect's filter fixture, seeded into this test's database."""
    return await seed_matrix(seed)


def flow_ids(flows: list[flow_pb2.Flow]) -> set[uuid.UUID]:
    return {uuid.UUID(flow.id) for flow in flows}


async def assert_selects(
    client: FlowClient,
    ids: Mapping[str, uuid.UUID],
    filters: dict[str, Any],
    count: int,
    flows: frozenset[str],
) -> None:
    """CountFlows and ReadFlows agree with the row: the count, and exactly these flows."""
    assert len(flows) == count, "the row's flows do not add up to its count"
    resolved = resolve(filters, ids)
    assert await client.count_flows(**resolved) == count
    read = await client.read_flows(**resolved)
    assert len(read) == count
    assert flow_ids(read) == {ids[name] for name in flows}


async def test_the_fixture_has_prefects_size(matrix: dict[str, uuid.UUID], seed: Seeder) -> None:
    """Guards the transcription: Prefect's fixture has 4 flows, 3 deployments, 12 flow runs
    (5, 3, 2, 2) and 10 task runs, on one pool with one queue."""
    sizes = {table.name: await seed.count(table) for table in TABLES}
    assert sizes == {
        "flow": 4,
        "deployment": 3,
        "flow_run": 12,
        "task_run": 10,
        "work_pool": 1,
        "work_queue": 1,
    }


@pytest.mark.parametrize(("filters", "count", "flows"), FLOW_COUNT_ROWS)
async def test_prefect_flow_count_matrix(
    client: FlowClient,
    matrix: dict[str, uuid.UUID],
    filters: dict[str, Any],
    count: int,
    flows: frozenset[str],
) -> None:
    """Every row of Prefect's flow-count table holds over gRPC."""
    await assert_selects(client, matrix, filters, count, flows)


@pytest.mark.parametrize(("filters", "count", "flows"), DERIVED_ROWS)
async def test_other_tables_rows_as_flow_queries(
    client: FlowClient,
    matrix: dict[str, uuid.UUID],
    filters: dict[str, Any],
    count: int,
    flows: frozenset[str],
) -> None:
    """Other tables' filters, asked of flows, select the flows owning the matches."""
    await assert_selects(client, matrix, filters, count, flows)


# ---------------------------------------------------------------------------
# Small cases with their own data, after Prefect's flow model and API tests
# ---------------------------------------------------------------------------


async def test_deployment_filter_selects_its_flow_and_ands_with_the_flow_filter(
    client: FlowClient, seed: Seeder
) -> None:
    """A deployment filter reaches the deployment's flow; it is ANDed with a flow
    filter, so a flow-id match plus an unknown deployment id selects nothing."""
    flow_id = await seed.flow("my-flow")
    await seed.flow("other-flow")
    deployment_id = await seed.deployment(flow_id, "My Deployment")

    by_deployment: dict[str, Any] = {"deployments": {"id": {"any": [str(deployment_id)]}}}
    assert flow_ids(await client.read_flows(**by_deployment)) == {flow_id}
    assert await client.count_flows(**by_deployment) == 1

    both: dict[str, Any] = {
        "flows": {"id": {"any": [str(flow_id)]}},
        "deployments": {"id": {"any": [str(uuid.uuid4())]}},
    }
    assert await client.read_flows(**both) == []
    assert await client.count_flows(**both) == 0


async def test_flow_run_id_filter_selects_the_owning_flow(client: FlowClient, seed: Seeder) -> None:
    """A flow-run id filter returns only the flow that owns the run."""
    flow_1 = await seed.flow("my-flow-1", tags=["db", "blue"])
    await seed.flow("my-flow-2", tags=["db"])
    run_1 = await seed.flow_run(flow_1, "run-1")

    filters: dict[str, Any] = {"flow_runs": {"id": {"any": [str(run_1)]}}}
    read = await client.read_flows(**filters)
    assert [uuid.UUID(flow.id) for flow in read] == [flow_1]
    assert await client.count_flows(**filters) == 1


async def test_task_run_id_filter_selects_the_flow_of_its_run(
    client: FlowClient, seed: Seeder
) -> None:
    """A task-run id filter returns only the flow whose run owns the task run."""
    flow_1 = await seed.flow("my-flow-1", tags=["db", "blue"])
    await seed.flow("my-flow-2", tags=["db"])
    run_1 = await seed.flow_run(flow_1, "run-1")
    task_1 = await seed.task_run(run_1, "task-1", task_key="my-key", dynamic_key="0")

    filters: dict[str, Any] = {"task_runs": {"id": {"any": [str(task_1)]}}}
    read = await client.read_flows(**filters)
    assert [uuid.UUID(flow.id) for flow in read] == [flow_1]
    assert await client.count_flows(**filters) == 1


async def test_work_pool_filter_selects_flows_deployed_on_the_pool(
    client: FlowClient, seed: Seeder
) -> None:
    """A work-pool filter reaches flows through a deployment on one of the pool's
    queues; before any deployment exists, both flows are there and none is on the pool."""
    pool = await seed.work_pool("test-work-pool", type="test-type")
    await seed.work_queue(pool, "default")
    flow_1 = await seed.flow("my-flow-1", tags=["db", "blue"])
    flow_2 = await seed.flow("my-flow-2", tags=["db"])
    by_pool: dict[str, Any] = {"work_pools": {"id": {"any": [str(pool)]}}}

    assert flow_ids(await client.read_flows()) == {flow_1, flow_2}
    assert await client.read_flows(**by_pool) == []

    queue = await seed.work_queue(pool, "test-queue")
    await seed.deployment(flow_1, "My Deployment X", work_queue_id=queue)

    read = await client.read_flows(**by_pool)
    assert [uuid.UUID(flow.id) for flow in read] == [flow_1]
    assert await client.count_flows(**by_pool) == 1
