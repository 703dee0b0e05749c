"""The benchmark's data set: rows for Prefect 3.9.1's tables, in Prefect's storage formats.

Why direct writes: through Prefect's REST API a million flow runs would take
hours, and both servers must read the very same rows. So the schema comes from
Prefect's own migrations and the rows are generated here, deterministically
(seeded), in the exact text forms Prefect writes on SQLite: lower-case
hyphenated UUIDs, UTC 'YYYY-MM-DD HH:MM:SS.ffffff' timestamps, `json.dumps`
text with default separators, booleans 0/1, state-type names. Loading them into
a database is `databases.py`'s job.
"""

from __future__ import annotations

import collections
import json
import random
import zlib
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from collections.abc import Iterator

Row = tuple[Any, ...]

#: State types in realistic proportions (percent).
STATE_MIX: tuple[tuple[str, int], ...] = (
    ("COMPLETED", 60),
    ("FAILED", 15),
    ("SCHEDULED", 8),
    ("CANCELLED", 5),
    ("CRASHED", 4),
    ("RUNNING", 4),
    ("PENDING", 2),
    ("PAUSED", 1),
    ("CANCELLING", 1),
)
#: State names per type, drawn uniformly (repeats weight the common name).
STATE_NAMES: dict[str, tuple[str, ...]] = {
    "COMPLETED": ("Completed",) * 19 + ("Cached",),
    "FAILED": ("Failed",),
    "SCHEDULED": ("Scheduled",) * 3 + ("Late", "AwaitingRetry"),
    "CANCELLED": ("Cancelled",),
    "CRASHED": ("Crashed",),
    "RUNNING": ("Running",) * 9 + ("Retrying",),
    "PENDING": ("Pending",),
    "PAUSED": ("Paused", "Suspended"),
    "CANCELLING": ("Cancelling",),
}
TERMINAL = frozenset({"COMPLETED", "FAILED", "CANCELLED", "CRASHED"})

TAG_POOL = (
    "prod",
    "dev",
    "staging",
    "etl",
    "ml",
    "nightly",
    "hourly",
    "critical",
    "team-a",
    "team-b",
    "team-c",
    "reports",
    "db",
    "gpu",
    "backfill",
    "experimental",
)
POOL_TYPES = ("process", "docker", "kubernetes", "ecs", "cloud-run")
QUEUES_PER_POOL = (("default", 1), ("high", 2), ("low", 3))
FLOW_WORDS_A = (
    "sales",
    "billing",
    "etl",
    "ingest",
    "report",
    "train",
    "score",
    "sync",
    "export",
    "cleanup",
    "audit",
    "backup",
)
FLOW_WORDS_B = ("daily", "hourly", "orders", "users", "events", "model", "warehouse", "crm")
RUN_ADJECTIVES = ("brave", "calm", "eager", "fancy", "gentle", "happy", "jolly", "lucky", "proud")
RUN_ANIMALS = ("otter", "lynx", "heron", "panda", "koala", "bison", "gecko", "moose", "quail")
TASK_NAMES = ("extract", "transform", "load", "validate", "notify", "publish")

FLOW_RUN_POLICY = json.dumps(
    {
        "max_retries": 0,
        "retry_delay_seconds": 0.0,
        "retries": None,
        "retry_delay": None,
        "pause_keys": [],
        "resuming": False,
        "retry_type": None,
    }
)
TASK_RUN_POLICY = json.dumps(
    {
        "max_retries": 0,
        "retry_delay_seconds": 0.0,
        "retries": None,
        "retry_delay": None,
        "retry_jitter_factor": None,
    }
)
#: `created_by` of the runs an automation started (2%).
AUTOMATION = json.dumps(
    {
        "id": "5b7c4d1e-0f3a-4b6c-8d2e-9a1b2c3d4e5f",
        "type": "AUTOMATION",
        "display_value": "nightly trigger",
    }
)
PARAMETER_SCHEMA = json.dumps(
    {"title": "Parameters", "type": "object", "properties": {"limit": {"type": "integer"}}}
)

US = 1_000_000
DAY_US = 86_400 * US
HOUR_US = 3_600 * US


class RunTimes(NamedTuple):
    """A flow run's instants, as microsecond offsets (None: not set), and its run time."""

    created: int
    expected: int
    next_start: int | None
    start: int | None
    end: int | None
    stamp: int
    duration: int


@dataclass(frozen=True)
class Sizes:
    """How many rows of each kind; `scaled` multiplies them all."""

    flows: int = 2_000
    flow_runs: int = 20_000
    task_runs: int = 60_000
    deployments: int = 500
    work_pools: int = 5

    def scaled(self, factor: int) -> Sizes:
        return Sizes(*(value * factor for value in asdict(self).values()))


#: Column names per table, in the order of the generated row tuples.
COLUMNS: dict[str, tuple[str, ...]] = {
    "work_pool": (
        "id",
        "created",
        "updated",
        "name",
        "description",
        "type",
        "base_job_template",
        "is_paused",
        "concurrency_limit",
        "default_queue_id",
        "status",
        "storage_configuration",
    ),
    "work_queue": (
        "id",
        "created",
        "updated",
        "name",
        "filter",
        "description",
        "is_paused",
        "concurrency_limit",
        "last_polled",
        "priority",
        "work_pool_id",
        "status",
    ),
    "flow": ("id", "created", "updated", "name", "tags", "labels"),
    "deployment": (
        "id",
        "created",
        "updated",
        "name",
        "tags",
        "parameters",
        "flow_id",
        "description",
        "parameter_openapi_schema",
        "version",
        "infra_overrides",
        "path",
        "entrypoint",
        "work_queue_name",
        "work_queue_id",
        "enforce_parameter_schema",
        "last_polled",
        "paused",
        "status",
        "labels",
    ),
    "flow_run": (
        "id",
        "created",
        "updated",
        "name",
        "state_type",
        "run_count",
        "expected_start_time",
        "next_scheduled_start_time",
        "start_time",
        "end_time",
        "total_run_time",
        "flow_version",
        "parameters",
        "idempotency_key",
        "context",
        "empirical_policy",
        "tags",
        "auto_scheduled",
        "flow_id",
        "deployment_id",
        "state_name",
        "work_queue_name",
        "state_timestamp",
        "created_by",
        "work_queue_id",
        "job_variables",
        "labels",
    ),
    "task_run": (
        "id",
        "created",
        "updated",
        "name",
        "state_type",
        "run_count",
        "expected_start_time",
        "start_time",
        "end_time",
        "total_run_time",
        "task_key",
        "dynamic_key",
        "empirical_policy",
        "task_inputs",
        "tags",
        "flow_run_id",
        "state_name",
        "state_timestamp",
        "flow_run_run_count",
        "labels",
    ),
}
#: Tables in load order (referenced rows first).
TABLES = ("work_pool", "work_queue", "flow", "deployment", "flow_run", "task_run")


@dataclass
class Summary:
    """What the load generators and the report need to know about the data set."""

    sizes: dict[str, int]
    seed: int
    now: str  # ISO 8601, UTC: the data set's "present"
    since: str  # ISO 8601, UTC: the "FAILED runs since T" bound (7 days before now)
    flow_ids: list[str] = field(default_factory=list)  # a sample, for reads by id
    flow_names: list[str] = field(default_factory=list)  # the same flows' names
    flow_runs_by_state: dict[str, int] = field(default_factory=dict)
    task_runs_by_state: dict[str, int] = field(default_factory=dict)
    runs_with_deployment: int = 0
    paused_deployments: int = 0
    work_pool_names: list[str] = field(default_factory=list)
    flows_with_runs: int = 0


class TimeText:
    """Microsecond offsets from a base instant -> Prefect's SQLite timestamp text, fast.

    `datetime.strftime` per value would dominate a million-row build; the day
    and second-of-day parts are precomputed.
    """

    def __init__(self, base: datetime, days: int) -> None:
        self.base = base
        self._days = [(base + timedelta(days=d)).strftime("%Y-%m-%d") for d in range(days)]
        self._seconds = [f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}" for s in range(86_400)]

    def __call__(self, offset_us: int) -> str:
        day, rest = divmod(offset_us, DAY_US)
        second, micro = divmod(rest, US)
        return f"{self._days[day]} {self._seconds[second]}.{micro:06d}"


def interval_text(microseconds: int) -> str:
    """A duration as SQLAlchemy's Interval stores it on SQLite: the epoch plus the duration."""
    second, micro = divmod(microseconds, US)
    return f"1970-01-01 {second // 3600:02d}:{second // 60 % 60:02d}:{second % 60:02d}.{micro:06d}"


_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}


def uuid4_texts(rng: random.Random, count: int) -> list[str]:
    """`count` random version-4 UUIDs as lower-case hyphenated text (seeded, bulk)."""
    raw = rng.randbytes(16 * count).hex()
    return [
        f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"
        for h in (raw[i : i + 32] for i in range(0, 32 * count, 32))
    ]


class Generator:
    """Generates every table's rows for `sizes`, deterministic for a seed and `now`.

    Flows and deployments are kept in memory (they are referenced); flow runs
    and task runs are yielded, so a million-run build stays small.
    """

    def __init__(self, sizes: Sizes, *, seed: int = 7, now: datetime | None = None) -> None:
        self.sizes = sizes
        self.seed = seed
        self.rng = random.Random(seed)  # noqa: S311  # test data, not secrets
        now = (now or datetime.now(UTC)).replace(microsecond=0)
        # Rows span 120 days before `now` (flows are older than their runs) and 10 after.
        self.base = (now - timedelta(days=120)).replace(hour=0, minute=0, second=0)
        self.now_us = int((now - self.base).total_seconds()) * US
        self.time = TimeText(self.base, 131)
        self.now = now
        self._tags_text: dict[tuple[str, ...], str] = {}
        self.pools: list[Row] = []
        self.queues: list[Row] = []
        self.flows: list[Row] = []
        self.deployments: list[Row] = []
        self._deployment_flow: list[int] = []  # flow index per deployment
        self._flow_run_refs: list[tuple[str, int, int, str, str, str]] = []
        self.summary = Summary(
            sizes=asdict(sizes),
            seed=seed,
            now=now.isoformat().replace("+00:00", "Z"),
            since=(now - timedelta(days=7)).isoformat().replace("+00:00", "Z"),
        )
        self._build_catalog()

    # --- helpers --------------------------------------------------------------

    def tags_text(self, tags: tuple[str, ...]) -> str:
        text = self._tags_text.get(tags)
        if text is None:
            text = self._tags_text[tags] = json.dumps(list(tags))
        return text

    def _skewed(self, count: int) -> int:
        """An index in [0, count) where low indices are popular (P(i < k) = sqrt(k/count))."""
        return int(count * self.rng.random() ** 2)

    # --- pools, queues, flows, deployments -----------------------------------

    def _build_catalog(self) -> None:
        rng, t, sizes = self.rng, self.time, self.sizes
        start = self.now_us - 100 * DAY_US
        pool_ids = uuid4_texts(rng, sizes.work_pools)
        queue_ids = uuid4_texts(rng, sizes.work_pools * len(QUEUES_PER_POOL))
        self.queue_refs: list[tuple[str, str]] = []  # (queue id, queue name)
        for p, pool_id in enumerate(pool_ids):
            created = t(start + p * HOUR_US)
            name = f"pool-{p}"
            self.summary.work_pool_names.append(name)
            first_queue = queue_ids[p * len(QUEUES_PER_POOL)]
            self.pools.append(
                (
                    pool_id,
                    created,
                    created,
                    name,
                    f"{POOL_TYPES[p % len(POOL_TYPES)]} workers",
                    POOL_TYPES[p % len(POOL_TYPES)],
                    "{}",
                    0,
                    None,
                    first_queue,
                    "READY",
                    "{}",
                )
            )
            for q, (queue_name, priority) in enumerate(QUEUES_PER_POOL):
                queue_id = queue_ids[p * len(QUEUES_PER_POOL) + q]
                polled = t(self.now_us - rng.randrange(60 * US))
                self.queues.append(
                    (
                        queue_id,
                        created,
                        polled,
                        queue_name,
                        None,
                        "",
                        0,
                        None,
                        polled,
                        priority,
                        pool_id,
                        "READY",
                    )
                )
                self.queue_refs.append((queue_id, queue_name))

        flow_ids = uuid4_texts(rng, sizes.flows)
        for i, flow_id in enumerate(flow_ids):
            created_us = start + rng.randrange(70 * DAY_US)
            updated_us = created_us + rng.randrange(1000, 30_000)
            if rng.random() < 0.3:  # retagged later
                updated_us += rng.randrange(20 * DAY_US)
            name = f"{rng.choice(FLOW_WORDS_A)}-{rng.choice(FLOW_WORDS_B)}-{i:06d}"
            tags = tuple(sorted(rng.sample(TAG_POOL, rng.choice((0, 1, 1, 2, 2, 3)))))
            self.flows.append(
                (flow_id, t(created_us), t(updated_us), name, self.tags_text(tags), "{}")
            )
        sample = rng.sample(range(sizes.flows), min(sizes.flows, 5_000))
        self.summary.flow_ids = [self.flows[i][0] for i in sample]
        self.summary.flow_names = [self.flows[i][3] for i in sample]

        deployment_ids = uuid4_texts(rng, sizes.deployments)
        for d, deployment_id in enumerate(deployment_ids):
            f = self._skewed(sizes.flows)
            flow = self.flows[f]
            self._deployment_flow.append(f)
            created_us = start + 70 * DAY_US + rng.randrange(5 * DAY_US)
            paused = 1 if rng.random() < 0.1 else 0
            self.summary.paused_deployments += paused
            queue: tuple[str | None, str | None] = (
                rng.choice(self.queue_refs) if rng.random() < 0.9 else (None, None)
            )
            deployment_queue_id, deployment_queue_name = queue
            tags = tuple(sorted(rng.sample(TAG_POOL, rng.choice((1, 1, 2)))))
            entry = flow[3].replace("-", "_")
            self.deployments.append(
                (
                    deployment_id,
                    t(created_us),
                    t(created_us + rng.randrange(20 * DAY_US)),
                    f"deployment-{d}",
                    self.tags_text(tags),
                    '{"limit": 100}',
                    flow[0],
                    None if d % 3 else f"Runs {flow[3]} on a schedule",
                    PARAMETER_SCHEMA,
                    f"1.0.{d % 17}",
                    "{}",
                    ".",
                    f"flows/{entry}.py:{entry}",
                    deployment_queue_name,
                    deployment_queue_id,
                    1,
                    t(self.now_us - rng.randrange(120 * US)) if deployment_queue_id else None,
                    paused,
                    "NOT_READY" if paused or deployment_queue_id is None else "READY",
                    "{}",
                )
            )

    # --- flow runs and task runs ----------------------------------------------

    def _times(self, state: str) -> RunTimes:
        """When a run in `state` was created, expected, started, ended and last changed."""
        rng, now = self.rng, self.now_us
        start = end = next_start = None
        duration = 0
        if state == "SCHEDULED":  # due within the next three days (or a little late)
            expected = now + rng.randrange(-HOUR_US, 3 * DAY_US)
            next_start = expected
            created = expected - rng.randrange(HOUR_US, 3 * DAY_US)
            return RunTimes(created, expected, next_start, None, None, created, 0)
        if state == "PENDING":
            expected = now - rng.randrange(HOUR_US)
            created = expected - rng.randrange(HOUR_US)
            return RunTimes(
                created, expected, None, None, None, expected + rng.randrange(30 * US), 0
            )
        if state in TERMINAL:  # spread over the 30 days before now
            expected = now - HOUR_US - rng.randrange(30 * DAY_US)
        else:  # running, paused, cancelling: started recently
            expected = now - rng.randrange(2 * HOUR_US)
        created = expected - rng.randrange(HOUR_US)
        if state == "CANCELLED" and rng.random() < 0.3:  # cancelled before it ran
            stamp = expected + rng.randrange(60 * US)
            return RunTimes(created, expected, None, None, None, stamp, 0)
        start = expected + rng.randrange(30 * US)
        if state in TERMINAL:
            duration = min(int(rng.expovariate(1 / (5 * 60 * US))), 6 * HOUR_US)
            end = start + duration
            stamp = end
        else:
            duration = min(now - start, 6 * HOUR_US)
            stamp = start + rng.randrange(max(duration, 1))
        return RunTimes(created, expected, next_start, start, end, stamp, duration)

    def flow_runs(self, interval: Any = interval_text) -> Iterator[Row]:
        """Flow-run rows; remembers what task runs need (started runs only)."""
        rng, t, sizes, now = self.rng, self.time, self.sizes, self.now_us
        states = [name for name, _ in STATE_MIX]
        drawn = rng.choices(states, weights=[w for _, w in STATE_MIX], k=sizes.flow_runs)
        counts: dict[str, int] = dict.fromkeys(states, 0)
        # Sorted: the primary-key index is then appended to, not written at random.
        run_ids = sorted(uuid4_texts(rng, sizes.flow_runs))
        flows_with_runs: set[int] = set()
        labels_by_flow: dict[int, str] = {}
        names = [f"{a}-{b}" for a in RUN_ADJECTIVES for b in RUN_ANIMALS]
        versions = [f"{r % 7}.{r % 3}" for r in range(21)]
        for r, run_id in enumerate(run_ids):
            state = drawn[r]
            counts[state] += 1
            # Most runs come from a deployment (popular ones more often); the rest are ad hoc.
            deployment = None
            if self.deployments and rng.random() < 0.85:
                d = self._skewed(len(self.deployments))
                deployment, f = self.deployments[d], self._deployment_flow[d]
            else:
                f = self._skewed(sizes.flows)
            flows_with_runs.add(f)
            flow_id = self.flows[f][0]
            created, expected, next_start, start, end, stamp, duration = self._times(state)
            run_count = 0 if start is None else 1
            if deployment is not None:
                tags = deployment[4]
                auto = 1 if rng.random() < 0.7 else 0
                idempotency = f"scheduled {deployment[0]} {r}" if auto else None
                queue_name, queue_id, deployment_id = deployment[13], deployment[14], deployment[0]
                self.summary.runs_with_deployment += 1
            else:
                tags = self.tags_text(tuple(sorted(rng.sample(TAG_POOL, rng.choice((0, 1, 2))))))
                auto, idempotency, queue_name, queue_id, deployment_id = 0, None, None, None, None
            created_by = None
            if rng.random() < 0.02:
                created_by = AUTOMATION
            labels = labels_by_flow.get(f)
            if labels is None:
                labels = labels_by_flow[f] = json.dumps({"prefect.flow.id": flow_id})
            stamp_text = t(stamp)
            start_text = t(start) if start is not None else None
            if start is not None:
                self._flow_run_refs.append(
                    (run_id, start, end if end is not None else now, state, tags, flow_id)
                )
            yield (
                run_id,
                t(created),
                t(stamp + 1000 + r % 19_000),  # updated a moment after the last state change
                names[r * 7919 % len(names)],
                state,
                run_count,
                t(expected),
                t(next_start) if next_start is not None else None,
                start_text,
                t(end) if end is not None else None,
                interval(duration),
                versions[r % 21],
                "{}",
                idempotency,
                "{}",
                FLOW_RUN_POLICY,
                tags,
                auto,
                flow_id,
                deployment_id,
                rng.choice(STATE_NAMES[state]),
                queue_name,
                stamp_text,
                created_by,
                queue_id,
                "{}",
                labels,
            )
        self.summary.flow_runs_by_state = counts
        self.summary.flows_with_runs = len(flows_with_runs)

    def task_runs(self, interval: Any = interval_text) -> Iterator[Row]:
        """Task-run rows, spread over the started flow runs (call after `flow_runs`)."""
        rng, t = self.rng, self.time
        refs = self._flow_run_refs
        if not refs:
            return
        per_run = [0] * len(refs)
        for index in rng.choices(range(len(refs)), k=self.sizes.task_runs):
            per_run[index] += 1
        ids = iter(sorted(uuid4_texts(rng, self.sizes.task_runs)))
        # k-th task of a run: its name, task key and dynamic key (Prefect's task_key is
        # the function's name and a hash; dynamic_key counts calls of the same task).
        keys = {name: f"{name}-{zlib.crc32(name.encode()):08x}" for name in TASK_NAMES}
        slots = []
        for k in range(max(per_run)):
            name, dynamic = TASK_NAMES[k % len(TASK_NAMES)], str(k // len(TASK_NAMES))
            slots.append((f"{name}-{dynamic}", keys[name], dynamic))
        completed_names = STATE_NAMES["COMPLETED"]
        counts: collections.Counter[str] = collections.Counter()
        no_time = interval(0)
        for (run_id, start, end, state, tags, flow_id), n in zip(refs, per_run, strict=True):
            if n == 0:
                continue
            step = max((end - start) // n, 1)
            step_text = interval(step)
            labels = json.dumps({"prefect.flow.id": flow_id, "prefect.flow-run.id": run_id})
            last_state = state if state in TERMINAL else "RUNNING"
            counts["COMPLETED"] += n - 1
            counts[last_state] += 1
            for k in range(n):
                task_start = start + k * step
                created = t(task_start - 1000)  # created just before it is due
                started = t(task_start)
                if k < n - 1:
                    task_state, name_of_state = "COMPLETED", completed_names[k % 20]
                else:
                    task_state = last_state
                    name_of_state = rng.choice(STATE_NAMES[task_state])
                if task_state == "RUNNING":
                    ended, stamp, total = None, started, no_time
                else:
                    ended = stamp = t(task_start + step)
                    total = step_text
                name, key, dynamic = slots[k]
                yield (
                    next(ids),
                    created,
                    stamp,
                    name,
                    task_state,
                    1,
                    created,
                    started,
                    ended,
                    total,
                    key,
                    dynamic,
                    TASK_RUN_POLICY,
                    "{}",
                    tags,
                    run_id,
                    name_of_state,
                    stamp,
                    1,
                    labels,
                )
        self.summary.task_runs_by_state = dict(counts)
