"""Readiness and deadlines: a client started before its server waits for it
(`wait_for_ready`), and every method takes its own `timeout=`."""

from __future__ import annotations

import asyncio
import socket
from typing import TYPE_CHECKING

import grpc
import pytest

from flowservice._shared import service_config
from flowservice.client import (
    DEFAULT_TARGET,
    DeadlineExceeded,
    FlowClient,
    FlowClientSync,
    RetryBudget,
    Unavailable,
)
from flowservice_server.app import start_server
from flowservice_server.config import DatabaseSettings, Settings

if TYPE_CHECKING:
    from flowservice_server.app import RunningServer


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _serve_later(url: str, port: int, delay: float) -> RunningServer:
    await asyncio.sleep(delay)
    settings = Settings(address=f"127.0.0.1:{port}", database=DatabaseSettings(url=url))
    return await start_server(settings)


async def test_the_first_call_waits_for_a_server_that_starts_later(any_backend_url: str) -> None:
    port = _free_port()
    async with FlowClient(f"127.0.0.1:{port}", timeout=30) as client:
        call = asyncio.create_task(client.create_flow("early"))
        running = await _serve_later(any_backend_url, port, 1.0)
        try:
            flow, created = await call
            assert created
            assert flow.name == "early"
        finally:
            await running.stop(grace=None)


async def test_the_sync_client_waits_too(any_backend_url: str) -> None:
    port = _free_port()
    with FlowClientSync(f"127.0.0.1:{port}", timeout=30) as client:
        call = asyncio.create_task(asyncio.to_thread(client.count_flows))
        running = await _serve_later(any_backend_url, port, 1.0)
        try:
            assert await call == 0
        finally:
            await running.stop(grace=None)


async def test_without_wait_for_ready_no_server_fails_at_once() -> None:
    async with FlowClient(f"127.0.0.1:{_free_port()}", wait_for_ready=False) as client:
        with pytest.raises(Unavailable):
            await client.count_flows(timeout=20)


async def test_a_per_call_timeout_bounds_the_wait() -> None:
    async with FlowClient(f"127.0.0.1:{_free_port()}", timeout=60) as client:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(DeadlineExceeded) as raised:
            await client.read_flows(timeout=0.3)
        assert raised.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
        assert loop.time() - started < 10
        with pytest.raises(DeadlineExceeded):
            async for _ in client.stream_flows(timeout=0.3):
                pass


def test_the_per_call_timeout_of_the_sync_client() -> None:
    with FlowClientSync(f"127.0.0.1:{_free_port()}") as client, pytest.raises(DeadlineExceeded):
        client.count_flows(timeout=0.3)


def test_the_retry_budget_is_in_the_service_config() -> None:
    assert service_config()["retryThrottling"] == {"maxTokens": 10, "tokenRatio": 0.1}
    assert service_config(RetryBudget(4, 0.5))["retryThrottling"] == {
        "maxTokens": 4,
        "tokenRatio": 0.5,
    }
    assert "retryThrottling" not in service_config(None)
    with FlowClientSync(DEFAULT_TARGET, retry_budget=None, wait_for_ready=False):
        pass
