"""Crash safety: what the server acknowledged survives a `kill -9` in the middle of writes.

A real `flowservice serve` (one worker, so the process killed is the one
that writes) takes creates, updates and deletes from several coroutines at
once and is killed with SIGKILL while they run. Restarted on the same
database, it must show every acknowledged create and update (with its tags)
and none of the acknowledged deletes. A call cut off by the kill may or may
not have happened: either outcome is accepted, and its flow is left alone
until the restarted server has shown which.
"""

from __future__ import annotations

import asyncio
import random
import signal
import sqlite3
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import grpc
import pytest

from flowservice.client import FlowClient, RpcError
from flowservice.v1 import flow_service_pb2
from tests.processes import ServerProcess, start

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from flowservice.v1 import flow_pb2

ROUNDS = 3
WRITERS = 6
NAMES_PER_WRITER = 12
#: Each round kills the server once this many writes were acknowledged (whatever
#: the machine's speed), while all writers are busy.
KILL_AFTER_WRITES = (60, 200, 400)
#: A write that never answers within this is cut off by the kill (or is a bug).
CALL_TIMEOUT = 5.0
#: No retries: a failed call must stay failed, so that an OK is this attempt's.
NO_RETRIES = [("grpc.enable_retries", 0)]
TAG_POOL = ("db", "nightly", "blue", "é", "")
PAGE = 200


@dataclass(frozen=True)
class State:
    """A flow as acknowledged: its id (None: whatever id a cut-off create made) and tags."""

    id: str | None
    tags: tuple[str, ...]


#: None: no such flow.
Known = State | None


@dataclass
class Ledger:
    """Per flow name: the acknowledged state, and what a cut-off call may have made of it."""

    acknowledged: dict[str, Known] = field(default_factory=dict)
    in_doubt: dict[str, Known] = field(default_factory=dict)
    writes: int = 0
    failures: list[RpcError] = field(default_factory=list)
    kill_at: int = 0
    kill_now: asyncio.Event = field(default_factory=asyncio.Event)

    def ack(self, name: str, state: Known) -> None:
        self.acknowledged[name] = state
        self.writes += 1
        if self.writes >= self.kill_at:
            self.kill_now.set()

    def possible(self, name: str) -> list[Known]:
        states = [self.acknowledged.get(name)]
        if name in self.in_doubt:
            states.append(self.in_doubt[name])
        return states


def matches(found: flow_pb2.Flow | None, expected: Known) -> bool:
    if expected is None or found is None:
        return expected is None and found is None
    same_id = expected.id is None or found.id == expected.id
    return same_id and tuple(found.tags) == expected.tags


# --- the burst ----------------------------------------------------------------------------


async def writer(
    client: FlowClient, ledger: Ledger, names: list[str], rng: random.Random, stop: asyncio.Event
) -> None:
    """Create, update and delete flows of its own names until told to stop."""
    while not stop.is_set():
        usable = [name for name in names if name not in ledger.in_doubt]
        if not usable:
            return
        name = rng.choice(usable)
        current = ledger.acknowledged.get(name)
        tags = tuple(rng.sample(TAG_POOL, rng.randint(1, 3)))
        try:
            if current is None:
                attempt: Known = State(None, tags)
                flow, _ = await client.create_flow(name, tags=tags)
                ledger.ack(name, State(flow.id, tuple(flow.tags)))
            elif rng.random() < 0.7:
                assert current.id is not None
                attempt = State(current.id, tags)
                flow = await client.update_flow(current.id, tags=tags)
                ledger.ack(name, State(flow.id, tuple(flow.tags)))
            else:
                assert current.id is not None
                attempt = None
                await client.delete_flow(current.id)
                ledger.ack(name, None)
        except RpcError as error:
            ledger.in_doubt[name] = attempt
            ledger.failures.append(error)


async def burst_then_kill(
    process: ServerProcess, ledger: Ledger, names: list[list[str]], writes: int, seed: int
) -> None:
    """Write from one coroutine per list of names; SIGKILL the server after `writes` acks."""
    ledger.kill_at = ledger.writes + writes
    ledger.kill_now.clear()
    stop = asyncio.Event()
    async with FlowClient(process.address, timeout=CALL_TIMEOUT, options=NO_RETRIES) as client:
        writers = [
            asyncio.create_task(writer(client, ledger, own, random.Random(seed + n), stop))
            for n, own in enumerate(names)
        ]
        await asyncio.wait_for(ledger.kill_now.wait(), timeout=30)
        assert not ledger.failures, f"a write failed before the kill: {ledger.failures[0]}"
        assert await process.stop(signal.SIGKILL) == -signal.SIGKILL
        stop.set()
        await asyncio.gather(*writers)
    # Cut off by the kill: the server's end (UNAVAILABLE), or a deadline while it died.
    cut_off = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    assert all(error.code in cut_off for error in ledger.failures), ledger.failures
    ledger.failures.clear()


# --- the check ----------------------------------------------------------------------------


async def every_flow(client: FlowClient) -> dict[str, flow_pb2.Flow]:
    found: dict[str, flow_pb2.Flow] = {}
    while page := await client.read_flows(
        sort=flow_service_pb2.FLOW_SORT_NAME_ASC, offset=len(found), limit=PAGE
    ):
        found.update((flow.name, flow) for flow in page)
    return found


async def check_and_settle(process: ServerProcess, ledger: Ledger) -> None:
    """Every name is in an acknowledged (or cut-off) state; then learn which."""
    async with FlowClient(process.address, timeout=30) as client:
        found = await every_flow(client)
        assert await client.count_flows() == len(found)
    assert set(found) <= set(ledger.acknowledged) | set(ledger.in_doubt), "unknown flows"
    for name in set(ledger.acknowledged) | set(ledger.in_doubt):
        flow = found.get(name)
        shown = "nothing" if flow is None else State(flow.id, tuple(flow.tags))
        assert any(matches(flow, state) for state in ledger.possible(name)), (
            f"{name}: found {shown}, acknowledged {ledger.acknowledged.get(name)}"
            + (f" or {ledger.in_doubt[name]} (cut off)" if name in ledger.in_doubt else "")
        )
        ledger.acknowledged[name] = None if flow is None else State(flow.id, tuple(flow.tags))
    ledger.in_doubt.clear()


# --- the test -----------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)])
def crash_database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database that the server migrates when it starts."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'crash.db'}"
    url: str = request.getfixturevalue("scratch_postgres")
    return url


@pytest.fixture
async def servers() -> AsyncIterator[list[ServerProcess]]:
    """Every server process started; none is left running afterwards."""
    started: list[ServerProcess] = []
    yield started
    for process in started:
        if process.process.returncode is None:
            await process.stop(signal.SIGKILL)


async def serve(database_url: str, cwd: Path, started: list[ServerProcess]) -> ServerProcess:
    # Access logs off: nobody reads the pipe during the burst, and a full pipe blocks.
    args = ["--address", "127.0.0.1:0", "--workers", "1", "--access-log", "false"]
    process = await start([*args, "--database-url", database_url], cwd, {})
    started.append(process)
    return process


def integrity(database_url: str) -> str:
    path = database_url.removeprefix("sqlite+aiosqlite:///")
    with sqlite3.connect(path) as connection:
        (result,) = connection.execute("PRAGMA integrity_check").fetchone()
    connection.close()
    return str(result)


async def test_acknowledged_writes_survive_kill_9(
    crash_database: str, servers: list[ServerProcess], tmp_path: Path
) -> None:
    ledger = Ledger()
    names = [[f"w{w}-{n}" for n in range(NAMES_PER_WRITER)] for w in range(WRITERS)]
    process = await serve(crash_database, tmp_path, servers)
    for round_number, writes in enumerate(KILL_AFTER_WRITES[:ROUNDS]):
        await burst_then_kill(process, ledger, names, writes, seed=round_number * 97)
        if crash_database.startswith("sqlite"):
            assert integrity(crash_database) == "ok"
        process = await serve(crash_database, tmp_path, servers)
        await check_and_settle(process, ledger)
    assert await process.stop() == 0
    if crash_database.startswith("sqlite"):
        assert integrity(crash_database) == "ok"
