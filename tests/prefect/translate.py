"""Prefect's `/flows/filter` JSON body -> FlowService's ReadFlows/CountFlows arguments.

Each differential query is written once, in Prefect's JSON; this module
derives FlowService's form from it mechanically, so the two sides of a
comparison cannot drift apart. The renames are exactly the contract's
(protos/flowservice/v1/filters.proto): the trailing underscores go, the
operator and sort values get their enum names, everything else is kept.
A construct FlowService cannot express raises `UntranslatableError` rather than
being approximated.
"""

from __future__ import annotations

from typing import Any

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


class UntranslatableError(ValueError):
    """A Prefect filter FlowService has no way to write."""


def translate_filter(prefect: dict[str, Any], path: str) -> dict[str, Any]:
    """One filter object in the proto's JSON form (for `json_format.ParseDict`).

    A JSON `null` in Prefect means "not given", which is an absent field here,
    with one exception: `task_runs.flow_run_id.is_null_` defaults to false in
    Prefect, so an explicit null there is a different filter (see below).
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
            result[name] = OPERATORS[value]
        elif isinstance(value, dict):
            result[name] = translate_filter(value, where)
        else:
            result[name] = value
    return result


def translate_filters(body: dict[str, Any]) -> dict[str, Any]:
    """The five filter arguments of `FlowClient.count_flows` (absent ones left out)."""
    unknown = set(body) - set(FILTERS) - set(PAGING)
    if unknown:
        raise UntranslatableError(f"unknown top-level keys {sorted(unknown)}")
    return {
        key: translate_filter(body[key], key)
        for key in FILTERS
        if key in body and body[key] is not None
    }


def translate_read(body: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments of `FlowClient.read_flows` for a `/flows/filter` body."""
    arguments = translate_filters(body)
    if body.get("sort") is not None:
        arguments["sort"] = SORTS[body["sort"]]
    if body.get("offset") is not None:
        arguments["offset"] = body["offset"]
    if body.get("limit") is not None:
        arguments["limit"] = body["limit"]
    return arguments


def count_body(body: dict[str, Any]) -> dict[str, Any]:
    """The `/flows/count` body for a `/flows/filter` body: the filters only."""
    return {key: value for key, value in body.items() if key in FILTERS}
