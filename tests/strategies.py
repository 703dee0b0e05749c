"""Hypothesis strategies: small random datasets and ReadFlows filter requests over them.

Used by tests/test_filters_property.py, which compares the server with the
plain-Python reference in tests/reference.py. Every strategy lives here.

Datasets are small (2–8 flows, 1–3 work pools with 1–2 queues each, 1–6
deployments, 1–15 flow runs, 1–15 task runs) so that an example seeds in a
fraction of a second, and their values come from small pools so that equal
values, and so filter matches, are common. Requests are built
as the JSON-form dicts the client accepts; most of their values are drawn
from the dataset (ids, names, tags, timestamps) so that filters select some
flows and not others, with foreign values mixed in. `parts` (not a strategy)
narrows a request to its single conditions, which the test checks as well.

Kept out of the data on purpose (docs/semantics.md#sqlite-and-postgresql):
non-ASCII text and backslashes. Every name and `like` text is ASCII.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from hypothesis import strategies as st

from tests.reference import (
    STATE_TYPES,
    CreatedBy,
    Dataset,
    Deployment,
    Flow,
    FlowRun,
    TaskRun,
    WorkPool,
    WorkQueue,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

T = TypeVar("T")
Request = dict[str, Any]

# --- value pools ------------------------------------------------------------------------

#: Name characters: both cases (like is case-insensitive), `_` (a like wildcard
#: that also occurs literally), a space and a digit. None of Prefect's banned
#: name characters (`/ % & > <`), no backslash, ASCII only.
NAME_ALPHABET = "abAB_- 1"
#: `like` texts may also hold `%`, the other wildcard.
LIKE_ALPHABET = NAME_ALPHABET + "%"
#: Tags: case variants, one holding `_` (tags are never LIKE-matched) and "".
TAG_POOL = ("db", "DB", "blue", "x_y", "xay", "")
STATE_NAMES = ("Completed", "completed", "Failed", "Late", "Running")
POOL_NAMES = ("p1", "P1", "pool a", "p_2")
POOL_TYPES = ("process", "Process", "kubernetes")
QUEUE_NAMES = ("default", "Default", "q1")
FLOW_VERSIONS = ("1.0", "2.0", "1.0 ")
IDEMPOTENCY_KEYS = ("k1", "K1", "k2")
CREATOR_TYPES = ("DEPLOYMENT", "deployment", "AUTOMATION")
#: Creator ids that are no row's id (runs created by something else).
OTHER_CREATOR_IDS = (
    uuid.UUID("0c7e0000-0000-4000-8000-000000000001"),
    uuid.UUID("0c7e0000-0000-4000-8000-000000000002"),
)
OPERATORS: tuple[str | None, ...] = (None, "OPERATOR_AND", "OPERATOR_OR", "OPERATOR_UNSPECIFIED")

#: All timestamps lie on a coarse grid (so equal values, the edge of an inclusive
#: bound, are common) plus a few microsecond offsets (so µs precision matters).
BASE_TIME = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
MICROSECOND_OFFSETS = (0, 1, 999_999)
#: How far a generated bound lies from a timestamp of the data.
BOUND_SHIFTS = (
    timedelta(0),
    timedelta(0),
    timedelta(microseconds=1),
    timedelta(microseconds=-1),
    timedelta(minutes=1),
    timedelta(minutes=-1),
    timedelta(days=-3650),
)

#: Ids are `<kind>-0000-4000-8000-<index>`: readable in a failure and distinct
#: across tables, so an id of one kind used as another never matches by accident.
KIND_PREFIXES = {
    "flow": "f1000000",
    "work_pool": "a1000000",
    "work_queue": "a2000000",
    "deployment": "d1000000",
    "flow_run": "fe000000",
    "task_run": "7a000000",
}


def row_id(kind: str, index: int) -> uuid.UUID:
    """The id of the `index`-th row of a kind (see KIND_PREFIXES)."""
    return uuid.UUID(f"{KIND_PREFIXES[kind]}-0000-4000-8000-{index:012x}")


def rfc3339(moment: datetime) -> str:
    """A request timestamp: UTC with `Z` and all six fraction digits."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# --- datasets ---------------------------------------------------------------------------

#: A row name: 1–4 characters of NAME_ALPHABET.
names = st.text(NAME_ALPHABET, min_size=1, max_size=4)
#: A tag list: 0–3 tags from TAG_POOL, duplicates allowed (Prefect keeps them).
tag_lists = st.lists(st.sampled_from(TAG_POOL), max_size=3).map(tuple)
#: A state type of Prefect's nine, or NULL.
state_types = st.none() | st.sampled_from(STATE_TYPES)
#: A state name from STATE_NAMES, or NULL.
state_names = st.none() | st.sampled_from(STATE_NAMES)
#: A timestamp on the grid: BASE_TIME + 0–4 minutes + one of MICROSECOND_OFFSETS.
timestamps = st.builds(
    lambda minutes, micros: BASE_TIME + timedelta(minutes=minutes, microseconds=micros),
    st.integers(0, 4),
    st.sampled_from(MICROSECOND_OFFSETS),
)
#: A nullable timestamp column.
maybe_timestamps = st.none() | timestamps


def maybe(strategy: st.SearchStrategy[T]) -> st.SearchStrategy[T | None]:
    """The strategy's value, or None (a NULL column / an absent field)."""
    return st.none() | strategy


def pick(values: Sequence[T], other: st.SearchStrategy[T]) -> st.SearchStrategy[T]:
    """Usually one of `values` (taken from the dataset), sometimes `other`."""
    if not values:
        return other
    dataset_values = st.sampled_from(values)
    return st.one_of(dataset_values, dataset_values, dataset_values, other)


@st.composite
def creators(draw: st.DrawFn, deployment_ids: Sequence[uuid.UUID]) -> CreatedBy | None:
    """A flow run's `created_by`: NULL, or {"id", "type"} where the id is a deployment's
    or another UUID string (lower-case as Prefect writes it, rarely upper-case) or null."""
    if draw(st.booleans()):
        return None
    identifier = draw(maybe(pick(deployment_ids, st.sampled_from(OTHER_CREATOR_IDS))))
    text = None
    if identifier is not None:
        text = str(identifier).upper() if draw(st.integers(0, 5)) == 0 else str(identifier)
    return CreatedBy(id=text, type=draw(maybe(st.sampled_from(CREATOR_TYPES))))


@st.composite
def datasets(draw: st.DrawFn) -> Dataset:
    """A consistent set of rows for the six tables (foreign keys and unique constraints
    hold): 2–8 flows with unique names, 1–3 pools with 1–2 queues each, 1–6 deployments
    (each on a queue or on none), 1–15 flow runs (deployment_id a deployment's, NULL or
    a random UUID; parent task run one of another run's or an orphan's task runs, or
    NULL) and 1–15 task runs (flow_run_id NULL or a flow run's)."""
    flows = tuple(
        Flow(id=row_id("flow", index), name=name, tags=draw(tag_lists))
        for index, name in enumerate(draw(st.lists(names, min_size=2, max_size=8, unique=True)))
    )
    pools: list[WorkPool] = []
    queues: list[WorkQueue] = []
    for name in draw(st.lists(st.sampled_from(POOL_NAMES), min_size=1, max_size=3, unique=True)):
        pool = WorkPool(
            id=row_id("work_pool", len(pools)), name=name, type=draw(st.sampled_from(POOL_TYPES))
        )
        pools.append(pool)
        for queue_name in draw(
            st.lists(st.sampled_from(QUEUE_NAMES), min_size=1, max_size=2, unique=True)
        ):
            queues.append(WorkQueue(row_id("work_queue", len(queues)), pool.id, queue_name))
    queue_ids = [queue.id for queue in queues]

    deployments: list[Deployment] = []
    keys = st.tuples(st.sampled_from(flows), names)
    unique_keys = st.lists(keys, min_size=1, max_size=6, unique_by=lambda k: (k[0].id, k[1]))
    for flow, name in draw(unique_keys):
        deployments.append(
            Deployment(
                id=row_id("deployment", len(deployments)),
                flow_id=flow.id,
                name=name,
                tags=draw(tag_lists),
                paused=draw(st.booleans()),
                work_queue_id=draw(maybe(st.sampled_from(queue_ids))),
                work_queue_name=draw(maybe(st.sampled_from(QUEUE_NAMES))),
            )
        )
    deployment_ids = [deployment.id for deployment in deployments]

    runs: list[FlowRun] = []
    used_keys: set[tuple[uuid.UUID, str]] = set()
    for flow in draw(st.lists(st.sampled_from(flows), min_size=1, max_size=15)):
        key = draw(maybe(st.sampled_from(IDEMPOTENCY_KEYS)))
        if key is not None and (flow.id, key) in used_keys:
            key = None  # UNIQUE (flow_id, idempotency_key)
        if key is not None:
            used_keys.add((flow.id, key))
        runs.append(
            FlowRun(
                id=row_id("flow_run", len(runs)),
                flow_id=flow.id,
                name=draw(names),
                tags=draw(tag_lists),
                state_type=draw(state_types),
                state_name=draw(state_names),
                start_time=draw(maybe_timestamps),
                expected_start_time=draw(maybe_timestamps),
                end_time=draw(maybe_timestamps),
                next_scheduled_start_time=draw(maybe_timestamps),
                deployment_id=draw(maybe(pick(deployment_ids, st.uuids()))),
                work_queue_name=draw(maybe(st.sampled_from(QUEUE_NAMES))),
                work_queue_id=draw(maybe(st.sampled_from(queue_ids))),
                parent_task_run_id=None,  # set below, once the task runs exist
                flow_version=draw(maybe(st.sampled_from(FLOW_VERSIONS))),
                idempotency_key=key,
                created_by=draw(creators(deployment_ids)),
            )
        )

    run_ids = [run.id for run in runs]
    task_runs = tuple(
        TaskRun(
            id=row_id("task_run", index),
            flow_run_id=draw(pick(run_ids, st.none())),
            name=draw(names),
            tags=draw(tag_lists),
            state_type=draw(state_types),
            state_name=draw(state_names),
            start_time=draw(maybe_timestamps),
            end_time=draw(maybe_timestamps),
            expected_start_time=draw(maybe_timestamps),
        )
        for index in range(draw(st.integers(1, 15)))
    )
    with_parents = []
    for run in runs:
        candidates = [task.id for task in task_runs if task.flow_run_id != run.id]
        parent = draw(maybe(st.sampled_from(candidates))) if candidates else None
        with_parents.append(replace(run, parent_task_run_id=parent))
    return Dataset(
        flows=flows,
        work_pools=tuple(pools),
        work_queues=tuple(queues),
        deployments=tuple(deployments),
        flow_runs=tuple(with_parents),
        task_runs=task_runs,
    )


# --- request building blocks -------------------------------------------------------------


#: The forms in which the API accepts a UUID (hyphenated twice, so it is the usual one).
UUID_FORMS: tuple[Callable[[uuid.UUID], str], ...] = (
    str,
    str,
    lambda u: str(u).upper(),
    lambda u: u.hex,
    lambda u: "{" + str(u) + "}",
    lambda u: f"urn:uuid:{u}",
)


@st.composite
def uuid_texts(draw: st.DrawFn, ids: Sequence[uuid.UUID]) -> str:
    """A UUID string for a request: mostly one of `ids`, sometimes a random or another
    kind's id, written in any of the forms the API accepts (UUID_FORMS)."""
    value = draw(pick(ids, st.uuids()))
    return draw(st.sampled_from(UUID_FORMS))(value)


def any_lists(values: st.SearchStrategy[T]) -> st.SearchStrategy[list[T]]:
    """An `any`/`not_any`/`all` list: 1–3 values, or (one time in six) `[]`, which
    matches nothing for `any` and is no condition for the others."""
    some = st.lists(values, min_size=1, max_size=3)
    return st.one_of(some, some, some, some, some, st.just([]))


def timestamp_texts(moments: Sequence[datetime]) -> st.SearchStrategy[str]:
    """A `before`/`after` bound: a timestamp of the data (or of the grid) shifted by one
    of BOUND_SHIFTS, so bounds land on, just beside and far from the data."""
    base = pick(moments, timestamps)
    return st.builds(
        lambda moment, shift: rfc3339(moment + shift), base, st.sampled_from(BOUND_SHIFTS)
    )


@st.composite
def like_texts(draw: st.DrawFn, candidates: Sequence[str]) -> str:
    """A `like` text: usually a slice of an existing name with characters case-swapped
    or replaced by the `_`/`%` wildcards; otherwise random text over LIKE_ALPHABET.
    May be "" (no condition)."""
    if not candidates or draw(st.integers(0, 3)) == 0:
        return draw(st.text(LIKE_ALPHABET, max_size=3))
    source = draw(st.sampled_from(candidates))
    start = draw(st.integers(0, len(source)))
    end = draw(st.integers(start, len(source)))
    return "".join(
        draw(st.sampled_from([char, char, char.swapcase(), "_", "%"])) for char in source[start:end]
    )


#: How many fields a leaf message (`name`, `tags`, …) sets: mostly one; `{}` (no
#: condition, yet a TRUE child) now and then.
LEAF_SIZES = (1, 1, 1, 1, 2, 2, 0, 3)
#: How many sub-filters a composite message (FlowRunFilter, …) sets: few, so that
#: each one decides something.
COMPOSITE_SIZES = (1, 1, 1, 1, 2, 2, 0, 3)


@st.composite
def messages(
    draw: st.DrawFn,
    fields: Mapping[str, st.SearchStrategy[Any]],
    *,
    operator: bool = False,
    sizes: Sequence[int] = LEAF_SIZES,
) -> dict[str, Any]:
    """A filter message: a random subset of `fields` (its size drawn from `sizes`), each
    drawn from its strategy, plus a random `operator` (absent/AND/OR/UNSPECIFIED) where
    the proto has one. Shrinking goes towards fewer fields."""
    count = min(draw(st.sampled_from(sizes)), len(fields))
    chosen = draw(st.permutations(sorted(fields)))[:count]
    message: dict[str, Any] = {field: draw(fields[field]) for field in sorted(chosen)}
    if operator:
        chosen_operator = draw(st.sampled_from(OPERATORS))
        if chosen_operator is not None:
            message["operator"] = chosen_operator
    return message


# --- the five top-level filters -------------------------------------------------------------


class Pools:
    """Values of one dataset that requests draw from."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset
        runs, tasks = dataset.flow_runs, dataset.task_runs
        self.flow_ids = [flow.id for flow in dataset.flows]
        self.run_ids = [run.id for run in runs]
        self.task_ids = [task.id for task in tasks]
        self.deployment_ids = [deployment.id for deployment in dataset.deployments]
        self.pool_ids = [pool.id for pool in dataset.work_pools]
        self.flow_names = [flow.name for flow in dataset.flows]
        self.run_names = [run.name for run in runs]
        self.task_names = [task.name for task in tasks]
        self.deployment_names = [deployment.name for deployment in dataset.deployments]
        self.creator_ids = [
            uuid.UUID(run.created_by.id)
            for run in runs
            if run.created_by is not None and run.created_by.id is not None
        ]
        self.run_times = [
            moment
            for run in runs
            for moment in (
                run.start_time,
                run.expected_start_time,
                run.end_time,
                run.next_scheduled_start_time,
            )
            if moment is not None
        ]
        self.task_times = [
            moment
            for task in tasks
            for moment in (task.start_time, task.end_time, task.expected_start_time)
            if moment is not None
        ]


def flow_filters(pools: Pools) -> st.SearchStrategy[dict[str, Any]]:
    """FlowFilter: id, deployment, name, tags (and operator)."""
    return messages(
        {
            "id": messages(
                {
                    "any": any_lists(uuid_texts(pools.flow_ids)),
                    "not_any": any_lists(uuid_texts(pools.flow_ids)),
                }
            ),
            "deployment": messages({"is_null": st.booleans()}, operator=True),
            "name": messages(
                {
                    "any": any_lists(pick(pools.flow_names, names)),
                    "like": like_texts(pools.flow_names),
                }
            ),
            "tags": messages(
                {"all": any_lists(st.sampled_from(TAG_POOL)), "is_null": st.booleans()},
                operator=True,
            ),
        },
        operator=True,
        sizes=COMPOSITE_SIZES,
    )


def _state_filter(*, not_any: bool) -> st.SearchStrategy[dict[str, Any]]:
    type_fields: dict[str, st.SearchStrategy[Any]] = {
        "any": any_lists(st.sampled_from(STATE_TYPES))
    }
    name_fields: dict[str, st.SearchStrategy[Any]] = {
        "any": any_lists(st.sampled_from(STATE_NAMES))
    }
    if not_any:
        type_fields["not_any"] = any_lists(st.sampled_from(STATE_TYPES))
        name_fields["not_any"] = any_lists(st.sampled_from(STATE_NAMES))
    return messages(
        {"type": messages(type_fields), "name": messages(name_fields)},
        operator=True,
        sizes=COMPOSITE_SIZES,
    )


def flow_run_filters(pools: Pools) -> st.SearchStrategy[dict[str, Any]]:
    """FlowRunFilter: all fifteen sub-filters, at most four at a time."""
    run_times = timestamp_texts(pools.run_times)
    return messages(
        {
            "id": messages(
                {
                    "any": any_lists(uuid_texts(pools.run_ids)),
                    "not_any": any_lists(uuid_texts(pools.run_ids)),
                }
            ),
            "name": messages(
                {
                    "any": any_lists(pick(pools.run_names, names)),
                    "like": like_texts(pools.run_names),
                }
            ),
            "tags": messages(
                {
                    "all": any_lists(st.sampled_from(TAG_POOL)),
                    "any": any_lists(st.sampled_from(TAG_POOL)),
                    "is_null": st.booleans(),
                },
                operator=True,
            ),
            "deployment_id": messages(
                {"any": any_lists(uuid_texts(pools.deployment_ids)), "is_null": st.booleans()},
                operator=True,
            ),
            "work_queue_name": messages(
                {"any": any_lists(st.sampled_from(QUEUE_NAMES)), "is_null": st.booleans()},
                operator=True,
            ),
            "state": _state_filter(not_any=True),
            "flow_version": messages({"any": any_lists(st.sampled_from(FLOW_VERSIONS))}),
            "start_time": messages(
                {"before": run_times, "after": run_times, "is_null": st.booleans()}
            ),
            "end_time": messages(
                {"before": run_times, "after": run_times, "is_null": st.booleans()}
            ),
            "expected_start_time": messages({"before": run_times, "after": run_times}),
            "next_scheduled_start_time": messages({"before": run_times, "after": run_times}),
            "parent_flow_run_id": messages(
                {"any": any_lists(uuid_texts(pools.run_ids))}, operator=True
            ),
            "parent_task_run_id": messages(
                {"any": any_lists(uuid_texts(pools.task_ids)), "is_null": st.booleans()},
                operator=True,
            ),
            "idempotency_key": messages(
                {
                    "any": any_lists(st.sampled_from(IDEMPOTENCY_KEYS)),
                    "not_any": any_lists(st.sampled_from(IDEMPOTENCY_KEYS)),
                }
            ),
            "created_by": messages(
                {
                    "id": any_lists(uuid_texts(pools.creator_ids or list(OTHER_CREATOR_IDS))),
                    "type": any_lists(st.sampled_from(CREATOR_TYPES)),
                    "is_null": st.booleans(),
                },
                operator=True,
            ),
        },
        operator=True,
        sizes=COMPOSITE_SIZES,
    )


def task_run_filters(pools: Pools) -> st.SearchStrategy[dict[str, Any]]:
    """TaskRunFilter: all nine sub-filters, at most four at a time."""
    task_times = timestamp_texts(pools.task_times)
    return messages(
        {
            "id": messages({"any": any_lists(uuid_texts(pools.task_ids))}),
            "name": messages(
                {
                    "any": any_lists(pick(pools.task_names, names)),
                    "like": like_texts(pools.task_names),
                }
            ),
            "tags": messages(
                {"all": any_lists(st.sampled_from(TAG_POOL)), "is_null": st.booleans()},
                operator=True,
            ),
            "state": _state_filter(not_any=False),
            "start_time": messages(
                {"before": task_times, "after": task_times, "is_null": st.booleans()}
            ),
            "end_time": messages(
                {"before": task_times, "after": task_times, "is_null": st.booleans()}
            ),
            "expected_start_time": messages({"before": task_times, "after": task_times}),
            "subflow_runs": messages({"exists": st.booleans()}),
            "flow_run_id": messages(
                {"any": any_lists(uuid_texts(pools.run_ids)), "is_null": st.booleans()},
                operator=True,
            ),
        },
        operator=True,
        sizes=COMPOSITE_SIZES,
    )


def deployment_filters(pools: Pools) -> st.SearchStrategy[dict[str, Any]]:
    """DeploymentFilter: all seven sub-filters (concurrency_limit is ignored by design)."""
    return messages(
        {
            "id": messages(
                {
                    "any": any_lists(uuid_texts(pools.deployment_ids)),
                    "not_any": any_lists(uuid_texts(pools.deployment_ids)),
                }
            ),
            "name": messages(
                {
                    "any": any_lists(pick(pools.deployment_names, names)),
                    "like": like_texts(pools.deployment_names),
                }
            ),
            "flow_or_deployment_name": messages(
                {"like": like_texts(pools.deployment_names + pools.flow_names)}
            ),
            "paused": messages({"eq": st.booleans()}),
            "tags": messages(
                {
                    "all": any_lists(st.sampled_from(TAG_POOL)),
                    "any": any_lists(st.sampled_from(TAG_POOL)),
                    "is_null": st.booleans(),
                },
                operator=True,
            ),
            "work_queue_name": messages({"any": any_lists(st.sampled_from(QUEUE_NAMES))}),
            "concurrency_limit": messages(
                {"ge": st.integers(0, 3), "le": st.integers(0, 3), "is_null": st.booleans()}
            ),
        },
        operator=True,
        sizes=COMPOSITE_SIZES,
    )


def work_pool_filters(pools: Pools) -> st.SearchStrategy[dict[str, Any]]:
    """WorkPoolFilter: id, name, type (and operator)."""
    return messages(
        {
            "id": messages({"any": any_lists(uuid_texts(pools.pool_ids))}),
            "name": messages({"any": any_lists(st.sampled_from(POOL_NAMES))}),
            "type": messages({"any": any_lists(st.sampled_from(POOL_TYPES))}),
        },
        operator=True,
        sizes=COMPOSITE_SIZES,
    )


#: The top-level filters of a request and the strategy for each.
TOP_LEVEL: dict[str, Callable[[Pools], st.SearchStrategy[dict[str, Any]]]] = {
    "flows": flow_filters,
    "flow_runs": flow_run_filters,
    "task_runs": task_run_filters,
    "deployments": deployment_filters,
    "work_pools": work_pool_filters,
}


#: Which top-level filters a request has: mostly one, or a pair whose filters must
#: hold on the same row (a flow run and its task run; a deployment and its pool).
FILTER_SETS: tuple[tuple[str, ...], ...] = (
    ("flows",),
    ("flow_runs",),
    ("task_runs",),
    ("deployments",),
    ("work_pools",),
    ("flow_runs", "task_runs"),
    ("deployments", "work_pools"),
)


@st.composite
def requests(draw: st.DrawFn, dataset: Dataset) -> Request:
    """A ReadFlows/CountFlows filter set: each of the five filters absent or present
    (present ones may be `{}`, which is a condition of its own for the four
    related-entity filters). Usually one filter or a same-row pair (FILTER_SETS),
    otherwise any subset, including none."""
    pools = Pools(dataset)
    any_subset = st.lists(st.sampled_from(sorted(TOP_LEVEL)), unique=True, max_size=5)
    chosen = draw(st.one_of(st.sampled_from(FILTER_SETS), any_subset))
    return {field: draw(TOP_LEVEL[field](pools)) for field in sorted(chosen)}


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[Dataset, list[Request]]:
    """A dataset and 4–12 distinct requests over it (seeding is the slow part, so each
    dataset answers many requests)."""
    dataset = draw(datasets())
    distinct = st.lists(
        requests(dataset),
        min_size=4,
        max_size=12,
        unique_by=lambda r: json.dumps(r, sort_keys=True),
    )
    return dataset, draw(distinct)


def narrowings(message: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Copies of a filter message that keep exactly one of its fields (and its
    operator), that field either whole or itself narrowed, recursively."""
    operator = {"operator": message["operator"]} if "operator" in message else {}
    result: list[dict[str, Any]] = []
    for field, value in sorted(message.items()):
        if field == "operator":
            continue
        result.append({field: value, **operator})
        if isinstance(value, dict) and len(value.keys() - {"operator"}) > 1:
            result.extend({field: narrower, **operator} for narrower in narrowings(value))
    return result


def parts(request: Mapping[str, Any]) -> list[Request]:
    """The request and its narrowings (each filter alone, each with a single sub-filter,
    each sub-filter with a single field): smaller requests in which every condition is
    likelier to decide the answer, checked on the same dataset, smallest first."""
    found = {json.dumps(request, sort_keys=True): dict(request)}
    for narrower in narrowings(request):
        found.setdefault(json.dumps(narrower, sort_keys=True), narrower)
    return sorted(found.values(), key=lambda candidate: len(json.dumps(candidate)))
