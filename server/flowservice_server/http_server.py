"""The HTTP listener: uvicorn serving `http_gateway.HttpGateway` on the gRPC server's event loop.

uvicorn is driven through its startup and shutdown steps only, so it installs
no signal handlers and starts no loop of its own: the process keeps one event
loop, one set of signal handlers (`app.serve`) and one drain. The socket is
bound here, as the gRPC port is: loopback unless told otherwise, port 0 for a
free port, SO_REUSEPORT only among one supervisor's workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import math
import socket
import ssl
from typing import TYPE_CHECKING

import uvicorn

if TYPE_CHECKING:
    from collections.abc import Generator

    from flowservice_server.config import TlsSettings
    from flowservice_server.http_gateway import HttpGateway

log = logging.getLogger(__name__)


class HttpStartupError(Exception):
    """The HTTP address cannot be listened on; the message says why."""


def bind(address: str, *, reuse_port: bool) -> socket.socket:
    host, _, port = address.rpartition(":")
    bare = host.strip("[]")
    family = socket.AF_INET6 if ":" in bare else socket.AF_INET
    # IPPROTO_TCP named, not 0: asyncio turns Nagle off (TCP_NODELAY) only on sockets
    # that say they are TCP; with Nagle on, a response's header and body writes meet
    # the client's delayed ACK and each call on a kept-alive connection waits 40 ms.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((bare, int(port)))
    except OSError as error:
        sock.close()
        reason = error.strerror
        if error.errno == errno.EADDRINUSE:
            reason = "the address is in use by another process"
        raise HttpStartupError(f"cannot listen on {address} (HTTP): {reason}") from None
    sock.setblocking(False)
    return sock


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its signal handlers: `app.serve` owns SIGTERM and SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None]:
        yield


class HttpListener:
    """One uvicorn server on a socket bound here; `stop` drains it like the gRPC server."""

    def __init__(self, server: uvicorn.Server, task: asyncio.Task[None], port: int) -> None:
        self._server = server
        self._task = task
        self.port = port

    @classmethod
    async def start(
        cls, gateway: HttpGateway, address: str, tls: TlsSettings, *, reuse_port: bool
    ) -> HttpListener:
        sock = bind(address, reuse_port=reuse_port)
        port: int = sock.getsockname()[1]
        config = uvicorn.Config(
            gateway,
            lifespan="off",
            log_config=None,
            access_log=False,  # the interceptors' access log covers every call
            server_header=False,
            ws="none",
            http="h11",
            ssl_certfile=tls.cert_file or None,
            ssl_keyfile=tls.key_file or None,
            ssl_ca_certs=tls.client_ca_file or None,
            ssl_cert_reqs=ssl.CERT_REQUIRED if tls.client_ca_file else ssl.CERT_NONE,
        )
        # uvicorn narrates its start and stop at INFO; `app` logs the address itself.
        logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
        server = _EmbeddedServer(config)
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started and not task.done():  # noqa: ASYNC110  # uvicorn sets a flag, no event
            await asyncio.sleep(0.01)
        if task.done():
            sock.close()
            error = task.exception() if not task.cancelled() else None
            raise HttpStartupError(f"cannot serve HTTP on {address}: {error!r}")
        return cls(server, task, port)

    async def stop(self, grace: float | None) -> None:
        """Refuse new connections, give calls in flight `grace` seconds, then cancel them."""
        seconds = math.ceil(grace) if grace is not None else None
        self._server.config.timeout_graceful_shutdown = seconds
        self._server.should_exit = True
        await self._task
