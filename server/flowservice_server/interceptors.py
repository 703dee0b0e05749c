"""Cross-cutting behaviour of every RPC, as grpc.aio server interceptors."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar, cast

import grpc
import grpc.aio

from flowservice_server.errors import status_for

Req = TypeVar("Req")
Resp = TypeVar("Resp")
Continuation = Callable[
    [grpc.HandlerCallDetails], Awaitable["grpc.RpcMethodHandler[Req, Resp] | None"]
]
AsyncBehavior = Callable[[Req, "grpc.aio.ServicerContext[Req, Resp]"], Awaitable[Resp]]


class ErrorStatusInterceptor(grpc.aio.ServerInterceptor):
    """Ends every failed unary call with the status `errors.status_for` picks.

    Servicer methods simply raise; nothing else calls `context.abort`. An abort
    made by a library servicer (health's NOT_FOUND, say) passes through as is.
    """

    async def intercept_service(
        self,
        continuation: Continuation[Req, Resp],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Req, Resp] | None:
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        # On an aio server the behaviour is a coroutine function (the stub says sync).
        behavior = cast("AsyncBehavior[Req, Resp]", handler.unary_unary)

        async def guarded(request: Req, context: grpc.aio.ServicerContext[Req, Resp]) -> Resp:
            try:
                return await behavior(request, context)
            except grpc.aio.AbortError:
                raise
            except Exception as error:  # the table maps every exception
                await context.abort_with_status(status_for(error))
                raise  # not reached: abort_with_status raises AbortError

        return grpc.unary_unary_rpc_method_handler(
            guarded,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
