"""A flow's etag: a short hash of the flow as stored (docs/semantics.md#etags).

The etag is derived from the row, never stored, so it changes with any
write of the flow, whoever makes it: FlowService's, a Prefect server's, or
a direct SQL write. It hashes the id, the `updated` instant, the name, the
tags and the labels, each normalised the same way on both databases (the
instant as seconds and microseconds, JSON with sorted keys), so one flow
has one etag whichever backend serves it.

Every etag is ETAG_LENGTH characters of the base64url alphabet; a value of
any other shape cannot be an etag of this service (INVALID_ARGUMENT), while
one of the right shape that is not the flow's current etag is stale (ABORTED).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from typing import Any

from flowservice_server.errors import quoted

#: 12 bytes of BLAKE2b: 16 base64url characters, without padding.
_DIGEST_BYTES = 12
ETAG_LENGTH = 16
_ETAG_SHAPE = re.compile(rf"[A-Za-z0-9_-]{{{ETAG_LENGTH}}}")
#: Built once: json.dumps with options builds an encoder per call.
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), check_circular=False)


def flow_etag(flow_id: str, updated: tuple[int, int], name: str, tags: Any, labels: Any) -> str:
    """The etag of a flow with these stored values (`updated` as seconds and microseconds)."""
    content = _ENCODER.encode([flow_id, *updated, name, tags, labels])
    digest = hashlib.blake2b(content.encode(), digest_size=_DIGEST_BYTES).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii")


def check_etag(value: str) -> str:
    """A request's etag, or ValueError when it cannot be one this service made."""
    if not _ETAG_SHAPE.fullmatch(value):
        raise ValueError(
            f"{quoted(value)} is not an etag: an etag is the {ETAG_LENGTH}-character `etag` "
            "of a Flow this service returned (leave it empty to write whatever the flow's state)"
        )
    return value
