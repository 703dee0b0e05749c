"""Administration of the test PostgreSQL server (databases, roles, outages)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import create_async_engine


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
