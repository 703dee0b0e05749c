"""DeleteFlow and the database cascades (docs/semantics.md#cascades)."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import grpc
import sqlalchemy as sa

from flowservice_server.db.tables import deployment, flow_run, task_run, work_pool, work_queue
from tests.helpers import expect_error

if TYPE_CHECKING:
    from flowservice.client import FlowClient
    from tests.factories import Seeder


async def test_a_deleted_flow_is_gone(client: FlowClient) -> None:
    created_flow, _ = await client.create_flow("my-flow")
    kept, _ = await client.create_flow("other")
    await client.delete_flow(created_flow.id)
    await expect_error(client.read_flow(created_flow.id), grpc.StatusCode.NOT_FOUND)
    assert [f.id for f in await client.read_flows()] == [kept.id]


async def test_an_unknown_id_is_not_found(client: FlowClient) -> None:
    await expect_error(client.delete_flow(str(uuid.uuid4())), grpc.StatusCode.NOT_FOUND)


async def test_a_second_delete_is_not_found(client: FlowClient) -> None:
    created_flow, _ = await client.create_flow("my-flow")
    await client.delete_flow(created_flow.id)
    await expect_error(client.delete_flow(created_flow.id), grpc.StatusCode.NOT_FOUND)


async def test_deletes_runs_task_runs_and_deployments_of_the_flow(
    client: FlowClient, seed: Seeder
) -> None:
    doomed, _ = await client.create_flow("doomed")
    other, _ = await client.create_flow("other")
    doomed_id, other_id = uuid.UUID(doomed.id), uuid.UUID(other.id)
    pool = await seed.work_pool("pool")
    queue = await seed.work_queue(pool)
    await seed.deployment(doomed_id, "d-doomed", work_queue_id=queue)
    kept_deployment = await seed.deployment(other_id, "d-other", work_queue_id=queue)
    parent_run = await seed.flow_run(doomed_id, "parent")
    parent_task = await seed.task_run(parent_run, "spawns-a-subflow")
    # A subflow run of the *other* flow, started by a task run of the doomed flow.
    subflow_run = await seed.flow_run(other_id, "subflow", parent_task_run_id=parent_task)
    other_task = await seed.task_run(subflow_run, "kept-task")

    await client.delete_flow(doomed.id)

    assert await seed.fetch(sa.select(flow_run.c.id, flow_run.c.parent_task_run_id)) == [
        (subflow_run, None)  # kept, detached from its deleted parent task run
    ]
    assert [row.id for row in await seed.fetch(sa.select(task_run.c.id))] == [other_task]
    assert [row.id for row in await seed.fetch(sa.select(deployment.c.id))] == [kept_deployment]
    assert await seed.count(work_queue) == 1
    assert await seed.count(work_pool) == 1
