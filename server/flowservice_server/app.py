"""The running server: FlowService, health and reflection on one grpc.aio server.

`start_server` binds (port 0 picks a free one), opens and migrates the
database, and reports SERVING only when all of that worked. `serve` runs
until SIGTERM or SIGINT, then drains: health goes NOT_SERVING first, calls in
flight get the grace period to finish, and the database closes last.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2

from flowservice.v1 import flow_service_pb2, flow_service_pb2_grpc
from flowservice_server.db.engine import Database
from flowservice_server.interceptors import ErrorStatusInterceptor
from flowservice_server.servicer import FlowServiceServicer

if TYPE_CHECKING:
    from flowservice_server.config import Settings

log = logging.getLogger(__name__)

SERVICE_NAME = flow_service_pb2.DESCRIPTOR.services_by_name["FlowService"].full_name
HEALTH_SERVICE_NAME = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
GRACE_SECONDS = 10.0


class StartupError(Exception):
    """The server could not start; the message says why (no traceback needed)."""


@dataclass
class RunningServer:
    server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer
    database: Database
    watcher: asyncio.Task[None]

    async def stop(self, grace: float | None = GRACE_SECONDS) -> None:
        """Stop routing (NOT_SERVING), drain calls in flight for `grace` seconds, close."""
        self.watcher.cancel()
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)
        await self.database.close()


async def _set_health(servicer: health.aio.HealthServicer, serving: bool) -> None:
    status = (
        health_pb2.HealthCheckResponse.SERVING
        if serving
        else health_pb2.HealthCheckResponse.NOT_SERVING
    )
    for service in ("", SERVICE_NAME):
        await servicer.set(service, status)


async def watch_database(
    database: Database, servicer: health.aio.HealthServicer, interval: float
) -> None:
    """Report NOT_SERVING while the database cannot be reached, SERVING again once it can.

    Load balancers and meshes then route around this replica during an
    outage; the pool reconnects by itself when the database is back.
    """
    serving = True
    while True:
        await asyncio.sleep(interval)
        try:
            await asyncio.wait_for(database.ping(), timeout=max(interval, 1.0))
            reachable = True
        except Exception as error:  # noqa: BLE001  # any failure to answer is "unreachable"
            reachable = False
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        if reachable != serving:
            serving = reachable
            await _set_health(servicer, serving)
            if serving:
                log.info("database reachable again: SERVING")
            else:
                log.warning("database unreachable (%s): NOT_SERVING", reason)


async def start_server(settings: Settings) -> RunningServer:
    database = await Database.open(settings.database, migrate=settings.database.mode == "managed")
    try:
        server = grpc.aio.server(interceptors=[ErrorStatusInterceptor()])
        flow_service_pb2_grpc.add_FlowServiceServicer_to_server(
            FlowServiceServicer(database), server
        )
        health_servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        _enable_reflection(server)
        port = _bind(server, settings.address)
        await server.start()
        await _set_health(health_servicer, serving=True)
    except BaseException:
        await database.close()
        raise
    watcher = asyncio.create_task(
        watch_database(database, health_servicer, settings.health_check_interval)
    )
    return RunningServer(
        server=server, port=port, health=health_servicer, database=database, watcher=watcher
    )


def _bind(server: grpc.aio.Server, address: str) -> int:
    try:
        return server.add_insecure_port(address)
    except RuntimeError as error:
        raise StartupError(f"cannot listen on {address}: {error}") from None


def _enable_reflection(server: grpc.aio.Server) -> None:
    """Server reflection, so grpcurl and friends need no .proto files.

    grpcio-reflection serves only v1alpha; v1's messages are identical on the
    wire, so the same servicer also answers under the v1 name (not advertised:
    its descriptor is not in the pool).
    """
    names = (SERVICE_NAME, HEALTH_SERVICE_NAME, reflection.SERVICE_NAME)
    reflection.enable_server_reflection(names, server)
    servicer: Any = reflection.aio.ReflectionServicer(names)
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


async def serve(settings: Settings) -> None:
    """Run until SIGTERM or SIGINT, then shut down gracefully."""
    # Handlers first: a signal that arrives while starting still stops us cleanly.
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    running = await start_server(settings)
    host = settings.address.rpartition(":")[0]
    log.info(
        "FlowService listening on %s:%d (%s database %s)",
        host,
        running.port,
        settings.database.mode,
        settings.database.url_for_logs,
    )
    await stopping.wait()
    log.info("shutting down: draining calls for up to %.0fs", GRACE_SECONDS)
    await running.stop(GRACE_SECONDS)
    log.info("stopped")
