"""Hypothesis strategies for any request message, built from its descriptor, and raw bytes.

Used by tests/test_fuzz.py. `messages(descriptor)` walks the fields
recursively, so a field added to a `.proto` is fuzzed without a change here.
Values mix hostile ones (NUL, odd unicode, numbers at their extremes, unknown
enum numbers, out-of-range timestamps, empty `Value`s) with valid ones (the
ids of the seeded rows, state types, update paths), so that requests get past
validation often enough to reach the database. Lists stay at 50 items or
fewer and strings at 2,000 characters or fewer; `oversized` is the one
strategy that goes beyond.
"""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from google.protobuf import field_mask_pb2, struct_pb2, timestamp_pb2
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message_factory import GetMessageClass
from hypothesis import strategies as st

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from google.protobuf.descriptor import Descriptor
    from google.protobuf.message import Message

MAX_ITEMS = 50
MAX_TEXT = 2_000
#: Fields set per message: more only makes the request fail validation sooner.
MAX_FIELDS = 4

#: Rows the fuzz test seeds, so that generated ids and names select something.
FLOW_IDS = tuple(uuid.UUID(f"f1000000-0000-4000-8000-{n:012x}") for n in range(3))
RUN_IDS = tuple(uuid.UUID(f"f2000000-0000-4000-8000-{n:012x}") for n in range(3))
TASK_RUN_IDS = tuple(uuid.UUID(f"f3000000-0000-4000-8000-{n:012x}") for n in range(2))
DEPLOYMENT_IDS = tuple(uuid.UUID(f"f4000000-0000-4000-8000-{n:012x}") for n in range(2))
POOL_IDS = tuple(uuid.UUID(f"f5000000-0000-4000-8000-{n:012x}") for n in range(2))
SEEDED_NAMES = ("etl", "ETL", "ünï with space")

_ids = [*FLOW_IDS, *RUN_IDS, *TASK_RUN_IDS, *DEPLOYMENT_IDS, *POOL_IDS]
#: Texts that mean something somewhere: every accepted UUID form, state types,
#: update paths, like wildcards and escapes, SQL and JSON syntax, odd unicode.
MEANINGFUL = (
    *(str(i) for i in _ids),
    str(FLOW_IDS[0]).upper(),
    FLOW_IDS[0].hex,
    f"{{{FLOW_IDS[1]}}}",
    f"urn:uuid:{FLOW_IDS[2]}",
    *SEEDED_NAMES,
    "ÜNÏ",
    "COMPLETED",
    "FAILED",
    "completed",
    "SCHEDULED",
    "tags",
    "*",
    "name",
    "labels",
    "tags.x",
    "",
    " ",
    "%",
    "_",
    "%%",
    "\\",
    "\\%",
    "a\\",
    "[",
    "'",
    '"',
    "' OR 1=1 --",
    "[]",
    '["db"]',
    "null",
    "\x00",
    "a\x00b",
    "\u202e",
    "\ufeff",
    "\u0130",
    "ß",
    "ǅ",
    "𝔘𝔫𝔦",
    "\U0010ffff",
    "\ufffd",
    "e\u0301",
    "\n\t\r",
)

_meaningful = st.sampled_from(MEANINGFUL)
_short_text = st.text(max_size=20)
#: Mostly short; a long one now and then.
texts: st.SearchStrategy[str] = st.one_of(
    _meaningful, _meaningful, _short_text, _short_text, st.text(max_size=MAX_TEXT)
)

INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
UINT32 = (0, 2**32 - 1)
UINT64 = (0, 2**64 - 1)


def _integers(low: int, high: int) -> st.SearchStrategy[int]:
    edges = sorted(
        n for n in {low, high, low + 1, high - 1, 0, 1, -1, 200, 201} if low <= n <= high
    )
    return st.one_of(st.sampled_from(edges), st.integers(low, high))


doubles: st.SearchStrategy[float] = st.one_of(
    st.sampled_from([0.0, -0.0, float("inf"), float("-inf"), float("nan"), 2.0**53, 2.0**53 + 2]),
    st.floats(),
)

# --- well-known types --------------------------------------------------------------

#: 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z, the valid range, and one beyond.
_SECONDS_EDGES = (-62_135_596_800, -62_135_596_801, 253_402_300_799, 253_402_300_800, 0)


@st.composite
def timestamps(draw: st.DrawFn) -> timestamp_pb2.Timestamp:
    """Mostly valid instants (some near the range's edges), some out of range."""
    seconds = draw(
        st.one_of(
            st.sampled_from(_SECONDS_EDGES),
            st.integers(1_700_000_000, 1_900_000_000),
            _integers(*INT64),
        )
    )
    nanos = draw(st.one_of(st.sampled_from([0, 999_999_999, 10**9, -1]), _integers(*INT32)))
    return timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos)


def _fill_value(value: struct_pb2.Value, item: Any) -> None:
    """Set a Value from a JSON-like item; `...` leaves it with no kind at all."""
    if item is ...:
        return
    if item is None:
        value.null_value = struct_pb2.NULL_VALUE
    elif isinstance(item, bool):
        value.bool_value = item
    elif isinstance(item, float):
        value.number_value = item
    elif isinstance(item, str):
        value.string_value = item
    elif isinstance(item, list):
        value.list_value.SetInParent()
        for element in item:
            _fill_value(value.list_value.values.add(), element)
    else:
        value.struct_value.SetInParent()
        for key, element in item.items():
            _fill_value(value.struct_value.fields[key], element)


_value_items: st.SearchStrategy[Any] = st.recursive(
    st.one_of(st.just(...), st.none(), st.booleans(), doubles, texts),
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(texts, inner, max_size=5)),
    max_leaves=10,
)
#: `any` lists are strings nearly always; other kinds must be refused, not crash.
_list_items = st.one_of(texts, texts, texts, _value_items)


@st.composite
def list_values(draw: st.DrawFn) -> struct_pb2.ListValue:
    message = struct_pb2.ListValue()
    for item in draw(_lists(_list_items)):
        _fill_value(message.values.add(), item)
    return message


@st.composite
def structs(draw: st.DrawFn) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    entries = st.one_of(
        st.dictionaries(texts, _value_items, max_size=3),
        st.dictionaries(texts, _value_items, max_size=MAX_ITEMS),
    )
    for key, item in draw(entries).items():
        _fill_value(message.fields[key], item)
    return message


@st.composite
def values(draw: st.DrawFn) -> struct_pb2.Value:
    message = struct_pb2.Value()
    _fill_value(message, draw(_value_items))
    return message


@st.composite
def field_masks(draw: st.DrawFn) -> field_mask_pb2.FieldMask:
    paths = st.one_of(st.sampled_from(["tags", "*", "name", "labels", "id", ""]), texts)
    return field_mask_pb2.FieldMask(paths=draw(st.lists(paths, max_size=5)))


WELL_KNOWN: dict[str, st.SearchStrategy[Any]] = {
    "google.protobuf.Timestamp": timestamps(),
    "google.protobuf.Struct": structs(),
    "google.protobuf.ListValue": list_values(),
    "google.protobuf.Value": values(),
    "google.protobuf.FieldMask": field_masks(),
}

# --- any message ---------------------------------------------------------------------

_SCALARS: dict[int, st.SearchStrategy[Any]] = {
    FieldDescriptor.TYPE_STRING: texts,
    FieldDescriptor.TYPE_BYTES: st.binary(max_size=64),
    FieldDescriptor.TYPE_BOOL: st.booleans(),
    FieldDescriptor.TYPE_DOUBLE: doubles,
    FieldDescriptor.TYPE_FLOAT: st.floats(width=32),
    FieldDescriptor.TYPE_INT32: _integers(*INT32),
    FieldDescriptor.TYPE_SINT32: _integers(*INT32),
    FieldDescriptor.TYPE_SFIXED32: _integers(*INT32),
    FieldDescriptor.TYPE_INT64: _integers(*INT64),
    FieldDescriptor.TYPE_SINT64: _integers(*INT64),
    FieldDescriptor.TYPE_SFIXED64: _integers(*INT64),
    FieldDescriptor.TYPE_UINT32: _integers(*UINT32),
    FieldDescriptor.TYPE_FIXED32: _integers(*UINT32),
    FieldDescriptor.TYPE_UINT64: _integers(*UINT64),
    FieldDescriptor.TYPE_FIXED64: _integers(*UINT64),
}


def _lists(elements: st.SearchStrategy[Any]) -> st.SearchStrategy[list[Any]]:
    """Mostly a few items; up to MAX_ITEMS now and then."""
    return st.one_of(st.lists(elements, max_size=3), st.lists(elements, max_size=MAX_ITEMS))


def _single(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    """One value of the field's type."""
    if field.message_type is not None:
        return messages(field.message_type)
    if field.enum_type is not None:
        known = [value.number for value in field.enum_type.values]
        return st.one_of(st.sampled_from(known), _integers(*INT32))  # proto3 enums are open
    return _SCALARS[field.type]


def _assign(message: Message, field: FieldDescriptor, value: Any) -> None:
    if field.is_repeated:
        target = getattr(message, field.name)
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            for item in value:
                target.add().CopyFrom(item)
        else:
            target.extend(value)
    elif field.type == FieldDescriptor.TYPE_MESSAGE:
        child = getattr(message, field.name)
        child.SetInParent()  # present even when empty: `deployments: {}` means something
        child.CopyFrom(value)
    else:
        setattr(message, field.name, value)


@functools.cache
def messages(descriptor: Descriptor) -> st.SearchStrategy[Any]:
    """Instances of the message with any subset of its fields set, each to any value."""
    if descriptor.full_name in WELL_KNOWN:
        return WELL_KNOWN[descriptor.full_name]
    cls = GetMessageClass(descriptor)
    fields = list(descriptor.fields)
    if not fields:
        return st.just(cls())
    values_for = {
        field.name: _lists(_single(field)) if field.is_repeated else _single(field)
        for field in fields
    }

    @st.composite
    def build(draw: st.DrawFn) -> Message:
        message: Message = cls()
        chosen = draw(st.lists(st.sampled_from(fields), unique=True, max_size=MAX_FIELDS))
        for field in chosen:
            _assign(message, field, draw(values_for[field.name]))
        return message

    return build()


# --- paths to fields ----------------------------------------------------------------------

Path = tuple[FieldDescriptor, ...]


def paths_to(
    descriptor: Descriptor, wanted: Callable[[FieldDescriptor], bool], *, into_wkt: bool = True
) -> list[Path]:
    """Every path from the message to a field that is `wanted`, entering no type twice
    (nor, unless `into_wkt`, a well-known type such as Struct)."""

    def walk(message: Descriptor, seen: frozenset[str]) -> Iterator[Path]:
        for field in message.fields:
            if wanted(field):
                yield (field,)
            child = field.message_type
            if child is None or (not into_wkt and child.full_name.startswith("google.protobuf.")):
                continue
            if child.full_name not in seen:
                for rest in walk(child, seen | {child.full_name}):
                    yield (field, *rest)

    return list(walk(descriptor, frozenset({descriptor.full_name})))


def _is_list(field: FieldDescriptor) -> bool:
    if field.message_type is not None:
        return field.message_type.full_name == "google.protobuf.ListValue"
    return field.is_repeated and field.type == FieldDescriptor.TYPE_STRING


def _is_string(field: FieldDescriptor) -> bool:
    return not field.is_repeated and field.type == FieldDescriptor.TYPE_STRING


def _is_struct(field: FieldDescriptor) -> bool:
    kind = field.message_type.full_name if field.message_type is not None else ""
    return kind == "google.protobuf.Struct"


def _is_structured(field: FieldDescriptor) -> bool:
    """A Struct, ListValue or Value: what can nest without bound."""
    kind = field.message_type.full_name if field.message_type is not None else ""
    return kind in {"google.protobuf.Struct", "google.protobuf.ListValue", "google.protobuf.Value"}


# --- malformed bytes ----------------------------------------------------------------------


def _varint(number: int) -> bytes:
    out = bytearray()
    while True:
        low, number = number & 0x7F, number >> 7
        out.append(low | (0x80 if number else 0))
        if not number:
            return bytes(out)


def _delimited(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _wrap(path: Path, payload: bytes) -> bytes:
    """`payload` as the encoded last field of `path`, inside its parents' encodings."""
    for field in reversed(path[:-1]):
        payload = _delimited(field.number, payload)
    return payload


def _nested_value(depth: int) -> bytes:
    """A Value holding a list holding a list … `depth` levels down to a string."""
    payload = _delimited(3, b"x")  # Value.string_value
    for _ in range(depth):
        payload = _delimited(6, _delimited(1, payload))  # Value.list_value.values
    return payload


def _nested(field: FieldDescriptor, depth: int) -> bytes:
    value = _nested_value(depth)
    assert field.message_type is not None
    kind = field.message_type.full_name
    if kind == "google.protobuf.Value":
        return _delimited(field.number, value)
    if kind == "google.protobuf.ListValue":
        return _delimited(field.number, _delimited(1, value))
    entry = _delimited(1, b"k") + _delimited(2, value)  # Struct.fields: a map entry
    return _delimited(field.number, _delimited(1, entry))


INVALID_UTF8 = (b"\xff", b"\xc0\x80", b"\xed\xa0\x80", b"abc\xe2\x82", b"\xf4\x90\x80\x80")


@st.composite
def invalid_utf8(draw: st.DrawFn, descriptor: Descriptor) -> bytes:
    """A string field, somewhere in the message, holding bytes that are not UTF-8."""
    path = draw(st.sampled_from(paths_to(descriptor, _is_string)))
    bad = draw(st.sampled_from(INVALID_UTF8))
    return _wrap(path, _delimited(path[-1].number, bad))


@st.composite
def deeply_nested(draw: st.DrawFn, descriptor: Descriptor) -> bytes:
    """Values nested around protobuf's recursion limit (100), or far beyond it."""
    path = draw(st.sampled_from(paths_to(descriptor, _is_structured)))
    depth = draw(st.one_of(st.integers(90, 110), st.integers(1_000, 10_000)))
    return _wrap(path, _nested(path[-1], depth))


@st.composite
def mutated(draw: st.DrawFn, descriptor: Descriptor) -> bytes:
    """A valid encoding with bytes flipped, cut, inserted, or unknown fields appended."""
    data = bytearray(draw(messages(descriptor)).SerializeToString())
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        change = draw(st.sampled_from(["flip", "cut", "insert", "field"]))
        if change == "flip" and at < len(data):
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif change == "cut":
            del data[at:]
        elif change == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        else:
            number, wire_type = draw(st.integers(1, 2**29 - 1)), draw(st.integers(0, 7))
            data += _varint(number << 3 | wire_type) + draw(st.binary(max_size=12))
    return bytes(data)


def malformed(descriptor: Descriptor) -> st.SearchStrategy[bytes]:
    """Bytes that are probably not a valid message of this type (some are, by chance)."""
    options = [st.binary(max_size=256), mutated(descriptor)]
    if paths_to(descriptor, _is_string):
        options.append(invalid_utf8(descriptor))
    if paths_to(descriptor, _is_structured):
        options.append(deeply_nested(descriptor))
    return st.one_of(options)


# --- oversized --------------------------------------------------------------------------

#: What an oversized value repeats: some valid where ids, state types or tags are
#: expected; `%`, `_` and `\\` matter to `like`, `é` takes two bytes.
_UNITS = (str(FLOW_IDS[0]), "COMPLETED", "db", "a", "", "%", "_%", "é", "\\")


def _set_at(message: Message, path: Path, value: Any) -> None:
    for field in path[:-1]:
        child = getattr(message, field.name)
        if field.is_repeated:  # a list of messages (BatchCreateFlows): into its first
            child = child[0] if len(child) else child.add()
        message = child
    last = path[-1]
    if last.message_type is not None and last.message_type.full_name == "google.protobuf.ListValue":
        getattr(message, last.name).SetInParent()
        getattr(message, last.name).extend(value)
    elif last.message_type is not None:  # a Struct
        getattr(message, last.name).SetInParent()
        getattr(message, last.name).update(value)
    elif last.is_repeated:
        getattr(message, last.name).extend(value)
    else:
        setattr(message, last.name, value)


@dataclass(frozen=True)
class Oversized:
    """A small generated request and how to blow up one of its fields (a readable example)."""

    base: bytes
    path: str  # dotted field names
    size: int
    unit: str

    def build(self, descriptor: Descriptor) -> Message:
        message: Message = GetMessageClass(descriptor).FromString(self.base)
        fields: list[FieldDescriptor] = []
        for name in self.path.split("."):
            parent = fields[-1].message_type if fields else descriptor
            assert parent is not None
            fields.append(parent.fields_by_name[name])
        last = fields[-1]
        value: Any
        if _is_struct(last):
            value = {f"{self.unit}{n}": n for n in range(self.size)}
        elif _is_list(last):
            value = [self.unit if n % 3 else f"{self.unit}{n}" for n in range(self.size)]
        else:
            value = self.unit * self.size
        _set_at(message, tuple(fields), value)
        return message


@st.composite
def oversized(draw: st.DrawFn, descriptor: Descriptor) -> Oversized:
    """A generated message with one list, string or Struct far larger than the rest."""
    targets = [
        path
        for wanted in (_is_list, _is_string, _is_struct)
        for path in paths_to(descriptor, wanted, into_wkt=False)
    ]
    path = draw(st.sampled_from(targets))
    size = draw(st.one_of(st.integers(1_001, 5_000), st.integers(10_000, 60_000)))
    if _is_string(path[-1]) and draw(st.booleans()):
        size = draw(st.sampled_from([1_000_000, 5 * 2**20]))  # the message may pass 4 MiB
    return Oversized(
        base=draw(messages(descriptor)).SerializeToString(),
        path=".".join(field.name for field in path),
        size=size,
        unit=draw(st.sampled_from(_UNITS)),
    )
