"""Read-your-writes tokens: from a call's request metadata to the database layer, and back.

A write answered by a server with hot standbys carries, in the trailing
metadata `x-flowservice-lsn`, the primary's WAL position once the write had
committed. A read that sends such a position as request metadata
`x-flowservice-min-lsn` is served only by a database that has replayed it
(`db/replicas.py`). The position is PostgreSQL's text form of an LSN
(`16/B374D848`); clients compare tokens by it and keep the highest.

Without standbys (one PostgreSQL server, or SQLite) every read sees every
committed write anyway: writes return no token, and a valid token on a read
is accepted and changes nothing. A malformed one is INVALID_ARGUMENT
everywhere, so a client's mistake shows before it runs against standbys.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from flowservice_server.db.replicas import CallPositions, call_positions, format_lsn, parse_lsn
from flowservice_server.errors import FieldViolation, InvalidArgumentError
from flowservice_server.interceptors import CallInterceptor

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    import grpc.aio

#: Request metadata: the least WAL position the read must see.
MIN_POSITION_KEY = "x-flowservice-min-lsn"
#: Trailing metadata of a write: the WAL position its commit reached.
WRITTEN_POSITION_KEY = "x-flowservice-lsn"


def min_position(metadata: Any) -> int | None:
    """The position a call's metadata asks its reads to see, or None; several: the highest."""
    wanted: int | None = None
    for key, value in metadata or ():
        if key != MIN_POSITION_KEY:
            continue
        text = value.decode() if isinstance(value, bytes) else str(value)
        try:
            position = parse_lsn(text.strip())
        except ValueError as error:
            raise InvalidArgumentError(
                [
                    FieldViolation(
                        MIN_POSITION_KEY,
                        f"{error}: send the value of the {WRITTEN_POSITION_KEY} trailing "
                        "metadata of a write, unchanged",
                    )
                ]
            ) from None
        wanted = position if wanted is None else max(wanted, position)
    return wanted


class ConsistencyInterceptor(CallInterceptor):
    """Puts the call's `CallPositions` in `call_positions` for the database layer to use,
    and returns the position its writes reached as trailing metadata.

    Innermost in the chain, so a malformed token meets the error-status scope.
    """

    @contextlib.asynccontextmanager
    async def scope(
        self, method: str, request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[None]:
        positions = CallPositions(min_lsn=min_position(context.invocation_metadata()))
        reset = call_positions.set(positions)
        try:
            yield
            if positions.written_lsn is not None:
                context.set_trailing_metadata(
                    ((WRITTEN_POSITION_KEY, format_lsn(positions.written_lsn)),)
                )
        finally:
            # A stream that gRPC closes by finalizing its generator ends in another
            # context, where this reset cannot apply; that context dies with its task.
            with contextlib.suppress(ValueError):
                call_positions.reset(reset)

    def _around_coroutine(self, method: str, behavior: Any) -> Any:
        """`scope` for a unary call, as a plain try: no scope object per call."""

        async def call(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            positions = CallPositions(min_lsn=min_position(context.invocation_metadata()))
            reset = call_positions.set(positions)
            try:
                response = await behavior(request, context)
                if positions.written_lsn is not None:
                    context.set_trailing_metadata(
                        ((WRITTEN_POSITION_KEY, format_lsn(positions.written_lsn)),)
                    )
                return response
            finally:
                call_positions.reset(reset)

        return call
