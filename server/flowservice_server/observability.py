"""Logs, metrics and traces: one access-log line, one metric sample and one span per call.

- Logging goes to stderr as text or as one JSON object per line; the access
  log (logger `flowservice.access`, level INFO) says method, status, duration
  and peer of every call, and never what was asked (no names, no tokens).
- Metrics use the standard gRPC server names and labels (`grpc_server_*`,
  see `Metrics`) and prometheus_client with a registry per server (several servers
  may live in one test process). With several worker processes the values go
  through prometheus_client's multiprocess files and the supervisor serves
  their sum (PROMETHEUS_MULTIPROC_DIR).
- Tracing, when asked for, uses the OpenTelemetry API only: spans are no-ops
  until the operator configures an SDK and exporter.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

import grpc
import grpc.aio
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client import multiprocess as prometheus_multiprocess

from flowservice_server.interceptors import CallInterceptor

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from wsgiref.simple_server import WSGIServer

    from sqlalchemy.pool import Pool

access_log = logging.getLogger("flowservice.access")

MULTIPROCESS_DIRECTORY = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


# --- logging -----------------------------------------------------------------------


class JsonFormatter(logging.Formatter):
    """One JSON object per line; an access-log record adds its fields at the top level."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
            **getattr(record, "fields", {}),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: str, log_format: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter()
        if log_format == "json"
        else logging.Formatter("%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Alembic narrates its environment at INFO; `db.migrate` logs what changed.
    logging.getLogger("alembic").setLevel(max(root.level, logging.WARNING))


# --- metrics -----------------------------------------------------------------------


#: The labels of the standard gRPC server metrics (go-grpc-prometheus, and the
#: dashboards built on it): service, method and type of a call.
CALL_LABELS = ("grpc_service", "grpc_method", "grpc_type")


def call_labels(method: str, streaming: bool) -> tuple[str, str, str]:
    """`/pkg.Service/Method` as the standard labels; `grpc_type` unary or server_stream."""
    service, _, name = method.lstrip("/").partition("/")
    return service, name, "server_stream" if streaming else "unary"


class Metrics:
    """Calls under the standard gRPC server metric names; database pool usage; and watches.

    `grpc_server_started_total`, `grpc_server_handled_total` (with
    `grpc_code`) and the `grpc_server_handling_seconds` histogram carry the
    names and labels that go-grpc-prometheus gives them, so the usual gRPC
    dashboards and alerts read FlowService as they read any gRPC server.
    FlowService's own metrics keep the `flowservice_` prefix: database pool
    usage, watches, and reads by database target with each standby's state.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.started = Counter(
            "grpc_server_started",
            "Total number of RPCs started on the server.",
            CALL_LABELS,
            registry=self.registry,
        )
        self.handled = Counter(
            "grpc_server_handled",
            "Total number of RPCs completed on the server, regardless of success or failure.",
            (*CALL_LABELS, "grpc_code"),
            registry=self.registry,
        )
        self.handling = Histogram(
            "grpc_server_handling_seconds",
            "Time from receiving a call to sending its status (a stream: its whole life).",
            CALL_LABELS,
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.pool = Gauge(
            "flowservice_db_pool_connections",
            "Database connections by state (sampled every health-check interval).",
            ["state"],
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        # WatchFlows (changefeed.py).
        self.watchers = Gauge(
            "flowservice_watchers",
            "WatchFlows calls open now.",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.watch_lag = Histogram(
            "flowservice_watch_lag_seconds",
            "Time from a flow change's commit to its WatchFlows event being handed to gRPC.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.watch_events = Counter(
            "flowservice_watch_events",
            "WatchFlows change events sent, by kind (created, updated, deleted).",
            ["kind"],
            registry=self.registry,
        )

        # Read routing to hot standbys (db/replicas.py).
        self.database_reads = Counter(
            "flowservice_db_reads",
            "Reads and streams served, by database target (primary, or a standby's host:port/db).",
            ["target"],
            registry=self.registry,
        )
        self.replica_lag = Gauge(
            "flowservice_db_replica_lag_seconds",
            "How far each hot standby's replay is behind, as last probed (+Inf: never reached).",
            ["target"],
            registry=self.registry,
            multiprocess_mode="livemax",
        )
        self.replica_up = Gauge(
            "flowservice_db_replica_up",
            "1 while a hot standby answers its probes and is in recovery, else 0.",
            ["target"],
            registry=self.registry,
            multiprocess_mode="livemin",
        )

    def call_started(self, labels: tuple[str, str, str]) -> None:
        self.started.labels(*labels).inc()

    def call_handled(self, labels: tuple[str, str, str], code: str, seconds: float) -> None:
        self.handled.labels(*labels, code).inc()
        self.handling.labels(*labels).observe(seconds)

    def read_served(self, target: str) -> None:
        self.database_reads.labels(target).inc()

    def replica_state(self, target: str, *, up: bool, lag: float) -> None:
        self.replica_up.labels(target).set(1 if up else 0)
        self.replica_lag.labels(target).set(lag)

    def sample_pool(self, pool: Pool) -> None:
        # QueuePool's counters; other pools (none used today) report nothing.
        status = cast("Any", pool)
        if all(hasattr(status, name) for name in ("checkedout", "checkedin", "overflow")):
            self.pool.labels("in_use").set(status.checkedout())
            self.pool.labels("idle").set(status.checkedin())
            self.pool.labels("overflow").set(max(status.overflow(), 0))


def serve_metrics(address: str, metrics: Metrics | None) -> WSGIServer:
    """Serve /metrics over HTTP; in a supervisor (metrics None) the workers' summed values."""
    host, _, port = address.rpartition(":")
    if metrics is None:
        registry = CollectorRegistry()
        prometheus_multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]  # untyped
    else:
        registry = metrics.registry
    server, _thread = start_http_server(int(port), addr=host.strip("[]"), registry=registry)
    return server


def in_worker_process() -> bool:
    return MULTIPROCESS_DIRECTORY in os.environ


# --- tracing -----------------------------------------------------------------------


class Tracing:
    """OpenTelemetry spans for calls, continuing a trace that the caller's metadata carries."""

    def __init__(self) -> None:
        try:
            from opentelemetry import propagate, trace  # noqa: PLC0415  # optional dependency
        except ImportError:
            raise RuntimeError(
                "--tracing opentelemetry needs the OpenTelemetry API: "
                "pip install 'flowservice-server[otel]'"
            ) from None
        self._trace = trace
        self._propagate = propagate
        self._tracer = trace.get_tracer("flowservice_server")

    def span(self, method: str, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        carrier = {key: value for key, value in context.invocation_metadata() or ()}
        service, _, name = method.strip("/").partition("/")
        return self._tracer.start_as_current_span(
            method.strip("/"),
            context=self._propagate.extract(carrier),
            kind=self._trace.SpanKind.SERVER,
            attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": name},
        )

    def finish(self, span: Any, code: grpc.StatusCode) -> None:
        span.set_attribute("rpc.grpc.status_code", code.value[0])
        if code is not grpc.StatusCode.OK:
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, code.name))


# --- the interceptor ----------------------------------------------------------------


def _ended_by(error: BaseException, context: grpc.aio.ServicerContext[Any, Any]) -> grpc.StatusCode:
    """The status of a call that ended with `error` (an abort, or a cancellation)."""
    if isinstance(error, grpc.aio.AbortError):
        return _final_code(context)
    expired = (context.time_remaining() or 1.0) <= 0
    return grpc.StatusCode.DEADLINE_EXCEEDED if expired else grpc.StatusCode.CANCELLED


def _final_code(context: grpc.aio.ServicerContext[Any, Any]) -> grpc.StatusCode:
    code = context.code()
    return code if isinstance(code, grpc.StatusCode) else grpc.StatusCode.UNKNOWN


class ObservabilityInterceptor(CallInterceptor):
    """Times every call, unary or streaming, and reports it to the access log, metrics and
    tracing; a stream is timed from its request to its status."""

    def __init__(
        self, *, access_log_enabled: bool, metrics: Metrics | None, tracing: Tracing | None
    ) -> None:
        super().__init__()
        self._log = access_log_enabled
        self._metrics = metrics
        self._tracing = tracing
        # Each method's metric labels, recorded when its handler is wrapped
        # (once per method): the handler says whether the method streams.
        self._labels: dict[str, tuple[str, str, str]] = {}

    def _wrapped(
        self, handler: grpc.RpcMethodHandler[Any, Any], method: str
    ) -> grpc.RpcMethodHandler[Any, Any]:
        self._labels[method] = call_labels(method, streaming=handler.unary_stream is not None)
        return super()._wrapped(handler, method)

    @contextlib.asynccontextmanager
    async def scope(
        self, method: str, request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[None]:
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        tracing = self._tracing
        # Read now: a stream cancelled by its client is closed later, by its finalizer,
        # when grpc.aio has released the call and its context must not be touched.
        peer = context.peer() if self._log else ""
        if self._metrics is not None:
            self._metrics.call_started(self._labels[method])
        with tracing.span(method, context) if tracing else contextlib.nullcontext() as span:
            try:
                yield
            except (grpc.aio.AbortError, asyncio.CancelledError) as error:
                code = _ended_by(error, context)
                raise
            except GeneratorExit:  # a stream closed by its finalizer: the client went away
                code = grpc.StatusCode.CANCELLED
                raise
            finally:
                if tracing is not None:
                    tracing.finish(span, code)
                self._report(method, code, time.perf_counter() - started, peer)

    def _around_coroutine(self, method: str, behavior: Any) -> Any:
        """Without tracing, a unary call is timed in a plain try: no scope object per call."""
        if self._tracing is not None:
            return super()._around_coroutine(method, behavior)
        report, log = self._report, self._log
        metrics, labels = self._metrics, self._labels.get(method)

        async def call(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            started = time.perf_counter()
            code = grpc.StatusCode.OK
            if metrics is not None and labels is not None:
                metrics.call_started(labels)
            try:
                return await behavior(request, context)
            except (grpc.aio.AbortError, asyncio.CancelledError) as error:
                code = _ended_by(error, context)
                raise
            finally:
                peer = context.peer() if log else ""  # the call is still alive here
                report(method, code, time.perf_counter() - started, peer)

        return call

    def _report(
        self,
        method: str,
        code: grpc.StatusCode,
        seconds: float,
        peer: str,
    ) -> None:
        if self._metrics is not None:
            self._metrics.call_handled(self._labels[method], code.name, seconds)
        if self._log and access_log.isEnabledFor(logging.INFO):
            fields = {
                "method": method,
                "code": code.name,
                "duration_ms": round(seconds * 1000, 3),
                "peer": peer,
            }
            access_log.info(
                "%(method)s %(code)s %(duration_ms).3fms %(peer)s",
                fields,
                extra={"fields": fields},
            )
