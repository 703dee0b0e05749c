"""Prefect's own filter objects through FlowService's client.

A script in Prefect's virtualenv builds each catalogue query as Prefect's
pydantic filters (`FlowFilter.model_validate(...)`, …), asks Prefect's own
client (`get_client(sync_client=True).read_flows`, and `/flows/count`) and dumps the
objects exactly as that client does for its request body. FlowService's
client gets those dumps under Prefect's keywords (`flow_filter=`, …) and must
answer with the same flows, in order, and the same count.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import TYPE_CHECKING, Any

from flowservice.prefect_compat import KEYWORDS
from tests.prefect.queries import QUERIES

if TYPE_CHECKING:
    from pathlib import Path

    from tests.prefect.conftest import Differential

SCRIPT = r"""
import json, sys
from prefect.client.orchestration import get_client
from prefect.client.schemas import filters
from prefect.client.schemas.sorting import FlowSort

MODELS = {
    "flow_filter": ("flows", filters.FlowFilter),
    "flow_run_filter": ("flow_runs", filters.FlowRunFilter),
    "task_run_filter": ("task_runs", filters.TaskRunFilter),
    "deployment_filter": ("deployments", filters.DeploymentFilter),
    "work_pool_filter": ("work_pools", filters.WorkPoolFilter),
}
answers = []
with get_client(sync_client=True) as client:
    for body in json.load(sys.stdin):
        try:
            objects = {
                keyword: model.model_validate(body[key])
                for keyword, (key, model) in MODELS.items()
                if body.get(key) is not None
            }
        except Exception as error:  # not expressible as Prefect's client objects
            answers.append({"skipped": repr(error)})
            continue
        sort = FlowSort(body["sort"]) if body.get("sort") else None
        flows = client.read_flows(
            **objects, sort=sort, limit=body.get("limit"), offset=body.get("offset") or 0
        )
        dumps = {
            keyword: value.model_dump(mode="json", exclude_unset=keyword == "flow_run_filter")
            for keyword, value in objects.items()
        }
        # Prefect's client has no count_flows: its REST route, with the same dumps.
        reply = client._client.post(
            "/flows/count", json={MODELS[k][0]: dump for k, dump in dumps.items()}
        )
        reply.raise_for_status()
        count = reply.json()
        answers.append({"names": [flow.name for flow in flows], "count": count, "dumps": dumps})
print(json.dumps(answers))
"""


async def _ask_prefect(both: Differential, python: Path, bodies: list[Any]) -> list[Any]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    environment["PREFECT_API_URL"] = both.prefect_server.api.base_url
    environment["PREFECT_HOME"] = str(both.prefect_server.log_path.parent / "client-home")
    process = await asyncio.create_subprocess_exec(
        str(python),
        "-c",
        SCRIPT,
        env=environment,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(
        process.communicate(json.dumps(bodies).encode()), timeout=300
    )
    assert process.returncode == 0, stderr.decode()[-4000:]
    answers: list[Any] = json.loads(stdout)
    return answers


async def test_prefects_filter_objects_select_what_prefect_selects(
    both: Differential, prefect_executable: Path
) -> None:
    queries = [query for query in QUERIES if not query.open_difference]
    bodies = [both.seed.resolve(query.body) for query in queries]
    answers = await _ask_prefect(both, prefect_executable.parent / "python", bodies)
    compared = 0
    for query, body, answer in zip(queries, bodies, answers, strict=True):
        if "skipped" in answer:
            continue
        arguments: dict[str, Any] = dict(answer["dumps"])
        assert set(arguments) <= set(KEYWORDS)
        if body.get("sort"):
            arguments["sort"] = body["sort"]
        paging = {key: body[key] for key in ("limit", "offset") if body.get(key) is not None}
        flows = await both.client.read_flows(**arguments, **paging)
        assert [flow.name for flow in flows] == answer["names"], (query.id, arguments)
        arguments.pop("sort", None)
        assert await both.client.count_flows(**arguments) == answer["count"], query.id
        compared += 1
    assert compared >= len(queries) // 2, [a for a in answers if "skipped" in a][:5]
