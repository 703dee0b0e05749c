"""FlowService's memo of serialized flows against a Prefect server writing the same rows.

Every read path is taken twice before each Prefect write (the second from the
memo), then again after it: what FlowService returns must be what Prefect
itself returns, never the flow as it was.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from tests.prefect.compare import from_flowservice, from_prefect

if TYPE_CHECKING:
    from tests.prefect.conftest import Differential


async def _all_reads_agree_with_prefect(both: Differential, flow_id: str, name: str) -> None:
    expected = from_prefect(await both.prefect_ok("GET", f"/flows/{flow_id}"))
    for _ in range(2):
        by_id = await both.client.read_flow(flow_id)
        by_name = await both.client.read_flow_by_name(name)
        listed = await both.client.read_flows(flows={"id": {"any": [flow_id]}})
        existing, created = await both.client.create_flow(name)
        assert not created
        for flow in (by_id, by_name, *listed, existing):
            assert from_flowservice(flow) == expected


async def test_prefects_writes_are_never_answered_from_the_memo(both: Differential) -> None:
    name = f"memo-{uuid.uuid4().hex[:8]}"
    flow = await both.prefect_ok("POST", "/flows/", {"name": name, "tags": ["a"]})
    try:
        await _all_reads_agree_with_prefect(both, flow["id"], name)
        for tags in (["b"], ["a"], []):  # back to an earlier value, too
            await both.prefect_ok("PATCH", f"/flows/{flow['id']}", {"tags": tags})
            await _all_reads_agree_with_prefect(both, flow["id"], name)
        await both.prefect_ok("PATCH", f"/flows/{flow['id']}", {})  # only `updated` moves
        await _all_reads_agree_with_prefect(both, flow["id"], name)
    finally:
        await both.prefect("DELETE", f"/flows/{flow['id']}")
    # The same name again, made by Prefect: a new id, a new row.
    again = await both.prefect_ok("POST", "/flows/", {"name": name, "tags": ["new"]})
    try:
        assert again["id"] != flow["id"]
        await _all_reads_agree_with_prefect(both, again["id"], name)
    finally:
        await both.prefect("DELETE", f"/flows/{again['id']}")
