"""Database rows become response messages."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flowservice.v1 import flow_pb2

if TYPE_CHECKING:
    import sqlalchemy as sa


def flow_message(row: sa.Row[Any]) -> flow_pb2.Flow:
    message = flow_pb2.Flow(id=str(row.id), name=row.name, tags=row.tags)
    message.created.FromDatetime(row.created)
    message.updated.FromDatetime(row.updated)
    if row.labels is not None:
        message.labels.SetInParent()  # present even when empty: {} is not "no labels"
        message.labels.update(row.labels)
    return message
