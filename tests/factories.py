"""Rows written straight into the database: the flow runs, task runs, deployments and
work pools that FlowService filters on but never writes itself."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from flowservice_server.db.tables import (
    deployment,
    flow,
    flow_run,
    task_run,
    work_pool,
    work_queue,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sqlalchemy.ext.asyncio import AsyncEngine


class Seeder:
    """Inserts rows with Prefect's defaults filled in; every method returns the new id."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def _insert(self, table: sa.Table, values: dict[str, Any]) -> uuid.UUID:
        now = datetime.now(UTC)
        row = {"id": uuid.uuid4(), "created": now, "updated": now, **values}
        async with self.engine.begin() as connection:
            await connection.execute(table.insert().values(**row))
        identifier: uuid.UUID = row["id"]
        return identifier

    async def flow(self, name: str, *, tags: Sequence[str] = (), **values: Any) -> uuid.UUID:
        return await self._insert(flow, {"name": name, "tags": list(tags), **values})

    async def work_pool(self, name: str, *, type: str = "process") -> uuid.UUID:
        return await self._insert(work_pool, {"name": name, "type": type})

    async def work_queue(self, pool_id: uuid.UUID, name: str = "default") -> uuid.UUID:
        return await self._insert(work_queue, {"name": name, "work_pool_id": pool_id})

    async def deployment(
        self,
        flow_id: uuid.UUID,
        name: str,
        *,
        tags: Sequence[str] = (),
        paused: bool = False,
        **values: Any,
    ) -> uuid.UUID:
        return await self._insert(
            deployment,
            {"flow_id": flow_id, "name": name, "tags": list(tags), "paused": paused, **values},
        )

    async def flow_run(
        self, flow_id: uuid.UUID, name: str, *, tags: Sequence[str] = (), **values: Any
    ) -> uuid.UUID:
        return await self._insert(
            flow_run, {"flow_id": flow_id, "name": name, "tags": list(tags), **values}
        )

    async def task_run(
        self,
        flow_run_id: uuid.UUID | None,
        name: str,
        *,
        tags: Sequence[str] = (),
        **values: Any,
    ) -> uuid.UUID:
        return await self._insert(
            task_run,
            {
                "flow_run_id": flow_run_id,
                "name": name,
                "tags": list(tags),
                "task_key": name,
                "dynamic_key": str(uuid.uuid4()),
                **values,
            },
        )

    async def count(self, table: sa.Table) -> int:
        async with self.engine.connect() as connection:
            result = await connection.execute(sa.select(sa.func.count()).select_from(table))
            return int(result.scalar_one())

    async def fetch(self, query: sa.Select[Any]) -> list[sa.Row[Any]]:
        async with self.engine.connect() as connection:
            return list((await connection.execute(query)).all())
