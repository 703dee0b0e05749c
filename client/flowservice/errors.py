"""The one error type the client raises, with the server's `google.rpc` details decoded."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from google.rpc import error_details_pb2, status_pb2

if TYPE_CHECKING:
    from collections.abc import Iterable

    import grpc
    from google.protobuf import any_pb2

_STATUS_DETAILS_KEY = "grpc-status-details-bin"


class FailedCall(Protocol):
    """What both `grpc.aio.AioRpcError` and a failed sync `grpc.Call` offer."""

    def code(self) -> grpc.StatusCode: ...

    def details(self) -> str | None: ...

    def trailing_metadata(self) -> Any: ...


@dataclass(frozen=True)
class FieldViolation:
    """One offending request field: its path (e.g. `flows.id.any[1]`) and what is wrong."""

    field: str
    description: str


@dataclass
class RpcError(Exception):
    """A FlowService call that did not succeed.

    `code` is the gRPC status; the other attributes are the decoded
    `google.rpc` details (empty when the server sent none). `resource_info` is
    the first `ResourceInfo`; `resource_infos` holds them all (a batch's
    NOT_FOUND names each missing flow, up to 10).
    """

    code: grpc.StatusCode
    message: str
    field_violations: list[FieldViolation] = field(default_factory=list)
    resource_info: error_details_pb2.ResourceInfo | None = None
    error_info: error_details_pb2.ErrorInfo | None = None
    retry_info: error_details_pb2.RetryInfo | None = None
    resource_infos: list[error_details_pb2.ResourceInfo] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"{self.code.name}: {self.message}"]
        lines += [f"  {v.field}: {v.description}" for v in self.field_violations]
        return "\n".join(lines)


def from_failed_call(call: FailedCall) -> RpcError:
    """Translate a failed call (sync or aio) into an `RpcError`."""
    error = RpcError(code=call.code(), message=call.details() or "")
    for key, value in call.trailing_metadata() or ():
        if key == _STATUS_DETAILS_KEY and isinstance(value, bytes):
            _decode_details(status_pb2.Status.FromString(value).details, error)
    return error


def _decode_details(details: Iterable[any_pb2.Any], into: RpcError) -> None:
    for detail in details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            into.field_violations += [
                FieldViolation(v.field, v.description) for v in bad_request.field_violations
            ]
        elif detail.Is(error_details_pb2.ResourceInfo.DESCRIPTOR):
            info = error_details_pb2.ResourceInfo()
            detail.Unpack(info)
            into.resource_infos.append(info)
            if into.resource_info is None:
                into.resource_info = info
        elif detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            into.error_info = error_details_pb2.ErrorInfo()
            detail.Unpack(into.error_info)
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            into.retry_info = error_details_pb2.RetryInfo()
            detail.Unpack(into.retry_info)
