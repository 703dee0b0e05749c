"""Alembic environment: runs on the connection `db.migrate` passes in, never from a URL.

The version table is FlowService's own (`flowservice_alembic_version`), so a
Prefect database (whose history is in `alembic_version`) is never mistaken for
ours.
"""

from __future__ import annotations

from alembic import context

from flowservice_server.db.migrate import VERSION_TABLE
from flowservice_server.db.tables import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table=VERSION_TABLE,
)
# The caller holds the transaction (and the migration lock); this is a no-op
# begin inside it, so all pending migrations commit together or not at all.
with context.begin_transaction():
    context.run_migrations()
