"""Prefect's seven flow model functions, as Core statements over a connection.

What each does is in docs/semantics.md#operations.

Plain functions of a connection, run as units of work by `db.engine.Database`:
the caller owns the connection and its transaction; nothing here commits.
Statements are built once and take their values as bound parameters, so
SQLAlchemy compiles each shape once. Writes use RETURNING instead of
read-then-write.
"""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeGuard

import sqlalchemy as sa
from sqlalchemy.sql import util as sql_util

from flowservice_server.db.dialect import insert_ignoring_conflict
from flowservice_server.db.tables import deployment, flow, flow_run, task_run, work_pool, work_queue

if TYPE_CHECKING:
    from collections.abc import Sequence

FlowRow = sa.Row[Any]
Clause = sa.ColumnElement[bool]
#: The columns a response needs, as the driver returns them: id, created and
#: updated skip their column types' conversions (text -> UUID/datetime ->
#: text/Timestamp on every row); `convert` turns the stored values into
#: message fields directly (it unpacks rows in this order). Tags and labels
#: keep their JSON decoding.
_COLUMNS = (
    sa.type_coerce(flow.c.id, sa.String()).label("id"),
    sa.type_coerce(flow.c.created, sa.String()).label("created"),
    sa.type_coerce(flow.c.updated, sa.String()).label("updated"),
    flow.c.name,
    flow.c.tags,
    flow.c.labels,
)

_BY_ID = sa.select(*_COLUMNS).where(flow.c.id == sa.bindparam("flow_id"))
_BY_NAME = sa.select(*_COLUMNS).where(flow.c.name == sa.bindparam("name"))
_TOUCH = (
    sa.update(flow)
    .where(flow.c.id == sa.bindparam("flow_id"))
    .values(updated=sa.bindparam("now"))
    .returning(*_COLUMNS)
)
_SET_TAGS = _TOUCH.values(tags=sa.bindparam("tags"))
_DELETE = sa.delete(flow).where(flow.c.id == sa.bindparam("flow_id"))


@functools.cache
def _insert_unless_named(dialect_name: str) -> sa.Insert:
    return insert_ignoring_conflict(dialect_name, flow, [flow.c.name]).returning(*_COLUMNS)


def create_flow(
    connection: sa.Connection, *, name: str, tags: list[str], labels: dict[str, Any] | None
) -> tuple[FlowRow, bool]:
    """Get-or-create by name: the row, and whether it was inserted just now.

    An existing name is read without writing (no write lock, nothing to
    commit). Otherwise INSERT … ON CONFLICT (name) DO NOTHING cannot fail on a
    concurrent create of the same name; when it inserts nothing, the row the
    other call inserted is read unchanged.
    """
    existing = connection.execute(_BY_NAME, {"name": name}).one_or_none()
    if existing is not None:
        return existing, False
    now = datetime.now(UTC)
    insert = _insert_unless_named(connection.dialect.name)
    values = {"id": uuid.uuid4(), "created": now, "updated": now, "name": name}
    result = connection.execute(insert, {**values, "tags": tags, "labels": labels})
    inserted = result.one_or_none()
    if inserted is not None:
        return inserted, True
    return connection.execute(_BY_NAME, {"name": name}).one(), False


def read_flow(connection: sa.Connection, flow_id: uuid.UUID) -> FlowRow | None:
    return connection.execute(_BY_ID, {"flow_id": flow_id}).one_or_none()


def read_flow_by_name(connection: sa.Connection, name: str) -> FlowRow | None:
    return connection.execute(_BY_NAME, {"name": name}).one_or_none()


@dataclass(frozen=True)
class FlowFilters:
    """A flow query's five filters, compiled by `filters.flow_filters`.

    Each is a condition on its own table's rows, or None when the request
    leaves that filter out.
    """

    flows: Clause | None = None
    flow_runs: Clause | None = None
    task_runs: Clause | None = None
    deployments: Clause | None = None
    work_pools: Clause | None = None
    #: On the flow_run table too, but met by the flow's latest run.
    latest_flow_run: Clause | None = None


def read_flows(
    connection: sa.Connection,
    *,
    filters: FlowFilters,
    order_by: Sequence[sa.UnaryExpression[Any]],
    offset: int,
    limit: int,
) -> Sequence[FlowRow]:
    query = (
        sa.select(*_COLUMNS)
        .where(*flow_conditions(filters))
        .order_by(*order_by)
        .offset(offset)
        .limit(limit)
    )
    return connection.execute(query).all()


def count_flows(connection: sa.Connection, *, filters: FlowFilters) -> int:
    """The number of flows `read_flows` would find without a page size.

    When only run conditions are given, the matching flows are counted from
    the runs themselves: count(DISTINCT flow_run.flow_id) equals the number
    of flows with such a run, because flow_run.flow_id is a NOT NULL foreign
    key to flow. It reads one index range instead of building the set of
    flow ids and probing the flow table with it (docs/semantics.md#query-shapes).
    """
    about_flows = (
        filters.flows is not None
        or filters.deployments is not None
        or filters.work_pools is not None
        or filters.latest_flow_run is not None
    )
    others = (
        filters.flows,
        filters.flow_runs,
        filters.task_runs,
        filters.deployments,
        filters.work_pools,
    )
    if filters.latest_flow_run is not None and all(other is None for other in others):
        query = _count_latest_only(filters.latest_flow_run)
    elif not about_flows and (filters.flow_runs is not None or filters.task_runs is not None):
        source, conditions = _run_conditions(filters)
        distinct_flows = sa.func.count(sa.distinct(flow_run.c.flow_id))
        query = sa.select(distinct_flows).select_from(source).where(*conditions)
    else:
        query = sa.select(sa.func.count()).select_from(flow).where(*flow_conditions(filters))
    return int(connection.execute(query).scalar_one())


def _count_latest_only(condition: Clause) -> sa.Select[Any]:
    """Flows whose latest run meets `condition`, counted from the runs that meet it.

    Only a flow with some run meeting the condition can have a latest run that
    does (that run is one of its runs), so the candidates are the distinct
    flow ids of such runs: for a state condition, one range of the
    (state_type, flow_id) index, already in flow_id order. Each candidate's
    latest run is then checked as in `_latest_run_meets`. Fewer flows are
    visited than with a walk over every flow (a third, for FAILED, in the
    benchmark's data set), and each distinct flow id is a flow, because
    flow_run.flow_id is a NOT NULL foreign key to flow.
    """
    candidate = sa.select(flow_run.c.flow_id).where(condition).distinct().subquery("candidate")
    latest = _latest_run_meets(condition, candidate.c.flow_id)
    return sa.select(sa.func.count()).select_from(candidate).where(latest)


def flow_conditions(filters: FlowFilters) -> list[Clause]:
    """The flow query's WHERE conditions, all ANDed (docs/semantics.md#related-rows).

    Related-entity filters become semi-joins: `flow.id IN (SELECT flow_id …)`.
    That is the same as Prefect's correlated EXISTS (the flow_id columns are
    NOT NULL) and lets SQLite evaluate the subquery once instead of per flow.
    """
    clauses: list[Clause] = []
    if filters.flows is not None:
        clauses.append(filters.flows)
    if filters.deployments is not None or filters.work_pools is not None:
        clauses.append(flow.c.id.in_(_deployment_flow_ids(filters)))
    if filters.flow_runs is not None or filters.task_runs is not None:
        source, conditions = _run_conditions(filters)
        clauses.append(
            flow.c.id.in_(sa.select(flow_run.c.flow_id).select_from(source).where(*conditions))
        )
    if filters.latest_flow_run is not None:
        clauses.append(_latest_run_meets(filters.latest_flow_run))
    return clauses


def _is_flow_run_column(element: Any) -> TypeGuard[sa.Column[Any]]:
    """A column of the flow_run table itself (not of one of its aliases)."""
    return isinstance(element, sa.Column) and element.table is flow_run


def _latest_run_meets(condition: Clause, flow_id: sa.ColumnElement[Any] = flow.c.id) -> Clause:
    """The latest run of the flow `flow_id` names meets `condition` (a condition on flow_run).

    The latest run is the one with the greatest start_time, runs never started
    left out, ties broken by the greater id. A correlated LIMIT 1 subquery in
    (flow_id, start_time, id, state_type) order finds it with one seek per
    flow; it selects only the columns `condition` reads, so a condition on the
    state type is checked on that index entry alone, without reading the
    table (the usual question; bench/RESULTS.md#latest-run). Any other
    condition reads the one row. A listing in name order stops once its page
    is full.
    """
    read = [flow_run.c.id]
    for element in sa.sql.visitors.iterate(condition):
        if _is_flow_run_column(element) and element not in read:
            read.append(element)
    latest = (
        sa.select(*read)
        .where(flow_run.c.flow_id == flow_id, flow_run.c.start_time.is_not(None))
        .order_by(flow_run.c.start_time.desc(), flow_run.c.id.desc())
        .limit(1)
        .correlate_except(flow_run)
        .subquery("latest_run")
    )
    on_latest = sql_util.ClauseAdapter(latest, include_fn=_is_flow_run_column)
    return sa.exists().select_from(latest).where(on_latest.traverse(condition))


def _deployment_flow_ids(filters: FlowFilters) -> sa.Select[Any]:
    """Flows with a deployment that meets `deployments` and sits in a pool meeting `work_pools`."""
    source: sa.FromClause = deployment
    conditions: list[Clause] = []
    if filters.deployments is not None:
        conditions.append(filters.deployments)
    if filters.work_pools is not None:
        source = deployment.join(work_queue, work_queue.c.id == deployment.c.work_queue_id).join(
            work_pool, work_pool.c.id == work_queue.c.work_pool_id
        )
        conditions.append(filters.work_pools)
    return sa.select(deployment.c.flow_id).select_from(source).where(*conditions)


def _run_conditions(filters: FlowFilters) -> tuple[sa.FromClause, list[Clause]]:
    """Flow runs that meet `flow_runs` and have a task run meeting `task_runs`."""
    source: sa.FromClause = flow_run
    conditions: list[Clause] = []
    if filters.flow_runs is not None:
        conditions.append(filters.flow_runs)
    if filters.task_runs is not None:
        source = flow_run.join(task_run, task_run.c.flow_run_id == flow_run.c.id)
        conditions.append(filters.task_runs)
    return source, conditions


def update_flow(
    connection: sa.Connection, flow_id: uuid.UUID, *, tags: list[str] | None
) -> FlowRow | None:
    """Replace the tags (when given) and set `updated`; None when there is no such flow."""
    params: dict[str, Any] = {"flow_id": flow_id, "now": datetime.now(UTC)}
    if tags is None:
        return connection.execute(_TOUCH, params).one_or_none()
    return connection.execute(_SET_TAGS, {**params, "tags": tags}).one_or_none()


def delete_flow(connection: sa.Connection, flow_id: uuid.UUID) -> bool:
    """Delete the flow; the database's foreign keys cascade to runs and deployments.

    See docs/semantics.md#cascades.
    """
    result = connection.execute(_DELETE, {"flow_id": flow_id})
    return result.rowcount == 1
