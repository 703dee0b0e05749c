"""ReadFlows and CountFlows against Prefect's `POST /flows/filter` and `/flows/count`.

Each query of `queries.py` goes to both servers, which read one database:
the flows must agree exactly and in order (id, name, tags, labels, created,
updated), and so must the counts. Prefect's answer must also be the one the
catalogue expects, so that no query silently degenerates.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import grpc
import pytest

from flowservice.errors import RpcError
from flowservice.prefect_compat import (
    SORTS,
    UntranslatableError,
    count_body,
    translate_filters,
    translate_read,
)
from flowservice.v1 import filters_pb2
from tests.prefect.queries import QUERIES, Query

if TYPE_CHECKING:
    from google.protobuf.descriptor import Descriptor

    from tests.prefect.conftest import Differential


def _cases() -> list[Any]:
    """The queries; one with an open (reported) difference is a strict xfail."""
    return [
        pytest.param(
            query,
            id=query.id,
            marks=[
                pytest.mark.xfail(raises=AssertionError, strict=True, reason=query.open_difference)
            ]
            if query.open_difference
            else [],
        )
        for query in QUERIES
    ]


@pytest.mark.parametrize("query", _cases())
async def test_flowservice_answers_as_prefect_does(both: Differential, query: Query) -> None:
    answers = await both.answers(both.seed.resolve(query.body))
    answers.assert_same()
    expected = query.expected(both.backend)
    assert [flow.name for flow in answers.prefect] == expected, (
        f"Prefect itself answered otherwise than the catalogue expects for {query.id} (the "
        "seed or the expectation is wrong, not FlowService) " + answers.context
    )
    if not {"offset", "limit"} & query.body.keys():
        assert answers.prefect_count == len(expected), answers.context


INVALID = [
    pytest.param({"limit": 201}, id="limit-above-200"),
    pytest.param({"limit": -1}, id="limit-negative"),
    pytest.param({"offset": -1}, id="offset-negative"),
    pytest.param({"flows": {"id": {"any_": ["not-a-uuid"]}}}, id="flow-id-not-a-uuid"),
    pytest.param(
        {"flows": {"id": {"any_": ["{3f2f054e313749b6a5a30f1d6e7f2a10}"]}}}, id="flow-id-braced-hex"
    ),
    pytest.param({"flows": {"name": {"any_": [1]}}}, id="flow-name-not-a-string"),
    pytest.param({"flow_runs": {"state": {"type": {"any_": ["completed"]}}}}, id="state-lower"),
    pytest.param({"flow_runs": {"created_by": {"id_": ["x"]}}}, id="created-by-id-not-a-uuid"),
    pytest.param({"deployments": {"id": {"not_any_": ["x"]}}}, id="deployment-not-any-not-uuid"),
    pytest.param({"task_runs": {"flow_run_id": {"any_": ["URN:UUID:0"]}}}, id="task-flow-run-id"),
]


@pytest.mark.parametrize("body", INVALID)
async def test_what_prefect_rejects_flowservice_rejects(
    both: Differential, body: dict[str, Any]
) -> None:
    """Prefect's 422 is INVALID_ARGUMENT here (README: also for a limit above 200)."""
    body = both.seed.resolve(body)
    reply = await both.prefect("POST", "/flows/filter", body)
    assert reply.status == 422, reply
    with pytest.raises(RpcError) as error:
        await both.client.read_flows(**translate_read(body))
    assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT, str(error.value)
    if count_body(body):
        assert (await both.prefect("POST", "/flows/count", count_body(body))).status == 422
        with pytest.raises(RpcError) as error:
            await both.client.count_flows(**translate_filters(body))
        assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT, str(error.value)


# --- the catalogue covers the whole filter language (no servers needed) ----------


def _paths(value: Any, prefix: str = "") -> set[str]:
    if not isinstance(value, dict):
        return set()
    found = set()
    for key, item in value.items():
        path = f"{prefix}.{key}" if prefix else key
        found.add(path)
        found |= _paths(item, path)
    return found


def _fields(descriptor: Descriptor, prefix: str) -> set[str]:
    """Every field path of a filter message, recursing into sub-filter messages."""
    found = set()
    for field in descriptor.fields:
        path = f"{prefix}.{field.name}"
        found.add(path)
        nested = field.message_type
        if nested is not None and nested.full_name.startswith("flowservice.v1."):
            found |= _fields(nested, path)
    return found


def test_the_queries_use_every_filter_field_every_sort_and_paging() -> None:
    used: set[str] = set()
    for query in QUERIES:
        used |= _paths(translate_filters(query.body))
    roots: dict[str, Descriptor] = {
        "flows": filters_pb2.FlowFilter.DESCRIPTOR,
        "flow_runs": filters_pb2.FlowRunFilter.DESCRIPTOR,
        "task_runs": filters_pb2.TaskRunFilter.DESCRIPTOR,
        "deployments": filters_pb2.DeploymentFilter.DESCRIPTOR,
        "work_pools": filters_pb2.WorkPoolFilter.DESCRIPTOR,
    }
    every = set(roots)
    for root, descriptor in roots.items():
        every |= _fields(descriptor, root)
    missing = sorted(every - used)
    assert not missing, f"no query uses {missing}"
    assert {query.body.get("sort") for query in QUERIES} >= set(SORTS)
    limits = {query.body["limit"] for query in QUERIES if "limit" in query.body}
    offsets = {query.body["offset"] for query in QUERIES if "offset" in query.body}
    assert {0, 200} <= limits
    assert {0} < offsets
    assert len(QUERIES) >= 60
    assert len({query.id for query in QUERIES}) == len(QUERIES)


def test_the_translator_renames_exactly_the_contracts_fields() -> None:
    body = {
        "flows": {"operator": "or_", "id": {"any_": [], "not_any_": ["x"]}, "name": None},
        "flow_runs": {"created_by": {"id_": ["i"], "type_": ["t"], "is_null_": False}},
        "task_runs": {"flow_run_id": {"is_null_": None, "any_": ["r"]}},
        "deployments": {"paused": {"eq_": True}, "concurrency_limit": {"ge_": 1, "le_": 2}},
        "work_pools": None,
        "sort": "UPDATED_DESC",
        "offset": 3,
        "limit": 0,
    }
    assert translate_read(body) == {
        "flows": {"operator": "OPERATOR_OR", "id": {"any": [], "not_any": ["x"]}},
        "flow_runs": {"created_by": {"id": ["i"], "type": ["t"], "is_null": False}},
        "task_runs": {"flow_run_id": {"any": ["r"]}},
        "deployments": {"paused": {"eq": True}, "concurrency_limit": {"ge": 1, "le": 2}},
        "sort": SORTS["UPDATED_DESC"],
        "offset": 3,
        "limit": 0,
    }
    with pytest.raises(UntranslatableError, match="explicit null"):
        translate_filters({"task_runs": {"flow_run_id": {"is_null_": None}}})
    with pytest.raises(UntranslatableError, match="startswith_"):
        translate_filters({"flows": {"name": {"startswith_": "a"}}})
