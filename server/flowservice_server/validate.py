"""Requests become typed arguments for the model functions, or InvalidArgumentError.

Every check of one request runs before any error is raised, so a response
lists all of the request's field violations at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from flowservice.v1 import flow_service_pb2
from flowservice_server.changefeed import ResumePosition, decode_resume_token
from flowservice_server.errors import Violations, quoted
from flowservice_server.filters import compile_filter, flow_filters
from flowservice_server.parsing import label_path, parse_flow_name, parse_label_value, parse_uuid
from flowservice_server.sorting import ORDER_BY

if TYPE_CHECKING:
    import uuid
    from collections.abc import Callable

    import sqlalchemy as sa

    from flowservice_server.models.flows import Clause, FlowFilters

In = TypeVar("In")
Out = TypeVar("Out")

#: Prefect's default and maximum page size (PREFECT_API_DEFAULT_LIMIT).
MAX_LIMIT = 200
UPDATABLE_PATHS = frozenset({"tags", "*"})


@dataclass(frozen=True)
class NewFlow:
    name: str
    tags: list[str]
    labels: dict[str, Any] | None


@dataclass(frozen=True)
class FlowQuery:
    filters: FlowFilters
    order_by: tuple[sa.UnaryExpression[Any], ...]
    offset: int
    limit: int


@dataclass(frozen=True)
class TagsUpdate:
    flow_id: uuid.UUID
    tags: list[str] | None  # None: write nothing but `updated`


def create_flow(request: flow_service_pb2.CreateFlowRequest) -> NewFlow:
    violations = Violations()
    name = _checked(parse_flow_name, request.name, "name", violations)
    labels: dict[str, Any] | None = None
    if request.HasField("labels"):
        labels = {}
        # A protobuf map has no order; store keys sorted so equal labels are equal text.
        for key, value in sorted(request.labels.fields.items()):
            labels[key] = _checked(parse_label_value, value, label_path(key), violations)
    violations.raise_if_any()
    assert name is not None
    return NewFlow(name=name, tags=list(request.tags), labels=labels)


def flow_id(value: str) -> uuid.UUID:
    violations = Violations()
    parsed = _required_uuid(value, "id", violations)
    violations.raise_if_any()
    assert parsed is not None
    return parsed


def flow_name(value: str) -> str:
    """A name to look up: any non-empty string (a name that cannot exist is just not found)."""
    violations = Violations()
    if not value:
        violations.add("name", "is required")
    violations.raise_if_any()
    return value


def read_flows(request: flow_service_pb2.ReadFlowsRequest) -> FlowQuery:
    violations = Violations()
    filters = flow_filters(request, violations)
    order_by = ORDER_BY.get(request.sort)
    if order_by is None:
        violations.add("sort", f"unknown sort {request.sort}; expected one of {_sort_names()}")
    if request.offset < 0:
        violations.add("offset", "must not be negative")
    limit = request.limit if request.HasField("limit") else MAX_LIMIT
    if not 0 <= limit <= MAX_LIMIT:
        violations.add("limit", f"must be from 0 to {MAX_LIMIT} (leave it out for {MAX_LIMIT})")
    violations.raise_if_any()
    assert order_by is not None
    return FlowQuery(filters=filters, order_by=order_by, offset=request.offset, limit=limit)


def count_flows(request: flow_service_pb2.CountFlowsRequest) -> FlowFilters:
    violations = Violations()
    filters = flow_filters(request, violations)
    violations.raise_if_any()
    return filters


def update_flow(request: flow_service_pb2.UpdateFlowRequest) -> TagsUpdate:
    violations = Violations()
    target = _required_uuid(request.id, "id", violations)
    if request.HasField("update_mask"):
        for index, path in enumerate(request.update_mask.paths):
            if path not in UPDATABLE_PATHS:
                violations.add(
                    f"update_mask.paths[{index}]",
                    f"cannot update {quoted(path)}: only 'tags' can change (a flow's name and "
                    "labels are fixed when it is created)",
                )
        writes_tags = bool(UPDATABLE_PATHS & set(request.update_mask.paths))
    else:
        writes_tags = len(request.tags) > 0
    violations.raise_if_any()
    assert target is not None
    return TagsUpdate(flow_id=target, tags=list(request.tags) if writes_tags else None)


def _required_uuid(value: str, field: str, violations: Violations) -> uuid.UUID | None:
    if not value:
        violations.add(field, "is required")
        return None
    return _checked(parse_uuid, value, field, violations)


def _checked(
    parse: Callable[[In], Out], value: In, field: str, violations: Violations
) -> Out | None:
    try:
        return parse(value)
    except ValueError as error:
        violations.add(field, str(error))
        return None


def _sort_names() -> str:
    return ", ".join(
        value.name for value in flow_service_pb2.FlowSort.DESCRIPTOR.values if value.number
    )


# --- WatchFlows ---------------------------------------------------------------------


@dataclass(frozen=True)
class WatchQuery:
    #: The FlowFilter, compiled on the flow table; None: every flow.
    flows: Clause | None
    #: Where to continue, from `resume_token`; None: from now (or the initial state).
    resume: ResumePosition | None
    send_initial_state: bool


def watch_flows(request: flow_service_pb2.WatchFlowsRequest) -> WatchQuery:
    violations = Violations()
    flows = None
    if request.HasField("flows"):
        flows = compile_filter(request.flows, "flows", violations)
    resume = None
    if request.resume_token:
        try:
            resume = decode_resume_token(request.resume_token)
        except ValueError as error:
            violations.add("resume_token", str(error))
    if request.resume_token and request.send_initial_state:
        violations.add("send_initial_state", "cannot be combined with resume_token")
    violations.raise_if_any()
    return WatchQuery(flows=flows, resume=resume, send_initial_state=request.send_initial_state)
