"""ReadFlows pages on the sqlite3 driver, on the event loop: the same bytes, the same bounds.

Two servers share one SQLite file: one runs pages directly (the default), the
other with `inline_pages` off (SQLAlchemy, in a worker thread). Every page
shape must give byte-identical responses from both. The servers run in this
test's event loop, so a heartbeat task on it sees how long a page held it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import sqlite3
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio
import pytest
import sqlalchemy as sa
from google.protobuf import json_format

from flowservice.v1 import flow_service_pb2
from flowservice_server.db.engine import DirectPlan, direct_read
from flowservice_server.db.sqlite_engine import SqliteDatabase
from flowservice_server.db.tables import flow
from tests.factories import Seeder
from tests.helpers import Heartbeat, direct_engine, serving

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from flowservice_server.app import RunningServer
    from flowservice_server.db.sqlite_inline import InlineReader

_READ_FLOWS = "/flowservice.v1.FlowService/ReadFlows"
_TAGS = ("etl", "nightly", "ml", "reports", "critical")
_T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _inline(running: RunningServer) -> InlineReader:
    database = running.database
    assert isinstance(database, SqliteDatabase)
    assert database.inline is not None
    return database.inline


class _Pages:
    """Raw ReadFlows responses (their bytes) from one server."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._call: grpc.aio.UnaryUnaryMultiCallable[flow_service_pb2.ReadFlowsRequest, bytes]
        self._call = channel.unary_unary(
            _READ_FLOWS,
            request_serializer=flow_service_pb2.ReadFlowsRequest.SerializeToString,
            response_deserializer=None,  # the bytes as sent
        )

    async def read(self, request: dict[str, Any], seconds: float = 30) -> bytes:
        """The response's bytes; `seconds`: the call's deadline."""
        message = json_format.ParseDict(request, flow_service_pb2.ReadFlowsRequest())
        data: bytes = await self._call(message, timeout=seconds)
        return data


@contextlib.asynccontextmanager
async def _both(
    url: str, memo_size: int = 10_000, **database: object
) -> AsyncIterator[tuple[RunningServer, _Pages, _Pages]]:
    """A server with pages inline (and `database`), one without, each with raw pages."""
    async with (
        serving(url, memo_size=memo_size, **database) as direct,
        serving(url, memo_size=memo_size, inline_pages=False) as threaded,
        grpc.aio.insecure_channel(f"127.0.0.1:{direct.port}") as one,
        grpc.aio.insecure_channel(f"127.0.0.1:{threaded.port}") as other,
    ):
        assert not isinstance(threaded.database, SqliteDatabase) or not (
            threaded.database._inline_plans  # the lever is off
        )
        yield direct, _Pages(one), _Pages(other)


def _stored(instant: datetime) -> str:
    """A time as SQLite stores it (Prefect's format: naive UTC text)."""
    return instant.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


def _add_flows(url: str, count: int, *, prefix: str = "flow") -> list[str]:
    """`count` flows written with plain SQL: varied tags, labels, and equal times (ties)."""
    rng = random.Random(count)
    rows = []
    for n in range(count):
        created = _T0 + timedelta(seconds=n // 3)  # three flows per instant: ties on time
        updated = created + timedelta(microseconds=rng.randrange(0, 5) * 1000)
        tags = sorted(rng.sample(_TAGS, rng.randrange(0, 3)))
        labels = rng.choice((None, "{}", json.dumps({"team": f"t{n % 4}", "n": n})))
        flow_id = str(uuid.uuid4())
        name = f"{prefix}-{rng.randrange(10**6):06d}-{n}"
        rows.append((flow_id, _stored(created), _stored(updated), name, json.dumps(tags), labels))
    with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite+aiosqlite:///"))) as db:
        db.executemany(
            "INSERT INTO flow (id, created, updated, name, tags, labels) VALUES (?, ?, ?, ?, ?, ?)",
            rows,
        )
        db.commit()
    return [row[0] for row in rows]


async def _add_runs(url: str, flow_ids: list[str]) -> None:
    """Runs of the first 40 flows, in four states, some never started."""
    engine = direct_engine(url)
    seed = Seeder(engine)
    states = ("COMPLETED", "FAILED", "RUNNING", "SCHEDULED")
    try:
        for n, flow_id in enumerate(flow_ids[:40]):
            start = None if n % 7 == 0 else _T0 + timedelta(hours=n)
            await seed.flow_run(
                uuid.UUID(flow_id),
                f"run-{n}",
                state_type=states[n % 4],
                start_time=start,
                expected_start_time=start or _T0,
            )
    finally:
        await engine.dispose()


#: Page shapes: every sort, offsets and sizes, filters on flows (IN lists
#: included) and through joins, latest runs, totals.
PAGE_SHAPES: list[dict[str, Any]] = [
    {},
    {"limit": 7},
    {"limit": 0, "include_total_size": True},
    {"offset": 13, "limit": 11},
    {"offset": 10_000},
    {"include_total_size": True},
    *({"sort": sort, "limit": 25} for sort in list(flow_service_pb2.FlowSort.keys())),
    {"sort": "FLOW_SORT_CREATED_DESC", "offset": 5, "include_total_size": True},
    {"flows": {"name": {"like": "flow-1"}}},
    {"flows": {"name": {"like": "flow-1"}}, "include_total_size": True, "limit": 3},
    {"flows": {"tags": {"all": ["etl"]}}, "sort": "FLOW_SORT_UPDATED_DESC"},
    {"flows": {"tags": {"is_null": True}}},
    {"flows": {"name": {"any": ["none-such", "also-none"]}}},
    {"flow_runs": {"state": {"type": {"any": ["FAILED", "COMPLETED"]}}}},
    {
        "flow_runs": {"state": {"type": {"any": ["RUNNING"]}}},
        "include_total_size": True,
        "sort": "FLOW_SORT_NAME_DESC",
    },
    {"latest_flow_run": {"state": {"type": {"any": ["FAILED"]}}}, "include_total_size": True},
    {
        "flows": {"operator": "OPERATOR_OR", "tags": {"all": ["ml"]}, "name": {"like": "-2"}},
        "limit": 9,
    },
]


@pytest.mark.parametrize("memo_size", [10_000, 0], ids=["memo", "no memo"])
async def test_every_page_shape_answers_the_same_bytes_inline_or_not(
    any_backend_url: str, memo_size: int
) -> None:
    flow_ids = _add_flows(any_backend_url, 260)
    await _add_runs(any_backend_url, flow_ids)
    shapes = [
        *PAGE_SHAPES,
        {"flows": {"id": {"any": flow_ids[3:40]}}, "sort": "FLOW_SORT_CREATED_DESC"},
    ]
    async with _both(any_backend_url, memo_size) as (direct, inline_pages, threaded_pages):
        inline = _inline(direct)
        for shape in shapes:
            before = inline.outcomes["direct"]
            for _ in range(2):  # compiled, then from the cache
                answer = await inline_pages.read(shape)
                assert answer == await threaded_pages.read(shape), shape
            assert inline.outcomes["direct"] == before + 2, (shape, inline.outcomes)
            response = flow_service_pb2.ReadFlowsResponse.FromString(answer)
            if shape == {}:
                assert len(response.flows) == 200
        assert inline.outcomes["over_budget"] == 0


async def test_page_tokens_walk_every_flow_alike_inline_or_not(
    any_backend_url: str,
) -> None:
    flow_ids = _add_flows(any_backend_url, 230)
    await _add_runs(any_backend_url, flow_ids)
    async with _both(any_backend_url) as (_, inline_pages, threaded_pages):
        for sort in list(flow_service_pb2.FlowSort.keys()):
            for filters in ({}, {"flows": {"tags": {"all": ["etl"]}}}):
                request: dict[str, Any] = {"sort": sort, "limit": 40, **filters}
                seen: list[str] = []
                while True:
                    answer = await inline_pages.read(request)
                    assert answer == await threaded_pages.read(request), request
                    page = flow_service_pb2.ReadFlowsResponse.FromString(answer)
                    seen += [flow.id for flow in page.flows]
                    if not page.next_page_token:
                        break
                    request = {**request, "page_token": page.next_page_token}
                assert len(seen) == len(set(seen))
                if not filters:
                    assert sorted(seen) == sorted(flow_ids)


async def test_pages_see_changes_made_behind_the_servers_back(any_backend_url: str) -> None:
    _add_flows(any_backend_url, 30)
    async with _both(any_backend_url) as (_, inline_pages, threaded_pages):
        first = await inline_pages.read({"include_total_size": True})
        _add_flows(any_backend_url, 5, prefix="later")
        path = any_backend_url.removeprefix("sqlite+aiosqlite:///")
        with contextlib.closing(sqlite3.connect(path)) as db:
            db.execute("UPDATE flow SET tags = '[\"changed\"]' WHERE name LIKE 'later-%'")
            db.commit()
        second = await inline_pages.read({"include_total_size": True})
        assert second != first
        assert second == await threaded_pages.read({"include_total_size": True})
        page = flow_service_pb2.ReadFlowsResponse.FromString(second)
        assert page.total_size == 35
        assert [list(f.tags) for f in page.flows if f.name.startswith("later-")] == [
            ["changed"]
        ] * 5


#: Flows for a page that scans them all with LIKE: milliseconds, far past a tiny budget.
_MANY = 60_000


async def test_a_slow_page_shape_is_stopped_at_its_budget_answered_and_demoted(
    any_backend_url: str,
) -> None:
    _add_flows(any_backend_url, _MANY)
    budget = 0.0003
    slow = {"flows": {"name": {"like": "no-flow-has-this"}}, "include_total_size": True}
    async with _both(any_backend_url, inline_read_budget=budget) as (direct, pages, threaded):
        inline = _inline(direct)
        expected = await threaded.read(slow)
        async with Heartbeat() as heartbeat:
            started = time.monotonic()
            answer = await pages.read(slow)
            took = time.monotonic() - started
        assert answer == expected
        assert flow_service_pb2.ReadFlowsResponse.FromString(answer).total_size == 0
        # The page took far longer than the loop was ever held: the inline
        # attempt stopped at its budget and a worker thread did the rest.
        assert took > 10 * budget
        assert heartbeat.longest < took / 3, (heartbeat.longest, took)  # others share the cores
        assert inline.outcomes["over_budget"] == 1
        assert inline.demoted_shapes() == 1
        # Demoted: the same shape (other values) goes straight to a worker thread.
        other = {**slow, "flows": {"name": {"like": "nor-this"}}}
        async with Heartbeat() as heartbeat:
            started = time.monotonic()
            assert await pages.read(other) == await threaded.read(other)
            took = time.monotonic() - started
        assert inline.outcomes["demoted"] == 1
        assert inline.outcomes["over_budget"] == 1
        assert heartbeat.longest < took / 3, (heartbeat.longest, took)
        # Other shapes stay inline: a small plain page with its total, which
        # sees a flow added since (the stopped snapshot was not left open).
        _add_flows(any_backend_url, 1, prefix="after")
        small = {"limit": 3, "include_total_size": True}
        before = inline.outcomes["direct"]
        answer = await pages.read(small)
        assert answer == await threaded.read(small)
        assert inline.outcomes["direct"] == before + 1
        assert flow_service_pb2.ReadFlowsResponse.FromString(answer).total_size == _MANY + 1


async def test_the_deadline_stops_an_inline_page(any_backend_url: str) -> None:
    _add_flows(any_backend_url, _MANY)
    slow = {"flows": {"name": {"like": "no-flow-has-this"}}, "include_total_size": True}
    # A budget longer than the deadline: the deadline is what stops the page.
    async with _both(any_backend_url, inline_read_budget=10.0) as (direct, pages, _):
        inline = _inline(direct)
        started = time.monotonic()
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await pages.read(slow, seconds=0.02)
        assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert time.monotonic() - started < 1.0
        assert inline.outcomes["deadline"] == 1
        assert inline.demoted_shapes() == 0  # a deadline says nothing of the shape


async def test_a_locked_database_hands_the_page_to_a_worker_thread(any_backend_url: str) -> None:
    path = any_backend_url.removeprefix("sqlite+aiosqlite:///")
    _add_flows(any_backend_url, 20)
    async with (
        serving(any_backend_url) as running,
        grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel,
    ):
        inline = _inline(running)
        pages = _Pages(channel)
        expected = await pages.read({"include_total_size": True})
        # Close every connection of the server, then take the file for ourselves:
        # in exclusive locking mode no other connection can even read it.
        database = running.database
        assert isinstance(database, SqliteDatabase)
        inline.close()
        database.engine.dispose()
        holder = sqlite3.connect(path, isolation_level=None)
        try:
            holder.execute("PRAGMA locking_mode = EXCLUSIVE")
            holder.execute("BEGIN EXCLUSIVE")
            holder.execute("UPDATE flow SET tags = '[\"held\"]' WHERE name LIKE 'flow-%'")
            read = asyncio.create_task(pages.read({"include_total_size": True}))
            async with Heartbeat() as heartbeat:
                await asyncio.sleep(0.3)
            assert not read.done()  # a worker thread waits for the lock: the loop does not
            assert heartbeat.longest < 0.1
            assert inline.outcomes["busy"] == 1
            holder.execute("ROLLBACK")
        finally:
            holder.close()
        assert await read == expected
        before = inline.outcomes["direct"]
        assert await pages.read({"include_total_size": True}) == expected  # and inline again
        assert inline.outcomes["direct"] == before + 1


def _created_plan() -> DirectPlan:
    return DirectPlan(statements=((_CREATED, {}),), finish=lambda results: results[0])


#: A column SQLAlchemy converts (stored text to an aware datetime).
_CREATED = sa.select(flow.c.created).order_by(flow.c.name)


@direct_read(_created_plan)
def _created_times(connection: sa.Connection) -> list[Any]:
    return list(connection.execute(_CREATED).all())


async def test_a_plan_whose_rows_sqlalchemy_converts_runs_in_a_worker_thread(
    any_backend_url: str,
) -> None:
    _add_flows(any_backend_url, 3)
    async with serving(any_backend_url) as running:
        inline = _inline(running)
        rows = await running.database.read(_created_times, 30)
        assert [row[0] for row in rows] == [_T0] * 3  # the three share one instant
        assert all(isinstance(row[0], datetime) for row in rows)  # converted, by SQLAlchemy
        assert inline.outcomes["unexpected"] == 1
        assert inline.outcomes["direct"] == 0
