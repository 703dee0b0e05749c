"""Server reflection (grpcurl needs no .proto files) and grpc.health.v1."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import grpc
import grpc.aio
import pytest
from google.protobuf import descriptor_pool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

if TYPE_CHECKING:
    from flowservice_server.app import RunningServer

SERVICE = "flowservice.v1.FlowService"


def _reflect(port: int) -> tuple[list[str], list[str]]:
    """Services, and FlowService's methods, as a reflection client discovers them."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        services = sorted(database.get_services())
        pool = descriptor_pool.DescriptorPool(database)
        methods = [m.name for m in pool.FindServiceByName(SERVICE).methods]
    return services, methods


async def test_reflection_lists_the_services_and_describes_flowservice(
    any_backend_server: RunningServer,
) -> None:
    services, methods = await asyncio.to_thread(_reflect, any_backend_server.port)
    assert services == [
        "flowservice.v1.FlowService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    ]
    assert methods == [
        "CreateFlow",
        "ReadFlow",
        "ReadFlowByName",
        "ReadFlows",
        "CountFlows",
        "UpdateFlow",
        "DeleteFlow",
        "StreamFlows",
        "BatchGetFlows",
        "BatchCreateFlows",
        "WatchFlows",
    ]


@pytest.mark.parametrize("version", ["v1alpha", "v1"])
async def test_reflection_answers_under_both_protocol_versions(
    any_backend_server: RunningServer, version: str
) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{any_backend_server.port}") as channel:
        info = channel.stream_stream(
            f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo",
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
        )
        request = reflection_pb2.ServerReflectionRequest(file_containing_symbol=SERVICE)
        responses = [response async for response in info(iter([request]))]
    (response,) = responses
    assert response.file_descriptor_response.file_descriptor_proto


async def _check(port: int, service: str) -> int:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=service))
        status: int = reply.status
        return status


@pytest.mark.parametrize("service", ["", SERVICE])
async def test_health_is_serving_once_started(
    any_backend_server: RunningServer, service: str
) -> None:
    assert await _check(any_backend_server.port, service) == health_pb2.HealthCheckResponse.SERVING


async def test_health_of_an_unknown_service_is_not_found(any_backend_server: RunningServer) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await _check(any_backend_server.port, "no.such.Service")
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND


async def test_health_goes_not_serving_when_shutdown_begins(
    any_backend_server: RunningServer,
) -> None:
    await any_backend_server.health.enter_graceful_shutdown()
    for service in ("", SERVICE):
        assert (
            await _check(any_backend_server.port, service)
            == health_pb2.HealthCheckResponse.NOT_SERVING
        )
