"""A covering index for "flows with runs in state S (since T)".

Prefect's ix_flow_run__state_type_coalesce_start_time finds the runs but not
their flow; every matching run then costs a table lookup for flow_id, which
at 200k runs takes hundreds of milliseconds on SQLite. With flow_id in the
index the subquery `SELECT flow_id FROM flow_run WHERE state_type IN (…) AND
COALESCE(start_time, expected_start_time) >= …` reads the index alone. The raw
start_time and expected_start_time columns are in it too: SQLite (before
3.41) and PostgreSQL only see an expression index as covering when every
column the expression reads is in the index.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

INDEX = "ix_flow_run__state_type_coalesce_start_time_flow_id"


def upgrade() -> None:
    op.get_bind().exec_driver_sql(
        f"CREATE INDEX {INDEX} ON flow_run "
        "(state_type, COALESCE(start_time, expected_start_time), flow_id,"
        " start_time, expected_start_time)"
    )


def downgrade() -> None:
    op.get_bind().exec_driver_sql(f"DROP INDEX {INDEX}")
