"""Settings: one frozen object built once from flags, `FLOWSERVICE_*` variables and defaults.

Precedence is flag, then environment variable, then default. Every setting is
validated here, at start, and an error names both the flag and the variable.
Nothing else reads the environment.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

DEFAULT_ADDRESS = "127.0.0.1:50051"
DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///flowservice.db"
ENV_PREFIX = "FLOWSERVICE_"


class SettingsError(ValueError):
    """A setting has a value FlowService cannot use; the message says which and why."""


@dataclass(frozen=True)
class Settings:
    """Everything `flowservice serve` can be told."""

    address: str = field(
        default=DEFAULT_ADDRESS,
        metadata={"help": "host:port to listen on; port 0 picks a free port"},
    )
    database_url: str = field(
        default=DEFAULT_DATABASE_URL,
        repr=False,  # may hold a password; see `database_url_for_logs`
        metadata={
            "help": "SQLAlchemy URL of the database: sqlite+aiosqlite:///PATH (the default "
            "is flowservice.db in the current directory) or "
            "postgresql+asyncpg://USER:PASSWORD@HOST:PORT/DB"
        },
    )
    log_level: str = field(
        default="INFO", metadata={"help": "DEBUG, INFO, WARNING, ERROR or CRITICAL"}
    )

    @property
    def database_url_for_logs(self) -> str:
        return make_url(self.database_url).render_as_string(hide_password=True)


def _address(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host:
        raise ValueError("expected HOST:PORT, e.g. 127.0.0.1:50051 or [::1]:50051")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"port {port!r} is not a number from 0 to 65535")
    return value


_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg"}


def _database_url(value: str) -> str:
    """Accept the plain and the async forms of a SQLite or PostgreSQL URL."""
    try:
        url: URL = make_url(value.replace("postgres://", "postgresql://", 1))
    except ArgumentError as error:
        raise ValueError(str(error)) from None
    backend = url.get_backend_name()
    if backend not in _DRIVERS:
        raise ValueError(f"unsupported database {backend!r}: use sqlite or postgresql")
    if url.drivername != _DRIVERS[backend]:
        if url.drivername != backend:
            raise ValueError(f"use the driver {_DRIVERS[backend]!r}, not {url.drivername!r}")
        url = url.set(drivername=_DRIVERS[backend])
    if backend == "sqlite" and url.database in (None, "", ":memory:"):
        raise ValueError("SQLite needs a file path, e.g. sqlite+aiosqlite:///flowservice.db")
    return url.render_as_string(hide_password=False)


def _log_level(value: str) -> str:
    level = value.upper()
    if level not in logging.getLevelNamesMapping() or level in ("NOTSET", "WARN", "FATAL"):
        raise ValueError("expected DEBUG, INFO, WARNING, ERROR or CRITICAL")
    return level


#: How each setting's text is checked and converted.
PARSERS: dict[str, Callable[[str], Any]] = {
    "address": _address,
    "database_url": _database_url,
    "log_level": _log_level,
}


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def env_var(name: str) -> str:
    return ENV_PREFIX + name.upper()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per setting; the help names its variable and default."""
    for item in fields(Settings):
        parser.add_argument(
            flag(item.name),
            dest=item.name,
            default=None,
            metavar=item.name.upper(),
            help=f"{item.metadata['help']} [env {env_var(item.name)}; default {item.default}]",
        )


def load_settings(arguments: argparse.Namespace, environ: Mapping[str, str]) -> Settings:
    """Build Settings from parsed flags and the environment, validating every value."""
    values: dict[str, Any] = {}
    for item in fields(Settings):
        given: str | None = getattr(arguments, item.name, None)
        source = flag(item.name)
        if given is None and env_var(item.name) in environ:
            given, source = environ[env_var(item.name)], env_var(item.name)
        if given is None:
            continue
        try:
            values[item.name] = PARSERS[item.name](given)
        except ValueError as error:
            raise SettingsError(
                f"invalid {source} ({flag(item.name)} / {env_var(item.name)}): {error}"
            ) from None
    return Settings(**values)


def settings_from(argv: Sequence[str], environ: Mapping[str, str]) -> Settings:
    """Settings from a `serve` argument list alone (for tests and embedding)."""
    parser = argparse.ArgumentParser(add_help=False)
    add_arguments(parser)
    return load_settings(parser.parse_args(list(argv)), environ)
