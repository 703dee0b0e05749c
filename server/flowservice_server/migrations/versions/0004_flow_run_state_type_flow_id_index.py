"""An index for "flows with runs in state S", with no time bound.

The covering index of 0002 leads with state_type but orders each state's runs
by start time, so the flow ids of all runs in S come out unordered and the
`flow.id IN (…)` list must sort them. Keyed on (state_type, flow_id) they come
out sorted and half the size: on the bench's 1,000,000 flow runs, the SQL of
CountFlows with a FAILED filter went from 123 ms to 40 ms (Python's sqlite3,
in-process). FlowService never writes flow_run, so the index costs its writes
nothing.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

INDEX = "ix_flow_run__state_type_flow_id"


def upgrade() -> None:
    op.get_bind().exec_driver_sql(f"CREATE INDEX {INDEX} ON flow_run (state_type, flow_id)")


def downgrade() -> None:
    op.get_bind().exec_driver_sql(f"DROP INDEX {INDEX}")
