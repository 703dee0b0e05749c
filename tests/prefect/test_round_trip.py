"""The other direction: what FlowService writes, Prefect's REST API reads as its own.

Flows are created, retagged and deleted through FlowService, and checked
through Prefect: the flow and its tags and labels, a later `updated` after
an update, and after a delete a 404 for the flow and for the deployments,
flow runs and task runs Prefect had attached to it. Every flow made here is
removed again, so the seeded data the queries expect stays as it is.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING, Any

import pytest

from tests.prefect.compare import from_flowservice, from_prefect, instant
from tests.prefect.prefect_process import PrefectServer

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from tests.prefect.conftest import Differential


@pytest.fixture
async def cleanup(both: Differential) -> AsyncIterator[list[str]]:
    """Flow ids to delete through Prefect at the end, whatever happened."""
    flow_ids: list[str] = []
    yield flow_ids
    for flow_id in flow_ids:
        await both.prefect("DELETE", f"/flows/{flow_id}")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def test_create_update_and_delete_are_seen_by_prefect(
    both: Differential, cleanup: list[str]
) -> None:
    labels: dict[str, Any] = {"env": "rt", "shards": 3, "ok": True, "ratio": 2.5, "s": "1"}
    flow, created = await both.client.create_flow(
        unique("rt-flow"), tags=["rt", "db", "rt", "ünï"], labels=labels
    )
    cleanup.append(flow.id)
    assert created
    prefect_flow = await both.prefect_ok("GET", f"/flows/{flow.id}")
    assert from_prefect(prefect_flow) == from_flowservice(flow)
    assert prefect_flow["tags"] == ["rt", "db", "rt", "ünï"]
    assert prefect_flow["labels"] == labels
    by_name = await both.prefect_ok(
        "GET", f"/flows/name/{both.prefect_server.api.quote(flow.name)}"
    )
    assert from_prefect(by_name) == from_flowservice(flow)
    found = await both.prefect_ok(
        "POST", "/flows/filter", {"flows": {"tags": {"all_": ["rt", "ünï"]}}}
    )
    assert [f["id"] for f in found] == [flow.id]

    # Things of Prefect's own that hang off the flow, to be cascaded away later.
    deployment = await both.prefect_ok(
        "POST", "/deployments/", {"name": "rt-deployment", "flow_id": flow.id}
    )
    run = await both.prefect_ok(
        "POST",
        "/flow_runs/",
        {"name": "rt-run", "flow_id": flow.id, "deployment_id": deployment["id"]}
        | {"state": {"type": "RUNNING"}},
    )
    task = await both.prefect_ok(
        "POST",
        "/task_runs/",
        {"name": "rt-task", "flow_run_id": run["id"], "task_key": "k", "dynamic_key": "0"},
    )

    retagged = await both.client.update_flow(flow.id, tags=["retagged"])
    after_update = await both.prefect_ok("GET", f"/flows/{flow.id}")
    assert from_prefect(after_update) == from_flowservice(retagged)
    assert after_update["tags"] == ["retagged"]
    assert instant(after_update["created"]) == instant(prefect_flow["created"])
    assert instant(after_update["updated"]) > instant(prefect_flow["updated"])

    # Prefect's SQL orders FlowService's timestamps (text on SQLite) among its own.
    for sort in ("UPDATED_DESC", "CREATED_DESC"):
        answers = await both.answers({"sort": sort, "limit": 3})
        answers.assert_same()
        assert answers.prefect[0].id == flow.id, answers.context

    touched = await both.client.update_flow(flow.id)  # no tags: only `updated` moves
    after_touch = await both.prefect_ok("GET", f"/flows/{flow.id}")
    assert from_prefect(after_touch) == from_flowservice(touched)
    assert after_touch["tags"] == ["retagged"]
    assert instant(after_touch["updated"]) > instant(after_update["updated"])

    await both.client.delete_flow(flow.id)
    for path in (
        f"/flows/{flow.id}",
        f"/deployments/{deployment['id']}",
        f"/flow_runs/{run['id']}",
        f"/task_runs/{task['id']}",
    ):
        reply = await both.prefect("GET", path)
        assert reply.status == 404, (path, reply)
    assert (
        await both.prefect_ok("POST", "/flows/count", {"flows": {"id": {"any_": [flow.id]}}}) == 0
    )


async def test_deleting_a_parent_flow_orphans_other_flows_subflow_runs(
    both: Differential, cleanup: list[str]
) -> None:
    """Prefect's foreign keys: the child run stays, with parent_task_run_id set to NULL."""
    parent, _ = await both.client.create_flow(unique("rt-parent"))
    child, _ = await both.client.create_flow(unique("rt-child"))
    cleanup += [parent.id, child.id]
    parent_run = await both.prefect_ok("POST", "/flow_runs/", {"name": "p", "flow_id": parent.id})
    parent_task = await both.prefect_ok(
        "POST",
        "/task_runs/",
        {"name": "pt", "flow_run_id": parent_run["id"], "task_key": "k", "dynamic_key": "0"},
    )
    child_run = await both.prefect_ok(
        "POST",
        "/flow_runs/",
        {"name": "c", "flow_id": child.id, "parent_task_run_id": parent_task["id"]},
    )
    await both.client.delete_flow(parent.id)
    assert (await both.prefect("GET", f"/flows/{parent.id}")).status == 404
    remaining = await both.prefect_ok("GET", f"/flow_runs/{child_run['id']}")
    assert remaining["flow_id"] == child.id
    assert remaining["parent_task_run_id"] is None


async def test_labels_absent_empty_and_an_existing_name(
    both: Differential, cleanup: list[str]
) -> None:
    """Absent labels are NULL here (README); `{}` stays `{}`; get-or-create keeps the row."""
    bare, _ = await both.client.create_flow(unique("rt-bare"))
    empty, _ = await both.client.create_flow(unique("rt-empty"), labels={})
    cleanup += [bare.id, empty.id]
    assert (await both.prefect_ok("GET", f"/flows/{bare.id}"))["labels"] is None
    assert (await both.prefect_ok("GET", f"/flows/{empty.id}"))["labels"] == {}
    # Prefect's `tags.is_null_` compares the stored text with `[]` on SQLite.
    answers = await both.answers(
        {"flows": {"name": {"like_": "rt-"}, "tags": {"is_null_": True}}, "sort": "CREATED_DESC"}
    )
    answers.assert_same()
    assert [flow.id for flow in answers.prefect] == [empty.id, bare.id], answers.context

    seeded = both.seed.flows["alpha-etl"]
    again, created = await both.client.create_flow("alpha-etl", tags=["ignored"], labels={"x": 1})
    assert not created
    assert from_flowservice(again) == from_prefect(seeded)
    assert from_prefect(await both.prefect_ok("GET", f"/flows/{seeded['id']}")) == from_prefect(
        seeded
    )


async def test_prefect_writes_are_read_by_flowservice(
    both: Differential, cleanup: list[str]
) -> None:
    """Prefect's own PATCH (SQL `now()`, millisecond precision on SQLite) and DELETE."""
    flow = await both.prefect_ok(
        "POST", "/flows/", {"name": unique("rt-prefect"), "labels": {"n": 1.0}}
    )
    cleanup.append(flow["id"])
    assert from_flowservice(await both.client.read_flow(flow["id"])) == from_prefect(flow)
    await both.prefect_ok("PATCH", f"/flows/{flow['id']}", {"tags": ["from-prefect"]})
    patched = await both.prefect_ok("GET", f"/flows/{flow['id']}")
    assert from_flowservice(await both.client.read_flow(flow["id"])) == from_prefect(patched)
    await both.prefect_ok("DELETE", f"/flows/{flow['id']}")
    assert await both.client.count_flows(flows={"id": {"any": [flow["id"]]}}) == 0


async def test_a_prefect_server_starts_and_writes_beside_flowservices_indexes(
    both: Differential,
    prefect_executable: Path,
    prefect_database: str,
    flowservice_indexes: str,
    tmp_path: Path,
    cleanup: list[str],
) -> None:
    """A second Prefect server on the database `flowservice indexes add` changed.

    It runs its start-up migration check and serves; the runs it writes land
    in the added indexes, and FlowService's filter through them sees them.
    """
    assert "ix_flow_run__state_type_flow_id" in flowservice_indexes
    second = await asyncio.to_thread(
        PrefectServer.start, prefect_executable, tmp_path / "second-prefect", prefect_database
    )
    try:
        flow = await asyncio.to_thread(
            second.api.ok, "POST", "/flows/", {"name": unique("rt-indexed")}
        )
        cleanup.append(flow["id"])
        await asyncio.to_thread(
            second.api.ok,
            "POST",
            "/flow_runs/",
            {"name": "crashed", "flow_id": flow["id"], "state": {"type": "CRASHED"}},
        )
    finally:
        await asyncio.to_thread(second.stop)
    crashed = await both.client.count_flows(
        flows={"id": {"any": [flow["id"]]}}, flow_runs={"state": {"type": {"any": ["CRASHED"]}}}
    )
    assert crashed == 1
