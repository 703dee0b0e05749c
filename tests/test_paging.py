"""ReadFlows page tokens (keyset paging), total_size, and the clients' iter_flows.

Through the real server on both databases. The central guarantee: walking
every page returns each flow that matched throughout the walk exactly once,
in order, while another task creates and deletes flows.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import random
import sqlite3
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeAlias

import grpc
import pytest
import sqlalchemy as sa
from sqlalchemy.util import await_only

from flowservice.client import FlowClient, FlowClientSync
from flowservice.v1 import flow_pb2
from flowservice.v1 import flow_service_pb2 as s
from flowservice_server import page_tokens, sorting
from flowservice_server.config import DatabaseSettings
from flowservice_server.db.factory import open_database
from flowservice_server.db.tables import flow
from tests.helpers import direct_engine, expect_error, names
from tests.test_query_plans import Explain

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from flowservice_server.app import RunningServer
    from tests.factories import Seeder

Sort: TypeAlias = "s.FlowSort.ValueType"
SORTS: list[Sort] = [
    s.FLOW_SORT_NAME_ASC,
    s.FLOW_SORT_NAME_DESC,
    s.FLOW_SORT_CREATED_DESC,
    s.FLOW_SORT_UPDATED_DESC,
]
SORT_IDS = [s.FlowSort.Name(sort) for sort in SORTS]
#: Seeded flows are from the past, so flows created now sort first by time.
BASE = datetime(2024, 1, 1, tzinfo=UTC)
INVALID = grpc.StatusCode.INVALID_ARGUMENT


def flow_name(number: int) -> str:
    """Digits after one letter: the same order under byte order and any collation."""
    return f"f{number:07d}"


async def seed_flows(seed: Seeder, numbers: range | list[int]) -> dict[str, str]:
    """Insert flows in one statement, with many equal created/updated instants; id -> name.

    Created instants come in runs of four equal ones and updated instants
    repeat in another order, so the time sorts' ties are broken by id.
    """
    rows = [
        {
            "id": uuid.uuid4(),
            "created": BASE + timedelta(seconds=number // 4),
            "updated": BASE + timedelta(seconds=(number * 7919) % 997),
            "name": flow_name(number),
            "tags": ["even"] if number % 4 == 0 else [],
            "labels": None,
        }
        for number in numbers
    ]
    async with seed.engine.begin() as connection:
        await connection.execute(flow.insert(), rows)
    return {str(row["id"]): str(row["name"]) for row in rows}


def sort_key(sort: int) -> Callable[[flow_pb2.Flow], Any]:
    """A key that increases strictly along `sort`'s order."""
    if sort == s.FLOW_SORT_NAME_ASC:
        return lambda f: f.name.encode()
    if sort == s.FLOW_SORT_NAME_DESC:
        return lambda f: (*(-b for b in f.name.encode()), 1)  # a longer name sorts first
    field_name = "created" if sort == s.FLOW_SORT_CREATED_DESC else "updated"

    def key(f: flow_pb2.Flow) -> Any:
        moment = getattr(f, field_name)
        return (-moment.seconds, -moment.nanos, tuple(-b for b in uuid.UUID(f.id).bytes))

    return key


def assert_strictly_ordered(flows: list[flow_pb2.Flow], sort: int) -> None:
    keys = [sort_key(sort)(f) for f in flows]
    for index, (before, after) in enumerate(itertools.pairwise(keys)):
        assert before < after, (index, flows[index], flows[index + 1])


async def walk(
    client: FlowClient, *, sort: Sort, sizes: Any, pause: float = 0.0, **filters: Any
) -> tuple[list[flow_pb2.Flow], int]:
    """Every page by token: the flows, and how many pages it took."""
    flows: list[flow_pb2.Flow] = []
    token = ""
    for pages, size in enumerate(sizes, start=1):
        page = await client.read_flows_page(sort=sort, limit=size, page_token=token, **filters)
        assert page.flows, "a token never leads to an empty page"
        flows.extend(page.flows)
        token = page.next_page_token
        if not token:
            return flows, pages
        await asyncio.sleep(pause)
    raise AssertionError("more pages than sizes")


@dataclass
class Churn:
    """Creates and deletes flows until stopped: through the server and straight into the table."""

    client: FlowClient
    seed: Seeder
    victims: list[str]
    created: set[str] = field(default_factory=set)
    deleted: set[str] = field(default_factory=set)
    operations: int = 0

    async def run(self, stop: asyncio.Event) -> None:
        rng = random.Random(7)
        numbers = iter(rng.sample(range(1, 9_000, 2), 4_000))  # odd: between seeded names
        while not stop.is_set():
            step = self.operations % 3
            if step == 0:
                created, _ = await self.client.create_flow(flow_name(next(numbers)))
                self.created.add(created.id)
            elif step == 1:  # past instants: lands amid the pages of the time sorts too
                self.created.update(await seed_flows(self.seed, [next(numbers)]))
            elif self.victims:
                victim = self.victims.pop(rng.randrange(len(self.victims)))
                await self.client.delete_flow(victim)
                self.deleted.add(victim)
            self.operations += 1
            await asyncio.sleep(0.002)


@contextlib.asynccontextmanager
async def churning(churn: Churn) -> AsyncIterator[Churn]:
    stop = asyncio.Event()
    task = asyncio.create_task(churn.run(stop))
    try:
        await asyncio.sleep(0.02)  # writes are under way before the walk starts
        yield churn
    finally:
        stop.set()
        await task


@pytest.mark.parametrize("sort", SORTS, ids=SORT_IDS)
async def test_a_walk_returns_every_flow_that_stayed_once_in_order_under_writes(
    client: FlowClient, seed: Seeder, sort: Sort
) -> None:
    seeded = await seed_flows(seed, range(0, 4_400, 2))  # 2,200 flows
    churn = Churn(client, seed, victims=list(seeded))
    async with churning(churn):
        before = churn.operations
        walked, pages = await walk(client, sort=sort, sizes=itertools.repeat(100), pause=0.01)
        during = churn.operations - before
    ids = [f.id for f in walked]
    assert len(ids) == len(set(ids)), "a flow came twice"
    assert_strictly_ordered(walked, sort)
    stayed = set(seeded) - churn.deleted
    assert stayed <= set(ids), f"{len(stayed - set(ids))} flows that stayed were skipped"
    assert set(ids) <= set(seeded) | churn.created
    assert pages >= 20
    assert during >= 20, "the writes ran during the walk"
    assert churn.deleted
    assert churn.created


async def test_a_walk_with_a_filter_pages_the_filtered_flows(
    client: FlowClient, seed: Seeder
) -> None:
    seeded = await seed_flows(seed, range(300))
    walked, _ = await walk(
        client,
        sort=s.FLOW_SORT_UPDATED_DESC,
        sizes=itertools.repeat(20),
        flows={"tags": {"all": ["even"]}},
    )
    expected = sorted((i for i, n in seeded.items() if int(n[1:]) % 4 == 0))
    assert sorted(f.id for f in walked) == expected
    assert_strictly_ordered(walked, s.FLOW_SORT_UPDATED_DESC)


@pytest.mark.parametrize("sort", SORTS, ids=SORT_IDS)
async def test_the_limit_may_change_from_page_to_page(
    client: FlowClient, seed: Seeder, sort: Sort
) -> None:
    await seed_flows(seed, range(400))
    everything = await client.read_flows(sort=sort) + await client.read_flows(sort=sort, offset=200)
    walked, pages = await walk(client, sort=sort, sizes=itertools.cycle([1, 7, 200, 3, 50]))
    assert [f.id for f in walked] == [f.id for f in everything]
    assert pages > 5


async def test_a_page_read_by_offset_gives_a_token_to_the_page_after_it(
    client: FlowClient, seed: Seeder
) -> None:
    await seed_flows(seed, range(30))
    first = await client.read_flows_page(sort=s.FLOW_SORT_CREATED_DESC, offset=10, limit=5)
    assert first.next_page_token
    second = await client.read_flows_page(
        sort=s.FLOW_SORT_CREATED_DESC, limit=5, page_token=first.next_page_token
    )
    by_offset = await client.read_flows(sort=s.FLOW_SORT_CREATED_DESC, offset=15, limit=5)
    assert names(second.flows) == names(by_offset)


async def test_the_last_page_has_no_token_even_when_full(client: FlowClient, seed: Seeder) -> None:
    await seed_flows(seed, range(10))
    first = await client.read_flows_page(limit=5)
    assert first.next_page_token
    last = await client.read_flows_page(limit=5, page_token=first.next_page_token)
    assert names(last.flows) == [flow_name(n) for n in range(5, 10)]
    assert last.next_page_token == ""
    assert (await client.read_flows_page(limit=10)).next_page_token == ""
    assert (await client.read_flows_page()).next_page_token == ""


async def test_limit_zero_has_no_flows_and_no_token(client: FlowClient, seed: Seeder) -> None:
    await seed_flows(seed, range(3))
    page = await client.read_flows_page(limit=0, include_total_size=True)
    assert page == ([], "", 3)


async def test_a_request_without_the_new_fields_is_answered_as_before(
    client: FlowClient, seed: Seeder
) -> None:
    await seed_flows(seed, range(250))
    page = await client.read_flows_page(sort=s.FLOW_SORT_UPDATED_DESC, offset=3, limit=40)
    assert page.total_size is None  # absent unless asked for
    assert page.next_page_token
    plain = await client.read_flows(sort=s.FLOW_SORT_UPDATED_DESC, offset=3, limit=40)
    assert [f.id for f in page.flows] == [f.id for f in plain]


# --- total_size ----------------------------------------------------------------------


async def test_total_size_equals_count_flows(client: FlowClient, seed: Seeder) -> None:
    await seed_flows(seed, range(250))
    cases: list[dict[str, Any]] = [{}, {"flows": {"tags": {"all": ["even"]}}}, {"flow_runs": {}}]
    for filters in cases:
        page = await client.read_flows_page(limit=10, include_total_size=True, **filters)
        assert page.total_size == await client.count_flows(**filters)
    tagged = await client.read_flows_page(
        limit=10, include_total_size=True, flows={"tags": {"all": ["even"]}}
    )
    assert tagged.total_size == 63
    token = tagged.next_page_token
    second = await client.read_flows_page(
        limit=10, page_token=token, include_total_size=True, flows={"tags": {"all": ["even"]}}
    )
    assert second.total_size == 63  # the total of every page, not of what follows


async def test_total_size_agrees_with_its_page_under_writes(
    client: FlowClient, seed: Seeder
) -> None:
    seeded = await seed_flows(seed, range(0, 300, 2))
    churn = Churn(client, seed, victims=list(seeded))
    async with churning(churn):
        for _ in range(150):
            page = await client.read_flows_page(limit=200, include_total_size=True)
            assert page.next_page_token == ""
            assert page.total_size == len(page.flows)
        assert churn.operations >= 20


def _insert_elsewhere(database_url: str, connection: sa.Connection, name: str) -> None:
    """Commit a new flow from another connection, in the middle of `connection`'s work.

    SQLite's units run in a worker thread: a plain sqlite3 connection writes.
    PostgreSQL's run in SQLAlchemy's greenlet: `await_only` runs the insert.
    """
    if connection.dialect.name == "sqlite":
        path = sa.make_url(database_url).database
        assert path is not None
        other = sqlite3.connect(path)
        now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
        with contextlib.closing(other), other:
            other.execute(
                "INSERT INTO flow (id, created, updated, name, tags) VALUES (?, ?, ?, ?, '[]')",
                (str(uuid.uuid4()), now, now, name),
            )
        return
    engine = direct_engine(database_url)
    try:
        row = {"id": uuid.uuid4(), "created": BASE, "updated": BASE, "name": name, "tags": []}

        async def insert() -> None:
            async with engine.begin() as other:
                await other.execute(flow.insert().values(**row))

        await_only(insert())
    finally:
        await_only(engine.dispose())


@pytest.mark.parametrize("snapshot", [True, False], ids=["snapshot", "no-snapshot"])
async def test_a_snapshot_read_does_not_see_writes_made_during_it(
    database_url: str, snapshot: bool
) -> None:
    """`Database.read(…, snapshot=True)`: both counts see one state; without it they differ."""
    database = await open_database(DatabaseSettings(url=database_url), migrate=False)
    count = sa.select(sa.func.count()).select_from(flow)

    def work(connection: sa.Connection) -> tuple[int, int]:
        first = int(connection.execute(count).scalar_one())
        _insert_elsewhere(database_url, connection, "elsewhere")
        return first, int(connection.execute(count).scalar_one())

    try:
        first, second = await database.read(work, 10, snapshot=snapshot)
    finally:
        await database.close()
    assert (first, second) == ((0, 0) if snapshot else (0, 1))


# --- tokens that are refused ---------------------------------------------------------


def _token_of_version(version: int) -> str:
    body = bytes([version]) + bytes(32) + b"name"
    raw = body + page_tokens._mac(body)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@pytest.fixture
async def token(client: FlowClient, seed: Seeder) -> str:
    """A good token: for NAME_ASC, no filters, made with limit 2."""
    await seed_flows(seed, range(10))
    page = await client.read_flows_page(limit=2)
    return page.next_page_token


def _flip(text: str, at: int) -> str:
    swap = "A" if text[at] != "A" else "B"
    return text[:at] + swap + text[at + 1 :]


BAD_TOKENS: list[Any] = [
    pytest.param(lambda t: "not a token!", id="garbage"),
    pytest.param(lambda t: "x", id="one-character"),
    pytest.param(lambda t: base64.urlsafe_b64encode(bytes(40)).decode(), id="zeros"),
    pytest.param(lambda t: t[:-3], id="truncated"),
    pytest.param(lambda t: t[:10], id="cut-short"),
    pytest.param(lambda t: _flip(t, len(t) // 2), id="one-character-changed"),
    pytest.param(lambda t: t + "AAAA", id="extended"),
    pytest.param(lambda t: t + "=", id="padded"),
    pytest.param(lambda t: _token_of_version(0), id="old-format"),
    pytest.param(lambda t: _token_of_version(page_tokens.VERSION + 1), id="newer-format"),
]


@pytest.mark.parametrize("damage", BAD_TOKENS)
async def test_a_damaged_or_foreign_token_is_refused(
    client: FlowClient, token: str, damage: Callable[[str], str]
) -> None:
    error = await expect_error(
        client.read_flows_page(limit=2, page_token=damage(token)), INVALID, "page_token"
    )
    assert "page_token" in error.field_violations[0].description or "token" in str(error)


OTHER_REQUESTS: list[Any] = [
    pytest.param({"sort": s.FLOW_SORT_NAME_DESC}, id="other-sort"),
    pytest.param({"sort": s.FLOW_SORT_CREATED_DESC}, id="time-sort"),
    pytest.param({"flows": {"tags": {"all": ["even"]}}}, id="other-filter"),
    pytest.param({"flows": {}}, id="empty-filter"),
    pytest.param({"flow_runs": {}}, id="run-filter"),
]


@pytest.mark.parametrize("other", OTHER_REQUESTS)
async def test_a_token_for_other_filters_or_sort_is_refused(
    client: FlowClient, token: str, other: dict[str, Any]
) -> None:
    error = await expect_error(
        client.read_flows_page(limit=2, page_token=token, **other), INVALID, "page_token"
    )
    assert "same filters and sort" in error.field_violations[0].description


async def test_a_token_for_another_latest_run_filter_is_refused(
    client: FlowClient, token: str
) -> None:
    request = s.ReadFlowsRequest(limit=2, page_token=token)
    request.latest_flow_run.SetInParent()
    error = await expect_error(client._call(client._stub.ReadFlows, request), INVALID, "page_token")
    assert "same filters and sort" in error.field_violations[0].description


async def test_the_unspecified_sort_and_name_asc_share_tokens(
    client: FlowClient, token: str
) -> None:
    page = await client.read_flows_page(sort=s.FLOW_SORT_NAME_ASC, limit=2, page_token=token)
    assert names(page.flows) == [flow_name(2), flow_name(3)]


async def test_a_token_with_an_offset_is_refused(client: FlowClient, token: str) -> None:
    error = await expect_error(
        client.read_flows_page(limit=2, offset=1, page_token=token), INVALID, "page_token"
    )
    assert "offset" in error.field_violations[0].description


async def test_a_bad_token_is_reported_with_the_other_violations(
    client: FlowClient, token: str
) -> None:
    await expect_error(
        client.read_flows_page(limit=500, page_token="garbage!"), INVALID, "limit", "page_token"
    )


# --- the clients' iter_flows ---------------------------------------------------------


async def test_iter_flows_follows_the_tokens_to_the_end(client: FlowClient, seed: Seeder) -> None:
    await seed_flows(seed, range(45))
    flows = [f async for f in client.iter_flows(sort=s.FLOW_SORT_NAME_DESC, page_size=10)]
    assert names(flows) == [flow_name(n) for n in reversed(range(45))]
    tagged = [f async for f in client.iter_flows(flows={"tags": {"all": ["even"]}})]
    assert len(tagged) == 12
    assert [f async for f in client.iter_flows(flows={"name": {"any": []}})] == []


async def test_iter_flows_of_the_blocking_client(server: RunningServer, seed: Seeder) -> None:
    await seed_flows(seed, range(45))

    def read_all() -> list[flow_pb2.Flow]:
        with FlowClientSync(f"127.0.0.1:{server.port}", timeout=30) as blocking:
            assert blocking.read_flows_page(limit=50).next_page_token == ""
            return list(blocking.iter_flows(sort=s.FLOW_SORT_CREATED_DESC, page_size=4))

    flows = await asyncio.to_thread(read_all)
    assert len(flows) == 45
    assert_strictly_ordered(flows, s.FLOW_SORT_CREATED_DESC)


# --- cost: the next page is an index range -------------------------------------------

#: sort -> the index that must serve the page after a token
PAGE_INDEXES = {
    s.FLOW_SORT_NAME_ASC: ("uq_flow__name", "sqlite_autoindex_flow_2"),
    s.FLOW_SORT_NAME_DESC: ("uq_flow__name", "sqlite_autoindex_flow_2"),
    s.FLOW_SORT_CREATED_DESC: ("ix_flow__created",),
    s.FLOW_SORT_UPDATED_DESC: ("ix_flow__updated",),
}


@pytest.mark.parametrize("sort", SORTS, ids=SORT_IDS)
async def test_the_page_after_a_token_reads_an_index_range(
    database_url: str, seed: Seeder, sort: Sort
) -> None:
    """With 5,000 flows and statistics, as the planner sees a real table (nothing forced)."""
    await seed_flows(seed, range(5_000))
    position = page_tokens.Position(flow_name(1_000), uuid.uuid4())
    if sort not in page_tokens.NAME_SORTS:
        position = page_tokens.Position(BASE + timedelta(seconds=500), uuid.uuid4())
    query = (
        sa.select(flow.c.name)
        .where(sorting.after(sort, position))
        .order_by(*sorting.ORDER_BY[sort])
        .limit(201)
    )
    async with seed.engine.connect() as connection:
        await connection.exec_driver_sql("ANALYZE")
        rows = (await connection.execute(Explain(query))).all()
    plan = "\n".join(str(row[-1]) for row in rows)
    assert any(index in plan for index in PAGE_INDEXES[sort]), plan
    assert "SCAN flow" not in plan, plan  # SQLite: a SEARCH (a range), not a scan
    assert "Seq Scan" not in plan, plan
    if sort in page_tokens.NAME_SORTS:  # the index order is the page order: no sort at all
        assert "TEMP B-TREE" not in plan, plan
        assert "Sort" not in plan.replace("Incremental Sort", ""), plan
