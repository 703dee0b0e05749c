"""The `flowservice` command."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from typing import TYPE_CHECKING

from flowservice_server import app, config, observability, supervisor
from flowservice_server.db.changefeed_schema import (
    create_changefeed,
    drop_changefeed,
    installed_parts,
    is_installed,
)
from flowservice_server.db.factory import open_database
from flowservice_server.db.indexes import add_indexes, drop_indexes
from flowservice_server.db.migrate import refuse_managed_schema, take_migration_lock

if TYPE_CHECKING:
    from collections.abc import Sequence

    import sqlalchemy as sa

log = logging.getLogger("flowservice")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flowservice",
        description="FlowService: Prefect 3's flow API as a gRPC service.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    environment_only = [
        f"  {option.variable}: {option.item.metadata['help']}"
        for option in config.options()
        if not option.item.metadata["flag"]
    ]
    serve = commands.add_parser(
        "serve",
        help="run the gRPC server",
        description="Run the FlowService gRPC server. Every setting can also be given as a "
        "FLOWSERVICE_* environment variable; a flag wins over its variable.",
        epilog="settings read from the environment only (secrets):\n" + "\n".join(environment_only),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        # No prefixes: --auth-tokens must not quietly mean --auth-tokens-file.
        allow_abbrev=False,
    )
    config.add_arguments(serve)
    indexes = commands.add_parser(
        "indexes",
        help="add or drop FlowService's indexes in a database a Prefect server owns",
        description="Add (or drop) the indexes FlowService's filters use to a database that a "
        "Prefect 3 server created and migrates, which `serve --database-mode prefect` never "
        "changes. Only CREATE/DROP INDEX of FlowService's own index names, in one transaction "
        "that holds the write lock while the indexes are built. A managed database already has "
        "them from its migrations.",
        allow_abbrev=False,
    )
    indexes.add_argument("action", choices=("add", "drop"), help="add the missing ones, or drop")
    config.add_arguments(indexes, only={"database_url", "database_pooler", "log_level"})
    changefeed = commands.add_parser(
        "changefeed",
        help="enable or disable WatchFlows' change capture in a database a Prefect server owns",
        description="Add (or drop) the change table and the triggers on Prefect's flow table "
        "that WatchFlows reads, in a database that a Prefect 3 server created, which `serve "
        "--database-mode prefect` never changes. Every flow write, Prefect's included, then "
        "also writes one change row in its own transaction. Only FlowService's own table, "
        "trigger and function names are created or dropped, in one transaction. A managed "
        "database already has them from its migrations.",
        allow_abbrev=False,
    )
    changefeed.add_argument("action", choices=("add", "drop"), help="add, or drop")
    config.add_arguments(changefeed, only={"database_url", "database_pooler", "log_level"})
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    arguments = parser.parse_args(argv)
    try:
        settings = config.load_settings(arguments, os.environ)
    except config.SettingsError as error:
        parser.error(str(error))
    observability.configure_logging(settings.log_level, settings.log_format)
    doing = {
        "indexes": "cannot change indexes",
        "changefeed": "cannot change the change capture",
    }.get(arguments.command, "cannot start")
    try:
        if arguments.command == "indexes":
            asyncio.run(change_indexes(settings, arguments.action))
        elif arguments.command == "changefeed":
            asyncio.run(change_changefeed(settings, arguments.action))
        elif settings.workers > 1:
            return supervisor.run(settings)
        else:
            asyncio.run(app.serve(settings))
    except app.STARTUP_FAILURES as error:
        log.error("%s: %s", doing, app.describe_startup_failure(error, settings))
        return 1
    return 0


async def change_indexes(settings: config.Settings, action: str) -> None:
    """`flowservice indexes add|drop`: FlowService's indexes on a Prefect server's database."""
    database = await open_database(settings.database, migrate=False)
    changed: list[str] = []

    def work(connection: sa.Connection) -> None:
        take_migration_lock(connection)
        refuse_managed_schema(connection)
        changed.extend((add_indexes if action == "add" else drop_indexes)(connection))

    try:
        await database.maintain(work)
    finally:
        await database.close()
    done = "added" if action == "add" else "dropped"
    log.info(
        "%s %d index(es) in %s%s",
        done,
        len(changed),
        settings.database.url_for_logs,
        f": {', '.join(changed)}" if changed else " (nothing to do)",
    )


async def change_changefeed(settings: config.Settings, action: str) -> None:
    """`flowservice changefeed add|drop`: WatchFlows' change capture on a Prefect database."""
    database = await open_database(settings.database, migrate=False)
    changed: list[str] = []

    def work(connection: sa.Connection) -> None:
        take_migration_lock(connection)
        refuse_managed_schema(connection, what="its change capture")
        if action == "drop":
            changed.extend(drop_changefeed(connection))
        elif not is_installed(connection):
            # Partly there (say, triggers lost to a rebuild of the flow table): start
            # afresh, with a new feed id, since changes may have gone unrecorded.
            drop_changefeed(connection)
            create_changefeed(connection)
            changed.extend(sorted(installed_parts(connection)))

    try:
        await database.maintain(work)
    finally:
        await database.close()
    done = "added" if action == "add" else "dropped"
    log.info(
        "%s the change capture in %s%s",
        done,
        settings.database.url_for_logs,
        f": {', '.join(changed)}" if changed else " (nothing to do)",
    )


if __name__ == "__main__":
    raise SystemExit(main())
