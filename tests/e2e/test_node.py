"""FlowService from Node.js (@grpc/grpc-js + @grpc/proto-loader).

Why: the contract's well-known types (ListValue for `any`, Struct for labels,
Timestamp bounds, FieldMask) must be usable from a dynamic, non-Python gRPC
stack that loads the .proto files as they are. tests/e2e/node/client.mjs runs
every RPC (WatchFlows too: list-then-watch, cancel, resume) and asserts on each
answer; this test seeds the flow runs it filters
on (FlowService has no RPC that writes them), checks its JSON summary and then
reads the final state back through the Python client.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import pytest

from flowservice.client import flow_labels
from flowservice_server.db.tables import flow_run
from tests.helpers import expect_error, names

if TYPE_CHECKING:
    from flowservice.client import FlowClient
    from flowservice_server.app import RunningServer
    from tests.factories import Seeder

NODE_DIR = Path(__file__).parent / "node"
NODE = shutil.which("node")
#: Generous: the script makes ~40 calls and two watches, but CI machines are small
#: and node starts cold.
NODE_TIMEOUT = 60.0

pytestmark = [
    pytest.mark.skipif(NODE is None, reason="node (Node.js >= 20) is not on PATH"),
    pytest.mark.skipif(
        not (NODE_DIR / "node_modules").is_dir(),
        reason="tests/e2e/node/node_modules is missing: run `npm ci` in tests/e2e/node",
    ),
]

#: The seeded flows, each with one flow run: (flow name, run start, state type).
#: lateB starts 250 ms after lateA, so a bound 100 ms past lateA tells whether
#: the Node client's Timestamp nanos reach the server.
SEEDED = {
    "early": ("py-early", datetime(2026, 1, 1, tzinfo=UTC), "COMPLETED"),
    "lateA": ("py-late-a", datetime(2026, 6, 1, 12, tzinfo=UTC), "COMPLETED"),
    "lateB": ("py-late-b", datetime(2026, 6, 1, 12, 0, 0, 250_000, tzinfo=UTC), "FAILED"),
}


async def run_node(address: str, scenario: dict[str, Any]) -> tuple[int, str, str]:
    """Run client.mjs without blocking the event loop, which the server shares."""
    assert NODE is not None
    process = await asyncio.create_subprocess_exec(
        NODE,
        str(NODE_DIR / "client.mjs"),
        address,
        json.dumps(scenario),
        cwd=NODE_DIR,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), NODE_TIMEOUT)
    except TimeoutError:
        process.kill()
        stdout, stderr = await process.communicate()
        pytest.fail(f"client.mjs still running after {NODE_TIMEOUT} s:\n{stderr.decode()}")
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


async def test_the_node_client_scenario(
    server: RunningServer, client: FlowClient, seed: Seeder
) -> None:
    """Every RPC from Node, asserted there and here, then cross-checked from Python."""
    seeded: dict[str, dict[str, str]] = {}
    for key, (name, start_time, state_type) in SEEDED.items():
        flow_id = await seed.flow(name)
        await seed.flow_run(flow_id, f"{name}-run", state_type=state_type, start_time=start_time)
        seeded[key] = {
            "flowId": str(flow_id),
            "flowName": name,
            "startTime": start_time.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "stateType": state_type,
        }

    code, stdout, stderr = await run_node(f"127.0.0.1:{server.port}", {"seeded": seeded})
    assert code == 0, f"client.mjs exited {code}:\n{stderr}\n{stdout}"
    summary = json.loads(stdout)

    etl_id = summary["create"]["etl"]["id"]
    plain_id = summary["create"]["plain"]["id"]
    early_id = seeded["early"]["flowId"]
    assert summary["create"] == {
        "etl": {
            "id": etl_id,
            "tags": ["db", "nightly"],
            "labels": {"critical": True, "env": "dev", "retries": 3},
        },
        "plain": {"id": plain_id, "tags": [], "labels": None},
        "againCreated": False,
    }
    assert summary["read"] == {"byId": etl_id, "byName": plain_id}
    assert summary["readFlows"] == {
        "sinceLateA": ["py-late-b", "py-late-a"],
        "untilLateA": ["py-early", "py-late-a"],
        "failedOrEarly": ["py-early", "py-late-b"],
        "plainOrNightly": ["node-etl", "node-plain"],
        "everyNameDesc": ["py-late-b", "py-late-a", "py-early", "node-plain", "node-etl"],
        "emptyAny": [],
        "limit2": ["py-late-b", "py-late-a"],
        "badElement": ["flows.id.any[1]"],
    }
    every_name_desc = ["py-late-b", "py-late-a", "py-early", "node-plain", "node-etl"]
    assert summary["lists"] == {
        "walked": every_name_desc,
        "pages": 3,
        "totalSize": "5",
        "foreignToken": ["page_token"],
        "batchSizes": [2, 2, 1],
        "latestFailed": ["py-late-b"],
    }
    assert summary["count"] == {"total": "5", "withRuns": "3"}
    assert summary["update"] == {
        "plainTags": ["from-node", "from-node"],
        "etlTagsWithoutMask": ["db", "nightly"],
        "etlTagsWithMask": [],
        "badMask": ["update_mask.paths[0]"],
    }
    assert summary["delete"] == {
        "id": early_id,
        "readCode": grpc.StatusCode.NOT_FOUND.value[0],
        "resourceInfo": {
            "resourceType": "flowservice.v1.Flow",
            "resourceName": early_id,
            "owner": "",
            "description": f"no flowservice.v1.Flow with id {early_id!r}",
        },
        "reason": "FLOW_NOT_FOUND",
        "deleteAgainCode": grpc.StatusCode.NOT_FOUND.value[0],
    }
    assert summary["invalidId"] == {
        "code": grpc.StatusCode.INVALID_ARGUMENT.value[0],
        "fields": ["id"],
    }

    assert summary["batch"] == {
        "created": [
            ["node-batch-b", True],
            ["node-etl", False],
            ["node-batch-a", True],
            ["node-batch-b", False],
        ],
        "got": ["node-etl", "node-batch-a", "node-batch-b", "node-batch-a"],
        "missing": ["nope", "nope-2"],
    }
    assert summary["etag"] == {
        "staleCode": grpc.StatusCode.ABORTED.value[0],
        "staleReason": "ETAG_MISMATCH",
        "malformed": ["etag"],
    }

    # WatchFlows: the flows as they were, then Node's own writes, once each and in
    # order; the resumed watch gets the flow created while nobody watched, once.
    assert summary["watch"] == {
        "existing": ["node-etl", "node-plain", "py-late-a", "py-late-b"],
        "changes": [
            ["created", "node-watched", ["v"]],
            ["updated", "node-watched", ["w"]],
            ["deleted", "node-watched", ["w"]],
        ],
        "cancelledCode": grpc.StatusCode.CANCELLED.value[0],
        "afterResume": [["created", "node-missed"], ["deleted", "node-missed"]],
    }

    # What Node wrote is what Python reads.
    etl = await client.read_flow(etl_id)
    assert (list(etl.tags), flow_labels(etl)) == (
        [],
        {"critical": True, "env": "dev", "retries": 3},
    )
    plain = await client.read_flow(plain_id)
    assert (list(plain.tags), flow_labels(plain)) == (["from-node", "from-node"], None)
    gone = await expect_error(client.read_flow(early_id), grpc.StatusCode.NOT_FOUND)
    assert gone.resource_info is not None
    assert gone.resource_info.resource_name == early_id
    assert names(await client.read_flows()) == [
        "node-etl",
        "node-plain",
        "py-late-a",
        "py-late-b",
    ]
    assert await seed.count(flow_run) == 2  # the deleted flow's run went with it
