"""Runtime behaviour for meshes and load balancers: graceful shutdown, deadlines,
cancellation, message limits and worker processes."""

from __future__ import annotations

import asyncio
import re
import signal
import sqlite3
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from flowservice.client import FlowClient, RpcError
from flowservice_server.app import grpc_options, start_server
from flowservice_server.config import DatabaseSettings, GrpcSettings, Settings
from tests.helpers import WriteBlocker
from tests.processes import start

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from flowservice_server.app import RunningServer

NO_RETRIES = [("grpc.enable_retries", 0)]


# --- deadlines and cancellation ---------------------------------------------------


async def test_a_50ms_deadline_on_a_waiting_write_is_deadline_exceeded_and_nothing_lands(
    server: RunningServer, client: FlowClient, blocker: WriteBlocker
) -> None:
    target = f"127.0.0.1:{server.port}"
    await blocker.hold()
    async with FlowClient(target, timeout=0.05, options=NO_RETRIES) as hurried:
        started = time.monotonic()
        with pytest.raises(RpcError) as raised:
            await hurried.create_flow("late")
        assert raised.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
        assert time.monotonic() - started < 1.0
    if blocker.backend == "postgresql":
        await asyncio.sleep(0.3)
        assert await blocker.waiting_inserts() == 0  # the database stopped working on it too
    await blocker.release()
    await asyncio.sleep(0.3)
    assert await client.count_flows() == 0  # no work continued after the deadline
    await client.create_flow("afterwards")  # and the server is fine
    assert await client.count_flows() == 1


async def test_a_write_that_ended_deadline_exceeded_is_safe_to_retry(
    server: RunningServer, client: FlowClient
) -> None:
    """DEADLINE_EXCEEDED on a write means "outcome unknown" (it may have committed just
    before the client gave up); a retry then leaves the state of exactly one write."""
    outcomes: set[str] = set()

    async def hurried(method: str, *args: Any, **kwargs: Any) -> None:
        async with FlowClient(
            f"127.0.0.1:{server.port}", timeout=0.001, options=NO_RETRIES
        ) as impatient:
            try:
                await getattr(impatient, method)(*args, **kwargs)
                outcomes.add("OK")
            except RpcError as error:
                outcomes.add(error.code.name)

    for number in range(15):
        name = f"retried-{number}"
        await hurried("create_flow", name, tags=["first"])
        flow, _ = await client.create_flow(name, tags=["first"])  # the retry
        assert [f.name for f in await client.read_flows(flows={"name": {"any": [name]}})] == [name]
        await hurried("update_flow", flow.id, tags=["second"])
        assert list((await client.update_flow(flow.id, tags=["second"])).tags) == ["second"]
        await hurried("delete_flow", flow.id)
        try:
            await client.delete_flow(flow.id)
        except RpcError as error:  # the first attempt deleted it after all
            outcomes.add(f"retried delete: {error.code.name}")
        assert await client.count_flows(flows={"name": {"any": [name]}}) == 0
    assert "DEADLINE_EXCEEDED" in outcomes  # the case this test is about did happen
    assert outcomes <= {"OK", "DEADLINE_EXCEEDED", "retried delete: NOT_FOUND"}


async def test_a_cancelled_call_stops_its_database_work(
    server: RunningServer, client: FlowClient, blocker: WriteBlocker
) -> None:
    await blocker.hold()
    async with FlowClient(f"127.0.0.1:{server.port}", options=NO_RETRIES) as impatient:
        call = asyncio.create_task(impatient.create_flow("cancelled"))
        await asyncio.sleep(0.3)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
    await asyncio.sleep(0.3)
    if blocker.backend == "postgresql":
        assert await blocker.waiting_inserts() == 0
    await blocker.release()
    await asyncio.sleep(0.3)
    assert await client.count_flows() == 0


async def test_calls_without_a_deadline_still_wait_for_a_busy_database(
    server: RunningServer, client: FlowClient, blocker: WriteBlocker
) -> None:
    await blocker.hold()
    waiting = asyncio.create_task(client.create_flow("patient"))
    await asyncio.sleep(0.3)
    assert not waiting.done()
    await blocker.release()
    flow, created = await asyncio.wait_for(waiting, timeout=10)
    assert created
    assert flow.name == "patient"


# --- transport limits ----------------------------------------------------------------


@pytest.fixture
async def small_server(any_backend_url: str) -> AsyncIterator[RunningServer]:
    settings = Settings(
        address="127.0.0.1:0",
        database=DatabaseSettings(url=any_backend_url),
        grpc=GrpcSettings(max_receive_message_size=1024),
    )
    running = await start_server(settings)
    yield running
    await running.stop(grace=None)


async def test_a_request_above_the_message_limit_is_resource_exhausted(
    small_server: RunningServer,
) -> None:
    async with FlowClient(f"127.0.0.1:{small_server.port}", options=NO_RETRIES) as client:
        with pytest.raises(RpcError) as raised:
            await client.create_flow("x" * 2048)
        assert raised.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        await client.create_flow("small")


def test_transport_settings_become_channel_arguments() -> None:
    options = dict(grpc_options(GrpcSettings(max_connection_age=0), reuse_port=False))
    assert options["grpc.keepalive_time_ms"] == 60_000
    assert options["grpc.http2.min_ping_interval_without_data_ms"] == 10_000
    assert options["grpc.max_receive_message_length"] == 4 * 1024 * 1024
    assert options["grpc.so_reuseport"] == 0
    assert "grpc.max_connection_age_ms" not in options
    # The stream limit counts open streams only (tests/test_load.py shows why).
    assert options["grpc.max_concurrent_streams"] == 100
    assert options["grpc.http.overload_protection"] == 0
    aged = dict(grpc_options(GrpcSettings(), reuse_port=True))
    assert (aged["grpc.max_connection_age_ms"], aged["grpc.max_connection_age_grace_ms"]) == (
        1_800_000,
        30_000,
    )
    assert aged["grpc.so_reuseport"] == 1


# --- graceful shutdown, as a real process --------------------------------------------


@pytest.fixture
def sqlite_file(tmp_path: Path) -> Path:
    return tmp_path / "flows.db"


@pytest.mark.parametrize("workers", [1, 2])
async def test_sigterm_flips_health_refuses_new_calls_and_lets_a_slow_call_finish(
    tmp_path: Path, sqlite_file: Path, workers: int
) -> None:
    url = f"sqlite+aiosqlite:///{sqlite_file}"
    process = await start(
        ["--address", "127.0.0.1:0", "--workers", str(workers), "--grace-period", "20"],
        tmp_path,
        {"FLOWSERVICE_DATABASE_URL": url},
    )
    blocker = WriteBlocker(url)
    try:
        async with FlowClient(process.address, timeout=30) as client:
            await client.create_flow("warm-up")  # the connection's worker has its pool ready
            async with grpc.aio.insecure_channel(process.address) as channel:
                watch = health_pb2_grpc.HealthStub(channel).Watch(
                    health_pb2.HealthCheckRequest(service="")
                )
                assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING
                await blocker.hold()
                slow = asyncio.create_task(client.create_flow("slow"))
                await asyncio.sleep(0.5)
                assert not slow.done()
                process.process.send_signal(signal.SIGTERM)
                # Health flips first, on the stream the prober already has open...
                update = await asyncio.wait_for(watch.read(), timeout=10)
                assert update.status == health_pb2.HealthCheckResponse.NOT_SERVING
                watch.cancel()
            # ...new calls are refused...
            # (failing fast: a client that waits for ready would wait for a server
            # that is never coming back)
            async with FlowClient(
                process.address, options=NO_RETRIES, wait_for_ready=False, timeout=5
            ) as newcomer:
                with pytest.raises(RpcError) as refused:  # by the transport: no details
                    await newcomer.count_flows()
                assert refused.value.code == grpc.StatusCode.UNAVAILABLE
            # ...and the call in flight finishes once the database lets it.
            assert not slow.done()
            await blocker.release()
            flow, created = await asyncio.wait_for(slow, timeout=15)
            assert (flow.name, created) == ("slow", True)
        assert await process.stop() == 0
    finally:
        await blocker.release()
        if process.process.returncode is None:
            await process.stop(signal.SIGKILL)
    assert any("stopped" in line for line in process.log)
    with sqlite3.connect(sqlite_file) as database:
        names = {row[0] for row in database.execute("SELECT name FROM flow")}
    assert names == {"warm-up", "slow"}


async def test_workers_share_the_port_and_all_serve(tmp_path: Path) -> None:
    process = await start(
        ["--address", "127.0.0.1:0", "--workers", "2"],
        tmp_path,
        {"FLOWSERVICE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"},
    )
    try:
        assert any("2 workers" in line for line in process.log)
        for number in range(24):  # a new connection each time: the kernel spreads them
            async with FlowClient(process.address, timeout=10) as client:
                await client.create_flow(f"flow-{number}")
        assert await process.stop() == 0
    finally:
        if process.process.returncode is None:
            await process.stop(signal.SIGKILL)
    access = [line for line in process.log if "flowservice.access" in line]
    pids = {match.group(1) for line in access if (match := re.search(r"\[(\d+)\]", line))}
    assert len(access) == 24
    assert len(pids) == 2, "both workers should have served calls"


async def test_workers_exit_when_the_supervisor_is_killed(tmp_path: Path) -> None:
    """No orphan keeps the port (or the database) after a SIGKILL of the supervisor."""
    process = await start(
        ["--address", "127.0.0.1:0", "--workers", "2"],
        tmp_path,
        {"FLOWSERVICE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"},
    )
    children = _children(process.process.pid)
    assert len(children) >= 2  # the workers (and multiprocessing's resource tracker)
    await process.stop(signal.SIGKILL)  # returns once every holder of its stderr is gone
    deadline = time.monotonic() + 15
    alive = children
    while alive and time.monotonic() < deadline:
        alive = {pid for pid in alive if _running(pid)}
        await asyncio.sleep(0.1)
    assert not alive, f"processes {sorted(alive)} outlived their supervisor"


def _children(pid: int) -> set[int]:
    return {int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}


def _running(pid: int) -> bool:
    try:  # a zombie has exited, only unreaped
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
