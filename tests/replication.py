"""A PostgreSQL primary with a streaming hot standby, and FlowService servers reading from it.

Built on `tests.pg_cluster`: the primary commits synchronously (so the standby
receives each commit at once and lags only by what a test asks for), the
FlowService database is created and migrated on the primary and reaches the
standby by streaming replication.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import urllib.request
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client.parser import text_string_to_metric_families

from flowservice_server.app import RunningServer, start_server
from flowservice_server.config import DatabaseSettings, Settings
from flowservice_server.db.factory import open_database
from tests.helpers import run_sync
from tests.pg_cluster import PostgresCluster, scratch_directory
from tests.postgres import admin

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

DATABASE = "flowservice"


@dataclass
class Replicated:
    """A running primary and standby holding a migrated FlowService database."""

    primary: PostgresCluster
    standby: PostgresCluster

    @property
    def primary_url(self) -> str:
        return self.primary.url(DATABASE)

    @property
    def standby_url(self) -> str:
        return self.standby.url(DATABASE)


async def _migrate(url: str) -> None:
    database = await open_database(DatabaseSettings(url=url), migrate=True)
    await database.close()


@contextlib.contextmanager
def replicated_cluster() -> Iterator[Replicated]:
    """Primary and hot standby, started; stopped and removed at the end."""
    with scratch_directory() as directory:
        primary = PostgresCluster.create(directory / "cluster")
        primary.set(synchronous_commit="on")
        primary.start()
        standby: PostgresCluster | None = None
        try:
            run_sync(admin(primary.url(), f'CREATE DATABASE "{DATABASE}"'))
            run_sync(_migrate(primary.url(DATABASE)))
            standby = primary.standby()
            standby.start()
            yield Replicated(primary, standby)
        finally:
            if standby is not None:
                standby.stop("immediate")
            primary.stop("immediate")


async def query(url: str, statement: str) -> list[tuple[object, ...]]:
    """Rows of one statement, on a connection of the test's own (autocommit)."""
    [rows] = await admin(url, statement)
    return rows


async def wait_replayed(cluster: Replicated, within: float = 30.0) -> None:
    """Until the standby has replayed everything the primary had flushed when called.

    The flush position, not the insert position: right after a WAL segment
    switch (a base backup makes one) the insert position lies past the new
    segment's header, which no record ends at, so the standby reaches it only
    with the next record some background process writes (up to 15 s later).
    """
    [(target,)] = await query(cluster.primary_url, "SELECT pg_current_wal_flush_lsn()::text")
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        [(caught_up,)] = await query(
            cluster.standby_url, f"SELECT pg_last_wal_replay_lsn() >= '{target}'::pg_lsn"
        )
        if caught_up:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"the standby did not replay {target} within {within}s")


@contextlib.asynccontextmanager
async def serving_with_standby(
    cluster: Replicated,
    *,
    max_replica_lag: float = 5.0,
    replica_wait: float = 1.0,
    probe_interval: float = 0.1,
    metrics: bool = True,
    http: bool = False,
) -> AsyncIterator[RunningServer]:
    """A FlowService server on the primary that reads from the standby."""
    settings = Settings(
        address="127.0.0.1:0",
        access_log=False,
        metrics_address="127.0.0.1:0" if metrics else "",
        http_address="127.0.0.1:0" if http else "",
        health_check_interval=0.2,
        database=DatabaseSettings(
            url=cluster.primary_url,
            read_urls=(cluster.standby_url,),
            max_replica_lag=max_replica_lag,
            replica_wait=replica_wait,
            replica_probe_interval=probe_interval,
        ),
    )
    running = await start_server(settings)
    try:
        yield running
    finally:
        await running.stop(grace=None)


def reads_by_target(running: RunningServer) -> dict[str, float]:
    """`flowservice_db_reads_total` per target, scraped from the server's /metrics."""
    url = f"http://127.0.0.1:{running.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:  # our own loopback
        text = response.read().decode()
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "flowservice_db_reads_total":
                counts[sample.labels["target"]] = sample.value
    return counts


def standby_target(cluster: Replicated) -> str:
    """How the server's metrics and logs name the standby."""
    return f"127.0.0.1:{cluster.standby.port}/{DATABASE}"
