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
    any_of,
    channel_options,
    flow_labels,
)
from flowservice.errors import FieldViolation, RpcError

__all__ = [
    "DEFAULT_TARGET",
    "SERVICE_CONFIG",
    "FieldViolation",
    "FlowClient",
    "FlowClientSync",
    "FlowPage",
    "RpcError",
    "any_of",
    "channel_options",
    "flow_labels",
]
