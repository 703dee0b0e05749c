"""WatchFlows: every committed flow change exactly once, in commit order, from any writer.

Real servers on 127.0.0.1 (in this process, and `flowservice serve` children
for several processes), real SQLite files and a real PostgreSQL database.
Writers record what each acknowledged write did; the watcher's events,
grouped by flow, must be exactly those records, and its positions must rise
strictly (one global commit order, no duplicate).
"""

from __future__ import annotations

import asyncio
import random
import signal
import sqlite3
import threading
import time
import urllib.request
import uuid
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio
import pytest
import sqlalchemy as sa

from flowservice.client import FlowClient, FlowClientSync, RpcError
from flowservice.v1 import flow_service_pb2, flow_service_pb2_grpc
from flowservice_server.app import RunningServer, start_server
from flowservice_server.changefeed import decode_resume_token, encode_resume_token
from flowservice_server.config import DatabaseSettings, Settings, WatchSettings
from tests.helpers import direct_engine, expect_error, run_sync
from tests.postgres import admin, prefect_schema_statements
from tests.processes import ServerProcess, run, start

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from tests.factories import Seeder

PREFECT_SQLITE = Path(__file__).parent / "data" / "prefect-3.9.1" / "schema-sqlite.sql"
Event = tuple[str, tuple[str, ...]]  # kind, tags
QUIET = ["--access-log", "false", "--watch-poll-interval", "0.05"]


def _settings(url: str, **watch: Any) -> Settings:
    return Settings(
        address="127.0.0.1:0",
        access_log=False,
        database=DatabaseSettings(url=url),
        watch=WatchSettings(**{"bookmark_interval": 30.0, **watch}),
    )


@pytest.fixture
async def watch_server(database_url: str) -> AsyncIterator[RunningServer]:
    running = await start_server(_settings(database_url))
    yield running
    await running.stop(grace=None)


def _stub(channel: grpc.aio.Channel) -> Any:
    """The generated stub on an aio channel (its stubs type it for blocking channels)."""
    return flow_service_pb2_grpc.FlowServiceStub(channel)


def _kind(response: flow_service_pb2.WatchFlowsResponse) -> str:
    return response.WhichOneof("event") or ""


def _flow(response: flow_service_pb2.WatchFlowsResponse) -> Any:
    return getattr(response, _kind(response))


async def _start_watch(stub: Any, **fields: Any) -> tuple[Any, str]:
    """A watch that has taken its position: its call and the token of its (empty) initial state."""
    call = stub.WatchFlows(flow_service_pb2.WatchFlowsRequest(send_initial_state=True, **fields))
    async for response in call:
        if _kind(response) == "initial_state_done":
            return call, response.resume_token
    raise AssertionError("the watch ended before its initial state")


async def _take(call: Any, count: int, within: float = 10.0) -> list[Any]:
    got: list[Any] = []
    async with asyncio.timeout(within):
        async for response in call:
            if _kind(response) != "bookmark":
                got.append(response)
            if len(got) == count:
                break
    return got


# --- the basics, through one server ----------------------------------------------------


async def test_created_updated_deleted_in_order_with_rising_tokens(
    watch_server: RunningServer, client: FlowClient
) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{watch_server.port}") as channel:
        call, _ = await _start_watch(_stub(channel))
        flow, _ = await client.create_flow("etl", tags=["a"], labels={"env": "dev"})
        await client.update_flow(flow.id, tags=["b"])
        await client.delete_flow(flow.id)
        events = await _take(call, 3)
    assert [(_kind(e), list(_flow(e).tags)) for e in events] == [
        ("created", ["a"]),
        ("updated", ["b"]),
        ("deleted", ["b"]),
    ]
    assert {_flow(e).id for e in events} == {flow.id}
    assert dict(events[0].created.labels) == {"env": "dev"}
    positions = [decode_resume_token(e.resume_token).seq for e in events]
    assert positions == sorted(set(positions))


async def test_direct_sql_writes_and_a_cascading_delete_are_seen_once(
    watch_server: RunningServer, client: FlowClient, seed: Seeder
) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{watch_server.port}") as channel:
        call, _ = await _start_watch(_stub(channel))
        flow_id = await seed.flow("seeded", tags=["x"])  # as a Prefect server writes it
        await seed.flow_run(flow_id, name="run")
        async with seed.engine.begin() as connection:
            await connection.exec_driver_sql(
                "UPDATE flow SET tags = '[\"y\"]' WHERE name = 'seeded'"
            )
        await client.delete_flow(str(flow_id))  # cascades to the run
        await client.create_flow("marker")
        events = await _take(call, 4)
    assert [(_kind(e), _flow(e).name) for e in events] == [
        ("created", "seeded"),
        ("updated", "seeded"),
        ("deleted", "seeded"),
        ("created", "marker"),
    ]
    assert list(events[1].updated.tags) == ["y"]


async def test_a_rolled_back_write_is_never_announced(
    watch_server: RunningServer, client: FlowClient, database_url: str
) -> None:
    engine = direct_engine(database_url)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{watch_server.port}") as channel:
            call, _ = await _start_watch(_stub(channel))
            async with engine.connect() as connection:
                transaction = await connection.begin()
                await connection.exec_driver_sql(
                    "INSERT INTO flow (id, created, updated, name, tags) VALUES "
                    f"('{uuid.uuid4()}', '2026-01-01 00:00:00', '2026-01-01 00:00:00', "
                    "'ghost', '[]')"
                )
                await transaction.rollback()
            await client.create_flow("real")
            events = await _take(call, 1)
            assert [(_kind(e), _flow(e).name) for e in events] == [("created", "real")]
            # Nothing else follows within a few poll intervals.
            with pytest.raises(TimeoutError):
                await _take(call, 1, within=0.5)
    finally:
        await engine.dispose()


async def test_initial_state_then_changes_with_no_gap_or_duplicate(
    watch_server: RunningServer, client: FlowClient
) -> None:
    for name in ("a", "b", "c"):
        await client.create_flow(name)
    writing = True

    async def write() -> None:
        n = 0
        while writing:
            await client.create_flow(f"during-{n}")
            n += 1

    writer = asyncio.create_task(write())
    await asyncio.sleep(0.05)
    names: list[str] = []
    async with grpc.aio.insecure_channel(f"127.0.0.1:{watch_server.port}") as channel:
        call = _stub(channel).WatchFlows(
            flow_service_pb2.WatchFlowsRequest(send_initial_state=True)
        )
        saw_done = False
        async with asyncio.timeout(20):
            async for response in call:
                kind = _kind(response)
                if kind == "initial_state_done":
                    saw_done = True
                    await asyncio.sleep(0.2)
                    writing = False
                    await writer
                    total = len(await client.read_flows())
                elif kind in ("existing", "created"):
                    assert (kind == "existing") != saw_done
                    names.append(_flow(response).name)
                if saw_done and len(names) == total:
                    break
    assert sorted(names) == sorted(set(names)), "a flow came twice"
    assert len(names) == total


async def test_a_filter_selects_changes_as_read_flows_would(
    watch_server: RunningServer, client: FlowClient
) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{watch_server.port}") as channel:
        call, _ = await _start_watch(
            _stub(channel), flows={"tags": {"all": ["prod"]}, "name": {"like": "etl"}}
        )
        await client.create_flow("etl-prod", tags=["prod"])
        await client.create_flow("etl-dev", tags=["dev"])
        await client.create_flow("other", tags=["prod"])
        dev = await client.read_flow_by_name("etl-dev")
        await client.update_flow(dev.id, tags=["prod"])  # now it matches
        events = await _take(call, 2)
    assert [(_kind(e), _flow(e).name) for e in events] == [
        ("created", "etl-prod"),
        ("updated", "etl-dev"),
    ]


# --- tokens, history and limits ----------------------------------------------------------


async def test_resume_continues_exactly_after_the_token(
    watch_server: RunningServer, client: FlowClient
) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{watch_server.port}") as channel:
        call, _ = await _start_watch(_stub(channel))
        for n in range(6):
            await client.create_flow(f"f{n}")
        events = await _take(call, 6)
        call.cancel()
        resumed = _stub(channel).WatchFlows(
            flow_service_pb2.WatchFlowsRequest(resume_token=events[2].resume_token)
        )
        again = await _take(resumed, 3)
    assert [_flow(e).name for e in again] == ["f3", "f4", "f5"]


async def test_a_token_older_than_the_history_is_refused_and_the_client_relists(
    database_url: str, client: FlowClient
) -> None:
    running = await start_server(_settings(database_url, retention_count=2, prune_interval=0.1))
    try:
        async with FlowClient(f"127.0.0.1:{running.port}") as watching:
            stream = watching.watch_flows(send_initial_state=True)
            token = ""
            async for response in stream:
                token = response.resume_token
                if _kind(response) == "initial_state_done":
                    break
            await stream.aclose()
            for n in range(8):
                await watching.create_flow(f"f{n}")
            # Pruned to the newest two every 0.1 s; under load the first prune may come later.
            error = None
            async with asyncio.timeout(15):
                while error is None:
                    await asyncio.sleep(0.2)
                    try:
                        await _first(watching.watch_flows(resume_token=token))
                    except RpcError as refused:
                        error = refused
            assert error.code == grpc.StatusCode.FAILED_PRECONDITION, str(error)
            assert error.error_info is not None
            assert error.error_info.reason == "RESUME_TOKEN_EXPIRED"
            relisted = watching.watch_flows(resume_token=token, relist_on_expiry=True)
            kinds = [_kind(r) async for r in _limit(relisted, 9)]
            assert kinds == ["existing"] * 8 + ["initial_state_done"]
    finally:
        await running.stop(grace=None)


async def _first(stream: AsyncIterator[Any]) -> Any:
    async for response in stream:
        return response
    return None


async def _limit(stream: AsyncIterator[Any], count: int) -> AsyncIterator[Any]:
    async with asyncio.timeout(10):
        async for response in stream:
            yield response
            count -= 1
            if not count:
                return


@pytest.mark.parametrize(
    "token",
    [
        "not a token!",
        "AAAA",
        # A valid token with one character changed.
        "X" + encode_resume_token("00" * 16, 5)[1:],
    ],
)
async def test_a_malformed_token_is_invalid_argument(
    any_backend_client: FlowClient, token: str
) -> None:
    await expect_error(
        _first(any_backend_client.watch_flows(resume_token=token)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "resume_token",
    )


async def test_a_token_of_another_feed_is_expired(any_backend_client: FlowClient) -> None:
    error = await expect_error(
        _first(any_backend_client.watch_flows(resume_token=encode_resume_token("ab" * 16, 1))),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert error.error_info is not None
    assert error.error_info.reason == "RESUME_TOKEN_EXPIRED"


async def test_watchers_beyond_the_cap_are_resource_exhausted(any_backend_url: str) -> None:
    running = await start_server(_settings(any_backend_url, max_watchers=2))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            calls = [(await _start_watch(_stub(channel)))[0] for _ in range(2)]
            async with FlowClient(f"127.0.0.1:{running.port}") as client:
                error = await expect_error(
                    _first(client.watch_flows()), grpc.StatusCode.RESOURCE_EXHAUSTED
                )
                assert error.error_info is not None
                assert error.error_info.reason == "TOO_MANY_WATCHERS"
                calls[0].cancel()
                await asyncio.sleep(0.2)
                third, _ = await _start_watch(_stub(channel))  # a slot is free again
                third.cancel()
            calls[1].cancel()
    finally:
        await running.stop(grace=None)


# --- shutdown, and resuming elsewhere ---------------------------------------------------


async def test_sigterm_ends_a_watch_with_unavailable_and_a_resume_token(
    database_url: str, tmp_path: Path
) -> None:
    server = await start(
        ["--address", "127.0.0.1:0", "--database-url", database_url, *QUIET], tmp_path, {}
    )
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            call, token = await _start_watch(_stub(channel))
            server.process.send_signal(signal.SIGTERM)
            started = time.monotonic()
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await _take(call, 1)
            assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
            assert time.monotonic() - started < 5  # not the 10 s grace period
        assert await server.stop() == 0
    finally:
        if server.process.returncode is None:
            server.process.kill()
            await server.process.wait()
    assert token


async def test_the_clients_resume_on_another_server_and_miss_nothing(
    database_url: str, seed: Seeder
) -> None:
    first = await start_server(_settings(database_url))
    port = first.port
    async with FlowClient(f"127.0.0.1:{port}") as watching:
        stream = watching.watch_flows(send_initial_state=True)
        received: list[str] = []

        async def consume() -> None:
            async for response in stream:
                if _kind(response) == "created":
                    received.append(_flow(response).name)
                    if len(received) == 3:
                        return

        consumer = asyncio.create_task(consume())
        await asyncio.sleep(0.3)
        await watching.create_flow("before")
        await asyncio.sleep(0.3)
        await first.stop(grace=1)
        await seed.flow("while-down")  # no server is up: the table keeps it
        second = await start_server(
            Settings(
                address=f"127.0.0.1:{port}",
                access_log=False,
                database=DatabaseSettings(url=database_url),
            )
        )
        try:
            await watching.create_flow("after")
            await asyncio.wait_for(consumer, 15)
        finally:
            await second.stop(grace=None)
    assert received == ["before", "while-down", "after"]


async def test_the_sync_client_watches_too(
    any_backend_server: RunningServer, any_backend_client: FlowClient
) -> None:
    def watch() -> list[Any]:
        with FlowClientSync(f"127.0.0.1:{any_backend_server.port}") as client:
            stream = client.watch_flows(send_initial_state=True)
            got = [next(stream)]
            ready.set()
            got.append(next(stream))
            stream.close()
        return got

    ready = threading.Event()
    watching = asyncio.create_task(asyncio.to_thread(watch))
    await asyncio.to_thread(ready.wait, 10)
    await any_backend_client.create_flow("sync")
    first, second = await asyncio.wait_for(watching, 10)
    assert _kind(first) == "initial_state_done"
    assert (_kind(second), second.created.name) == ("created", "sync")


# --- many writers, many processes, many resumes ------------------------------------------

WRITERS = 4
#: 10,000 writes in all through the servers (and 30 more in plain SQL).
WRITES_PER_WRITER = {"sqlite": 2_500, "postgresql": 2_500}
RESUMES = 20


class Recorder:
    """What the acknowledged writes did, per flow, in each writer's (so commit) order."""

    def __init__(self) -> None:
        self.per_flow: dict[str, list[Event]] = defaultdict(list)
        self.writes = 0

    def add(self, flow_id: str, kind: str, tags: Any) -> None:
        self.per_flow[flow_id].append((kind, tuple(tags)))
        self.writes += 1


async def _writer(client: FlowClient, index: int, count: int, record: Recorder) -> None:
    """Mixed creates, updates and deletes of this writer's own flows."""
    rng = random.Random(index)
    alive: dict[str, list[str]] = {}
    for n in range(count):
        roll = rng.random()
        if not alive or roll < 0.4:
            tags = [f"t{n}"]
            flow, created = await client.create_flow(f"w{index}-{n}", tags=tags)
            assert created
            alive[flow.id] = tags
            record.add(flow.id, "created", tags)
        elif roll < 0.8:
            flow_id = rng.choice(list(alive))
            tags = [f"u{n}"]
            await client.update_flow(flow_id, tags=tags)
            alive[flow_id] = tags
            record.add(flow_id, "updated", tags)
        else:
            flow_id = rng.choice(list(alive))
            await client.delete_flow(flow_id)
            record.add(flow_id, "deleted", alive.pop(flow_id))


async def _sql_writer(url: str, count: int, record: Recorder) -> None:
    """A fifth writer straight into the tables, as a Prefect server writes."""
    engine = direct_engine(url)
    try:
        for n in range(count):
            flow_id = uuid.uuid4()
            async with engine.begin() as connection:
                await connection.execute(
                    sa.text(
                        "INSERT INTO flow (id, created, updated, name, tags) VALUES "
                        "(:id, :now, :now, :name, '[\"s\"]')"
                    ),
                    {"id": _id_value(url, flow_id), "now": _now_value(url), "name": f"sql-{n}"},
                )
            record.add(str(flow_id), "created", ["s"])
            await asyncio.sleep(0.01)
    finally:
        await engine.dispose()


def _id_value(url: str, flow_id: uuid.UUID) -> Any:
    return str(flow_id) if url.startswith("sqlite") else flow_id


def _now_value(url: str) -> Any:
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%d %H:%M:%S.%f") if url.startswith("sqlite") else now


class Watcher:
    """Reads the feed through its own server, disconnecting and resuming now and then."""

    def __init__(self, address: str, token: str) -> None:
        self.address = address
        self.token = token
        self.per_flow: dict[str, list[Event]] = defaultdict(list)
        self.positions: list[int] = []
        self.resumes = 0

    @property
    def events(self) -> int:
        return len(self.positions)

    async def run_until(self, expected: int, *, resume_every: int, deadline: float) -> None:
        rng = random.Random(7)
        async with grpc.aio.insecure_channel(self.address) as channel:
            while self.events < expected and time.monotonic() < deadline:
                call = _stub(channel).WatchFlows(
                    flow_service_pb2.WatchFlowsRequest(resume_token=self.token)
                )
                take = rng.randint(1, resume_every)
                try:
                    async with asyncio.timeout(max(deadline - time.monotonic(), 0.1)):
                        async for response in call:
                            self.token = response.resume_token
                            if _kind(response) == "bookmark":
                                continue
                            flow = _flow(response)
                            self.per_flow[flow.id].append((_kind(response), tuple(flow.tags)))
                            self.positions.append(decode_resume_token(self.token).seq)
                            take -= 1
                            if not take or self.events >= expected:
                                break
                except TimeoutError:
                    pass
                finally:
                    call.cancel()
                self.resumes += 1


async def _serve(url: str, tmp_path: Path, *extra: str) -> ServerProcess:
    return await start(
        ["--address", "127.0.0.1:0", "--database-url", url, *QUIET, *extra], tmp_path, {}
    )


@pytest.mark.timeout(300)
async def test_every_change_exactly_once_across_processes_and_resumes(
    database_url: str, backend: str, tmp_path: Path
) -> None:
    """4 writers through 2 server processes (one with 2 workers) and one SQL writer;
    a watcher on a third process disconnects and resumes at least RESUMES times."""
    servers = [
        await _serve(database_url, tmp_path, "--workers", "1"),
        await _serve(database_url, tmp_path, "--workers", "2"),
        await _serve(database_url, tmp_path, "--workers", "1"),
    ]
    try:
        async with grpc.aio.insecure_channel(servers[2].address) as channel:
            call, token = await _start_watch(_stub(channel))
            call.cancel()
        record = Recorder()
        count = WRITES_PER_WRITER[backend]
        clients = [FlowClient(servers[i % 2].address, timeout=30) for i in range(WRITERS)]
        try:
            await asyncio.gather(
                *(_writer(c, i, count, record) for i, c in enumerate(clients)),
                _sql_writer(database_url, 30, record),
            )
        finally:
            for c in clients:
                await c.close()
        watcher = Watcher(servers[2].address, token)
        resume_every = max(record.writes // (RESUMES * 2), 1)
        await watcher.run_until(
            record.writes, resume_every=resume_every, deadline=time.monotonic() + 180
        )
    finally:
        for server in servers:
            await server.stop()
    assert watcher.events == record.writes
    assert watcher.positions == sorted(set(watcher.positions)), "out of order, or twice"
    assert watcher.per_flow == record.per_flow
    assert watcher.resumes >= RESUMES


async def test_a_writer_killed_mid_burst_loses_no_committed_change(
    database_url: str, tmp_path: Path
) -> None:
    victim = await _serve(database_url, tmp_path)
    survivor = await _serve(database_url, tmp_path)
    try:
        async with grpc.aio.insecure_channel(survivor.address) as channel:
            call, token = await _start_watch(_stub(channel))
            call.cancel()
        acknowledged: set[str] = set()
        options = [("grpc.enable_retries", 0)]

        async def burst(index: int) -> None:
            async with FlowClient(victim.address, timeout=5, options=options) as client:
                for n in range(100_000):
                    try:
                        flow, _ = await client.create_flow(f"k{index}-{n}")
                    except RpcError:
                        return
                    acknowledged.add(flow.name)

        writers = [asyncio.create_task(burst(i)) for i in range(2)]
        await asyncio.sleep(1.0)
        victim.process.send_signal(signal.SIGKILL)
        await asyncio.gather(*writers)
        assert acknowledged
        async with FlowClient(survivor.address, timeout=30) as client:
            stored = {flow.name for flow in await _all_flows(client)}
            seen: set[str] = set()
            stream = client.watch_flows(resume_token=token)
            async with asyncio.timeout(20):
                async for response in stream:
                    if _kind(response) == "created":
                        seen.add(response.created.name)
                    if len(seen) == len(stored):
                        break
            await stream.aclose()
    finally:
        await victim.stop()
        await survivor.stop()
    assert acknowledged <= stored  # every acknowledged write committed
    assert seen == stored  # and every committed one is announced


async def _all_flows(client: FlowClient) -> list[Any]:
    flows: list[Any] = []
    while True:
        page = await client.read_flows(offset=len(flows))
        flows += page
        if len(page) < 200:
            return flows


async def test_a_write_on_one_process_reaches_a_watcher_on_another_within_a_second(
    database_url: str, tmp_path: Path
) -> None:
    writer_server = await _serve(database_url, tmp_path)
    watcher_server = await _serve(database_url, tmp_path)
    latencies: list[float] = []
    try:
        async with (
            grpc.aio.insecure_channel(watcher_server.address) as channel,
            FlowClient(writer_server.address, timeout=30) as client,
        ):
            call, _ = await _start_watch(_stub(channel))
            for n in range(40):
                before = time.monotonic()
                await client.create_flow(f"l{n}")
                (event,) = await _take(call, 1)
                latencies.append(time.monotonic() - before)
                assert event.created.name == f"l{n}"
            call.cancel()
    finally:
        await writer_server.stop()
        await watcher_server.stop()
    latencies.sort()
    assert latencies[int(len(latencies) * 0.99) - 1] < 1.0, latencies


# --- a database a Prefect server owns ----------------------------------------------------


@pytest.fixture
def prefect_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database of `backend` with Prefect 3.9.1's schema."""
    if backend == "sqlite":
        path = tmp_path / "prefect.db"
        with sqlite3.connect(path) as database:
            database.executescript(PREFECT_SQLITE.read_text())
        return f"sqlite+aiosqlite:///{path}"
    url: str = request.getfixturevalue("scratch_postgres")
    run_sync(admin(url, *prefect_schema_statements()))
    return url


def _schema(url: str) -> list[tuple[Any, ...]]:
    """Every table, index, trigger and function of the database, as it states them."""
    if url.startswith("sqlite"):
        with sqlite3.connect(str(sa.make_url(url).database)) as database:
            return sorted(database.execute("SELECT type, name, sql FROM sqlite_master").fetchall())
    (rows,) = run_sync(
        admin(
            url,
            "SELECT 'relation', relname, relkind::text FROM pg_class c JOIN pg_namespace n "
            "ON n.oid = c.relnamespace WHERE nspname = 'public' UNION ALL "
            "SELECT 'trigger', tgname, '' FROM pg_trigger WHERE NOT tgisinternal UNION ALL "
            "SELECT 'function', proname, '' FROM pg_proc p JOIN pg_namespace n "
            "ON n.oid = p.pronamespace WHERE nspname = 'public'",
        )
    )
    return sorted(rows)


async def test_a_prefect_database_needs_the_opt_in_and_drop_restores_it(
    prefect_url: str, tmp_path: Path
) -> None:
    prefects = _schema(prefect_url)
    settings = Settings(
        address="127.0.0.1:0",
        access_log=False,
        database=DatabaseSettings(mode="prefect", url=prefect_url),
    )
    running = await start_server(settings)
    try:
        async with FlowClient(f"127.0.0.1:{running.port}") as client:
            error = await expect_error(
                _first(client.watch_flows()), grpc.StatusCode.FAILED_PRECONDITION
            )
            assert error.error_info is not None
            assert error.error_info.reason == "CHANGEFEED_DISABLED"
            assert "flowservice changefeed add" in error.message
            assert _schema(prefect_url) == prefects  # serving changed nothing

            code, output = await run(
                ["changefeed", "add", "--database-url", prefect_url], tmp_path, {}
            )
            assert code == 0, output
            assert "added the change capture" in output
            code, output = await run(
                ["changefeed", "add", "--database-url", prefect_url], tmp_path, {}
            )
            assert (code, "nothing to do" in output) == (0, True), output

            async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
                call, _ = await _start_watch(_stub(channel))
                flow, _ = await client.create_flow("prefect-flow")
                await client.update_flow(flow.id, tags=["t"])
                await _delete_flows_directly(prefect_url)
                events = await _take(call, 3)
                call.cancel()
            assert [_kind(e) for e in events] == ["created", "updated", "deleted"]
    finally:
        await running.stop(grace=None)
    code, output = await run(["changefeed", "drop", "--database-url", prefect_url], tmp_path, {})
    assert code == 0, output
    assert _schema(prefect_url) == prefects


async def _delete_flows_directly(url: str) -> None:
    """DELETE FROM flow, as a Prefect server writes (on SQLite without foreign keys: the
    test's Prefect schema leaves out tables that deployment's keys name)."""
    if url.startswith("sqlite"):
        with sqlite3.connect(str(sa.make_url(url).database)) as database:
            database.execute("DELETE FROM flow")
        return
    engine = direct_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.exec_driver_sql("DELETE FROM flow")
    finally:
        await engine.dispose()


async def test_changefeed_refuses_a_managed_database(database_url: str, tmp_path: Path) -> None:
    code, output = await run(["changefeed", "drop", "--database-url", database_url], tmp_path, {})
    assert code == 1
    assert "this database is FlowService's own" in output
    assert "Traceback" not in output


# --- metrics ------------------------------------------------------------------------------


def _metric(port: int, name: str, **labels: str) -> float:
    """The sample `name` with exactly these labels from the server's /metrics (0 if absent)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    wanted = ",".join(f'{key}="{value}"' for key, value in labels.items())
    sample = f"{name}{{{wanted}}}" if labels else name
    for line in text.splitlines():
        if line.startswith(sample + " "):
            return float(line.split()[-1])
    return 0.0


async def _until(check: Callable[[], bool]) -> None:
    for _ in range(200):  # 10 s
        if await asyncio.to_thread(check):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the metrics never showed it")


async def test_the_metrics_show_watchers_events_and_lag(database_url: str) -> None:
    settings = Settings(
        address="127.0.0.1:0",
        access_log=False,
        metrics_address="127.0.0.1:0",
        database=DatabaseSettings(url=database_url),
        watch=WatchSettings(bookmark_interval=30.0),
    )
    running = await start_server(settings)
    port = running.metrics_port
    assert port is not None
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            call, _ = await _start_watch(_stub(channel))
            await _until(lambda: _metric(port, "flowservice_watchers") == 1)
            async with FlowClient(f"127.0.0.1:{running.port}") as client:
                await client.create_flow("measured")
            (event,) = await _take(call, 1)
            assert _kind(event) == "created"
            await _until(
                lambda: _metric(port, "flowservice_watch_events_total", kind="created") == 1
            )
            assert _metric(port, "flowservice_watch_lag_seconds_count") >= 1
            call.cancel()
            await _until(lambda: _metric(port, "flowservice_watchers") == 0)
    finally:
        await running.stop(grace=None)
