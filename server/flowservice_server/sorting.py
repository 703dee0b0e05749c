"""FlowSort values as ORDER BY clauses, and the keyset condition for the page after a flow.

Names are unique, so the name sorts are total orders already; the time sorts
add the id, so that flows created or updated in the same microsecond keep a
stable order across pages.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from flowservice.v1 import flow_service_pb2
from flowservice_server.db.tables import flow
from flowservice_server.page_tokens import NAME_SORTS, Position

if TYPE_CHECKING:
    from collections.abc import Sequence

    from flowservice_server.models.flows import Clause

ORDER_BY: dict[int, tuple[sa.UnaryExpression[Any], ...]] = {
    flow_service_pb2.FLOW_SORT_UNSPECIFIED: (flow.c.name.asc(),),
    flow_service_pb2.FLOW_SORT_NAME_ASC: (flow.c.name.asc(),),
    flow_service_pb2.FLOW_SORT_NAME_DESC: (flow.c.name.desc(),),
    flow_service_pb2.FLOW_SORT_CREATED_DESC: (flow.c.created.desc(), flow.c.id.desc()),
    flow_service_pb2.FLOW_SORT_UPDATED_DESC: (flow.c.updated.desc(), flow.c.id.desc()),
}


# --- keyset paging -----------------------------------------------------------------
#
# A page token names the last flow of the previous page (`page_tokens.Position`);
# the next page is the flows after it in exactly the ORDER BY above. Values are
# bound through the columns' own types, so each database compares them as it
# sorts them: text on SQLite (Prefect's fixed-width UTC time text, 36-character
# ids), timestamptz and uuid on PostgreSQL. The time sorts are written in the
# expanded form `t <= :t AND (t < :t OR id < :id)`, whose first conjunct is a
# range on the column's index on both databases.


def after(sort: int, position: Position) -> Clause:
    """The condition for the flows that follow `position` in `sort`'s order."""
    key = position.key
    if sort in NAME_SORTS:
        assert isinstance(key, str)
        if sort == flow_service_pb2.FLOW_SORT_NAME_DESC:
            return flow.c.name < key
        return flow.c.name > key  # names are unique: the name alone is the position
    assert isinstance(key, datetime)
    column = _TIME_COLUMN[sort]
    return sa.and_(column <= key, sa.or_(column < key, flow.c.id < position.flow_id))


def position_of(sort: int, row: Sequence[Any]) -> Position:
    """The position of a page's row (as `models.flows` reads it) in `sort`'s order."""
    flow_id, created, updated, name = row[:4]
    flow_uuid = flow_id if isinstance(flow_id, uuid.UUID) else uuid.UUID(str(flow_id))
    if sort in NAME_SORTS:
        return Position(name, flow_uuid)
    stored = created if sort == flow_service_pb2.FLOW_SORT_CREATED_DESC else updated
    return Position(_instant(stored), flow_uuid)


_TIME_COLUMN: dict[int, sa.Column[Any]] = {
    flow_service_pb2.FLOW_SORT_CREATED_DESC: flow.c.created,
    flow_service_pb2.FLOW_SORT_UPDATED_DESC: flow.c.updated,
}


def _instant(stored: str | datetime) -> datetime:
    """A stored time as the driver returns it (SQLite: UTC text; asyncpg: aware) made aware."""
    if isinstance(stored, str):
        return datetime.fromisoformat(stored).replace(tzinfo=UTC)
    if stored.tzinfo is None:
        return stored.replace(tzinfo=UTC)
    return stored.astimezone(UTC)
