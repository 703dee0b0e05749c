"""Settings: one frozen tree built once from flags, `FLOWSERVICE_*` variables and defaults.

Precedence is flag, then environment variable, then default. A field of a
group is named after both: `database.url` is `--database-url` and
`FLOWSERVICE_DATABASE_URL`. Every value is validated here, at start, and an
error names the flag and the variable. Nothing else reads the environment.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from flowservice_server.cpus import usable_cpus

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterator, Mapping, Sequence

ENV_PREFIX = "FLOWSERVICE_"


class SettingsError(ValueError):
    """A setting has a value FlowService cannot use; the message says which and why."""


# --- value parsers -----------------------------------------------------------------


def parse_address(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host:
        raise ValueError("expected HOST:PORT, e.g. 127.0.0.1:50051 or [::1]:50051")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"port {port!r} is not a number from 0 to 65535")
    return value


_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg"}


def parse_database_url(value: str) -> str:
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


def parse_log_level(value: str) -> str:
    level = value.upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ValueError("expected DEBUG, INFO, WARNING, ERROR or CRITICAL")
    return level


def parse_count(value: str) -> int:
    if not value.strip().isdigit():
        raise ValueError(f"{value!r} is not a whole number of at least 0")
    return int(value)


def parse_positive_count(value: str) -> int:
    number = parse_count(value)
    if number < 1:
        raise ValueError("must be at least 1")
    return number


def parse_seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a number of seconds") from None
    if not seconds >= 0:  # also refuses NaN
        raise ValueError("must be 0 or more seconds")
    return seconds


def parse_database_urls(value: str) -> tuple[str, ...]:
    """PostgreSQL URLs separated by commas (a repeated flag arrives joined by commas)."""
    urls = tuple(parse_database_url(url.strip()) for url in value.split(",") if url.strip())
    if any(make_url(url).get_backend_name() != "postgresql" for url in urls):
        raise ValueError("read URLs name PostgreSQL hot standbys (postgresql://…)")
    return urls


def parse_bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{value!r} is not true or false")


def parse_choice(*choices: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}")
        return value

    return parse


def parse_optional_address(value: str) -> str:
    return parse_address(value) if value else ""


def parse_origins(value: str) -> tuple[str, ...]:
    """Browser origins (scheme://host[:port]) allowed to call over HTTP, or `*` for any."""
    origins = tuple(o.strip().rstrip("/") for o in value.split(",") if o.strip())
    for origin in origins:
        if origin != "*" and not origin.startswith(("http://", "https://")):
            raise ValueError(f"{origin!r} is not an origin like https://app.example.com or *")
    return origins


def parse_path(value: str) -> str:
    """A file that must exist and be readable at start (certificates, token files)."""
    if not value:
        return ""
    path = Path(value)
    if not path.is_file():
        raise ValueError(f"{value!r} is not a file")
    try:
        path.read_bytes()
    except OSError as error:
        raise ValueError(f"cannot read {value!r}: {error.strerror}") from None
    return value


def parse_tokens(value: str) -> tuple[str, ...]:
    """Bearer tokens, separated by commas or new lines; blanks ignored."""
    return tuple(t.strip() for t in value.replace("\n", ",").split(",") if t.strip())


def setting(
    default: Any,
    parse: Callable[[str], Any],
    help: str,
    *,
    flag: bool = True,
    repeatable: bool = False,
    flag_name: str = "",
    **extra: Any,
) -> Any:
    """A dataclass field that is also a variable and (unless `flag=False`) a flag.

    `help` feeds `serve --help`. Secrets are environment-only (`flag=False`):
    a flag would show them to anyone who can list processes. A `repeatable`
    flag may be given several times; its values reach `parse` joined by commas.
    `flag_name` spells the flag when the field's name does not read well as
    one (a repeatable flag names one item).
    """
    metadata = {
        "parse": parse,
        "help": help,
        "flag": flag,
        "repeatable": repeatable,
        "flag_name": flag_name,
    }
    return field(default=default, metadata=metadata, **extra)


# --- the tree ----------------------------------------------------------------------


@dataclass(frozen=True)
class DatabaseSettings:
    """Where the flows live and how connections to them are pooled."""

    mode: str = setting(
        "managed",
        parse_choice("managed", "prefect"),
        "managed: FlowService creates and migrates its own schema; prefect: serve a "
        "database a Prefect 3 server created, as it is (never created, altered or migrated)",
    )
    url: str = setting(
        "sqlite+aiosqlite:///flowservice.db",
        parse_database_url,
        "SQLAlchemy URL of the database: sqlite+aiosqlite:///PATH (the default is "
        "flowservice.db in the current directory) or "
        "postgresql+asyncpg://USER:PASSWORD@HOST:PORT/DB",
        repr=False,  # may hold a password; see `url_for_logs`
    )
    pool_size: int = setting(
        10, parse_positive_count, "connections kept open in the pool (per process)"
    )
    max_overflow: int = setting(
        10, parse_count, "connections opened beyond the pool size under load"
    )
    pool_timeout: float = setting(
        10.0,
        parse_seconds,
        "seconds a call waits for a free connection before failing with UNAVAILABLE",
    )
    pool_recycle: float = setting(
        1800.0, parse_seconds, "seconds after which a pooled connection is replaced (0: never)"
    )
    pool_pre_ping: bool = setting(
        True,
        parse_bool,
        "test each pooled PostgreSQL connection before use, so a restarted database is reconnected",
    )
    connect_timeout: float = setting(
        5.0, parse_seconds, "seconds to wait for a new PostgreSQL connection"
    )
    busy_timeout: float = setting(
        10.0,
        parse_seconds,
        "seconds a SQLite write waits for another process's lock before UNAVAILABLE",
    )
    pooler: str = setting(
        "none",
        parse_choice("none", "pgbouncer"),
        "none: the URL names PostgreSQL itself; pgbouncer: it names a pooler in transaction "
        "mode (no prepared statements kept across transactions, no LISTEN: WatchFlows polls)",
    )

    @property
    def behind_pooler(self) -> bool:
        """Connections are a transaction pooler's: nothing may outlive a transaction on them."""
        return self.pooler != "none"

    read_urls: tuple[str, ...] = setting(
        (),
        parse_database_urls,
        "PostgreSQL hot standbys of the database that serve reads (repeatable, or a comma "
        "list); writes, and reads no standby can serve, go to --database-url",
        repeatable=True,
        flag_name="--database-read-url",
        repr=False,  # may hold passwords; see `read_urls_for_logs`
    )
    max_replica_lag: float = setting(
        5.0,
        parse_seconds,
        "seconds a standby may lag behind before its reads go to another standby or the primary",
    )
    replica_wait: float = setting(
        0.5,
        parse_seconds,
        "seconds a read carrying a consistency token waits for a standby to replay it "
        "before the primary serves it",
    )
    replica_probe_interval: float = setting(
        1.0,
        parse_seconds,
        "seconds between probes of each standby's replay position and lag",
    )
    inline_reads: bool = setting(
        True,
        parse_bool,
        "short reads (one flow by id or name, the count of all flows) take the short path: "
        "SQLite on the event-loop thread, bounded by --database-inline-read-budget; "
        "PostgreSQL in autocommit on a pool of their own; false: as every other unit of work",
    )
    direct_reads: bool = setting(
        True,
        parse_bool,
        "PostgreSQL: short reads that are one statement run on asyncpg itself, on a pool of "
        "their own (no pre-ping, no SQLAlchemy per read); false: on SQLAlchemy in autocommit. "
        "Only with --database-inline-reads",
    )
    lean_writes: bool = setting(
        True,
        parse_bool,
        "PostgreSQL: a write begins its transaction and statement timeout in one round trip, "
        "on connections in autocommit without a pre-ping (a dead one is replaced when BEGIN "
        "finds it); false: SQLAlchemy's pre-ping, BEGIN, SET LOCAL and COMMIT",
    )
    inline_pages: bool = setting(
        True,
        parse_bool,
        "with --database-inline-reads, ReadFlows pages run on the driver: SQLite's on the "
        "event-loop thread, under the same budget (a page's statement shape that exceeds it "
        "goes to worker threads for a minute); PostgreSQL's without their total on asyncpg "
        "(with --database-direct-reads); false: pages run through SQLAlchemy",
    )
    inline_read_budget: float = setting(
        0.001,
        parse_seconds,
        "SQLite: seconds an inline read may run before it is interrupted, rerun in a worker "
        "thread and its statement shape demoted to worker threads for a minute",
    )
    inline_writes: bool = setting(
        True,
        parse_bool,
        "SQLite: single-row writes (UpdateFlow, DeleteFlow, the insert of CreateFlow) run on "
        "the event-loop thread, bounded by --database-inline-write-budget, the deadline and "
        "busy timeout 0, with the WAL checkpointed in a thread; false: in a worker thread",
    )
    inline_write_budget: float = setting(
        0.002,
        parse_seconds,
        "SQLite: seconds of CPU an inline write may run before it is interrupted, rolled back, "
        "rerun in a worker thread and its statement shape demoted to worker threads for a minute",
    )

    @property
    def url_for_logs(self) -> str:
        return make_url(self.url).render_as_string(hide_password=True)

    @property
    def read_urls_for_logs(self) -> tuple[str, ...]:
        return tuple(make_url(url).render_as_string(hide_password=True) for url in self.read_urls)


@dataclass(frozen=True)
class GrpcSettings:
    """Transport limits and keepalive, for clients behind meshes and load balancers."""

    keepalive_time: float = setting(
        60.0, parse_seconds, "seconds between the server's keepalive pings on idle connections"
    )
    keepalive_timeout: float = setting(
        20.0, parse_seconds, "seconds to wait for a keepalive ping's answer before closing"
    )
    min_ping_interval: float = setting(
        10.0,
        parse_seconds,
        "shortest interval at which clients may send keepalive pings (faster: GOAWAY)",
    )
    max_connection_age: float = setting(
        1800.0,
        parse_seconds,
        "seconds after which a connection is asked to go away, so clients rebalance (0: never)",
    )
    max_connection_age_grace: float = setting(
        30.0, parse_seconds, "seconds a connection told to go away has to finish its calls"
    )
    max_receive_message_size: int = setting(
        4 * 1024 * 1024, parse_positive_count, "largest request accepted, in bytes"
    )
    max_concurrent_streams: int = setting(
        100,
        parse_positive_count,
        "calls open at once per connection (HTTP/2 streams); clients queue calls beyond it",
    )


@dataclass(frozen=True)
class TlsSettings:
    """TLS from PEM files; with a client CA, mutual TLS (clients must present a certificate)."""

    cert_file: str = setting("", parse_path, "server certificate chain (PEM); enables TLS")
    key_file: str = setting("", parse_path, "server private key (PEM)")
    client_ca_file: str = setting(
        "", parse_path, "CA bundle (PEM) for client certificates; enables mutual TLS"
    )

    @property
    def enabled(self) -> bool:
        return bool(self.cert_file)


@dataclass(frozen=True)
class AuthSettings:
    """Bearer-token authentication from `authorization: Bearer <token>` metadata."""

    tokens_file: str = setting(
        "", parse_path, "file of accepted bearer tokens, one per line; enables authentication"
    )
    tokens: tuple[str, ...] = setting(
        (),
        parse_tokens,
        "accepted bearer tokens, comma-separated (environment only); enables authentication",
        flag=False,
        repr=False,
    )
    open_health_and_reflection: bool = setting(
        True, parse_bool, "let health checks and reflection through without a token"
    )

    def accepted_tokens(self) -> tuple[str, ...]:
        """The tokens from the variable and the file (read at start only)."""
        from_file = parse_tokens(Path(self.tokens_file).read_text()) if self.tokens_file else ()
        return (*self.tokens, *from_file)


@dataclass(frozen=True)
class WatchSettings:
    """WatchFlows: the change feed's history, delivery and limits (see README, "Watching flows")."""

    retention: float = setting(
        7 * 86400.0,
        parse_seconds,
        "seconds of change history kept for resuming watches (0: no time limit)",
    )
    retention_count: int = setting(
        1_000_000,
        parse_count,
        "most changes kept for resuming watches (0: no count limit)",
    )
    prune_interval: float = setting(
        60.0, parse_seconds, "seconds between prunings of history past retention"
    )
    prune_batch: int = setting(
        1000, parse_positive_count, "most changes one pruning transaction deletes"
    )
    bookmark_interval: float = setting(
        30.0, parse_seconds, "seconds after which an idle watch gets a bookmark (a fresh token)"
    )
    max_watchers: int = setting(
        1000,
        parse_positive_count,
        "WatchFlows calls open at once per process (more: RESOURCE_EXHAUSTED)",
    )
    poll_interval: float = setting(
        0.05,
        parse_seconds,
        "seconds between reads of new changes on SQLite (and on PostgreSQL while LISTEN is down)",
    )
    safety_poll_interval: float = setting(
        1.0,
        parse_seconds,
        "PostgreSQL: seconds between reads of new changes when no notification came",
    )


@dataclass(frozen=True)
class Settings:
    """Everything `flowservice serve` can be told."""

    address: str = setting(
        "127.0.0.1:50051", parse_address, "host:port to listen on; port 0 picks a free port"
    )
    workers: int = setting(
        usable_cpus(),
        parse_positive_count,
        "server processes sharing the port (SO_REUSEPORT); the default is one per CPU this "
        "process may use (its affinity, capped by its cgroup's CPU quota)",
    )
    grace_period: float = setting(
        10.0,
        parse_seconds,
        "on SIGTERM/SIGINT: seconds calls in flight get to finish after health turns NOT_SERVING",
    )
    log_level: str = setting("INFO", parse_log_level, "DEBUG, INFO, WARNING, ERROR or CRITICAL")
    log_format: str = setting(
        "text", parse_choice("text", "json"), "text, or json: one JSON object per line"
    )
    access_log: bool = setting(
        True, parse_bool, "log one line per call: method, status, duration, peer (at INFO)"
    )
    http_address: str = setting(
        "",
        parse_optional_address,
        "host:port for the same RPCs over HTTP: the Connect protocol (JSON and binary) and "
        "gRPC-Web, for curl and browsers (TLS and tokens as for gRPC); empty: off",
    )
    http_allowed_origins: tuple[str, ...] = setting(
        (),
        parse_origins,
        "browser origins allowed to call the HTTP address (CORS), comma-separated, or *; "
        "empty: none",
    )
    metrics_address: str = setting(
        "",
        parse_optional_address,
        "host:port for Prometheus metrics over HTTP (/metrics); empty: no metrics endpoint",
    )
    tracing: str = setting(
        "off",
        parse_choice("off", "opentelemetry"),
        "opentelemetry: a span per call through the OpenTelemetry API (needs "
        "opentelemetry-api; configure the SDK and exporter as usual)",
    )
    health_check_interval: float = setting(
        2.0,
        parse_seconds,
        "seconds between database probes; health reports NOT_SERVING while they fail",
    )
    response_memo_size: int = setting(
        10_000,
        parse_count,
        "flows kept serialized, keyed by their whole stored row, so that a flow read again "
        "unchanged is not converted again (0: convert every row)",
    )
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    grpc: GrpcSettings = field(default_factory=GrpcSettings)
    tls: TlsSettings = field(default_factory=TlsSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    watch: WatchSettings = field(default_factory=WatchSettings)


# --- flags and variables ------------------------------------------------------------


@dataclass(frozen=True)
class Option:
    """One leaf setting: where it sits in the tree and how it is spelled outside."""

    path: tuple[str, ...]
    item: dataclasses.Field[Any]

    @property
    def name(self) -> str:
        return "_".join(self.path)

    @property
    def flag(self) -> str:
        spelled: str = self.item.metadata["flag_name"]
        return spelled or "--" + self.name.replace("_", "-")

    @property
    def variable(self) -> str:
        return ENV_PREFIX + self.name.upper()


def options(tree: type[Any] = Settings, prefix: tuple[str, ...] = ()) -> Iterator[Option]:
    for item in dataclasses.fields(tree):
        if "parse" in item.metadata:
            yield Option((*prefix, item.name), item)
        else:
            yield from options(item.default_factory, (*prefix, item.name))  # type: ignore[arg-type]  # groups have a default_factory


def add_arguments(parser: argparse.ArgumentParser, only: Collection[str] | None = None) -> None:
    """One flag per setting (or per one named in `only`); the help names its variable, default."""
    for option in options():
        if not option.item.metadata["flag"] or (only is not None and option.name not in only):
            continue
        default = option.item.default
        shown = str(default).lower() if isinstance(default, bool) else default
        if isinstance(default, tuple):
            shown = ",".join(default) or "none"
        parser.add_argument(
            option.flag,
            dest=option.name,
            default=None,
            action="append" if option.item.metadata["repeatable"] else "store",
            metavar=option.name.upper(),
            help=f"{option.item.metadata['help']} [env {option.variable}; default {shown}]",
        )


def load_settings(arguments: argparse.Namespace, environ: Mapping[str, str]) -> Settings:
    """Build Settings from parsed flags and the environment, validating every value."""
    values: dict[tuple[str, ...], Any] = {}
    for option in options():
        given: str | list[str] | None = getattr(arguments, option.name, None)
        if isinstance(given, list):  # a repeatable flag, given one or more times
            given = ",".join(given)
        source = option.flag
        if given is None and option.variable in environ:
            given, source = environ[option.variable], option.variable
        if given is None:
            continue
        try:
            values[option.path] = option.item.metadata["parse"](given)
        except ValueError as error:
            names = option.variable
            if option.item.metadata["flag"]:
                names = f"{option.flag} / {option.variable}"
            raise SettingsError(f"invalid {source} ({names}): {error}") from None
    settings: Settings = _build(Settings, values, ())
    _check_combinations(settings)
    return settings


def _check_combinations(settings: Settings) -> None:
    """Settings that are each valid but do not go together."""
    tls = settings.tls
    if bool(tls.cert_file) != bool(tls.key_file):
        raise SettingsError(
            "TLS needs both --tls-cert-file and --tls-key-file "
            "(FLOWSERVICE_TLS_CERT_FILE / FLOWSERVICE_TLS_KEY_FILE)"
        )
    if tls.client_ca_file and not tls.cert_file:
        raise SettingsError(
            "--tls-client-ca-file (FLOWSERVICE_TLS_CLIENT_CA_FILE) needs TLS: "
            "set --tls-cert-file and --tls-key-file too"
        )
    database = settings.database
    if database.behind_pooler and make_url(database.url).get_backend_name() != "postgresql":
        raise SettingsError(
            f"--database-pooler {database.pooler} (FLOWSERVICE_DATABASE_POOLER) is for a "
            "PostgreSQL URL that names the pooler; SQLite has no pooler: leave it at none"
        )
    if database.read_urls and make_url(database.url).get_backend_name() != "postgresql":
        raise SettingsError(
            "--database-read-url (FLOWSERVICE_DATABASE_READ_URLS) names standbys of a "
            "PostgreSQL primary: set --database-url to that primary"
        )
    auth = settings.auth
    if (auth.tokens or auth.tokens_file) and not auth.accepted_tokens():
        raise SettingsError(
            "authentication is configured but no token was given "
            "(FLOWSERVICE_AUTH_TOKENS / --auth-tokens-file)"
        )


def _build(tree: type[Any], values: Mapping[tuple[str, ...], Any], prefix: tuple[str, ...]) -> Any:
    kwargs: dict[str, Any] = {}
    for item in dataclasses.fields(tree):
        path = (*prefix, item.name)
        if "parse" in item.metadata:
            if path in values:
                kwargs[item.name] = values[path]
        else:
            kwargs[item.name] = _build(item.default_factory, values, path)  # type: ignore[arg-type]  # groups have a default_factory
    return tree(**kwargs)


def settings_from(argv: Sequence[str], environ: Mapping[str, str]) -> Settings:
    """Settings from a `serve` argument list alone (for tests and embedding)."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    add_arguments(parser)
    return load_settings(parser.parse_args(list(argv)), environ)
