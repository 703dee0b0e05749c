"""The memo of serialized flows: keyed by the whole stored row, so never stale.

Rows are changed behind the server's back with plain SQL on its database (as
a Prefect server or any other writer would), in every column a Flow shows,
including writes that leave `updated` as it was; every read after them must
show the row as it now is.
"""

from __future__ import annotations

import contextlib
import uuid
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from google.protobuf import json_format

from flowservice.client import FlowClient
from flowservice_server.app import start_server
from flowservice_server.config import DatabaseSettings, Settings

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from flowservice.v1 import flow_pb2
    from tests.factories import Seeder


@contextlib.asynccontextmanager
async def _client(url: str, memo_size: int) -> AsyncIterator[FlowClient]:
    settings = Settings(
        address="127.0.0.1:0", database=DatabaseSettings(url=url), response_memo_size=memo_size
    )
    running = await start_server(settings)
    try:
        async with FlowClient(f"127.0.0.1:{running.port}", timeout=30) as client:
            yield client
    finally:
        await running.stop(grace=None)


async def _sql(seed: Seeder, statement: str, **values: Any) -> None:
    """One plain SQL write, committed, from outside the server."""
    async with seed.engine.begin() as connection:
        await connection.execute(sa.text(statement), values)


async def _every_read(client: FlowClient, flow_id: str, name: str) -> list[flow_pb2.Flow]:
    """The flow as ReadFlow, ReadFlowByName and ReadFlows each return it."""
    page = await client.read_flows()
    listed = [flow for flow in page if flow.id == flow_id]
    return [await client.read_flow(flow_id), await client.read_flow_by_name(name), *listed]


async def test_reads_after_plain_sql_writes_show_the_row_as_it_is(
    database_url: str, seed: Seeder
) -> None:
    async with _client(database_url, memo_size=100) as client:
        flow, _ = await client.create_flow("memo", tags=["a"], labels={"k": "v"})
        first = await _every_read(client, flow.id, "memo")
        assert first == [flow] * 3
        again = await _every_read(client, flow.id, "memo")  # answered from the memo
        assert again == first

        # Tags, without touching `updated`: the etag and the row both change.
        await _sql(seed, "UPDATE flow SET tags = :tags WHERE id = :id", tags='["b"]', id=flow.id)
        retagged = await _every_read(client, flow.id, "memo")
        assert [list(f.tags) for f in retagged] == [["b"]] * 3
        assert all(f.etag != flow.etag for f in retagged)
        assert all(f.updated == flow.updated for f in retagged)

        # Labels, to none and back to an equal-looking value.
        await _sql(seed, "UPDATE flow SET labels = NULL WHERE id = :id", id=flow.id)
        assert all(not f.HasField("labels") for f in await _every_read(client, flow.id, "memo"))
        await _sql(
            seed, "UPDATE flow SET labels = :labels WHERE id = :id", labels='{"k": 1}', id=flow.id
        )
        relabelled = await _every_read(client, flow.id, "memo")
        assert [dict(f.labels) for f in relabelled] == [{"k": 1.0}] * 3

        # The name.
        await _sql(seed, "UPDATE flow SET name = 'renamed' WHERE id = :id", id=flow.id)
        assert await client.read_flow(flow.id) == await client.read_flow_by_name("renamed")
        assert (await client.read_flow(flow.id)).name == "renamed"

        # Deleted and inserted again with the same id and name but another `created`.
        await _sql(seed, "DELETE FROM flow WHERE id = :id", id=flow.id)
        await seed.flow("renamed", id=uuid.UUID(flow.id), tags=["c"])
        reborn = await client.read_flow(flow.id)
        assert list(reborn.tags) == ["c"]
        assert reborn.created != flow.created


async def test_a_full_memo_evicts_and_every_read_stays_right(
    database_url: str, seed: Seeder
) -> None:
    async with _client(database_url, memo_size=2) as client:
        flows = [(await client.create_flow(f"flow-{i}", tags=[str(i)]))[0] for i in range(6)]
        for _ in range(3):
            for flow in flows:
                assert await client.read_flow(flow.id) == flow
            assert list(await client.read_flows()) == sorted(flows, key=lambda f: f.name)
        await _sql(seed, "UPDATE flow SET tags = '[]'")
        assert [list((await client.read_flow(flow.id)).tags) for flow in flows] == [[]] * 6


async def test_with_and_without_the_memo_every_response_is_the_same(
    database_url: str, seed: Seeder
) -> None:
    labels: dict[str, Any] = {"s": "x", "n": 3, "f": 2.5, "b": True, "z": None, "l": [1, "a"]}
    await seed.flow("plain")
    await seed.flow("labelled", tags=["t", "t", "ü"], labels=labels)
    await seed.flow("empty-labels", labels={})
    answers = []
    for memo_size in (0, 1000):
        async with _client(database_url, memo_size=memo_size) as client:
            page = list(await client.read_flows())
            by_id = [await client.read_flow(flow.id) for flow in page]
            existing = [(await client.create_flow(flow.name))[0] for flow in page]
            paged = await client.read_flows_page(limit=2, include_total_size=True)
            last = await client.read_flows_page(limit=2, page_token=paged.next_page_token)
            answers.append((page, by_id, existing, paged, last))
    assert answers[0] == answers[1]
    _, _, _, paged, last = answers[1]
    assert (len(paged.flows), paged.total_size, len(last.flows)) == (2, 3, 1)
    assert paged.next_page_token
    assert not last.next_page_token
    labelled = next(flow for flow in answers[1][0] if flow.name == "labelled")
    assert json_format.MessageToDict(labelled.labels) == labels
