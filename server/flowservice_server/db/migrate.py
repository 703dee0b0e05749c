"""Bring the managed schema to the newest migration, refusing databases that are not ours.

FlowService records its Alembic history in its own version table. A database
that a Prefect server wrote has Prefect's history in `alembic_version` and
must never be migrated by us, so it is refused with a clear error (it can be
served in the Prefect database mode instead).
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from urllib.parse import quote

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, create_engine, inspect, make_url
from sqlalchemy.pool import NullPool

from flowservice_server.db.tables import metadata

log = logging.getLogger(__name__)

VERSION_TABLE = "flowservice_alembic_version"
PREFECT_VERSION_TABLE = "alembic_version"
SCRIPT_LOCATION = "flowservice_server:migrations"


def take_migration_lock(connection: Connection) -> None:
    """Serialise schema changes across processes until the caller's transaction ends.

    Several servers may start at once on one database; the first migrates and
    the others then find the schema current. `flowservice indexes` takes the
    same lock.
    """
    if connection.dialect.name == "sqlite":
        # SQLite's DDL is transactional once a transaction is open, and
        # IMMEDIATE takes the write lock now (waiting up to busy_timeout).
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK_KEY})")


# A fixed 64-bit key for PostgreSQL's advisory lock ("flowsvc1" as bytes).
_MIGRATION_LOCK_KEY = int.from_bytes(b"flowsvc1", "big") - 2**63


class ForeignSchemaError(Exception):
    """The database holds tables that FlowService's migrations did not create."""


def alembic_config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    config.attributes["connection"] = connection
    return config


def upgrade_to_head(connection: Connection) -> None:
    """Apply every pending migration in one transaction the caller commits.

    Run by `Database.maintain`; concurrent starters wait for the
    migration lock, then find nothing left to do.
    """
    take_migration_lock(connection)
    check_ownership(connection)
    config = alembic_config(connection)
    before = MigrationContext.configure(
        connection, opts={"version_table": VERSION_TABLE}
    ).get_current_revision()
    head = ScriptDirectory.from_config(config).get_current_head()
    if before != head:
        command.upgrade(config, "head")
        log.info("migrated the database schema from %s to %s", before or "nothing", head)


class MissingSchemaError(Exception):
    """A database served in Prefect mode lacks tables or columns FlowService reads."""


def check_sqlite_file(url: str, *, prefect_mode: bool) -> None:
    """Before a SQLite file is opened for serving, check it through a read-only connection.

    Opening it for serving changes it (the journal mode is switched to WAL,
    an empty file becomes a database), so a file that is going to be refused
    must be refused before that: unchanged, byte for byte. In the Prefect
    mode a missing file is refused, not created.
    """
    path = make_url(url).database
    if not path or path == ":memory:" or path.startswith("file:"):
        return
    if not Path(path).exists():
        if prefect_mode:
            raise MissingSchemaError(
                f"there is no SQLite database at {path}: the prefect database mode serves a "
                "database a Prefect server created; check --database-url (FLOWSERVICE_DATABASE_URL)"
            )
        return
    read_only = f"file:{quote(str(Path(path).absolute()))}?mode=ro"
    engine = create_engine(
        "sqlite+pysqlite://",
        creator=lambda: sqlite3.connect(read_only, uri=True),
        poolclass=NullPool,
    )
    try:
        with engine.connect() as connection:
            if prefect_mode:
                check_prefect_schema(connection)
            else:
                check_ownership(connection)
    finally:
        engine.dispose()


def check_prefect_schema(connection: Connection) -> None:
    """Refuse a Prefect-mode database unless every table and column the queries use exists.

    Run by `Database.maintain`. Nothing is created or changed.
    """
    inspector = inspect(connection)
    present = set(inspector.get_table_names())
    missing: list[str] = []
    for table in metadata.sorted_tables:
        if table.name not in present:
            missing.append(f"table {table.name}")
            continue
        columns = {column["name"] for column in inspector.get_columns(table.name)}
        missing += [f"column {table.name}.{c.name}" for c in table.columns if c.name not in columns]
    if missing:
        hint = "" if PREFECT_VERSION_TABLE in present else " (and no Prefect alembic_version table)"
        raise MissingSchemaError(
            f"this is not a Prefect 3 database FlowService can serve{hint}: missing "
            + ", ".join(missing)
        )


def check_ownership(connection: Connection) -> None:
    """Refuse a Prefect database, or any database with our tables but not our history."""
    tables = set(inspect(connection).get_table_names())
    if VERSION_TABLE in tables:
        return
    if PREFECT_VERSION_TABLE in tables:
        raise ForeignSchemaError(
            "this database was created by a Prefect server (it has Prefect's "
            f"'{PREFECT_VERSION_TABLE}' table); FlowService will not migrate it. "
            "Serve it as it is with --database-mode prefect (FLOWSERVICE_DATABASE_MODE), or point "
            "--database-url at a database of FlowService's own."
        )
    ours = {"flow", "flow_run", "task_run", "deployment", "work_queue", "work_pool"}
    if found := sorted(tables & ours):
        raise ForeignSchemaError(
            f"this database already has tables named {', '.join(found)} but no "
            f"'{VERSION_TABLE}' table, so FlowService did not create them and will not "
            "migrate them. Use an empty database."
        )


def refuse_managed_schema(connection: Connection, what: str = "these indexes") -> None:
    """Refuse to change the indexes (or `what`) of a managed database: its migrations own them."""
    if VERSION_TABLE in inspect(connection).get_table_names():
        raise ForeignSchemaError(
            f"this database is FlowService's own (it has the '{VERSION_TABLE}' table): its "
            f"migrations already create {what}, and only they change its schema"
        )
