"""The public client API of FlowService.

`FlowClient` (asyncio) and `FlowClientSync` (blocking) wrap the generated stub
with typed methods; both raise `RpcError` with the server's error details
decoded. Filters are the generated messages or their JSON-form dicts.
"""

from flowservice._client_async import FlowClient
from flowservice._client_sync import FlowClientSync
from flowservice._shared import (
    DEFAULT_TARGET,
    SERVICE_CONFIG,
    FlowPage,
    RetryBudget,
    any_of,
    channel_options,
    flow_labels,
)
from flowservice.errors import (
    Aborted,
    AlreadyExists,
    Cancelled,
    DataLoss,
    DeadlineExceeded,
    FailedPrecondition,
    FieldViolation,
    FlowNotFound,
    Internal,
    InvalidArgument,
    NotFound,
    OutOfRange,
    PermissionDenied,
    ResourceExhausted,
    RpcError,
    Unauthenticated,
    Unavailable,
    Unimplemented,
    Unknown,
)

__all__ = [
    "DEFAULT_TARGET",
    "SERVICE_CONFIG",
    "Aborted",
    "AlreadyExists",
    "Cancelled",
    "DataLoss",
    "DeadlineExceeded",
    "FailedPrecondition",
    "FieldViolation",
    "FlowClient",
    "FlowClientSync",
    "FlowNotFound",
    "FlowPage",
    "Internal",
    "InvalidArgument",
    "NotFound",
    "OutOfRange",
    "PermissionDenied",
    "ResourceExhausted",
    "RetryBudget",
    "RpcError",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "Unknown",
    "any_of",
    "channel_options",
    "flow_labels",
]
