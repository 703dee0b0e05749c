"""The wire formats of the Connect protocol and of gRPC-Web, as pure functions.

Both carry protobuf messages over plain HTTP/1.1 or HTTP/2 (see
docs/http.md for the exact shapes):

- Connect unary: the body is the message (binary or JSON), errors are an
  HTTP status with a JSON body `{"code", "message", "details"}`.
- Connect server streaming and gRPC-Web: the body is a sequence of envelopes
  (1 flag byte, 4 length bytes, the message). Connect ends with an envelope
  flagged 0x02 holding `{"error", "metadata"}` as JSON; gRPC-Web ends with one
  flagged 0x80 holding the trailers (`grpc-status`, `grpc-message`,
  `grpc-status-details-bin`) as HTTP header lines.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import json
import struct
import urllib.parse
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf import descriptor_pool, json_format, message_factory
from google.rpc import status_pb2

from flowservice_server.errors import MalformedRequestError

if TYPE_CHECKING:
    from collections.abc import Iterable

    from google.protobuf.message import Message

    from flowservice_server.inprocess import Failure

#: Trailing metadata as HTTP header text: (lower-case key, value) pairs.
Trailers = tuple[tuple[str, str], ...]

COMPRESSED = 0x01
END_STREAM = 0x02  # Connect
TRAILERS = 0x80  # gRPC-Web
_HEADER = struct.Struct(">BI")

#: Connect's names for gRPC's codes ("canceled" is spelled the American way).
CONNECT_CODES: dict[grpc.StatusCode, str] = {
    code: "canceled" if code is grpc.StatusCode.CANCELLED else code.name.lower()
    for code in grpc.StatusCode
    if code is not grpc.StatusCode.OK
}

#: The HTTP status of a failed Connect unary call, by code.
HTTP_STATUS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}


class ProtocolError(Exception):
    """The HTTP request is not a well-formed call; `status` is the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# --- codecs ------------------------------------------------------------------------


@dataclass(frozen=True)
class Codec:
    """Messages as protobuf binary ("proto") or as protobuf's JSON mapping ("json")."""

    name: str

    def to_wire(self, data: bytes, message_class: type[Message]) -> bytes | MalformedRequestError:
        """The request as protobuf bytes for the handler's deserializer, or why it is not one."""
        if self.name == "proto":
            return data
        message = message_class()
        try:
            # An unknown field is refused, not ignored: in JSON it is far more often a
            # misspelled name (a filter silently dropped) than a newer client's field.
            json_format.Parse(data or b"{}", message)
        except (json_format.ParseError, UnicodeDecodeError) as error:
            return MalformedRequestError(f"the request is not valid JSON for this method: {error}")
        return message.SerializeToString()

    def from_wire(self, data: bytes, message_class: type[Message]) -> bytes:
        """A response's protobuf bytes in this codec."""
        if self.name == "proto":
            return data
        message = message_class.FromString(data)
        return json_dumps(json_format.MessageToDict(message))


CODECS = {"proto": Codec("proto"), "json": Codec("json")}


def message_class(full_name: str) -> type[Message]:
    descriptor = descriptor_pool.Default().FindMessageTypeByName(full_name)
    return message_factory.GetMessageClass(descriptor)


def json_dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


# --- envelopes ---------------------------------------------------------------------


def envelope(data: bytes, flags: int = 0) -> bytes:
    return _HEADER.pack(flags, len(data)) + data


def single_message(body: bytes, compression: str) -> bytes:
    """The one request message of a streaming call's body (one envelope)."""
    if len(body) < _HEADER.size:
        raise ProtocolError(400, "the request body must be one enveloped message")
    flags, length = _HEADER.unpack_from(body)
    data = body[_HEADER.size : _HEADER.size + length]
    if len(data) != length or len(body) != _HEADER.size + length:
        raise ProtocolError(400, "the request body must be exactly one enveloped message")
    if flags & COMPRESSED:
        return decompress(data, compression)
    return data


def decompress(data: bytes, compression: str) -> bytes:
    if compression in ("", "identity"):
        return data
    if compression == "gzip":
        try:
            return gzip.decompress(data)
        except (OSError, EOFError) as error:
            raise ProtocolError(400, f"the gzip request body is corrupt: {error}") from None
    raise ProtocolError(415, f"unsupported compression {compression!r}: use gzip or identity")


# --- deadlines ---------------------------------------------------------------------

_GRPC_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}


def connect_timeout(value: str) -> float:
    """`connect-timeout-ms`: at most 10 digits of milliseconds."""
    if not value.isdigit() or len(value) > 10:
        raise ProtocolError(400, f"connect-timeout-ms {value!r} is not 1 to 10 digits")
    return int(value) / 1000


def grpc_timeout(value: str) -> float:
    """`grpc-timeout`: at most 8 digits and a unit (H, M, S, m, u, n)."""
    digits, unit = value[:-1], value[-1:]
    if not digits.isdigit() or len(digits) > 8 or unit not in _GRPC_UNITS:
        raise ProtocolError(400, f"grpc-timeout {value!r} is not up to 8 digits and a unit")
    return int(digits) * _GRPC_UNITS[unit]


# --- errors ------------------------------------------------------------------------


def _unpadded(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def connect_error(failure: Failure) -> dict[str, Any]:
    """The Connect error object: code, message and each google.rpc detail with `debug`."""
    error: dict[str, Any] = {"code": CONNECT_CODES[failure.code], "message": failure.message}
    if failure.status_details:
        details = []
        for packed in status_pb2.Status.FromString(failure.status_details).details:
            type_name = packed.type_url.rpartition("/")[2]
            detail: dict[str, Any] = {"type": type_name, "value": _unpadded(packed.value)}
            with contextlib.suppress(KeyError):  # a type unknown here has no debug form
                detail["debug"] = json_format.MessageToDict(
                    message_class(type_name).FromString(packed.value)
                )
            details.append(detail)
        if details:
            error["details"] = details
    return error


def connect_end_stream(failure: Failure | None, trailers: Trailers = ()) -> bytes:
    """Connect's last envelope of a stream: the error, if any, and the trailing metadata."""
    end: dict[str, Any] = {} if failure is None else {"error": connect_error(failure)}
    if trailers:
        metadata: dict[str, list[str]] = {}
        for key, value in trailers:
            metadata.setdefault(key, []).append(value)
        end["metadata"] = metadata
    return envelope(json_dumps(end), END_STREAM)


def _percent_encoded(message: str) -> str:
    """grpc-message: printable ASCII as is, everything else (and %) percent-encoded."""
    return "".join(
        c if " " <= c <= "~" and c != "%" else urllib.parse.quote(c, safe="") for c in message
    )


def grpc_web_trailers(failure: Failure | None, trailers: Trailers = ()) -> bytes:
    """gRPC-Web's trailers frame: the status and trailing metadata, as gRPC sends them."""
    lines = [f"grpc-status: {0 if failure is None else failure.code.value[0]}"]
    if failure is not None:
        lines.append(f"grpc-message: {_percent_encoded(failure.message)}")
        if failure.status_details:
            lines.append(f"grpc-status-details-bin: {_unpadded(failure.status_details)}")
    lines += [f"{key}: {value}" for key, value in trailers]
    return envelope(("\r\n".join(lines) + "\r\n").encode(), TRAILERS)


def trailers_of(metadata: Iterable[tuple[str, str | bytes]]) -> Trailers:
    """A call's trailing metadata as header text (`-bin` values base64), status details aside:
    they travel in the error itself."""
    return tuple(
        (key, _unpadded(value) if isinstance(value, bytes) else value)
        for key, value in metadata
        if key != "grpc-status-details-bin"
    )
