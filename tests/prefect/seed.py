"""The differential data set, written through Prefect's own REST API (never SQL).

Built so that every filter field has rows on both sides of it: all nine
state types (plus custom state names), runs with and without start, end,
expected and next-scheduled times (some far in the past or future), with and
without deployments, work queues, idempotency keys, flow versions and
creators; task runs in several states, one orphan and one that started a
subflow run; deployments paused and not, tagged and not, on three pools'
queues, on a legacy queue, and on none; a deleted deployment whose run keeps
its id. Flow names cover byte order (upper case, `_` vs `Y`, non-ASCII and a
backslash); flow labels cover every value kind, `{}` and null; some flows'
tags are rewritten after creation so that the updated order differs from the
created order.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.prefect.prefect_process import PrefectApi

#: Two automations that "created" some flow runs (Prefect records them in
#: flow_run.created_by from these request headers).
AUTOMATIONS = {
    "A1": ("5b7c4d1e-0f3a-4b6c-8d2e-9a1b2c3d4e5f", "nightly trigger"),
    "A2": ("0a1b2c3d-4e5f-4a6b-8c7d-8e9f0a1b2c3d", "backfill trigger"),
}

#: name, tags, labels (ABSENT: not sent, so Prefect stores {}).
ABSENT: Any = object()
FLOWS: list[tuple[str, list[str], Any]] = [
    ("alpha-etl", ["db", "nightly"], {"env": "prod", "team": "data", "shards": 4}),
    ("Beta-ingest", ["db"], {"env": "dev", "ratio": 1.5}),
    ("gamma_x", [], ABSENT),
    ("gammaYx", ["nightly", "db", "db"], {"flag": True, "env": "dev"}),
    ("delta-report", ["reports"], None),
    ("über-report", ["reports", "ünïcode"], {"owner": "ünï"}),
    ("epsilon-ml", ["ml", "gpu"], {"env": "prod", "n": 1.0}),
    ("zeta-idle", [], {"z": -2, "f": 0.25}),
    ("eta-sub", ["sub"], {}),
    ("my\\flow", ["weird", "db"], {"s": "1"}),
    ("theta-paused", ["ml", "db"], {"env": "staging", "off": False}),
    ("iota-legacy", ["legacy"], ABSENT),
]

#: Tag rewrites after creation, in this order (PATCH /flows/{id}).
RETAGS: list[tuple[str, list[str] | None]] = [
    ("zeta-idle", None),  # body {}: only `updated` moves
    ("alpha-etl", ["db", "nightly", "prod"]),
    ("Beta-ingest", ["db", "etl"]),
]

#: pool name -> (type, extra queues besides the automatic "default").
POOLS: dict[str, tuple[str, list[str]]] = {
    "pool-process": ("process", ["high", "low"]),
    "pool-docker": ("docker", ["gpu"]),
    "pool-k8s": ("kubernetes", []),
}

#: key -> DeploymentCreate body, with "flow" naming the flow.
DEPLOYMENTS: dict[str, dict[str, Any]] = {
    "d-alpha-main": {
        "flow": "alpha-etl",
        "work_pool_name": "pool-process",
        "work_queue_name": "high",
        "tags": ["prod", "db"],
        "paused": False,
    },
    "d-alpha-backfill": {
        "flow": "alpha-etl",
        "work_pool_name": "pool-process",
        "tags": ["backfill"],
        "paused": True,
    },
    "d-beta": {"flow": "Beta-ingest", "work_pool_name": "pool-docker", "work_queue_name": "gpu"},
    "d-epsilon-train": {
        "flow": "epsilon-ml",
        "work_pool_name": "pool-docker",
        "tags": ["ml", "gpu"],
        "concurrency_limit": 2,
    },
    "d-theta": {
        "flow": "theta-paused",
        "work_pool_name": "pool-process",
        "work_queue_name": "low",
        "tags": ["ml"],
        "paused": True,
    },
    "d-delta": {"flow": "delta-report", "tags": ["reports"]},  # no work queue at all
    # Only a queue name: Prefect puts the queue in its "default-agent-pool".
    "d-iota-legacy": {"flow": "iota-legacy", "work_queue_name": "legacy", "tags": ["legacy"]},
    # Deleted again after its run was created; the run keeps the deployment id.
    "d-gone": {"flow": "gamma_x", "work_pool_name": "pool-k8s", "tags": ["gone"]},
}
DELETED_DEPLOYMENTS = ["d-gone"]

PAST = "2020-06-01T00:00:00Z"
LEGACY = "2024-03-01T12:00:00Z"
FUTURE = "2031-01-01T00:00:00Z"
FAR_FUTURE = "2031-06-01T00:00:00Z"


def state(kind: str, name: str | None = None, scheduled: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"type": kind}
    if name is not None:
        body["name"] = name
    if scheduled is not None:
        body["state_details"] = {"scheduled_time": scheduled}
    return body


#: key -> FlowRunCreate body, with "flow", optional "deployment", "parent_task"
#: (a task run key) and "automation" (created_by), "transitions" (later states).
FLOW_RUNS: dict[str, dict[str, Any]] = {
    "a-done": {
        "flow": "alpha-etl",
        "state": state("COMPLETED"),
        "tags": ["db", "red"],
        "deployment": "d-alpha-main",
        "work_pool_name": "pool-process",
        "work_queue_name": "high",
        "flow_version": "1.0",
        "idempotency_key": "key-a1",
        "automation": "A1",
    },
    "a-cached": {
        "flow": "alpha-etl",
        "state": state("COMPLETED", "Cached"),
        "tags": ["db", "blue"],
        "deployment": "d-alpha-main",
        "flow_version": "2.0",
    },
    "a-fail": {
        "flow": "alpha-etl",
        "state": state("FAILED"),
        "tags": ["db"],
        "deployment": "d-alpha-backfill",
        "work_pool_name": "pool-process",
        "idempotency_key": "key-a2",
    },
    "a-parent": {"flow": "alpha-etl", "state": state("RUNNING")},
    "b-late": {
        "flow": "Beta-ingest",
        "state": state("SCHEDULED", "Late", PAST),
        "tags": ["db", "red"],
        "deployment": "d-beta",
        "work_pool_name": "pool-docker",
        "work_queue_name": "gpu",
        "automation": "A2",
    },
    "b-pending": {"flow": "Beta-ingest", "state": state("PENDING"), "flow_version": "1.0"},
    "g-run": {"flow": "gamma_x", "state": state("COMPLETED"), "deployment": "d-gone"},
    "gy-crashed": {
        "flow": "gammaYx",
        "state": state("CRASHED"),
        "tags": ["nightly"],
        "flow_version": "2.0",
    },
    "dr-paused": {
        "flow": "delta-report",
        "state": state("PAUSED"),
        "tags": ["reports"],
        "deployment": "d-delta",
        "idempotency_key": "key-d1",
    },
    "dr-scheduled": {"flow": "delta-report", "state": state("SCHEDULED", scheduled=FUTURE)},
    "u-cancelled": {"flow": "über-report", "state": state("CANCELLED"), "tags": ["ünïcode"]},
    "e-cancelling": {
        "flow": "epsilon-ml",
        "state": state("CANCELLING"),
        "tags": ["ml", "blue"],
        "deployment": "d-epsilon-train",
        "automation": "A1",
    },
    "e-running": {
        "flow": "epsilon-ml",
        "state": state("RUNNING"),
        "tags": ["ml"],
        "work_pool_name": "pool-docker",
        "work_queue_name": "gpu",
    },
    "s-sub": {
        "flow": "eta-sub",
        "state": state("RUNNING"),
        "tags": ["sub"],
        "parent_task": "t-parent",
    },
    "w-done": {
        "flow": "my\\flow",
        "state": state("PENDING"),
        "tags": ["weird"],
        "transitions": [state("RUNNING"), state("COMPLETED")],
    },
    "i-legacy": {
        "flow": "iota-legacy",
        "state": state("SCHEDULED", "AwaitingRetry", LEGACY),
        "deployment": "d-iota-legacy",
        "work_queue_name": "legacy",
        "idempotency_key": "key-i1",
    },
}

#: key -> TaskRunCreate body, with "run" naming the flow run (absent: orphan).
#: "t-parent" (in "a-parent") is the parent task run of the subflow run "s-sub".
TASK_RUNS: dict[str, dict[str, Any]] = {
    "t-parent": {"run": "a-parent", "state": state("RUNNING"), "tags": ["spawn"]},
    "t-ok": {"run": "a-done", "state": state("COMPLETED"), "tags": ["db", "io"]},
    "t-fail": {"run": "a-done", "state": state("FAILED"), "tags": ["io"]},
    "t-beta": {"run": "b-pending", "state": state("PENDING")},
    "t-cached": {"run": "w-done", "state": state("COMPLETED", "Cached"), "tags": ["weird"]},
    "t-cancel": {"run": "e-cancelling", "state": state("CANCELLED"), "tags": ["ml"]},
    "t-future": {"run": "dr-scheduled", "state": state("SCHEDULED", scheduled=FAR_FUTURE)},
    "t-orphan": {"state": state("COMPLETED"), "tags": ["db"]},
}


@dataclass
class Seed:
    """What was written, as Prefect returned it (runs re-read after their last state)."""

    flows: dict[str, dict[str, Any]] = field(default_factory=dict)
    pools: dict[str, dict[str, Any]] = field(default_factory=dict)
    deployments: dict[str, dict[str, Any]] = field(default_factory=dict)
    flow_runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    task_runs: dict[str, dict[str, Any]] = field(default_factory=dict)

    def resolve(self, value: Any) -> Any:
        """Replace placeholders in a query: `@flow:NAME`, `@run:KEY`, `@task:KEY`,
        `@deployment:KEY`, `@pool:NAME` (ids), `@automation:A1` (its id), and
        `@run:KEY.FIELD` / `@task:KEY.FIELD` (that row's value, e.g. a time).
        A suffix `|upper`, `|hex`, `|braces` or `|urn` respells an id."""
        if isinstance(value, dict):
            return {key: self.resolve(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self.resolve(item) for item in value]
        if not isinstance(value, str) or not value.startswith("@"):
            return value
        placeholder, _, spelling = value[1:].partition("|")
        kind, _, reference = placeholder.partition(":")
        if kind == "automation":
            return respell(AUTOMATIONS[reference][0], spelling)
        key, _, attribute = reference.partition(".")
        tables = {
            "flow": self.flows,
            "pool": self.pools,
            "deployment": self.deployments,
            "run": self.flow_runs,
            "task": self.task_runs,
        }
        return respell(tables[kind][key][attribute or "id"], spelling)


def respell(value: str, spelling: str) -> str:
    """Other spellings of a UUID that Prefect (pydantic) and FlowService both accept."""
    spellings = {
        "": value,
        "upper": value.upper(),
        "hex": value.replace("-", ""),
        "braces": "{" + value + "}",
        "urn": "urn:uuid:" + value,
    }
    return spellings[spelling]


def automation_headers(key: str) -> dict[str, str]:
    automation_id, name = AUTOMATIONS[key]
    return {
        "Prefect-Automation-ID": automation_id,
        "Prefect-Automation-Name": base64.b64encode(name.encode()).decode(),
    }


def seed(api: PrefectApi) -> Seed:
    """Write the data set through Prefect's REST API; about 80 requests."""
    data = Seed()
    for name, (kind, queues) in POOLS.items():
        data.pools[name] = api.ok("POST", "/work_pools/", {"name": name, "type": kind})
        for queue in queues:
            api.ok("POST", f"/work_pools/{api.quote(name)}/queues", {"name": queue})
    for name, tags, labels in FLOWS:
        body: dict[str, Any] = {"name": name, "tags": tags}
        if labels is not ABSENT:
            body["labels"] = labels
        data.flows[name] = api.ok("POST", "/flows/", body)
    for key, spec in DEPLOYMENTS.items():
        body = {k: v for k, v in spec.items() if k != "flow"}
        body |= {"name": key, "flow_id": data.flows[spec["flow"]]["id"]}
        data.deployments[key] = api.ok("POST", "/deployments/", body)
    for key in FLOW_RUNS:
        if key != "s-sub":  # the subflow run needs its parent task run first
            _create_flow_run(api, data, key)
    for key, spec in TASK_RUNS.items():
        body = {k: v for k, v in spec.items() if k != "run"}
        body |= {"name": key, "task_key": f"task-{key}", "dynamic_key": "0"}
        if "run" in spec:
            body["flow_run_id"] = data.flow_runs[spec["run"]]["id"]
        data.task_runs[key] = api.ok("POST", "/task_runs/", body)
    _create_flow_run(api, data, "s-sub")
    for key in DELETED_DEPLOYMENTS:
        api.ok("DELETE", f"/deployments/{data.deployments[key]['id']}")
    for name, new_tags in RETAGS:
        time.sleep(0.005)  # SQLite stamps `updated` to the millisecond: keep them apart
        patch = {} if new_tags is None else {"tags": new_tags}
        api.ok("PATCH", f"/flows/{data.flows[name]['id']}", patch)
    for name in data.flows:
        data.flows[name] = api.ok("GET", f"/flows/{data.flows[name]['id']}")
    for key in data.flow_runs:
        data.flow_runs[key] = api.ok("GET", f"/flow_runs/{data.flow_runs[key]['id']}")
    for key in data.task_runs:
        data.task_runs[key] = api.ok("GET", f"/task_runs/{data.task_runs[key]['id']}")
    return data


def _create_flow_run(api: PrefectApi, data: Seed, key: str) -> None:
    spec = FLOW_RUNS[key]
    body = {
        k: v
        for k, v in spec.items()
        if k not in {"flow", "deployment", "parent_task", "automation", "transitions"}
    }
    body |= {"name": key, "flow_id": data.flows[spec["flow"]]["id"]}
    if "deployment" in spec:
        body["deployment_id"] = data.deployments[spec["deployment"]]["id"]
    if "parent_task" in spec:
        body["parent_task_run_id"] = data.task_runs[spec["parent_task"]]["id"]
    headers = automation_headers(spec["automation"]) if "automation" in spec else None
    run = api.ok("POST", "/flow_runs/", body, headers=headers)
    for next_state in spec.get("transitions", []):
        time.sleep(0.005)
        api.ok("POST", f"/flow_runs/{run['id']}/set_state", {"state": next_state, "force": True})
    data.flow_runs[key] = run
