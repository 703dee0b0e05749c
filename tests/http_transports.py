"""Four ways to call FlowService, each returning the same `Answer`: gRPC, Connect JSON,
Connect binary and gRPC-Web. The HTTP clients are written here from the protocols'
definitions (docs/http.md), independently of the server's code, with http.client in
a worker thread (the server shares the test's event loop)."""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import struct
import urllib.parse
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio
from google.protobuf import any_pb2, json_format
from google.rpc import status_pb2
from grpc_status import rpc_status

from flowservice.v1 import flow_service_pb2

if TYPE_CHECKING:
    from collections.abc import Callable

    from google.protobuf.message import Message

SERVICE = flow_service_pb2.DESCRIPTOR.services_by_name["FlowService"]
TRANSPORTS = ("grpc", "connect-json", "connect-proto", "grpc-web")
CONNECT_CODE = {
    ("canceled" if c is grpc.StatusCode.CANCELLED else c.name.lower()): c for c in grpc.StatusCode
}


@dataclass
class Answer:
    """What a call gave: its responses in order, then its status, message and details."""

    responses: list[Message] = field(default_factory=list)
    code: grpc.StatusCode = grpc.StatusCode.OK
    message: str = ""
    details: list[any_pb2.Any] = field(default_factory=list)
    #: The call's trailing metadata (gRPC's status keys aside), as text.
    trailers: dict[str, str] = field(default_factory=dict)

    def comparable(self) -> tuple[Any, ...]:
        return (
            [json_format.MessageToDict(r) for r in self.responses],
            self.code,
            self.message,
            [(d.type_url, d.value) for d in self.details],
        )


def _message_classes() -> dict[str, tuple[type[Message], type[Message], bool]]:
    from google.protobuf import message_factory

    found = {}
    for method in SERVICE.methods:
        found[method.name] = (
            message_factory.GetMessageClass(method.input_type),
            message_factory.GetMessageClass(method.output_type),
            method.server_streaming,
        )
    return found


_classes = _message_classes()


def _unpadded_b64decode(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def _connect_error(answer: Answer, error: dict[str, Any]) -> None:
    answer.code = CONNECT_CODE[error["code"]]
    answer.message = error.get("message", "")
    for detail in error.get("details", []):
        packed = any_pb2.Any(
            type_url="type.googleapis.com/" + detail["type"],
            value=_unpadded_b64decode(detail["value"]),
        )
        answer.details.append(packed)


class HttpCaller:
    """Connect and gRPC-Web over HTTP/1.1 to 127.0.0.1:port."""

    def __init__(self, port: int, protocol: str, headers: dict[str, str] | None = None) -> None:
        self.port = port
        self.protocol = protocol
        self.headers = headers or {}

    async def call(
        self,
        method: str,
        request: Message | bytes,
        *,
        timeout_ms: int | None = None,
        until: Callable[[Message], bool] | None = None,
    ) -> Answer:
        return await asyncio.to_thread(self._call, method, request, timeout_ms, until)

    def _call(
        self,
        method: str,
        request: Message | bytes,
        timeout_ms: int | None,
        until: Callable[[Message], bool] | None,
    ) -> Answer:
        _input, output, streaming = _classes[method]
        codec = "json" if self.protocol == "connect-json" else "proto"
        data = request if isinstance(request, bytes) else _encode(request, codec)
        headers = dict(self.headers)
        if self.protocol == "grpc-web":
            headers["content-type"] = "application/grpc-web+proto"
            headers["x-grpc-web"] = "1"
            if timeout_ms is not None:
                headers["grpc-timeout"] = f"{timeout_ms}m"
            body = struct.pack(">BI", 0, len(data)) + data
        elif streaming:
            headers["content-type"] = f"application/connect+{codec}"
            body = struct.pack(">BI", 0, len(data)) + data
        else:
            headers["content-type"] = f"application/{codec}"
            body = data
        if self.protocol != "grpc-web":
            headers["connect-protocol-version"] = "1"
            if timeout_ms is not None:
                headers["connect-timeout-ms"] = str(timeout_ms)
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            connection.request("POST", f"/{SERVICE.full_name}/{method}", body, headers)
            response = connection.getresponse()
            answer = Answer()
            if self.protocol != "grpc-web" and not streaming:
                answer.trailers = {
                    key.lower().removeprefix("trailer-"): value
                    for key, value in response.getheaders()
                    if key.lower().startswith("trailer-")
                }
                payload = response.read()
                if response.status == 200:
                    answer.responses.append(_decode(payload, output, codec))
                else:
                    assert response.getheader("content-type") == "application/json", payload
                    _connect_error(answer, json.loads(payload))
                return answer
            assert response.status == 200, response.read()
            while True:
                header = response.read(5)
                if not header:
                    raise AssertionError("the stream ended without its status")
                flags, length = struct.unpack(">BI", header)
                payload = response.read(length)
                if flags == 0:
                    message = _decode(payload, output, codec)
                    answer.responses.append(message)
                    if until is not None and until(message):
                        return answer  # the connection closes: the server cancels the call
                elif flags == 0x02 and self.protocol != "grpc-web":
                    end = json.loads(payload)
                    answer.trailers = {k: v[-1] for k, v in end.get("metadata", {}).items()}
                    if "error" in end:
                        _connect_error(answer, end["error"])
                    return answer
                elif flags == 0x80 and self.protocol == "grpc-web":
                    _grpc_web_trailers(answer, payload)
                    return answer
                else:
                    raise AssertionError(f"unexpected frame flags {flags:#x}")
        finally:
            connection.close()


def _encode(request: Message, codec: str) -> bytes:
    if codec == "json":
        return json.dumps(json_format.MessageToDict(request)).encode()
    return request.SerializeToString()


def _decode(payload: bytes, output: type[Message], codec: str) -> Message:
    if codec == "json":
        return json_format.Parse(payload, output())
    return output.FromString(payload)


def _grpc_web_trailers(answer: Answer, payload: bytes) -> None:
    trailers = {}
    for line in payload.decode().split("\r\n"):
        if line:
            key, _, value = line.partition(":")
            trailers[key.strip().lower()] = value.strip()
    answer.trailers = {k: v for k, v in trailers.items() if not k.startswith("grpc-")}
    answer.code = next(c for c in grpc.StatusCode if c.value[0] == int(trailers["grpc-status"]))
    answer.message = urllib.parse.unquote(trailers.get("grpc-message", ""))
    if "grpc-status-details-bin" in trailers:
        status = status_pb2.Status.FromString(
            _unpadded_b64decode(trailers["grpc-status-details-bin"])
        )
        answer.details.extend(status.details)


class GrpcCaller:
    """The same calls over gRPC, on a plain channel (no client library in between)."""

    protocol = "grpc"

    def __init__(self, channel: grpc.aio.Channel, metadata: tuple[tuple[str, str], ...] = ()):
        self.channel = channel
        self.metadata = metadata

    async def call(
        self,
        method: str,
        request: Message | bytes,
        *,
        timeout_ms: int | None = None,
        until: Callable[[Message], bool] | None = None,
    ) -> Answer:
        _input, output, streaming = _classes[method]
        path = f"/{SERVICE.full_name}/{method}"
        serialize: Callable[[Any], bytes] = (
            (lambda b: b) if isinstance(request, bytes) else (lambda m: m.SerializeToString())
        )
        timeout = None if timeout_ms is None else timeout_ms / 1000
        answer = Answer()
        call: Any
        if streaming:
            call = self.channel.unary_stream(
                path, request_serializer=serialize, response_deserializer=output.FromString
            )(request, timeout=timeout, metadata=self.metadata)
        else:
            call = self.channel.unary_unary(
                path, request_serializer=serialize, response_deserializer=output.FromString
            )(request, timeout=timeout, metadata=self.metadata)
        try:
            if streaming:
                async for message in call:
                    answer.responses.append(message)
                    if until is not None and until(message):
                        call.cancel()
                        return answer
            else:
                answer.responses.append(await call)
                answer.trailers = {
                    key: value if isinstance(value, str) else value.decode()
                    for key, value in await call.trailing_metadata() or ()
                    if not key.startswith("grpc-")
                }
        except grpc.aio.AioRpcError as error:
            answer.code = error.code()
            answer.message = error.details() or ""
            status = await rpc_status.aio.from_call(call)
            if status is not None:
                answer.details.extend(status.details)
        return answer


def caller(
    protocol: str, grpc_channel: grpc.aio.Channel, http_port: int, token: str | None = None
) -> GrpcCaller | HttpCaller:
    if protocol == "grpc":
        return GrpcCaller(grpc_channel, (("authorization", f"Bearer {token}"),) if token else ())
    return HttpCaller(http_port, protocol, {"authorization": f"Bearer {token}"} if token else {})
