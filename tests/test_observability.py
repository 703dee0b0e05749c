"""Observability: Prometheus metrics, access logs, OpenTelemetry spans."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import re
import urllib.request
import uuid
from typing import TYPE_CHECKING

import grpc
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from flowservice.client import FlowClient, RpcError
from flowservice.v1 import flow_service_pb2, flow_service_pb2_grpc
from flowservice_server.app import start_server
from flowservice_server.config import DatabaseSettings, Settings
from flowservice_server.observability import JsonFormatter

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from flowservice_server.app import RunningServer

SERVICE = "flowservice.v1.FlowService"
CREATE = "/flowservice.v1.FlowService/CreateFlow"
READ = "/flowservice.v1.FlowService/ReadFlow"
STREAM = "/flowservice.v1.FlowService/StreamFlows"
WATCH = "/flowservice.v1.FlowService/WatchFlows"


@pytest.fixture
async def observed(database_url: str) -> AsyncIterator[RunningServer]:
    settings = Settings(
        address="127.0.0.1:0",
        metrics_address="127.0.0.1:0",
        health_check_interval=0.05,
        database=DatabaseSettings(url=database_url),
    )
    running = await start_server(settings)
    yield running
    await running.stop(grace=None)


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        body: bytes = response.read()
    return body.decode()


def _value(metrics: str, name: str, **labels: str) -> float:
    """The sample of `name` whose labels include `labels` (0 when there is none)."""
    for line in metrics.splitlines():
        match = re.fullmatch(r"(\w+)\{(.*)\} (\S+)", line)
        if not match or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2)))
        if all(found.get(key) == value for key, value in labels.items()):
            return float(match.group(3))
    return 0.0


async def test_metrics_report_the_calls_just_made(observed: RunningServer) -> None:
    assert observed.metrics_port is not None
    async with FlowClient(f"127.0.0.1:{observed.port}") as client:
        for number in range(3):
            await client.create_flow(f"counted-{number}")
        with pytest.raises(RpcError):
            await client.read_flow(str(uuid.uuid4()))
    await asyncio.sleep(0.2)  # the pool is sampled every health-check interval
    metrics = await asyncio.to_thread(_scrape, observed.metrics_port)
    create = {"grpc_service": SERVICE, "grpc_method": "CreateFlow", "grpc_type": "unary"}
    read = {"grpc_service": SERVICE, "grpc_method": "ReadFlow", "grpc_type": "unary"}
    assert _value(metrics, "grpc_server_started_total", **create) == 3
    assert _value(metrics, "grpc_server_started_total", **read) == 1
    assert _value(metrics, "grpc_server_handled_total", **create, grpc_code="OK") == 3
    assert _value(metrics, "grpc_server_handled_total", **read, grpc_code="NOT_FOUND") == 1
    assert _value(metrics, "grpc_server_handled_total", **read, grpc_code="OK") == 0
    assert _value(metrics, "grpc_server_handling_seconds_count", **create) == 3
    assert _value(metrics, "grpc_server_handling_seconds_bucket", **create, le="+Inf") == 3
    assert "# TYPE grpc_server_handling_seconds histogram" in metrics
    assert "flowservice_db_pool_connections" in metrics
    assert _value(metrics, "flowservice_db_pool_connections", state="idle") >= 1


async def test_streaming_calls_reach_the_metrics_and_the_access_log(
    observed: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    """StreamFlows and WatchFlows go through the same interceptor as unary calls."""
    assert observed.metrics_port is not None
    async with FlowClient(f"127.0.0.1:{observed.port}") as client:
        for number in range(3):
            await client.create_flow(f"streamed-{number}")
        with caplog.at_level(logging.INFO, logger="flowservice.access"):
            streamed = [flow async for flow in client.stream_flows(batch_size=2)]
            watch = client.watch_flows(send_initial_state=True)
            await anext(watch)  # the first event: the stream is open and served
            await watch.aclose()  # the client cancels the call
            for _ in range(200):
                lines = [r for r in caplog.records if r.name == "flowservice.access"]
                if len(lines) == 2:
                    break
                # A stream cancelled while it waits to send is closed by its finalizer,
                # which a reference cycle can hold back until the collector runs.
                gc.collect()
                await asyncio.sleep(0.01)
    assert len(streamed) == 3
    logged = {(r.fields["method"], r.fields["code"]) for r in lines}  # type: ignore[attr-defined]
    assert logged == {(STREAM, "OK"), (WATCH, "CANCELLED")}
    metrics = await asyncio.to_thread(_scrape, observed.metrics_port)
    stream = {"grpc_service": SERVICE, "grpc_method": "StreamFlows", "grpc_type": "server_stream"}
    watched = {"grpc_service": SERVICE, "grpc_method": "WatchFlows", "grpc_type": "server_stream"}
    assert _value(metrics, "grpc_server_started_total", **stream) == 1
    assert _value(metrics, "grpc_server_handled_total", **stream, grpc_code="OK") == 1
    assert _value(metrics, "grpc_server_handling_seconds_count", **stream) == 1
    assert _value(metrics, "grpc_server_started_total", **watched) == 1
    assert _value(metrics, "grpc_server_handled_total", **watched, grpc_code="CANCELLED") == 1


async def test_an_access_log_line_per_call(
    any_backend_client: FlowClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="flowservice.access"):
        await any_backend_client.create_flow("logged", labels={"secret-ish": "value"})
        with pytest.raises(RpcError):
            await any_backend_client.read_flow("not-a-uuid")
        # A failed call's status can reach the client before the server logs it.
        for _ in range(100):
            lines = [r for r in caplog.records if r.name == "flowservice.access"]
            if len(lines) == 2:
                break
            await asyncio.sleep(0.01)
    assert [(r.fields["method"], r.fields["code"]) for r in lines] == [  # type: ignore[attr-defined]
        (CREATE, "OK"),
        (READ, "INVALID_ARGUMENT"),
    ]
    for record in lines:
        fields = record.fields  # type: ignore[attr-defined]
        assert fields["duration_ms"] >= 0
        assert fields["peer"].startswith("ipv4:127.0.0.1:")
        assert "logged" not in record.getMessage()  # what was asked is not logged


def test_json_log_lines_carry_the_access_fields() -> None:
    record = logging.LogRecord("flowservice.access", logging.INFO, __file__, 1, "msg", (), None)
    record.fields = {"method": CREATE, "code": "OK", "duration_ms": 1.5, "peer": "ipv4:x"}
    line = json.loads(JsonFormatter().format(record))
    assert line["logger"] == "flowservice.access"
    assert (line["method"], line["code"], line["duration_ms"]) == (CREATE, "OK", 1.5)
    assert {"time", "level", "pid", "message"} <= set(line)


# --- tracing -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def spans() -> InMemorySpanExporter:
    """An SDK exporter that keeps spans in memory (a process has one tracer provider)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return exporter


@pytest.fixture
async def traced(any_backend_url: str, spans: InMemorySpanExporter) -> AsyncIterator[RunningServer]:
    settings = Settings(
        address="127.0.0.1:0",
        tracing="opentelemetry",
        database=DatabaseSettings(url=any_backend_url),
    )
    running = await start_server(settings)
    spans.clear()
    yield running
    await running.stop(grace=None)


async def test_each_call_is_a_server_span_continuing_the_callers_trace(
    traced: RunningServer, spans: InMemorySpanExporter
) -> None:
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    parent = f"00-{trace_id}-00f067aa0ba902b7-01"
    target = f"127.0.0.1:{traced.port}"
    async with grpc.aio.insecure_channel(target) as channel:
        stub = flow_service_pb2_grpc.FlowServiceStub(channel)
        await stub.CreateFlow(
            flow_service_pb2.CreateFlowRequest(name="traced"), metadata=(("traceparent", parent),)
        )
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.ReadFlow(flow_service_pb2.ReadFlowRequest(id=str(uuid.uuid4())))
    # A failed call's status can reach the client before the server ends its span.
    for _ in range(100):
        finished = spans.get_finished_spans()
        if len(finished) == 2:
            break
        await asyncio.sleep(0.01)
    created, missing = finished
    assert created.name == "flowservice.v1.FlowService/CreateFlow"
    assert created.kind == SpanKind.SERVER
    assert format(created.context.trace_id, "032x") == trace_id
    assert created.attributes is not None
    assert created.attributes["rpc.system"] == "grpc"
    assert created.attributes["rpc.method"] == "CreateFlow"
    assert created.attributes["rpc.grpc.status_code"] == 0
    assert missing.status.status_code == StatusCode.ERROR
    assert missing.attributes is not None
    assert missing.attributes["rpc.grpc.status_code"] == grpc.StatusCode.NOT_FOUND.value[0]
