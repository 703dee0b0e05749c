"""Requests become typed arguments for the model functions, or InvalidArgumentError.

Every check of one request runs before any error is raised, so a response
lists all of the request's field violations at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from flowservice.v1 import flow_service_pb2
from flowservice_server import page_tokens, sorting
from flowservice_server.changefeed import ResumePosition, decode_resume_token
from flowservice_server.errors import InvalidArgumentError, Violations, quoted
from flowservice_server.etags import check_etag
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
#: StreamFlows' batch sizes: the default, and the most flows in one response.
DEFAULT_BATCH_SIZE = 100
MAX_BATCH_SIZE = 1000


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
class FlowStream:
    filters: FlowFilters
    order_by: tuple[sa.UnaryExpression[Any], ...]
    limit: int | None  # None: every matching flow
    batch_size: int


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


@dataclass(frozen=True)
class FlowPageQuery:
    """A ReadFlows request with its page: where it starts, and what its next token binds to."""

    query: FlowQuery
    sort: int
    fingerprint: bytes  # of the filters and sort: what the next page's token is bound to
    after: Clause | None  # the flows after the page token's flow; None: from `offset`
    include_total_size: bool


def read_flows_page(request: flow_service_pb2.ReadFlowsRequest) -> FlowPageQuery:
    """`read_flows`, and the page token's position; every violation of both at once."""
    violations = Violations()
    query: FlowQuery | None = None
    try:
        query = read_flows(request)
    except InvalidArgumentError as error:
        violations.items.extend(error.violations)
    fingerprint = page_tokens.fingerprint(request)
    after: Clause | None = None
    if request.page_token:
        if request.offset != 0:
            violations.add(
                "page_token",
                "cannot be combined with a non-zero offset: the token says where the page "
                "starts; set offset to 0 (or leave page_token empty to page by offset)",
            )
        elif request.sort in ORDER_BY:  # an unknown sort is reported already
            try:
                position = page_tokens.decode(request.page_token, fingerprint, request.sort)
            except page_tokens.PageTokenError as error:
                violations.add("page_token", str(error))
            else:
                after = sorting.after(request.sort, position)
    violations.raise_if_any()
    assert query is not None
    return FlowPageQuery(
        query=query,
        sort=request.sort,
        fingerprint=fingerprint,
        after=after,
        include_total_size=request.include_total_size,
    )


def count_flows(request: flow_service_pb2.CountFlowsRequest) -> FlowFilters:
    violations = Violations()
    filters = flow_filters(request, violations)
    violations.raise_if_any()
    return filters


def stream_flows(request: flow_service_pb2.StreamFlowsRequest) -> FlowStream:
    violations = Violations()
    filters = flow_filters(request, violations)
    order_by = ORDER_BY.get(request.sort)
    if order_by is None:
        violations.add("sort", f"unknown sort {request.sort}; expected one of {_sort_names()}")
    limit = request.limit if request.HasField("limit") else None
    if limit is not None and limit < 0:
        violations.add("limit", "must not be negative (leave it out for every matching flow)")
    batch_size = request.batch_size or DEFAULT_BATCH_SIZE
    if not 1 <= batch_size <= MAX_BATCH_SIZE:
        violations.add(
            "batch_size",
            f"must be from 1 to {MAX_BATCH_SIZE} (0 or left out for {DEFAULT_BATCH_SIZE})",
        )
    violations.raise_if_any()
    assert order_by is not None
    return FlowStream(filters=filters, order_by=order_by, limit=limit, batch_size=batch_size)


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


# --- batches and etags -------------------------------------------------------------

#: The most ids and names one BatchGetFlows request holds together, and the most
#: requests of one BatchCreateFlows.
MAX_BATCH_ITEMS = 1_000


@dataclass(frozen=True)
class FlowKeys:
    """BatchGetFlows' lookups: the ids and the names, each in request order."""

    ids: list[uuid.UUID]
    names: list[str]


@dataclass(frozen=True)
class ConditionalTagsUpdate:
    """An UpdateFlow request: what to write and the etag it must still have ("" for any)."""

    update: TagsUpdate
    etag: str


@dataclass(frozen=True)
class ConditionalDelete:
    flow_id: uuid.UUID
    etag: str


def batch_get_flows(request: flow_service_pb2.BatchGetFlowsRequest) -> FlowKeys:
    violations = Violations()
    total = len(request.ids) + len(request.names)
    if not 1 <= total <= MAX_BATCH_ITEMS:
        violations.add(
            "ids",
            f"ids and names hold {total:,} items together; give from 1 to "
            f"{MAX_BATCH_ITEMS:,} (ids, names, or both)",
        )
    ids = [_required_uuid(value, f"ids[{i}]", violations) for i, value in enumerate(request.ids)]
    for index, name in enumerate(request.names):
        if not name:
            violations.add(f"names[{index}]", "is required")
    violations.raise_if_any()
    return FlowKeys(ids=[i for i in ids if i is not None], names=list(request.names))


def batch_create_flows(request: flow_service_pb2.BatchCreateFlowsRequest) -> list[NewFlow]:
    """Each request checked as CreateFlow checks it; violations named `requests[i].…`."""
    violations = Violations()
    count = len(request.requests)
    if not 1 <= count <= MAX_BATCH_ITEMS:
        violations.add("requests", f"holds {count:,} requests; give from 1 to {MAX_BATCH_ITEMS:,}")
    new_flows: list[NewFlow] = []
    for index, one in enumerate(request.requests):
        try:
            new_flows.append(create_flow(one))
        except InvalidArgumentError as error:
            for violation in error.violations:
                violations.add(f"requests[{index}].{violation.field}", violation.description)
    violations.raise_if_any()
    return new_flows


def conditional_update_flow(request: flow_service_pb2.UpdateFlowRequest) -> ConditionalTagsUpdate:
    """`update_flow` with the request's etag, checked in the same pass."""
    violations = Violations()
    update: TagsUpdate | None = None
    try:
        update = update_flow(request)
    except InvalidArgumentError as error:
        violations.items.extend(error.violations)
    etag = _optional_etag(request.etag, violations)
    violations.raise_if_any()
    assert update is not None
    return ConditionalTagsUpdate(update=update, etag=etag)


def conditional_delete_flow(request: flow_service_pb2.DeleteFlowRequest) -> ConditionalDelete:
    violations = Violations()
    target = _required_uuid(request.id, "id", violations)
    etag = _optional_etag(request.etag, violations)
    violations.raise_if_any()
    assert target is not None
    return ConditionalDelete(flow_id=target, etag=etag)


def _optional_etag(value: str, violations: Violations) -> str:
    if not value:
        return ""
    return _checked(check_etag, value, "etag", violations) or ""


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
