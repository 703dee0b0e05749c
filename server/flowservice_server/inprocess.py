"""Calls of the gRPC method handlers from inside the process, through the interceptor chain.

The HTTP listener (Connect, gRPC-Web) serves no logic of its own: for each
call it asks the same interceptors (observability, authentication, error
statuses) and the same FlowService handlers that grpc.aio asks, with a
`CallContext` standing in for grpc.aio's context. Validation, errors, auth,
deadlines, the access log and metrics are therefore those of gRPC by
construction. Requests and responses stay wire bytes here, converted by the
handler's own deserializer and serializer.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn

import grpc
import grpc.aio

from flowservice_server.errors import MalformedRequestError, status_for
from flowservice_server.interceptors import refused_request

if TYPE_CHECKING:
    from collections.abc import (
        AsyncIterator,
        Awaitable,
        Callable,
        Iterable,
        Iterator,
        Mapping,
        Sequence,
    )
    from typing import TypeAlias

    Handler: TypeAlias = grpc.RpcMethodHandler[Any, Any]

Metadata = tuple[tuple[str, str | bytes], ...]

STATUS_DETAILS_KEY = "grpc-status-details-bin"


@dataclass(frozen=True)
class CallDetails:
    """What grpc.aio hands interceptors: the method's path and the caller's metadata."""

    method: str
    invocation_metadata: Metadata


class Failure(Exception):  # noqa: N818  # a call's outcome, not a programming error
    """A call ended with a status other than OK, as gRPC would have sent it."""

    def __init__(self, code: grpc.StatusCode, message: str, status_details: bytes | None) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message
        self.status_details = status_details  # a serialized google.rpc.Status, if given


class HandlerRegistry:
    """Stands in for the grpc.aio server where generated code registers a servicer.

    `add_…Servicer_to_server(servicer, registry)` registers through it: each
    registration is passed on to the real server and kept, so HTTP calls reach
    exactly the handlers (serializers included) that gRPC calls reach.
    """

    def __init__(self, server: grpc.aio.Server) -> None:
        self._server: Any = server
        self._generic: list[grpc.GenericRpcHandler] = []
        self._methods: dict[str, Handler] = {}

    def add_generic_rpc_handlers(self, handlers: Iterable[grpc.GenericRpcHandler]) -> None:
        handlers = tuple(handlers)
        self._server.add_generic_rpc_handlers(handlers)
        self._generic.extend(handlers)

    def add_registered_method_handlers(self, service: str, handlers: Mapping[str, Handler]) -> None:
        self._server.add_registered_method_handlers(service, handlers)
        for name, handler in handlers.items():
            self._methods[f"/{service}/{name}"] = handler

    def lookup(self, details: CallDetails) -> Handler | None:
        """The handler grpc.aio would find for the call: registered first, then generic."""
        found = self._methods.get(details.method)
        for generic in self._generic:
            if found is not None:
                break
            found = generic.service(details)  # type: ignore[arg-type]  # the same two fields
        return found


@dataclass
class CallContext(grpc.aio.ServicerContext[Any, Any]):
    """grpc.aio's context for a call that arrived over HTTP: metadata, peer, deadline, status."""

    metadata: Metadata
    peer_address: str
    deadline: float | None  # event-loop time
    _code: grpc.StatusCode = grpc.StatusCode.OK
    _details: str = ""
    _trailing: Metadata = field(default=())

    def invocation_metadata(self) -> Any:
        return self.metadata

    def peer(self) -> str:
        return self.peer_address

    def time_remaining(self) -> Any:
        if self.deadline is None:
            return None
        return max(self.deadline - asyncio.get_running_loop().time(), 0.0)

    async def abort(
        self, code: grpc.StatusCode, details: str = "", trailing_metadata: Any = ()
    ) -> NoReturn:
        self._code, self._details = code, details
        self._trailing = tuple(trailing_metadata or ())
        raise grpc.aio.AbortError

    async def abort_with_status(self, status: grpc.Status) -> NoReturn:
        await self.abort(status.code, status.details, status.trailing_metadata)

    def failure(self) -> Failure:
        details = next((v for k, v in self._trailing if k == STATUS_DETAILS_KEY), None)
        return Failure(self._code, self._details, details if isinstance(details, bytes) else None)

    def set_code(self, code: grpc.StatusCode) -> None:
        self._code = code

    def set_details(self, details: str) -> None:
        self._details = details

    def set_trailing_metadata(self, trailing_metadata: Any) -> None:
        self._trailing = tuple(trailing_metadata)

    def trailing_metadata(self) -> Any:
        return self._trailing

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    async def send_initial_metadata(self, initial_metadata: Any) -> None:
        """Headers are sent by the HTTP side; nothing here sets any."""

    async def read(self) -> NoReturn:
        raise NotImplementedError("client-streaming calls are not served over HTTP")

    async def write(self, message: Any) -> NoReturn:
        raise NotImplementedError("streams served over HTTP yield their responses")

    def add_done_callback(self, callback: Any) -> None:
        raise NotImplementedError

    def set_compression(self, compression: grpc.Compression) -> None:
        """Compression is the HTTP side's business."""

    def disable_next_message_compression(self) -> None:
        """Compression is the HTTP side's business."""

    def peer_identities(self) -> Any:
        return None

    def peer_identity_key(self) -> Any:
        return None

    def auth_context(self) -> Any:
        return {}

    def cancelled(self) -> bool:
        return False

    def done(self) -> bool:
        return False


def _unexpected(error: BaseException) -> Failure:
    status = status_for(error)
    details = dict(status.trailing_metadata).get(STATUS_DETAILS_KEY)
    return Failure(status.code, status.details, details if isinstance(details, bytes) else None)


class InProcessCalls:
    """Resolves a method through the interceptors, as grpc.aio does, and runs its handler."""

    def __init__(self, interceptors: Sequence[Any], registry: HandlerRegistry) -> None:
        self._interceptors = tuple(interceptors)
        self._registry = registry

    async def _resolve(self, details: CallDetails) -> Handler | None:
        async def through(index: int, call: Any) -> Handler | None:
            if index == len(self._interceptors):
                return self._registry.lookup(call)
            continuation: Callable[[Any], Awaitable[Handler | None]] = lambda c: through(  # noqa: E731
                index + 1, c
            )
            handler: Handler | None = await self._interceptors[index].intercept_service(
                continuation, call
            )
            return handler

        return await through(0, details)

    @staticmethod
    def _request(handler: Handler, method: str, body: bytes | MalformedRequestError) -> Any:
        if isinstance(body, MalformedRequestError):
            return refused_request(body)
        deserialize = handler.request_deserializer
        return deserialize(body) if deserialize is not None else body

    @staticmethod
    def _bytes(handler: Handler, response: Any) -> bytes:
        serialize = handler.response_serializer
        data = serialize(response) if serialize is not None else response
        return bytes(data)

    async def unary(
        self, method: str, body: bytes | MalformedRequestError, context: CallContext
    ) -> bytes:
        """The response's wire bytes, or `Failure`. `body` may be a decoding refusal."""
        handler = await self._resolve(CallDetails(method, context.metadata))
        if handler is None or handler.unary_unary is None:
            raise Failure(grpc.StatusCode.UNIMPLEMENTED, f"unknown unary method {method}", None)
        with _failures(context):
            request = self._request(handler, method, body)
            behavior: Any = handler.unary_unary  # typed for grpc's sync context; aio's here
            response = await behavior(request, context)
            return self._bytes(handler, response)
        raise AssertionError("not reached")

    async def server_stream(
        self, method: str, body: bytes | MalformedRequestError, context: CallContext
    ) -> AsyncIterator[bytes]:
        """Each response's wire bytes, then `Failure` unless the stream ended OK."""
        handler = await self._resolve(CallDetails(method, context.metadata))
        if handler is None or handler.unary_stream is None:
            raise Failure(grpc.StatusCode.UNIMPLEMENTED, f"unknown streaming method {method}", None)
        with _failures(context):
            request = self._request(handler, method, body)
            behavior: Any = handler.unary_stream
            produced: Any = behavior(request, context)
            if not hasattr(produced, "__aiter__"):  # a stream written with context.write
                await produced
                return
            try:
                async for response in produced:
                    yield self._bytes(handler, response)
            finally:
                await produced.aclose()


@contextlib.contextmanager
def _failures(context: CallContext) -> Iterator[None]:
    """An abort becomes the `Failure` it stands for; anything else unforeseen is INTERNAL."""
    try:
        yield
    except grpc.aio.AbortError:
        raise context.failure() from None
    except Failure:
        raise
    except Exception as error:  # noqa: BLE001  # mapped like the error interceptor would
        raise _unexpected(error) from None
