"""Many coroutines on one shared channel: no call may be refused by the transport.

Clients multiplex calls over one HTTP/2 connection up to the server's
advertised stream limit and queue the rest themselves. The server must then
accept every stream the client opens, or calls fail with UNAVAILABLE
(REFUSED_STREAM) that the caller never caused. Retries are off here, so that a
refused stream shows as a failed call instead of being retried away.
"""

from __future__ import annotations

import asyncio
import collections
from typing import TYPE_CHECKING

import pytest

from flowservice.client import FlowClient, RpcError
from tests.processes import start

if TYPE_CHECKING:
    from pathlib import Path

NO_RETRIES = [("grpc.enable_retries", 0)]
CALLS = 1000
CONCURRENCY = (64, 256)


async def failures_under_load(address: str, concurrency: int, flow_id: str) -> dict[str, int]:
    """`CALLS` reads, counts and creates from `concurrency` coroutines on a fresh channel.

    All coroutines start at once, so the first streams race the connection's
    setup as well. The result counts failed calls by status and message.
    """
    failed: collections.Counter[str] = collections.Counter()
    calls = iter(range(CALLS))
    async with FlowClient(address, options=NO_RETRIES, timeout=30) as client:

        async def caller() -> None:
            for number in calls:
                try:
                    if number % 3 == 0:
                        await client.read_flow(flow_id)
                    elif number % 3 == 1:
                        await client.count_flows()
                    else:
                        await client.create_flow(f"load-{number % 40}")
                except RpcError as error:
                    failed[f"{error.code.name}: {error.message}"] += 1

        await asyncio.gather(*(caller() for _ in range(concurrency)))
    return dict(failed)


@pytest.mark.parametrize("workers", [1, 2])
async def test_no_call_is_refused_on_a_shared_channel(
    database_url: str, tmp_path: Path, workers: int
) -> None:
    server = await start(
        [
            "--address",
            "127.0.0.1:0",
            "--workers",
            str(workers),
            "--database-url",
            database_url,
            "--access-log",
            "false",
        ],
        cwd=tmp_path,
        environ={},
    )
    try:
        async with FlowClient(server.address, timeout=30) as client:
            flow, _ = await client.create_flow("load")
        failures = {
            concurrency: await failures_under_load(server.address, concurrency, flow.id)
            for concurrency in CONCURRENCY
        }
    finally:
        assert await server.stop() == 0
    assert failures == {concurrency: {} for concurrency in CONCURRENCY}
