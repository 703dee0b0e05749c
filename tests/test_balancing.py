"""Client-side balancing: three `flowservice serve` processes behind one round-robin target.

Three real server processes share one PostgreSQL database, directly or
through a real PgBouncer in transaction mode. Both clients, on one target
that names all three (`ipv4:127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3`), keep
calling while one server is killed with SIGKILL: no call fails, because the
published service config retries UNAVAILABLE and round_robin sends the
retry to a live server. Each server's access log shows it served calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import grpc
import pytest

from flowservice.client import FlowClient, FlowClientSync, RpcError
from tests.conftest import through_pgbouncer
from tests.processes import ServerProcess, start

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from pathlib import Path

    from tests.pg_cluster import PgBouncer

pytestmark = pytest.mark.postgresql

SERVERS = 3
#: Calls in flight per client. The default retry budget (10 tokens, retries
#: stop at half) retries up to four calls failed at once; see the README.
ASYNC_WORKERS = 4
SYNC_WORKERS = 2
BEFORE_KILL = 1.5  # seconds of load on three servers
AFTER_KILL = 2.5  # seconds of load on the two left
ACCESS_LINE = "/flowservice.v1.FlowService/"


@dataclass
class Tally:
    """What the workers saw: calls that succeeded, deletes already done, and failures."""

    calls: int = 0
    already_deleted: int = 0
    failures: list[BaseException] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, calls: int, *, already_deleted: bool = False) -> None:
        with self.lock:
            self.calls += calls
            self.already_deleted += already_deleted


def _is_not_found(error: BaseException) -> bool:
    return isinstance(error, RpcError) and error.code == grpc.StatusCode.NOT_FOUND


async def _async_worker(client: FlowClient, prefix: str, stop: asyncio.Event, tally: Tally) -> None:
    """Create, read, list, count, update and delete flows of its own until told to stop."""
    round_ = 0
    while not stop.is_set():
        round_ += 1
        try:
            flow, _ = await client.create_flow(f"{prefix}-{round_}", tags=["x"])  # get-or-create
            await client.read_flow(flow.id)
            await client.read_flows(flows={"name": {"like": prefix}}, limit=5)
            await client.count_flows(flows={"tags": {"all": ["x"]}})
            await client.update_flow(flow.id, tags=["y"])
            try:
                await client.delete_flow(flow.id)
            except RpcError as error:
                if not _is_not_found(error):
                    raise
                # The first attempt committed on the killed server: the flow is gone.
                with pytest.raises(RpcError) as raised:
                    await client.read_flow(flow.id)
                assert _is_not_found(raised.value)
                tally.add(0, already_deleted=True)
            tally.add(6)
        except Exception as error:  # noqa: BLE001  # every failure is collected and shown
            tally.failures.append(error)


def _sync_worker(client: FlowClientSync, prefix: str, stop: threading.Event, tally: Tally) -> None:
    """`_async_worker` on the blocking client, in a thread."""
    round_ = 0
    while not stop.is_set():
        round_ += 1
        try:
            flow, _ = client.create_flow(f"{prefix}-{round_}", tags=["x"])
            client.read_flow(flow.id)
            client.read_flows(flows={"name": {"like": prefix}}, limit=5)
            client.count_flows(flows={"tags": {"all": ["x"]}})
            client.update_flow(flow.id, tags=["y"])
            try:
                client.delete_flow(flow.id)
            except RpcError as error:
                if not _is_not_found(error):
                    raise
                with pytest.raises(RpcError) as raised:
                    client.read_flow(flow.id)
                assert _is_not_found(raised.value)
                tally.add(0, already_deleted=True)
            tally.add(6)
        except Exception as error:  # noqa: BLE001  # every failure is collected and shown
            tally.failures.append(error)


async def _drain(server: ServerProcess) -> None:
    """Keep reading a server's log, so that its access log never blocks on a full pipe."""
    assert server.process.stderr is not None
    while line := await server.process.stderr.readline():
        server.log.append(line.decode().rstrip())


@contextlib.asynccontextmanager
async def _servers(url: str, tmp_path: Path, *extra: str) -> AsyncIterator[list[ServerProcess]]:
    """Three `flowservice serve` processes on `url`, started at once (they migrate once)."""
    args = ["--address", "127.0.0.1:0", "--database-url", url, "--workers", "1", *extra]
    servers = list(await asyncio.gather(*(start(args, tmp_path, {}) for _ in range(SERVERS))))
    drains = [asyncio.create_task(_drain(server)) for server in servers]
    try:
        yield servers
    finally:
        for server in servers:
            if server.process.returncode is None:
                server.process.send_signal(signal.SIGTERM)
        for drain in drains:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(drain, 30)
        for server in servers:
            await asyncio.wait_for(server.process.wait(), 30)


def _served(server: ServerProcess) -> int:
    return sum(ACCESS_LINE in line for line in server.log)


async def _load_and_kill(servers: list[ServerProcess]) -> Tally:
    target = "ipv4:" + ",".join(server.address for server in servers)
    tally = Tally()
    prefix = f"rr-{uuid.uuid4().hex[:6]}"
    async_stop, sync_stop = asyncio.Event(), threading.Event()
    async with FlowClient(target, timeout=30) as client:
        with FlowClientSync(target, timeout=30) as sync_client:
            workers: list[asyncio.Future[Any]] = [
                asyncio.ensure_future(_async_worker(client, f"{prefix}-a{i}", async_stop, tally))
                for i in range(ASYNC_WORKERS)
            ]
            run: Callable[..., None] = _sync_worker
            workers += [
                asyncio.ensure_future(
                    asyncio.to_thread(run, sync_client, f"{prefix}-s{i}", sync_stop, tally)
                )
                for i in range(SYNC_WORKERS)
            ]
            await asyncio.sleep(BEFORE_KILL)
            served_before = [_served(server) for server in servers]
            calls_at_kill = tally.calls
            servers[0].process.send_signal(signal.SIGKILL)
            killed_at = time.monotonic()
            await asyncio.sleep(AFTER_KILL)
            async_stop.set()
            sync_stop.set()
            await asyncio.gather(*workers)
    assert await asyncio.wait_for(servers[0].process.wait(), 10) == -signal.SIGKILL
    assert all(served_before), f"round_robin should have used every server: {served_before}"
    assert tally.calls - calls_at_kill > 50, "the two servers left kept answering"
    assert time.monotonic() - killed_at >= AFTER_KILL
    return tally


@pytest.mark.timeout(180)
@pytest.mark.parametrize("path", ["direct", "pgbouncer"])
async def test_sigkill_of_one_of_three_servers_under_load_fails_no_call(
    path: str, scratch_postgres: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url, extra = scratch_postgres, ["--access-log", "true"]
    if path == "pgbouncer":
        bouncer: PgBouncer = request.getfixturevalue("pgbouncer")
        url = through_pgbouncer(bouncer, scratch_postgres)
        extra += ["--database-pooler", "pgbouncer"]
    async with _servers(url, tmp_path, *extra) as servers:
        tally = await _load_and_kill(servers)
    assert not tally.failures, f"{len(tally.failures)} failed calls, e.g. {tally.failures[:3]!r}"
