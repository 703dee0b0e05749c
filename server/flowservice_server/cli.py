"""The `flowservice` command."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from typing import TYPE_CHECKING

from flowservice_server import app, config, observability, supervisor

if TYPE_CHECKING:
    from collections.abc import Sequence

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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    arguments = parser.parse_args(argv)
    try:
        settings = config.load_settings(arguments, os.environ)
    except config.SettingsError as error:
        parser.error(str(error))
    observability.configure_logging(settings.log_level, settings.log_format)
    try:
        if settings.workers > 1:
            return supervisor.run(settings)
        asyncio.run(app.serve(settings))
    except app.STARTUP_FAILURES as error:
        log.error("cannot start: %s", app.describe_startup_failure(error, settings))
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
