"""A plain-Python model of which flows ReadFlows/CountFlows select, written from the docs.

It is the oracle of tests/test_filters_property.py, so it deliberately shares no
code with the server (`flowservice_server.filters`): it works on the Python
objects below, not on SQL. Sources: docs/semantics.md#filters, the comments
in protos/flowservice/v1/filters.proto, and two behaviours measured on
Prefect 3.9.1: the two state filters drop children that yield no condition
(docs/semantics.md#state-filters), and `not_any` is SQL `NOT IN`
(docs/semantics.md#empty-lists).

How SQL's NULL is modelled: every condition evaluates to a `Truth`, which is
True, False or None (SQL UNKNOWN). A comparison, `IN` or `NOT IN` on a NULL
column is UNKNOWN; `IS [NOT] NULL`, `EXISTS`, `IS true/false` and tag tests
(tag columns are NOT NULL) are never UNKNOWN. AND, OR and NOT follow SQL's
three-valued (Kleene) tables, and a WHERE clause (or the WHERE of an EXISTS
subquery) selects a row only when its condition is True, never when UNKNOWN.

Structure of a filter, as Prefect builds it:

* a leaf message (`name`, `tags`, `start_time`, …) yields a list of conditions,
  one per effective field; an empty list means "no condition";
* a message combines its list with its `operator` (AND when absent or
  unspecified); an empty list is TRUE, whatever the operator;
* a parent puts each present child's combined value into its own list, so an
  empty child is a TRUE entry (and makes an OR parent TRUE) — except the two
  state filters, which leave out children that yield no condition.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence

#: Prefect's state types, in its enum's order.
STATE_TYPES = (
    "SCHEDULED",
    "PENDING",
    "RUNNING",
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "CRASHED",
    "PAUSED",
    "CANCELLING",
)

#: SQL's boolean: True, False, or None for UNKNOWN.
Truth = bool | None


# --- the dataset ------------------------------------------------------------------


@dataclass(frozen=True)
class Flow:
    id: uuid.UUID
    name: str
    tags: tuple[str, ...]


@dataclass(frozen=True)
class WorkPool:
    id: uuid.UUID
    name: str
    type: str


@dataclass(frozen=True)
class WorkQueue:
    id: uuid.UUID
    work_pool_id: uuid.UUID
    name: str


@dataclass(frozen=True)
class Deployment:
    id: uuid.UUID
    flow_id: uuid.UUID
    name: str
    tags: tuple[str, ...]
    paused: bool
    work_queue_id: uuid.UUID | None
    work_queue_name: str | None


@dataclass(frozen=True)
class CreatedBy:
    """A flow run's `created_by` JSON object; a None field is stored as JSON null."""

    id: str | None
    type: str | None

    def as_json(self) -> dict[str, str | None]:
        return {"id": self.id, "type": self.type, "display_value": None}


@dataclass(frozen=True)
class FlowRun:
    id: uuid.UUID
    flow_id: uuid.UUID
    name: str
    tags: tuple[str, ...]
    state_type: str | None
    state_name: str | None
    start_time: datetime | None
    expected_start_time: datetime | None
    end_time: datetime | None
    next_scheduled_start_time: datetime | None
    deployment_id: uuid.UUID | None
    work_queue_name: str | None
    work_queue_id: uuid.UUID | None
    parent_task_run_id: uuid.UUID | None
    flow_version: str | None
    idempotency_key: str | None
    created_by: CreatedBy | None


@dataclass(frozen=True)
class TaskRun:
    id: uuid.UUID
    flow_run_id: uuid.UUID | None
    name: str
    tags: tuple[str, ...]
    state_type: str | None
    state_name: str | None
    start_time: datetime | None
    end_time: datetime | None
    expected_start_time: datetime | None


@dataclass(frozen=True)
class Dataset:
    """Every row of the six tables; ids are unique within the dataset."""

    flows: tuple[Flow, ...] = ()
    work_pools: tuple[WorkPool, ...] = ()
    work_queues: tuple[WorkQueue, ...] = ()
    deployments: tuple[Deployment, ...] = ()
    flow_runs: tuple[FlowRun, ...] = ()
    task_runs: tuple[TaskRun, ...] = ()


# --- three-valued logic -----------------------------------------------------------


def sql_and(values: Iterable[Truth]) -> Truth:
    """SQL AND: False wins, then UNKNOWN; the AND of nothing is True."""
    result: Truth = True
    for value in values:
        if value is False:
            return False
        if value is None:
            result = None
    return result


def sql_or(values: Iterable[Truth]) -> Truth:
    """SQL OR: True wins, then UNKNOWN; the OR of nothing is False (see `combine`)."""
    result: Truth = False
    for value in values:
        if value is True:
            return True
        if value is None:
            result = None
    return result


def sql_not(value: Truth) -> Truth:
    return None if value is None else not value


def combine(conditions: Sequence[Truth], operator: object) -> Truth:
    """A message's value: no condition is TRUE (Prefect returns `sa.true()`), else AND/OR."""
    if not conditions:
        return True
    return sql_or(conditions) if operator == "OPERATOR_OR" else sql_and(conditions)


def is_in(value: object, options: Sequence[object]) -> Truth:
    """`col IN (options)`: an empty list is FALSE even for NULL (SQLAlchemy's empty IN)."""
    if not options:
        return False
    if value is None:
        return None
    return value in options


def not_in(value: object, options: Sequence[object]) -> Truth:
    """`col NOT IN (options)` for a non-empty list: NULL rows are UNKNOWN, so never match."""
    if value is None:
        return None
    return value not in options


def at_or_before(value: datetime | None, bound: datetime) -> Truth:
    return None if value is None else value <= bound


def at_or_after(value: datetime | None, bound: datetime) -> Truth:
    return None if value is None else value >= bound


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def like(value: str, text: str) -> bool:
    """`value ILIKE '%text%'`: `%` is any run, `_` any one character, nothing escaped.

    Case folds for ASCII letters only (SQLite's lower(); the generated data is
    ASCII, where PostgreSQL's ILIKE agrees).
    """
    pattern = "".join(
        ".*" if char == "%" else "." if char == "_" else re.escape(char)
        for char in text.translate(_ASCII_LOWER)
    )
    return re.search(pattern, value.translate(_ASCII_LOWER), re.DOTALL) is not None


def parse_time(text: str) -> datetime:
    """An RFC 3339 timestamp from a request (as generated: UTC with `Z`, microseconds)."""
    return datetime.fromisoformat(text)


def parse_ids(texts: Iterable[str]) -> list[uuid.UUID]:
    """UUIDs in any form the API accepts (hyphenated, 32 hex, braces, `urn:uuid:`)."""
    return [uuid.UUID(text) for text in texts]


# --- the request --------------------------------------------------------------------


def present(message: Mapping[str, Any], field: str) -> bool:
    """Absent and JSON null are the same: no condition."""
    return message.get(field) is not None


def operator_of(message: Mapping[str, Any]) -> object:
    return message.get("operator")


class Evaluator:
    """Answers one request against one dataset; the indexes stand in for SQL joins."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset
        self.flows = {flow.id: flow for flow in dataset.flows}
        self.task_runs = {task_run.id: task_run for task_run in dataset.task_runs}
        self.work_queues = {queue.id: queue for queue in dataset.work_queues}
        self.work_pools = {pool.id: pool for pool in dataset.work_pools}
        self.deployed_flow_ids = {deployment.flow_id for deployment in dataset.deployments}
        self.parent_task_run_ids = {
            run.parent_task_run_id for run in dataset.flow_runs if run.parent_task_run_id
        }

    # -- top level: docs/semantics.md#related-rows --------------------------------

    def matching_flow_ids(self, request: Mapping[str, Any]) -> set[uuid.UUID]:
        """The ids of the flows whose WHERE clause is TRUE."""
        return {flow.id for flow in self.dataset.flows if self.selects(flow, request) is True}

    def selects(self, flow: Flow, request: Mapping[str, Any]) -> Truth:
        conditions: list[Truth] = []
        if present(request, "flows"):
            conditions.append(self.flow_filter(request["flows"], flow))
        if present(request, "deployments") or present(request, "work_pools"):
            conditions.append(self.deployment_exists(flow, request))
        if present(request, "flow_runs") or present(request, "task_runs"):
            conditions.append(self.flow_run_exists(flow, request))
        return sql_and(conditions)

    def deployment_exists(self, flow: Flow, request: Mapping[str, Any]) -> bool:
        """EXISTS a deployment of the flow meeting the deployment filter whose own queue's
        pool meets the work-pool filter (inner joins: no queue, no match)."""
        for deployment in self.dataset.deployments:
            if deployment.flow_id != flow.id:
                continue
            conditions: list[Truth] = []
            if present(request, "deployments"):
                conditions.append(self.deployment_filter(request["deployments"], deployment))
            if present(request, "work_pools"):
                pool = self.pool_of(deployment)
                if pool is None:
                    continue
                conditions.append(self.work_pool_filter(request["work_pools"], pool))
            if sql_and(conditions) is True:
                return True
        return False

    def pool_of(self, deployment: Deployment) -> WorkPool | None:
        if deployment.work_queue_id is None:
            return None
        queue = self.work_queues.get(deployment.work_queue_id)
        return None if queue is None else self.work_pools.get(queue.work_pool_id)

    def flow_run_exists(self, flow: Flow, request: Mapping[str, Any]) -> bool:
        """EXISTS a flow run of the flow meeting the flow-run filter that (when a task-run
        filter is given) has a task run of its own meeting it."""
        for run in self.dataset.flow_runs:
            if run.flow_id != flow.id:
                continue
            if present(request, "flow_runs") and (
                self.flow_run_filter(request["flow_runs"], run) is not True
            ):
                continue
            if not present(request, "task_runs"):
                return True
            for task_run in self.dataset.task_runs:
                if task_run.flow_run_id != run.id:
                    continue
                if self.task_run_filter(request["task_runs"], task_run) is True:
                    return True
        return False

    # -- shared leaf shapes ----------------------------------------------------------

    @staticmethod
    def children(
        message: Mapping[str, Any],
        rules: Mapping[str, Callable[[Mapping[str, Any]], Truth]],
    ) -> Truth:
        """A composite message: each present child's value is one condition (an empty
        child is TRUE), combined with the message's operator."""
        conditions = [
            rule(message[field]) for field, rule in rules.items() if present(message, field)
        ]
        return combine(conditions, operator_of(message))

    @staticmethod
    def tags(message: Mapping[str, Any], tags: tuple[str, ...]) -> Truth:
        """`all` (non-empty: superset), `any` (overlap; `[]` nothing), `is_null` (empty
        list), combined with the operator; tags are NOT NULL, so never UNKNOWN."""
        conditions: list[Truth] = []
        if message.get("all"):
            conditions.append(set(message["all"]) <= set(tags))
        if present(message, "any"):
            conditions.append(bool(set(message["any"]) & set(tags)))
        if present(message, "is_null"):
            conditions.append((not tags) == message["is_null"])
        return combine(conditions, operator_of(message))

    @staticmethod
    def name(message: Mapping[str, Any], value: str) -> Truth:
        """`any` exact IN, `like` (non-empty) ILIKE; always ANDed."""
        conditions: list[Truth] = []
        if present(message, "any"):
            conditions.append(is_in(value, message["any"]))
        if message.get("like"):
            conditions.append(like(value, message["like"]))
        return sql_and(conditions)

    @staticmethod
    def ids(message: Mapping[str, Any], value: uuid.UUID) -> Truth:
        """`any` IN, `not_any` (non-empty) NOT IN; always ANDed."""
        conditions: list[Truth] = []
        if present(message, "any"):
            conditions.append(is_in(value, parse_ids(message["any"])))
        if message.get("not_any"):
            conditions.append(not_in(value, parse_ids(message["not_any"])))
        return sql_and(conditions)

    @staticmethod
    def strings(message: Mapping[str, Any], value: str | None) -> list[Truth]:
        """`any` IN and `not_any` (non-empty) NOT IN on a nullable text column."""
        conditions: list[Truth] = []
        if present(message, "any"):
            conditions.append(is_in(value, message["any"]))
        if message.get("not_any"):
            conditions.append(not_in(value, message["not_any"]))
        return conditions

    @staticmethod
    def times(message: Mapping[str, Any], value: datetime | None) -> Truth:
        """Inclusive `before`/`after` and `is_null` on one timestamp column; ANDed."""
        return Evaluator.start_time(message, value, value)

    @staticmethod
    def is_null(message: Mapping[str, Any], value: object) -> list[Truth]:
        if present(message, "is_null"):
            return [(value is None) == message["is_null"]]
        return []

    @staticmethod
    def state(
        message: Mapping[str, Any],
        state_type: str | None,
        state_name: str | None,
    ) -> Truth:
        """Flow-run and task-run state: a child with no condition is left out (not TRUE);
        a kept child ANDs its own conditions; the kept children combine with the
        operator (none kept: TRUE). See docs/semantics.md#state-filters."""
        kept: list[Truth] = []
        for field, value in (("type", state_type), ("name", state_name)):
            if present(message, field):
                conditions = Evaluator.strings(message[field], value)
                if conditions:
                    kept.append(sql_and(conditions))
        return combine(kept, operator_of(message))

    # -- FlowFilter ------------------------------------------------------------------

    def flow_filter(self, message: Mapping[str, Any], flow: Flow) -> Truth:
        return self.children(
            message,
            {
                "id": lambda m: self.ids(m, flow.id),
                "deployment": lambda m: combine(
                    [(flow.id not in self.deployed_flow_ids) == m["is_null"]]
                    if present(m, "is_null")
                    else [],
                    operator_of(m),
                ),
                "name": lambda m: self.name(m, flow.name),
                "tags": lambda m: self.tags(m, flow.tags),
            },
        )

    # -- FlowRunFilter ---------------------------------------------------------------

    def flow_run_filter(self, message: Mapping[str, Any], run: FlowRun) -> Truth:
        start_or_expected = (
            run.start_time if run.start_time is not None else run.expected_start_time
        )
        return self.children(
            message,
            {
                "id": lambda m: self.ids(m, run.id),
                "name": lambda m: self.name(m, run.name),
                "tags": lambda m: self.tags(m, run.tags),
                "deployment_id": lambda m: combine(
                    ([is_in(run.deployment_id, parse_ids(m["any"]))] if present(m, "any") else [])
                    + self.is_null(m, run.deployment_id),
                    operator_of(m),
                ),
                "work_queue_name": lambda m: combine(
                    ([is_in(run.work_queue_name, m["any"])] if present(m, "any") else [])
                    + self.is_null(m, run.work_queue_name),
                    operator_of(m),
                ),
                "state": lambda m: self.state(m, run.state_type, run.state_name),
                "flow_version": lambda m: sql_and(self.strings(m, run.flow_version)),
                # COALESCE(start_time, expected_start_time) for the bounds; is_null on
                # the raw start_time.
                "start_time": lambda m: self.start_time(m, start_or_expected, run.start_time),
                "end_time": lambda m: self.times(m, run.end_time),
                "expected_start_time": lambda m: self.times(m, run.expected_start_time),
                "next_scheduled_start_time": lambda m: self.times(m, run.next_scheduled_start_time),
                "parent_flow_run_id": lambda m: combine(
                    [run.id in self.subflow_run_ids(parse_ids(m["any"]))]
                    if present(m, "any")
                    else [],
                    operator_of(m),
                ),
                "parent_task_run_id": lambda m: combine(
                    (
                        [is_in(run.parent_task_run_id, parse_ids(m["any"]))]
                        if present(m, "any")
                        else []
                    )
                    + self.is_null(m, run.parent_task_run_id),
                    operator_of(m),
                ),
                "idempotency_key": lambda m: sql_and(self.strings(m, run.idempotency_key)),
                "created_by": lambda m: self.created_by(m, run.created_by),
            },
        )

    @staticmethod
    def start_time(
        message: Mapping[str, Any], compared: datetime | None, null_tested: datetime | None
    ) -> Truth:
        """Inclusive `before`/`after` on `compared`, `is_null` on `null_tested`; ANDed.
        A flow run's start_time compares COALESCE(start_time, expected_start_time) but
        null-tests the raw start_time."""
        conditions: list[Truth] = []
        if present(message, "before"):
            conditions.append(at_or_before(compared, parse_time(message["before"])))
        if present(message, "after"):
            conditions.append(at_or_after(compared, parse_time(message["after"])))
        if present(message, "is_null"):
            conditions.append((null_tested is None) == message["is_null"])
        return sql_and(conditions)

    def subflow_run_ids(self, parent_run_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        """Runs whose parent task run belongs to one of the given flow runs.

        See docs/semantics.md#subflows.
        """
        result: set[uuid.UUID] = set()
        for run in self.dataset.flow_runs:
            if run.parent_task_run_id is None:
                continue
            parent = self.task_runs.get(run.parent_task_run_id)
            if parent is not None and is_in(parent.flow_run_id, parent_run_ids) is True:
                result.add(run.id)
        return result

    @staticmethod
    def created_by(message: Mapping[str, Any], created_by: CreatedBy | None) -> Truth:
        """The JSON's "id"/"type" text IN the list (a NULL column or JSON null is
        UNKNOWN); ids compare as Prefect renders a UUID: lower-case, hyphenated."""
        creator_id = None if created_by is None else created_by.id
        creator_type = None if created_by is None else created_by.type
        conditions: list[Truth] = []
        if present(message, "id"):
            wanted = [str(identifier) for identifier in parse_ids(message["id"])]
            conditions.append(is_in(creator_id, wanted))
        if present(message, "type"):
            conditions.append(is_in(creator_type, message["type"]))
        if present(message, "is_null"):
            conditions.append((created_by is None) == message["is_null"])
        return combine(conditions, operator_of(message))

    # -- TaskRunFilter ---------------------------------------------------------------

    def task_run_filter(self, message: Mapping[str, Any], task_run: TaskRun) -> Truth:
        return self.children(
            message,
            {
                "id": lambda m: self.ids(m, task_run.id),
                "name": lambda m: self.name(m, task_run.name),
                "tags": lambda m: self.tags(m, task_run.tags),
                "state": lambda m: self.state(m, task_run.state_type, task_run.state_name),
                "start_time": lambda m: self.times(m, task_run.start_time),
                "end_time": lambda m: self.times(m, task_run.end_time),
                "expected_start_time": lambda m: self.times(m, task_run.expected_start_time),
                "subflow_runs": lambda m: sql_and(
                    [(task_run.id in self.parent_task_run_ids) == m["exists"]]
                    if present(m, "exists")
                    else []
                ),
                "flow_run_id": lambda m: self.flow_run_id(m, task_run.flow_run_id),
            },
        )

    @staticmethod
    def flow_run_id(message: Mapping[str, Any], flow_run_id: uuid.UUID | None) -> Truth:
        """`is_null` defaults to false: true → IS NULL (`any` ignored); otherwise `any`
        → IN, and without `any` → IS NOT NULL. At most one condition."""
        if message.get("is_null", False):
            return flow_run_id is None
        if present(message, "any"):
            return is_in(flow_run_id, parse_ids(message["any"]))
        return flow_run_id is not None

    # -- DeploymentFilter and WorkPoolFilter -----------------------------------------

    def deployment_filter(self, message: Mapping[str, Any], deployment: Deployment) -> Truth:
        flow_name = self.flows[deployment.flow_id].name
        return self.children(
            message,
            {
                "id": lambda m: self.ids(m, deployment.id),
                "name": lambda m: self.name(m, deployment.name),
                "flow_or_deployment_name": lambda m: sql_and(
                    [like(deployment.name, m["like"]) or like(flow_name, m["like"])]
                    if m.get("like")
                    else []
                ),
                "paused": lambda m: sql_and(
                    [deployment.paused == m["eq"]] if present(m, "eq") else []
                ),
                "tags": lambda m: self.tags(m, deployment.tags),
                "work_queue_name": lambda m: sql_and(
                    [is_in(deployment.work_queue_name, m["any"])] if present(m, "any") else []
                ),
                # "concurrency_limit" is deprecated and ignored: Prefect's DeploymentFilter
                # never adds it to its list, so it is not even a TRUE child.
            },
        )

    def work_pool_filter(self, message: Mapping[str, Any], pool: WorkPool) -> Truth:
        return self.children(
            message,
            {
                "id": lambda m: sql_and(
                    [is_in(pool.id, parse_ids(m["any"]))] if present(m, "any") else []
                ),
                "name": lambda m: sql_and(
                    [is_in(pool.name, m["any"])] if present(m, "any") else []
                ),
                "type": lambda m: sql_and(
                    [is_in(pool.type, m["any"])] if present(m, "any") else []
                ),
            },
        )


def matching_flow_ids(dataset: Dataset, request: Mapping[str, Any]) -> set[uuid.UUID]:
    """The ids of the flows that ReadFlows/CountFlows must select for `request`."""
    return Evaluator(dataset).matching_flow_ids(request)


def expected_names(dataset: Dataset, request: Mapping[str, Any]) -> list[str]:
    """The selected flows' names in ReadFlows' default order (code points = UTF-8 bytes)."""
    chosen = matching_flow_ids(dataset, request)
    return sorted(flow.name for flow in dataset.flows if flow.id in chosen)
