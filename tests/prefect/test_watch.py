"""WatchFlows on a database a Prefect 3.9.1 server owns and writes, after `changefeed add`.

Prefect's own flow writes (its REST API: create, tag update, delete) are
announced like FlowService's; Prefect keeps serving, and restarting it (its
migrations run at start) is undisturbed by the triggers. `changefeed drop`
then leaves the database as Prefect had it.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from tests.prefect.prefect_process import PrefectServer
from tests.processes import run

if TYPE_CHECKING:
    from pathlib import Path

    from tests.prefect.conftest import Differential


async def _events(stream: Any, count: int) -> list[tuple[str, str, list[str]]]:
    got = []
    async with asyncio.timeout(20):
        async for response in stream:
            kind = response.WhichOneof("event")
            if kind in ("created", "updated", "deleted"):
                flow = getattr(response, kind)
                got.append((kind, flow.name, list(flow.tags)))
                if len(got) == count:
                    return got
    return got


async def test_prefects_own_flow_writes_are_announced(
    both: Differential, prefect_database: str, prefect_executable: Path, tmp_path: Path
) -> None:
    code, output = await run(
        ["changefeed", "add", "--database-url", prefect_database], tmp_path, {}
    )
    assert code == 0, output
    try:
        stream = both.client.watch_flows(send_initial_state=True)
        async for response in stream:
            if response.WhichOneof("event") == "initial_state_done":
                break
        created = await both.prefect_ok("POST", "/flows/", {"name": "watched-by-prefect"})
        await both.prefect_ok("PATCH", f"/flows/{created['id']}", {"tags": ["a", "b"]})
        await both.prefect("DELETE", f"/flows/{created['id']}")
        events = await _events(stream, 3)
        await stream.aclose()
        assert events == [
            ("created", "watched-by-prefect", []),
            ("updated", "watched-by-prefect", ["a", "b"]),
            ("deleted", "watched-by-prefect", ["a", "b"]),
        ]
        # Prefect restarts (running its migrations) beside the triggers and still writes.
        restarted = PrefectServer.start(prefect_executable, tmp_path / "home", prefect_database)
        try:
            restarted.api.ok("POST", "/flows/", {"name": "after-restart"})
        finally:
            restarted.stop()
    finally:
        code, output = await run(
            ["changefeed", "drop", "--database-url", prefect_database], tmp_path, {}
        )
        assert code == 0, output
