"""Responses already in wire form: a servicer may return bytes it encoded itself.

A response made of flows the memo (`convert.FlowMemo`) already holds serialized
is cheaper to join as bytes than to rebuild as a message and serialize again.
Such a response is an `Encoded`; the response serializer every handler gets
(`interceptors.ErrorStatusInterceptor`) passes it through as it is and
serializes anything else as before, so `handler.response_serializer(value)`
gives the wire bytes of whatever a servicer method returns.

The bytes are the message's own encoding: protobuf fields are tag, length,
payload, and a message's encoding followed by another's is their merge, so a
repeated field's items can be joined and the other fields appended.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar, cast

if TYPE_CHECKING:
    from collections.abc import Callable

M = TypeVar("M")

#: The wire type of a length-delimited field (a message, a string, bytes).
_LENGTH_DELIMITED = 2


class Encoded:
    """A response message, already serialized (grpc wants exactly `bytes` back: no subclass)."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


def as_response(response_type: type[M], data: bytes) -> M:
    """`data`, the encoding of a `response_type` message, returned in its place.

    Typed as the message so the servicer keeps its generated signature; only
    the response serializer ever sees it, and it passes it through.
    """
    return cast("M", Encoded(data))


def message_field(number: int, payload: bytes) -> bytes:
    """One message field: its tag, its length, the message's encoding."""
    return _varint(number << 3 | _LENGTH_DELIMITED) + _varint(len(payload)) + payload


def passing_encoded(serializer: Callable[[Any], bytes] | None) -> Callable[[Any], bytes] | None:
    """`serializer`, except that an `Encoded` response is already its own wire form."""
    if serializer is None:
        return None

    def serialize(response: Any) -> bytes:
        if type(response) is Encoded:
            return response.data
        return serializer(response)

    return serialize


def _varint(value: int) -> bytes:
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)
