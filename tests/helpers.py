"""Small assertions shared by the test modules."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest

from flowservice.client import RpcError

if TYPE_CHECKING:
    from collections.abc import Awaitable

    import grpc

    from flowservice.v1 import flow_pb2


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


def when(timestamp: Any) -> datetime:
    """A Timestamp field as an aware UTC datetime."""
    moment: datetime = timestamp.ToDatetime(tzinfo=UTC)
    return moment


def names(flows: list[flow_pb2.Flow]) -> list[str]:
    return [flow.name for flow in flows]
