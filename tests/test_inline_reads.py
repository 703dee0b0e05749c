"""SQLite short reads on the event-loop thread, and the bounds that keep the loop free.

The server runs in this test's event loop, so a heartbeat task on the same loop
sees exactly how long any inline read held it.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from typing import TYPE_CHECKING

import pytest

from flowservice.client import FlowClient
from flowservice_server.db.engine import short_read
from flowservice_server.db.sqlite_engine import SqliteDatabase
from tests.helpers import Heartbeat, serving

if TYPE_CHECKING:
    import sqlalchemy as sa

    from flowservice_server.app import RunningServer
    from flowservice_server.db.sqlite_inline import InlineReader

#: Counts to this many in SQLite's VM: hundreds of milliseconds, far past any budget.
_SLOW_ROWS = 3_000_000


@short_read("deliberately slow")
def _slow_count(connection: sa.Connection) -> int:
    """A statement marked short that is not: every row of a long recursive CTE."""
    statement = (
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
        f"WHERE x < {_SLOW_ROWS}) SELECT count(*) FROM c"
    )
    return int(connection.exec_driver_sql(statement).scalar_one())


def _inline(running: RunningServer) -> InlineReader:
    database = running.database
    assert isinstance(database, SqliteDatabase)
    assert database.inline is not None
    return database.inline


async def test_short_reads_run_on_the_loop_and_answer_as_before(any_backend_url: str) -> None:
    async with serving(any_backend_url) as running:
        inline = _inline(running)
        async with FlowClient(f"127.0.0.1:{running.port}", timeout=30) as client:
            flow, created = await client.create_flow("inline", tags=["a"], labels={"k": 1})
            assert created
            before = inline.outcomes["inline"]
            assert await client.read_flow(flow.id) == flow
            assert await client.read_flow_by_name("inline") == flow
            assert await client.count_flows() == 1
            again, created_again = await client.create_flow("inline")
            assert (again, created_again) == (flow, False)
            assert inline.outcomes["inline"] == before + 4
            # All four are single statements, run on the sqlite3 connection itself.
            assert inline.outcomes["direct"] == before + 4


async def test_without_inline_reads_every_read_goes_to_a_worker_thread(
    any_backend_url: str,
) -> None:
    async with serving(any_backend_url, inline_reads=False) as running:
        database = running.database
        assert isinstance(database, SqliteDatabase)
        assert database.inline is None
        async with FlowClient(f"127.0.0.1:{running.port}", timeout=30) as client:
            flow, _ = await client.create_flow("threaded")
            assert await client.read_flow(flow.id) == flow
            assert await client.count_flows() == 1


async def test_a_slow_shape_is_stopped_at_its_budget_then_demoted(any_backend_url: str) -> None:
    budget = 0.005
    async with serving(any_backend_url, inline_read_budget=budget) as running:
        inline = _inline(running)
        async with Heartbeat() as heartbeat:
            started = time.monotonic()
            assert await running.database.read(_slow_count, 60) == _SLOW_ROWS
            took = time.monotonic() - started
        # The whole read took far longer than the loop was ever held: the
        # inline attempt stopped at its budget, the worker thread did the rest.
        assert took > 10 * budget
        # (Relative bounds: other processes share the machine's cores.)
        assert heartbeat.longest < took / 3, (heartbeat.longest, took)
        assert inline.outcomes["over_budget"] == 1
        assert inline.demoted("deliberately slow")
        # Demoted: the next call goes straight to a worker thread.
        async with Heartbeat() as heartbeat:
            started = time.monotonic()
            assert await running.database.read(_slow_count, 60) == _SLOW_ROWS
            took = time.monotonic() - started
        assert inline.outcomes["demoted"] == 1
        assert inline.outcomes["over_budget"] == 1
        assert heartbeat.longest < took / 3, (heartbeat.longest, took)
        # Other shapes stay inline.
        async with FlowClient(f"127.0.0.1:{running.port}", timeout=30) as client:
            assert await client.count_flows() == 0
        assert inline.outcomes["inline"] >= 1


async def test_the_deadline_stops_an_inline_read(any_backend_url: str) -> None:
    # A budget longer than the deadline: the deadline is what stops the read.
    async with serving(any_backend_url, inline_read_budget=10.0) as running:
        inline = _inline(running)
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await running.database.read(_slow_count, 0.05)
        assert time.monotonic() - started < 0.5
        assert inline.outcomes["deadline"] == 1
        assert not inline.demoted("deliberately slow")  # a deadline says nothing of the shape


async def test_a_locked_database_hands_the_read_to_a_worker_thread(any_backend_url: str) -> None:
    path = any_backend_url.removeprefix("sqlite+aiosqlite:///")
    # Writes in worker threads: an inline writer's open connection would keep
    # the file out of exclusive locking mode, as the pool's connections would.
    async with serving(any_backend_url, inline_writes=False) as running:
        inline = _inline(running)
        async with FlowClient(f"127.0.0.1:{running.port}", timeout=30) as client:
            flow, _ = await client.create_flow("locked")
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
                holder.execute("UPDATE flow SET tags = '[\"held\"]' WHERE name = 'locked'")
                read = asyncio.create_task(client.read_flow(flow.id))
                async with Heartbeat() as heartbeat:
                    await asyncio.sleep(0.3)
                assert not read.done()  # a worker thread waits for the lock: the loop does not
                assert heartbeat.longest < 0.1
                assert inline.outcomes["busy"] == 1
                holder.execute("COMMIT")
            finally:
                holder.close()
            read_back = await read
            assert read_back.id == flow.id
            assert list(read_back.tags) == ["held"]
            assert await client.read_flow(flow.id) == read_back  # and inline again
