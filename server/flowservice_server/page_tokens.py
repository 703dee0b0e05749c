"""ReadFlows page tokens: a position in sort order, bound to the request it was made for.

A token is URL-safe base64 without padding of these bytes:

    version (1) | fingerprint (16) | id (16) | key (rest) | mac (16)

* version: `VERSION`; a token of any other version is refused.
* fingerprint: the first 16 bytes of SHA-256 over the request's other fields
  (filters, sort, latest_flow_run: everything but `limit`, `offset`,
  `page_token` and `include_total_size`), so a token is only accepted with
  the filters and sort it was made for.
* id and key: the last flow of the previous page; key is its name (UTF-8)
  for the name sorts, its `created` or `updated` instant (microseconds since
  the epoch, big-endian int64) for the time sorts.
* mac: HMAC-SHA256 of everything before it, cut to 16 bytes, with a fixed key
  that is in this file. It is tamper-evidence, not secrecy: it tells a
  damaged, truncated or hand-made token from one this server made. Nothing a
  token holds is secret (the caller has read that flow already), and a forged
  position would only start a page elsewhere in the same result.

The format is opaque to clients (the proto says it may change between
versions); a new format takes a new `VERSION`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import struct
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from flowservice.v1 import flow_service_pb2

VERSION = 1
#: Not a secret (see the module docstring): it makes the MAC an integrity check.
_MAC_KEY = b"flowservice.v1 ReadFlows page token; tamper-evidence, not secrecy"
_MAC_BYTES = 16
FINGERPRINT_BYTES = 16
_HEADER = struct.Struct(">B16s16s")  # version, fingerprint, id
_MICROS = struct.Struct(">q")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

NAME_SORTS = frozenset(
    {
        flow_service_pb2.FLOW_SORT_UNSPECIFIED,
        flow_service_pb2.FLOW_SORT_NAME_ASC,
        flow_service_pb2.FLOW_SORT_NAME_DESC,
    }
)

#: What a caller can do about a refused token.
_START_OVER = "or leave page_token empty to start again from the first page"


class PageTokenError(ValueError):
    """A token that cannot be used with this request; the message says what to do."""


@dataclass(frozen=True)
class Position:
    """The last flow of a page: its sort key (name or instant) and its id."""

    key: str | datetime
    flow_id: uuid.UUID


def fingerprint(request: flow_service_pb2.ReadFlowsRequest) -> bytes:
    """What a token is bound to: every field of the request but the page's own."""
    bound = flow_service_pb2.ReadFlowsRequest()
    bound.CopyFrom(request)
    for field in ("limit", "offset", "page_token", "include_total_size"):
        bound.ClearField(field)
    if bound.sort == flow_service_pb2.FLOW_SORT_UNSPECIFIED:  # the same order as NAME_ASC
        bound.sort = flow_service_pb2.FLOW_SORT_NAME_ASC
    digest = hashlib.sha256(bound.SerializeToString(deterministic=True)).digest()
    return digest[:FINGERPRINT_BYTES]


def encode(bound_to: bytes, position: Position) -> str:
    """The token for the page after `position`, for requests with fingerprint `bound_to`."""
    if isinstance(position.key, datetime):
        key = _MICROS.pack((position.key - _EPOCH) // timedelta(microseconds=1))
    else:
        key = position.key.encode()
    body = _HEADER.pack(VERSION, bound_to, position.flow_id.bytes) + key
    raw = body + _mac(body)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode(token: str, bound_to: bytes, sort: int) -> Position:
    """The position a token names; PageTokenError when it is not one for this request."""
    raw = _unbase64(token)
    if len(raw) < _HEADER.size + _MAC_BYTES:
        raise PageTokenError(_damaged("is too short"))
    body, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
    version, made_for, flow_id = _HEADER.unpack_from(body)
    if version != VERSION:
        raise PageTokenError(
            f"was made by another version of the server (format {version}, this one reads "
            f"format {VERSION}): read the first page again {_START_OVER.removeprefix('or ')}"
        )
    if not hmac.compare_digest(mac, _mac(body)):
        raise PageTokenError(_damaged("fails its integrity check"))
    if not hmac.compare_digest(made_for, bound_to):
        raise PageTokenError(
            "was made for other filters or another sort: send the same filters and sort as "
            f"for the first page (only limit may change), {_START_OVER}"
        )
    key = body[_HEADER.size :]
    if sort in NAME_SORTS:
        try:
            return Position(key.decode(), uuid.UUID(bytes=flow_id))
        except UnicodeDecodeError:
            raise PageTokenError(_damaged("holds no name")) from None
    if len(key) != _MICROS.size:
        raise PageTokenError(_damaged("holds no time"))
    (micros,) = _MICROS.unpack(key)
    try:
        instant = _EPOCH + timedelta(microseconds=micros)
    except OverflowError:
        raise PageTokenError(_damaged("holds no valid time")) from None
    return Position(instant, uuid.UUID(bytes=flow_id))


def _mac(body: bytes) -> bytes:
    return hmac.new(_MAC_KEY, body, hashlib.sha256).digest()[:_MAC_BYTES]


def _unbase64(token: str) -> bytes:
    """The bytes of a token, which must be exactly as `encode` writes them (no padding)."""
    try:
        data = token.encode("ascii")
        raw = base64.b64decode(data + b"=" * (-len(data) % 4), altchars=b"-_", validate=True)
    except (UnicodeEncodeError, binascii.Error, ValueError):
        raise PageTokenError(_damaged("is not base64url")) from None
    if base64.urlsafe_b64encode(raw).rstrip(b"=") != data:
        raise PageTokenError(_damaged("is not base64url without padding"))
    return raw


def _damaged(why: str) -> str:
    return (
        f"is not a page token of this server ({why}; damaged or truncated?): pass the "
        f"previous response's next_page_token unchanged, {_START_OVER}"
    )
