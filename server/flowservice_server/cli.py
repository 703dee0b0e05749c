"""The `flowservice` command."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from typing import TYPE_CHECKING

from sqlalchemy.exc import DBAPIError

from flowservice_server import app, config
from flowservice_server.db.migrate import ForeignSchemaError, MissingSchemaError

if TYPE_CHECKING:
    from collections.abc import Sequence

log = logging.getLogger("flowservice")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flowservice",
        description="FlowService: Prefect 3's flow API as a gRPC service.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        help="run the gRPC server",
        description="Run the FlowService gRPC server. Every setting can also be given as a "
        "FLOWSERVICE_* environment variable; a flag wins over its variable.",
    )
    config.add_arguments(serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    arguments = parser.parse_args(argv)
    try:
        settings = config.load_settings(arguments, os.environ)
    except config.SettingsError as error:
        parser.error(str(error))
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        asyncio.run(app.serve(settings))
    except (app.StartupError, ForeignSchemaError, MissingSchemaError) as error:
        log.error("cannot start: %s", error)
        return 1
    except (DBAPIError, OSError) as error:  # the database is unreachable or refused us
        reason = error.orig if isinstance(error, DBAPIError) and error.orig else error
        log.error(
            "cannot start: database %s: %s",
            settings.database.url_for_logs,
            str(reason).splitlines()[0],
        )
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
