"""Parsers for request values, each raising ValueError with a message a person can act on.

They accept exactly what Prefect 3's API accepts (names, state types and the
UUID forms pydantic takes), so that a request valid for Prefect is valid here.
The rules are in docs/semantics.md#names and docs/semantics.md#state-filters.
"""

from __future__ import annotations

import math
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from flowservice_server.db.types import STATE_TYPES
from flowservice_server.errors import quoted
from flowservice_server.limits import map_key_path

if TYPE_CHECKING:
    from google.protobuf import struct_pb2, timestamp_pb2

# --- UUIDs -----------------------------------------------------------------------

_HEX = "[0-9a-fA-F]"
_HYPHENATED = f"{_HEX}{{8}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{12}}"
#: Hyphenated or 32 hex digits in either case, `{hyphenated}`, `urn:uuid:hyphenated`.
_UUID_FORMS = re.compile(rf"{_HYPHENATED}|{_HEX}{{32}}|\{{{_HYPHENATED}\}}|urn:uuid:{_HYPHENATED}")


def parse_uuid(text: str) -> uuid.UUID:
    if not _UUID_FORMS.fullmatch(text):
        raise ValueError(
            f"{quoted(text)} is not a UUID: write 32 hex digits, optionally hyphenated 8-4-4-4-12 "
            "(e.g. 3f2f054e-3137-49b6-a5a3-0f1d6e7f2a10)"
        )
    return uuid.UUID(text)


# --- names -----------------------------------------------------------------------

BANNED_NAME_CHARACTERS = "/%&><"


def parse_flow_name(name: str) -> str:
    """Prefect's `Name`: non-empty, none of `/ % & > <`; kept exactly as given."""
    if not name:
        raise ValueError("must not be empty")
    banned = sorted({c for c in name if c in BANNED_NAME_CHARACTERS})
    if banned:
        raise ValueError(
            f"must not contain {', '.join(repr(c) for c in banned)} "
            f"(the characters {' '.join(BANNED_NAME_CHARACTERS)} are not allowed in names)"
        )
    return name


# --- state types -----------------------------------------------------------------


def parse_state_type(text: str) -> str:
    if text not in STATE_TYPES:
        raise ValueError(
            f"unknown state type {quoted(text)}; expected one of {', '.join(STATE_TYPES)}"
        )
    return text


# --- labels ----------------------------------------------------------------------

LabelValue = bool | int | float | str
#: Integers beyond this lose precision as a protobuf number (an IEEE double).
MAX_EXACT_INTEGER = 2**53


def parse_label_value(value: struct_pb2.Value) -> LabelValue:
    """A label value: bool, number or string; whole numbers are stored as integers."""
    kind = value.WhichOneof("kind")
    if kind == "bool_value":
        return value.bool_value
    if kind == "string_value":
        return value.string_value
    if kind == "number_value":
        number = value.number_value
        if not math.isfinite(number):
            raise ValueError("must be a finite number")
        if number.is_integer() and abs(number) <= MAX_EXACT_INTEGER:
            return int(number)
        return number
    shown = {"null_value": "null", "list_value": "a list", "struct_value": "an object"}
    raise ValueError(
        f"must be a boolean, a number or a string, not {shown.get(kind or '', 'empty')}"
    )


def label_path(key: str) -> str:
    """The field path of one label (AIP-161: backticks around keys that are not identifiers)."""
    return map_key_path("labels", key)


# --- timestamps ------------------------------------------------------------------

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MIN_SECONDS = -62_135_596_800  # 0001-01-01T00:00:00Z
_MAX_SECONDS = 253_402_300_799  # 9999-12-31T23:59:59Z


def parse_timestamp(value: timestamp_pb2.Timestamp) -> datetime:
    """A UTC datetime, cut down to the microseconds the database keeps.

    Prefect's parser drops digits below the microsecond for every bound, so
    an inclusive `after: 12:00:00.0000001` takes in 12:00:00; so does this.
    """
    if not _MIN_SECONDS <= value.seconds <= _MAX_SECONDS or not 0 <= value.nanos < 10**9:
        raise ValueError(
            f"not a valid timestamp (seconds={value.seconds}, nanos={value.nanos}); "
            "it must lie between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999999999Z"
        )
    return _EPOCH + timedelta(seconds=value.seconds, microseconds=value.nanos // 1000)
