"""The filter compiler: FlowService's filter messages become SQLAlchemy expressions.

The meaning is Prefect 3.9.1's (docs/semantics.md#filters). Every filter message has one
table from field name to rule, and a handful of rules build every predicate.
What "absent", "present but empty" and "empty list" mean is decided once, in
`_conditions` and `combine`:

* A field that is not set adds nothing. Protobuf's `ListFields` reports
  exactly the set fields: repeated fields and strings when not empty (so an
  empty `not_any`, `all` or `like` is ignored), messages and `optional`
  scalars when present (so `is_null: false` counts).
* A sub-filter that is set contributes its conditions joined by its own
  operator, or TRUE when it has none, so an empty child makes an OR parent
  TRUE. The two state filters are the exception: they drop such children.
* `any` is a `ListValue`, present even when empty; an empty IN matches nothing.

The compiler only builds expressions; it never touches a connection.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal, Protocol

import sqlalchemy as sa
from google.protobuf import struct_pb2

from flowservice.v1 import filters_pb2, flow_service_pb2
from flowservice_server.db.dialect import tags_are_empty, tags_have_all, tags_have_any
from flowservice_server.db.tables import deployment, flow, flow_run, task_run, work_pool
from flowservice_server.errors import Violations
from flowservice_server.models.flows import Clause, FlowFilters
from flowservice_server.parsing import parse_state_type, parse_timestamp, parse_uuid

if TYPE_CHECKING:
    from google.protobuf.message import Message

Rule = Callable[[Any, str, Violations], Clause | None]
Parse = Callable[[str], Any]


# --- values ------------------------------------------------------------------------


def _text(value: str) -> str:
    return value


def _uuid_text(value: str) -> str:
    """A UUID as Prefect writes it inside JSON: lower-case, hyphenated."""
    return str(parse_uuid(value))


def _values(value: Any, path: str, violations: Violations, parse: Parse) -> list[Any]:
    """The parsed elements of an `any` list (a ListValue) or a repeated string field."""
    items: Any = value.values if isinstance(value, struct_pb2.ListValue) else value
    parsed = []
    for index, item in enumerate(items):
        text = item
        if isinstance(item, struct_pb2.Value):
            if item.WhichOneof("kind") != "string_value":
                violations.add(f"{path}[{index}]", "must be a string")
                continue
            text = item.string_value
        try:
            parsed.append(parse(text))
        except ValueError as error:
            violations.add(f"{path}[{index}]", str(error))
    return parsed


# --- rules: field value -> condition ---------------------------------------------


def any_in(column: sa.ColumnElement[Any], parse: Parse = _text) -> Rule:
    """`column IN (values)`; an empty list matches nothing."""
    return lambda value, path, v: column.in_(_values(value, path, v, parse))


def not_any_in(column: sa.ColumnElement[Any], parse: Parse = _text) -> Rule:
    """`column NOT IN (values)`: rows where the column is NULL never match (SQL)."""
    return lambda value, path, v: column.not_in(_values(value, path, v, parse))


def like(column: sa.ColumnElement[str]) -> Rule:
    """Case-insensitive substring; `%` and `_` in the value stay wildcards.

    See docs/semantics.md#like.
    """
    return lambda value, path, v: column.ilike(f"%{value}%")


def is_null(column: sa.ColumnElement[Any]) -> Rule:
    return lambda value, path, v: column.is_(None) if value else column.is_not(None)


def at_or_before(column: sa.ColumnElement[Any]) -> Rule:
    return lambda value, path, v: _bound(column, value, path, v, upper=True)


def at_or_after(column: sa.ColumnElement[Any]) -> Rule:
    return lambda value, path, v: _bound(column, value, path, v, upper=False)


def _bound(
    column: sa.ColumnElement[Any], value: Any, path: str, violations: Violations, *, upper: bool
) -> Clause | None:
    try:
        moment = parse_timestamp(value)
    except ValueError as error:
        violations.add(path, str(error))
        return None
    return column <= moment if upper else column >= moment


def has_all_tags(column: sa.ColumnElement[Any]) -> Rule:
    """The tags hold every value (superset); duplicates in either list do not matter."""
    return lambda value, path, v: tags_have_all(column, list(value))


def has_any_tag(column: sa.ColumnElement[Any]) -> Rule:
    return lambda value, path, v: tags_have_any(column, _values(value, path, v, _text))


def tags_is_null(column: sa.ColumnElement[Any]) -> Rule:
    """Prefect's `tags.is_null_`: the tag list is empty (it is never SQL NULL)."""
    return lambda value, path, v: tags_are_empty(column) if value else ~tags_are_empty(column)


def is_value(column: sa.ColumnElement[Any]) -> Rule:
    return lambda value, path, v: column.is_(bool(value))


def ignored(value: Any, path: str, violations: Violations) -> None:
    """A deprecated field Prefect accepts and ignores."""
    return None


# --- rules that reach other rows -------------------------------------------------

# Aliases keep inner references from correlating with an enclosing query's
# rows of the same table.
_deployment_flow = flow.alias("deployment_flow")
_subflow_run = flow_run.alias("subflow_run")
_parent_task_run = task_run.alias("parent_task_run")


def flow_has_no_deployment(value: Any, path: str, violations: Violations) -> Clause:
    """true: the flow has no deployment; false: it has at least one."""
    deployed = sa.select(deployment.c.flow_id)
    return flow.c.id.not_in(deployed) if value else flow.c.id.in_(deployed)


def subflow_of_runs(value: Any, path: str, violations: Violations) -> Clause:
    """The flow run was started by a task run of one of the given flow runs."""
    parents = _values(value, path, violations, parse_uuid)
    started_by = sa.select(_parent_task_run.c.id).where(_parent_task_run.c.flow_run_id.in_(parents))
    return flow_run.c.parent_task_run_id.in_(started_by)


def has_subflow_runs(value: Any, path: str, violations: Violations) -> Clause:
    """true: some flow run has this task run as its parent; false: none has."""
    started = sa.exists().where(_subflow_run.c.parent_task_run_id == task_run.c.id)
    return started if value else ~started


def deployment_or_flow_name_like(value: Any, path: str, violations: Violations) -> Clause:
    pattern = f"%{value}%"
    flow_matches = sa.exists().where(
        _deployment_flow.c.id == deployment.c.flow_id, _deployment_flow.c.name.ilike(pattern)
    )
    return sa.or_(deployment.c.name.ilike(pattern), flow_matches)


def task_run_flow_run_id(
    message: filters_pb2.TaskRunFilterFlowRunId, path: str, violations: Violations
) -> list[Clause]:
    """Prefect's `is_null_` defaults to false (docs/semantics.md#task-runs-and-their-flow-run)."""
    if message.HasField("is_null") and message.is_null:
        return [task_run.c.flow_run_id.is_(None)]
    if message.HasField("any"):
        ids = _values(message.any, f"{path}.any", violations, parse_uuid)
        return [task_run.c.flow_run_id.in_(ids)]
    return [task_run.c.flow_run_id.is_not(None)]


# --- one table per filter message ------------------------------------------------

_flow_run_start = sa.func.coalesce(flow_run.c.start_time, flow_run.c.expected_start_time)
_created_by = flow_run.c.created_by

#: field -> rule for each filter message. A field without a rule is a
#: sub-filter: `_conditions` descends into it.
TABLES: dict[type[Message], Mapping[str, Rule]] = {
    filters_pb2.FlowFilter: {},
    filters_pb2.FlowFilterId: {
        "any": any_in(flow.c.id, parse_uuid),
        "not_any": not_any_in(flow.c.id, parse_uuid),
    },
    filters_pb2.FlowFilterDeployment: {"is_null": flow_has_no_deployment},
    filters_pb2.FlowFilterName: {"any": any_in(flow.c.name), "like": like(flow.c.name)},
    filters_pb2.FlowFilterTags: {
        "all": has_all_tags(flow.c.tags),
        "is_null": tags_is_null(flow.c.tags),
    },
    filters_pb2.FlowRunFilter: {},
    filters_pb2.FlowRunFilterId: {
        "any": any_in(flow_run.c.id, parse_uuid),
        "not_any": not_any_in(flow_run.c.id, parse_uuid),
    },
    filters_pb2.FlowRunFilterName: {"any": any_in(flow_run.c.name), "like": like(flow_run.c.name)},
    filters_pb2.FlowRunFilterTags: {
        "all": has_all_tags(flow_run.c.tags),
        "any": has_any_tag(flow_run.c.tags),
        "is_null": tags_is_null(flow_run.c.tags),
    },
    filters_pb2.FlowRunFilterDeploymentId: {
        "any": any_in(flow_run.c.deployment_id, parse_uuid),
        "is_null": is_null(flow_run.c.deployment_id),
    },
    filters_pb2.FlowRunFilterWorkQueueName: {
        "any": any_in(flow_run.c.work_queue_name),
        "is_null": is_null(flow_run.c.work_queue_name),
    },
    filters_pb2.FlowRunFilterState: {},
    filters_pb2.FlowRunFilterStateType: {
        "any": any_in(flow_run.c.state_type, parse_state_type),
        "not_any": not_any_in(flow_run.c.state_type, parse_state_type),
    },
    filters_pb2.FlowRunFilterStateName: {
        "any": any_in(flow_run.c.state_name),
        "not_any": not_any_in(flow_run.c.state_name),
    },
    filters_pb2.FlowRunFilterFlowVersion: {"any": any_in(flow_run.c.flow_version)},
    filters_pb2.FlowRunFilterStartTime: {
        # The bounds fall back to the expected start time; is_null does not.
        "before": at_or_before(_flow_run_start),
        "after": at_or_after(_flow_run_start),
        "is_null": is_null(flow_run.c.start_time),
    },
    filters_pb2.FlowRunFilterEndTime: {
        "before": at_or_before(flow_run.c.end_time),
        "after": at_or_after(flow_run.c.end_time),
        "is_null": is_null(flow_run.c.end_time),
    },
    filters_pb2.FlowRunFilterExpectedStartTime: {
        "before": at_or_before(flow_run.c.expected_start_time),
        "after": at_or_after(flow_run.c.expected_start_time),
    },
    filters_pb2.FlowRunFilterNextScheduledStartTime: {
        "before": at_or_before(flow_run.c.next_scheduled_start_time),
        "after": at_or_after(flow_run.c.next_scheduled_start_time),
    },
    filters_pb2.FlowRunFilterParentFlowRunId: {"any": subflow_of_runs},
    filters_pb2.FlowRunFilterParentTaskRunId: {
        "any": any_in(flow_run.c.parent_task_run_id, parse_uuid),
        "is_null": is_null(flow_run.c.parent_task_run_id),
    },
    filters_pb2.FlowRunFilterIdempotencyKey: {
        "any": any_in(flow_run.c.idempotency_key),
        "not_any": not_any_in(flow_run.c.idempotency_key),
    },
    filters_pb2.FlowRunFilterCreatedBy: {
        "id": any_in(_created_by["id"].as_string(), _uuid_text),
        "type": any_in(_created_by["type"].as_string()),
        "is_null": is_null(_created_by),
    },
    filters_pb2.TaskRunFilter: {},
    filters_pb2.TaskRunFilterId: {"any": any_in(task_run.c.id, parse_uuid)},
    filters_pb2.TaskRunFilterName: {"any": any_in(task_run.c.name), "like": like(task_run.c.name)},
    filters_pb2.TaskRunFilterTags: {
        "all": has_all_tags(task_run.c.tags),
        "is_null": tags_is_null(task_run.c.tags),
    },
    filters_pb2.TaskRunFilterState: {},
    filters_pb2.TaskRunFilterStateType: {"any": any_in(task_run.c.state_type, parse_state_type)},
    filters_pb2.TaskRunFilterStateName: {"any": any_in(task_run.c.state_name)},
    filters_pb2.TaskRunFilterStartTime: {
        "before": at_or_before(task_run.c.start_time),
        "after": at_or_after(task_run.c.start_time),
        "is_null": is_null(task_run.c.start_time),
    },
    filters_pb2.TaskRunFilterEndTime: {
        "before": at_or_before(task_run.c.end_time),
        "after": at_or_after(task_run.c.end_time),
        "is_null": is_null(task_run.c.end_time),
    },
    filters_pb2.TaskRunFilterExpectedStartTime: {
        "before": at_or_before(task_run.c.expected_start_time),
        "after": at_or_after(task_run.c.expected_start_time),
    },
    filters_pb2.TaskRunFilterSubFlowRuns: {"exists": has_subflow_runs},
    # Prefect's DeploymentFilter never reads concurrency_limit: not even an
    # always-true condition, so it cannot make an OPERATOR_OR filter true.
    filters_pb2.DeploymentFilter: {"concurrency_limit": ignored},
    filters_pb2.DeploymentFilterId: {
        "any": any_in(deployment.c.id, parse_uuid),
        "not_any": not_any_in(deployment.c.id, parse_uuid),
    },
    filters_pb2.DeploymentFilterName: {
        "any": any_in(deployment.c.name),
        "like": like(deployment.c.name),
    },
    filters_pb2.DeploymentOrFlowNameFilter: {"like": deployment_or_flow_name_like},
    filters_pb2.DeploymentFilterPaused: {"eq": is_value(deployment.c.paused)},
    filters_pb2.DeploymentFilterTags: {
        "all": has_all_tags(deployment.c.tags),
        "any": has_any_tag(deployment.c.tags),
        "is_null": tags_is_null(deployment.c.tags),
    },
    filters_pb2.DeploymentFilterWorkQueueName: {"any": any_in(deployment.c.work_queue_name)},
    filters_pb2.WorkPoolFilter: {},
    filters_pb2.WorkPoolFilterId: {"any": any_in(work_pool.c.id, parse_uuid)},
    filters_pb2.WorkPoolFilterName: {"any": any_in(work_pool.c.name)},
    filters_pb2.WorkPoolFilterType: {"any": any_in(work_pool.c.type)},
}


class MessageCompiler(Protocol):
    def __call__(self, message: Any, path: str, violations: Violations, /) -> list[Clause]: ...


#: Messages whose fields do not combine independently.
SPECIAL: dict[type[Message], MessageCompiler] = {
    filters_pb2.TaskRunFilterFlowRunId: task_run_flow_run_id,
}

#: Filters that drop sub-filters with no conditions instead of counting them
#: as TRUE, so `OPERATOR_OR` with an empty `name` still filters by `type`.
DROPS_EMPTY_CHILDREN = frozenset({filters_pb2.FlowRunFilterState, filters_pb2.TaskRunFilterState})


# --- the compiler ----------------------------------------------------------------


def combine(operator: int, clauses: list[Clause]) -> Clause:
    """Join conditions with AND or OR; no conditions at all is TRUE (Prefect's rule)."""
    if not clauses:
        return sa.true()
    if len(clauses) == 1:
        return clauses[0]
    return sa.or_(*clauses) if operator == filters_pb2.OPERATOR_OR else sa.and_(*clauses)


def compile_filter(message: Message, path: str, violations: Violations) -> Clause:
    """One filter message as a boolean expression; bad values are reported to `violations`."""
    return combine(_operator(message, path, violations), _conditions(message, path, violations))


def _operator(message: Message, path: str, violations: Violations) -> int:
    operator: int = getattr(message, "operator", filters_pb2.OPERATOR_UNSPECIFIED)
    if operator not in filters_pb2.Operator.values():
        violations.add(f"{path}.operator", f"unknown operator {operator}")
    return operator


def _conditions(message: Message, path: str, violations: Violations) -> list[Clause]:
    special = SPECIAL.get(type(message))
    if special is not None:
        return special(message, path, violations)
    rules = TABLES[type(message)]
    drops_empty = type(message) in DROPS_EMPTY_CHILDREN
    clauses: list[Clause] = []
    for field, value in message.ListFields():
        if field.name == "operator":
            continue
        field_path = f"{path}.{field.name}"
        rule = rules.get(field.name)
        if rule is not None:  # a leaf, or a sub-filter Prefect looks past
            clause = rule(value, field_path, violations)
            if clause is not None:
                clauses.append(clause)
            continue
        child = _conditions(value, field_path, violations)
        if child or not drops_empty:
            clauses.append(combine(_operator(value, field_path, violations), child))
    return clauses


#: The two flow queries; both carry the same five filters.
FilterRequest = (
    flow_service_pb2.ReadFlowsRequest
    | flow_service_pb2.CountFlowsRequest
    | flow_service_pb2.StreamFlowsRequest
)
FilterName = Literal["flows", "flow_runs", "task_runs", "deployments", "work_pools"]


def flow_filters(request: FilterRequest, violations: Violations) -> FlowFilters:
    """The request's five filters, each compiled on its own table; None where left out.

    `models.flows` joins them into the flow query.
    """

    def compiled(name: FilterName) -> Clause | None:
        if not request.HasField(name):
            return None
        return compile_filter(getattr(request, name), name, violations)

    # In this order, violations are listed as they always were.
    flows, deployments, work_pools = (
        compiled("flows"),
        compiled("deployments"),
        compiled("work_pools"),
    )
    flow_runs, task_runs = compiled("flow_runs"), compiled("task_runs")
    return FlowFilters(
        flows=flows,
        flow_runs=flow_runs,
        task_runs=task_runs,
        deployments=deployments,
        work_pools=work_pools,
    )
