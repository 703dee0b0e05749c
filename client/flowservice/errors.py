"""The client's errors: `RpcError` and one subclass per gRPC status, with the server's
`google.rpc` details decoded (by `grpcio-status`).

`except RpcError` catches every failure; `except NotFound` (or `FlowNotFound`,
`InvalidArgument`, `Aborted`, …) catches one kind. `code` is the gRPC status
either way. Bad input caught before any call (a misspelled key in a dict
filter, an id that is neither `str` nor `uuid.UUID`) raises `InvalidArgument`
too, with `code` INVALID_ARGUMENT and a field violation naming the input.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

if TYPE_CHECKING:
    from collections.abc import Iterable

    from google.protobuf import any_pb2

#: The ErrorInfo reason of a NOT_FOUND about flows (one or a batch).
FLOW_NOT_FOUND_REASON = "FLOW_NOT_FOUND"
FLOW_RESOURCE_TYPE = "flowservice.v1.Flow"


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
    """A FlowService call that did not succeed; the base of every error the client raises.

    `code` is the gRPC status; the other attributes are the decoded
    `google.rpc` details (empty when the server sent none). `resource_info` is
    the first `ResourceInfo`; `resource_infos` holds them all (a batch's
    NOT_FOUND names each missing flow, up to 10). The class is the status's:
    `InvalidArgument`, `NotFound` (`FlowNotFound` for flows), `Aborted`, …
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
        # The server's message already names the first violation ("id: not a UUID").
        lines += [
            f"  {v.field}: {v.description}"
            for v in self.field_violations
            if f"{v.field}: {v.description}" not in self.message
        ]
        return "\n".join(lines)


class Cancelled(RpcError):
    """CANCELLED: the call was cancelled (usually by the caller)."""


class Unknown(RpcError):
    """UNKNOWN: the server's answer carried no known status."""


class InvalidArgument(RpcError):
    """INVALID_ARGUMENT: the request is wrong; `field_violations` names each bad field."""


class DeadlineExceeded(RpcError):
    """DEADLINE_EXCEEDED: the call's `timeout` passed before the answer came."""


class NotFound(RpcError):
    """NOT_FOUND: what the request names does not exist."""


class FlowNotFound(NotFound):
    """NOT_FOUND for flows: `resource_infos` names each missing id or name."""


class AlreadyExists(RpcError):
    """ALREADY_EXISTS."""


class PermissionDenied(RpcError):
    """PERMISSION_DENIED."""


class ResourceExhausted(RpcError):
    """RESOURCE_EXHAUSTED: a limit was hit (message size, concurrent calls); see `retry_info`."""


class FailedPrecondition(RpcError):
    """FAILED_PRECONDITION: e.g. a watch's resume token whose history is gone."""


class Aborted(RpcError):
    """ABORTED: a conditional write whose `etag` no longer matches; nothing was written."""


class OutOfRange(RpcError):
    """OUT_OF_RANGE."""


class Unimplemented(RpcError):
    """UNIMPLEMENTED: the server does not offer this method."""


class Internal(RpcError):
    """INTERNAL: the server failed; not the request's fault."""


class Unavailable(RpcError):
    """UNAVAILABLE after the client's retries: no server, or it is busy or draining."""


class DataLoss(RpcError):
    """DATA_LOSS."""


class Unauthenticated(RpcError):
    """UNAUTHENTICATED: no valid `token` for a server that requires one."""


ERROR_CLASSES: dict[grpc.StatusCode, type[RpcError]] = {
    grpc.StatusCode.CANCELLED: Cancelled,
    grpc.StatusCode.UNKNOWN: Unknown,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.ABORTED: Aborted,
    grpc.StatusCode.OUT_OF_RANGE: OutOfRange,
    grpc.StatusCode.UNIMPLEMENTED: Unimplemented,
    grpc.StatusCode.INTERNAL: Internal,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DATA_LOSS: DataLoss,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
}


def from_failed_call(call: FailedCall) -> RpcError:
    """Translate a failed call (sync or aio) into the `RpcError` subclass of its status."""
    code = call.code()
    try:
        status = rpc_status.from_call(call)
    except ValueError:  # details whose code or message contradict the call's: ignore them
        status = None
    error = _error_class(code, status.details if status is not None else ())(
        code=code, message=call.details() or ""
    )
    if status is not None:
        _decode_details(status.details, error)
    return error


def invalid_argument(field_path: str, description: str) -> InvalidArgument:
    """The error for bad input caught before the call: one violation, named in the message."""
    return InvalidArgument(
        code=grpc.StatusCode.INVALID_ARGUMENT,
        message=f"{field_path}: {description}",
        field_violations=[FieldViolation(field_path, description)],
    )


def _error_class(code: grpc.StatusCode, details: Iterable[any_pb2.Any]) -> type[RpcError]:
    if code == grpc.StatusCode.NOT_FOUND:
        for detail in details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                if info.reason == FLOW_NOT_FOUND_REASON:
                    return FlowNotFound
            elif detail.Is(error_details_pb2.ResourceInfo.DESCRIPTOR):
                resource = error_details_pb2.ResourceInfo()
                detail.Unpack(resource)
                if resource.resource_type == FLOW_RESOURCE_TYPE:
                    return FlowNotFound
    return ERROR_CLASSES.get(code, RpcError)


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
