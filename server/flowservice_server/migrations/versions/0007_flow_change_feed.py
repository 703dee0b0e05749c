"""The flow change feed: a change table filled by triggers on `flow`, for WatchFlows.

What it creates, and why triggers, is explained in
`flowservice_server.db.changefeed_schema`, whose DDL this runs (the same DDL
that `flowservice changefeed add` runs on a Prefect server's database).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-10
"""

from __future__ import annotations

from alembic import op

from flowservice_server.db.changefeed_schema import create_changefeed, drop_changefeed

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_changefeed(op.get_bind())


def downgrade() -> None:
    drop_changefeed(op.get_bind())
