"""TLS (and mutual TLS) credentials, and bearer-token authentication.

Tokens are compared in constant time against every accepted token, so the
time an answer takes says nothing about how close a guess was. Tokens never
reach a log: a rejected call is logged with its method and peer only.
"""

from __future__ import annotations

import hmac
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio

from flowservice_server.errors import UnauthenticatedError, status_for
from flowservice_server.interceptors import HandlerCache

if TYPE_CHECKING:
    from collections.abc import Iterable

    from flowservice_server.config import TlsSettings
    from flowservice_server.interceptors import Continuation, Req, Resp

log = logging.getLogger(__name__)

#: Services a load balancer or grpcurl may reach without a token, when allowed.
OPEN_SERVICES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


def server_credentials(tls: TlsSettings) -> grpc.ServerCredentials:
    """TLS credentials; with a client CA, clients must present a certificate it signed."""
    chain = Path(tls.cert_file).read_bytes()
    key = Path(tls.key_file).read_bytes()
    client_ca = Path(tls.client_ca_file).read_bytes() if tls.client_ca_file else None
    return grpc.ssl_server_credentials(
        [(key, chain)], root_certificates=client_ca, require_client_auth=client_ca is not None
    )


class TokenAuthInterceptor(grpc.aio.ServerInterceptor):
    """Refuses calls without an accepted `authorization: Bearer <token>` with UNAUTHENTICATED."""

    def __init__(self, tokens: Iterable[str], *, open_health_and_reflection: bool) -> None:
        self._tokens = tuple(token.encode() for token in tokens)
        self._open = OPEN_SERVICES if open_health_and_reflection else ()
        self._refusing = HandlerCache()

    def accepts(self, metadata: Any) -> bool:
        presented = b""
        for key, value in metadata or ():
            if key == "authorization" and isinstance(value, str):
                scheme, _, credential = value.partition(" ")
                if scheme.lower() == "bearer":
                    presented = credential.strip().encode()
        # Compare with every token, whatever matches, so timing reveals nothing.
        matched = False
        for accepted in self._tokens:
            matched |= hmac.compare_digest(presented, accepted)
        return matched and bool(presented)

    async def intercept_service(
        self,
        continuation: Continuation[Req, Resp],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Req, Resp] | None:
        method = handler_call_details.method
        handler = await continuation(handler_call_details)
        if (
            handler is None
            or method.startswith(self._open)
            or self.accepts(handler_call_details.invocation_metadata)
        ):
            return handler
        return self._refusing.get(handler, lambda inner: _refusing(inner, method))


def _refusing(
    handler: grpc.RpcMethodHandler[Req, Resp], method: str
) -> grpc.RpcMethodHandler[Req, Resp]:
    """A handler of the same shape that ends the call with UNAUTHENTICATED."""
    status = status_for(
        UnauthenticatedError(
            "missing or invalid bearer token: send metadata 'authorization: Bearer <token>'"
        )
    )

    async def refuse(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        log.warning("unauthenticated call to %s from %s", method, context.peer())
        await context.abort_with_status(status)

    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(
            refuse,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    if handler.stream_stream is not None:
        return grpc.stream_stream_rpc_method_handler(
            refuse,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(
            refuse,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    return grpc.stream_unary_rpc_method_handler(
        refuse,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )
