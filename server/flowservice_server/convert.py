"""Database rows become response messages.

Rows arrive with every column as the driver returns it (see `models.flows`):
id, created and updated as text on SQLite ('YYYY-MM-DD HH:MM:SS.ffffff',
UTC), UUID and aware datetime objects from asyncpg; tags and labels as JSON
text on both. Converting them straight into message
fields avoids building and re-reading intermediate objects for every row of a
200-flow page.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from flowservice.v1 import flow_pb2
from flowservice_server.etags import flow_etag
from flowservice_server.wire import message_field

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from google.protobuf import timestamp_pb2

_EPOCH = datetime(1970, 1, 1)  # SQLite's stored times are naive UTC
_EPOCH_UTC = _EPOCH.replace(tzinfo=UTC)


def fill_flow(message: flow_pb2.Flow, row: Sequence[Any]) -> None:
    """Write a row into a Flow message in place (a response's own field: no copies)."""
    # Unpacked by position: a Row's attributes by name cost more than the rest.
    flow_id, created, updated, name, tags, labels = row
    tags, labels = _decoded(tags), _decoded(labels)
    message.id = str(flow_id)
    message.name = name
    message.tags.extend(tags)
    set_timestamp(message.created, created)
    updated_at = epoch_parts(updated)
    message.updated.seconds, message.updated.nanos = updated_at[0], updated_at[1] * 1000
    if labels is not None:
        message.labels.SetInParent()  # present even when empty: {} is not "no labels"
        if labels:
            message.labels.update(labels)
    message.etag = flow_etag(str(flow_id), updated_at, name, tags, labels)


def row_etag(row: Sequence[Any]) -> str:
    """The etag `fill_flow` gives the Flow of this row."""
    flow_id, _, updated, name, tags, labels = row
    tags, labels = _decoded(tags), _decoded(labels)
    return flow_etag(str(flow_id), epoch_parts(updated), name, tags, labels)


def _decoded(stored: Any) -> Any:
    """Tags or labels as stored (JSON text; NULL) become the list or dict they hold."""
    return json.loads(stored) if isinstance(stored, str | bytes) else stored


class FlowMemo:
    """Serialized Flows, each kept with the whole stored row it was made from.

    A Flow is a function of its row (`fill_flow`): the same row gives the same
    bytes, so a flow read again unchanged costs a lookup instead of decoding
    its JSON, hashing its etag and building its message. The lookup is by the
    flow's id, then the whole row is compared with the one the bytes were made
    from: a row that changed in any column, whoever wrote it (FlowService, a
    Prefect server, plain SQL), does not match, and its Flow is made again and
    replaces the old one. So the memo cannot return a stale flow. (Hashing
    the id alone, not every column, is what makes a 200-row page cheap: the
    driver's strings are new objects on every read, their hashes not cached.)
    Bounded: once full, the oldest entry makes room (insertion order).
    """

    def __init__(self, size: int) -> None:
        self._size = size
        #: By id: the row, and its Flow as field 1 of a response (tag, length,
        #: message). Every response that carries flows has them in field 1, so
        #: a page is these joined as they are.
        self._fields: dict[Any, tuple[tuple[Any, ...], bytes]] = {}
        #: Lookups answered from the memo, and rows converted: for tests and the benchmark.
        self.hits = 0
        self.misses = 0

    def flow_bytes(self, row: Sequence[Any]) -> bytes:
        """The Flow of `row`, serialized."""
        field = self.flow_field(row)
        return field[_field_header_size(field) :]

    def flow_field(self, row: Sequence[Any]) -> bytes:
        """The Flow of `row` as field 1 of a response."""
        key = row if type(row) is tuple else tuple(row)
        entry = self._fields.get(key[0])
        if entry is not None and entry[0] == key:
            self.hits += 1
            return entry[1]
        return self._convert(key)

    def flows_field(self, rows: Iterable[Sequence[Any]]) -> bytes:
        """The Flows of `rows`, in order, as the repeated field 1 of a response (a page)."""
        get = self._fields.get
        fields: list[bytes] = []
        append = fields.append
        misses = self.misses
        for row in rows:
            key = row if type(row) is tuple else tuple(row)  # the driver's rows are tuples
            entry = get(key[0])
            if entry is not None and entry[0] == key:
                append(entry[1])
            else:
                append(self._convert(key))
        self.hits += len(fields) - (self.misses - misses)
        return b"".join(fields)

    def _convert(self, key: tuple[Any, ...]) -> bytes:
        self.misses += 1
        message = flow_pb2.Flow()
        fill_flow(message, key)
        field = message_field(1, message.SerializeToString())
        flow_id = key[0]
        if flow_id not in self._fields and len(self._fields) >= self._size:
            del self._fields[next(iter(self._fields))]
        self._fields[flow_id] = (key, field)
        return field

    def __len__(self) -> int:
        return len(self._fields)


def _field_header_size(field: bytes) -> int:
    """The bytes before a field's payload: its tag (one, for field 1) and its length (a varint)."""
    size = 2
    while field[size - 1] & 0x80:  # a varint's last byte has the high bit clear
        size += 1
    return size


def fill_flows(messages: Any, rows: Iterable[Sequence[Any]]) -> None:
    """Append a Flow per row to a repeated field, built in place."""
    add = messages.add
    for row in rows:
        fill_flow(add(), row)


def set_timestamp(target: timestamp_pb2.Timestamp, stored: str | datetime) -> None:
    """A stored UTC time into a Timestamp, with integer arithmetic (no float rounding)."""
    seconds, micros = epoch_parts(stored)
    target.seconds = seconds
    target.nanos = micros * 1000


def epoch_parts(stored: str | datetime) -> tuple[int, int]:
    """A stored UTC time as whole seconds since the epoch and microseconds."""
    if isinstance(stored, str):
        delta = datetime.fromisoformat(stored) - _EPOCH
    elif stored.tzinfo is None:
        delta = stored - _EPOCH
    else:
        delta = stored - _EPOCH_UTC
    return delta.days * 86_400 + delta.seconds, delta.microseconds
