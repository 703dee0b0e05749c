"""Cross-cutting behaviour of every RPC, as grpc.aio server interceptors."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import grpc
import grpc.aio

from flowservice_server import limits
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
AsyncBehavior = Callable[[Req, "grpc.aio.ServicerContext[Req, Resp]"], Awaitable[Resp]]


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


class UnaryInterceptor(grpc.aio.ServerInterceptor):
    """Wraps the behaviour of every unary-unary method, once per method.

    Subclasses say how in `wrap`; other kinds of method pass through as they are.
    """

    def __init__(self) -> None:
        self._cache = HandlerCache()

    async def intercept_service(
        self,
        continuation: Continuation[Req, Resp],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Req, Resp] | None:
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        method = handler_call_details.method
        return self._cache.get(handler, lambda inner: self._wrapped(inner, method))

    def _wrapped(
        self, handler: grpc.RpcMethodHandler[Req, Resp], method: str
    ) -> grpc.RpcMethodHandler[Req, Resp]:
        behavior = cast("AsyncBehavior[Req, Resp]", handler.unary_unary)  # the stub says sync
        return grpc.unary_unary_rpc_method_handler(
            self.wrap(method, behavior),
            request_deserializer=self.request_deserializer(method, handler.request_deserializer),
            response_serializer=handler.response_serializer,
        )

    def wrap(self, method: str, behavior: AsyncBehavior[Req, Resp]) -> AsyncBehavior[Req, Resp]:
        raise NotImplementedError

    def request_deserializer(
        self, method: str, deserializer: Callable[[bytes], Any] | None
    ) -> Callable[[bytes], Any] | None:
        """The deserializer the wrapped handler uses: the same, unless overridden."""
        return deserializer


@dataclass(frozen=True)
class _Refused:
    """Stands in for a request refused as it was decoded, so the call can fail properly."""

    error: FlowServiceError


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
        violations = limits.violations_of(request)
        if violations:
            return _Refused(InvalidArgumentError(violations))
        return request

    return deserialize


class ErrorStatusInterceptor(UnaryInterceptor):
    """Ends every failed unary call with the status `errors.status_for` picks.

    Servicer methods simply raise; nothing else calls `context.abort`. An abort
    made by a library servicer (health's NOT_FOUND, say) passes through as is.
    Request bytes that do not parse (gRPC's own handling would report UNKNOWN),
    and requests past the bounds in `limits`, are INVALID_ARGUMENT.
    """

    def wrap(self, method: str, behavior: AsyncBehavior[Req, Resp]) -> AsyncBehavior[Req, Resp]:
        async def guarded(request: Req, context: grpc.aio.ServicerContext[Req, Resp]) -> Resp:
            try:
                if isinstance(request, _Refused):
                    raise request.error
                return await behavior(request, context)
            except grpc.aio.AbortError:
                raise
            except Exception as error:  # the table maps every exception
                await context.abort_with_status(status_for(error))
                raise  # not reached: abort_with_status raises AbortError

        return guarded

    def request_deserializer(
        self, method: str, deserializer: Callable[[bytes], Any] | None
    ) -> Callable[[bytes], Any] | None:
        return _decode_within_limits(method, deserializer)
