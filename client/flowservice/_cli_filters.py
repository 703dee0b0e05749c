"""`flowservice flows` filter flags become the request's filter dicts (the JSON form)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flowservice.v1 import flow_service_pb2

if TYPE_CHECKING:
    import argparse

#: The request fields that hold a filter; `--filter` takes an object with these keys.
FILTER_KEYS = ("flows", "flow_runs", "task_runs", "deployments", "work_pools", "latest_flow_run")
STATE_TYPES = (
    "SCHEDULED",
    "PENDING",
    "RUNNING",
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "CRASHED",
    "PAUSED",
    "CANCELLING",
)
SORTS = {
    "name": flow_service_pb2.FLOW_SORT_NAME_ASC,
    "name-desc": flow_service_pb2.FLOW_SORT_NAME_DESC,
    "created-desc": flow_service_pb2.FLOW_SORT_CREATED_DESC,
    "updated-desc": flow_service_pb2.FLOW_SORT_UPDATED_DESC,
}
_DURATION = re.compile(r"(\d+)([smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class UsageError(Exception):
    """A flag's value cannot be used; the command exits 2."""


def duration(text: str) -> timedelta:
    """`90s`, `15m`, `1h`, `2d`, `1w`, or several: `1h30m`."""
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise UsageError(f"not a duration: {text!r} (use e.g. 30m, 1h, 2d, 1h30m)")
    return sum((timedelta(**{_UNITS[u]: int(n)}) for n, u in parts), timedelta())


def add_filter_flags(parser: argparse.ArgumentParser, *, flows_only: bool = False) -> None:
    group = parser.add_argument_group("filters (all must hold)")
    group.add_argument("--tag", action="append", default=[], metavar="TAG", help="has this tag")
    group.add_argument("--untagged", action="store_true", help="has no tags")
    group.add_argument("--name", action="append", default=[], help="is named exactly NAME")
    group.add_argument("--name-like", metavar="TEXT", help="name contains TEXT (%% and _ wild)")
    group.add_argument("--id", action="append", default=[], help="has this id")
    if not flows_only:
        group.add_argument(
            "--run-state",
            action="append",
            default=[],
            choices=STATE_TYPES,
            metavar="STATE",
            help="has a flow run in this state type (repeat for any of several)",
        )
        group.add_argument(
            "--runs-since",
            metavar="DURATION",
            help="has a flow run started within DURATION (30m, 1h, 2d…)",
        )
        group.add_argument(
            "--latest-run-state",
            action="append",
            default=[],
            choices=STATE_TYPES,
            metavar="STATE",
            help="its latest started flow run is in this state type",
        )
        group.add_argument(
            "--has-deployment", action="store_true", help="has at least one deployment"
        )
        group.add_argument(
            "--deployment-paused", action="store_true", help="has a paused deployment"
        )
        group.add_argument("--work-pool", action="append", default=[], help="deployed to this pool")
    group.add_argument(
        "--filter",
        metavar="JSON",
        help="the request's filters in JSON (keys: "
        + ", ".join(FILTER_KEYS[:1] if flows_only else FILTER_KEYS)
        + "), or @FILE; the flags above are added to it",
    )


def _merge(into: dict[str, Any], extra: dict[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def filters_from(arguments: argparse.Namespace, now: datetime | None = None) -> dict[str, Any]:
    """The filter keywords for the client's read methods, from the flags and `--filter`."""
    runs_too = hasattr(arguments, "run_state")  # `watch` filters flows only
    given = _given(arguments.filter, FILTER_KEYS if runs_too else FILTER_KEYS[:1])
    flags: dict[str, Any] = {}
    if flows := _flow_flags(arguments):
        flags["flows"] = flows
    if runs_too:
        flags.update(_related_flags(arguments, now or datetime.now(UTC)))
    _merge(given, flags)
    return given


def _given(text: str | None, allowed: tuple[str, ...]) -> dict[str, Any]:
    if not text:
        return {}
    if text.startswith("@"):
        try:
            text = Path(text[1:]).read_text()
        except OSError as error:
            raise UsageError(f"--filter: {error}") from None
    try:
        given = json.loads(text)
    except json.JSONDecodeError as error:
        raise UsageError(f"--filter is not JSON: {error}") from None
    if not isinstance(given, dict):
        raise UsageError("--filter must be a JSON object")
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise UsageError(f"--filter: unknown keys {unknown}; use {', '.join(allowed)}")
    return given


def _flow_flags(arguments: argparse.Namespace) -> dict[str, Any]:
    flows: dict[str, Any] = {}
    tags: dict[str, Any] = {}
    if arguments.tag:
        tags["all"] = arguments.tag
    if arguments.untagged:
        tags["is_null"] = True
    if tags:
        flows["tags"] = tags
    name: dict[str, Any] = {}
    if arguments.name:
        name["any"] = arguments.name
    if arguments.name_like:
        name["like"] = arguments.name_like
    if name:
        flows["name"] = name
    if arguments.id:
        flows["id"] = {"any": arguments.id}
    return flows


def _related_flags(arguments: argparse.Namespace, now: datetime) -> dict[str, Any]:
    flags: dict[str, Any] = {}
    runs: dict[str, Any] = {}
    if arguments.run_state:
        runs["state"] = {"type": {"any": arguments.run_state}}
    if arguments.runs_since:
        after = now - duration(arguments.runs_since)
        runs["start_time"] = {"after": after.isoformat().replace("+00:00", "Z")}
    if runs:
        flags["flow_runs"] = runs
    if arguments.latest_run_state:
        flags["latest_flow_run"] = {"state": {"type": {"any": arguments.latest_run_state}}}
    if arguments.has_deployment:
        flags["deployments"] = {}
    if arguments.deployment_paused:
        flags["deployments"] = {"paused": {"eq": True}}
    if arguments.work_pool:
        flags["work_pools"] = {"name": {"any": arguments.work_pool}}
    return flags
