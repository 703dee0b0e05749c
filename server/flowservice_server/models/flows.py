"""Prefect's seven flow model functions, as Core statements over a connection, and
FlowService's batch and conditional (etag) writes.

What each does is in docs/semantics.md#operations.

Plain functions of a connection, run as units of work by `db.engine.Database`:
the caller owns the connection and its transaction; nothing here commits.
Statements are built once and take their values as bound parameters, so
SQLAlchemy compiles each shape once. Writes use RETURNING instead of
read-then-write; a conditional write reads, then writes only WHERE what it read
still holds (compare-and-set).
"""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeGuard

import sqlalchemy as sa
from sqlalchemy.sql import util as sql_util

from flowservice_server.convert import epoch_parts, row_etag
from flowservice_server.db.dialect import insert_ignoring_conflict
from flowservice_server.db.engine import DirectPlan, direct_read, short_read, short_write
from flowservice_server.db.tables import deployment, flow, flow_run, task_run, work_pool, work_queue

if TYPE_CHECKING:
    from collections.abc import Sequence

FlowRow = sa.Row[Any]
Clause = sa.ColumnElement[bool]


#: The columns a response needs, as the driver returns them: every column
#: skips its type's conversion (text -> UUID/datetime -> text/Timestamp, JSON
#: text -> list/dict, on every row); `convert` turns the stored values into
#: message fields directly (it unpacks rows in this order, and decodes tags and
#: labels), and keys its memo of serialized flows by this raw row.
def response_columns(table: sa.Table) -> tuple[sa.ColumnElement[Any], ...]:
    """A flow's response columns from `table` (`flow`, or a table with a copy of its columns)."""
    return (
        sa.type_coerce(table.c.id, sa.String()).label("id"),
        sa.type_coerce(table.c.created, sa.String()).label("created"),
        sa.type_coerce(table.c.updated, sa.String()).label("updated"),
        table.c.name,
        sa.cast(table.c.tags, sa.Text()).label("tags"),  # asyncpg would decode json(b)
        sa.cast(table.c.labels, sa.Text()).label("labels"),
    )


_COLUMNS = response_columns(flow)

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


@short_write("create flow")
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


@short_read("flow by id", statement=_BY_ID)
def read_flow(connection: sa.Connection, flow_id: uuid.UUID) -> FlowRow | None:
    return connection.execute(_BY_ID, {"flow_id": flow_id}).one_or_none()


@short_read("flow by name", statement=_BY_NAME)
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

    @property
    def empty(self) -> bool:
        """No filter at all: every flow matches."""
        return all(
            clause is None
            for clause in (
                self.flows,
                self.flow_runs,
                self.task_runs,
                self.deployments,
                self.work_pools,
                self.latest_flow_run,
            )
        )


def read_flows(
    connection: sa.Connection,
    *,
    filters: FlowFilters,
    order_by: Sequence[sa.UnaryExpression[Any]],
    offset: int,
    limit: int,
    after: Clause | None = None,
) -> Sequence[FlowRow]:
    """The flows matching `filters`, in order; `after`: only those after a page token's flow."""
    query = _flows_query(filters, order_by, offset, limit, after)
    return connection.execute(query).all()


def _flows_query(
    filters: FlowFilters,
    order_by: Sequence[sa.UnaryExpression[Any]],
    offset: int,
    limit: int,
    after: Clause | None,
) -> sa.Select[Any]:
    conditions = flow_conditions(filters)
    if after is not None:
        conditions.append(after)
    return sa.select(*_COLUMNS).where(*conditions).order_by(*order_by).offset(offset).limit(limit)


@dataclass(frozen=True)
class FlowPage:
    """One ReadFlows page: its rows, whether more flows follow, and the total when asked."""

    rows: Sequence[Sequence[Any]]  # Rows, or the driver's tuples (`page_plan`): equal
    more: bool
    total_size: int | None


#: The page without filters nor page token, per sort (by the identity of its ORDER BY
#: columns): built once, offset and limit as parameters, so that a driver running it
#: directly (`page_plan`) neither builds the statement nor derives its cache key per call.
_UNFILTERED_PAGES: dict[tuple[int, ...], sa.Select[Any]] = {}


#: Sorts are `sorting.ORDER_BY`'s few constants; an ORDER BY built per call is not kept.
_UNFILTERED_PAGES_KEPT = 16


def _unfiltered_page(order_by: Sequence[sa.UnaryExpression[Any]]) -> sa.Select[Any] | None:
    key = tuple(map(id, order_by))  # the statement holds the columns: their ids stay theirs
    statement = _UNFILTERED_PAGES.get(key)
    if statement is None:
        if len(_UNFILTERED_PAGES) >= _UNFILTERED_PAGES_KEPT:
            return None
        statement = (
            sa.select(*_COLUMNS)
            .order_by(*order_by)
            .offset(sa.bindparam("page_offset", type_=sa.Integer()))
            .limit(sa.bindparam("page_limit", type_=sa.Integer()))
        )
        _UNFILTERED_PAGES[key] = statement
    return statement


def page_plan(
    *,
    filters: FlowFilters,
    order_by: Sequence[sa.UnaryExpression[Any]],
    after: Clause | None,
    offset: int,
    limit: int,
    with_total_size: bool,
) -> DirectPlan:
    """`read_flow_page` as its statements, for a driver to run directly (`db.sqlite_inline`).

    The same statements `read_flow_page` executes (the page without filters nor
    token in an equal form with its offset and limit as parameters), so the
    rows are the same; with the total, both are read in one snapshot.
    """
    statements: list[tuple[sa.Select[Any], dict[str, Any]]] = []
    if limit > 0:
        template = _unfiltered_page(order_by) if filters.empty and after is None else None
        if template is not None:
            values = {"page_offset": offset, "page_limit": limit + 1}
            statements.append((template, values))
        else:
            statements.append((_flows_query(filters, order_by, offset, limit + 1, after), {}))
    if with_total_size:
        statements.append((_count_query(filters), {}))

    def finish(results: list[list[tuple[Any, ...]]]) -> FlowPage:
        rows = results[0] if limit > 0 else []
        total_size = int(results[-1][0][0]) if with_total_size else None
        return FlowPage(rows=rows[:limit], more=len(rows) > limit, total_size=total_size)

    return DirectPlan(statements=tuple(statements), finish=finish)


@direct_read(page_plan)
def read_flow_page(
    connection: sa.Connection,
    *,
    filters: FlowFilters,
    order_by: Sequence[sa.UnaryExpression[Any]],
    after: Clause | None,
    offset: int,
    limit: int,
    with_total_size: bool,
) -> FlowPage:
    """A page of `read_flows`, reading one row past it to know whether another page follows.

    With `with_total_size`, also `count_flows`: run it in a snapshot read
    (`Database.read(…, snapshot=True)`) for the count to agree with the page.
    """
    rows: Sequence[Sequence[Any]] = []
    if limit > 0:
        rows = read_flows(
            connection,
            filters=filters,
            order_by=order_by,
            offset=offset,
            limit=limit + 1,
            after=after,
        )
    total_size = count_flows(connection, filters=filters) if with_total_size else None
    return FlowPage(rows=rows[:limit], more=len(rows) > limit, total_size=total_size)


def stream_flows(
    *,
    filters: FlowFilters,
    order_by: Sequence[sa.UnaryExpression[Any]],
    limit: int | None,
) -> sa.Select[Any]:
    """The StreamFlows query: `read_flows`' filters and order, no offset, any limit.

    A statement rather than a function of a connection: `Database.stream`
    runs it through a cursor and fetches its rows a batch at a time.
    """
    query = sa.select(*_COLUMNS).where(*flow_conditions(filters)).order_by(*order_by)
    return query if limit is None else query.limit(limit)


def count_flows(connection: sa.Connection, *, filters: FlowFilters) -> int:
    """The number of flows `read_flows` would find without a page size.

    When only run conditions are given, the matching flows are counted from
    the runs themselves: count(DISTINCT flow_run.flow_id) equals the number
    of flows with such a run, because flow_run.flow_id is a NOT NULL foreign
    key to flow. It reads one index range instead of building the set of
    flow ids and probing the flow table with it (docs/semantics.md#query-shapes).
    """
    return int(connection.execute(_count_query(filters)).scalar_one())


def _count_query(filters: FlowFilters) -> sa.Select[Any]:
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
    return query


_COUNT_ALL = sa.select(sa.func.count()).select_from(flow)


@short_read("count of all flows", statement=_COUNT_ALL, answer="count")
def count_all_flows(connection: sa.Connection) -> int:
    """`count_flows` without filters: one walk of the smallest index of `flow`.

    Short while the table is; on a large one the inline read's budget stops it
    and its shape goes to worker threads (`db.sqlite_inline`).
    """
    return int(connection.execute(_COUNT_ALL).scalar_one())


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


@short_write("update flow")
def update_flow(
    connection: sa.Connection, flow_id: uuid.UUID, *, tags: list[str] | None
) -> FlowRow | None:
    """Replace the tags (when given) and set `updated`; None when there is no such flow."""
    params: dict[str, Any] = {"flow_id": flow_id, "now": datetime.now(UTC)}
    if tags is None:
        return connection.execute(_TOUCH, params).one_or_none()
    return connection.execute(_SET_TAGS, {**params, "tags": tags}).one_or_none()


@short_write("delete flow")
def delete_flow(connection: sa.Connection, flow_id: uuid.UUID) -> bool:
    """Delete the flow; the database's foreign keys cascade to runs and deployments.

    See docs/semantics.md#cascades.
    """
    result = connection.execute(_DELETE, {"flow_id": flow_id})
    return result.rowcount == 1


# --- batches -------------------------------------------------------------------------

_BY_IDS = sa.select(*_COLUMNS).where(flow.c.id.in_(sa.bindparam("flow_ids", expanding=True)))
_BY_NAMES = sa.select(*_COLUMNS).where(flow.c.name.in_(sa.bindparam("names", expanding=True)))
#: Positions in a `_COLUMNS` row.
_ID, _NAME = 0, 3
#: Rounds of insert-then-read one batch create makes before giving up (see below).
_CREATE_ROUNDS = 3


def batch_read_flows(
    connection: sa.Connection, *, flow_ids: Sequence[uuid.UUID], names: Sequence[str]
) -> tuple[list[FlowRow | None], list[FlowRow | None]]:
    """The rows of `flow_ids` and of `names`, each in the order given, None where missing.

    One query per list (`IN`, each distinct value once), however many items.
    """
    by_id: dict[str, FlowRow] = {}
    by_name: dict[str, FlowRow] = {}
    if flow_ids:
        distinct_ids = list(dict.fromkeys(flow_ids))
        for row in connection.execute(_BY_IDS, {"flow_ids": distinct_ids}):
            by_id[str(row[_ID]).lower()] = row
    if names:
        for row in connection.execute(_BY_NAMES, {"names": list(dict.fromkeys(names))}):
            by_name[row[_NAME]] = row
    return [by_id.get(str(i)) for i in flow_ids], [by_name.get(n) for n in names]


def batch_create_flows(
    connection: sa.Connection,
    *,
    new_flows: Sequence[tuple[str, list[str], dict[str, Any] | None]],
) -> list[tuple[FlowRow, bool]]:
    """Get-or-create each (name, tags, labels), in one transaction, answers in request order.

    A name given twice makes one flow, from its first request; only that first
    answer can say `created`. Existing names are read first, without writing.
    The rest are inserted in one statement, sorted by name, with ON CONFLICT
    (name) DO NOTHING RETURNING: two batches that share names take the name
    index's locks in the same order, so neither fails on the other's insert
    nor deadlocks with it, and whichever commits second finds the first's
    rows. Those it did not insert are then read. A flow of the batch that
    someone deletes between the insert and that read is inserted again (a
    few rounds at most).
    """
    first: dict[str, tuple[list[str], dict[str, Any] | None]] = {}
    for name, tags, labels in new_flows:
        first.setdefault(name, (tags, labels))
    rows = {row[_NAME]: row for row in connection.execute(_BY_NAMES, {"names": list(first)})}
    inserted: set[str] = set()
    insert = _insert_unless_named(connection.dialect.name)
    for _ in range(_CREATE_ROUNDS):
        missing = sorted(name for name in first if name not in rows)
        if not missing:
            break
        now = datetime.now(UTC)
        values = [
            {
                "id": uuid.uuid4(),
                "created": now,
                "updated": now,
                "name": name,
                "tags": first[name][0],
                "labels": first[name][1],
            }
            for name in missing
        ]
        for row in connection.execute(insert, values):
            rows[row[_NAME]] = row
            inserted.add(row[_NAME])
        others = [name for name in missing if name not in rows]
        if others:
            for row in connection.execute(_BY_NAMES, {"names": others}):
                rows[row[_NAME]] = row
    else:
        if len(rows) < len(first):
            raise RuntimeError("flows of the batch kept being deleted as they were created")
    answers: list[tuple[FlowRow, bool]] = []
    for name, _, _ in new_flows:
        created = name in inserted
        inserted.discard(name)  # a repeated name: only its first answer was created
        answers.append((rows[name], created))
    return answers


# --- conditional writes (etags) --------------------------------------------------------


class StaleFlowError(Exception):
    """The flow is not as the given etag says; raised so that the unit of work rolls back."""


#: The columns an etag derives from, as text in the database's own form, to write
#: only if none has changed since they were read (compare-and-set).
_GUARDED = (flow.c.updated, flow.c.name, flow.c.tags, flow.c.labels)
_GUARD_TEXT = tuple(sa.cast(column, sa.Text()) for column in _GUARDED)
_FOR_GUARDED_WRITE = sa.select(*_COLUMNS, *_GUARD_TEXT).where(flow.c.id == sa.bindparam("flow_id"))
_UNCHANGED = sa.and_(
    *(
        text.is_not_distinct_from(sa.bindparam(f"was_{column.name}", type_=sa.Text()))
        for column, text in zip(_GUARDED, _GUARD_TEXT, strict=True)
    )
)
_TOUCH_IF_UNCHANGED = _TOUCH.where(_UNCHANGED)
_SET_TAGS_IF_UNCHANGED = _SET_TAGS.where(_UNCHANGED)
_DELETE_IF_UNCHANGED = _DELETE.where(_UNCHANGED)
_ONE_MICROSECOND = timedelta(microseconds=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _read_for_guarded_write(
    connection: sa.Connection, flow_id: uuid.UUID, etag: str
) -> tuple[Sequence[Any], dict[str, Any]] | None:
    """The flow's row and its guard parameters; None when missing; StaleFlowError if stale."""
    current = connection.execute(_FOR_GUARDED_WRITE, {"flow_id": flow_id}).one_or_none()
    if current is None:
        return None
    row = current[: len(_COLUMNS)]
    if row_etag(row) != etag:
        raise StaleFlowError
    guard_values = current[len(_COLUMNS) :]
    guard = {f"was_{c.name}": value for c, value in zip(_GUARDED, guard_values, strict=True)}
    return row, guard


def update_flow_if_unchanged(
    connection: sa.Connection, flow_id: uuid.UUID, *, tags: list[str] | None, etag: str
) -> FlowRow | None:
    """`update_flow`, only if the flow still has `etag`: StaleFlowError otherwise.

    The row is read, its etag compared, and the UPDATE is made on condition
    that the columns the etag derives from still hold what was read; a write
    that came in between (committed first, or holding the row until it
    commits) leaves it no row to update. The new `updated` is later than the
    old, even if the clock is not, so that the etag changes.
    """
    found = _read_for_guarded_write(connection, flow_id, etag)
    if found is None:
        return None
    row, guard = found
    seconds, micros = epoch_parts(row[2])
    was = _EPOCH + timedelta(seconds=seconds, microseconds=micros)
    now = max(datetime.now(UTC), was + _ONE_MICROSECOND)
    params: dict[str, Any] = {"flow_id": flow_id, "now": now, **guard}
    if tags is not None:
        params["tags"] = tags
    statement = _TOUCH_IF_UNCHANGED if tags is None else _SET_TAGS_IF_UNCHANGED
    updated = connection.execute(statement, params).one_or_none()
    if updated is None:
        raise StaleFlowError
    return updated


def delete_flow_if_unchanged(connection: sa.Connection, flow_id: uuid.UUID, *, etag: str) -> bool:
    """`delete_flow`, only if the flow still has `etag`: StaleFlowError otherwise."""
    found = _read_for_guarded_write(connection, flow_id, etag)
    if found is None:
        return False
    _, guard = found
    if connection.execute(_DELETE_IF_UNCHANGED, {"flow_id": flow_id, **guard}).rowcount != 1:
        raise StaleFlowError
    return True
