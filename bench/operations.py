"""The benchmarked operations, each written once as Prefect's REST call (the gRPC side translates).

Why one list: both servers must run exactly the same operations with the
same filters; `load_grpc.proto_json` derives FlowService's filter messages
from these Prefect bodies mechanically.
"""

from __future__ import annotations

from typing import Any

FAILED = {"state": {"type": {"any_": ["FAILED"]}}}
#: Not an operation of the issue: each server's cheapest call (gRPC Health/Check,
#: GET /api/health), with no database work, shows the framework's own cost per call.
HEALTH = {"name": "Health check (no database; reference)", "kind": "health", "reference": True}


def read_operations(since: str, pool: str) -> list[dict[str, Any]]:
    """Reads and counts; they leave the data as it is."""
    return [
        HEALTH,
        {"name": "ReadFlow (by id)", "kind": "read_flow", "floor": True},
        {"name": "ReadFlowByName", "kind": "read_flow_by_name", "floor": True},
        {
            "name": "ReadFlows: no filter (200 rows)",
            "kind": "read_flows",
            "body": {},
            "floor": True,
        },
        {
            "name": "ReadFlows: name like 'etl'",
            "kind": "read_flows",
            "body": {"flows": {"name": {"like_": "etl"}}},
            "floor": True,
        },
        {
            "name": "ReadFlows: tags all [prod, etl]",
            "kind": "read_flows",
            "body": {"flows": {"tags": {"all_": ["prod", "etl"]}}},
            "floor": True,
        },
        {
            "name": "ReadFlows: with FAILED runs",
            "kind": "read_flows",
            "body": {"flow_runs": FAILED},
            "floor": True,
        },
        failed_since(since),
        {
            "name": "ReadFlows: with paused deployments",
            "kind": "read_flows",
            "body": {"deployments": {"paused": {"eq_": True}}},
            "floor": True,
        },
        {
            "name": f"ReadFlows: in work pool {pool}",
            "kind": "read_flows",
            "body": {"work_pools": {"name": {"any_": [pool]}}},
            "floor": True,
        },
        {"name": "CountFlows: no filter", "kind": "count_flows", "body": {}, "floor": True},
        count_failed(),
    ]


def failed_since(since: str) -> dict[str, Any]:
    return {
        "name": "ReadFlows: FAILED runs since T",
        "kind": "read_flows",
        "body": {"flow_runs": {**FAILED, "start_time": {"after_": since}}},
        "floor": True,
    }


def count_failed() -> dict[str, Any]:
    return {
        "name": "CountFlows: with FAILED runs",
        "kind": "count_flows",
        "body": {"flow_runs": FAILED},
        "floor": True,
    }


def write_operations(prefix: str) -> list[dict[str, Any]]:
    """Writes: new names are unique per call; updates cycle over existing flows;
    deletes take flows without runs that were inserted for the purpose."""
    return [
        {"name": "CreateFlow: existing name", "kind": "create_existing", "write": True},
        {"name": "CreateFlow: new name", "kind": "create_new", "prefix": prefix, "write": True},
        {"name": "UpdateFlow (tags)", "kind": "update_flow", "write": True},
        {"name": "DeleteFlow (flow without runs)", "kind": "delete_flow", "write": True},
    ]


def large_operations(since: str) -> list[dict[str, Any]]:
    """At a million runs: the two targets of the issue, and two cheap reads for scale."""
    return [
        {"name": "ReadFlow (by id)", "kind": "read_flow", "floor": True},
        {
            "name": "ReadFlows: no filter (200 rows)",
            "kind": "read_flows",
            "body": {},
            "floor": True,
        },
        count_failed(),
        failed_since(since),
    ]
