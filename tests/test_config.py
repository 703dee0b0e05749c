"""Settings: flags, then FLOWSERVICE_* variables, then defaults; every value validated."""

from __future__ import annotations

import pytest

from flowservice_server.config import Settings, SettingsError, settings_from


def test_defaults_bind_loopback_and_use_a_local_sqlite_file() -> None:
    settings = settings_from([], {})
    assert settings == Settings()
    assert settings.address == "127.0.0.1:50051"
    assert settings.database.url == "sqlite+aiosqlite:///flowservice.db"
    assert settings.log_level == "INFO"


def test_environment_variables_set_values() -> None:
    settings = settings_from(
        [],
        {
            "FLOWSERVICE_ADDRESS": "0.0.0.0:6000",
            "FLOWSERVICE_DATABASE_URL": "sqlite+aiosqlite:////tmp/x.db",
            "FLOWSERVICE_LOG_LEVEL": "debug",
        },
    )
    assert (settings.address, settings.database.url, settings.log_level) == (
        "0.0.0.0:6000",
        "sqlite+aiosqlite:////tmp/x.db",
        "DEBUG",
    )


def test_a_flag_wins_over_its_variable() -> None:
    settings = settings_from(["--address", "127.0.0.1:7000"], {"FLOWSERVICE_ADDRESS": "x"})
    assert settings.address == "127.0.0.1:7000"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("sqlite:///relative.db", "sqlite+aiosqlite:///relative.db"),
        ("sqlite+aiosqlite:////abs/path.db", "sqlite+aiosqlite:////abs/path.db"),
        ("postgresql://u:p@db:5432/flows", "postgresql+asyncpg://u:p@db:5432/flows"),
        ("postgres://u@db/flows", "postgresql+asyncpg://u@db/flows"),
    ],
)
def test_database_urls_get_the_async_driver(given: str, expected: str) -> None:
    assert settings_from(["--database-url", given], {}).database.url == expected


@pytest.mark.parametrize(
    ("argv", "environ", "names"),
    [
        (["--address", "nowhere"], {}, "--address / FLOWSERVICE_ADDRESS"),
        (["--address", "h:99999"], {}, "--address / FLOWSERVICE_ADDRESS"),
        ([], {"FLOWSERVICE_LOG_LEVEL": "chatty"}, "--log-level / FLOWSERVICE_LOG_LEVEL"),
        (["--database-url", "mysql://x/y"], {}, "FLOWSERVICE_DATABASE_URL"),
        (["--database-url", "sqlite+pysqlite:///x.db"], {}, "FLOWSERVICE_DATABASE_URL"),
        (["--database-url", "sqlite:///:memory:"], {}, "FLOWSERVICE_DATABASE_URL"),
        (["--database-url", "::not a url::"], {}, "FLOWSERVICE_DATABASE_URL"),
    ],
)
def test_bad_values_are_refused_naming_the_flag_and_the_variable(
    argv: list[str], environ: dict[str, str], names: str
) -> None:
    with pytest.raises(SettingsError, match=names):
        settings_from(argv, environ)


def test_the_database_password_stays_out_of_repr_and_logs() -> None:
    settings = settings_from(["--database-url", "postgresql://flows:hunter2@db/flows"], {})
    assert "hunter2" not in repr(settings)
    assert "hunter2" not in settings.database.url_for_logs
    assert "hunter2" in settings.database.url  # still usable to connect


def test_database_pool_settings_are_read_and_checked() -> None:
    settings = settings_from(
        ["--database-pool-size", "3", "--database-pool-pre-ping", "false"],
        {"FLOWSERVICE_DATABASE_POOL_TIMEOUT": "2.5", "FLOWSERVICE_HEALTH_CHECK_INTERVAL": "0.5"},
    )
    database = settings.database
    assert (database.pool_size, database.pool_pre_ping, database.pool_timeout) == (3, False, 2.5)
    assert settings.health_check_interval == 0.5
    with pytest.raises(
        SettingsError, match="--database-pool-size / FLOWSERVICE_DATABASE_POOL_SIZE"
    ):
        settings_from(["--database-pool-size", "0"], {})
    with pytest.raises(SettingsError, match="FLOWSERVICE_DATABASE_BUSY_TIMEOUT"):
        settings_from([], {"FLOWSERVICE_DATABASE_BUSY_TIMEOUT": "-1"})
    with pytest.raises(SettingsError, match="--database-pool-pre-ping"):
        settings_from(["--database-pool-pre-ping", "maybe"], {})


def test_the_pooler_setting_names_pgbouncer_on_postgresql_only() -> None:
    postgres = "postgresql://postgres@127.0.0.1:6432/flows"
    assert not settings_from(["--database-url", postgres], {}).database.behind_pooler
    behind = settings_from(
        ["--database-url", postgres], {"FLOWSERVICE_DATABASE_POOLER": "pgbouncer"}
    ).database
    assert (behind.pooler, behind.behind_pooler) == ("pgbouncer", True)
    with pytest.raises(SettingsError, match="--database-pooler / FLOWSERVICE_DATABASE_POOLER"):
        settings_from(["--database-url", postgres, "--database-pooler", "pgpool"], {})
    with pytest.raises(SettingsError, match="SQLite has no pooler"):
        settings_from(["--database-pooler", "pgbouncer"], {})


def test_read_urls_come_from_a_repeated_flag_or_a_comma_list() -> None:
    primary = ["--database-url", "postgresql://u@primary/flows"]
    repeated = settings_from(
        [
            *primary,
            *("--database-read-url", "postgresql://u:s3cret@a/flows"),
            *("--database-read-url", "postgres://u@b:5433/flows"),
        ],
        {},
    )
    listed = settings_from(
        primary,
        {
            "FLOWSERVICE_DATABASE_READ_URLS": "postgresql://u:s3cret@a/flows, postgres://u@b:5433/flows"
        },
    )
    expected = (
        "postgresql+asyncpg://u:s3cret@a/flows",
        "postgresql+asyncpg://u@b:5433/flows",
    )
    assert repeated.database.read_urls == listed.database.read_urls == expected
    assert "s3cret" not in repr(repeated)
    assert repeated.database.read_urls_for_logs == (
        "postgresql+asyncpg://u:***@a/flows",
        "postgresql+asyncpg://u@b:5433/flows",
    )
    assert settings_from(primary, {}).database.read_urls == ()


def test_replica_settings_are_read_and_checked() -> None:
    settings = settings_from(
        ["--database-max-replica-lag", "2.5", "--database-replica-wait", "0.1"],
        {"FLOWSERVICE_DATABASE_REPLICA_PROBE_INTERVAL": "0.5"},
    )
    database = settings.database
    assert (database.max_replica_lag, database.replica_wait, database.replica_probe_interval) == (
        2.5,
        0.1,
        0.5,
    )
    with pytest.raises(SettingsError, match="--database-max-replica-lag"):
        settings_from(["--database-max-replica-lag", "-1"], {})


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--database-read-url", "sqlite:///x.db"], "PostgreSQL hot standbys"),
        (["--database-read-url", "postgresql://u@b/flows"], "PostgreSQL primary"),
    ],
)
def test_read_urls_need_postgresql_on_both_sides(argv: list[str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        settings_from(argv, {})
