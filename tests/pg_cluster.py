"""Throwaway PostgreSQL clusters (and a PgBouncer) that the tests start themselves.

Where PostgreSQL's server binaries are installed, a test can have a real
primary, a streaming hot standby of it (`pg_basebackup -R`) and a PgBouncer in
front of it, each in a temporary directory on a free loopback port, with
trust authentication on loopback only. PostgreSQL and PgBouncer refuse to run
as root: as root, they run as the `postgres` system user, which then owns the
directories.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

#: Where Debian (and most distributions) put the server binaries, newest first.
_BIN_GLOBS = ("/usr/lib/postgresql/*/bin", "/usr/local/pgsql/bin")
SYSTEM_USER = "postgres"
_TOOLS = ("initdb", "pg_ctl", "postgres", "pg_basebackup")


def postgres_bindir() -> Path | None:
    """The directory holding initdb, pg_ctl and postgres, or None when they are not installed."""
    candidates: list[Path] = []
    for pattern in _BIN_GLOBS:
        candidates += sorted(Path("/").glob(pattern.lstrip("/")), reverse=True)
    on_path = shutil.which("initdb")  # a source build or another distribution's layout
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    for candidate in candidates:
        if all((candidate / tool).exists() for tool in _TOOLS):
            return candidate
    return None


def missing_postgres_reason() -> str | None:
    """Why no throwaway cluster can start here, or None when one can."""
    if postgres_bindir() is None:
        return "PostgreSQL's server binaries (initdb, pg_ctl) are not installed"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SYSTEM_USER)
        except KeyError:
            return f"running as root and there is no {SYSTEM_USER!r} user to run PostgreSQL as"
    return None


def pgbouncer_binary() -> Path | None:
    found = shutil.which("pgbouncer") or (
        "/usr/sbin/pgbouncer" if Path("/usr/sbin/pgbouncer").exists() else None
    )
    return Path(found) if found else None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _as_owner(command: list[str]) -> list[str]:
    """The command run as the unprivileged owner of the cluster (PostgreSQL refuses root)."""
    if os.geteuid() == 0:
        return ["runuser", "-u", SYSTEM_USER, "--", *command]
    return command


def _own(path: Path) -> None:
    """Hand `path` to the user the servers run as."""
    if os.geteuid() == 0:
        entry = pwd.getpwnam(SYSTEM_USER)
        os.chown(path, entry.pw_uid, entry.pw_gid)


@contextlib.contextmanager
def scratch_directory(prefix: str = "flowservice-pg-") -> Iterator[Path]:
    """A new directory the servers' user can reach (pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    _own(path)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _run(command: list[str]) -> None:
    completed = subprocess.run(  # our own fixed commands
        _as_owner(command), capture_output=True, text=True, check=False
    )
    if completed.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command)} failed ({completed.returncode}):\n"
            f"{completed.stdout}{completed.stderr}"
        )


@dataclass
class PostgresCluster:
    """One PostgreSQL server in `directory`, on 127.0.0.1:`port`, trust auth on loopback."""

    directory: Path
    port: int
    bindir: Path
    role: str = "primary"
    _logfile: Path = field(init=False)

    def __post_init__(self) -> None:
        self._logfile = self.directory.parent / f"{self.directory.name}.log"

    @classmethod
    def create(cls, parent: Path, name: str = "primary", *, locale: str = "C") -> PostgresCluster:
        """initdb a new primary that allows streaming replication from loopback.

        `locale` decides collation and case folding; "C.UTF-8" folds non-ASCII
        letters as Debian's default cluster does.
        """
        bindir = postgres_bindir()
        if bindir is None:
            raise RuntimeError("PostgreSQL's server binaries are not installed")
        parent.mkdir(parents=True, exist_ok=True)
        _own(parent)
        cluster = cls(parent / name, free_port(), bindir)
        _run(
            [
                str(bindir / "initdb"),
                "-D",
                str(cluster.directory),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-instructions",
                "-E",
                "UTF8",
                f"--locale={locale}",
            ]
        )
        cluster._configure(
            {
                "wal_level": "replica",
                "max_wal_senders": "10",
                "max_replication_slots": "10",
                "hot_standby": "on",
                "wal_keep_size": "'256MB'",
                # A throwaway cluster: durability is not what the tests check.
                "fsync": "off",
                "synchronous_commit": "off",
                "full_page_writes": "off",
                "shared_buffers": "'32MB'",
                "max_connections": "200",
            }
        )
        (cluster.directory / "pg_hba.conf").write_text(
            "local all all trust\n"
            "host all all 127.0.0.1/32 trust\n"
            "local replication all trust\n"
            "host replication all 127.0.0.1/32 trust\n"
        )
        return cluster

    def standby(self, name: str = "standby", *, apply_delay_ms: int = 0) -> PostgresCluster:
        """A hot standby of this (running) primary: `pg_basebackup -R`, then streaming."""
        standby = PostgresCluster(self.directory.parent / name, free_port(), self.bindir, "standby")
        _run(
            [
                str(self.bindir / "pg_basebackup"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-D",
                str(standby.directory),
                "-R",
                "-X",
                "stream",
                "-c",
                "fast",
            ]
        )
        settings = {"hot_standby_feedback": "on"}
        if apply_delay_ms:
            settings["recovery_min_apply_delay"] = f"'{apply_delay_ms}ms'"
        standby._configure(settings)
        return standby

    def _configure(self, settings: dict[str, str]) -> None:
        """Append settings (the last one wins) plus this cluster's address and socket directory."""
        lines = [
            "listen_addresses = '127.0.0.1'",
            f"port = {self.port}",
            f"unix_socket_directories = '{self.directory}'",
            *(f"{key} = {value}" for key, value in settings.items()),
        ]
        with (self.directory / "postgresql.conf").open("a") as conf:
            conf.write("\n# set by the tests\n" + "\n".join(lines) + "\n")

    def set(self, **settings: str) -> None:
        """Change settings and reload them (for those a reload applies)."""
        self._configure(settings)
        if self.running():
            _run([str(self.bindir / "pg_ctl"), "-D", str(self.directory), "reload"])

    def start(self) -> None:
        _run(
            [
                str(self.bindir / "pg_ctl"),
                "-D",
                str(self.directory),
                "-l",
                str(self._logfile),
                "-w",
                "-t",
                "60",
                "start",
            ]
        )

    def stop(self, mode: str = "fast") -> None:
        """Stop the server; `immediate` is a crash as far as clients can tell."""
        if self.running():
            _run([str(self.bindir / "pg_ctl"), "-D", str(self.directory), "-m", mode, "-w", "stop"])

    def running(self) -> bool:
        return (self.directory / "postmaster.pid").exists()

    @property
    def host(self) -> str:
        return "127.0.0.1"

    def url(self, database: str = "postgres", driver: str = "postgresql+asyncpg") -> str:
        return f"{driver}://postgres@127.0.0.1:{self.port}/{database}"

    def log(self) -> str:
        return self._logfile.read_text() if self._logfile.exists() else ""


@dataclass(frozen=True)
class Upstream:
    """A PostgreSQL server the tests did not start (FLOWSERVICE_TEST_POSTGRES_URL's)."""

    host: str
    port: int


@dataclass
class PgBouncer:
    """A PgBouncer on a free loopback port in front of `upstream`, in transaction pooling mode.

    Clients are trusted on loopback; `users` maps each role PgBouncer must know
    to the password it logs in upstream with ("" where the upstream trusts it).
    """

    upstream: PostgresCluster | Upstream
    directory: Path
    port: int = field(default_factory=free_port)
    pool_mode: str = "transaction"
    pool_size: int = 20
    users: dict[str, str] = field(default_factory=lambda: {"postgres": ""})
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def start(self) -> None:
        binary = pgbouncer_binary()
        if binary is None:
            raise RuntimeError("pgbouncer is not installed")
        self.directory.mkdir(parents=True, exist_ok=True)
        _own(self.directory)
        users = self.directory / "userlist.txt"
        users.write_text("".join(f'"{name}" "{secret}"\n' for name, secret in self.users.items()))
        ini = self.directory / "pgbouncer.ini"
        ini.write_text(
            "[databases]\n"
            f"* = host={self.upstream.host} port={self.upstream.port}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"
            "auth_type = trust\n"
            f"auth_file = {users}\n"
            f"pool_mode = {self.pool_mode}\n"
            f"default_pool_size = {self.pool_size}\n"
            "max_client_conn = 1000\n"
            # asyncpg sends these at connect; PgBouncer must not refuse them.
            "ignore_startup_parameters = extra_float_digits,options,search_path\n"
            f"logfile = {self.directory / 'pgbouncer.log'}\n"
        )
        for path in (users, ini):
            _own(path)
        self._process = subprocess.Popen(  # our own fixed command
            _as_owner([str(binary), str(ini)]),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"pgbouncer exited at start:\n{self.log()}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5),
            ):
                return
            time.sleep(0.05)
        raise RuntimeError(f"pgbouncer did not listen on {self.port}:\n{self.log()}")

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            os.killpg(self._process.pid, signal.SIGTERM)
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self._process.pid, signal.SIGKILL)
                self._process.wait()
        self._process = None

    def url(self, database: str = "postgres", driver: str = "postgresql+asyncpg") -> str:
        return f"{driver}://postgres@127.0.0.1:{self.port}/{database}"

    def log(self) -> str:
        path = self.directory / "pgbouncer.log"
        return path.read_text() if path.exists() else ""
