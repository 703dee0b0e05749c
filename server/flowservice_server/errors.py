"""Errors, and the one list of rules that turns any exception into a gRPC status with details.

Request handling raises the typed errors below (or lets a database error
through); `status_for` is the only place that picks a status code, for every
refusal, authentication's included. Every
status carries an `ErrorInfo` (AIP-193); INVALID_ARGUMENT adds `BadRequest`
field violations, NOT_FOUND a `ResourceInfo`, UNAVAILABLE a `RetryInfo`.
An unexpected exception becomes INTERNAL (never UNKNOWN) after its traceback
is logged; the caller sees only an incident id.

A status travels in trailers, which gRPC clients refuse beyond 16 KiB (some
beyond 8 KiB): the call would then fail there as RESOURCE_EXHAUSTED, its
details lost. Texts that echo the request are cut, and field violations are
listed only as far as they fit, so that any status arrives whatever the
request held.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from flowservice_server.db.dialect import Failure, classify, failure_detail

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from google.protobuf.message import Message

DOMAIN = "flowservice.v1"
log = logging.getLogger(__name__)


#: Characters of a request's value that a message repeats; the rest is elided.
QUOTED_LENGTH = 60
#: Field violations one response reports at most (the message counts them all).
MAX_REPORTED_VIOLATIONS = 10


def quoted(value: str) -> str:
    """A request's value as a message shows it: its repr, elided past QUOTED_LENGTH."""
    if len(value) <= QUOTED_LENGTH:
        return repr(value)
    return f"{value[:QUOTED_LENGTH]!r}… ({len(value):,} characters)"


@dataclass(frozen=True)
class FieldViolation:
    """One bad request field: its path (`flows.id.any[1]`) and what is wrong with it."""

    field: str
    description: str


class FlowServiceError(Exception):
    """Root of the errors a request can end in."""


class InvalidArgumentError(FlowServiceError):
    """The request cannot be served as written."""

    def __init__(self, violations: Sequence[FieldViolation]) -> None:
        self.violations = list(violations)
        first = self.violations[0]
        more = f" (and {len(self.violations) - 1} more)" if len(self.violations) > 1 else ""
        super().__init__(f"invalid {first.field}: {first.description}{more}")


class NotFoundError(FlowServiceError):
    """The named resource does not exist."""

    def __init__(self, resource_type: str, key: str, value: str) -> None:
        self.resource_type = resource_type
        self.key = key
        self.value = value
        super().__init__(f"no {resource_type} with {key} {quoted(value)}")


#: A missing resource of a batch: (request field path, key such as "id", value).
MissingItem = tuple[str, str, str]


class BatchNotFoundError(FlowServiceError):
    """Some of the resources a batch names do not exist (the batch fails whole).

    `missing` holds each distinct missing one as (request field path, key, value),
    in request order, e.g. ("names[2]", "name", "etl").
    """

    def __init__(self, resource_type: str, requested: int, missing: Sequence[MissingItem]) -> None:
        self.resource_type = resource_type
        self.missing = list(missing)
        first_field, _, first_value = self.missing[0]
        more = f" and {len(self.missing) - 1} more" if len(self.missing) > 1 else ""
        super().__init__(
            f"{len(self.missing)} of the {requested} requested flows do not exist "
            f"({first_field} {quoted(first_value)}{more}); nothing is returned"
        )


class EtagMismatchError(FlowServiceError):
    """A conditional write's etag is not the resource's current one: nothing was written."""

    def __init__(self, resource_type: str, key: str, value: str, etag: str) -> None:
        self.resource_type = resource_type
        self.key = key
        self.value = value
        super().__init__(
            f"the {resource_type} with {key} {quoted(value)} has changed since etag "
            f"{quoted(etag)} was read, so nothing was written; read it again for its "
            "current etag, then decide whether to write"
        )


class MalformedRequestError(FlowServiceError):
    """The request bytes are not a valid message of the method's request type."""


class UnauthenticatedError(FlowServiceError):
    """The call carries no accepted credentials."""


# --- WatchFlows' errors ------------------------------------------------------------


class ChangeFeedDisabledError(FlowServiceError):
    """The database has no change capture (a Prefect database without `changefeed add`)."""


class ResumeTokenExpiredError(FlowServiceError):
    """The resume token is older than the history the server keeps, or from another feed."""


class TooManyWatchersError(FlowServiceError):
    """This process already serves as many WatchFlows calls as it allows."""


class WatchEndedError(FlowServiceError):
    """The server is shutting down: the watch ends; resume elsewhere with `resume_token`."""

    def __init__(self, resume_token: str) -> None:
        self.resume_token = resume_token
        super().__init__("the server is shutting down; resume the watch on another server")


class Violations:
    """Collects field violations so that one response can report all of them."""

    def __init__(self) -> None:
        self.items: list[FieldViolation] = []

    def add(self, field: str, description: str) -> None:
        self.items.append(FieldViolation(field, description))

    def raise_if_any(self) -> None:
        if self.items:
            raise InvalidArgumentError(self.items)


# --- the rules -------------------------------------------------------------------

#: UTF-8 bytes of one message, field path, description or resource name.
TEXT_LIMIT = 300
#: UTF-8 bytes of all field violations of one status together.
VIOLATIONS_LIMIT = 3_000


def clip(text: str, limit: int = TEXT_LIMIT) -> str:
    """The text in at most `limit` UTF-8 bytes, cut at a character and marked `…` if cut."""
    data = text.encode()
    if len(data) <= limit:
        return text
    return data[: limit - len("…".encode())].decode(errors="ignore") + "…"


def _fitting(violations: Sequence[FieldViolation]) -> list[FieldViolation]:
    """The first violations, clipped: at most MAX_REPORTED_VIOLATIONS, and as many as fit
    in VIOLATIONS_LIMIT (at least one)."""
    kept: list[FieldViolation] = []
    size = 0
    for violation in violations[:MAX_REPORTED_VIOLATIONS]:
        clipped = FieldViolation(clip(violation.field), clip(violation.description))
        size += len(clipped.field.encode()) + len(clipped.description.encode())
        if kept and size > VIOLATIONS_LIMIT:
            break
        kept.append(clipped)
    return kept


#: How long a client should wait before retrying UNAVAILABLE.
RETRY_DELAY = duration_pb2.Duration(nanos=200_000_000)


@dataclass(frozen=True)
class Outcome:
    code: grpc.StatusCode
    reason: str
    message: str
    details: tuple[Message, ...] = ()
    metadata: tuple[tuple[str, str], ...] = ()


def _invalid_argument(error: BaseException) -> Outcome:
    assert isinstance(error, InvalidArgumentError)
    request = error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
            for v in _fitting(error.violations)
        ]
    )
    return Outcome(grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", str(error), (request,))


def _not_found(error: BaseException) -> Outcome:
    assert isinstance(error, NotFoundError)
    info = error_details_pb2.ResourceInfo(
        resource_type=error.resource_type,
        resource_name=clip(error.value),
        description=clip(str(error)),
    )
    reason = f"{error.resource_type.rsplit('.', 1)[-1].upper()}_NOT_FOUND"
    metadata = ((error.key.replace(" ", "_"), clip(error.value)),)
    return Outcome(grpc.StatusCode.NOT_FOUND, reason, str(error), (info,), metadata)


#: Characters of a missing id or name that each of a batch's `ResourceInfo`s carries:
#: ten of them, each up to 4 bytes a character, fit the trailers with room to spare.
MAX_BATCH_RESOURCE_NAME_LENGTH = 100


def _batch_not_found(error: BaseException) -> Outcome:
    assert isinstance(error, BatchNotFoundError)
    infos = tuple(
        error_details_pb2.ResourceInfo(
            resource_type=error.resource_type,
            resource_name=_cut(value, MAX_BATCH_RESOURCE_NAME_LENGTH),
            description=f"{field}: no flow with this {key}",
        )
        for field, key, value in error.missing[:MAX_REPORTED_VIOLATIONS]
    )
    reason = f"{error.resource_type.rsplit('.', 1)[-1].upper()}_NOT_FOUND"
    metadata = (("missing", str(len(error.missing))),)
    return Outcome(grpc.StatusCode.NOT_FOUND, reason, _cut(str(error), 300), infos, metadata)


def _aborted(error: BaseException) -> Outcome:
    assert isinstance(error, EtagMismatchError)
    metadata = ((error.key, _cut(error.value, QUOTED_LENGTH)),)
    return Outcome(grpc.StatusCode.ABORTED, "ETAG_MISMATCH", str(error), (), metadata)


def _cut(text: str, length: int) -> str:
    return text if len(text) <= length else text[: length - 1] + "…"


def _malformed(error: BaseException) -> Outcome:
    return Outcome(grpc.StatusCode.INVALID_ARGUMENT, "MALFORMED_REQUEST", str(error))


def _unauthenticated(error: BaseException) -> Outcome:
    return Outcome(grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED", str(error))


def _unimplemented(error: BaseException) -> Outcome:
    return Outcome(
        grpc.StatusCode.UNIMPLEMENTED,
        "UNIMPLEMENTED",
        "this server does not implement the method yet",
    )


def _unavailable(error: BaseException) -> Outcome:
    log.warning("database unavailable: %s", failure_detail(error))
    return Outcome(
        grpc.StatusCode.UNAVAILABLE,
        "DATABASE_UNAVAILABLE",
        "the database is busy or unreachable; retry the call",
        (error_details_pb2.RetryInfo(retry_delay=RETRY_DELAY),),
    )


def _unstorable(error: BaseException) -> Outcome:
    return Outcome(
        grpc.StatusCode.INVALID_ARGUMENT,
        "UNSTORABLE_VALUE",
        f"the database cannot store or compare a value of this request: {failure_detail(error)}",
    )


def _deadline_exceeded(error: BaseException) -> Outcome:
    return Outcome(
        grpc.StatusCode.DEADLINE_EXCEEDED,
        "DEADLINE_EXCEEDED",
        "the call's deadline expired before the database answered",
    )


def _changefeed_disabled(error: BaseException) -> Outcome:
    return Outcome(grpc.StatusCode.FAILED_PRECONDITION, "CHANGEFEED_DISABLED", str(error))


def _resume_token_expired(error: BaseException) -> Outcome:
    return Outcome(grpc.StatusCode.FAILED_PRECONDITION, "RESUME_TOKEN_EXPIRED", str(error))


def _too_many_watchers(error: BaseException) -> Outcome:
    return Outcome(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "TOO_MANY_WATCHERS",
        str(error),
        (error_details_pb2.RetryInfo(retry_delay=RETRY_DELAY),),
    )


def _watch_ended(error: BaseException) -> Outcome:
    assert isinstance(error, WatchEndedError)
    metadata = (("resume_token", error.resume_token),) if error.resume_token else ()
    return Outcome(
        grpc.StatusCode.UNAVAILABLE,
        "SERVER_SHUTTING_DOWN",
        str(error),
        (error_details_pb2.RetryInfo(retry_delay=RETRY_DELAY),),
        metadata,
    )


def _internal(error: BaseException) -> Outcome:
    incident = uuid.uuid4().hex[:12]
    log.error("internal error, incident %s", incident, exc_info=error)
    return Outcome(
        grpc.StatusCode.INTERNAL,
        "INTERNAL",
        f"internal error (incident {incident}; the server log has the details)",
        metadata=(("incident", incident),),
    )


#: First match wins; anything unmatched is INTERNAL.
OUTCOME_RULES: list[tuple[Callable[[BaseException], bool], Callable[[BaseException], Outcome]]] = [
    (lambda e: isinstance(e, InvalidArgumentError), _invalid_argument),
    (lambda e: isinstance(e, NotFoundError), _not_found),
    (lambda e: isinstance(e, BatchNotFoundError), _batch_not_found),
    (lambda e: isinstance(e, EtagMismatchError), _aborted),
    (lambda e: isinstance(e, MalformedRequestError), _malformed),
    (lambda e: isinstance(e, UnauthenticatedError), _unauthenticated),
    (lambda e: isinstance(e, NotImplementedError), _unimplemented),
    (lambda e: isinstance(e, ChangeFeedDisabledError), _changefeed_disabled),
    (lambda e: isinstance(e, ResumeTokenExpiredError), _resume_token_expired),
    (lambda e: isinstance(e, TooManyWatchersError), _too_many_watchers),
    (lambda e: isinstance(e, WatchEndedError), _watch_ended),
    (lambda e: isinstance(e, TimeoutError | asyncio.TimeoutError), _deadline_exceeded),
    (lambda e: classify(e) is Failure.UNAVAILABLE, _unavailable),
    (lambda e: classify(e) is Failure.DEADLINE, _deadline_exceeded),
    (lambda e: classify(e) is Failure.BAD_VALUE, _unstorable),
]


def outcome_for(error: BaseException) -> Outcome:
    for matches, build in OUTCOME_RULES:
        if matches(error):
            return build(error)
    return _internal(error)


def status_for(error: BaseException) -> grpc.Status:
    """The gRPC status (with `google.rpc` details in its trailers) for an exception."""
    outcome = outcome_for(error)
    info = error_details_pb2.ErrorInfo(
        reason=outcome.reason, domain=DOMAIN, metadata=dict(outcome.metadata)
    )
    details = []
    for detail in (*outcome.details, info):
        packed = any_pb2.Any()
        packed.Pack(detail)
        details.append(packed)
    status = status_pb2.Status(
        code=_CODE_NUMBERS[outcome.code], message=clip(outcome.message), details=details
    )
    grpc_status: grpc.Status = rpc_status.to_status(status)
    return grpc_status


_CODE_NUMBERS = {code: getattr(code_pb2, code.name) for code in grpc.StatusCode}
