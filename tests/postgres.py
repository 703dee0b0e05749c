"""Administration of the test PostgreSQL server (databases, roles, outages)."""

from __future__ import annotations

import re
from pathlib import Path

from sqlalchemy.ext.asyncio import create_async_engine

PREFECT_POSTGRES = Path(__file__).parent / "data" / "prefect-3.9.1" / "schema-postgres.sql"
#: Tables outside the six; FlowService's schema has no foreign keys to them.
OUTSIDE = ("flow_run_state", "block_document", "concurrency_limit_v2")


async def admin(server_url: str, *statements: str) -> list[list[tuple[object, ...]]]:
    """Run statements outside any transaction as the server's administrator; their rows."""
    engine = create_async_engine(server_url, isolation_level="AUTOCOMMIT")
    results = []
    try:
        async with engine.connect() as connection:
            for statement in statements:
                result = await connection.exec_driver_sql(statement)
                results.append([tuple(row) for row in result.all()] if result.returns_rows else [])
    finally:
        await engine.dispose()
    return results


def prefect_schema_statements() -> list[str]:
    """Prefect 3.9.1's dumped DDL, minus psql commands, ownership and keys to other tables."""
    text = "\n".join(
        line
        for line in PREFECT_POSTGRES.read_text().splitlines()
        if not line.startswith(("--", "\\", "SET ", "SELECT pg_catalog"))
    )
    statements = [s.strip() for s in text.split(";\n") if s.strip()]
    return [
        s.rstrip(";")
        for s in statements
        if not re.match(r"(ALTER .* OWNER TO|COMMENT ON)", s)
        and not any(f"REFERENCES public.{table}(" in s for table in OUTSIDE)
    ]
