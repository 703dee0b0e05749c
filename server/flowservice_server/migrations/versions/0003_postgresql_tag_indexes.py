"""GIN indexes for tag filters on PostgreSQL.

`tags.all` and `tags.any` compile to the JSONB operators `?&` and `?|`, which
a GIN index (jsonb_ops) answers without reading every row. Flows and
deployments are small and filtered by tags constantly; flow runs are large
and the UI filters them by tags. Task-run tags are rarely filtered, so the
write cost of an index on the largest table is not paid there. SQLite has no
index for JSON arrays: nothing changes there.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TABLES = ("flow", "flow_run", "deployment")


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    for table in TABLES:
        bind.exec_driver_sql(f"CREATE INDEX ix_{table}__tags ON {table} USING gin (tags)")


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    for table in TABLES:
        bind.exec_driver_sql(f"DROP INDEX ix_{table}__tags")
