"""An index for "flows whose latest run …": each flow's runs by start time.

The latest-run filter finds a flow's latest run (greatest start_time, then
greatest id, runs never started left out) with one seek per flow in this
index, reading neither the table nor the flow's other runs; the filter's own
condition is then checked on that one row. FlowService never writes
flow_run, so the index costs its writes nothing.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

INDEX = "ix_flow_run__flow_id_start_time_id"


def upgrade() -> None:
    op.get_bind().exec_driver_sql(f"CREATE INDEX {INDEX} ON flow_run (flow_id, start_time, id)")


def downgrade() -> None:
    op.get_bind().exec_driver_sql(f"DROP INDEX {INDEX}")
