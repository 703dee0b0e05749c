"""The migrations' indexes serve every filter path through related rows.

A filter through flow runs must not scan every run of every flow. SQLite's
plan is checked as is; PostgreSQL prefers sequential scans on tiny tables, so
there the check is that, with them disabled, an index serves the path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa
from google.protobuf import json_format
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import ClauseElement, Executable

from flowservice.v1 import flow_service_pb2
from flowservice_server import filters
from flowservice_server.db.tables import flow
from flowservice_server.errors import Violations
from flowservice_server.models.flows import flow_conditions
from tests.helpers import direct_engine

if TYPE_CHECKING:
    from sqlalchemy.sql.compiler import SQLCompiler


class Explain(Executable, ClauseElement):
    """EXPLAIN of a statement, with its parameters bound as usual."""

    inherit_cache = False

    def __init__(self, statement: sa.Select[Any]) -> None:
        self.statement = statement


@compiles(Explain)
def _explain(element: Explain, compiler: SQLCompiler, **kw: Any) -> str:
    return "EXPLAIN " + compiler.process(element.statement, **kw)


@compiles(Explain, "sqlite")
def _explain_sqlite(element: Explain, compiler: SQLCompiler, **kw: Any) -> str:
    return "EXPLAIN QUERY PLAN " + compiler.process(element.statement, **kw)


#: request -> (table that must not be scanned, the index that must serve it)
PATHS: list[Any] = [
    pytest.param(
        {"flow_runs": {"state": {"type": {"any": ["FAILED"]}}}},
        "flow_run",
        "ix_flow_run__state_type_flow_id",
        id="flow-run-state",
    ),
    pytest.param(
        {
            "flow_runs": {
                "state": {"type": {"any": ["FAILED"]}},
                "start_time": {"after": "2026-11-27T00:00:00Z"},
            }
        },
        "flow_run",
        "ix_flow_run__state_type_coalesce_start_time_flow_id",
        id="flow-run-state-since",
    ),
    pytest.param(
        {"flow_runs": {"deployment_id": {"any": ["3f2f054e-3137-49b6-a5a3-0f1d6e7f2a10"]}}},
        "flow_run",
        "ix_flow_run__deployment_id",
        id="flow-run-deployment",
    ),
    pytest.param(
        {"task_runs": {"state": {"type": {"any": ["FAILED"]}}}},
        "task_run",
        "ix_task_run__state_type",
        id="task-run-state",
    ),
    pytest.param(
        {"work_pools": {"name": {"any": ["pool"]}}},
        "deployment",
        "ix_deployment__work_queue_id",
        id="work-pool",
    ),
]


#: With empty tables (no statistics) PostgreSQL may serve the time-bounded state
#: path from either index that leads with state_type; both avoid the scan.
POSTGRESQL_ALTERNATIVES = {
    "ix_flow_run__state_type_coalesce_start_time_flow_id": {"ix_flow_run__state_type_flow_id"}
}


#: Tag filters can use an index only on PostgreSQL (GIN over JSONB).
TAG_PATHS: list[Any] = [
    pytest.param({"flows": {"tags": {"all": ["db"]}}}, "flow", "ix_flow__tags", id="flow-tags"),
    pytest.param(
        {"flow_runs": {"tags": {"any": ["db"]}}}, "flow_run", "ix_flow_run__tags", id="run-tags"
    ),
    pytest.param(
        {"deployments": {"tags": {"all": ["db"]}}},
        "deployment",
        "ix_deployment__tags",
        id="deployment-tags",
    ),
]


async def plan_for(database_url: str, request_json: dict[str, Any]) -> str:
    """The database's plan for ReadFlows with this request (index use forced on PostgreSQL)."""
    request = json_format.ParseDict(request_json, flow_service_pb2.ReadFlowsRequest())
    query = (  # the name column: its text type leaves EXPLAIN's rows unconverted
        sa.select(flow.c.name)
        .where(*flow_conditions(filters.flow_filters(request, Violations())))
        .order_by(flow.c.name)
        .limit(200)
    )
    engine = direct_engine(database_url)
    try:
        async with engine.connect() as connection:
            if connection.dialect.name == "postgresql":
                await connection.exec_driver_sql("SET enable_seqscan = off")
            rows = (await connection.execute(Explain(query))).all()
    finally:
        await engine.dispose()
    return "\n".join(str(row[-1]) for row in rows)


@pytest.mark.parametrize(("request_json", "table", "index"), PATHS)
async def test_related_row_filters_use_an_index(
    database_url: str, request_json: dict[str, Any], table: str, index: str
) -> None:
    plan = await plan_for(database_url, request_json)
    acceptable = {index}
    if database_url.startswith("postgresql"):
        acceptable |= POSTGRESQL_ALTERNATIVES.get(index, set())
    assert any(name in plan for name in acceptable), plan
    assert f"SCAN {table} " not in plan + " ", plan  # SQLite's full scan
    assert f"Seq Scan on {table} " not in plan + " ", plan  # PostgreSQL's


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
@pytest.mark.parametrize(("request_json", "table", "index"), TAG_PATHS)
async def test_tag_filters_use_gin_indexes(
    database_url: str, request_json: dict[str, Any], table: str, index: str
) -> None:
    plan = await plan_for(database_url, request_json)
    assert index in plan, plan
    assert f"Seq Scan on {table} " not in plan + " ", plan


async def test_the_latest_runs_state_is_read_from_the_index(database_url: str) -> None:
    """ "Latest run FAILED": one seek per flow in (flow_id, start_time, id, state_type), and on
    SQLite that index entry alone answers (no read of the flow_run row; bench/RESULTS.md)."""
    request = {"latest_flow_run": {"state": {"type": {"any": ["FAILED"]}}}}
    plan = await plan_for(database_url, request)
    index = "ix_flow_run__flow_id_start_time_id_state_type"
    assert index in plan, plan
    if database_url.startswith("sqlite"):
        assert f"USING COVERING INDEX {index}" in plan, plan
        assert "SCAN flow_run" not in plan, plan
    assert "Seq Scan on flow_run" not in plan, plan
