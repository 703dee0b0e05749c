"""The latest-run index also carries state_type, so "latest run is FAILED" reads no table.

0005's (flow_id, start_time, id) finds each flow's latest run with one seek,
but checking the run's state then read the flow_run row itself: on the bench's
1,000,000 flow runs (bench/RESULTS.md, "Latest-run filter") that row read was
most of the time. With state_type as a fourth key column the seek's index
entry answers a state condition alone (a covering index on SQLite, an
index-only scan on PostgreSQL); the order within a flow is unchanged, since
(start_time, id) is already unique. It replaces 0005's index, which no
query needs any more. FlowService never writes flow_run, so the index costs
its writes nothing.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

INDEX = "ix_flow_run__flow_id_start_time_id_state_type"
REPLACED = "ix_flow_run__flow_id_start_time_id"


def upgrade() -> None:
    bind = op.get_bind()
    bind.exec_driver_sql(f"CREATE INDEX {INDEX} ON flow_run (flow_id, start_time, id, state_type)")
    bind.exec_driver_sql(f"DROP INDEX {REPLACED}")


def downgrade() -> None:
    bind = op.get_bind()
    bind.exec_driver_sql(f"CREATE INDEX {REPLACED} ON flow_run (flow_id, start_time, id)")
    bind.exec_driver_sql(f"DROP INDEX {INDEX}")
