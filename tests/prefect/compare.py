"""One comparable view of a flow, from Prefect's JSON or from FlowService's message.

Compared exactly: id, name, tags (order and duplicates included), labels and
the two timestamps as instants. Two differences the README documents are
factored out, and nothing else:

* label numbers are compared as numbers (FlowService's labels are protobuf
  doubles, so Prefect's `1.0` reads back as `1`), but a boolean never equals
  a number and a string never equals either;
* label key order is ignored (FlowService stores keys sorted; jsonb has its
  own order; a protobuf map has none).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from flowservice.client import flow_labels

if TYPE_CHECKING:
    from flowservice.v1 import flow_pb2

LabelView = tuple[str, bool | Fraction | str]


@dataclass(frozen=True)
class FlowView:
    name: str
    id: str
    tags: tuple[str, ...]
    labels: frozenset[tuple[str, LabelView]] | None
    created: datetime
    updated: datetime

    def __str__(self) -> str:
        labels = None if self.labels is None else {k: _shown(v) for k, v in sorted(self.labels)}
        return (
            f"{self.name!r} id={self.id} tags={list(self.tags)} labels={labels} "
            f"created={self.created.isoformat()} updated={self.updated.isoformat()}"
        )


def _shown(label: LabelView) -> bool | int | float | str:
    value = label[1]
    if isinstance(value, Fraction):
        return int(value) if value.denominator == 1 else float(value)
    return value


def _label(value: Any) -> LabelView:
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int | float):
        return ("number", Fraction(value))
    if isinstance(value, str):
        return ("string", value)
    raise TypeError(f"not a label value: {value!r}")


def _labels(labels: dict[str, Any] | None) -> frozenset[tuple[str, LabelView]] | None:
    if labels is None:
        return None
    return frozenset((key, _label(value)) for key, value in labels.items())


def instant(text: str) -> datetime:
    """Prefect's `2026-11-27T06:27:19.010118Z` as an aware datetime."""
    moment = datetime.fromisoformat(text)
    assert moment.tzinfo is not None, text
    return moment.astimezone(UTC)


def from_prefect(flow: dict[str, Any]) -> FlowView:
    return FlowView(
        name=flow["name"],
        id=flow["id"],
        tags=tuple(flow["tags"]),
        labels=_labels(flow["labels"]),
        created=instant(flow["created"]),
        updated=instant(flow["updated"]),
    )


def from_flowservice(flow: flow_pb2.Flow) -> FlowView:
    return FlowView(
        name=flow.name,
        id=flow.id,
        tags=tuple(flow.tags),
        labels=_labels(flow_labels(flow)),
        created=flow.created.ToDatetime(tzinfo=UTC),
        updated=flow.updated.ToDatetime(tzinfo=UTC),
    )


def describe_difference(prefect: list[FlowView], flowservice: list[FlowView]) -> str:
    """Both answers by name, then the first position where they differ, field by field."""
    lines = [
        f"  prefect     ({len(prefect)}): {[flow.name for flow in prefect]}",
        f"  flowservice ({len(flowservice)}): {[flow.name for flow in flowservice]}",
    ]
    for index, (theirs, ours) in enumerate(zip(prefect, flowservice, strict=False)):
        if theirs != ours:
            lines += [
                f"  first difference at position {index}:",
                f"    prefect:     {theirs}",
                f"    flowservice: {ours}",
            ]
            break
    return "\n".join(lines)
