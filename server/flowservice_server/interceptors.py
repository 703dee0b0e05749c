"""Cross-cutting behaviour of every RPC, as grpc.aio server interceptors."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import grpc
import grpc.aio

from flowservice_server.errors import MalformedRequestError, status_for

Req = TypeVar("Req")
Resp = TypeVar("Resp")
Continuation = Callable[
    [grpc.HandlerCallDetails], Awaitable["grpc.RpcMethodHandler[Req, Resp] | None"]
]
AsyncBehavior = Callable[[Req, "grpc.aio.ServicerContext[Req, Resp]"], Awaitable[Resp]]


def unary_behavior(
    handler: grpc.RpcMethodHandler[Req, Resp] | None,
) -> AsyncBehavior[Req, Resp] | None:
    """A handler's unary-unary behaviour (a coroutine function on an aio server), if any."""
    if handler is None or handler.unary_unary is None:
        return None
    return cast("AsyncBehavior[Req, Resp]", handler.unary_unary)  # the stub says sync


def with_behavior(
    handler: grpc.RpcMethodHandler[Req, Resp],
    behavior: AsyncBehavior[Req, Resp],
    request_deserializer: Callable[[bytes], Any] | None = None,
) -> grpc.RpcMethodHandler[Req, Resp]:
    """The same unary-unary handler with another behaviour (and deserializer)."""
    return grpc.unary_unary_rpc_method_handler(
        behavior,
        request_deserializer=request_deserializer or handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


@dataclass(frozen=True)
class _Undecodable:
    """Stands in for a request whose bytes did not parse, so the call can fail properly."""

    error: Exception


def _tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None

    def deserialize(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception as error:  # noqa: BLE001  # any parse failure is the caller's
            return _Undecodable(error)

    return deserialize


class ErrorStatusInterceptor(grpc.aio.ServerInterceptor):
    """Ends every failed unary call with the status `errors.status_for` picks.

    Servicer methods simply raise; nothing else calls `context.abort`. An abort
    made by a library servicer (health's NOT_FOUND, say) passes through as is.
    Request bytes that do not parse are INVALID_ARGUMENT (gRPC's own handling
    would report UNKNOWN).
    """

    async def intercept_service(
        self,
        continuation: Continuation[Req, Resp],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Req, Resp] | None:
        handler = await continuation(handler_call_details)
        behavior = unary_behavior(handler)
        if handler is None or behavior is None:
            return handler
        method = handler_call_details.method

        async def guarded(request: Req, context: grpc.aio.ServicerContext[Req, Resp]) -> Resp:
            try:
                if isinstance(request, _Undecodable):
                    raise MalformedRequestError(
                        f"the request is not a valid message for {method}: {request.error}"
                    )
                return await behavior(request, context)
            except grpc.aio.AbortError:
                raise
            except Exception as error:  # the table maps every exception
                await context.abort_with_status(status_for(error))
                raise  # not reached: abort_with_status raises AbortError

        return with_behavior(handler, guarded, _tolerant(handler.request_deserializer))
