"""Errors: the bad-input catalogue over the shipped client, and the exception -> status table
driven through a real server (style E2)."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import grpc.aio
import pytest
from google.protobuf import struct_pb2, wrappers_pb2
from sqlalchemy import exc as sa_exc

from flowservice.client import FlowClient, RpcError
from flowservice.errors import from_failed_call
from flowservice.v1 import filters_pb2, flow_service_pb2
from flowservice_server import errors, validate
from flowservice_server.interceptors import ErrorStatusInterceptor
from tests.helpers import expect_error

BAD = "not-a-uuid"
Call = Callable[[FlowClient], Awaitable[Any]]


def _labels(**values: Any) -> Call:
    return lambda c: c.create_flow("labelled", labels=values)


def _nan_label(c: FlowClient) -> Awaitable[Any]:
    request = flow_service_pb2.CreateFlowRequest(name="nan")
    request.labels.update({"x": float("nan")})
    return c._call(c._stub.CreateFlow, request)


def _bad_timestamp(c: FlowClient) -> Awaitable[Any]:
    flow_runs = filters_pb2.FlowRunFilter()
    flow_runs.start_time.after.nanos = 2_000_000_000
    return c.read_flows(flow_runs=flow_runs)


def _unknown_operator(c: FlowClient) -> Awaitable[Any]:
    return c.read_flows(flows=filters_pb2.FlowFilter(operator=7))  # type: ignore[arg-type]  # not a defined value


#: (call, the field paths the violations must name)
BAD_INPUT: list[Any] = [
    pytest.param(lambda c: c.read_flow(BAD), ["id"], id="malformed-uuid"),
    pytest.param(lambda c: c.read_flow(""), ["id"], id="missing-id"),
    pytest.param(lambda c: c.read_flow("{" + "a" * 32 + "}"), ["id"], id="braced-hex-uuid"),
    pytest.param(lambda c: c.update_flow(BAD, tags=["x"]), ["id"], id="update-malformed-uuid"),
    pytest.param(lambda c: c.delete_flow(BAD), ["id"], id="delete-malformed-uuid"),
    pytest.param(lambda c: c.create_flow("my/flow"), ["name"], id="banned-name-character"),
    pytest.param(lambda c: c.create_flow(""), ["name"], id="empty-name"),
    pytest.param(lambda c: c.read_flow_by_name(""), ["name"], id="empty-name-lookup"),
    pytest.param(lambda c: c.read_flows(limit=201), ["limit"], id="limit-201"),
    pytest.param(lambda c: c.read_flows(offset=-1), ["offset"], id="negative-offset"),
    pytest.param(lambda c: c.read_flows(sort=42), ["sort"], id="unknown-sort"),
    pytest.param(_labels(tags=["a", "b"]), ["labels.tags"], id="label-is-a-list"),
    pytest.param(_labels(owner=None), ["labels.owner"], id="label-is-null"),
    pytest.param(_labels(nested={"a": 1}), ["labels.nested"], id="label-is-an-object"),
    pytest.param(_nan_label, ["labels.x"], id="label-is-nan"),
    pytest.param(
        lambda c: c.create_flow("labelled", labels={"team.name": [1]}),
        ["labels.`team.name`"],
        id="label-key-quoted",
    ),
    pytest.param(
        lambda c: c.read_flows(flows={"id": {"any": [f"{'a' * 32}", BAD]}}),
        ["flows.id.any[1]"],
        id="malformed-uuid-in-any",
    ),
    pytest.param(
        lambda c: c.read_flows(flows={"name": {"any": [1]}}),
        ["flows.name.any[0]"],
        id="number-in-any",
    ),
    pytest.param(
        lambda c: c.read_flows(flow_runs={"state": {"type": {"any": ["FAILED", "BOGUS"]}}}),
        ["flow_runs.state.type.any[1]"],
        id="unknown-state-type",
    ),
    pytest.param(
        lambda c: c.read_flows(flow_runs={"state": {"type": {"not_any": ["failed"]}}}),
        ["flow_runs.state.type.not_any[0]"],
        id="state-type-is-case-sensitive",
    ),
    pytest.param(
        lambda c: c.count_flows(task_runs={"flow_run_id": {"any": [BAD]}}),
        ["task_runs.flow_run_id.any[0]"],
        id="count-malformed-uuid",
    ),
    pytest.param(_bad_timestamp, ["flow_runs.start_time.after"], id="invalid-timestamp"),
    pytest.param(_unknown_operator, ["flows.operator"], id="unknown-operator"),
    pytest.param(
        lambda c: c.read_flows(limit=-5, offset=-5, flows={"id": {"not_any": [BAD]}}),
        ["flows.id.not_any[0]", "offset", "limit"],
        id="every-violation-at-once",
    ),
    pytest.param(lambda c: c.batch_get_flows(ids=["a" * 32, BAD]), ["ids[1]"], id="batch-get-id"),
    pytest.param(lambda c: c.batch_get_flows(), ["ids"], id="batch-get-nothing"),
    pytest.param(
        lambda c: c.batch_create_flows([("ok",), ("my/flow",)]),
        ["requests[1].name"],
        id="batch-create-name",
    ),
    pytest.param(
        lambda c: c.update_flow(BAD, etag="x"), ["id", "etag"], id="update-malformed-etag"
    ),
    pytest.param(
        lambda c: c.delete_flow(BAD, etag="x"), ["id", "etag"], id="delete-malformed-etag"
    ),
]


@pytest.mark.parametrize(("call", "fields"), BAD_INPUT)
async def test_bad_input_is_invalid_argument_naming_the_field(
    any_backend_client: FlowClient, call: Call, fields: list[str]
) -> None:
    error = await expect_error(call(any_backend_client), grpc.StatusCode.INVALID_ARGUMENT, *fields)
    assert error.error_info is not None
    assert error.error_info.reason == "INVALID_ARGUMENT"
    assert fields[0] in error.message


async def test_undecodable_request_bytes_are_invalid_argument(
    any_backend_client: FlowClient,
) -> None:
    raw = any_backend_client._channel.unary_unary(
        "/flowservice.v1.FlowService/ReadFlow",
        request_serializer=lambda b: b,
        response_deserializer=lambda b: b,
    )
    for garbage in (b"\x0a\x02\xff\xfe", b"\xff\xff\xff"):  # bad UTF-8; corrupt wire format
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await raw(garbage)
        error = from_failed_call(raised.value)
        assert error.code == grpc.StatusCode.INVALID_ARGUMENT
        assert error.error_info is not None
        assert error.error_info.reason == "MALFORMED_REQUEST"


#: Each echoes a long request value into its status; such statuses once arrived
#: as RESOURCE_EXHAUSTED, the client refusing trailers beyond 16 KiB.
#: (call, code, what the first field violation or the resource name starts with)
LONG_ECHOES: list[Any] = [
    pytest.param(lambda c: c.read_flow("x" * 20_000), "INVALID_ARGUMENT", "id", id="long-id"),
    pytest.param(
        lambda c: c.read_flow_by_name("𝔘" * 2_000), "NOT_FOUND", "𝔘𝔘", id="long-unknown-name"
    ),
    pytest.param(
        lambda c: c.read_flows(flows={"id": {"any": [f"bad-{n}" for n in range(1_000)]}}),
        "INVALID_ARGUMENT",
        "flows.id.any[0]",
        id="a-thousand-bad-ids",
    ),
    pytest.param(
        lambda c: c.create_flow("labelled", labels={"é" * 3_000: None}),
        "INVALID_ARGUMENT",
        "labels.éé",
        id="long-label-key",
    ),
]


@pytest.mark.parametrize(("call", "code", "start"), LONG_ECHOES)
async def test_a_status_echoing_long_values_arrives_whole(
    client: FlowClient, call: Call, code: str, start: str
) -> None:
    with pytest.raises(RpcError) as raised:
        await call(client)
    error = raised.value
    assert error.code == grpc.StatusCode[code], str(error)
    assert error.error_info is not None
    if error.resource_info is not None:
        assert error.resource_info.resource_name.startswith(start)
    else:
        assert error.field_violations[0].field.startswith(start)
    assert len(error.message.encode()) <= errors.TEXT_LIMIT
    listed = sum(
        len(v.field.encode()) + len(v.description.encode()) for v in error.field_violations
    )
    assert listed <= errors.VIOLATIONS_LIMIT


# --- the table, driven through a real server ------------------------------------


def _locked() -> BaseException:
    return sa_exc.OperationalError("INSERT …", {}, sqlite3.OperationalError("database is locked"))


class _PostgresError(Exception):
    """What asyncpg's errors carry through SQLAlchemy: a SQLSTATE."""

    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"SQLSTATE {sqlstate}")
        self.sqlstate = sqlstate


def _postgres(sqlstate: str) -> Callable[[], BaseException]:
    return lambda: sa_exc.DBAPIError("SELECT 1", {}, _PostgresError(sqlstate))


def _invalidated() -> BaseException:
    return sa_exc.DBAPIError("SELECT 1", {}, ConnectionResetError(), connection_invalidated=True)


#: name -> (the exception a handler raises, expected code, expected ErrorInfo reason, detail)
TABLE_CASES: dict[str, tuple[Callable[[], BaseException], grpc.StatusCode, str, str | None]] = {
    "invalid-argument": (
        lambda: errors.InvalidArgumentError([errors.FieldViolation("name", "bad")]),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_ARGUMENT",
        "field_violations",
    ),
    "not-found": (
        lambda: errors.NotFoundError("flowservice.v1.Flow", "id", "x"),
        grpc.StatusCode.NOT_FOUND,
        "FLOW_NOT_FOUND",
        "resource_info",
    ),
    "batch-not-found": (
        lambda: errors.BatchNotFoundError("flowservice.v1.Flow", 3, [("names[1]", "name", "x")]),
        grpc.StatusCode.NOT_FOUND,
        "FLOW_NOT_FOUND",
        "resource_info",
    ),
    "etag-mismatch": (
        lambda: errors.EtagMismatchError("flowservice.v1.Flow", "id", "x", "A" * 16),
        grpc.StatusCode.ABORTED,
        "ETAG_MISMATCH",
        None,
    ),
    "malformed": (
        lambda: errors.MalformedRequestError("garbage"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "MALFORMED_REQUEST",
        None,
    ),
    "sqlite-busy": (_locked, grpc.StatusCode.UNAVAILABLE, "DATABASE_UNAVAILABLE", "retry_info"),
    "pool-timeout": (
        lambda: sa_exc.TimeoutError("QueuePool limit"),
        grpc.StatusCode.UNAVAILABLE,
        "DATABASE_UNAVAILABLE",
        "retry_info",
    ),
    "connection-lost": (
        _invalidated,
        grpc.StatusCode.UNAVAILABLE,
        "DATABASE_UNAVAILABLE",
        "retry_info",
    ),
    "connection-refused": (
        lambda: ConnectionRefusedError(111, "refused"),
        grpc.StatusCode.UNAVAILABLE,
        "DATABASE_UNAVAILABLE",
        "retry_info",
    ),
    "never-connected": (
        lambda: sa_exc.DBAPIError(None, None, _PostgresError("55000")),
        grpc.StatusCode.UNAVAILABLE,
        "DATABASE_UNAVAILABLE",
        "retry_info",
    ),
    "postgres-admin-shutdown": (
        _postgres("57P01"),
        grpc.StatusCode.UNAVAILABLE,
        "DATABASE_UNAVAILABLE",
        "retry_info",
    ),
    "postgres-connection-exception": (
        _postgres("08006"),
        grpc.StatusCode.UNAVAILABLE,
        "DATABASE_UNAVAILABLE",
        "retry_info",
    ),
    "postgres-serialization-failure": (
        _postgres("40001"),
        grpc.StatusCode.UNAVAILABLE,
        "DATABASE_UNAVAILABLE",
        "retry_info",
    ),
    "postgres-statement-timeout": (
        _postgres("57014"),
        grpc.StatusCode.DEADLINE_EXCEEDED,
        "DEADLINE_EXCEEDED",
        None,
    ),
    "postgres-unstorable-value": (
        _postgres("22021"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "UNSTORABLE_VALUE",
        None,
    ),
    "postgres-program-limit": (
        _postgres("54000"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "UNSTORABLE_VALUE",
        None,
    ),
    "postgres-other": (_postgres("42P01"), grpc.StatusCode.INTERNAL, "INTERNAL", None),
    "deadline": (
        TimeoutError,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        "DEADLINE_EXCEEDED",
        None,
    ),
    "anything-else": (
        lambda: ValueError("secret internals"),
        grpc.StatusCode.INTERNAL,
        "INTERNAL",
        None,
    ),
    "other-database-error": (
        lambda: sa_exc.OperationalError("SELECT", {}, sqlite3.OperationalError("no such table")),
        grpc.StatusCode.INTERNAL,
        "INTERNAL",
        None,
    ),
}


@pytest.fixture
async def raising_server() -> AsyncIterator[grpc.aio.Channel]:
    """A real server whose one method raises the exception the request names."""

    async def raise_named(request: wrappers_pb2.StringValue, context: Any) -> Any:
        make_error = TABLE_CASES[request.value][0]
        raise make_error()

    server = grpc.aio.server(interceptors=[ErrorStatusInterceptor()])
    handler = grpc.unary_unary_rpc_method_handler(
        raise_named,
        request_deserializer=wrappers_pb2.StringValue.FromString,
        response_serializer=wrappers_pb2.StringValue.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("test.Raiser", {"Raise": handler}),)
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield channel
    await server.stop(None)


@pytest.mark.parametrize("case", list(TABLE_CASES))
async def test_every_exception_maps_to_a_status_with_details(
    raising_server: grpc.aio.Channel, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    _, code, reason, detail = TABLE_CASES[case]
    call = raising_server.unary_unary(
        "/test.Raiser/Raise",
        request_serializer=wrappers_pb2.StringValue.SerializeToString,
        response_deserializer=wrappers_pb2.StringValue.FromString,
    )
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call(wrappers_pb2.StringValue(value=case))
    error: RpcError = from_failed_call(raised.value)
    assert error.code == code != grpc.StatusCode.UNKNOWN
    assert error.error_info is not None
    assert (error.error_info.reason, error.error_info.domain) == (reason, "flowservice.v1")
    if detail is not None:
        assert getattr(error, detail)
    assert "Traceback" not in error.message
    assert "secret internals" not in error.message
    if code == grpc.StatusCode.INTERNAL:
        incident = error.error_info.metadata["incident"]
        assert incident in error.message
        assert any(incident in record.getMessage() for record in caplog.records)


def test_the_table_never_answers_unknown() -> None:
    for make, *_ in TABLE_CASES.values():
        assert errors.outcome_for(make()).code != grpc.StatusCode.UNKNOWN


def test_label_struct_values_are_checked_not_coerced() -> None:
    struct = struct_pb2.Struct()
    struct.update({"flag": True, "text": "1"})
    request = flow_service_pb2.CreateFlowRequest(name="x", labels=struct)
    assert validate.create_flow(request).labels == {"flag": True, "text": "1"}
