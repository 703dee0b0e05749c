"""The engine and the unit of work: one connection (and, for writes, one transaction) per RPC."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from flowservice_server.db import dialect
from flowservice_server.db.migrate import check_prefect_schema, upgrade_to_head

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from flowservice_server.config import DatabaseSettings


def create_engine(settings: DatabaseSettings) -> AsyncEngine:
    """An engine with the configured pool and the dialect's connection setup."""
    backend = sa.make_url(settings.url).get_backend_name()
    engine = create_async_engine(
        settings.url,
        pool_size=settings.pool_size,
        max_overflow=settings.max_overflow,
        pool_timeout=settings.pool_timeout,
        pool_recycle=settings.pool_recycle or -1,
        **dialect.engine_arguments(
            backend, connect_timeout=settings.connect_timeout, pre_ping=settings.pool_pre_ping
        ),
    )
    hook = dialect.on_connect(backend, busy_timeout=settings.busy_timeout)
    if hook is not None:
        sa.event.listen(engine.sync_engine, "connect", hook)
    return engine


class Database:
    """Hands out connections for reads and transactions for writes.

    Model functions receive the connection and never commit: the unit of work
    here commits a write when the block ends and rolls it back on error.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        # SQLite admits one writer at a time: queue this process's writers on
        # a lock rather than have them sleep in SQLite's busy handler.
        self._write_lock = asyncio.Lock() if dialect.serializes_writes(engine.dialect) else None

    @classmethod
    async def open(cls, settings: DatabaseSettings, *, migrate: bool) -> Database:
        """Connect; migrate the managed schema when `migrate` is set, else check Prefect's."""
        database = cls(create_engine(settings))
        try:
            async with database.engine.connect() as connection:
                if migrate:
                    await connection.run_sync(upgrade_to_head)
                    await connection.commit()
                else:
                    await connection.run_sync(check_prefect_schema)
            await database.ping()
        except BaseException:
            await database.close()
            raise
        return database

    async def ping(self) -> None:
        async with self.engine.connect() as connection:
            await connection.execute(sa.text("SELECT 1"))

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as connection:
            yield connection

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        async with self._writer_turn(), self.engine.begin() as connection:
            yield connection

    @contextlib.asynccontextmanager
    async def _writer_turn(self) -> AsyncIterator[None]:
        if self._write_lock is None:
            yield
            return
        async with self._write_lock:
            yield

    async def close(self) -> None:
        await self.engine.dispose()
