"""REST load generator for Prefect's server: `python load_rest.py PLAN.json`.

Runs under Prefect's own virtualenv (it needs httpx, which FlowService's does
not ship) and prints one JSON document with a measurement per operation and
concurrency. A call counts as successful only with the status Prefect
documents for it (201 for a new flow, 200 for an existing one or a read, 204
for PATCH and DELETE); anything else is counted under its status or exception.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import sys
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx  # type: ignore[import-not-found, unused-ignore]  # Prefect's venv has it
from loadstats import ExhaustedError, UnexpectedReplyError, measure, pin_to_cpu

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable


def _check(response: httpx.Response, expected: int) -> None:
    if response.status_code != expected:
        raise UnexpectedReplyError(f"HTTP {response.status_code}")


def make_send(
    client: httpx.AsyncClient,
    plan: dict[str, Any],
    op: dict[str, Any],
    concurrency: int,
    deletes: collections.deque[str],
) -> Callable[[int], Awaitable[str]]:
    """The request of one operation, as a function of its sequence number."""
    kind = op["kind"]
    ids: list[str] = plan["flow_ids"]
    names: list[str] = plan["flow_names"]

    async def create_new(n: int) -> str:
        name = f"{op['prefix']}-c{concurrency}-{n}"
        response = await client.post("/flows/", json={"name": name, "tags": ["bench"]})
        _check(response, 201)
        if response.json()["name"] != name:
            raise UnexpectedReplyError("wrong flow returned")
        return "201 created"

    async def create_existing(n: int) -> str:
        name = names[n % len(names)]
        response = await client.post("/flows/", json={"name": name, "tags": ["bench"]})
        _check(response, 200)  # 200, not 201: the existing flow, unchanged
        if response.json()["name"] != name:
            raise UnexpectedReplyError("wrong flow returned")
        return "200 existing"

    async def read_flow(n: int) -> str:
        flow_id = ids[n % len(ids)]
        response = await client.get(f"/flows/{flow_id}")
        _check(response, 200)
        if response.json()["id"] != flow_id:
            raise UnexpectedReplyError("wrong flow returned")
        return "1 flow"

    async def read_flow_by_name(n: int) -> str:
        name = names[n % len(names)]
        response = await client.get(f"/flows/name/{urllib.parse.quote(name, safe='')}")
        _check(response, 200)
        if response.json()["name"] != name:
            raise UnexpectedReplyError("wrong flow returned")
        return "1 flow"

    async def read_flows(n: int) -> str:
        response = await client.post("/flows/filter", json=op["body"])
        _check(response, 200)
        return f"{len(response.json())} flows"

    async def count_flows(n: int) -> str:
        response = await client.post("/flows/count", json=op["body"])
        _check(response, 200)
        return f"count {response.json()}"

    async def update_flow(n: int) -> str:
        flow_id = ids[n % len(ids)]
        body = {"tags": ["bench", f"v{n % 2}"]}
        _check(await client.patch(f"/flows/{flow_id}", json=body), 204)
        return "204 updated"

    async def delete_flow(n: int) -> str:
        if not deletes:
            raise ExhaustedError
        _check(await client.delete(f"/flows/{deletes.popleft()}"), 204)
        return "204 deleted"

    async def health(n: int) -> str:
        response = await client.get("/health")
        _check(response, 200)
        if response.json() is not True:
            raise UnexpectedReplyError("not healthy")
        return "true"

    sends: dict[str, Callable[[int], Awaitable[str]]] = {
        "health": health,
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
    assert plan["target"].startswith("http://127.0.0.1:"), "loopback only"
    deletes = collections.deque(plan.get("delete_ids", []))
    results = []
    for op in plan["ops"]:
        for concurrency in op.get("concurrency", plan["concurrency"]):
            limits = httpx.Limits(
                max_connections=concurrency, max_keepalive_connections=concurrency
            )
            async with httpx.AsyncClient(
                base_url=plan["target"],
                limits=limits,
                timeout=plan["request_timeout"],
                trust_env=False,  # no proxies: the server is on loopback
            ) as client:
                send = make_send(client, plan, op, concurrency, deletes)
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
    print(json.dumps({"server": "prefect", "results": asyncio.run(run(plan))}))


if __name__ == "__main__":
    main()
