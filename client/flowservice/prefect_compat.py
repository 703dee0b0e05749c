"""Prefect's filters -> FlowService's: the one translator, used by the client and the tests.

The client's read and count methods take Prefect's keywords (`flow_filter`,
`flow_run_filter`, `task_run_filter`, `deployment_filter`,
`work_pool_filter`) and Prefect's shapes: the JSON of a `/flows/filter` body
(`any_`, `like_`, `"operator": "and_"`, sort `"NAME_ASC"`) or, when Prefect is
installed, its pydantic filter objects, serialised as Prefect's own client
serialises them for the request body. This module turns them into
FlowService's form mechanically.

The renames are exactly the contract's (protos/flowservice/v1/filters.proto):
the trailing underscores go, the operator and sort values get their enum
names, everything else is kept. A construct FlowService cannot express raises
`UntranslatableError` rather than being approximated (the client reports it
as `InvalidArgument`). The differential suite (tests/prefect) writes each
query once, in Prefect's JSON, and derives FlowService's form with this
module, so the two sides of a comparison cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, TypeAlias, runtime_checkable

from flowservice.v1 import flow_service_pb2

#: Prefect field name -> FlowService field name (the only renamed keys).
RENAMES = {
    "any_": "any",
    "not_any_": "not_any",
    "all_": "all",
    "like_": "like",
    "is_null_": "is_null",
    "before_": "before",
    "after_": "after",
    "eq_": "eq",
    "exists_": "exists",
    "ge_": "ge",
    "le_": "le",
    "id_": "id",
    "type_": "type",
}
OPERATORS = {"and_": "OPERATOR_AND", "or_": "OPERATOR_OR"}
SORTS: dict[str, flow_service_pb2.FlowSort.ValueType] = {
    "CREATED_DESC": flow_service_pb2.FLOW_SORT_CREATED_DESC,
    "UPDATED_DESC": flow_service_pb2.FLOW_SORT_UPDATED_DESC,
    "NAME_ASC": flow_service_pb2.FLOW_SORT_NAME_ASC,
    "NAME_DESC": flow_service_pb2.FLOW_SORT_NAME_DESC,
}
FILTERS = ("flows", "flow_runs", "task_runs", "deployments", "work_pools")
PAGING = ("sort", "offset", "limit")
#: Prefect's client keyword -> the FlowService filter it is.
KEYWORDS = {
    "flow_filter": "flows",
    "flow_run_filter": "flow_runs",
    "task_run_filter": "task_runs",
    "deployment_filter": "deployments",
    "work_pool_filter": "work_pools",
}
#: The filters Prefect's client dumps with `exclude_unset=True` (read_flows, count_flows).
_EXCLUDE_UNSET = frozenset({"flow_runs"})


@runtime_checkable
class PrefectModel(Protocol):
    """A pydantic model, e.g. `prefect.client.schemas.filters.FlowFilter`."""

    def model_dump(self, *, mode: str = ..., exclude_unset: bool = ...) -> dict[str, Any]: ...


#: A filter in Prefect's shape: its JSON as a dict, or its pydantic object.
PrefectFilter: TypeAlias = "Mapping[str, Any] | PrefectModel | None"


class UntranslatableError(ValueError):
    """A Prefect filter FlowService has no way to write."""


def prefect_json(value: Mapping[str, Any] | PrefectModel, field: str) -> dict[str, Any]:
    """A Prefect filter as the JSON its client sends (`model_dump(mode="json")`, and
    `exclude_unset=True` for flow runs, as `PrefectClient.read_flows` does)."""
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, PrefectModel):
        return value.model_dump(mode="json", exclude_unset=field in _EXCLUDE_UNSET)
    raise UntranslatableError(f"{field}: a Prefect filter or its JSON, not {type(value).__name__}")


def looks_like_prefect(value: Any) -> bool:
    """Whether a dict filter is written in Prefect's JSON (a key like `any_`, an
    operator `and_`/`or_`) rather than FlowService's."""
    if isinstance(value, Mapping):
        return any(
            (isinstance(key, str) and key.endswith("_"))
            or (key == "operator" and item in OPERATORS)
            or looks_like_prefect(item)
            for key, item in value.items()
        )
    return False


def translate_filter(prefect: Mapping[str, Any], path: str) -> dict[str, Any]:
    """One filter object in the proto's JSON form (for `json_format.ParseDict`).

    A JSON `null` in Prefect means "not given", which is an absent field here,
    with one exception: `task_runs.flow_run_id.is_null_` defaults to false in
    Prefect, so an explicit null there is a different filter (see below).
    FlowService's own names and operator values pass through unchanged.
    """
    result: dict[str, Any] = {}
    for key, value in prefect.items():
        where = f"{path}.{key}"
        if key.endswith("_") and key not in RENAMES:
            raise UntranslatableError(f"{where}: no FlowService field for this Prefect field")
        if value is None:
            if where == "task_runs.flow_run_id.is_null_" and prefect.get("any_") is None:
                # Prefect: no condition at all; FlowService's absent is_null means
                # false ("belongs to some flow run"), and it has no third state.
                raise UntranslatableError(f"{where}: explicit null without any_")
            continue
        name = RENAMES.get(key, key)
        if key == "operator":
            result[name] = OPERATORS.get(value, value)
        elif isinstance(value, Mapping):
            result[name] = translate_filter(value, where)
        else:
            result[name] = value
    return result


def translate_sort(sort: str) -> flow_service_pb2.FlowSort.ValueType:
    """Prefect's sort (`"NAME_ASC"`, or its `FlowSort` enum, a str) or our enum's name."""
    value = getattr(sort, "value", sort)
    if value in SORTS:
        return SORTS[value]
    try:
        return flow_service_pb2.FlowSort.Value(value)
    except ValueError:
        raise UntranslatableError(f"sort: unknown sort {value!r}") from None


def translate_filters(body: Mapping[str, Any]) -> dict[str, Any]:
    """The five filter arguments of `FlowClient.count_flows` (absent ones left out)."""
    unknown = set(body) - set(FILTERS) - set(PAGING)
    if unknown:
        raise UntranslatableError(f"unknown top-level keys {sorted(unknown)}")
    return {
        key: translate_filter(prefect_json(body[key], key), key)
        for key in FILTERS
        if key in body and body[key] is not None
    }


def translate_read(body: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments of `FlowClient.read_flows` for a `/flows/filter` body."""
    arguments = translate_filters(body)
    if body.get("sort") is not None:
        arguments["sort"] = translate_sort(body["sort"])
    if body.get("offset") is not None:
        arguments["offset"] = body["offset"]
    if body.get("limit") is not None:
        arguments["limit"] = body["limit"]
    return arguments


def count_body(body: Mapping[str, Any]) -> dict[str, Any]:
    """The `/flows/count` body for a `/flows/filter` body: the filters only."""
    return {key: value for key, value in body.items() if key in FILTERS}
