"""PostgreSQL writes in three round trips (`--database-lean-writes`, `db.postgres_writes`).

Still one transaction with the call's time left as its statement timeout,
never committed past the deadline, rolled back when cancelled, the change
feed's rows written with it, a dead connection replaced before anything is
sent, and the same answers as the usual write path.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from functools import partial
from typing import TYPE_CHECKING

import asyncpg
import grpc
import pytest
import sqlalchemy as sa

from flowservice.client import RpcError
from flowservice_server.db.postgres_engine import PostgresDatabase
from flowservice_server.models import flows
from tests.conftest import through_pgbouncer
from tests.helpers import database_name, run_sync, serving, unretried_client
from tests.postgres import admin

if TYPE_CHECKING:
    from flowservice_server.app import RunningServer
    from flowservice_server.db.postgres_writes import LeanWrites
    from tests.pg_cluster import PgBouncer

pytestmark = pytest.mark.postgresql


def _lean(running: RunningServer) -> LeanWrites:
    assert isinstance(running.database, PostgresDatabase)
    lean = running.database.lean_writes
    assert lean is not None
    return lean


def _transaction_facts(connection: sa.Connection) -> tuple[str, int, int]:
    """The statement timeout, and the transaction id seen by two statements."""
    timeout = str(connection.exec_driver_sql("SHOW statement_timeout").scalar_one())
    first = int(connection.exec_driver_sql("SELECT pg_current_xact_id()::text").scalar_one())
    second = int(connection.exec_driver_sql("SELECT pg_current_xact_id()::text").scalar_one())
    return timeout, first, second


def _milliseconds(setting: str) -> float:
    for unit, factor in (("ms", 1), ("s", 1000), ("min", 60_000)):
        if setting.endswith(unit) and setting[: -len(unit)].isdigit():
            return int(setting[: -len(unit)]) * factor
    return float(setting)


async def test_a_write_is_one_transaction_bounded_by_the_time_left(
    scratch_postgres: str,
) -> None:
    async with serving(scratch_postgres) as running:
        before = _lean(running).outcomes["written"]
        timeout, first, second = await running.database.write(_transaction_facts, 20)
        assert first == second  # both statements in one transaction
        assert 19_000 <= _milliseconds(timeout) <= 20_000, timeout
        timeout, first, second = await running.database.write(_transaction_facts, None)
        assert first == second
        assert timeout == "0"  # no deadline: the server's own setting
        assert _lean(running).outcomes["written"] == before + 2


def _create_then_dawdle(connection: sa.Connection, *, name: str, seconds: float) -> None:
    flows.create_flow(connection, name=name, tags=[], labels=None)
    time.sleep(seconds)  # past the deadline, without a statement to cancel


async def test_a_write_past_its_deadline_is_rolled_back_and_one_cancelled_too(
    scratch_postgres: str, postgres_server_url: str
) -> None:
    database = database_name(scratch_postgres)
    async with serving(scratch_postgres) as running, unretried_client(running) as client:
        late = partial(_create_then_dawdle, name="too-late", seconds=0.4)
        with pytest.raises(TimeoutError):
            await running.database.write(late, 0.2)
        with pytest.raises(RpcError) as missing:
            await client.read_flow_by_name("too-late")
        assert missing.value.code == grpc.StatusCode.NOT_FOUND

        flow, _ = await client.create_flow("locked", tags=["before"])
        dsn = sa.make_url(scratch_postgres).set(drivername="postgresql")
        locker = await asyncpg.connect(dsn.render_as_string(hide_password=False))
        try:
            async with locker.transaction():
                await locker.execute("LOCK TABLE flow IN ACCESS EXCLUSIVE MODE")
                with pytest.raises(RpcError) as blocked:
                    await client.update_flow(flow.id, tags=["after"], timeout=0.5)
                assert blocked.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
                await asyncio.sleep(0.3)  # the server's own deadline, a moment after the client's
        finally:
            await locker.close()
        assert list((await client.read_flow(flow.id)).tags) == ["before"]
        # Nothing of the server's is left open in a transaction.
        (rows,) = await admin(
            postgres_server_url,
            "SELECT count(*) FROM pg_stat_activity WHERE datname = "
            f"'{database}' AND state LIKE 'idle in transaction%'",
        )
        assert rows == [(0,)]
        updated = await client.update_flow(flow.id, tags=["after"])
        assert list(updated.tags) == ["after"]


async def test_lean_writes_answer_as_the_usual_path_and_feed_the_change_table(
    scratch_postgres: str,
) -> None:
    async with (
        serving(scratch_postgres) as lean,
        serving(scratch_postgres, lean_writes=False) as usual,
    ):
        assert isinstance(usual.database, PostgresDatabase)
        assert usual.database.lean_writes is None
        (counted,) = await admin(scratch_postgres, "SELECT count(*) FROM flowservice_flow_change")
        async with unretried_client(lean) as on, unretried_client(usual) as off:
            results = []
            for client, prefix in ((on, "lean"), (off, "usual")):
                flow, created = await client.create_flow(f"{prefix}-flow", tags=["a"])
                updated = await client.update_flow(flow.id, tags=["b"], etag=flow.etag)
                with pytest.raises(RpcError) as stale:
                    await client.update_flow(flow.id, tags=["c"], etag=flow.etag)
                await client.delete_flow(flow.id)
                with pytest.raises(RpcError) as gone:
                    await client.delete_flow(flow.id)
                results.append((created, list(updated.tags), stale.value.code, gone.value.code))
        assert results[0] == results[1]
        assert results[0] == (
            True,
            ["b"],
            grpc.StatusCode.ABORTED,
            grpc.StatusCode.NOT_FOUND,
        )
        (now,) = await admin(scratch_postgres, "SELECT count(*) FROM flowservice_flow_change")
        (before,) = counted
        (after,) = now
        assert isinstance(before[0], int)
        assert isinstance(after[0], int)
        assert after[0] - before[0] == 6  # create, update, delete: on either path


async def _terminate(server_url: str, database: str) -> int:
    (rows,) = await admin(
        server_url,
        "SELECT count(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity "
        f"WHERE datname = '{database}' AND pid <> pg_backend_pid()",
    )
    (count,) = rows[0]
    assert isinstance(count, int)
    return count


async def test_a_connection_killed_between_writes_is_replaced_before_the_write(
    scratch_postgres: str, postgres_server_url: str
) -> None:
    database = database_name(scratch_postgres)
    async with (
        serving(scratch_postgres, pool_size=4) as running,
        unretried_client(running) as client,
    ):
        lean = _lean(running)
        flow, _ = await client.create_flow("rewritten")
        await asyncio.gather(*(client.update_flow(flow.id, tags=[str(n)]) for n in range(6)))
        # Killed while this loop is held: BEGIN meets a dead connection.
        assert run_sync(_terminate(postgres_server_url, database)) >= 1
        work = partial(flows.update_flow, flow_id=uuid.UUID(flow.id), tags=["after-kill"])
        row = await running.database.write(work, 10)
        assert row is not None
        assert lean.outcomes["rebegun"] == 1
        assert list((await client.read_flow(flow.id)).tags) == ["after-kill"]
        for round_ in range(2):
            assert await _terminate(postgres_server_url, database) >= 1
            tags = [f"round-{round_}"]
            assert list((await client.update_flow(flow.id, tags=tags)).tags) == tags


async def test_lean_writes_run_behind_pgbouncer(
    scratch_postgres: str, pgbouncer: PgBouncer
) -> None:
    url = through_pgbouncer(pgbouncer, scratch_postgres)
    async with (
        serving(url, pooler="pgbouncer", pool_size=6) as running,
        unretried_client(running) as client,
    ):

        async def worker(number: int) -> None:
            for round_ in range(5):
                name = f"bounced-{number}-{round_}"
                flow, created = await client.create_flow(name, tags=["a"])
                assert created
                assert list((await client.update_flow(flow.id, tags=["b"])).tags) == ["b"]
                await client.delete_flow(flow.id)

        before = _lean(running).outcomes["written"]
        await asyncio.gather(*(worker(number) for number in range(8)))
        assert _lean(running).outcomes["written"] - before == 8 * 5 * 3
        assert await client.count_flows() == 0
