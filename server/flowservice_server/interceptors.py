"""Cross-cutting behaviour of every RPC, as grpc.aio server interceptors."""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
import grpc.aio

from flowservice_server import limits, wire
from flowservice_server.errors import (
    FlowServiceError,
    InvalidArgumentError,
    MalformedRequestError,
    status_for,
)

Req = TypeVar("Req")
Resp = TypeVar("Resp")
Continuation = Callable[
    [grpc.HandlerCallDetails], Awaitable["grpc.RpcMethodHandler[Req, Resp] | None"]
]
Context = grpc.aio.ServicerContext
UnaryBehavior = Callable[[Req, "grpc.aio.ServicerContext[Req, Resp]"], Awaitable[Resp]]
StreamBehavior = Callable[[Req, "grpc.aio.ServicerContext[Req, Resp]"], AsyncIterator[Resp]]


class HandlerCache:
    """Handlers derived from other handlers, made once per handler instead of once per call.

    grpc.aio asks every interceptor for a handler on every call, yet a method's
    handler never changes; deriving a new one each time (closures, handler
    tuples) is work repeated for nothing on the hot path.
    """

    def __init__(self, limit: int = 1024) -> None:
        self._limit = limit
        # Keyed by identity; the value keeps the key's handler alive, so an id
        # is never reused while its entry stands.
        self._derived: dict[int, tuple[Any, Any]] = {}

    def get(
        self,
        handler: grpc.RpcMethodHandler[Req, Resp],
        derive: Callable[[grpc.RpcMethodHandler[Req, Resp]], grpc.RpcMethodHandler[Req, Resp]],
    ) -> grpc.RpcMethodHandler[Req, Resp]:
        entry = self._derived.get(id(handler))
        if entry is not None:
            derived: grpc.RpcMethodHandler[Req, Resp] = entry[1]
            return derived
        derived = derive(handler)
        if len(self._derived) >= self._limit:  # only if some handler is made per call
            self._derived.clear()
        self._derived[id(handler)] = (handler, derived)
        return derived


class CallInterceptor(grpc.aio.ServerInterceptor):
    """Runs every call of a unary or server-streaming method inside `scope`.

    One scope serves both kinds: a unary call is awaited inside it and a
    streaming call is iterated inside it, so an exception a stream raises
    after its first responses meets the same handling as a unary one. Each
    method's handler is wrapped once. Client-streaming methods (only
    reflection's) pass through as they are.
    """

    def __init__(self) -> None:
        self._cache = HandlerCache()

    async def intercept_service(
        self,
        continuation: Continuation[Req, Resp],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Req, Resp] | None:
        handler = await continuation(handler_call_details)
        if handler is None or (handler.unary_unary is None and handler.unary_stream is None):
            return handler
        method = handler_call_details.method
        return self._cache.get(handler, lambda inner: self._wrapped(inner, method))

    def _wrapped(
        self, handler: grpc.RpcMethodHandler[Req, Resp], method: str
    ) -> grpc.RpcMethodHandler[Req, Resp]:
        deserializer = self.request_deserializer(method, handler.request_deserializer)
        behavior: Any = handler.unary_unary or handler.unary_stream
        wrapped = (
            self._around_generator(method, behavior)
            if inspect.isasyncgenfunction(behavior)
            else self._around_coroutine(method, behavior)
        )
        make = (
            grpc.unary_unary_rpc_method_handler
            if handler.unary_unary is not None
            else grpc.unary_stream_rpc_method_handler
        )
        return make(
            wrapped,
            request_deserializer=deserializer,
            response_serializer=self.response_serializer(handler.response_serializer),
        )

    def _around_coroutine(
        self, method: str, behavior: UnaryBehavior[Req, Resp]
    ) -> UnaryBehavior[Req, Resp]:
        """A unary call, or a stream written with `context.write` (health's Watch)."""
        scope = self.scope

        async def call(request: Req, context: Context[Req, Resp]) -> Resp:
            async with scope(method, request, context):
                return await behavior(request, context)
            raise AssertionError("not reached: a scope never swallows an exception")

        return call

    def _around_generator(
        self, method: str, behavior: StreamBehavior[Req, Resp]
    ) -> StreamBehavior[Req, Resp]:
        """A stream whose responses are yielded."""
        scope = self.scope

        async def call(request: Req, context: Context[Req, Resp]) -> AsyncIterator[Resp]:
            async with scope(method, request, context):
                responses = behavior(request, context)
                try:
                    async for response in responses:
                        yield response
                finally:
                    # Closed with this wrapper (a cancelled call's stream is
                    # closed by its finalizer), not later by its own: the
                    # stream's database work stops now.
                    close = getattr(responses, "aclose", None)
                    if close is not None:
                        await close()

        return call

    def scope(
        self, method: str, request: Any, context: Context[Any, Any]
    ) -> contextlib.AbstractAsyncContextManager[None]:
        """What surrounds one call; exceptions of the call pass through it."""
        raise NotImplementedError

    def request_deserializer(
        self, method: str, deserializer: Callable[[bytes], Any] | None
    ) -> Callable[[bytes], Any] | None:
        """The deserializer the wrapped handler uses: the same, unless overridden."""
        return deserializer

    def response_serializer(
        self, serializer: Callable[[Any], bytes] | None
    ) -> Callable[[Any], bytes] | None:
        """The serializer the wrapped handler uses: the same, unless overridden."""
        return serializer


@dataclass(frozen=True)
class _Refused:
    """Stands in for a request refused as it was decoded, so the call can fail properly."""

    error: FlowServiceError


def refused_request(error: FlowServiceError) -> Any:
    """What a deserializer gives for a request it refused; for requests decoded elsewhere
    (JSON over HTTP), so their refusal takes the same path as undecodable gRPC bytes."""
    return _Refused(error)


def _decode_within_limits(
    method: str, deserializer: Callable[[bytes], Any] | None
) -> Callable[[bytes], Any] | None:
    """Parse the request bytes and check `limits`; a refusal travels on as `_Refused`."""
    if deserializer is None:
        return None

    def deserialize(data: bytes) -> Any:
        try:
            request = deserializer(data)
        except Exception as error:  # noqa: BLE001  # any parse failure is the caller's
            return _Refused(
                MalformedRequestError(f"the request is not a valid message for {method}: {error}")
            )
        if limits.could_exceed(len(data)):
            violations = limits.violations_of(request)
            if violations:
                return _Refused(InvalidArgumentError(violations))
        return request

    return deserialize


class ErrorStatusInterceptor(CallInterceptor):
    """Ends every failed call with the status `errors.status_for` picks.

    Servicer methods simply raise; nothing else calls `context.abort`. An abort
    made by a library servicer (health's NOT_FOUND, say) passes through as is.
    Request bytes that do not parse (gRPC's own handling would report UNKNOWN),
    and requests past the bounds in `limits`, are INVALID_ARGUMENT.
    """

    @contextlib.asynccontextmanager
    async def scope(
        self, method: str, request: Any, context: Context[Any, Any]
    ) -> AsyncIterator[None]:
        try:
            if isinstance(request, _Refused):
                raise request.error
            yield
        except grpc.aio.AbortError:
            raise
        except Exception as error:  # noqa: BLE001  # the rules map every exception to a status
            await context.abort_with_status(status_for(error))

    def _around_coroutine(
        self, method: str, behavior: UnaryBehavior[Req, Resp]
    ) -> UnaryBehavior[Req, Resp]:
        """`scope` for a unary call, as a plain try: no generator-based scope per call."""

        async def call(request: Req, context: Context[Req, Resp]) -> Resp:
            try:
                if isinstance(request, _Refused):
                    raise request.error
                return await behavior(request, context)
            except grpc.aio.AbortError:
                raise
            except Exception as error:  # noqa: BLE001  # the rules map every exception to a status
                await context.abort_with_status(status_for(error))
            raise AssertionError("not reached: abort_with_status raises")

        return call

    def request_deserializer(
        self, method: str, deserializer: Callable[[bytes], Any] | None
    ) -> Callable[[bytes], Any] | None:
        return _decode_within_limits(method, deserializer)

    def response_serializer(
        self, serializer: Callable[[Any], bytes] | None
    ) -> Callable[[Any], bytes] | None:
        """Responses a servicer returns already encoded (`wire.Encoded`) pass through."""
        return wire.passing_encoded(serializer)
