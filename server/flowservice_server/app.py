"""The running server: FlowService, health and reflection on one grpc.aio server.

`start_server` opens (and, in the managed mode, migrates) the database, binds
(port 0 picks a free one) and reports SERVING only when all of that worked.
`serve` runs until SIGTERM or SIGINT, then drains: health goes NOT_SERVING
first, new calls are refused, calls in flight get the grace period to finish,
and the database closes last. Several worker processes are the supervisor's
job (`supervisor.py`); each runs this.
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
from sqlalchemy.exc import DBAPIError

from flowservice.v1 import flow_service_pb2, flow_service_pb2_grpc
from flowservice_server import consistency, observability, reflection, security
from flowservice_server.changefeed import ChangeFeed
from flowservice_server.convert import FlowMemo
from flowservice_server.db.factory import open_database
from flowservice_server.db.migrate import ForeignSchemaError, MissingSchemaError
from flowservice_server.db.replicas import ReplicatedDatabase, primary_of
from flowservice_server.http_gateway import HttpGateway, methods_of
from flowservice_server.http_server import HttpListener, HttpStartupError
from flowservice_server.inprocess import HandlerRegistry, InProcessCalls
from flowservice_server.interceptors import ErrorStatusInterceptor
from flowservice_server.servicer import FlowServiceServicer

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from wsgiref.simple_server import WSGIServer

    from flowservice_server.config import GrpcSettings, Settings
    from flowservice_server.db.engine import Database

log = logging.getLogger(__name__)

SERVICE_NAME = flow_service_pb2.DESCRIPTOR.services_by_name["FlowService"].full_name
HEALTH_SERVICE_NAME = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
#: A health entry for liveness probes: SERVING from start to shutdown, whatever the
#: database does. Restarting a server cannot bring its database back, so a
#: liveness probe must not follow the entries that do ("" and SERVICE_NAME).
LIVENESS_NAME = "liveness"


class StartupError(Exception):
    """The server could not start; the message says why (no traceback needed)."""


#: What can keep the server from starting; each is told in one line, no traceback.
STARTUP_FAILURES = (StartupError, ForeignSchemaError, MissingSchemaError, DBAPIError, OSError)


def describe_startup_failure(error: BaseException, settings: Settings) -> str:
    """One line for the log: the reason, with no password and no traceback."""
    if isinstance(error, DBAPIError | OSError):  # the database is unreachable or refused us
        reason = error.orig if isinstance(error, DBAPIError) and error.orig else error
        return f"database {settings.database.url_for_logs}: {str(reason).splitlines()[0]}"
    return str(error)


@dataclass
class RunningServer:
    server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer
    database: Database
    watcher: asyncio.Task[None]
    metrics_server: WSGIServer | None = None
    changefeed: ChangeFeed | None = None
    http: HttpListener | None = None

    @property
    def metrics_port(self) -> int | None:
        return self.metrics_server.server_port if self.metrics_server else None

    @property
    def http_port(self) -> int | None:
        return self.http.port if self.http else None

    async def stop(self, grace: float | None) -> None:
        """Stop routing (NOT_SERVING), refuse new calls, drain the rest for `grace` s, close."""
        self.watcher.cancel()
        await self.health.enter_graceful_shutdown()
        if self.changefeed is not None:  # watches never end by themselves: end them now
            await _bounded(self.changefeed.close(), "closing the change feed")
        # Both listeners drain at once: HTTP calls are the same handlers' calls.
        listeners = asyncio.gather(
            self.server.stop(grace), *([self.http.stop(grace)] if self.http else [])
        )
        await _bounded(listeners, "stopping the listeners", (grace or 0.0) + CLOSE_STEP_SECONDS)
        await _bounded(self.database.close(), "closing the database")
        if self.metrics_server is not None:
            self.metrics_server.shutdown()
            self.metrics_server.server_close()


#: How long a step of closing (past the grace period) may take: a shutdown must
#: end, so a step that overruns is logged by name and left behind.
CLOSE_STEP_SECONDS = 10.0


async def _bounded(step: Awaitable[Any], what: str, seconds: float = CLOSE_STEP_SECONDS) -> None:
    task = asyncio.ensure_future(step)
    done, _ = await asyncio.wait({task}, timeout=seconds)
    if not done:
        log.warning("shutting down: %s took more than %gs; going on without it", what, seconds)
        task.cancel()
        return
    task.result()


def grpc_options(settings: GrpcSettings, *, reuse_port: bool) -> list[tuple[str, Any]]:
    """The transport's channel arguments (grpc/doc/keepalive.md) from the settings."""

    def ms(seconds: float) -> int:
        return int(seconds * 1000)

    options: list[tuple[str, Any]] = [
        ("grpc.keepalive_time_ms", ms(settings.keepalive_time)),
        ("grpc.keepalive_timeout_ms", ms(settings.keepalive_timeout)),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", ms(settings.min_ping_interval)),
        ("grpc.http2.max_ping_strikes", 2),
        ("grpc.max_receive_message_length", settings.max_receive_message_size),
        ("grpc.max_concurrent_streams", settings.max_concurrent_streams),
        # Count only the streams open on the connection, as the client does.
        # grpc core otherwise also counts calls that have ended on the wire but
        # that this process has not released yet (grpc.aio frees them a few
        # event-loop turns later), and refuses new streams (REFUSED_STREAM, seen
        # as UNAVAILABLE) that a client within the advertised limit opened.
        ("grpc.http.overload_protection", 0),
        # Without SO_REUSEPORT a second server on a busy port fails instead of
        # silently sharing it; workers of one supervisor share on purpose.
        ("grpc.so_reuseport", 1 if reuse_port else 0),
    ]
    if settings.max_connection_age > 0:
        options += [
            ("grpc.max_connection_age_ms", ms(settings.max_connection_age)),
            ("grpc.max_connection_age_grace_ms", ms(settings.max_connection_age_grace)),
        ]
    return options


def interceptors(settings: Settings, metrics: observability.Metrics | None) -> list[Any]:
    """Outermost first: observe every call (even refused ones), authenticate, map errors."""
    chain: list[Any] = []
    tracing = observability.Tracing() if settings.tracing == "opentelemetry" else None
    if settings.access_log or metrics is not None or tracing is not None:
        chain.append(
            observability.ObservabilityInterceptor(
                access_log_enabled=settings.access_log, metrics=metrics, tracing=tracing
            )
        )
    tokens = settings.auth.accepted_tokens()
    if tokens:
        chain.append(
            security.TokenAuthInterceptor(
                tokens, open_health_and_reflection=settings.auth.open_health_and_reflection
            )
        )
    chain.append(ErrorStatusInterceptor())
    chain.append(consistency.ConsistencyInterceptor())
    return chain


async def start_server(settings: Settings, *, reuse_port: bool = False) -> RunningServer:
    """Open the database, then serve on `settings.address`; raises StartupError if it cannot."""
    database = await open_database(settings.database, migrate=settings.database.mode == "managed")
    metrics_server: WSGIServer | None = None
    http: HttpListener | None = None
    try:
        metrics = observability.Metrics() if settings.metrics_address else None
        try:
            chain = interceptors(settings, metrics)
        except RuntimeError as error:  # an optional dependency is missing
            raise StartupError(str(error)) from None
        server = grpc.aio.server(
            interceptors=chain, options=grpc_options(settings.grpc, reuse_port=reuse_port)
        )
        # The change feed LISTENs and must agree with its resume positions: primary only.
        changefeed = ChangeFeed.for_settings(primary_of(database), settings, metrics)
        memo = FlowMemo(settings.response_memo_size) if settings.response_memo_size else None
        # Through a registry that passes the handlers on and keeps them for HTTP.
        registry = HandlerRegistry(server)
        flow_service_pb2_grpc.add_FlowServiceServicer_to_server(
            FlowServiceServicer(database, changefeed, memo),
            registry,  # type: ignore[arg-type]  # it stands in for grpc.aio.Server here
        )
        health_servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        reflection.enable(server, (SERVICE_NAME, HEALTH_SERVICE_NAME))
        port = _bind(server, settings)
        if metrics is not None and not observability.in_worker_process():
            metrics_server = observability.serve_metrics(settings.metrics_address, metrics)
        if settings.http_address:
            http = await _start_http(settings, chain, registry, reuse_port=reuse_port)
        await server.start()
        await _set_health(health_servicer, serving=True)
        await health_servicer.set(LIVENESS_NAME, health_pb2.HealthCheckResponse.SERVING)
    except BaseException:
        if http is not None:
            await http.stop(0)
        await database.close()
        if metrics_server is not None:
            metrics_server.server_close()
        raise
    if isinstance(database, ReplicatedDatabase):
        database.observer = metrics
        database.start()
    watcher = asyncio.create_task(
        watch_database(database, health_servicer, settings.health_check_interval, metrics)
    )
    changefeed.start()
    return RunningServer(
        server, port, health_servicer, database, watcher, metrics_server, changefeed, http
    )


async def _start_http(
    settings: Settings, chain: list[Any], registry: HandlerRegistry, *, reuse_port: bool
) -> HttpListener:
    """The HTTP listener, calling the same handlers through the same interceptors."""
    gateway = HttpGateway(
        InProcessCalls(chain, registry),
        methods_of([flow_service_pb2.DESCRIPTOR.services_by_name["FlowService"]]),
        allowed_origins=settings.http_allowed_origins,
        max_request_size=settings.grpc.max_receive_message_size + 5,  # + an envelope header
    )
    try:
        return await HttpListener.start(
            gateway, settings.http_address, settings.tls, reuse_port=reuse_port
        )
    except HttpStartupError as error:
        raise StartupError(str(error)) from None


def _bind(server: grpc.aio.Server, settings: Settings) -> int:
    try:
        if settings.tls.enabled:
            credentials = security.server_credentials(settings.tls)
            return server.add_secure_port(settings.address, credentials)
        return server.add_insecure_port(settings.address)
    except RuntimeError as error:
        raise StartupError(f"cannot listen on {settings.address}: {error}") from None


async def _set_health(servicer: health.aio.HealthServicer, serving: bool) -> None:
    status = (
        health_pb2.HealthCheckResponse.SERVING
        if serving
        else health_pb2.HealthCheckResponse.NOT_SERVING
    )
    for service in ("", SERVICE_NAME):
        await servicer.set(service, status)


async def watch_database(
    database: Database,
    servicer: health.aio.HealthServicer,
    interval: float,
    metrics: observability.Metrics | None = None,
) -> None:
    """Report NOT_SERVING while the database cannot be reached, SERVING again once it can.

    Load balancers and meshes then route around this replica during an
    outage; the pool reconnects by itself when the database is back. Each
    round also samples the connection pool for the metrics.
    """
    serving = True
    while True:
        await asyncio.sleep(interval)
        if metrics is not None:
            metrics.sample_pool(database.pool)
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


async def serve(
    settings: Settings, *, reuse_port: bool = False, ready: Callable[[int], None] | None = None
) -> None:
    """Run until SIGTERM or SIGINT, then shut down gracefully.

    `ready` is told the port once the server listens (the supervisor waits for
    it); without it, the listening address is logged here.
    """
    # Handlers first: a signal that arrives while starting still stops us cleanly.
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    running = await start_server(settings, reuse_port=reuse_port)
    if ready is not None:
        ready(running.port)
    else:
        log_listening(settings, running.port, workers=1)
        if running.http_port is not None:
            log_http_listening(settings, running.http_port)
        if running.metrics_port is not None:
            log.info("metrics on http://%s:%d/metrics", *_metrics_host_port(settings, running))
    await stopping.wait()
    log.info("shutting down: draining calls for up to %gs", settings.grace_period)
    await running.stop(settings.grace_period)
    log.info("stopped")


def log_listening(settings: Settings, port: int, *, workers: int) -> None:
    host = settings.address.rpartition(":")[0]
    log.info(
        "FlowService listening on %s:%d (%s, %d worker%s, %s database %s)",
        host,
        port,
        "TLS" if settings.tls.enabled else "plaintext",
        workers,
        "" if workers == 1 else "s",
        settings.database.mode,
        settings.database.url_for_logs,
    )
    for standby in settings.database.read_urls_for_logs:
        log.info("reads go to the hot standby %s while it keeps up", standby)


def log_http_listening(settings: Settings, port: int) -> None:
    scheme = "https" if settings.tls.enabled else "http"
    host = settings.http_address.rpartition(":")[0]
    log.info("Connect and gRPC-Web on %s://%s:%d", scheme, host, port)


def _metrics_host_port(settings: Settings, running: RunningServer) -> tuple[str, int]:
    return settings.metrics_address.rpartition(":")[0], running.metrics_port or 0
