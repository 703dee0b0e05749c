"""Small assertions and helpers shared by the test modules."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from flowservice.client import RpcError
from flowservice_server.db.sqlite_engine import prepare_sqlite

if TYPE_CHECKING:
    from collections.abc import Awaitable, Coroutine

    import grpc

    from flowservice.v1 import flow_pb2

T = TypeVar("T")


async def expect_error(call: Awaitable[Any], code: grpc.StatusCode, *fields: str) -> RpcError:
    """The call fails with `code`; for INVALID_ARGUMENT, the violations name exactly `fields`."""
    with pytest.raises(RpcError) as raised:
        await call
    error = raised.value
    assert error.code == code, str(error)
    assert error.error_info is not None
    assert error.error_info.domain == "flowservice.v1"
    if fields:
        assert [v.field for v in error.field_violations] == list(fields), str(error)
        assert all(v.description for v in error.field_violations)
    return error


def run_sync(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from synchronous fixture code (own loop, own thread)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def when(timestamp: Any) -> datetime:
    """A Timestamp field as an aware UTC datetime."""
    moment: datetime = timestamp.ToDatetime(tzinfo=UTC)
    return moment


def names(flows: list[flow_pb2.Flow]) -> list[str]:
    return [flow.name for flow in flows]


def direct_engine(url: str) -> AsyncEngine:
    """The tests' own engine on the server's database, with the server's SQLite pragmas."""
    engine = create_async_engine(url)
    if engine.dialect.name == "sqlite":
        sa.event.listen(engine.sync_engine, "connect", prepare_sqlite(busy_timeout=10))
    return engine
