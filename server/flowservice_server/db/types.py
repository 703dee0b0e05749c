"""Column types that store values exactly as Prefect 3 does (docs/semantics.md#storage).

A database that a Prefect server wrote must read back correctly, and rows we
write must be readable by Prefect, so the on-disk formats are Prefect's:

* UUID: `uuid` on PostgreSQL; on SQLite CHAR(36) text, lower-case and
  hyphenated (SQLAlchemy's own `Uuid` would store 32 hex digits).
* Timestamp: `timestamp with time zone` on PostgreSQL; on SQLite fixed-width
  UTC text `YYYY-MM-DD HH:MM:SS.ffffff`, so that comparing the text compares
  the instants. Naive datetimes are refused: every instant here is UTC-aware.
* JSON: `jsonb` on PostgreSQL; on SQLite the text of Python's `json.dumps`
  with its default separators; Python None is SQL NULL.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

if TYPE_CHECKING:
    from sqlalchemy.engine import Dialect
    from sqlalchemy.types import TypeEngine

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


class UUID(sa.TypeDecorator[uuid.UUID]):
    """A UUID: native on PostgreSQL, 36-character text on SQLite."""

    impl = sa.CHAR(36)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(postgresql.UUID(as_uuid=True))
        return dialect.type_descriptor(sa.CHAR(36))

    def process_bind_param(self, value: uuid.UUID | None, dialect: Dialect) -> Any:
        if value is None or dialect.name == "postgresql":
            return value
        return str(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> uuid.UUID | None:
        if value is None or isinstance(value, uuid.UUID):
            return value
        return uuid.UUID(value)


class Timestamp(sa.TypeDecorator[datetime]):
    """A UTC instant: `timestamptz` on PostgreSQL, fixed-width UTC text on SQLite."""

    impl = sa.TIMESTAMP(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            # SQLAlchemy's default SQLite storage format is Prefect's:
            # "%Y-%m-%d %H:%M:%S.%f", always six fraction digits.
            return dialect.type_descriptor(sqlite.DATETIME())  # type: ignore[no-untyped-call]  # untyped constructor
        return dialect.type_descriptor(sa.TIMESTAMP(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("timestamps must be timezone-aware")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:  # SQLite text is UTC by construction
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class JSON(sa.TypeDecorator[Any]):
    """JSON: `jsonb` on PostgreSQL, `json.dumps` text on SQLite; None is SQL NULL."""

    impl = sa.JSON(none_as_null=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(postgresql.JSONB(none_as_null=True))
        return dialect.type_descriptor(sa.JSON(none_as_null=True))


def state_type() -> TypeEngine[str]:
    """Prefect's `state_type`: a native enum on PostgreSQL, VARCHAR(9) text on SQLite."""
    return sa.Enum(
        *STATE_TYPES, name="state_type", create_constraint=False, validate_strings=False
    ).with_variant(sa.String(9), "sqlite")
