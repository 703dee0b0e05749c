"""Etags: on every Flow, derived from the stored row, and conditional UpdateFlow/DeleteFlow
that write only if nothing changed, atomically (docs/semantics.md#etags)."""

from __future__ import annotations

import asyncio
import re
import signal
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import grpc
import pytest
import sqlalchemy as sa

from flowservice.client import FlowClient, FlowClientSync, RpcError
from flowservice.v1 import flow_service_pb2 as s
from flowservice_server.convert import row_etag
from flowservice_server.db.tables import flow as flow_table
from flowservice_server.models.flows import read_flow
from tests.helpers import expect_error, when
from tests.processes import start

if TYPE_CHECKING:
    from collections.abc import Awaitable
    from pathlib import Path

    from flowservice.v1 import flow_pb2
    from flowservice_server.app import RunningServer
    from tests.factories import Seeder

ABORTED = grpc.StatusCode.ABORTED
INVALID = grpc.StatusCode.INVALID_ARGUMENT
NO_RETRIES = [("grpc.enable_retries", 0)]
ETAG_SHAPE = re.compile(r"[A-Za-z0-9_-]{16}")


# --- on every Flow ---------------------------------------------------------------------


async def test_every_flow_the_service_returns_has_the_same_etag(client: FlowClient) -> None:
    created, _ = await client.create_flow("etl", tags=["db"], labels={"env": "dev"})
    assert ETAG_SHAPE.fullmatch(created.etag)
    seen = [
        (await client.create_flow("etl"))[0],
        await client.read_flow(created.id),
        await client.read_flow_by_name("etl"),
        *(await client.read_flows()),
        *(await client.batch_get_flows(ids=[created.id], names=["etl"])),
        *(flow for flow, _ in await client.batch_create_flows([("etl",)])),
    ]
    assert {flow.etag for flow in seen} == {created.etag}


async def test_flows_differ_in_etag(client: FlowClient) -> None:
    answers = await client.batch_create_flows((f"f{i}", ["same"]) for i in range(50))
    assert len({flow.etag for flow, _ in answers}) == 50


async def test_the_etag_is_derived_from_the_row_alike_on_both_databases(seed: Seeder) -> None:
    """A pinned value: the derivation is the same on SQLite and PostgreSQL, and a change
    to it (which would make every etag clients hold stale) does not go unnoticed."""
    at = datetime(2026, 11, 20, 9, 0, 0, 123456, tzinfo=UTC)
    flow_id = uuid.UUID("2800a198-27d2-4911-8891-10f734680452")
    await seed.flow(
        "etl", tags=["db", "nightly"], id=flow_id, created=at, updated=at, labels={"b": 1, "a": "x"}
    )
    async with seed.engine.connect() as connection:  # the server's query, on its own engine
        row = await connection.run_sync(read_flow, flow_id)
    assert row is not None
    assert row_etag(row) == PINNED_ETAG


#: The etag of the row seeded above; the same on both databases.
PINNED_ETAG = "f7Xvl1QFrcwU7wIs"


async def test_every_write_of_the_flow_changes_the_etag(client: FlowClient) -> None:
    flow, _ = await client.create_flow("etl", tags=["db"])
    etags = [flow.etag]
    for tags in (["db"], None, [], ["x", "x"]):
        etags.append((await client.update_flow(flow.id, tags=tags)).etag)
    assert len(set(etags)) == len(etags)
    assert (await client.read_flow(flow.id)).etag == etags[-1]


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"tags": ["db", "new"]}, id="tags"),
        pytest.param({"labels": {"env": "prod"}}, id="labels"),
        pytest.param({"labels": None}, id="labels-removed"),
        pytest.param({"name": "renamed"}, id="name"),
        pytest.param({"updated": datetime(2030, 1, 1, tzinfo=UTC)}, id="updated"),
    ],
)
async def test_a_direct_sql_write_changes_the_etag(
    client: FlowClient, seed: Seeder, change: dict[str, Any]
) -> None:
    """Another writer (a Prefect server, a migration script) need not know about etags."""
    flow, _ = await client.create_flow("etl", tags=["db"], labels={"env": "dev"})
    async with seed.engine.begin() as connection:
        await connection.execute(
            sa.update(flow_table).where(flow_table.c.id == uuid.UUID(flow.id)).values(**change)
        )
    assert (await client.read_flow(flow.id)).etag != flow.etag
    await expect_error(client.update_flow(flow.id, tags=["mine"], etag=flow.etag), ABORTED)


# --- conditional UpdateFlow and DeleteFlow ---------------------------------------------


async def test_an_update_with_the_current_etag_writes(client: FlowClient) -> None:
    flow, _ = await client.create_flow("etl", tags=["db"])
    updated = await client.update_flow(flow.id, tags=["a"], etag=flow.etag)
    assert list(updated.tags) == ["a"]
    assert updated.etag != flow.etag
    again = await client.update_flow(flow.id, etag=updated.etag)  # touch: `updated` only
    assert list(again.tags) == ["a"]
    assert when(again.updated) > when(updated.updated)
    assert again.etag not in {flow.etag, updated.etag}


async def test_a_stale_etag_is_aborted_and_nothing_is_written(client: FlowClient) -> None:
    flow, _ = await client.create_flow("etl", tags=["db"])
    current = await client.update_flow(flow.id, tags=["first"])
    error = await expect_error(
        client.update_flow(flow.id, tags=["second"], etag=flow.etag), ABORTED
    )
    assert error.error_info is not None
    assert error.error_info.reason == "ETAG_MISMATCH"
    assert error.error_info.metadata["id"] == flow.id
    assert "read it again" in error.message
    assert await client.read_flow(flow.id) == current  # tags and `updated` as they were
    await expect_error(client.update_flow(flow.id, etag=flow.etag), ABORTED)
    assert await client.read_flow(flow.id) == current


async def test_a_delete_with_a_stale_etag_deletes_nothing(client: FlowClient) -> None:
    flow, _ = await client.create_flow("etl")
    current = await client.update_flow(flow.id, tags=["x"])
    await expect_error(client.delete_flow(flow.id, etag=flow.etag), ABORTED)
    assert await client.read_flow(flow.id) == current
    await client.delete_flow(flow.id, etag=current.etag)
    await expect_error(client.read_flow(flow.id), grpc.StatusCode.NOT_FOUND)
    # Gone: a retried conditional delete answers NOT_FOUND, as an unconditional one does.
    await expect_error(client.delete_flow(flow.id, etag=current.etag), grpc.StatusCode.NOT_FOUND)


async def test_an_unknown_id_with_an_etag_is_not_found(client: FlowClient) -> None:
    flow, _ = await client.create_flow("etl")
    unknown = str(uuid.uuid4())
    await expect_error(client.update_flow(unknown, etag=flow.etag), grpc.StatusCode.NOT_FOUND)
    await expect_error(client.delete_flow(unknown, etag=flow.etag), grpc.StatusCode.NOT_FOUND)


async def test_another_flows_etag_is_stale(client: FlowClient) -> None:
    one, _ = await client.create_flow("one")
    other, _ = await client.create_flow("other")
    await expect_error(client.update_flow(one.id, tags=["x"], etag=other.etag), ABORTED)


@pytest.mark.parametrize(
    "etag", ['"abc"', "x" * 15, "x" * 17, "!" * 16, "W/" + "x" * 14, "x" * 10_000]
)
async def test_a_malformed_etag_is_invalid_argument(client: FlowClient, etag: str) -> None:
    flow, _ = await client.create_flow("etl")
    await expect_error(client.update_flow(flow.id, tags=["x"], etag=etag), INVALID, "etag")
    await expect_error(client.delete_flow(flow.id, etag=etag), INVALID, "etag")
    assert await client.read_flow(flow.id) == flow


async def test_a_bad_id_mask_and_etag_are_reported_together(client: FlowClient) -> None:
    request = s.UpdateFlowRequest(id="nope", etag="short")
    request.update_mask.paths.append("name")
    await expect_error(
        client._call(client._stub.UpdateFlow, request),
        INVALID,
        "id",
        "update_mask.paths[0]",
        "etag",
    )
    await expect_error(
        client._call(client._stub.DeleteFlow, s.DeleteFlowRequest(id="", etag="?")),
        INVALID,
        "id",
        "etag",
    )


async def test_the_blocking_client_takes_etags(server: RunningServer) -> None:
    def use_it() -> None:  # in a thread: the server runs on this test's event loop
        with FlowClientSync(f"127.0.0.1:{server.port}", timeout=30) as sync_client:
            flow, _ = sync_client.create_flow("etl")
            updated = sync_client.update_flow(flow.id, tags=["a"], etag=flow.etag)
            with pytest.raises(RpcError) as raised:
                sync_client.delete_flow(flow.id, etag=flow.etag)
            assert raised.value.code == ABORTED
            sync_client.delete_flow(flow.id, etag=updated.etag)

    await asyncio.to_thread(use_it)


# --- atomicity -------------------------------------------------------------------------


async def _race(
    calls: list[Awaitable[Any]], *, gone_ok: bool = False
) -> tuple[list[Any], list[RpcError]]:
    """Run the calls at once: what succeeded, and the errors: every one ABORTED, or
    NOT_FOUND when `gone_ok` (a call that read the flow after a delete won)."""
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    wins = [o for o in outcomes if not isinstance(o, BaseException)]
    errors = [o for o in outcomes if isinstance(o, BaseException)]
    allowed = {ABORTED, grpc.StatusCode.NOT_FOUND} if gone_ok else {ABORTED}
    assert all(isinstance(e, RpcError) and e.code in allowed for e in errors), errors
    return wins, [e for e in errors if isinstance(e, RpcError)]


async def _one_winner_per_etag(clients: list[FlowClient], rounds: int) -> None:
    """Rounds of one conditional update per client, all with the same etag: exactly one
    writes each round; the next round races with the winner's etag."""
    first = clients[0]
    flow, _ = await first.create_flow(f"contended-{uuid.uuid4().hex[:8]}")
    etag = flow.etag
    for number in range(rounds):
        wins, errors = await _race(
            [
                c.update_flow(flow.id, tags=[f"round-{number}", f"client-{i}"], etag=etag)
                for i, c in enumerate(clients)
            ]
        )
        assert len(wins) == 1, f"round {number}: {len(wins)} updates won with one etag"
        assert len(errors) == len(clients) - 1
        winner = wins[0]
        assert winner is not None
        assert await first.read_flow(flow.id) == winner  # the winner's write, and only it
        etag = winner.etag


async def test_concurrent_updates_with_one_etag_have_one_winner(server: RunningServer) -> None:
    address = f"127.0.0.1:{server.port}"
    clients = [FlowClient(address, timeout=60, options=NO_RETRIES) for _ in range(12)]
    try:
        await _one_winner_per_etag(clients, rounds=10)
    finally:
        for c in clients:
            await c.close()


async def test_concurrent_deletes_and_updates_with_one_etag_have_one_winner(
    server: RunningServer,
) -> None:
    address = f"127.0.0.1:{server.port}"
    clients = [FlowClient(address, timeout=60, options=NO_RETRIES) for _ in range(8)]
    try:
        for number in range(6):
            flow, _ = await clients[0].create_flow(f"doomed-{number}")

            async def delete(c: FlowClient, flow: flow_pb2.Flow = flow) -> None:
                await c.delete_flow(flow.id, etag=flow.etag)

            calls: list[Awaitable[Any]] = []
            for i, c in enumerate(clients):
                calls.append(delete(c) if i % 2 else c.update_flow(flow.id, etag=flow.etag))
            wins, errors = await _race(calls, gone_ok=True)
            assert len(wins) == 1, f"{len(wins)} writes won with one etag"
            remaining = await clients[0].count_flows(flows={"id": {"any": [flow.id]}})
            assert remaining == (0 if wins[0] is None else 1)
            if remaining:  # an update won: nobody can have found the flow gone
                assert all(e.code == ABORTED for e in errors)
    finally:
        for c in clients:
            await c.close()


async def test_one_winner_across_two_server_processes_on_sqlite(tmp_path: Path) -> None:
    """Two worker processes each serialise their own writers; between processes only the
    compare-and-set in the database keeps a stale etag from winning."""
    process = await start(
        ["--address", "127.0.0.1:0", "--workers", "2"],
        tmp_path,
        {"FLOWSERVICE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"},
    )
    try:
        # A connection each (channels share connections unless told not to): the
        # kernel spreads connections over both workers.
        own_connection = [*NO_RETRIES, ("grpc.use_local_subchannel_pool", 1)]
        clients = [
            FlowClient(process.address, timeout=60, options=own_connection) for _ in range(16)
        ]
        try:
            await _one_winner_per_etag(clients, rounds=8)
        finally:
            for c in clients:
                await c.close()
        assert await process.stop() == 0
    finally:
        if process.process.returncode is None:
            await process.stop(signal.SIGKILL)
    access = [line for line in process.log if "flowservice.access" in line]
    pids = {match.group(1) for line in access if (match := re.search(r"\[(\d+)\]", line))}
    assert len(pids) == 2, "both workers should have served the race"


async def test_a_write_between_read_and_conditional_update_wins(
    client: FlowClient, seed: Seeder
) -> None:
    flow, _ = await client.create_flow("etl", tags=["db"])
    later = when(flow.updated) + timedelta(seconds=1)
    async with seed.engine.begin() as connection:  # as a Prefect server would write it
        await connection.execute(
            sa.update(flow_table)
            .where(flow_table.c.id == uuid.UUID(flow.id))
            .values(tags=["prefect"], updated=later)
        )
    await expect_error(client.update_flow(flow.id, tags=["mine"], etag=flow.etag), ABORTED)
    assert list((await client.read_flow(flow.id)).tags) == ["prefect"]
