"""ReadFlows and CountFlows against an independent model of Prefect's filter semantics.

For random small datasets and random filter requests (tests/strategies.py), the
server must select exactly the flows that tests/reference.py — written from
docs/semantics.md, not from the server — selects, count them consistently and return
them in name order. Named regression cases below pin the subtle rules.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa
from hypothesis import given, settings

from flowservice_server.db.tables import (
    deployment,
    flow,
    flow_run,
    task_run,
    work_pool,
    work_queue,
)
from tests import strategies
from tests.reference import (
    CreatedBy,
    Dataset,
    Deployment,
    Flow,
    FlowRun,
    TaskRun,
    WorkPool,
    WorkQueue,
    expected_names,
)
from tests.strategies import row_id

if TYPE_CHECKING:
    from collections.abc import Mapping

    from sqlalchemy.ext.asyncio import AsyncEngine

    from flowservice.client import FlowClient
    from tests.factories import Seeder

#: ReadFlows' maximum page; every generated dataset is smaller.
LIMIT = 200


async def empty_tables(engine: AsyncEngine) -> None:
    """Delete every row, children first. Deleting task runs first sets
    flow_run.parent_task_run_id to NULL (ON DELETE SET NULL); work_pool.default_queue_id
    (ON DELETE RESTRICT, unset by the seeder) is cleared before its queues go."""
    async with engine.begin() as connection:
        for table in (task_run, flow_run, deployment):
            await connection.execute(table.delete())
        await connection.execute(sa.text("UPDATE work_pool SET default_queue_id = NULL"))
        for table in (work_queue, work_pool, flow):
            await connection.execute(table.delete())


async def load(seed: Seeder, dataset: Dataset) -> None:
    """Insert the dataset with its own ids. Flow runs go in without their parent task
    run (the FK points at task_run, whose rows point back at flow_run), which is set
    once the task runs exist."""
    for item in dataset.flows:
        await seed.flow(item.name, tags=item.tags, id=item.id)
    # Seeder.work_pool/work_queue take no id: write those rows with the dataset's ids.
    async with seed.engine.begin() as connection:
        now = datetime.now(UTC)
        for pool in dataset.work_pools:
            await connection.execute(
                work_pool.insert().values(
                    id=pool.id, created=now, updated=now, name=pool.name, type=pool.type
                )
            )
        for queue in dataset.work_queues:
            await connection.execute(
                work_queue.insert().values(
                    id=queue.id,
                    created=now,
                    updated=now,
                    name=queue.name,
                    work_pool_id=queue.work_pool_id,
                )
            )
    for row in dataset.deployments:
        await seed.deployment(
            row.flow_id,
            row.name,
            tags=row.tags,
            paused=row.paused,
            id=row.id,
            work_queue_id=row.work_queue_id,
            work_queue_name=row.work_queue_name,
        )
    for run in dataset.flow_runs:
        await seed.flow_run(
            run.flow_id,
            run.name,
            tags=run.tags,
            id=run.id,
            state_type=run.state_type,
            state_name=run.state_name,
            start_time=run.start_time,
            expected_start_time=run.expected_start_time,
            end_time=run.end_time,
            next_scheduled_start_time=run.next_scheduled_start_time,
            deployment_id=run.deployment_id,
            work_queue_name=run.work_queue_name,
            work_queue_id=run.work_queue_id,
            flow_version=run.flow_version,
            idempotency_key=run.idempotency_key,
            created_by=None if run.created_by is None else run.created_by.as_json(),
        )
    for task in dataset.task_runs:
        await seed.task_run(
            task.flow_run_id,
            task.name,
            tags=task.tags,
            id=task.id,
            state_type=task.state_type,
            state_name=task.state_name,
            start_time=task.start_time,
            end_time=task.end_time,
            expected_start_time=task.expected_start_time,
        )
    async with seed.engine.begin() as connection:
        for run in dataset.flow_runs:
            if run.parent_task_run_id is not None:
                await connection.execute(
                    flow_run.update()
                    .where(flow_run.c.id == run.id)
                    .values(parent_task_run_id=run.parent_task_run_id)
                )


async def check(client: FlowClient, dataset: Dataset, filters: Mapping[str, Any]) -> None:
    """ReadFlows returns the reference's flows, in name order; CountFlows counts them."""
    expected = expected_names(dataset, filters)
    found = await client.read_flows(**filters, limit=LIMIT)
    count = await client.count_flows(**filters)
    shown = json.dumps(filters, sort_keys=True)
    assert [item.name for item in found] == expected, shown
    chosen = {item.id for item in dataset.flows if item.name in expected}
    assert {uuid.UUID(item.id) for item in found} == chosen, shown
    assert count == len(found), shown


#: Shrinking a failure replays hundreds of examples (Hypothesis gives up after five
#: minutes); the suite's 120 s timeout would cut it short and hide the minimal case.
SHRINK_TIMEOUT = 600


#: About 20 s per backend on two cores: each example seeds ~50 rows and makes ~100 calls.
EXAMPLES = 100


@pytest.mark.timeout(SHRINK_TIMEOUT)
@settings(max_examples=EXAMPLES)
@given(scenario=strategies.scenarios())
async def test_read_and_count_flows_match_the_reference(
    client: FlowClient, seed: Seeder, scenario: tuple[Dataset, list[dict[str, Any]]]
) -> None:
    """Each example seeds one dataset, then checks every request and its parts on it."""
    dataset, requests = scenario
    await empty_tables(seed.engine)
    await load(seed, dataset)
    for filters in requests:
        for part in strategies.parts(filters):
            await check(client, dataset, part)


# --- named regression cases ---------------------------------------------------------------
#
# Each case states its answer by hand (from docs/semantics.md), so it checks the reference as
# well as the server.

T0 = strategies.BASE_TIME
MINUTE = timedelta(minutes=1)
CREATOR = uuid.UUID("0c7e0000-0000-4000-8000-00000000abcd")


def a_flow(index: int, name: str, tags: tuple[str, ...] = ()) -> Flow:
    return Flow(id=row_id("flow", index), name=name, tags=tags)


def a_run(index: int, owner: Flow, **changes: Any) -> FlowRun:
    """A flow run with every nullable column NULL unless given."""
    run = FlowRun(
        id=row_id("flow_run", index),
        flow_id=owner.id,
        name=f"run-{index}",
        tags=(),
        state_type=None,
        state_name=None,
        start_time=None,
        expected_start_time=None,
        end_time=None,
        next_scheduled_start_time=None,
        deployment_id=None,
        work_queue_name=None,
        work_queue_id=None,
        parent_task_run_id=None,
        flow_version=None,
        idempotency_key=None,
        created_by=None,
    )
    return replace(run, **changes)


def a_task(index: int, run: FlowRun | None, **changes: Any) -> TaskRun:
    task = TaskRun(
        id=row_id("task_run", index),
        flow_run_id=None if run is None else run.id,
        name=f"task-{index}",
        tags=(),
        state_type=None,
        state_name=None,
        start_time=None,
        end_time=None,
        expected_start_time=None,
    )
    return replace(task, **changes)


def a_deployment(index: int, owner: Flow, name: str, queue: WorkQueue | None = None) -> Deployment:
    return Deployment(
        id=row_id("deployment", index),
        flow_id=owner.id,
        name=name,
        tags=(),
        paused=False,
        work_queue_id=None if queue is None else queue.id,
        work_queue_name=None if queue is None else queue.name,
    )


A, B, C, D = a_flow(0, "a", ("db",)), a_flow(1, "b"), a_flow(2, "c"), a_flow(3, "d")
POOL = WorkPool(id=row_id("work_pool", 0), name="p1", type="process")
QUEUE = WorkQueue(id=row_id("work_queue", 0), work_pool_id=POOL.id, name="default")

#: a: run with NULL state; b: COMPLETED; c: FAILED; d: no run.
STATES = Dataset(
    flows=(A, B, C, D),
    flow_runs=(
        a_run(0, A),
        a_run(1, B, state_type="COMPLETED", state_name="Completed"),
        a_run(2, C, state_type="FAILED", state_name="Failed"),
    ),
)

#: b's run ran from T0; a's has not started but is expected at T0+2m.
TIMES = Dataset(
    flows=(A, B),
    flow_runs=(
        a_run(0, A, expected_start_time=T0 + 2 * MINUTE, end_time=T0 + 3 * MINUTE),
        a_run(1, B, start_time=T0, expected_start_time=T0 + 5 * MINUTE, end_time=T0),
    ),
)

#: c's run was started by a task run of a's run; b's run has only an orphan parent.
_PARENT_RUN = a_run(0, A)
_PARENT_TASK = a_task(0, _PARENT_RUN)
_ORPHAN_TASK = a_task(1, None)
SUBFLOWS = Dataset(
    flows=(A, B, C),
    flow_runs=(
        _PARENT_RUN,
        a_run(1, B, parent_task_run_id=_ORPHAN_TASK.id),
        a_run(2, C, parent_task_run_id=_PARENT_TASK.id),
    ),
    task_runs=(_PARENT_TASK, _ORPHAN_TASK, a_task(2, None)),
)

#: a: run "x" without task runs and run "y" with task "t"; b: run "x" with task "t".
_A_X, _A_Y, _B_X = a_run(0, A, name="x"), a_run(1, A, name="y"), a_run(2, B, name="x")
SAME_RUN = Dataset(
    flows=(A, B),
    flow_runs=(_A_X, _A_Y, _B_X),
    task_runs=(a_task(0, _A_Y, name="t"), a_task(1, _B_X, name="t")),
)

#: a: "d1" without a queue and "d2" on p1; b: "d1" on p1; c: no deployment.
SAME_DEPLOYMENT = Dataset(
    flows=(A, B, C),
    work_pools=(POOL,),
    work_queues=(QUEUE,),
    deployments=(
        replace(a_deployment(0, A, "d1"), work_queue_name="default"),
        a_deployment(1, A, "d2", QUEUE),
        a_deployment(2, B, "d1", QUEUE),
    ),
)

#: created_by: a lower-case id, b the same id upper-case, c a JSON null id, d NULL.
CREATORS = Dataset(
    flows=(A, B, C, D),
    flow_runs=(
        a_run(0, A, created_by=CreatedBy(str(CREATOR), "DEPLOYMENT")),
        a_run(1, B, created_by=CreatedBy(str(CREATOR).upper(), "DEPLOYMENT")),
        a_run(2, C, created_by=CreatedBy(None, "AUTOMATION")),
        a_run(3, D),
    ),
)

NAMES = Dataset(flows=(a_flow(0, "Gamma_x"), a_flow(1, "gammaYx"), a_flow(2, "gam")))


def _at(moment: datetime) -> str:
    return strategies.rfc3339(moment)


CASES = [
    pytest.param(
        STATES, {"flow_runs": {}}, ["a", "b", "c"], id="an-empty-flow-run-filter-needs-a-run"
    ),
    pytest.param(
        STATES,
        {"flow_runs": {"state": {"type": {"not_any": ["COMPLETED"]}}}},
        ["c"],
        id="not-any-never-matches-a-null-column",
    ),
    pytest.param(
        STATES,
        {
            "flow_runs": {
                "state": {"operator": "OPERATOR_OR", "type": {"any": ["FAILED"]}, "name": {}}
            }
        },
        ["c"],
        id="state-or-drops-an-empty-child",
    ),
    pytest.param(
        STATES,
        {"flow_runs": {"state": {"operator": "OPERATOR_OR", "type": {"not_any": []}, "name": {}}}},
        ["a", "b", "c"],
        id="state-with-only-empty-children-is-true",
    ),
    pytest.param(
        STATES,
        {"flow_runs": {"state": {"type": {"any": ["COMPLETED", "FAILED"], "not_any": ["FAILED"]}}}},
        ["b"],
        id="state-type-any-and-not-any-both-apply",
    ),
    pytest.param(
        STATES,
        {"flow_runs": {"operator": "OPERATOR_OR", "id": {"any": []}, "name": {}}},
        ["a", "b", "c"],
        id="or-with-an-empty-child-is-true",
    ),
    pytest.param(
        STATES, {"flows": {"name": {"any": []}}}, [], id="an-empty-any-list-matches-nothing"
    ),
    pytest.param(
        STATES,
        {"flows": {"operator": "OPERATOR_OR", "name": {"any": []}, "tags": {"all": []}}},
        ["a", "b", "c", "d"],
        id="an-ignored-all-list-still-makes-a-true-child",
    ),
    pytest.param(
        STATES, {"flows": {"tags": {"is_null": True}}}, ["b", "c", "d"], id="no-tags-is-null"
    ),
    pytest.param(
        TIMES,
        {"flow_runs": {"start_time": {"after": _at(T0 + MINUTE)}}},
        ["a"],
        id="start-time-bounds-fall-back-to-the-expected-start",
    ),
    pytest.param(
        TIMES,
        {"flow_runs": {"start_time": {"is_null": True}}},
        ["a"],
        id="start-time-is-null-tests-the-start-only",
    ),
    pytest.param(
        TIMES,
        {"flow_runs": {"end_time": {"before": _at(T0), "after": _at(T0)}}},
        ["b"],
        id="time-bounds-are-inclusive",
    ),
    pytest.param(
        TIMES,
        {"flow_runs": {"end_time": {"before": _at(T0 - timedelta(microseconds=1))}}},
        [],
        id="time-bounds-keep-microseconds",
    ),
    pytest.param(
        SUBFLOWS,
        {"flow_runs": {"parent_flow_run_id": {"any": [str(_PARENT_RUN.id)]}}},
        ["c"],
        id="parent-flow-run-id-finds-subflow-runs",
    ),
    pytest.param(
        SUBFLOWS,
        {"task_runs": {"subflow_runs": {"exists": True}}},
        ["a"],
        id="subflow-runs-exists",
    ),
    pytest.param(
        SUBFLOWS,
        {"task_runs": {"flow_run_id": {"is_null": True}}},
        [],
        id="task-runs-without-a-flow-run-never-count",
    ),
    pytest.param(
        SAME_RUN,
        {"flow_runs": {"name": {"any": ["x"]}}, "task_runs": {"name": {"any": ["t"]}}},
        ["b"],
        id="flow-run-and-task-run-filters-hold-on-one-run",
    ),
    pytest.param(
        SAME_DEPLOYMENT,
        {"deployments": {"name": {"any": ["d1"]}}, "work_pools": {}},
        ["b"],
        id="deployment-and-work-pool-filters-hold-on-one-deployment",
    ),
    pytest.param(
        SAME_DEPLOYMENT,
        {"deployments": {"flow_or_deployment_name": {"like": "B"}}},
        ["b"],
        id="flow-or-deployment-name-matches-the-flow-name",
    ),
    pytest.param(
        SAME_DEPLOYMENT,
        {"flows": {"deployment": {"is_null": True}}},
        ["c"],
        id="flow-deployment-is-null",
    ),
    pytest.param(
        SAME_DEPLOYMENT,
        {
            "deployments": {
                "operator": "OPERATOR_OR",
                "concurrency_limit": {},
                "name": {"any": ["nope"]},
            }
        },
        [],
        id="concurrency-limit-never-changes-a-result",
    ),
    pytest.param(
        CREATORS,
        {"flow_runs": {"created_by": {"id": [str(CREATOR).upper()]}}},
        ["a"],
        id="created-by-id-compares-the-stored-lower-case-text",
    ),
    pytest.param(
        CREATORS,
        {"flow_runs": {"created_by": {"is_null": False}}},
        ["a", "b", "c"],
        id="created-by-is-null-tests-the-column",
    ),
    pytest.param(
        NAMES,
        {"flows": {"name": {"like": "MA_X"}}},
        ["Gamma_x", "gammaYx"],
        id="like-is-case-insensitive-with-wildcards",
    ),
]


@pytest.mark.parametrize(("dataset", "filters", "expected"), CASES)
async def test_named_case(
    client: FlowClient,
    seed: Seeder,
    dataset: Dataset,
    filters: dict[str, Any],
    expected: list[str],
) -> None:
    assert expected_names(dataset, filters) == expected, "the reference disagrees with the docs"
    await empty_tables(seed.engine)
    await load(seed, dataset)
    await check(client, dataset, filters)
