"""PostgreSQL as the scale-out backend, and the differences between the two databases
that FlowService keeps exactly as Prefect has them (docs/semantics.md#sqlite-and-postgresql)."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import TYPE_CHECKING, Any

import grpc
import pytest
import sqlalchemy as sa
from grpc_health.v1 import health_pb2, health_pb2_grpc

from flowservice.client import FlowClient, RpcError
from flowservice_server.app import RunningServer, start_server
from flowservice_server.config import DatabaseSettings, Settings
from flowservice_server.db.factory import open_database
from tests.helpers import NO_RETRIES, database_name, expect_error
from tests.postgres import admin, prefect_schema_statements
from tests.processes import start

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable
    from pathlib import Path

# --- dialect differences, documented and kept ---------------------------------------


async def test_a_backslash_in_like_is_literal_on_sqlite_and_an_escape_on_postgresql(
    client: FlowClient, backend: str
) -> None:
    await client.create_flow("myflow")
    await client.create_flow("my\\flow")
    matched = [f.name for f in await client.read_flows(flows={"name": {"like": "my\\flow"}})]
    assert matched == (["my\\flow"] if backend == "sqlite" else ["myflow"])


async def test_like_folds_only_ascii_case_on_sqlite_and_unicode_on_postgresql(
    client: FlowClient, backend: str
) -> None:
    await client.create_flow("ÜNÏ-flow")
    matched = await client.read_flows(flows={"name": {"like": "ünï"}})
    assert [f.name for f in matched] == ([] if backend == "sqlite" else ["ÜNÏ-flow"])
    # ASCII letters fold on both: only the non-ASCII ones must match case on SQLite.
    assert len(await client.read_flows(flows={"name": {"like": "nÏ-FLOW"}})) == 1


async def test_nul_characters_are_stored_by_sqlite_and_refused_by_postgresql(
    client: FlowClient, backend: str
) -> None:
    if backend == "sqlite":  # Prefect on SQLite accepts them too
        created_flow, _ = await client.create_flow("nul\x00name", tags=["t\x00"])
        assert (await client.read_flow(created_flow.id)).name == "nul\x00name"
        return
    error = await expect_error(client.create_flow("nul\x00name"), grpc.StatusCode.INVALID_ARGUMENT)
    assert error.error_info is not None
    assert error.error_info.reason == "UNSTORABLE_VALUE"
    assert "0x00" in error.message
    assert await client.count_flows() == 0
    await expect_error(
        client.read_flows(flows={"name": {"any": ["a\x00"]}}), grpc.StatusCode.INVALID_ARGUMENT
    )


async def test_a_name_too_long_for_postgresqls_unique_index_is_refused_there(
    client: FlowClient, backend: str
) -> None:
    """Its btree index takes entries up to 2,704 bytes; 700 four-byte characters are more."""
    name = "".join(chr(0x10000 + n * 37) for n in range(700))
    if backend == "sqlite":
        created_flow, _ = await client.create_flow(name)
        assert (await client.read_flow(created_flow.id)).name == name
        return
    error = await expect_error(client.create_flow(name), grpc.StatusCode.INVALID_ARGUMENT)
    assert error.error_info is not None
    assert error.error_info.reason == "UNSTORABLE_VALUE"
    assert "index row size" in error.message
    assert await client.count_flows() == 0


# --- outages -------------------------------------------------------------------------


async def _terminate_connections(server_url: str, database: str) -> int:
    (rows,) = await admin(
        server_url,
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        f"WHERE datname = '{database}' AND pid <> pg_backend_pid()",
    )
    (count,) = rows[0]
    assert isinstance(count, int)
    return count


async def _serve(url: str, **database: Any) -> RunningServer:
    settings = Settings(
        address="127.0.0.1:0",
        health_check_interval=0.1,
        database=DatabaseSettings(url=url, **database),
    )
    return await start_server(settings)


@pytest.fixture
async def outage_server(scratch_postgres: str) -> AsyncIterator[RunningServer]:
    # Without pre-ping a killed pooled connection fails the call that uses it,
    # which is what this needs to show; the pool then reconnects by itself.
    running = await _serve(scratch_postgres, pool_pre_ping=False, pool_size=4)
    yield running
    await running.stop(grace=None)


async def test_postgresql_killed_connections_give_unavailable_then_recover(
    outage_server: RunningServer, scratch_postgres: str, postgres_server_url: str
) -> None:
    target = f"127.0.0.1:{outage_server.port}"
    async with FlowClient(target, options=NO_RETRIES, timeout=10) as client:
        for number in range(5):
            await client.create_flow(f"flow-{number}")
        failures: list[RpcError] = []
        successes = 0
        deadline = time.monotonic() + 3.0

        async def load() -> None:
            # A page with its total: a REPEATABLE READ transaction through SQLAlchemy,
            # which a killed connection fails. (A page without it runs on asyncpg
            # directly, which reads again on a fresh connection; see below.)
            nonlocal successes
            while time.monotonic() < deadline:
                try:
                    await client.read_flows_page(
                        flows={"name": {"like": "flow"}}, include_total_size=True
                    )
                    successes += 1
                except RpcError as error:
                    failures.append(error)

        direct_failures: list[RpcError] = []
        direct_successes = 0

        async def direct_load() -> None:
            nonlocal direct_successes
            while time.monotonic() < deadline:
                try:
                    await client.read_flows(flows={"name": {"like": "flow"}})
                    direct_successes += 1
                except RpcError as error:
                    direct_failures.append(error)

        async def kill_connections() -> None:
            for _ in range(4):
                await asyncio.sleep(0.5)
                await _terminate_connections(postgres_server_url, database_name(scratch_postgres))

        await asyncio.gather(
            *(load() for _ in range(4)), *(direct_load() for _ in range(2)), kill_connections()
        )
        assert failures, "killing the connections under load should have failed some calls"
        assert {error.code for error in failures} == {grpc.StatusCode.UNAVAILABLE}
        assert all(error.retry_info is not None for error in failures)
        assert successes > len(failures)
        # Direct reads retry a dead connection once: what still fails is UNAVAILABLE too.
        assert direct_successes > 10 * len(direct_failures)
        assert {error.code for error in direct_failures} <= {grpc.StatusCode.UNAVAILABLE}
        # Recovered without a restart: every call after the outage succeeds.
        for _ in range(10):
            assert len(await client.read_flows()) == 5


async def _health(port: int) -> int:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        status: int = reply.status
        return status


async def _eventually(check: Callable[[], Awaitable[bool]], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached in time")


async def test_postgresql_health_is_not_serving_while_the_database_is_unreachable(
    scratch_postgres: str, postgres_server_url: str
) -> None:
    running = await _serve(scratch_postgres)
    database = database_name(scratch_postgres)
    serving = health_pb2.HealthCheckResponse.SERVING
    try:
        async with FlowClient(f"127.0.0.1:{running.port}", options=NO_RETRIES) as client:
            await client.create_flow("before")
            await admin(postgres_server_url, f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
            await _terminate_connections(postgres_server_url, database)
            await _eventually(lambda: _is(running.port, health_pb2.HealthCheckResponse.NOT_SERVING))
            error = await expect_error(client.read_flows(), grpc.StatusCode.UNAVAILABLE)
            assert error.retry_info is not None
            await admin(postgres_server_url, f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
            await _eventually(lambda: _is(running.port, serving))
            assert [f.name for f in await client.read_flows()] == ["before"]
    finally:
        await admin(postgres_server_url, f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
        await running.stop(grace=None)


async def _is(port: int, status: int) -> bool:
    return await _health(port) == status


# --- several servers on one database --------------------------------------------------


async def test_postgresql_two_server_processes_create_each_name_once(
    scratch_postgres: str, tmp_path: Path
) -> None:
    servers = await asyncio.gather(
        *(
            start(["--address", "127.0.0.1:0", "--database-url", scratch_postgres], tmp_path, {})
            for _ in range(2)
        )
    )
    names = [f"race-{number}" for number in range(25)]
    try:
        clients = [FlowClient(server.address, timeout=30) for server in servers]
        calls = [client.create_flow(name) for name in names for client in clients for _ in range(2)]
        results = await asyncio.gather(*calls)
        for client in clients:
            await client.close()
    finally:
        codes = [await server.stop() for server in servers]
    assert codes == [0, 0]
    by_name: dict[str, set[str]] = {}
    for flow, _ in results:
        by_name.setdefault(flow.name, set()).add(flow.id)
    assert all(len(ids) == 1 for ids in by_name.values())
    assert sum(created for _, created in results) == len(names)
    (rows,) = await admin(scratch_postgres, "SELECT count(*) FROM flow")
    assert rows == [(len(names),)]


async def test_postgresql_servers_starting_together_migrate_once(scratch_postgres: str) -> None:
    settings = DatabaseSettings(url=scratch_postgres)
    databases = await asyncio.gather(*(open_database(settings, migrate=True) for _ in range(4)))
    try:
        version = await databases[0].read(
            lambda connection: connection.scalar(
                sa.text("SELECT version_num FROM flowservice_alembic_version")
            )
        )
    finally:
        for database in databases:
            await database.close()
    assert version == "0007"


# --- without pg_trgm -----------------------------------------------------------------


@pytest.fixture
def limited_postgres(scratch_postgres: str, postgres_server_url: str) -> Any:
    """The scratch database, reached as a role that may create tables but not extensions."""
    role = f"flowservice_limited_{uuid.uuid4().hex[:8]}"
    database = database_name(scratch_postgres)
    asyncio.run(
        admin(
            postgres_server_url,
            f'CREATE ROLE "{role}" LOGIN',
            f'REVOKE CREATE ON DATABASE "{database}" FROM PUBLIC',
        )
    )
    asyncio.run(admin(scratch_postgres, f'GRANT USAGE, CREATE ON SCHEMA public TO "{role}"'))
    yield sa.make_url(scratch_postgres).set(username=role).render_as_string(False), role
    asyncio.run(admin(scratch_postgres, f'DROP OWNED BY "{role}"'))
    asyncio.run(admin(postgres_server_url, f'DROP ROLE "{role}"'))


async def test_postgresql_without_pg_trgm_migrates_logs_and_still_filters(
    limited_postgres: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    url, _role = limited_postgres
    with caplog.at_level(logging.WARNING):
        running = await _serve(url)
    try:
        assert any("pg_trgm is not available" in r.getMessage() for r in caplog.records)
        async with FlowClient(f"127.0.0.1:{running.port}") as client:
            await client.create_flow("Nightly-ETL")
            assert len(await client.read_flows(flows={"name": {"like": "etl"}})) == 1
        trigram = await running.database.read(
            lambda connection: connection.scalar(
                sa.text("SELECT count(*) FROM pg_indexes WHERE indexname LIKE 'trgm_ix_%'")
            )
        )
        assert trigram == 0
    finally:
        await running.stop(grace=None)


# --- the schema is Prefect's -----------------------------------------------------------

#: Tables outside the six: Prefect's foreign keys to them are left out.
#: Indexes FlowService adds for its filters (migrations 0002 to 0006).
OUR_INDEXES = {
    "ix_flow_run__state_type_coalesce_start_time_flow_id",
    "ix_flow_run__state_type_flow_id",
    "ix_flow_run__flow_id_start_time_id_state_type",
    "ix_flow__tags",
    "ix_flow_run__tags",
    "ix_deployment__tags",
}
TABLES = ("flow", "flow_run", "task_run", "deployment", "work_queue", "work_pool")


async def _describe(url: str) -> dict[str, Any]:
    (columns, indexes, constraints) = await admin(
        url,
        "SELECT table_name, column_name, data_type, udt_name, is_nullable, column_default "
        "FROM information_schema.columns WHERE table_schema = 'public' "
        f"AND table_name IN {TABLES} ORDER BY table_name, ordinal_position",
        f"SELECT indexname, indexdef FROM pg_indexes WHERE tablename IN {TABLES}",
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
        f"WHERE conrelid::regclass::text IN {TABLES}",
    )
    return {
        "columns": columns,
        "indexes": {name: definition for name, definition in indexes if name not in OUR_INDEXES},
        "constraints": dict(constraints),  # type: ignore[arg-type]  # (name, definition) rows
    }


async def test_postgresql_tables_match_prefect(
    postgres_database: str, scratch_postgres: str
) -> None:
    await admin(scratch_postgres, *prefect_schema_statements())
    ours, theirs = await _describe(postgres_database), await _describe(scratch_postgres)
    # Prefect's six tables: 118 columns, 66 indexes, 17 constraints (not a vacuous match).
    assert (len(theirs["columns"]), len(theirs["indexes"]), len(theirs["constraints"])) == (
        118,
        66,
        17,
    )
    assert ours["columns"] == theirs["columns"]
    assert ours["indexes"] == theirs["indexes"]
    assert ours["constraints"] == theirs["constraints"]
