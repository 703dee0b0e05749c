# ruff: noqa: S608  # DDL built from this module's constants only, never from input
"""The change table and the triggers on `flow` that fill it: WatchFlows' source of truth.

Every INSERT, UPDATE and DELETE of a `flow` row, whoever makes it (FlowService,
another replica, a Prefect server, a cascade, plain SQL), adds one row to
`flowservice_flow_change` in the writer's own transaction: a rolled-back write
leaves nothing, and a committed one is never missed. The row holds the flow's
values after the change (before it, for a delete), so an event needs no read
of `flow` that could race with a later write, and the columns carry the flow
table's names and types so that the FlowFilter compiler applies to them as is.

Order. `seq` orders the changes, and a reader advances past a `seq` only once
nothing below it can still commit:

* SQLite has one writer at a time, so rowid order is commit order. A rowid
  is the largest one plus one, so a number could come back only if the
  newest row were deleted: pruning always keeps the newest row. (Not
  AUTOINCREMENT: its `sqlite_sequence` table could never be dropped again
  from a Prefect database.)
* PostgreSQL assigns identity values before commit, so two writers could
  commit out of `seq` order and a reader that moved past a gap would miss the
  late one. A BEFORE STATEMENT trigger therefore takes a transaction-level
  advisory lock, held to commit or rollback, before the statement touches a
  row: transactions that write flows commit one after another, in the order
  they took their numbers, and the committed rows are always a prefix of
  `seq` (with holes only where a transaction rolled back). Taking the lock
  before any row lock means two flow writers cannot deadlock on it. The cost
  is that flow writes commit one at a time (`bench/watch.py` measures it);
  the alternative, delivering only below the oldest running transaction's
  snapshot horizon, orders by transaction ids rather than by one number and
  makes every resume token a snapshot, which is harder to get right.
  The row trigger also sends a NOTIFY on `flowservice_flow_change` (one per
  transaction, delivered at commit) to wake listening servers; the table
  stays the source of truth.

`flowservice_flow_change_state` holds the feed's identity (a random id that
resume tokens carry, so that a token from another database or from before a
`changefeed drop` is refused) and `pruned_through`, the highest `seq` that
retention may have deleted.

The managed schema gets all of this from migration 0007; a database a Prefect
server owns gets it only from `flowservice changefeed add` (and loses it with
`flowservice changefeed drop`). This DDL is what migration 0007 runs: change
it only together with a new migration.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import sqlalchemy as sa

CHANGE_TABLE = "flowservice_flow_change"
STATE_TABLE = "flowservice_flow_change_state"
CHANGED_AT_INDEX = "ix_flowservice_flow_change__changed_at"
NOTIFY_CHANNEL = "flowservice_flow_change"
#: A fixed 64-bit advisory lock key ("flowchg1" as bytes), apart from the migration lock's.
ORDER_LOCK_KEY = int.from_bytes(b"flowchg1", "big") - 2**63

SQLITE_TRIGGERS = (
    "flowservice_flow_change_insert",
    "flowservice_flow_change_update",
    "flowservice_flow_change_delete",
)
POSTGRES_TRIGGERS = ("flowservice_flow_change_order", "flowservice_flow_change_capture")
POSTGRES_FUNCTIONS = ("flowservice_flow_change_order", "flowservice_flow_change_capture")

_COLUMNS = "kind, id, created, updated, name, tags, labels, changed_at"
_SQLITE_NOW = "(julianday('now') - 2440587.5) * 86400.0"


def _sqlite_trigger(name: str, event: str, kind: str, row: str) -> str:
    values = f"{row}.id, {row}.created, {row}.updated, {row}.name, {row}.tags, {row}.labels"
    return (
        f"CREATE TRIGGER {name} AFTER {event} ON flow FOR EACH ROW BEGIN "
        f"INSERT INTO {CHANGE_TABLE} ({_COLUMNS}) VALUES ('{kind}', {values}, {_SQLITE_NOW}); END"
    )


def sqlite_ddl() -> list[str]:
    return [
        f"""CREATE TABLE {CHANGE_TABLE} (
            seq INTEGER PRIMARY KEY,
            kind VARCHAR NOT NULL,
            id CHAR(36) NOT NULL,
            created DATETIME NOT NULL,
            updated DATETIME NOT NULL,
            name VARCHAR NOT NULL,
            tags JSON NOT NULL,
            labels JSON,
            changed_at REAL NOT NULL)""",
        f"CREATE INDEX {CHANGED_AT_INDEX} ON {CHANGE_TABLE} (changed_at)",
        _sqlite_trigger(SQLITE_TRIGGERS[0], "INSERT", "created", "NEW"),
        _sqlite_trigger(SQLITE_TRIGGERS[1], "UPDATE", "updated", "NEW"),
        _sqlite_trigger(SQLITE_TRIGGERS[2], "DELETE", "deleted", "OLD"),
    ]


def postgres_ddl() -> list[str]:
    now = "extract(epoch FROM clock_timestamp())"
    return [
        f"""CREATE TABLE {CHANGE_TABLE} (
            seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            kind VARCHAR NOT NULL,
            id UUID NOT NULL,
            created TIMESTAMP WITH TIME ZONE NOT NULL,
            updated TIMESTAMP WITH TIME ZONE NOT NULL,
            name VARCHAR NOT NULL,
            tags JSONB NOT NULL,
            labels JSONB,
            changed_at DOUBLE PRECISION NOT NULL)""",
        f"CREATE INDEX {CHANGED_AT_INDEX} ON {CHANGE_TABLE} (changed_at)",
        f"""CREATE FUNCTION {POSTGRES_FUNCTIONS[0]}() RETURNS trigger LANGUAGE plpgsql AS $body$
        BEGIN
            PERFORM pg_advisory_xact_lock({ORDER_LOCK_KEY});
            RETURN NULL;
        END
        $body$""",
        f"""CREATE FUNCTION {POSTGRES_FUNCTIONS[1]}() RETURNS trigger LANGUAGE plpgsql AS $body$
        BEGIN
            IF TG_OP = 'DELETE' THEN
                INSERT INTO {CHANGE_TABLE} ({_COLUMNS}) VALUES ('deleted', OLD.id, OLD.created,
                    OLD.updated, OLD.name, OLD.tags, OLD.labels, {now});
            ELSE
                INSERT INTO {CHANGE_TABLE} ({_COLUMNS}) VALUES (
                    CASE TG_OP WHEN 'INSERT' THEN 'created' ELSE 'updated' END, NEW.id,
                    NEW.created, NEW.updated, NEW.name, NEW.tags, NEW.labels, {now});
            END IF;
            PERFORM pg_notify('{NOTIFY_CHANNEL}', '');
            RETURN NULL;
        END
        $body$""",
        f"CREATE TRIGGER {POSTGRES_TRIGGERS[0]} BEFORE INSERT OR UPDATE OR DELETE ON flow "
        f"FOR EACH STATEMENT EXECUTE FUNCTION {POSTGRES_FUNCTIONS[0]}()",
        f"CREATE TRIGGER {POSTGRES_TRIGGERS[1]} AFTER INSERT OR UPDATE OR DELETE ON flow "
        f"FOR EACH ROW EXECUTE FUNCTION {POSTGRES_FUNCTIONS[1]}()",
    ]


def _state_ddl() -> list[str]:
    return [
        f"""CREATE TABLE {STATE_TABLE} (
            singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
            feed_id VARCHAR(32) NOT NULL,
            pruned_through BIGINT NOT NULL)""",
        # A fresh identity: tokens of an earlier feed on this database are refused.
        f"INSERT INTO {STATE_TABLE} (singleton, feed_id, pruned_through) "
        f"VALUES (1, '{uuid.uuid4().hex}', 0)",
    ]


def create_changefeed(connection: sa.Connection) -> None:
    """Create the change table, its state and the triggers (in the caller's transaction)."""
    ddl = sqlite_ddl() if connection.dialect.name == "sqlite" else postgres_ddl()
    for statement in [*ddl, *_state_ddl()]:
        connection.exec_driver_sql(statement)


def drop_changefeed(connection: sa.Connection) -> list[str]:
    """Drop whatever of it exists (in the caller's transaction); the names dropped."""
    present = installed_parts(connection)
    dropped: list[str] = []
    if connection.dialect.name == "sqlite":
        for name in SQLITE_TRIGGERS:
            if name in present:
                connection.exec_driver_sql(f"DROP TRIGGER {name}")
                dropped.append(name)
    else:
        for name in POSTGRES_TRIGGERS:
            if name in present:
                connection.exec_driver_sql(f"DROP TRIGGER {name} ON flow")
                dropped.append(name)
        for name in POSTGRES_FUNCTIONS:
            connection.exec_driver_sql(f"DROP FUNCTION IF EXISTS {name}()")
    for table in (CHANGE_TABLE, STATE_TABLE):
        if table in present:
            connection.exec_driver_sql(f"DROP TABLE {table}")
            dropped.append(table)
    return dropped


def installed_parts(connection: sa.Connection) -> set[str]:
    """Which of the tables and triggers exist."""
    if connection.dialect.name == "sqlite":
        query = (
            "SELECT name FROM sqlite_master WHERE (type = 'table' AND name IN (?, ?)) "
            "OR (type = 'trigger' AND tbl_name = 'flow')"
        )
        rows = connection.exec_driver_sql(query, (CHANGE_TABLE, STATE_TABLE))
    else:
        query = (
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
            "AND tablename IN ($1, $2) UNION ALL SELECT tgname FROM pg_trigger "
            "WHERE tgrelid = to_regclass('flow') AND NOT tgisinternal"
        )
        rows = connection.exec_driver_sql(query, (CHANGE_TABLE, STATE_TABLE))
    return {str(name) for (name,) in rows}


def expected_parts(dialect_name: str) -> set[str]:
    triggers = SQLITE_TRIGGERS if dialect_name == "sqlite" else POSTGRES_TRIGGERS
    return {CHANGE_TABLE, STATE_TABLE, *triggers}


def is_installed(connection: sa.Connection) -> bool:
    """Whether every table and trigger of the change capture exists."""
    return expected_parts(connection.dialect.name) <= installed_parts(connection)
