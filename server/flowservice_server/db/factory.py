"""Opening a database: the backend the URL names, migrated or checked, ready for units of work.

Kept apart from `db.engine`, which the backends build on, so that nothing
imports in a circle.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import TYPE_CHECKING

import sqlalchemy as sa

from flowservice_server.db.migrate import (
    check_prefect_schema,
    check_sqlite_file,
    upgrade_to_head,
)
from flowservice_server.db.postgres_engine import PostgresDatabase
from flowservice_server.db.replicas import ReplicatedDatabase, Standby, target_name
from flowservice_server.db.sqlite_engine import SqliteDatabase

if TYPE_CHECKING:
    from flowservice_server.config import DatabaseSettings
    from flowservice_server.db.engine import Database


async def open_database(settings: DatabaseSettings, *, migrate: bool) -> Database:
    """Connect; migrate the managed schema when `migrate` is set, else check Prefect's."""
    backend = sa.make_url(settings.url).get_backend_name()
    if backend == "sqlite":
        check_sqlite_file(settings.url, prefect_mode=not migrate)
    database: Database = (
        SqliteDatabase(settings) if backend == "sqlite" else PostgresDatabase(settings)
    )
    try:
        await database.maintain(upgrade_to_head if migrate else check_prefect_schema)
        await database.ping()
    except BaseException:
        await database.close()
        raise
    if settings.read_urls:
        return await _with_standbys(database, settings)
    return database


async def _with_standbys(primary: Database, settings: DatabaseSettings) -> ReplicatedDatabase:
    """The primary with its hot standbys, each probed once (a standby that is down is no
    reason not to start: it is skipped until a later probe finds it up)."""
    standbys = [
        Standby(target_name(url), PostgresDatabase(dataclasses.replace(settings, url=url)))
        for url in settings.read_urls
    ]
    database = ReplicatedDatabase(
        primary,
        standbys,
        max_replica_lag=settings.max_replica_lag,
        replica_wait=settings.replica_wait,
        probe_interval=settings.replica_probe_interval,
    )
    await asyncio.gather(*(database.probe(standby) for standby in standbys))
    return database
