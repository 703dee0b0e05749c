"""BatchGetFlows and BatchCreateFlows through the real server, on both databases
(docs/semantics.md#batches)."""

from __future__ import annotations

import asyncio
import random
import uuid
from typing import TYPE_CHECKING

import grpc
import pytest
import sqlalchemy as sa

from flowservice.client import FlowClient, FlowClientSync, RpcError
from flowservice.v1 import flow_service_pb2 as s
from flowservice_server.errors import MAX_REPORTED_VIOLATIONS
from flowservice_server.validate import MAX_BATCH_ITEMS
from tests.helpers import expect_error, names

if TYPE_CHECKING:
    from flowservice_server.app import RunningServer
    from tests.factories import Seeder

INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
NO_RETRIES = [("grpc.enable_retries", 0)]


# --- BatchGetFlows ---------------------------------------------------------------------


async def test_get_returns_ids_in_order_then_names_in_order(client: FlowClient) -> None:
    a, _ = await client.create_flow("a")
    b, _ = await client.create_flow("b", tags=["x"], labels={"k": 1})
    c, _ = await client.create_flow("c")
    got = await client.batch_get_flows(ids=[c.id, a.id], names=["b", "a"])
    assert names(got) == ["c", "a", "b", "a"]
    assert got[2] == b  # the whole flow, etag included
    assert got[0] == await client.read_flow(c.id)


async def test_get_answers_a_repeated_id_or_name_each_time(client: FlowClient) -> None:
    a, _ = await client.create_flow("a")
    got = await client.batch_get_flows(ids=[a.id, a.id.upper(), a.id], names=["a", "a"])
    assert [flow.id for flow in got] == [a.id] * 5


async def test_get_by_names_only_and_ids_only(client: FlowClient) -> None:
    flows = [(await client.create_flow(f"f{i}"))[0] for i in range(5)]
    assert names(await client.batch_get_flows(names=["f3", "f1"])) == ["f3", "f1"]
    by_ids = await client.batch_get_flows(ids=[f.id for f in reversed(flows)])
    assert names(by_ids) == ["f4", "f3", "f2", "f1", "f0"]


async def test_get_a_thousand_at_once(client: FlowClient) -> None:
    wanted = [f"flow-{i:04}" for i in range(MAX_BATCH_ITEMS)]
    created = await client.batch_create_flows((name,) for name in wanted)
    shuffled = random.Random(7).sample(wanted, len(wanted))
    assert names(await client.batch_get_flows(names=shuffled)) == shuffled
    half = [flow.id for flow, _ in created[::2]]
    got = await client.batch_get_flows(ids=half, names=wanted[: MAX_BATCH_ITEMS // 2])
    assert len(got) == MAX_BATCH_ITEMS


async def test_get_is_all_or_nothing_and_names_each_missing_one(client: FlowClient) -> None:
    a, _ = await client.create_flow("a")
    gone = str(uuid.uuid4())
    error = await expect_error(
        client.batch_get_flows(ids=[a.id, gone, gone], names=["a", "nope"]), NOT_FOUND
    )
    assert [(i.resource_type, i.resource_name) for i in error.resource_infos] == [
        ("flowservice.v1.Flow", gone),
        ("flowservice.v1.Flow", "nope"),
    ]
    assert error.resource_infos[0].description.startswith("ids[1]:")
    assert error.resource_infos[1].description.startswith("names[1]:")
    assert error.message.startswith("2 of the 5 requested flows do not exist")
    assert error.error_info is not None
    assert error.error_info.reason == "FLOW_NOT_FOUND"
    assert error.error_info.metadata["missing"] == "2"


async def test_many_missing_are_counted_but_ten_are_named(client: FlowClient) -> None:
    """Trailers past 8 KiB fail on the client's side: at most 10 ResourceInfos, cut short."""
    missing = [f"{'🌊' * 9_990}-{i}" for i in range(40)]  # ~40,000 bytes each
    error = await expect_error(client.batch_get_flows(names=missing), NOT_FOUND)
    assert len(error.resource_infos) == MAX_REPORTED_VIOLATIONS
    assert all(len(info.resource_name) <= 100 for info in error.resource_infos)
    assert "40 of the 40 requested flows" in error.message
    assert len(error.message) <= 300
    assert error.error_info is not None
    assert error.error_info.metadata["missing"] == "40"


@pytest.mark.parametrize(
    ("ids", "batch_names", "fields"),
    [
        pytest.param([], [], ["ids"], id="empty"),
        pytest.param(["x", str(uuid.uuid4()), ""], [], ["ids[0]", "ids[2]"], id="bad-ids"),
        pytest.param([], ["a", ""], ["names[1]"], id="empty-name"),
        pytest.param([str(uuid.uuid4())] * 600, ["a"] * 401, ["ids"], id="more-than-1000-together"),
    ],
)
async def test_get_refuses_bad_requests(
    client: FlowClient, ids: list[str], batch_names: list[str], fields: list[str]
) -> None:
    await expect_error(client.batch_get_flows(ids=ids, names=batch_names), INVALID, *fields)


async def test_get_with_a_list_past_the_decode_limit(client: FlowClient) -> None:
    await expect_error(
        client.batch_get_flows(names=["a"] * (MAX_BATCH_ITEMS + 1)), INVALID, "names"
    )


async def test_get_runs_one_query_per_list(client: FlowClient, server: RunningServer) -> None:
    """1,000 lookups are two statements, not 1,000."""
    created = await client.batch_create_flows((f"f{i}",) for i in range(500))
    statements: list[str] = []
    engine = server.database.engine  # type: ignore[attr-defined]  # both backends have one
    sync_engine = getattr(engine, "sync_engine", engine)

    def count(*args: object) -> None:
        statements.append(str(args[2]))

    sa.event.listen(sync_engine, "before_cursor_execute", count)
    try:
        await client.batch_get_flows(
            ids=[flow.id for flow, _ in created], names=[f"f{i}" for i in range(500)]
        )
    finally:
        sa.event.remove(sync_engine, "before_cursor_execute", count)
    selects = [sql for sql in statements if "FROM flow" in sql]
    assert len(selects) == 2, statements


# --- BatchCreateFlows ------------------------------------------------------------------


async def test_create_gets_or_creates_each_in_order(client: FlowClient) -> None:
    old, _ = await client.create_flow("old", tags=["kept"])
    answers = await client.batch_create_flows(
        [
            ("new-1", ["a"], {"env": "dev", "n": 2}),
            ("old", ["ignored"]),
            s.CreateFlowRequest(name="new-2"),
        ]
    )
    assert [(flow.name, created) for flow, created in answers] == [
        ("new-1", True),
        ("old", False),
        ("new-2", True),
    ]
    first, existing, second = (flow for flow, _ in answers)
    assert list(first.tags) == ["a"]
    assert dict(first.labels) == {"env": "dev", "n": 2}
    assert existing == old
    assert not second.HasField("labels")
    assert first == await client.read_flow(first.id)
    assert second == await client.read_flow_by_name("new-2")


async def test_a_name_twice_is_one_flow_created_once(client: FlowClient) -> None:
    answers = await client.batch_create_flows([("twice", ["first"]), ("other",), ("twice", ["b"])])
    (one, created_one), _, (two, created_two) = answers
    assert (created_one, created_two) == (True, False)
    assert one == two
    assert list(two.tags) == ["first"]  # the first request makes the flow
    assert await client.count_flows() == 2


async def test_create_validates_every_request_and_writes_nothing(client: FlowClient) -> None:
    bad = s.CreateFlowRequest(name="ok-2")
    bad.labels.update({"list": [1], "fine": 1})
    error = await expect_error(
        client.batch_create_flows([("ok",), ("a/b",), bad, ("",)]),
        INVALID,
        "requests[1].name",
        "requests[2].labels.list",
        "requests[3].name",
    )
    assert error.message.startswith("invalid requests[1].name")
    assert await client.count_flows() == 0


@pytest.mark.parametrize("count", [0, MAX_BATCH_ITEMS + 1])
async def test_create_takes_1_to_1000_requests(client: FlowClient, count: int) -> None:
    await expect_error(
        client.batch_create_flows((f"f{i}",) for i in range(count)), INVALID, "requests"
    )


async def test_create_a_thousand_in_one_call(client: FlowClient) -> None:
    answers = await client.batch_create_flows((f"f{i}", [str(i)]) for i in range(MAX_BATCH_ITEMS))
    assert all(created for _, created in answers)
    assert names([flow for flow, _ in answers]) == [f"f{i}" for i in range(MAX_BATCH_ITEMS)]
    assert await client.count_flows() == MAX_BATCH_ITEMS
    again = await client.batch_create_flows((f"f{i}",) for i in range(MAX_BATCH_ITEMS))
    assert not any(created for _, created in again)
    assert [flow for flow, _ in again] == [flow for flow, _ in answers]


async def test_create_keeps_rows_another_writer_seeded(client: FlowClient, seed: Seeder) -> None:
    seeded = await seed.flow("seeded", tags=["x"])
    (flow, created), (new, new_created) = await client.batch_create_flows([("seeded",), ("new",)])
    assert (flow.id, created, list(flow.tags)) == (str(seeded), False, ["x"])
    assert (new.name, new_created) == ("new", True)


async def test_concurrent_batches_with_overlapping_names_never_fail(
    server: RunningServer,
) -> None:
    """Rounds of eight batches of 200 shuffled names out of 300, at once: every call
    succeeds (no unique violation, no deadlock), every name is created exactly once, and
    every answer for a name is the same flow."""
    address = f"127.0.0.1:{server.port}"
    randomness = random.Random(2026)
    # No retries: a deadlock or a busy database (UNAVAILABLE, which the client would
    # retry) must not happen at all.
    clients = [FlowClient(address, timeout=60, options=NO_RETRIES) for _ in range(8)]
    try:
        for round_number in range(4):
            pool = [f"round-{round_number}-{i:03}" for i in range(300)]
            batches = [randomness.sample(pool, 200) for _ in clients]
            results = await asyncio.gather(
                *(
                    c.batch_create_flows((name, [f"batch-{n}"]) for name in batch)
                    for n, (c, batch) in enumerate(zip(clients, batches, strict=True))
                )
            )
            created_by_name: dict[str, int] = {}
            ids_by_name: dict[str, set[str]] = {}
            for batch, answers in zip(batches, results, strict=True):
                assert [flow.name for flow, _ in answers] == batch
                for flow, created in answers:
                    created_by_name[flow.name] = created_by_name.get(flow.name, 0) + created
                    ids_by_name.setdefault(flow.name, set()).add(flow.id)
            used = {name for batch in batches for name in batch}
            assert created_by_name == dict.fromkeys(used, 1)
            assert all(len(ids) == 1 for ids in ids_by_name.values())
            flows = {"name": {"like": f"round-{round_number}-"}}
            assert await clients[0].count_flows(flows=flows) == len(used)
    finally:
        for c in clients:
            await c.close()


async def test_the_blocking_client_has_the_batch_methods(server: RunningServer) -> None:
    def use_it() -> None:  # in a thread: the server runs on this test's event loop
        with FlowClientSync(f"127.0.0.1:{server.port}", timeout=30) as sync_client:
            answers = sync_client.batch_create_flows([("a",), ("b", ["t"], {"x": True})])
            assert [created for _, created in answers] == [True, True]
            got = sync_client.batch_get_flows(ids=[answers[1][0].id], names=["a"])
            assert names(got) == ["b", "a"]
            with pytest.raises(RpcError) as raised:
                sync_client.batch_get_flows(names=["missing"])
            assert raised.value.code == NOT_FOUND

    await asyncio.to_thread(use_it)
