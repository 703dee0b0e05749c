"""gRPC load generator for FlowService: `python load_grpc.py PLAN.json`.

Uses the raw generated stub on one grpc.aio channel (HTTP/2 multiplexes the
concurrent calls), so the client adds as little as possible. Filters are
written once, in Prefect's JSON (the same bodies load_rest.py posts), and
translated mechanically: trailing underscores go, operators and sorts get
their enum names. Any status but OK is a failure, counted by its code.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc.aio
from google.protobuf import field_mask_pb2, json_format
from grpc_health.v1 import health_pb2, health_pb2_grpc
from loadstats import ExhaustedError, UnexpectedReplyError, measure, pin_to_cpu

from flowservice.v1 import flow_service_pb2 as s
from flowservice.v1 import flow_service_pb2_grpc

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

FILTERS = ("flows", "flow_runs", "task_runs", "deployments", "work_pools", "latest_flow_run")
OPERATORS = {"and_": "OPERATOR_AND", "or_": "OPERATOR_OR"}


def proto_json(prefect: Any) -> Any:
    """A Prefect filter body in the proto's JSON form (`any_` -> `any`, `or_` -> OPERATOR_OR)."""
    if isinstance(prefect, dict):
        result = {}
        for key, value in prefect.items():
            if value is None:
                continue
            name = key[:-1] if key.endswith("_") else key
            result[name] = OPERATORS[value] if key == "operator" else proto_json(value)
        return result
    return prefect


def read_flows_request(body: dict[str, Any]) -> s.ReadFlowsRequest:
    converted = proto_json(body)
    if "sort" in converted:
        converted["sort"] = f"FLOW_SORT_{converted['sort']}"
    return json_format.ParseDict(converted, s.ReadFlowsRequest())


def count_flows_request(body: dict[str, Any]) -> s.CountFlowsRequest:
    filters = {key: value for key, value in body.items() if key in FILTERS}
    return json_format.ParseDict(proto_json(filters), s.CountFlowsRequest())


def make_send(
    channel: grpc.aio.Channel,
    plan: dict[str, Any],
    op: dict[str, Any],
    concurrency: int,
    deletes: collections.deque[str],
) -> Callable[[int], Awaitable[str]]:
    """The call of one operation, as a function of its sequence number."""
    stub = flow_service_pb2_grpc.FlowServiceStub(channel)
    health = health_pb2_grpc.HealthStub(channel)
    kind = op["kind"]
    ids: list[str] = plan["flow_ids"]
    names: list[str] = plan["flow_names"]
    timeout = plan["request_timeout"]
    tags_mask = field_mask_pb2.FieldMask(paths=["tags"])

    async def create_new(n: int) -> str:
        name = f"{op['prefix']}-c{concurrency}-{n}"
        reply = await stub.CreateFlow(
            s.CreateFlowRequest(name=name, tags=["bench"]), timeout=timeout
        )
        if not reply.created or reply.flow.name != name:
            raise UnexpectedReplyError("not created")
        return "created"

    async def create_existing(n: int) -> str:
        name = names[n % len(names)]
        reply = await stub.CreateFlow(
            s.CreateFlowRequest(name=name, tags=["bench"]), timeout=timeout
        )
        if reply.created or reply.flow.name != name:
            raise UnexpectedReplyError("created again")
        return "existing"

    async def read_flow(n: int) -> str:
        flow_id = ids[n % len(ids)]
        reply = await stub.ReadFlow(s.ReadFlowRequest(id=flow_id), timeout=timeout)
        if reply.flow.id != flow_id:
            raise UnexpectedReplyError("wrong flow returned")
        return "1 flow"

    async def read_flow_by_name(n: int) -> str:
        name = names[n % len(names)]
        reply = await stub.ReadFlowByName(s.ReadFlowByNameRequest(name=name), timeout=timeout)
        if reply.flow.name != name:
            raise UnexpectedReplyError("wrong flow returned")
        return "1 flow"

    read_request = read_flows_request(op["body"]) if kind == "read_flows" else None
    count_request = count_flows_request(op["body"]) if kind == "count_flows" else None

    async def read_flows(n: int) -> str:
        assert read_request is not None
        reply = await stub.ReadFlows(read_request, timeout=timeout)
        return f"{len(reply.flows)} flows"

    async def count_flows(n: int) -> str:
        assert count_request is not None
        reply = await stub.CountFlows(count_request, timeout=timeout)
        return f"count {reply.count}"

    async def update_flow(n: int) -> str:
        request = s.UpdateFlowRequest(
            id=ids[n % len(ids)], tags=["bench", f"v{n % 2}"], update_mask=tags_mask
        )
        await stub.UpdateFlow(request, timeout=timeout)
        return "updated"

    async def delete_flow(n: int) -> str:
        if not deletes:
            raise ExhaustedError
        await stub.DeleteFlow(s.DeleteFlowRequest(id=deletes.popleft()), timeout=timeout)
        return "deleted"

    async def check(n: int) -> str:
        reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=timeout)
        if reply.status != health_pb2.HealthCheckResponse.SERVING:
            raise UnexpectedReplyError("not serving")
        return "SERVING"

    sends: dict[str, Callable[[int], Awaitable[str]]] = {
        "health": check,
        "create_new": create_new,
        "create_existing": create_existing,
        "read_flow": read_flow,
        "read_flow_by_name": read_flow_by_name,
        "read_flows": read_flows,
        "count_flows": count_flows,
        "update_flow": update_flow,
        "delete_flow": delete_flow,
    }
    return sends[kind]


async def run(plan: dict[str, Any]) -> list[dict[str, Any]]:
    assert plan["target"].startswith("127.0.0.1:"), "loopback only"
    deletes = collections.deque(plan.get("delete_ids", []))
    results = []
    for op in plan["ops"]:
        for concurrency in op.get("concurrency", plan["concurrency"]):
            async with grpc.aio.insecure_channel(plan["target"]) as channel:
                send = make_send(channel, plan, op, concurrency, deletes)
                measurement = await measure(
                    op["name"],
                    send,
                    concurrency=concurrency,
                    duration=op.get("duration", plan["duration"]),
                    warmup=op.get("warmup", plan["warmup"]),
                    request_timeout=plan["request_timeout"],
                    server_pid=plan.get("server_pid"),
                )
            results.append(measurement.as_json())
            print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("plan", type=Path)
    arguments = parser.parse_args()
    plan = json.loads(arguments.plan.read_text())
    pin_to_cpu(plan["cpu"])
    print(json.dumps({"server": "flowservice", "results": asyncio.run(run(plan))}))


if __name__ == "__main__":
    main()
