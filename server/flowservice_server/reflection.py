"""Server reflection, so that grpcurl and friends need no .proto files.

grpcio-reflection serves only v1alpha, and cannot resolve a method's name
(`describe flowservice.v1.FlowService.UpdateFlow`; grpc/grpc#34743). This
servicer answers a method's name with its service's file, as reflection
servers in other languages do, and is also registered under the v1 name:
v1's messages are identical on the wire (v1 is not advertised, its
descriptor is not in the pool).
"""

from __future__ import annotations

from typing import Any

import grpc
import grpc.aio
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc
from grpc_reflection.v1alpha._async import ReflectionServicer


class MethodAwareReflectionServicer(ReflectionServicer):  # type: ignore[misc]  # untyped base
    """Reflection that also finds the file of `package.Service.Method`."""

    def _file_containing_symbol(
        self, request: reflection_pb2.ServerReflectionRequest, fully_qualified_name: str
    ) -> reflection_pb2.ServerReflectionResponse:
        response: reflection_pb2.ServerReflectionResponse = super()._file_containing_symbol(
            request, fully_qualified_name
        )
        if not response.HasField("error_response"):
            return response
        service, _, method = fully_qualified_name.rpartition(".")
        pool: Any = self._pool
        try:
            pool.FindServiceByName(service).methods_by_name[method]
        except KeyError:
            return response
        found: reflection_pb2.ServerReflectionResponse = super()._file_containing_symbol(
            request, service
        )
        return found


def enable(server: grpc.aio.Server, service_names: tuple[str, ...]) -> None:
    """Serve reflection of `service_names` (plus reflection itself) under v1alpha and v1."""
    names = (*service_names, reflection.SERVICE_NAME)
    servicer = MethodAwareReflectionServicer(names)
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, server)
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "grpc.reflection.v1.ServerReflection",
                {
                    "ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
                        servicer.ServerReflectionInfo,
                        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
                        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
                    )
                },
            ),
        )
    )
