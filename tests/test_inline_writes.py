"""SQLite single-row writes on the event-loop thread, and the bounds that keep the loop free.

The servers run in this test's event loop, so a heartbeat task on the same loop
sees exactly how long any inline write held it.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
import uuid
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from flowservice.client import FlowClient
from flowservice.errors import RpcError
from flowservice_server.db import sqlite_inline_writes, tables
from flowservice_server.db.engine import short_write
from flowservice_server.db.sqlite_engine import SqliteDatabase
from flowservice_server.models import flows
from tests.helpers import Heartbeat, expect_error, serving

if TYPE_CHECKING:
    from flowservice.v1 import flow_pb2
    from flowservice_server.app import RunningServer
    from flowservice_server.db.sqlite_inline_writes import InlineWriter

#: Runs of the flow whose delete cascades: far more VM instructions than any budget allows.
_MANY_RUNS = 20_000


def _writer(running: RunningServer) -> InlineWriter:
    database = running.database
    assert isinstance(database, SqliteDatabase)
    assert database.inline_writes is not None
    return database.inline_writes


def _size(path: Path) -> int:
    return path.stat().st_size


def _path(url: str) -> str:
    return url.removeprefix("sqlite+aiosqlite:///")


def _client(running: RunningServer, timeout: float = 30) -> FlowClient:
    return FlowClient(f"127.0.0.1:{running.port}", timeout=timeout)


def _query(path: str, sql: str, *parameters: object) -> list[tuple[object, ...]]:
    connection = sqlite3.connect(path)
    try:
        return connection.execute(sql, parameters).fetchall()
    finally:
        connection.close()


def _changes(path: str, flow_id: str) -> list[object]:
    sql = "SELECT kind FROM flowservice_flow_change WHERE id = ? ORDER BY seq"
    rows = _query(path, sql, flow_id)
    return [kind for (kind,) in rows]


def _add_runs(path: str, flow_id: str, count: int) -> None:
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
            "INSERT INTO flow_run (name, flow_id) SELECT 'run-' || i, ? FROM n",
            (count, flow_id),
        )
    finally:
        connection.close()


def _without_updated(flow: flow_pb2.Flow) -> bytes:
    """The flow's bytes but for `updated` (and the etag, which derives from it)."""
    copy = type(flow)()
    copy.CopyFrom(flow)
    copy.ClearField("updated")
    copy.ClearField("etag")
    return copy.SerializeToString(deterministic=True)


async def test_writes_answer_the_same_on_the_loop_and_in_threads(any_backend_url: str) -> None:
    """One file, two servers: inline writes on and off; the change feed records both."""
    path = _path(any_backend_url)
    async with (
        serving(any_backend_url) as inline,
        serving(any_backend_url, inline_writes=False) as threaded,
        _client(inline) as on,
        _client(threaded) as off,
    ):
        writer = _writer(inline)
        assert isinstance(threaded.database, SqliteDatabase)
        assert threaded.database.inline_writes is None
        labels: dict[str, str | int] = {"team": "a", "n": 1}
        flow_on, created_on = await on.create_flow("on", tags=["x", "y"], labels=labels)
        flow_off, created_off = await off.create_flow("off", tags=["x", "y"], labels=labels)
        assert created_on
        assert created_off
        # Each answer is the flow as stored (read back through the other server).
        assert await off.read_flow(flow_on.id) == flow_on
        assert await on.read_flow(flow_off.id) == flow_off
        assert (flow_on.tags, flow_on.labels) == (flow_off.tags, flow_off.labels)

        # Stored alike, down to each column's SQLite type and text (no labels: JSON null).
        bare_on, _ = await on.create_flow("bare-on")
        bare_off, _ = await off.create_flow("bare-off")
        stored = (
            "SELECT typeof(id), length(id), typeof(created), length(created), typeof(updated), "
            "length(updated), typeof(tags), tags, typeof(labels), labels FROM flow WHERE id = ?"
        )
        assert _query(path, stored, bare_on.id) == _query(path, stored, bare_off.id)
        assert _query(path, stored, flow_on.id) == _query(path, stored, flow_off.id)

        # The same update of one flow, through each path.
        updated_on = await on.update_flow(flow_on.id, tags=["z"])
        assert await off.read_flow(flow_on.id) == updated_on
        updated_off = await off.update_flow(flow_on.id, tags=["z"])
        assert await on.read_flow(flow_on.id) == updated_off
        assert _without_updated(updated_on) == _without_updated(updated_off)
        assert updated_on.updated != updated_off.updated
        touched_on = await on.update_flow(flow_on.id)  # no tags: only `updated` changes
        assert _without_updated(touched_on) == _without_updated(updated_on)

        # The rows themselves, as the memo of serialized flows keys them.
        work = partial(flows.update_flow, flow_id=uuid.UUID(flow_off.id), tags=["r"])
        row_on = await inline.database.write(work, 10)
        row_off = await threaded.database.write(work, 10)
        assert row_on is not None
        assert row_off is not None
        assert [type(v) for v in tuple(row_on)] == [type(v) for v in tuple(row_off)]
        assert tuple(row_on)[:2] + tuple(row_on)[3:] == tuple(row_off)[:2] + tuple(row_off)[3:]

        # Unknown flows: the same status and details either way.
        missing = "00000000-0000-4000-8000-000000000000"
        error_on = await expect_error(on.update_flow(missing, tags=[]), grpc.StatusCode.NOT_FOUND)
        error_off = await expect_error(off.update_flow(missing, tags=[]), grpc.StatusCode.NOT_FOUND)
        assert _same_error(error_on, error_off)

        await on.delete_flow(flow_on.id)
        await off.delete_flow(flow_off.id)
        for client, gone in ((on, flow_off.id), (off, flow_on.id)):
            await expect_error(client.read_flow(gone), grpc.StatusCode.NOT_FOUND)
        error_on = await expect_error(on.delete_flow(flow_on.id), grpc.StatusCode.NOT_FOUND)
        error_off = await expect_error(off.delete_flow(flow_on.id), grpc.StatusCode.NOT_FOUND)
        assert _same_error(error_on, error_off)

        # Every change, by either path, in the change table (written by the triggers).
        assert _changes(path, flow_on.id) == ["created", "updated", "updated", "updated", "deleted"]
        assert _changes(path, flow_off.id) == ["created", "updated", "updated", "deleted"]
        assert writer.outcomes["inline"] == 8  # the inline server's writes, found or not
        assert writer.outcomes["busy"] == writer.outcomes["unexpected"] == 0


def _same_error(one: RpcError, other: RpcError) -> bool:
    return (one.code, one.message, one.resource_info, one.error_info) == (
        other.code,
        other.message,
        other.resource_info,
        other.error_info,
    )


async def test_a_write_lock_held_elsewhere_hands_the_write_to_a_worker_thread(
    any_backend_url: str,
) -> None:
    """Another process's (here: connection's) BEGIN IMMEDIATE: the loop never waits for it."""
    path = _path(any_backend_url)
    async with serving(any_backend_url) as running, _client(running) as client:
        writer = _writer(running)
        flow, _ = await client.create_flow("held")
        holder = sqlite3.connect(path, isolation_level=None)
        try:
            holder.execute("BEGIN IMMEDIATE")
            holder.execute("UPDATE flow SET tags = '[\"held\"]' WHERE id = ?", (flow.id,))
            update = asyncio.create_task(client.update_flow(flow.id, tags=["after"]))
            async with Heartbeat() as heartbeat:
                await asyncio.sleep(0.3)
            assert not update.done()  # a worker thread waits for the lock: the loop does not
            assert heartbeat.longest < 0.1, heartbeat.longest
            assert writer.outcomes["busy"] == 1
            holder.execute("COMMIT")
        finally:
            holder.close()
        updated = await update
        assert list(updated.tags) == ["after"]
        assert await client.read_flow(flow.id) == updated
        assert _changes(path, flow.id) == ["created", "updated", "updated"]
        before = writer.outcomes["inline"]
        await client.update_flow(flow.id, tags=["inline"])  # and on the loop again
        assert writer.outcomes["inline"] == before + 1


async def test_a_cascading_delete_is_stopped_at_its_budget_rerun_in_a_thread_and_demoted(
    any_backend_url: str,
) -> None:
    budget = 0.002
    path = _path(any_backend_url)
    async with (
        serving(any_backend_url, inline_write_budget=budget) as running,
        _client(running) as client,
    ):
        writer = _writer(running)
        doomed, _ = await client.create_flow("doomed")
        next_one, _ = await client.create_flow("next")
        _add_runs(path, doomed.id, _MANY_RUNS)
        _add_runs(path, next_one.id, _MANY_RUNS)
        count_runs = "SELECT count(*) FROM flow_run WHERE flow_id = ?"
        assert _query(path, count_runs, doomed.id) == [(_MANY_RUNS,)]
        async with Heartbeat() as heartbeat:
            started = time.monotonic()
            await client.delete_flow(doomed.id)
            took = time.monotonic() - started
        # The inline attempt stopped at its budget and rolled back; a worker
        # thread deleted the flow and its runs, committed once.
        assert took > 5 * budget
        assert heartbeat.longest < took / 3, (heartbeat.longest, took)
        assert writer.outcomes["over_budget"] == 1
        assert writer.demoted("delete flow")
        assert _changes(path, doomed.id) == ["created", "deleted"]
        assert _query(path, count_runs, doomed.id) == [(0,)]
        await expect_error(client.read_flow(doomed.id), grpc.StatusCode.NOT_FOUND)
        # Demoted: the next delete goes straight to a worker thread.
        async with Heartbeat() as heartbeat:
            started = time.monotonic()
            await client.delete_flow(next_one.id)
            took = time.monotonic() - started
        assert heartbeat.longest < took / 3, (heartbeat.longest, took)
        assert writer.outcomes["demoted"] == 1
        assert writer.outcomes["over_budget"] == 1
        assert _changes(path, next_one.id) == ["created", "deleted"]
        # Other shapes stay on the loop.
        before = writer.outcomes["inline"]
        await client.create_flow("after")
        assert writer.outcomes["inline"] == before + 1


async def test_the_deadline_stops_an_inline_write_and_nothing_is_committed(
    any_backend_url: str,
) -> None:
    # A budget longer than the deadline: the deadline is what stops the write.
    path = _path(any_backend_url)
    async with (
        serving(any_backend_url, inline_write_budget=10.0) as running,
        _client(running) as client,
    ):
        writer = _writer(running)
        doomed, _ = await client.create_flow("doomed")
        _add_runs(path, doomed.id, _MANY_RUNS)
        async with Heartbeat() as heartbeat:
            with pytest.raises(RpcError) as raised:
                await client.delete_flow(doomed.id, timeout=0.02)
        assert raised.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
        assert heartbeat.longest < 0.5, heartbeat.longest
        assert writer.outcomes["deadline"] == 1
        assert not writer.demoted("delete flow")  # a deadline says nothing of the shape
        assert await client.read_flow(doomed.id) == doomed
        assert _query(path, "SELECT count(*) FROM flow_run") == [(_MANY_RUNS,)]
        assert _changes(path, doomed.id) == ["created"]


@short_write("update, then too slow to commit")
def _update_then_dawdle(connection: sa.Connection, flow_id: uuid.UUID, seconds: float) -> object:
    """A write whose statements finish in time but whose unit does not (no VM steps to stop)."""
    row = flows.update_flow(connection, flow_id, tags=["late"])
    time.sleep(seconds)
    return row


async def test_a_write_past_its_deadline_is_rolled_back_not_committed(any_backend_url: str) -> None:
    path = _path(any_backend_url)
    async with (
        serving(any_backend_url, inline_write_budget=10.0) as running,
        _client(running) as client,
    ):
        writer = _writer(running)
        flow, _ = await client.create_flow("on time", tags=["before"])
        late = partial(_update_then_dawdle, flow_id=uuid.UUID(flow.id), seconds=0.05)
        with pytest.raises(TimeoutError):
            await running.database.write(late, 0.01)
        assert writer.outcomes["deadline"] == 1
        assert await client.read_flow(flow.id) == flow
        assert _changes(path, flow.id) == ["created"]
        # In time, the same write commits.
        await running.database.write(partial(late, seconds=0), 10)
        assert list((await client.read_flow(flow.id)).tags) == ["late"]


async def test_inline_writes_keep_the_wal_bounded(any_backend_url: str) -> None:
    """The loop's connection never checkpoints; the WAL still does not grow without bound."""
    wal = Path(_path(any_backend_url) + "-wal")
    every = sqlite_inline_writes.CHECKPOINT_EVERY
    async with serving(any_backend_url) as running, _client(running) as client:
        writer = _writer(running)
        flow, _ = await client.create_flow("busy")
        for n in range(every - 2):
            await client.update_flow(flow.id, tags=[str(n)])
        assert writer.outcomes["checkpoint"] == 0
        before_any_checkpoint = _size(wal)  # every - 1 commits in it
        for n in range(4 * every):
            await client.update_flow(flow.id, tags=[str(n)])
        # Without checkpoints the WAL would be about five times as large.
        assert _size(wal) < 2 * before_any_checkpoint
        assert writer.outcomes["checkpoint"] == 4
        assert writer.outcomes["inline"] == 5 * every - 1 - 4


async def test_sixteen_clients_writing_at_once(any_backend_url: str) -> None:
    rounds = 20
    async with serving(any_backend_url) as running, contextlib.AsyncExitStack() as stack:
        writer = _writer(running)
        clients = [await stack.enter_async_context(_client(running)) for _ in range(16)]

        async def write(i: int, client: FlowClient) -> None:
            flow, _ = await client.create_flow(f"flow-{i}")
            for n in range(rounds):
                await client.update_flow(flow.id, tags=[f"client-{i}", f"round-{n}"])
                extra, created = await client.create_flow(f"extra-{i}-{n}")
                assert created
                await client.delete_flow(extra.id)

        await asyncio.gather(*(write(i, client) for i, client in enumerate(clients)))
        found = await clients[0].read_flows()
        assert sorted((f.name, list(f.tags)) for f in found) == sorted(
            (f"flow-{i}", [f"client-{i}", f"round-{rounds - 1}"]) for i in range(16)
        )
        assert writer.outcomes["inline"] > 0
        assert writer.outcomes["busy"] == writer.outcomes["unexpected"] == 0
        path = _path(any_backend_url)
        kinds = _query(path, "SELECT kind, count(*) FROM flowservice_flow_change GROUP BY kind")
        expected = {"created": 16 * (1 + rounds), "updated": 16 * rounds, "deleted": 16 * rounds}
        assert dict(kinds) == expected  # type: ignore[arg-type]  # (kind, count) pairs


async def test_a_file_locked_when_the_writer_first_connects_sends_the_write_to_a_thread(
    any_backend_url: str,
) -> None:
    """Even opening the loop's connection never waits: the write goes to a worker thread."""
    path = _path(any_backend_url)
    setup = sqlite3.connect(path, isolation_level=None)
    setup.execute("INSERT INTO flow (name, tags) VALUES ('locked', '[]')")
    (flow_id,) = setup.execute("SELECT id FROM flow").fetchone()
    setup.close()
    async with serving(any_backend_url, inline_reads=False) as running, _client(running) as client:
        writer = _writer(running)
        database = running.database
        assert isinstance(database, SqliteDatabase)
        database.engine.dispose()  # the server's pool; the writer has not connected yet
        holder = sqlite3.connect(path, isolation_level=None)
        try:
            # In exclusive locking mode no other connection can even read the file.
            holder.execute("PRAGMA locking_mode = EXCLUSIVE")
            holder.execute("BEGIN EXCLUSIVE")
            holder.execute("UPDATE flow SET tags = '[\"held\"]'")
            update = asyncio.create_task(client.update_flow(flow_id, tags=["after"]))
            async with Heartbeat() as heartbeat:
                await asyncio.sleep(0.3)
            assert not update.done()
            assert heartbeat.longest < 0.1, heartbeat.longest
            assert writer.outcomes["busy"] == 1
            holder.execute("COMMIT")
        finally:
            holder.close()
        assert list((await update).tags) == ["after"]
        assert _changes(path, flow_id) == ["created", "updated", "updated"]
        await client.update_flow(flow_id, tags=["inline"])
        assert writer.outcomes["inline"] == 1


@short_write("update, then insert a name that exists")
def _update_then_duplicate(connection: sa.Connection, flow_id: uuid.UUID, name: str) -> None:
    flows.update_flow(connection, flow_id, tags=["lost"])
    now = datetime.now(UTC)
    values = {"id": uuid.uuid4(), "created": now, "updated": now, "name": name, "tags": []}
    connection.execute(sa.insert(tables.flow), {**values, "labels": None})


async def test_a_write_failing_otherwise_is_rerun_in_a_thread_and_fails_as_there(
    any_backend_url: str,
) -> None:
    """A constraint violation is reported by a worker thread, as SQLAlchemy reports it."""
    path = _path(any_backend_url)
    async with serving(any_backend_url) as running, _client(running) as client:
        writer = _writer(running)
        flow, _ = await client.create_flow("taken", tags=["kept"])
        failing = partial(_update_then_duplicate, flow_id=uuid.UUID(flow.id), name="taken")
        with pytest.raises(sa_exc.IntegrityError):
            await running.database.write(failing, 10)
        assert writer.outcomes["unexpected"] == 1
        assert await client.read_flow(flow.id) == flow  # both attempts rolled back
        assert _changes(path, flow.id) == ["created"]
