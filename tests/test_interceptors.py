"""The interceptor chain covers server-streaming calls as it covers unary ones: errors become
statuses with details (even after some responses), refused requests are refused, tokens are
checked, and every call is logged and counted, whether it ends well, fails or is cancelled."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio
import pytest
from google.protobuf import wrappers_pb2

from flowservice.errors import from_failed_call
from flowservice_server import observability
from flowservice_server.app import interceptors
from flowservice_server.config import AuthSettings, Settings
from flowservice_server.errors import NotFoundError
from flowservice_server.limits import MAX_TEXT_LENGTH

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

SERVICE = "test.Streams"
TOKEN = "s3cret-token"


async def _yield_then_fail(
    request: wrappers_pb2.StringValue, context: Any
) -> AsyncIterator[wrappers_pb2.StringValue]:
    """Two responses, then what the request asks for: 'ok', 'missing', 'crash' or 'hang'."""
    for number in range(2):
        yield wrappers_pb2.StringValue(value=f"{request.value}-{number}")
    if request.value == "missing":
        raise NotFoundError("test.Thing", "name", "missing")
    if request.value == "crash":
        raise ValueError("secret internals")
    if request.value == "hang":
        await asyncio.sleep(60)


async def _written(request: wrappers_pb2.StringValue, context: Any) -> None:
    """A stream written with context.write, as grpc's own health Watch is."""
    await context.write(wrappers_pb2.StringValue(value="written"))
    raise NotFoundError("test.Thing", "name", request.value)


@pytest.fixture
async def streams(request: pytest.FixtureRequest) -> AsyncIterator[tuple[grpc.aio.Channel, Any]]:
    """A real server with FlowService's interceptor chain and two streaming test methods."""
    tokens: tuple[str, ...] = getattr(request, "param", ())
    metrics = observability.Metrics()
    settings = Settings(address="127.0.0.1:0", auth=AuthSettings(tokens=tokens))
    server = grpc.aio.server(interceptors=interceptors(settings, metrics))
    handlers = {
        name: grpc.unary_stream_rpc_method_handler(
            behavior,
            request_deserializer=wrappers_pb2.StringValue.FromString,
            response_serializer=wrappers_pb2.StringValue.SerializeToString,
        )
        for name, behavior in (("Yield", _yield_then_fail), ("Write", _written))
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield channel, metrics
    await server.stop(None)


def _stream(channel: grpc.aio.Channel, method: str = "Yield") -> Any:
    return channel.unary_stream(
        f"/{SERVICE}/{method}",
        request_serializer=wrappers_pb2.StringValue.SerializeToString,
        response_deserializer=wrappers_pb2.StringValue.FromString,
    )


async def _collect(call: Any) -> tuple[list[str], grpc.aio.AioRpcError | None]:
    received: list[str] = []
    try:
        async for response in call:
            received.append(response.value)
    except grpc.aio.AioRpcError as error:
        return received, error
    return received, None


def _count(metrics: observability.Metrics, method: str, code: str) -> float:
    service, _, name = method.lstrip("/").partition("/")
    labels = {"grpc_service": service, "grpc_method": name, "grpc_type": "server_stream"}
    value = metrics.registry.get_sample_value(
        "grpc_server_handled_total", {**labels, "grpc_code": code}
    )
    return value or 0.0


async def test_an_error_after_some_responses_becomes_its_status_with_details(
    streams: tuple[grpc.aio.Channel, Any], caplog: pytest.LogCaptureFixture
) -> None:
    channel, metrics = streams
    with caplog.at_level(logging.INFO, logger="flowservice.access"):
        received, error = await _collect(
            _stream(channel)(wrappers_pb2.StringValue(value="missing"))
        )
    assert received == ["missing-0", "missing-1"]
    assert error is not None
    failed = from_failed_call(error)
    assert failed.code == grpc.StatusCode.NOT_FOUND
    assert failed.resource_info is not None
    assert failed.resource_info.resource_name == "missing"
    assert failed.error_info is not None
    assert failed.error_info.reason == "THING_NOT_FOUND"
    method = f"/{SERVICE}/Yield"
    assert _count(metrics, method, "NOT_FOUND") == 1
    access = [r.getMessage() for r in caplog.records if r.name == "flowservice.access"]
    assert any(line.startswith(f"{method} NOT_FOUND") for line in access), access


async def test_an_unexpected_error_in_a_stream_is_internal_never_unknown(
    streams: tuple[grpc.aio.Channel, Any],
) -> None:
    channel, _ = streams
    received, error = await _collect(_stream(channel)(wrappers_pb2.StringValue(value="crash")))
    assert received == ["crash-0", "crash-1"]
    assert error is not None
    assert error.code() == grpc.StatusCode.INTERNAL
    assert "secret internals" not in (error.details() or "")


async def test_a_stream_written_with_context_write_is_covered_too(
    streams: tuple[grpc.aio.Channel, Any],
) -> None:
    channel, metrics = streams
    received, error = await _collect(
        _stream(channel, "Write")(wrappers_pb2.StringValue(value="gone"))
    )
    assert received == ["written"]
    assert error is not None
    assert from_failed_call(error).code == grpc.StatusCode.NOT_FOUND
    assert _count(metrics, f"/{SERVICE}/Write", "NOT_FOUND") == 1


async def test_a_stream_that_ends_well_is_counted_ok(streams: tuple[grpc.aio.Channel, Any]) -> None:
    channel, metrics = streams
    received, error = await _collect(_stream(channel)(wrappers_pb2.StringValue(value="ok")))
    assert (received, error) == (["ok-0", "ok-1"], None)
    assert _count(metrics, f"/{SERVICE}/Yield", "OK") == 1


async def test_malformed_and_oversized_stream_requests_are_invalid_argument(
    streams: tuple[grpc.aio.Channel, Any],
) -> None:
    channel, _ = streams
    raw: Any = channel.unary_stream(f"/{SERVICE}/Yield")
    received, error = await _collect(raw(b"\xff\xff\xff"))
    assert received == []
    assert error is not None
    assert from_failed_call(error).code == grpc.StatusCode.INVALID_ARGUMENT
    too_long = wrappers_pb2.StringValue(value="x" * (MAX_TEXT_LENGTH + 1))
    received, error = await _collect(_stream(channel)(too_long))
    assert received == []
    assert error is not None
    refused = from_failed_call(error)
    assert refused.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in refused.field_violations] == ["value"]


async def test_a_cancelled_stream_is_logged_as_cancelled(
    streams: tuple[grpc.aio.Channel, Any],
) -> None:
    channel, metrics = streams
    call = _stream(channel)(wrappers_pb2.StringValue(value="hang"))
    assert (await call.read()).value == "hang-0"
    assert (await call.read()).value == "hang-1"
    call.cancel()
    method = f"/{SERVICE}/Yield"
    for _ in range(100):  # the server ends the call's scope a moment after the client
        if _count(metrics, method, "CANCELLED") == 1:
            break
        await asyncio.sleep(0.02)
    assert _count(metrics, method, "CANCELLED") == 1


@pytest.mark.parametrize("streams", [(TOKEN,)], indirect=True)
async def test_a_stream_without_a_token_is_unauthenticated_with_error_info(
    streams: tuple[grpc.aio.Channel, Any],
) -> None:
    channel, _ = streams
    received, error = await _collect(_stream(channel)(wrappers_pb2.StringValue(value="ok")))
    assert received == []
    assert error is not None
    refused = from_failed_call(error)
    assert refused.code == grpc.StatusCode.UNAUTHENTICATED
    assert refused.error_info is not None
    assert refused.error_info.reason == "UNAUTHENTICATED"
    allowed = _stream(channel)(
        wrappers_pb2.StringValue(value="ok"), metadata=(("authorization", f"Bearer {TOKEN}"),)
    )
    assert await _collect(allowed) == (["ok-0", "ok-1"], None)
