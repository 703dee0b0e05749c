"""FlowSort values as ORDER BY clauses.

Names are unique, so the name sorts are total orders already; the time sorts
add the id, so that flows created or updated in the same microsecond keep a
stable order across pages.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flowservice.v1 import flow_service_pb2
from flowservice_server.db.tables import flow

if TYPE_CHECKING:
    import sqlalchemy as sa

ORDER_BY: dict[int, tuple[sa.UnaryExpression[Any], ...]] = {
    flow_service_pb2.FLOW_SORT_UNSPECIFIED: (flow.c.name.asc(),),
    flow_service_pb2.FLOW_SORT_NAME_ASC: (flow.c.name.asc(),),
    flow_service_pb2.FLOW_SORT_NAME_DESC: (flow.c.name.desc(),),
    flow_service_pb2.FLOW_SORT_CREATED_DESC: (flow.c.created.desc(), flow.c.id.desc()),
    flow_service_pb2.FLOW_SORT_UPDATED_DESC: (flow.c.updated.desc(), flow.c.id.desc()),
}
