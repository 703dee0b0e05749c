"""FlowService's own indexes, which a Prefect server's database gets only when asked.

The managed schema gets them from its migrations (0002–0006). A database that
a Prefect server owns is never changed by `flowservice serve`; its operator
adds the same indexes on purpose with `flowservice indexes add`, and can take
them away with `flowservice indexes drop` (say, before a Prefect upgrade that
rebuilds these tables). Only these names are ever created or dropped; none of
them is Prefect's, and Prefect's own queries neither need nor mind them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import sqlalchemy as sa


@dataclass(frozen=True)
class Index:
    """One secondary index: its name, table, key and the dialects that have it."""

    name: str
    table: str
    key: str
    method: str | None = None  # PostgreSQL access method (USING …)
    dialects: tuple[str, ...] = ("sqlite", "postgresql")

    def create_sql(self) -> str:
        using = f" USING {self.method}" if self.method else ""
        return f"CREATE INDEX IF NOT EXISTS {self.name} ON {self.table}{using} ({self.key})"

    def drop_sql(self) -> str:
        return f"DROP INDEX IF EXISTS {self.name}"


#: What the migrations add beyond Prefect's schema, written as they write it.
INDEXES = (
    # 0002: "flows with runs in state S since T" from the index alone.
    Index(
        "ix_flow_run__state_type_coalesce_start_time_flow_id",
        "flow_run",
        "state_type, COALESCE(start_time, expected_start_time), flow_id,"
        " start_time, expected_start_time",
    ),
    # 0003: tag filters through JSONB operators.
    *(
        Index(f"ix_{table}__tags", table, "tags", method="gin", dialects=("postgresql",))
        for table in ("flow", "flow_run", "deployment")
    ),
    # 0004: "flows with runs in state S": their flow ids, in order, from the index alone.
    Index("ix_flow_run__state_type_flow_id", "flow_run", "state_type, flow_id"),
    # 0006 (replacing 0005's): "flows whose latest run …": one seek per flow finds its latest
    # run, and the entry alone answers a condition on its state.
    Index(
        "ix_flow_run__flow_id_start_time_id_state_type",
        "flow_run",
        "flow_id, start_time, id, state_type",
    ),
)

#: Indexes of earlier versions that a later one replaced: `add` drops them once their
#: replacement exists, `drop` drops them too.
RETIRED = (
    # 0005, replaced by 0006's.
    Index("ix_flow_run__flow_id_start_time_id", "flow_run", "flow_id, start_time, id"),
)


def indexes_for(dialect: str) -> tuple[Index, ...]:
    return tuple(index for index in INDEXES if dialect in index.dialects)


def existing_index_names(connection: sa.Connection) -> set[str]:
    if connection.dialect.name == "sqlite":
        query = "SELECT name FROM sqlite_master WHERE type = 'index'"
    else:
        query = "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()"
    return {name for (name,) in connection.exec_driver_sql(query)}


def add_indexes(connection: sa.Connection) -> list[str]:
    """Create every missing index, then drop any RETIRED one it replaces (in the caller's
    transaction); the names created."""
    present = existing_index_names(connection)
    missing = [i for i in indexes_for(connection.dialect.name) if i.name not in present]
    for index in missing:
        connection.exec_driver_sql(index.create_sql())
    for index in RETIRED:
        if index.name in present and connection.dialect.name in index.dialects:
            connection.exec_driver_sql(index.drop_sql())
    return [index.name for index in missing]


def drop_indexes(connection: sa.Connection) -> list[str]:
    """Drop those of these indexes that exist (in the caller's transaction); the names dropped."""
    present = existing_index_names(connection)
    ours = (*indexes_for(connection.dialect.name), *RETIRED)
    found = [i for i in ours if i.name in present]
    for index in found:
        connection.exec_driver_sql(index.drop_sql())
    return [index.name for index in found]
