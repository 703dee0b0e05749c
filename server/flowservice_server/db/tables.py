"""The tables FlowService reads and writes, with Prefect 3's names.

See docs/semantics.md#schema-names.

These Core tables describe the columns the queries use; the migrations create
the managed schema, and in Prefect mode the same names address the tables a
Prefect server created (which hold more columns than listed here).
"""

from __future__ import annotations

import sqlalchemy as sa

from flowservice_server.db.types import JSON, UUID, Timestamp, state_type

#: Prefect's constraint and index naming convention (orm_models.py).
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s__%(column_0_N_name)s",
    "uq": "uq_%(table_name)s__%(column_0_N_name)s",
    "fk": "fk_%(table_name)s__%(column_0_N_name)s__%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


def _base_columns() -> list[sa.Column[object]]:
    return [
        sa.Column("id", UUID(), primary_key=True),
        sa.Column("created", Timestamp(), nullable=False),
        sa.Column("updated", Timestamp(), nullable=False),
    ]


flow = sa.Table(
    "flow",
    metadata,
    *_base_columns(),
    sa.Column("name", sa.String(), nullable=False, unique=True),
    sa.Column("tags", JSON(), nullable=False),
    sa.Column("labels", JSON(), nullable=True),
)

work_pool = sa.Table(
    "work_pool",
    metadata,
    *_base_columns(),
    sa.Column("name", sa.String(), nullable=False, unique=True),
    sa.Column("type", sa.String(), nullable=False),
)

work_queue = sa.Table(
    "work_queue",
    metadata,
    *_base_columns(),
    sa.Column("name", sa.String(), nullable=False),
    sa.Column("work_pool_id", UUID(), sa.ForeignKey(work_pool.c.id), nullable=False),
)

deployment = sa.Table(
    "deployment",
    metadata,
    *_base_columns(),
    sa.Column("name", sa.String(), nullable=False),
    sa.Column("flow_id", UUID(), sa.ForeignKey(flow.c.id), nullable=False),
    sa.Column("work_queue_id", UUID(), sa.ForeignKey(work_queue.c.id), nullable=True),
    sa.Column("work_queue_name", sa.String(), nullable=True),
    sa.Column("paused", sa.Boolean(), nullable=False),
    sa.Column("tags", JSON(), nullable=False),
)

flow_run = sa.Table(
    "flow_run",
    metadata,
    *_base_columns(),
    sa.Column("name", sa.String(), nullable=False),
    sa.Column("flow_id", UUID(), sa.ForeignKey(flow.c.id), nullable=False),
    sa.Column("state_type", state_type(), nullable=True),
    sa.Column("state_name", sa.String(), nullable=True),
    sa.Column("expected_start_time", Timestamp(), nullable=True),
    sa.Column("next_scheduled_start_time", Timestamp(), nullable=True),
    sa.Column("start_time", Timestamp(), nullable=True),
    sa.Column("end_time", Timestamp(), nullable=True),
    sa.Column("flow_version", sa.String(), nullable=True),
    sa.Column("deployment_id", UUID(), nullable=True),
    sa.Column("work_queue_name", sa.String(), nullable=True),
    sa.Column("work_queue_id", UUID(), sa.ForeignKey(work_queue.c.id), nullable=True),
    sa.Column("parent_task_run_id", UUID(), nullable=True),
    sa.Column("idempotency_key", sa.String(), nullable=True),
    sa.Column("tags", JSON(), nullable=False),
    sa.Column("created_by", JSON(), nullable=True),
)

task_run = sa.Table(
    "task_run",
    metadata,
    *_base_columns(),
    sa.Column("name", sa.String(), nullable=False),
    sa.Column("flow_run_id", UUID(), sa.ForeignKey(flow_run.c.id), nullable=True),
    sa.Column("state_type", state_type(), nullable=True),
    sa.Column("state_name", sa.String(), nullable=True),
    sa.Column("start_time", Timestamp(), nullable=True),
    sa.Column("end_time", Timestamp(), nullable=True),
    sa.Column("expected_start_time", Timestamp(), nullable=True),
    sa.Column("tags", JSON(), nullable=False),
    # Required by the schema (NOT NULL, no default); FlowService never reads them.
    sa.Column("task_key", sa.String(), nullable=False),
    sa.Column("dynamic_key", sa.String(), nullable=False),
)
