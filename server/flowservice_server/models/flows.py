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
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from flowservice_server.db.dialect import insert_ignoring_conflict
from flowservice_server.db.tables import flow

if TYPE_CHECKING:
    from collections.abc import Sequence

FlowRow = sa.Row[Any]
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


def read_flows(
    connection: sa.Connection,
    *,
    where: Sequence[sa.ColumnElement[bool]],
    order_by: Sequence[sa.UnaryExpression[Any]],
    offset: int,
    limit: int,
) -> Sequence[FlowRow]:
    query = sa.select(*_COLUMNS).where(*where).order_by(*order_by).offset(offset).limit(limit)
    return connection.execute(query).all()


def count_flows(connection: sa.Connection, *, query: sa.Select[Any]) -> int:
    """Run a count built by `filters.count_for` (one row, one number)."""
    return int(connection.execute(query).scalar_one())


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
