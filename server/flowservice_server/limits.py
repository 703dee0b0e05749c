"""Bounds on the size of every request, checked as it is decoded, before any other work.

Prefect sets no bounds; without them a single request can hold a 100,000-item
list or a 50,000-character pattern, cost seconds of CPU and hundreds of MB,
and build SQL past the database's own limits (SQLite's expression depth and
LIKE pattern length, PostgreSQL's 32,767 bound parameters). These bounds are
far above any real filter and keep every legal request's SQL within those
limits. A request past one is INVALID_ARGUMENT with a field violation that
names the field and the bound; its contents are not examined further.

Nesting needs no bound of its own: filter messages do not nest in each other,
and a list or object inside a label value or a list item is refused as the
wrong type by validation (protobuf's decoder stops at 100 levels before that).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from google.protobuf import struct_pb2
from google.protobuf.descriptor import FieldDescriptor

from flowservice_server.errors import FieldViolation

if TYPE_CHECKING:
    from google.protobuf.message import Message

#: Items in one list: a repeated field, an `any` list, or the keys of `labels`.
MAX_ITEMS = 1_000
#: Items in all the lists of one request together.
MAX_TOTAL_ITEMS = 10_000
#: Characters in one string: a name, tag, id, list item, pattern, label key or
#: value. (A `like` pattern of this many 4-byte characters stays below
#: SQLite's 50,000-byte bound on LIKE patterns.)
MAX_TEXT_LENGTH = 10_000


#: The fewest bytes of a request that can exceed a bound: every list item and
#: every character of a string takes at least one byte of the encoding, so a
#: shorter request is within all of them and need not be walked.
SMALLEST_EXCESSIVE_REQUEST = min(MAX_ITEMS, MAX_TEXT_LENGTH)


def could_exceed(encoded_size: int) -> bool:
    """Whether a request of this many bytes can exceed any bound (see above)."""
    return encoded_size >= SMALLEST_EXCESSIVE_REQUEST


def violations_of(request: Message) -> list[FieldViolation]:
    """Every bound the request exceeds, by field path; empty when it is within all of them."""
    walk = _Walk()
    walk.message(request, "")
    return walk.violations


def map_key_path(prefix: str, key: str) -> str:
    """The path of one map entry (AIP-161: backticks around keys that are not identifiers)."""
    return f"{prefix}.{key}" if key.isidentifier() else f"{prefix}.`{key}`"


class _Walk:
    def __init__(self) -> None:
        self.violations: list[FieldViolation] = []
        self.total_items = 0

    def message(self, message: Message, path: str) -> None:
        if isinstance(message, struct_pb2.ListValue):
            self.list_value(message, path)
            return
        if isinstance(message, struct_pb2.Struct):
            self.struct(message, path)
            return
        for field, value in message.ListFields():
            field_path = f"{path}.{field.name}" if path else field.name
            if field.is_repeated:
                if self.count(len(value), field_path):
                    for index, item in enumerate(value):
                        self.item(field, item, f"{field_path}[{index}]")
            else:
                self.item(field, value, field_path)

    def item(self, field: FieldDescriptor, value: object, path: str) -> None:
        if field.type == FieldDescriptor.TYPE_STRING:
            assert isinstance(value, str)
            self.text(value, path, MAX_TEXT_LENGTH)
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            self.message(value, path)  # type: ignore[arg-type]  # a message, by its type

    def list_value(self, values: struct_pb2.ListValue, path: str) -> None:
        if self.count(len(values.values), path):
            for index, value in enumerate(values.values):
                if value.WhichOneof("kind") == "string_value":
                    self.text(value.string_value, f"{path}[{index}]", MAX_TEXT_LENGTH)

    def struct(self, struct: struct_pb2.Struct, path: str) -> None:
        if not self.count(len(struct.fields), path):
            return
        for key, value in struct.fields.items():
            key_path = map_key_path(path, key)
            if len(key) > MAX_TEXT_LENGTH:
                self.too_long(map_key_path(path, key[:40] + "…"), len(key), MAX_TEXT_LENGTH)
            elif value.WhichOneof("kind") == "string_value":
                self.text(value.string_value, key_path, MAX_TEXT_LENGTH)

    def count(self, items: int, path: str) -> bool:
        """Count a list's items; False when it is too long to look into."""
        if items > MAX_ITEMS:
            self.violations.append(
                FieldViolation(path, f"holds {items:,} items; at most {MAX_ITEMS:,} are allowed")
            )
            return False
        before = self.total_items
        self.total_items += items
        if before <= MAX_TOTAL_ITEMS < self.total_items:
            self.violations.append(
                FieldViolation(
                    path,
                    f"brings the request's lists to more than {MAX_TOTAL_ITEMS:,} items "
                    "together, the most one request may hold",
                )
            )
        return True

    def text(self, value: str, path: str, limit: int) -> None:
        if len(value) > limit:
            self.too_long(path, len(value), limit)

    def too_long(self, path: str, length: int, limit: int) -> None:
        self.violations.append(
            FieldViolation(path, f"is {length:,} characters long; at most {limit:,} are allowed")
        )
