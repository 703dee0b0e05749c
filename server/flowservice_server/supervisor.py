"""Several server processes on one port (SO_REUSEPORT), so that every core serves calls.

The supervisor prepares the database once, reserves the port (port 0 is
resolved here, so that all workers share the same one), starts the workers,
waits until each listens, and then only forwards signals: on SIGTERM or
SIGINT every worker drains on its own and the supervisor exits 0 when all of
them did. If a worker dies, the others are stopped and the supervisor exits 1,
so that the orchestrator restarts the whole server.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import dataclasses
import errno
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import tempfile
import threading
from typing import TYPE_CHECKING, Any

from flowservice_server import app, observability
from flowservice_server.db.factory import open_database

if TYPE_CHECKING:
    from multiprocessing.process import BaseProcess

    from flowservice_server.config import Settings

log = logging.getLogger(__name__)

#: Beyond the grace period, how long workers get to exit before they are killed.
EXIT_MARGIN_SECONDS = 10.0


def run(settings: Settings) -> int:
    """Serve with `settings.workers` processes until a signal; the exit code."""
    asyncio.run(_prepare_database(settings))
    reservation, port = _reserve_port(settings.address)
    http_reservation, http_port = (
        _reserve_port(settings.http_address) if settings.http_address else (None, 0)
    )
    metrics_directory = tempfile.TemporaryDirectory(prefix="flowservice-metrics-")
    os.environ[observability.MULTIPROCESS_DIRECTORY] = metrics_directory.name
    host = settings.address.rpartition(":")[0]
    worker_settings = dataclasses.replace(settings, address=f"{host}:{port}")
    if settings.http_address:
        http_host = settings.http_address.rpartition(":")[0]
        worker_settings = dataclasses.replace(
            worker_settings, http_address=f"{http_host}:{http_port}"
        )
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    context = multiprocessing.get_context("spawn")
    workers: list[BaseProcess] = []
    readiness: list[multiprocessing.connection.Connection] = []
    try:
        for index in range(settings.workers):
            receiver, sender = context.Pipe(duplex=False)
            process = context.Process(
                target=_worker, args=(worker_settings, sender), name=f"flowservice-worker-{index}"
            )
            process.start()
            sender.close()
            workers.append(process)
            readiness.append(receiver)
        if not _all_ready(readiness, workers):
            _stop(workers, settings.grace_period)
            return 1
        metrics_server = (
            observability.serve_metrics(settings.metrics_address, None)
            if settings.metrics_address
            else None
        )
        app.log_listening(settings, port, workers=settings.workers)
        if http_reservation is not None:
            app.log_http_listening(settings, http_port)
        if metrics_server is not None:
            log.info("metrics on http://%s:%d/metrics", host, metrics_server.server_port)
        code = _supervise(workers, stopping, settings.grace_period)
        if metrics_server is not None:
            metrics_server.shutdown()
        return code
    finally:
        reservation.close()
        if http_reservation is not None:
            http_reservation.close()
        metrics_directory.cleanup()


async def _prepare_database(settings: Settings) -> None:
    """Migrate (or check Prefect's schema) once, before any worker starts."""
    database = await open_database(settings.database, migrate=settings.database.mode == "managed")
    await database.close()


def _reserve_port(address: str) -> tuple[socket.socket, int]:
    """Bind (without listening) so the port is ours; workers bind it too with SO_REUSEPORT.

    SO_REUSEPORT would as gladly share the port with another server's
    workers, which would then answer half the calls from their own database:
    a first bind without it fails if anyone else holds the port.
    """
    host, _, port = address.rpartition(":")
    bare = host.strip("[]")
    family = socket.AF_INET6 if ":" in bare else socket.AF_INET
    if int(port) != 0:
        with _bound(address, family, (bare, int(port)), reuse_port=False):
            pass
    reservation = _bound(address, family, (bare, int(port)), reuse_port=True)
    return reservation, reservation.getsockname()[1]


def _bound(
    address: str, family: socket.AddressFamily, where: tuple[str, int], *, reuse_port: bool
) -> socket.socket:
    bound = socket.socket(family, socket.SOCK_STREAM)
    if reuse_port:
        bound.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    else:
        # As gRPC's own listeners: an earlier server's connections in TIME_WAIT do
        # not count, while any socket bound to the port (a reservation) or
        # listening on it does.
        bound.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        bound.bind(where)
    except OSError as error:
        bound.close()
        reason = error.strerror
        if error.errno == errno.EADDRINUSE:
            reason = "the address is in use by another process (another FlowService?)"
        raise app.StartupError(f"cannot listen on {address}: {reason}") from None
    return bound


def _worker(settings: Settings, ready: multiprocessing.connection.Connection) -> None:
    """A worker process: serve with SO_REUSEPORT and say when listening."""
    _die_with_parent()
    observability.configure_logging(settings.log_level, settings.log_format)
    try:
        asyncio.run(app.serve(settings, reuse_port=True, ready=ready.send))
    except app.STARTUP_FAILURES as error:
        log.error("worker cannot start: %s", app.describe_startup_failure(error, settings))
        raise SystemExit(1) from None


def _die_with_parent() -> None:
    """Have the kernel send SIGTERM to this worker if the supervisor dies, even by SIGKILL.

    Otherwise orphaned workers would keep serving (and holding the port) with
    nobody to stop them.
    """
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM) != 0:
        log.warning("cannot ask to be stopped with the supervisor (errno %d)", ctypes.get_errno())
    if os.getppid() == 1:  # the supervisor died before the request took effect
        raise SystemExit(1)


_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _all_ready(
    readiness: list[multiprocessing.connection.Connection], workers: list[BaseProcess]
) -> bool:
    for receiver, process in zip(readiness, workers, strict=True):
        while not receiver.poll(0.1):
            if not process.is_alive():
                log.error("%s exited before listening", process.name)
                return False
        receiver.recv()
    return True


def _supervise(workers: list[BaseProcess], stopping: threading.Event, grace: float) -> int:
    """Wait for a signal (stop every worker) or a worker's death (stop the others)."""
    while not stopping.wait(0.2):
        dead = [process for process in workers if not process.is_alive()]
        if dead:
            log.error("%s exited with %s: stopping", dead[0].name, dead[0].exitcode)
            _stop(workers, grace)
            return 1
    return 0 if _stop(workers, grace) else 1


def _stop(workers: list[BaseProcess], grace: float) -> bool:
    """SIGTERM every worker, wait for them to drain; True if every one exited 0."""
    for process in workers:
        if process.is_alive() and process.pid is not None:
            os.kill(process.pid, signal.SIGTERM)
    for process in workers:
        process.join(grace + EXIT_MARGIN_SECONDS)
        if process.is_alive():
            log.error("%s did not stop in time: killing it", process.name)
            process.kill()
            process.join()
    codes: list[Any] = [process.exitcode for process in workers]
    return all(code == 0 for code in codes)
