"""The real grpcurl (v1.8.6) against the in-process server, and the cookbook run as written.

grpcurl is how most people first meet FlowService, so these tests pin what it
shows them: reflection, JSON bodies and outputs, decoded error details and its
exit codes. The last part runs every command of docs/grpcurl.md against a
server seeded with the data the cookbook describes and compares the outputs
it documents, so that the cookbook cannot drift from the server. A watch,
which never ends by itself, is run with `-max-time` and checked on both
streams: the responses it printed, then the DeadlineExceeded it ended with.

grpcurl runs as a child process through `asyncio` only: the server shares the
test's event loop, so a blocking `subprocess.run` would deadlock it.
"""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import sys
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import pytest

if TYPE_CHECKING:
    from collections.abc import Sequence

    from flowservice_server.app import RunningServer
    from tests.factories import Seeder

GRPCURL = Path(sys.executable).with_name("grpcurl")
COOKBOOK = Path(__file__).resolve().parents[2] / "docs" / "grpcurl.md"
#: The address every cookbook command is written with; rewritten to the test server's.
DOC_ADDRESS = "127.0.0.1:50051"
SERVICE = "flowservice.v1.FlowService"
#: grpcurl exits with 64 + the status code when the RPC fails ...
RPC_ERROR_EXIT_BASE = 64
#: ... and with 1 when it fails on its own side (bad flags, JSON it cannot encode).
CLIENT_ERROR_EXIT = 1
CALL_TIMEOUT = 30.0

UUID_PATTERN = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
TIMESTAMP_PATTERN = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
ETAG_PATTERN = re.compile(r"^[A-Za-z0-9_-]{16}$")
#: A WatchFlows resume token: 29 bytes (version, feed id, position, check), base64url.
RESUME_TOKEN_PATTERN = re.compile(r"^[A-Za-z0-9_-]{39}$")
#: A call that runs out of `-max-time` ends with DeadlineExceeded and one of two
#: messages: grpc-go's own when its timer fires first, the server's when its
#: deadline status arrives first.
DEADLINE_MESSAGES = frozenset({"context deadline exceeded", "Deadline Exceeded"})


# ---------------------------------------------------------------------------
# Running grpcurl
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    """What one grpcurl run printed, and its exit code."""

    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        assert self.code == 0, self
        return json.loads(self.stdout)

    def error_json(self) -> Any:
        """The status that `-format-error` prints (on stderr)."""
        return json.loads(self.stderr)


async def grpcurl(*args: str) -> Result:
    """Run grpcurl with these arguments, without a shell."""
    process = await asyncio.create_subprocess_exec(
        str(GRPCURL),
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), CALL_TIMEOUT)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return Result(process.returncode, stdout.decode(), stderr.decode())


async def call(
    server: RunningServer, method: str, body: Any = None, *flags: str, raw: str | None = None
) -> Result:
    """One RPC: `method` is a FlowService method name or a full `service/method` path."""
    path = method if "/" in method else f"{SERVICE}/{method}"
    data = raw if raw is not None else None if body is None else json.dumps(body)
    data_args = () if data is None else ("-d", data)
    return await grpcurl("-plaintext", *flags, *data_args, f"127.0.0.1:{server.port}", path)


def exit_code(code: grpc.StatusCode) -> int:
    """grpcurl's exit code for an RPC that ended with `code`."""
    number: int = code.value[0]
    return RPC_ERROR_EXIT_BASE + number


def status_code(name: str) -> grpc.StatusCode:
    """A status code from grpcurl's spelling of it ("InvalidArgument")."""
    return grpc.StatusCode[re.sub(r"(?<=[a-z])(?=[A-Z])", "_", name).upper()]


@dataclass(frozen=True)
class ErrorText:
    """grpcurl's default rendering of a failed RPC, taken apart."""

    code: grpc.StatusCode
    message: str
    details: list[Any]


def parse_error_text(text: str) -> ErrorText:
    """Parse `ERROR:` / `Code:` / `Message:` / `Details:` / `1)  {json}` as grpcurl prints it."""
    lines = text.strip().splitlines()
    assert lines[0] == "ERROR:", text
    code = re.fullmatch(r"\s*Code: (\w+)\s*", lines[1])
    message = re.fullmatch(r"\s*Message:(.*)", lines[2])
    assert code, text
    assert message, text
    details: list[Any] = []
    if len(lines) > 3:
        assert lines[3].strip() == "Details:", text
        for number, line in enumerate(lines[4:], start=1):
            match = re.fullmatch(r"\s*(\d+)\)\s+(\{.*\})\s*", line)
            assert match, line
            assert int(match[1]) == number, line
            details.append(json.loads(match[2]))
    return ErrorText(status_code(code[1]), message[1].strip(), details)


def detail(details: Sequence[Any], kind: str) -> Any:
    """The one detail of `google.rpc.<kind>` in a decoded detail list."""
    (found,) = [d for d in details if d["@type"] == f"type.googleapis.com/google.rpc.{kind}"]
    return found


# ---------------------------------------------------------------------------
# Reflection and health
# ---------------------------------------------------------------------------


async def test_list_shows_flowservice_health_and_reflection(
    any_backend_server: RunningServer,
) -> None:
    """Reflection is what lets grpcurl work without .proto files."""
    result = await grpcurl("-plaintext", f"127.0.0.1:{any_backend_server.port}", "list")
    assert result.code == 0, result
    assert result.stdout.splitlines() == [
        "flowservice.v1.FlowService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    ]


async def test_describe_the_service_lists_every_rpc(any_backend_server: RunningServer) -> None:
    result = await grpcurl(
        "-plaintext", f"127.0.0.1:{any_backend_server.port}", "describe", SERVICE
    )
    assert result.code == 0, result
    rpcs = re.findall(
        r"^  rpc (\w+) \( \.flowservice\.v1\.(\w+) \) "
        # `;`, or ` {` and the method's options (its google.api.http rule)
        r"returns \( (stream )?\.flowservice\.v1\.(\w+) \)(?:;| \{)$",
        result.stdout,
        re.MULTILINE,
    )
    unary = (
        "CreateFlow",
        "ReadFlow",
        "ReadFlowByName",
        "ReadFlows",
        "CountFlows",
        "UpdateFlow",
        "DeleteFlow",
        "BatchGetFlows",
        "BatchCreateFlows",
    )
    assert sorted(rpcs) == sorted(
        [
            *((name, f"{name}Request", "", f"{name}Response") for name in unary),
            ("StreamFlows", "StreamFlowsRequest", "stream ", "StreamFlowsResponse"),
            ("WatchFlows", "WatchFlowsRequest", "stream ", "WatchFlowsResponse"),
        ]
    )


async def test_describe_flow_run_filter_shows_its_fields(any_backend_server: RunningServer) -> None:
    result = await grpcurl(
        "-plaintext",
        f"127.0.0.1:{any_backend_server.port}",
        "describe",
        "flowservice.v1.FlowRunFilter",
    )
    assert result.code == 0, result
    fields = re.findall(r"^  \.flowservice\.v1\.(\w+) (\w+) = (\d+);$", result.stdout, re.M)
    assert [(name, int(number)) for _, name, number in fields] == [
        ("operator", 1),
        ("id", 2),
        ("name", 3),
        ("tags", 4),
        ("deployment_id", 5),
        ("work_queue_name", 6),
        ("state", 7),
        ("flow_version", 8),
        ("start_time", 9),
        ("end_time", 10),
        ("expected_start_time", 11),
        ("next_scheduled_start_time", 12),
        ("parent_flow_run_id", 13),
        ("parent_task_run_id", 14),
        ("idempotency_key", 15),
        ("created_by", 16),
    ]
    assert ("Operator", "operator", "1") in fields
    assert ("FlowRunFilterStartTime", "start_time", "9") in fields


async def test_describe_a_single_method(any_backend_server: RunningServer) -> None:
    """grpcio-reflection alone cannot resolve a method's name (grpc/grpc#34743); ours can."""
    result = await grpcurl(
        "-plaintext", f"127.0.0.1:{any_backend_server.port}", "describe", f"{SERVICE}.ReadFlows"
    )
    assert result.code == 0, result
    assert "rpc ReadFlows" in result.stdout


@pytest.mark.parametrize("service", ["", SERVICE])
async def test_health_check_is_serving(any_backend_server: RunningServer, service: str) -> None:
    result = await call(any_backend_server, "grpc.health.v1.Health/Check", {"service": service})
    assert result.json() == {"status": "SERVING"}


async def test_health_of_an_unknown_service_is_not_found(any_backend_server: RunningServer) -> None:
    result = await call(
        any_backend_server, "grpc.health.v1.Health/Check", {"service": "no.such.Service"}
    )
    assert result.code == exit_code(grpc.StatusCode.NOT_FOUND), result
    assert parse_error_text(result.stderr).code == grpc.StatusCode.NOT_FOUND


# ---------------------------------------------------------------------------
# Every RPC with a JSON body
# ---------------------------------------------------------------------------


async def test_create_flow_then_get_or_create_by_name(server: RunningServer) -> None:
    """`created` tells the two apart; `false` is printed only with -emit-defaults."""
    body = {"name": "etl", "tags": ["db", "nightly"], "labels": {"env": "dev", "shards": 4}}
    first = (await call(server, "CreateFlow", body)).json()
    flow = first["flow"]
    assert first["created"] is True
    assert UUID_PATTERN.match(flow["id"])
    assert TIMESTAMP_PATTERN.match(flow["created"])
    assert flow["updated"] == flow["created"]
    assert (flow["name"], flow["tags"]) == ("etl", ["db", "nightly"])
    assert flow["labels"] == {"env": "dev", "shards": 4}  # a whole number stays an integer

    again = await call(server, "CreateFlow", {"name": "etl", "tags": ["ignored"]})
    assert again.json() == {"flow": flow}  # unchanged, and "created": false left out
    shown = await call(server, "CreateFlow", {"name": "etl"}, "-emit-defaults")
    assert shown.json() == {"flow": flow, "created": False}


async def test_create_flow_without_labels_has_none(server: RunningServer) -> None:
    """Absent labels are stored as no labels object, which -emit-defaults shows as null."""
    result = await call(server, "CreateFlow", {"name": "bare"}, "-emit-defaults")
    flow = result.json()["flow"]
    assert (flow["tags"], flow["labels"]) == ([], None)
    with_empty = await call(server, "CreateFlow", {"name": "empty-labels", "labels": {}})
    assert with_empty.json()["flow"]["labels"] == {}


async def test_read_flow_by_id_in_any_uuid_form_and_by_name(server: RunningServer) -> None:
    flow = (await call(server, "CreateFlow", {"name": "reports"})).json()["flow"]
    for form in (flow["id"], flow["id"].replace("-", "").upper(), f"urn:uuid:{flow['id']}"):
        assert (await call(server, "ReadFlow", {"id": form})).json() == {"flow": flow}
    assert (await call(server, "ReadFlowByName", {"name": "reports"})).json() == {"flow": flow}


async def test_read_flows_filters_sort_and_page(server: RunningServer, seed: Seeder) -> None:
    etl = await seed.flow("etl", tags=["db", "prod"])
    reports = await seed.flow("reports", tags=["prod"])
    await seed.flow("sandbox")
    await seed.flow_run(
        etl, "etl-1", state_type="FAILED", start_time=datetime(2026, 11, 27, 2, tzinfo=UTC)
    )
    await seed.flow_run(
        reports, "reports-1", state_type="FAILED", start_time=datetime(2026, 11, 26, tzinfo=UTC)
    )

    async def names(body: Any) -> list[str]:
        return [flow["name"] for flow in (await call(server, "ReadFlows", body)).json()["flows"]]

    assert await names({"flows": {"tags": {"all": ["prod"]}}}) == ["etl", "reports"]
    assert await names({"flows": {"id": {"any": [str(etl)]}}}) == ["etl"]
    since = {
        "start_time": {"after": "2026-11-27T00:00:00Z"},
        "state": {"type": {"any": ["FAILED"]}},
    }
    assert await names({"flow_runs": since}) == ["etl"]
    assert await names({"flow_runs": {"start_time": {"after": "2026-11-27T01:00:00+01:00"}}}) == [
        "etl"
    ]
    assert await names({"flow_runs": {}}) == ["etl", "reports"]
    camel_case = {"flowRuns": {"state": {"type": {"notAny": ["COMPLETED"]}}}}
    assert await names(camel_case) == ["etl", "reports"]
    assert await names({"sort": "FLOW_SORT_NAME_DESC", "limit": 2}) == ["sandbox", "reports"]
    assert await names({"sort": "FLOW_SORT_NAME_ASC", "offset": 1, "limit": 1}) == ["reports"]
    assert await names({"sort": "FLOW_SORT_NAME_DESC", "offset": 1}) == ["reports", "etl"]
    # An empty result is an empty object unless defaults are shown.
    empty = await call(server, "ReadFlows", {"flows": {"name": {"any": []}}})
    assert empty.json() == {}
    shown = await call(server, "ReadFlows", {"flows": {"name": {"any": []}}}, "-emit-defaults")
    assert shown.json() == {"flows": [], "next_page_token": ""}


async def test_count_flows_is_an_int64_json_string(server: RunningServer, seed: Seeder) -> None:
    await seed.flow("etl", tags=["db"])
    await seed.flow("reports")
    assert (await call(server, "CountFlows", {})).json() == {"count": "2"}
    assert (await call(server, "CountFlows", {"flows": {"tags": {"is_null": True}}})).json() == {
        "count": "1"
    }
    nothing: dict[str, Any] = {
        "flows": {"id": {"any": []}}
    }  # an explicitly empty `any` matches nothing
    assert (await call(server, "CountFlows", nothing)).json() == {}
    assert (await call(server, "CountFlows", nothing, "-emit-defaults")).json() == {"count": "0"}
    no_condition: dict[str, Any] = {
        "flows": {"id": {"not_any": []}}
    }  # an empty `not_any` adds no condition
    assert (await call(server, "CountFlows", no_condition)).json() == {"count": "2"}


async def test_update_flow_replaces_then_clears_tags(server: RunningServer) -> None:
    created = (await call(server, "CreateFlow", {"name": "etl", "tags": ["db"]})).json()["flow"]
    flow_id = created["id"]

    replaced = (await call(server, "UpdateFlow", {"id": flow_id, "tags": ["a", "b"]})).json()
    assert replaced["flow"]["tags"] == ["a", "b"]
    assert replaced["flow"]["updated"] > created["updated"]

    # Without a mask an empty list is "not given": nothing is written but `updated`.
    kept = (await call(server, "UpdateFlow", {"id": flow_id, "tags": []})).json()
    assert kept["flow"]["tags"] == ["a", "b"]

    mask = {"paths": ["tags"]}  # the form grpcurl 1.8.6 can encode; see the next test
    cleared = await call(
        server, "UpdateFlow", {"id": flow_id, "tags": [], "update_mask": mask}, "-emit-defaults"
    )
    assert cleared.json()["flow"]["tags"] == []
    assert "tags" not in (await call(server, "ReadFlow", {"id": flow_id})).json()["flow"]


async def test_grpcurl_cannot_encode_a_field_mask_written_as_a_string(
    any_backend_server: RunningServer,
) -> None:
    """grpcurl 1.8.6 encodes JSON with the old jsonpb, which lacks FieldMask's string form
    (fullstorydev/grpcurl#393); it fails before sending anything. The cookbook therefore
    writes `{"paths": ["tags"]}`. Should grpcurl learn the string form, this test says so."""
    created = await call(any_backend_server, "CreateFlow", {"name": "etl", "tags": ["db"]})
    flow = created.json()["flow"]
    body = {"id": flow["id"], "tags": [], "update_mask": "tags"}
    result = await call(any_backend_server, "UpdateFlow", body)
    assert result.code == CLIENT_ERROR_EXIT, result
    assert "error getting request data" in result.stderr
    reread = await call(any_backend_server, "ReadFlow", {"id": flow["id"]})
    assert reread.json()["flow"]["tags"] == ["db"]


async def test_delete_flow_then_it_is_not_found(server: RunningServer) -> None:
    flow = (await call(server, "CreateFlow", {"name": "doomed"})).json()["flow"]
    assert (await call(server, "DeleteFlow", {"id": flow["id"]})).json() == {}
    again = await call(server, "DeleteFlow", {"id": flow["id"]})
    assert again.code == exit_code(grpc.StatusCode.NOT_FOUND), again
    assert parse_error_text(again.stderr).code == grpc.StatusCode.NOT_FOUND


async def test_batches_and_a_conditional_update(server: RunningServer) -> None:
    """Batches answer in request order; a stale etag exits with ABORTED's code."""
    body = {"requests": [{"name": "b"}, {"name": "a", "tags": ["x"]}, {"name": "b"}]}
    created = (await call(server, "BatchCreateFlows", body)).json()
    answers = [(r["flow"]["name"], r.get("created", False)) for r in created["responses"]]
    assert answers == [("b", True), ("a", True), ("b", False)]
    flow = created["responses"][1]["flow"]
    assert ETAG_PATTERN.match(flow["etag"])

    got = (await call(server, "BatchGetFlows", {"ids": [flow["id"]], "names": ["b", "a"]})).json()
    assert [f["name"] for f in got["flows"]] == ["a", "b", "a"]
    assert got["flows"][0] == flow

    update = {"id": flow["id"], "tags": ["y"], "etag": flow["etag"]}
    updated = (await call(server, "UpdateFlow", update)).json()["flow"]
    assert updated["etag"] != flow["etag"]
    stale = await call(server, "UpdateFlow", update, "-format-error")
    assert stale.code == exit_code(grpc.StatusCode.ABORTED), stale
    status = stale.error_json()
    assert status["code"] == grpc.StatusCode.ABORTED.value[0]
    assert detail(status["details"], "ErrorInfo")["reason"] == "ETAG_MISMATCH"
    assert (await call(server, "ReadFlow", {"id": flow["id"]})).json()["flow"] == updated


# ---------------------------------------------------------------------------
# Error details and exit codes
# ---------------------------------------------------------------------------


async def test_invalid_argument_carries_bad_request_field_violations(
    any_backend_server: RunningServer,
) -> None:
    """Every violation is reported at once, each with the path of its field."""
    body = {"flows": {"id": {"any": ["2800a198-27d2-4911-8891-10f734680452", "x"]}}, "limit": 500}
    text = await call(any_backend_server, "ReadFlows", body)
    assert text.code == exit_code(grpc.StatusCode.INVALID_ARGUMENT), text
    assert text.stdout == ""
    error = parse_error_text(text.stderr)
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.message.startswith("invalid flows.id.any[1]: 'x' is not a UUID")
    assert error.message.endswith("(and 1 more)")
    violations = detail(error.details, "BadRequest")["field_violations"]
    assert [v["field"] for v in violations] == ["flows.id.any[1]", "limit"]
    assert all(v["description"] for v in violations)
    assert detail(error.details, "ErrorInfo") == {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "domain": "flowservice.v1",
        "reason": "INVALID_ARGUMENT",
    }

    formatted = await call(any_backend_server, "ReadFlows", body, "-format-error")
    assert formatted.code == text.code
    status = formatted.error_json()
    assert (status["code"], status["message"]) == (3, error.message)
    assert status["details"] == error.details


async def test_a_non_string_any_element_is_named_by_index(
    any_backend_server: RunningServer,
) -> None:
    result = await call(
        any_backend_server, "CountFlows", raw='{"flow_runs": {"name": {"any": ["a", 7]}}}'
    )
    assert result.code == exit_code(grpc.StatusCode.INVALID_ARGUMENT), result
    error = parse_error_text(result.stderr)
    violations = detail(error.details, "BadRequest")["field_violations"]
    assert [v["field"] for v in violations] == ["flow_runs.name.any[1]"]


async def test_not_found_carries_resource_info(server: RunningServer) -> None:
    missing = "6c1b9a52-4a0e-4d8e-9c7a-2f4b1d0e9a11"
    by_id = await call(server, "ReadFlow", {"id": missing})
    assert by_id.code == exit_code(grpc.StatusCode.NOT_FOUND), by_id
    error = parse_error_text(by_id.stderr)
    assert error.code == grpc.StatusCode.NOT_FOUND
    assert detail(error.details, "ResourceInfo") == {
        "@type": "type.googleapis.com/google.rpc.ResourceInfo",
        "resource_type": "flowservice.v1.Flow",
        "resource_name": missing,
        "description": f"no flowservice.v1.Flow with id '{missing}'",
    }
    assert detail(error.details, "ErrorInfo")["reason"] == "FLOW_NOT_FOUND"
    assert detail(error.details, "ErrorInfo")["metadata"] == {"id": missing}

    by_name = await call(server, "ReadFlowByName", {"name": "nightly"}, "-format-error")
    assert by_name.code == exit_code(grpc.StatusCode.NOT_FOUND), by_name
    status = by_name.error_json()
    assert status["code"] == grpc.StatusCode.NOT_FOUND.value[0]
    assert detail(status["details"], "ResourceInfo")["resource_name"] == "nightly"


async def test_json_grpcurl_cannot_encode_exits_1_without_a_call(
    any_backend_server: RunningServer,
) -> None:
    """A misspelt field is caught by grpcurl itself: exit code 1, not an RPC status."""
    result = await call(any_backend_server, "ReadFlows", {"flows": {"tag": {"all": ["db"]}}})
    assert result.code == CLIENT_ERROR_EXIT, result
    assert "has no known field named tag" in result.stderr


# ---------------------------------------------------------------------------
# The cookbook's example data
# ---------------------------------------------------------------------------

# Flows (docs/grpcurl.md, "The example data").
ETL = uuid.UUID("2800a198-27d2-4911-8891-10f734680452")
REPORTS = uuid.UUID("121ae4f7-4a3a-4fa0-8d31-3635e4772c1f")
BACKFILL = uuid.UUID("cbe49070-2a8a-42c3-9d9c-64637f4d8d4f")
SANDBOX = uuid.UUID("74356b71-f805-415d-969d-dd32f9a2b4de")
ML_TRAIN = uuid.UUID("83e29c06-3b68-4352-9d43-c743e0ac516d")
# Deployments.
ETL_PROD = uuid.UUID("269b7973-fea7-4790-824d-ae51a68b40a3")
REPORTS_DAILY = uuid.UUID("652fad6b-658e-4ccf-a94d-b3457a01f540")
ML_TRAIN_GPU = uuid.UUID("af4488cb-8fde-4689-9586-ee63a0824c38")
# Flow runs.
ETL_RUN_26 = uuid.UUID("5369e3fe-2575-4afc-ae2d-8a4426d90506")
ETL_RUN_27 = uuid.UUID("44c9f69c-6946-46c0-b1d7-65097c606097")
REPORTS_RUN_26 = uuid.UUID("4e1b581e-1fe3-4d61-9fff-3cac405b1c75")
BACKFILL_RUN = uuid.UUID("3e7c9060-0915-41e0-9879-966df8bcd23d")
# The task run of etl-2026-11-27 that started backfill-orders as a subflow run.
TRIGGER_BACKFILL = uuid.UUID("844f3e55-cf0e-411d-9e1f-94f53e97dc9f")


def utc(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    assert moment.tzinfo is not None
    return moment.astimezone(UTC)


#: Flows (id, name, tags), created a day apart from 2026-11-20 09:00 UTC.
FLOWS = [
    (ETL, "etl", ["db", "nightly"]),
    (REPORTS, "reports", ["finance", "prod"]),
    (BACKFILL, "backfill", []),
    (SANDBOX, "sandbox", ["dev"]),
    (ML_TRAIN, "ml-train", ["ml", "prod"]),
]


@dataclass(frozen=True)
class DeploymentRow:
    """A deployment; `pool` is the (name, type) of the pool its work queue is in, if any."""

    flow: uuid.UUID
    id: uuid.UUID
    name: str
    tags: list[str]
    paused: bool = False
    pool: tuple[str, str] | None = None


@dataclass(frozen=True)
class RunRow:
    """A flow run; its state type is its state name in capitals."""

    flow: uuid.UUID
    id: uuid.UUID
    name: str
    state: str
    start: str
    tags: list[str] = field(default_factory=list)
    deployment: uuid.UUID | None = None
    parent_task_run: uuid.UUID | None = None


DEPLOYMENTS = [
    DeploymentRow(ETL, ETL_PROD, "etl-prod", ["prod"], pool=("k8s-pool", "kubernetes")),
    DeploymentRow(
        REPORTS, REPORTS_DAILY, "reports-daily", ["finance"], True, ("local-pool", "process")
    ),
    DeploymentRow(ML_TRAIN, ML_TRAIN_GPU, "ml-train-gpu", ["gpu"]),
]
RUNS = [
    RunRow(
        ETL, ETL_RUN_26, "etl-2026-11-26", "Completed", "2026-11-26T02:00:00Z", ["prod"], ETL_PROD
    ),
    RunRow(ETL, ETL_RUN_27, "etl-2026-11-27", "Failed", "2026-11-27T02:00:00Z", ["prod"], ETL_PROD),
    RunRow(
        REPORTS,
        REPORTS_RUN_26,
        "reports-2026-11-26",
        "Completed",
        "2026-11-26T06:00:00Z",
        ["finance"],
        REPORTS_DAILY,
    ),
    RunRow(
        BACKFILL,
        BACKFILL_RUN,
        "backfill-orders",
        "Running",
        "2026-11-27T02:05:00Z",
        parent_task_run=TRIGGER_BACKFILL,
    ),
]
#: Task runs: (flow run, name, tags, state type, fixed id or None).
TASK_RUNS: list[tuple[uuid.UUID, str, list[str], str, uuid.UUID | None]] = [
    (ETL_RUN_26, "extract", ["db"], "COMPLETED", None),
    (ETL_RUN_26, "load", ["db"], "COMPLETED", None),
    (ETL_RUN_27, "extract", ["db"], "COMPLETED", None),
    (ETL_RUN_27, "load", ["db"], "FAILED", None),
    (ETL_RUN_27, "trigger-backfill", [], "COMPLETED", TRIGGER_BACKFILL),
    (REPORTS_RUN_26, "render", ["pdf"], "COMPLETED", None),
]

#: Every id the test writes; any other id in the cookbook is one the server generates.
SEEDED_IDS = frozenset(
    str(seeded)
    for seeded in [
        *(flow_id for flow_id, _, _ in FLOWS),
        *(deployment.id for deployment in DEPLOYMENTS),
        *(run.id for run in RUNS),
        *(task_run_id for *_, task_run_id in TASK_RUNS if task_run_id is not None),
    ]
)


async def seed_cookbook(seed: Seeder) -> None:
    """Write the cookbook's example data, with its fixed ids and times."""
    for day, (flow_id, name, tags) in enumerate(FLOWS, start=20):
        at = utc(f"2026-11-{day}T09:00:00Z")
        await seed.flow(name, tags=tags, id=flow_id, created=at, updated=at)
    for deployment in DEPLOYMENTS:
        queue = None
        if deployment.pool:
            pool_name, pool_type = deployment.pool
            queue = await seed.work_queue(await seed.work_pool(pool_name, type=pool_type))
        await seed.deployment(
            deployment.flow,
            deployment.name,
            id=deployment.id,
            tags=deployment.tags,
            paused=deployment.paused,
            work_queue_id=queue,
            work_queue_name="default" if queue else None,
        )

    async def write(run: RunRow) -> None:
        await seed.flow_run(
            run.flow,
            run.name,
            id=run.id,
            tags=run.tags,
            state_type=run.state.upper(),
            state_name=run.state,
            start_time=utc(run.start),
            expected_start_time=utc(run.start),
            deployment_id=run.deployment,
            parent_task_run_id=run.parent_task_run,
        )

    # Subflow runs come last, after the task runs that started them.
    for run in RUNS:
        if run.parent_task_run is None:
            await write(run)
    for run_id, name, tags, state, task_run_id in TASK_RUNS:
        fixed = {} if task_run_id is None else {"id": task_run_id}
        await seed.task_run(run_id, name, tags=tags, state_type=state, **fixed)
    for run in RUNS:
        if run.parent_task_run is not None:
            await write(run)


# ---------------------------------------------------------------------------
# Reading the cookbook
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    """A fenced code block: its info string, first line number (1-based) and text."""

    info: str
    line: int
    end: int
    text: str


@dataclass(frozen=True)
class Example:
    """One ```sh block and the output block that follows it, if any.

    A call that prints responses and then fails (a watch ended by `-max-time`)
    shows its standard output in a ```json block and then its standard error
    in a ```text block starting with `ERROR:`: that is `stderr`.
    """

    line: int
    command: str
    argv: list[str]
    output: Block | None
    stderr: Block | None = None


def fenced_blocks(markdown: str) -> list[Block]:
    """Every fenced block, in order."""
    blocks: list[Block] = []
    lines = markdown.splitlines()
    start: int | None = None
    info = ""
    for number, line in enumerate(lines, start=1):
        if start is None:
            if match := re.fullmatch(r"```(\S*)\s*", line):
                start, info = number, match[1]
        elif re.fullmatch(r"```\s*", line):
            blocks.append(Block(info, start, number, "\n".join(lines[start : number - 1])))
            start = None
    assert start is None, f"the block opened on line {start} is never closed"
    return blocks


def shell_words(command: str) -> list[str]:
    """Split one command as a POSIX shell would, without running a shell.

    A backslash-newline outside single quotes continues the line; any other
    newline outside quotes would start a second command, and a pipe,
    redirection or `;` would need a real shell: both are refused.
    """
    joined: list[str] = []
    quote = ""
    index = 0
    text = command.strip()
    while index < len(text):
        char = text[index]
        if quote != "'" and char == "\\":  # an escape, or a continuation if before a newline
            following = text[index + 1 : index + 2]
            if following != "\n":
                joined.append(char + following)
            index += 2
            continue
        if char == "\n" and not quote:
            raise ValueError(f"more than one command: {command!r}")
        if char in "'\"" and (not quote or quote == char):
            quote = "" if quote else char
        joined.append(char)
        index += 1
    words = shlex.split("".join(joined))
    if shell_only := {"|", "||", "&&", ";", ">", ">>", "<", "&"} & set(words):
        raise ValueError(f"needs a shell ({', '.join(sorted(shell_only))}): {command!r}")
    return words


def cookbook_examples(markdown: str) -> list[Example]:
    """Every ```sh block, with the ```json or ```text block right after it as its output
    (and, after a ```json output, a ```text block starting with `ERROR:` as its stderr)."""
    blocks = fenced_blocks(markdown)
    lines = markdown.splitlines()

    def right_after(index: int) -> Block | None:
        following = blocks[index + 1] if index + 1 < len(blocks) else None
        if (
            following is not None
            and following.info in {"json", "text"}
            and not "".join(lines[blocks[index].end : following.line - 1]).strip()
        ):
            return following
        return None

    examples = []
    for index, block in enumerate(blocks):
        if block.info != "sh":
            continue
        output = right_after(index)
        stderr = None
        if output is not None and output.info == "json":
            stderr = right_after(index + 1)
            if stderr is not None and not (
                stderr.info == "text" and stderr.text.startswith("ERROR:")
            ):
                stderr = None
        examples.append(Example(block.line, block.text, shell_words(block.text), output, stderr))
    return examples


def test_commands_are_split_like_a_shell() -> None:
    """Continuations join, quoted JSON may span lines, and shell syntax is refused."""
    command = """grpcurl -plaintext -d '{
      "flows": {"name": {"like": "a\\\\b"}}}' \\
    127.0.0.1:50051 \\
    flowservice.v1.FlowService/ReadFlows"""
    assert shell_words(command) == [
        "grpcurl",
        "-plaintext",
        "-d",
        '{\n      "flows": {"name": {"like": "a\\\\b"}}}',
        "127.0.0.1:50051",
        "flowservice.v1.FlowService/ReadFlows",
    ]
    assert shell_words('grpcurl -d "{\\"a\\":\n 1}" x') == ["grpcurl", "-d", '{"a":\n 1}', "x"]
    with pytest.raises(ValueError, match="more than one command"):
        shell_words("grpcurl -plaintext 127.0.0.1:50051 list\ngrpcurl list")
    with pytest.raises(ValueError, match="needs a shell"):
        shell_words("grpcurl -plaintext 127.0.0.1:50051 list | head")


def test_the_cookbook_reader_pairs_commands_with_their_output() -> None:
    markdown = "\n".join(
        [
            "```sh",
            "grpcurl -plaintext 127.0.0.1:50051 list",
            "```",
            "",
            "```text",
            "grpc.health.v1.Health",
            "```",
            "Prose.",
            "```sh",
            "grpcurl -plaintext 127.0.0.1:50051 \\",
            "  describe flowservice.v1.FlowService",
            "```",
            "Prose between: no output block.",
            "```json",
            "{}",
            "```",
        ]
    )
    first, second = cookbook_examples(markdown)
    assert first.output is not None
    assert (first.line, first.output.text) == (1, "grpc.health.v1.Health")
    assert first.stderr is None
    assert second.argv[-2:] == ["describe", "flowservice.v1.FlowService"]
    assert second.output is None


def test_the_cookbook_reader_pairs_a_stream_with_its_stdout_and_stderr() -> None:
    """A watch ended by -max-time: its responses, then the error grpcurl ends with."""
    watch = ["```sh", "grpcurl -plaintext -max-time 1 127.0.0.1:50051 x/WatchFlows", "```", ""]
    stdout = ["```json", "{}", "{}", "```", ""]
    stderr = ["```text", "ERROR:", "  Code: DeadlineExceeded", "  Message: m", "```"]
    (example,) = cookbook_examples("\n".join([*watch, *stdout, *stderr]))
    assert example.output is not None
    assert example.stderr is not None
    assert (example.output.text, example.stderr.line) == ("{}\n{}", 10)
    (json_only,) = cookbook_examples("\n".join([*watch, *stdout, "```text", "x", "```"]))
    assert json_only.stderr is None


# ---------------------------------------------------------------------------
# Checking the cookbook against the server
# ---------------------------------------------------------------------------


@dataclass
class Ids:
    """Ids the server generates, bound to the ones the cookbook shows in their place.

    The cookbook shows a created flow's id and then uses it; the server makes up
    another. The first time a documented id that the test did not seed meets a
    generated one, at the same place in an output, the two are bound, and the
    documented id is replaced by the real one in every later command and output.
    Etags are bound the same way where the flow's `updated` time differs from the
    documented one (its etag derives from it); a seeded flow's etag is the one
    documented until the flow is written.
    """

    seeded: frozenset[str]
    bound: dict[str, str] = field(default_factory=dict)

    def bind(self, documented: Any, actual: Any) -> None:
        if isinstance(documented, dict) and isinstance(actual, dict):
            for key in documented.keys() & actual.keys() - {"etag"}:
                self.bind(documented[key], actual[key])
            if "etag" in documented and documented.get("updated") != actual.get("updated"):
                self.bind_etag(documented["etag"], actual.get("etag"))
            if "resume_token" in documented:
                self.bind_resume_token(documented["resume_token"], actual.get("resume_token"))
        elif isinstance(documented, list) and isinstance(actual, list):
            for pair in zip(documented, actual, strict=False):
                self.bind(*pair)
        elif (
            isinstance(documented, str)
            and isinstance(actual, str)
            and UUID_PATTERN.match(documented)
            and UUID_PATTERN.match(actual)
            and documented not in self.seeded | self.bound.keys()
            and actual not in self.seeded | set(self.bound.values())
        ):
            self.bound[documented] = actual

    def bind_etag(self, documented: Any, actual: Any) -> None:
        """An etag moves with `updated`: a flow written at another time has another etag."""
        if (
            isinstance(documented, str)
            and isinstance(actual, str)
            and ETAG_PATTERN.match(documented)
            and ETAG_PATTERN.match(actual)
            and documented not in self.bound
            and actual not in self.bound.values()
        ):
            self.bound[documented] = actual

    def bind_resume_token(self, documented: Any, actual: Any) -> None:
        """A resume token names the server's change feed, made up when its database was:
        the first one the cookbook shows in a place stands for the one printed there, and
        so does every repeat of it (a repeat printed as another token is a difference)."""
        if (
            isinstance(documented, str)
            and isinstance(actual, str)
            and RESUME_TOKEN_PATTERN.match(documented)
            and RESUME_TOKEN_PATTERN.match(actual)
            and documented not in self.bound
            and actual not in self.bound.values()
        ):
            self.bound[documented] = actual

    def apply(self, text: str) -> str:
        for documented, actual in self.bound.items():
            text = text.replace(documented, actual)
        return text


def without_times(value: Any) -> Any:
    """The JSON without the volatile `created`/`updated` timestamps, which must be RFC 3339,
    and without etags, which must have an etag's shape (`etag_differences` compares the
    etags the cookbook shows).

    (`CreateFlowResponse.created` is a boolean and is kept.)"""
    if isinstance(value, dict):
        kept = {}
        for key, item in value.items():
            if key in {"created", "updated"} and isinstance(item, str):
                assert TIMESTAMP_PATTERN.match(item), f"{key}: {item!r}"
                continue
            if key == "etag" and isinstance(item, str):
                assert ETAG_PATTERN.match(item), f"{key}: {item!r}"
                continue
            kept[key] = without_times(item)
        return kept
    if isinstance(value, list):
        return [without_times(item) for item in value]
    return value


def etag_differences(documented: Any, actual: Any) -> list[str]:
    """Each etag the cookbook shows (lists of flows may leave it out) that is not the one
    printed at the same place."""
    if isinstance(documented, dict) and isinstance(actual, dict):
        found = []
        if "etag" in documented and documented["etag"] != actual.get("etag"):
            found.append(f"etag {documented['etag']!r}, printed {actual.get('etag')!r}")
        for key in documented.keys() & actual.keys():
            found += etag_differences(documented[key], actual[key])
        return found
    if isinstance(documented, list) and isinstance(actual, list):
        return [
            d for pair in zip(documented, actual, strict=False) for d in etag_differences(*pair)
        ]
    return []


def json_documents(text: str) -> Any:
    """The JSON value in `text`, or the list of them when a stream printed several."""
    decoder = json.JSONDecoder()
    values, position, text = [], 0, text.strip()
    while position < len(text):
        value, end = decoder.raw_decode(text, position)
        values.append(value)
        position = len(text) - len(text[end:].lstrip())
    return values[0] if len(values) == 1 else values


def without_bookmarks(value: Any) -> Any:
    """A watch's responses without its bookmarks. A bookmark comes whenever the watch has
    been idle for the server's bookmark interval (30 s by default), so whether one falls
    within an example's `-max-time` is timing, not behaviour: the cookbook shows none."""
    if is_bookmark(value):
        return []
    if not isinstance(value, list):
        return value
    kept = [item for item in value if not is_bookmark(item)]
    return kept[0] if len(kept) == 1 else kept


def is_bookmark(value: Any) -> bool:
    return isinstance(value, dict) and value.keys() == {"resume_token", "bookmark"}


def check_json(documented: str, printed: str, ids: Ids) -> str | None:
    """None if the printed JSON is the documented JSON (times aside), else the difference."""
    try:
        actual = without_bookmarks(json_documents(printed))
    except json.JSONDecodeError:
        return f"printed no JSON:\n{printed}"
    ids.bind(json_documents(documented), actual)
    shown = json_documents(ids.apply(documented))
    expected = without_times(shown)
    if expected != without_times(actual):
        return (
            f"documented:\n{json.dumps(expected, indent=2)}\n"
            f"printed:\n{json.dumps(without_times(actual), indent=2)}"
        )
    if differences := etag_differences(shown, actual):
        return "\n".join(differences)
    return None


def check_error_text(documented: str, printed: str, ids: Ids) -> str | None:
    expected, actual = parse_error_text(documented), parse_error_text(printed)
    ids.bind(expected.details, actual.details)
    expected = parse_error_text(ids.apply(documented))
    if (
        expected.code == actual.code == grpc.StatusCode.DEADLINE_EXCEEDED
        and {expected.message, actual.message} <= DEADLINE_MESSAGES
    ):
        actual = ErrorText(actual.code, expected.message, actual.details)
    if expected != actual:
        return f"documented:\n{documented}\nprinted:\n{printed}"
    return None


async def check_example(example: Example, port: int, ids: Ids) -> str | None:
    """Run one cookbook command; None if it did what the cookbook says, else what went wrong."""
    argv = [ids.apply(word) for word in example.argv]
    if argv[0] != "grpcurl" or argv.count(DOC_ADDRESS) != 1:
        return f"not a grpcurl command on {DOC_ADDRESS}: {example.command}"
    argv[argv.index(DOC_ADDRESS)] = f"127.0.0.1:{port}"
    result = await grpcurl(*argv[1:])
    output = example.output
    if output is None:
        return None if result.code == 0 else f"failed: {result}"
    documented = ids.apply(output.text)
    if example.stderr is not None:  # responses on stdout, then the error that ended the call
        wanted = exit_code(parse_error_text(example.stderr.text).code)
        if result.code != wanted:
            return f"exit code {result.code}, documented {wanted}: {result}"
        return check_json(output.text, result.stdout, ids) or check_error_text(
            example.stderr.text, result.stderr, ids
        )
    if output.info == "json":
        status = json_documents(documented)
        if "-format-error" in argv and isinstance(status, dict) and status.get("code"):
            wanted, printed = RPC_ERROR_EXIT_BASE + status["code"], result.stderr
        else:
            wanted, printed = 0, result.stdout
        if result.code != wanted:
            return f"exit code {result.code}, documented {wanted}: {result}"
        return check_json(output.text, printed, ids)
    if output.text.startswith("ERROR:"):
        wanted = exit_code(parse_error_text(output.text).code)
        if result.code != wanted:
            return f"exit code {result.code}, documented {wanted}: {result}"
        return check_error_text(output.text, result.stderr, ids)
    if output.text.startswith("Error invoking method"):
        if result.code != CLIENT_ERROR_EXIT or result.stderr.strip() != documented.strip():
            return f"documented a client-side failure:\n{documented}\ngot: {result}"
        return None
    if result.code != 0:
        return f"failed: {result}"
    printed_lines = [line.rstrip() for line in result.stdout.strip().splitlines()]
    if printed_lines != documented.strip().splitlines():
        return f"documented:\n{documented}\nprinted:\n{result.stdout}"
    return None


async def test_every_cookbook_command_does_what_the_cookbook_says(
    server: RunningServer, seed: Seeder
) -> None:
    """Runs the cookbook top to bottom, as a reader would, on the data it describes."""
    markdown = COOKBOOK.read_text()
    examples = cookbook_examples(markdown)
    # Counted independently of the parser: every line anywhere in the file that starts
    # a grpcurl command (in a block of any kind), and every ```sh block.
    assert len(examples) == len(re.findall(r"^grpcurl\s+-", markdown, re.MULTILINE))
    assert len(examples) == len(re.findall(r"^```sh\s*$", markdown, re.MULTILINE))
    assert len(examples) >= 40

    await seed_cookbook(seed)
    ids = Ids(SEEDED_IDS)
    problems = []
    checked = 0
    for example in examples:
        if problem := await check_example(example, server.port, ids):
            problems.append(f"docs/grpcurl.md:{example.line}: {example.command}\n{problem}")
        checked += 1
    assert not problems, "\n\n".join(problems)
    assert checked == len(examples)
    with_output = [e for e in examples if e.output is not None]
    assert len(with_output) >= len(examples) * 3 // 4, "most examples should show their output"
