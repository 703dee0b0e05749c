"""FlowService over HTTP: an ASGI application speaking Connect (JSON and binary) and gRPC-Web.

Every call runs through `inprocess.InProcessCalls`, i.e. the gRPC handlers
behind the gRPC interceptors; this module only moves bytes between HTTP and
those handlers: it picks the protocol from the content type, turns headers
into metadata (`authorization` included) and `connect-timeout-ms` or
`grpc-timeout` into the call's deadline, cancels the call when the client
goes away, and answers browsers' CORS preflights for the allowed origins.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc

from flowservice_server import http_protocols as protocols
from flowservice_server.http_protocols import CODECS, Codec, ProtocolError
from flowservice_server.inprocess import CallContext, Failure, InProcessCalls

if TYPE_CHECKING:
    from google.protobuf.descriptor import ServiceDescriptor
    from google.protobuf.message import Message

Scope = Mapping[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

#: Headers that belong to HTTP or to the protocols, not to the call's metadata.
NOT_METADATA = frozenset(
    {
        "host",
        "connection",
        "keep-alive",
        "transfer-encoding",
        "upgrade",
        "te",
        "content-type",
        "content-length",
        "content-encoding",
        "accept-encoding",
        "origin",
        "grpc-timeout",
        "grpc-encoding",
        "grpc-accept-encoding",
        "x-grpc-web",
        "connect-protocol-version",
        "connect-timeout-ms",
        "connect-content-encoding",
        "connect-accept-encoding",
    }
)

#: Request headers a browser may send cross-origin (CORS preflight).
CORS_ALLOWED_HEADERS = (
    "authorization, content-type, connect-protocol-version, connect-timeout-ms, "
    "connect-content-encoding, connect-accept-encoding, grpc-timeout, grpc-encoding, "
    "grpc-accept-encoding, x-grpc-web, x-user-agent, x-flowservice-min-lsn"
)
#: Response headers a browser's script may read: gRPC-Web's status may come as headers.
CORS_EXPOSED_HEADERS = (
    "grpc-status, grpc-message, grpc-status-details-bin, trailer-x-flowservice-lsn"
)


@dataclass(frozen=True)
class Protocol:
    """How one call is framed: Connect unary, Connect streaming, or gRPC-Web."""

    name: str  # "connect" | "connect-stream" | "grpc-web"
    codec: Codec
    content_type: str


def protocol_for(content_type: str) -> Protocol:
    """The protocol and codec a request's content type names, or 415."""
    media = content_type.partition(";")[0].strip().lower()
    if media in ("application/json", "application/proto"):
        return Protocol("connect", CODECS[media.removeprefix("application/")], media)
    if media in ("application/connect+json", "application/connect+proto"):
        return Protocol("connect-stream", CODECS[media.rpartition("+")[2]], media)
    if media in ("application/grpc-web", "application/grpc-web+proto"):
        return Protocol("grpc-web", CODECS["proto"], "application/grpc-web+proto")
    if media == "application/grpc-web+json":
        return Protocol("grpc-web", CODECS["json"], media)
    raise ProtocolError(
        415,
        f"unsupported content type {content_type!r}: use application/json or application/proto "
        "(Connect unary), application/connect+json or +proto (Connect streaming), or "
        "application/grpc-web+proto",
    )


@dataclass(frozen=True)
class Method:
    path: str
    streaming: bool
    input: type[Message]
    output: type[Message]


def methods_of(services: list[ServiceDescriptor]) -> dict[str, Method]:
    """Every unary and server-streaming method of the services, by HTTP path."""
    found: dict[str, Method] = {}
    for service in services:
        for method in service.methods:
            if method.client_streaming:
                continue
            path = f"/{service.full_name}/{method.name}"
            found[path] = Method(
                path,
                method.server_streaming,
                protocols.message_class(method.input_type.full_name),
                protocols.message_class(method.output_type.full_name),
            )
    return found


@dataclass(frozen=True)
class _Exchange:
    """One HTTP request being answered: what was asked, and how to answer."""

    method: Method
    protocol: Protocol
    body: bytes
    compression: str
    context: CallContext
    receive: Receive
    send: Send
    cors: list[tuple[bytes, bytes]]


class HttpGateway:
    """The ASGI application; one per server, sharing its interceptors and handlers."""

    def __init__(
        self,
        calls: InProcessCalls,
        methods: dict[str, Method],
        *,
        allowed_origins: tuple[str, ...],
        max_request_size: int,
    ) -> None:
        self._calls = calls
        self._methods = methods
        self._origins = allowed_origins
        self._max_request_size = max_request_size

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        cors = self._cors(headers.get("origin"))
        try:
            if scope["method"] == "OPTIONS":
                await self._preflight(cors, send)
                return
            if scope["method"] != "POST":
                raise ProtocolError(405, "use POST")
            method = self._methods.get(scope["path"])
            if method is None:
                raise ProtocolError(404, f"no method {scope['path']}: use /SERVICE/METHOD")
            protocol = protocol_for(headers.get("content-type", ""))
            if protocol.name == "connect" and method.streaming:
                raise ProtocolError(
                    415, "a streaming method takes application/connect+json or +proto"
                )
            if protocol.name == "connect-stream" and not method.streaming:
                raise ProtocolError(
                    415, "a unary method takes application/json or application/proto"
                )
            body = await self._body(receive)
            context = CallContext(
                metadata_of(scope["headers"]), peer_of(scope), self._deadline(protocol, headers)
            )
        except ProtocolError as error:
            await _plain(send, error.status, error.message, cors)
            return
        if protocol.name == "connect":
            compression = headers.get("content-encoding", "")
        elif protocol.name == "connect-stream":
            compression = headers.get("connect-content-encoding", "")
        else:
            compression = headers.get("grpc-encoding", "")
        call = _Exchange(method, protocol, body, compression, context, receive, send, cors)
        if protocol.name == "connect":
            await self._connect_unary(call)
        else:
            await self._enveloped(call)

    # --- the two response shapes ------------------------------------------------------

    async def _connect_unary(self, call: _Exchange) -> None:
        method, protocol, cors = call.method, call.protocol, call.cors
        try:
            request = protocol.codec.to_wire(
                protocols.decompress(call.body, call.compression), method.input
            )
        except ProtocolError as error:
            await _plain(call.send, error.status, error.message, cors)
            return
        try:
            response = await _guarded(
                self._calls.unary(method.path, request, call.context), call.context, call.receive
            )
        except Failure as failure:
            answer = protocols.json_dumps(protocols.connect_error(failure))
            status = protocols.HTTP_STATUS[failure.code]
            trailers = _trailer_headers(call.context)
            await _respond(
                call.send, status, "application/json", answer, cors, extra_headers=trailers
            )
            return
        data = protocol.codec.from_wire(response, method.output)
        trailers = _trailer_headers(call.context)
        await _respond(call.send, 200, protocol.content_type, data, cors, extra_headers=trailers)

    async def _enveloped(self, call: _Exchange) -> None:
        """Connect streaming and gRPC-Web (unary or streaming): envelopes, then the status."""
        method, protocol, send, context = call.method, call.protocol, call.send, call.context
        try:
            message = protocols.single_message(call.body, call.compression)
            request = protocol.codec.to_wire(message, method.input)
        except ProtocolError as error:
            await _plain(send, error.status, error.message, call.cors)
            return
        await send(_start(200, protocol.content_type, call.cors))

        async def pump() -> None:
            if method.streaming:
                async for response in self._calls.server_stream(method.path, request, context):
                    data = protocol.codec.from_wire(response, method.output)
                    await send(_body(protocols.envelope(data), more=True))
            else:
                response = await self._calls.unary(method.path, request, context)
                data = protocol.codec.from_wire(response, method.output)
                await send(_body(protocols.envelope(data), more=True))

        failure: Failure | None = None
        try:
            await _guarded(pump(), context, call.receive)
        except Failure as error:
            failure = error
        trailers = protocols.trailers_of(context.trailing_metadata())
        end = (
            protocols.connect_end_stream(failure, trailers)
            if protocol.name == "connect-stream"
            else protocols.grpc_web_trailers(failure, trailers)
        )
        await send(_body(end, more=False))

    # --- request parts ----------------------------------------------------------------

    async def _body(self, receive: Receive) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ProtocolError(400, "the client went away before sending the request")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._max_request_size:
                raise ProtocolError(
                    413, f"the request is larger than {self._max_request_size} bytes"
                )
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    @staticmethod
    def _deadline(protocol: Protocol, headers: Mapping[str, str]) -> float | None:
        if protocol.name == "grpc-web":
            value = headers.get("grpc-timeout")
            seconds = protocols.grpc_timeout(value) if value else None
        else:
            value = headers.get("connect-timeout-ms")
            seconds = protocols.connect_timeout(value) if value else None
        return None if seconds is None else asyncio.get_running_loop().time() + seconds

    # --- CORS -------------------------------------------------------------------------

    def _cors(self, origin: str | None) -> list[tuple[bytes, bytes]]:
        if origin is None or not (origin in self._origins or "*" in self._origins):
            return []
        return [
            (b"access-control-allow-origin", origin.encode("latin-1")),
            (b"access-control-expose-headers", CORS_EXPOSED_HEADERS.encode()),
            (b"vary", b"origin"),
        ]

    @staticmethod
    async def _preflight(cors: list[tuple[bytes, bytes]], send: Send) -> None:
        if not cors:
            raise ProtocolError(403, "this origin is not allowed (--http-allowed-origins)")
        headers = [
            *cors,
            (b"access-control-allow-methods", b"POST"),
            (b"access-control-allow-headers", CORS_ALLOWED_HEADERS.encode()),
            (b"access-control-max-age", b"7200"),
        ]
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send(_body(b"", more=False))


# --- helpers -------------------------------------------------------------------------


def metadata_of(raw_headers: list[tuple[bytes, bytes]]) -> tuple[tuple[str, str | bytes], ...]:
    """The call's metadata: every header but HTTP's and the protocols' own; `-bin` decoded."""
    metadata: list[tuple[str, str | bytes]] = []
    for raw_key, raw_value in raw_headers:
        key = raw_key.decode("latin-1").lower()
        if key in NOT_METADATA or key.startswith(("access-control-", "sec-", ":")):
            continue
        value = raw_value.decode("latin-1")
        if key.endswith("-bin"):
            try:
                metadata.append((key, base64.b64decode(value + "=" * (-len(value) % 4))))
            except binascii.Error:
                raise ProtocolError(400, f"header {key} is not base64") from None
        else:
            metadata.append((key, value))
    return tuple(metadata)


def peer_of(scope: Scope) -> str:
    """The client's address as gRPC writes it: ipv4:HOST:PORT or ipv6:[HOST]:PORT."""
    client = scope.get("client")
    if not client:
        return "unknown"
    host, port = client
    return f"ipv6:[{host}]:{port}" if ":" in host else f"ipv4:{host}:{port}"


async def _guarded(work: Coroutine[Any, Any, Any], context: CallContext, receive: Receive) -> Any:
    """Run a call until it ends, its deadline passes (DEADLINE_EXCEEDED) or the client
    goes away (CANCELLED); either way the call's task is cancelled, as grpc.aio does."""
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_disconnected(receive))
    remaining = context.time_remaining()
    try:
        done, _ = await asyncio.wait(
            {task, gone}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
        )
        if task in done:
            return task.result()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Failure):
            await task
        if gone in done:
            raise Failure(grpc.StatusCode.CANCELLED, "the client went away", None)
        raise Failure(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded", None)
    finally:
        gone.cancel()
        if not task.done():  # this request itself was cancelled (the server stops)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Failure):
                await task


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def _start(status: int, content_type: str, cors: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    # nosniff: a browser may otherwise hold back a stream's first bytes to guess its type.
    headers = [
        (b"content-type", content_type.encode()),
        (b"x-content-type-options", b"nosniff"),
        *cors,
    ]
    return {"type": "http.response.start", "status": status, "headers": headers}


def _body(data: bytes, *, more: bool) -> dict[str, Any]:
    return {"type": "http.response.body", "body": data, "more_body": more}


def _trailer_headers(context: CallContext) -> list[tuple[bytes, bytes]]:
    """Connect unary: the call's trailing metadata as `trailer-` prefixed headers."""
    return [
        (f"trailer-{key}".encode("latin-1"), value.encode("latin-1"))
        for key, value in protocols.trailers_of(context.trailing_metadata())
    ]


async def _respond(
    send: Send,
    status: int,
    content_type: str,
    data: bytes,
    cors: list[tuple[bytes, bytes]],
    *,
    extra_headers: Sequence[tuple[bytes, bytes]] = (),
) -> None:
    start = _start(status, content_type, cors)
    start["headers"] += [*extra_headers, (b"content-length", str(len(data)).encode())]
    await send(start)
    await send(_body(data, more=False))


async def _plain(send: Send, status: int, message: str, cors: list[tuple[bytes, bytes]]) -> None:
    await _respond(send, status, "text/plain; charset=utf-8", message.encode() + b"\n", cors)
