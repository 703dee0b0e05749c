"""Every RPC answers the same over gRPC, Connect (JSON and binary) and gRPC-Web.

One server per test listens for gRPC and, with `--http-address`, for HTTP;
each scenario is run over the four transports (`tests/http_transports.py`)
and their answers (responses, status code, message, google.rpc details) must
be equal: reads exactly, writes after naming each transport's own flows
apart. Then what the HTTP side adds: metadata and tokens, deadlines, the
access log, CORS, compression, protocol errors, TLS and draining.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import http.client
import itertools
import json
import logging
import re
import signal
import ssl
import statistics
import struct
import time
import urllib.request
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio
import pytest
from google.protobuf import json_format, struct_pb2

from flowservice.v1 import filters_pb2, flow_service_pb2
from flowservice_server.app import RunningServer, start_server
from flowservice_server.config import (
    AuthSettings,
    DatabaseSettings,
    Settings,
    SettingsError,
    TlsSettings,
    settings_from,
)
from tests.http_transports import TRANSPORTS, Answer, GrpcCaller, HttpCaller, caller
from tests.processes import start
from tests.test_security import certificates  # noqa: F401  # a fixture

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable
    from pathlib import Path

    from google.protobuf.message import Message

    from tests.test_security import Certificates

pb = flow_service_pb2
MISSING_ID = "3f2f054e-3137-49b6-a5a3-0f1d6e7f2a10"
ORIGIN = "http://page.test"


@contextlib.asynccontextmanager
async def serving(url: str, **settings: Any) -> AsyncIterator[RunningServer]:
    running = await start_server(
        Settings(
            address="127.0.0.1:0",
            http_address="127.0.0.1:0",
            database=DatabaseSettings(url=url),
            **settings,
        )
    )
    try:
        yield running
    finally:
        await running.stop(grace=None)


@pytest.fixture
async def both(database_url: str) -> AsyncIterator[RunningServer]:
    async with serving(database_url) as running:
        yield running


@contextlib.asynccontextmanager
async def callers(
    running: RunningServer, token: str | None = None
) -> AsyncIterator[dict[str, GrpcCaller | HttpCaller]]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        assert running.http_port is not None
        yield {t: caller(t, channel, running.http_port, token) for t in TRANSPORTS}


async def same_everywhere(
    running: RunningServer, scenario: Callable[[GrpcCaller | HttpCaller], Awaitable[list[Answer]]]
) -> list[Answer]:
    """Run `scenario` over every transport; all answers must equal gRPC's. Returns gRPC's."""
    async with callers(running) as by_transport:
        answers = {t: await scenario(c) for t, c in by_transport.items()}
    expected = [a.comparable() for a in answers["grpc"]]
    for transport, got in answers.items():
        assert [a.comparable() for a in got] == expected, transport
    return answers["grpc"]


def labels(**values: Any) -> struct_pb2.Struct:
    labels = struct_pb2.Struct()
    labels.update(values)
    return labels


async def seed_flows(running: RunningServer) -> list[str]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        grpc_caller = GrpcCaller(channel)
        ids = []
        for name, tags in (("etl", ["prod", "nightly"]), ("ingest", ["prod"]), ("report", [])):
            answer = await grpc_caller.call(
                "CreateFlow", pb.CreateFlowRequest(name=name, tags=tags, labels=labels(team="x"))
            )
            ids.append(answer.responses[0].flow.id)  # type: ignore[attr-defined]
        return ids


def codes(answers: list[Answer]) -> list[grpc.StatusCode]:
    return [a.code for a in answers]


# --- every RPC, every transport --------------------------------------------------------


async def test_reads_and_their_errors_answer_the_same(both: RunningServer) -> None:
    ids = await seed_flows(both)
    prod = filters_pb2.FlowFilter(tags=filters_pb2.FlowFilterTags(all=["prod"]))

    async def scenario(c: GrpcCaller | HttpCaller) -> list[Answer]:
        first_page = await c.call("ReadFlows", pb.ReadFlowsRequest(limit=1))
        token = first_page.responses[0].next_page_token  # type: ignore[attr-defined]
        return [
            await c.call("ReadFlow", pb.ReadFlowRequest(id=ids[0])),
            await c.call("ReadFlow", pb.ReadFlowRequest(id=MISSING_ID)),
            await c.call("ReadFlow", pb.ReadFlowRequest(id="nope")),
            await c.call("ReadFlowByName", pb.ReadFlowByNameRequest(name="ingest")),
            await c.call("ReadFlowByName", pb.ReadFlowByNameRequest(name="")),
            await c.call("ReadFlows", pb.ReadFlowsRequest(flows=prod, include_total_size=True)),
            first_page,
            await c.call("ReadFlows", pb.ReadFlowsRequest(limit=1, page_token=token)),
            await c.call("ReadFlows", pb.ReadFlowsRequest(limit=-1)),
            await c.call("CountFlows", pb.CountFlowsRequest(flows=prod)),
            await c.call("BatchGetFlows", pb.BatchGetFlowsRequest(ids=ids[:2], names=["report"])),
            await c.call("BatchGetFlows", pb.BatchGetFlowsRequest(ids=[MISSING_ID])),
            await c.call("StreamFlows", pb.StreamFlowsRequest(batch_size=2)),
            await c.call("StreamFlows", pb.StreamFlowsRequest(flows=prod, batch_size=1)),
            await c.call("StreamFlows", pb.StreamFlowsRequest(batch_size=-1)),
        ]

    answers = await same_everywhere(both, scenario)
    ok, invalid = grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT
    assert codes(answers) == [
        ok, grpc.StatusCode.NOT_FOUND, invalid, ok, invalid, ok, ok, ok, invalid,
        ok, ok, grpc.StatusCode.NOT_FOUND, ok, ok, invalid,
    ]  # fmt: skip
    assert len(answers[12].responses) == 2  # 3 flows in batches of 2
    assert all(a.details for a in answers if a.code != ok)  # details, not only codes


def normalized(answers: list[Answer], prefix: str) -> str:
    """The answers as JSON, with each transport's own names, ids, times and etags made alike."""
    text = json.dumps([a.comparable()[:3] for a in answers], default=str)
    text += json.dumps(
        [[json_format.MessageToDict(d) for d in a.details] for a in answers], default=str
    )
    text = text.replace(prefix, "P-")
    ids: dict[str, str] = {}
    for found in re.findall(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", text):
        ids.setdefault(found, f"<id{len(ids)}>")
    for found, placeholder in ids.items():
        text = text.replace(found, placeholder)
    text = re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", "<time>", text)
    etags = re.findall(r"""etag["']?:? ["']([A-Za-z0-9_-]{16})["']""", text)
    for etag in etags:
        text = text.replace(etag, "<etag>")
    return text


async def test_writes_and_their_errors_answer_the_same(both: RunningServer) -> None:
    async def scenario(c: GrpcCaller | HttpCaller, prefix: str) -> list[Answer]:
        created = await c.call(
            "CreateFlow", pb.CreateFlowRequest(name=prefix + "a", tags=["t"], labels=labels(n=1))
        )
        flow = created.responses[0].flow  # type: ignore[attr-defined]
        batch = await c.call(
            "BatchCreateFlows",
            pb.BatchCreateFlowsRequest(
                requests=[
                    pb.CreateFlowRequest(name=prefix + "b"),
                    pb.CreateFlowRequest(name=prefix + "a"),
                ]
            ),
        )
        second = batch.responses[0].responses[0].flow  # type: ignore[attr-defined]
        return [
            created,
            await c.call("CreateFlow", pb.CreateFlowRequest(name=prefix + "a")),
            await c.call("CreateFlow", pb.CreateFlowRequest(name="")),
            await c.call("CreateFlow", pb.CreateFlowRequest(name="x", labels=labels(bad=[1]))),
            batch,
            await c.call("BatchCreateFlows", pb.BatchCreateFlowsRequest()),
            await c.call("UpdateFlow", pb.UpdateFlowRequest(id=flow.id, tags=["u"])),
            await c.call(
                "UpdateFlow", pb.UpdateFlowRequest(id=flow.id, tags=["v"], etag=flow.etag)
            ),
            await c.call("UpdateFlow", pb.UpdateFlowRequest(id=MISSING_ID, tags=["u"])),
            await c.call("DeleteFlow", pb.DeleteFlowRequest(id=second.id)),
            await c.call("DeleteFlow", pb.DeleteFlowRequest(id=second.id)),
            await c.call("ReadFlow", pb.ReadFlowRequest(id=second.id)),
        ]

    async with callers(both) as by_transport:
        transcripts = {
            t: normalized(await scenario(c, f"{t}-"), f"{t}-") for t, c in by_transport.items()
        }
    for transport, transcript in transcripts.items():
        assert transcript == transcripts["grpc"], transport
    for expected in ('"created": true', "ABORTED", "NOT_FOUND", "INVALID_ARGUMENT"):
        assert expected in transcripts["grpc"]


async def test_watch_answers_the_same(both: RunningServer) -> None:
    await seed_flows(both)

    def done(message: Message) -> bool:
        return message.HasField("initial_state_done")

    async def scenario(c: GrpcCaller | HttpCaller) -> list[Answer]:
        return [
            await c.call("WatchFlows", pb.WatchFlowsRequest(send_initial_state=True), until=done),
            await c.call("WatchFlows", pb.WatchFlowsRequest(resume_token="damaged")),
            await c.call(
                "WatchFlows",
                pb.WatchFlowsRequest(resume_token="x", send_initial_state=True),
            ),
        ]

    answers = await same_everywhere(both, scenario)
    assert [a.WhichOneof("event") for a in answers[0].responses] == [
        "existing",
        "existing",
        "existing",
        "initial_state_done",
    ]
    assert codes(answers)[1:] == [grpc.StatusCode.INVALID_ARGUMENT] * 2


async def test_a_watch_sees_a_write_over_every_transport(any_backend_url: str) -> None:
    async with serving(any_backend_url) as running, callers(running) as by_transport:
        watches = {
            t: asyncio.ensure_future(
                c.call(
                    "WatchFlows",
                    pb.WatchFlowsRequest(),
                    until=lambda m: m.HasField("created"),
                )
            )
            for t, c in by_transport.items()
        }
        # A write before a watch has begun is not a change it sees: keep writing
        # until every watch has seen one.
        async with asyncio.timeout(30):
            for number in itertools.count():
                await by_transport["grpc"].call(
                    "CreateFlow", pb.CreateFlowRequest(name=f"seen-{number}")
                )
                await asyncio.wait(watches.values(), timeout=0.5)
                if all(watch.done() for watch in watches.values()):
                    break
        for transport, watch in watches.items():
            answer = watch.result()
            assert answer.code == grpc.StatusCode.OK, transport
            assert answer.responses[-1].created.name.startswith("seen-"), transport  # type: ignore[attr-defined]


async def test_undecodable_bytes_are_refused_alike(any_backend_url: str) -> None:
    async with serving(any_backend_url) as running, callers(running) as by_transport:
        answers = {
            t: await c.call("ReadFlow", b"\xff\xff\xff")
            for t, c in by_transport.items()
            if t != "connect-json"
        }
        json_answer = await by_transport["connect-json"].call("ReadFlow", b'{"id": ')
    assert {a.code for a in answers.values()} == {grpc.StatusCode.INVALID_ARGUMENT}
    assert len({repr(a.comparable()) for a in answers.values()}) == 1
    assert json_answer.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "not valid JSON" in json_answer.message
    assert json_answer.details[-1].value == answers["grpc"].details[-1].value  # same ErrorInfo


async def test_an_unknown_json_field_is_refused_not_ignored(any_backend_url: str) -> None:
    async with serving(any_backend_url) as running, callers(running) as by_transport:
        answer = await by_transport["connect-json"].call(
            "ReadFlows", b'{"flows": {"tags": {"all": ["x"]}}, "includeTotalSizes": true}'
        )
    assert answer.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "includeTotalSizes" in answer.message


# --- what the HTTP side adds -------------------------------------------------------------


async def test_tokens_are_checked_alike(any_backend_url: str) -> None:
    auth = AuthSettings(tokens=("s3cret",))
    async with serving(any_backend_url, auth=auth) as running:
        for token, expected in ((None, grpc.StatusCode.UNAUTHENTICATED), ("s3cret", None)):
            async with callers(running, token) as by_transport:
                answers = {
                    t: await c.call("CountFlows", pb.CountFlowsRequest())
                    for t, c in by_transport.items()
                }
            comparable = {t: a.comparable() for t, a in answers.items()}
            assert all(v == comparable["grpc"] for v in comparable.values()), comparable
            assert answers["grpc"].code == (expected or grpc.StatusCode.OK)
        async with callers(running, "wrong") as by_transport:
            wrong = await by_transport["connect-json"].call("CountFlows", pb.CountFlowsRequest())
        assert wrong.code == grpc.StatusCode.UNAUTHENTICATED


async def test_deadlines_travel_in_the_protocols_headers(any_backend_url: str) -> None:
    async with serving(any_backend_url) as running, callers(running) as by_transport:
        for transport, c in by_transport.items():
            started = asyncio.get_running_loop().time()
            answer = await c.call("WatchFlows", pb.WatchFlowsRequest(), timeout_ms=300)
            elapsed = asyncio.get_running_loop().time() - started
            assert answer.code == grpc.StatusCode.DEADLINE_EXCEEDED, transport
            assert 0.25 < elapsed < 5, transport
        with pytest.raises(AssertionError, match="connect-timeout-ms"):
            await HttpCaller(
                running.http_port or 0, "connect-json", {"connect-timeout-ms": "x"}
            ).call("CountFlows", pb.CountFlowsRequest())


async def test_http_calls_reach_the_access_log_and_metrics(
    any_backend_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="flowservice.access")
    async with (
        serving(any_backend_url, metrics_address="127.0.0.1:0") as running,
        callers(running) as by_transport,
    ):
        for c in by_transport.values():
            await c.call("ReadFlow", pb.ReadFlowRequest(id=MISSING_ID))
            await c.call("StreamFlows", pb.StreamFlowsRequest())
        url = f"http://127.0.0.1:{running.metrics_port}/metrics"
        metrics = await asyncio.to_thread(lambda: urllib.request.urlopen(url).read().decode())
    lines = [r.getMessage() for r in caplog.records if r.name == "flowservice.access"]
    read = [line for line in lines if "/ReadFlow NOT_FOUND" in line]
    stream = [line for line in lines if "/StreamFlows OK" in line]
    assert len(read) == len(stream) == len(TRANSPORTS), lines
    assert sum("ipv4:127.0.0.1:" in line for line in read) == len(TRANSPORTS)
    counted = [
        line
        for line in metrics.splitlines()
        if "ReadFlow" in line and "NOT_FOUND" in line and "_total" in line
    ]
    assert counted, metrics
    assert float(counted[0].rsplit(" ", 1)[1]) == len(TRANSPORTS)


def _post(
    port: int, path: str, body: bytes, headers: dict[str, str], method: str = "POST"
) -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request(method, path, body, headers)
    response = connection.getresponse()
    response.read()
    connection.close()
    return response


async def test_browsers_get_cors_for_allowed_origins_only(any_backend_url: str) -> None:
    path = "/flowservice.v1.FlowService/CountFlows"
    preflight = {
        "origin": ORIGIN,
        "access-control-request-method": "POST",
        "access-control-request-headers": "content-type,connect-protocol-version",
    }
    call = {"origin": ORIGIN, "content-type": "application/json"}
    async with serving(any_backend_url, http_allowed_origins=(ORIGIN,)) as running:
        port = running.http_port or 0
        allowed = await asyncio.to_thread(_post, port, path, b"", preflight, "OPTIONS")
        assert allowed.status == 204
        assert allowed.getheader("access-control-allow-origin") == ORIGIN
        assert "connect-protocol-version" in (
            allowed.getheader("access-control-allow-headers") or ""
        )
        answered = await asyncio.to_thread(_post, port, path, b"{}", call)
        assert answered.status == 200
        assert answered.getheader("access-control-allow-origin") == ORIGIN
        stranger = {**preflight, "origin": "http://elsewhere.test"}
        refused = await asyncio.to_thread(_post, port, path, b"", stranger, "OPTIONS")
        assert refused.status == 403
        assert refused.getheader("access-control-allow-origin") is None
    async with serving(any_backend_url) as running:  # the default: no origin at all
        closed = await asyncio.to_thread(
            _post, running.http_port or 0, path, b"", preflight, "OPTIONS"
        )
        assert closed.status == 403


async def test_requests_the_protocols_do_not_allow_are_refused(any_backend_url: str) -> None:
    service = "/flowservice.v1.FlowService"
    json_type = {"content-type": "application/json"}
    async with serving(any_backend_url) as running:
        port = running.http_port or 0
        cases = [
            (f"{service}/Nope", b"{}", json_type, "POST", 404),
            (f"{service}/CountFlows", b"", {}, "GET", 405),
            (f"{service}/CountFlows", b"{}", {"content-type": "text/plain"}, "POST", 415),
            (f"{service}/StreamFlows", b"{}", json_type, "POST", 415),
            (
                f"{service}/CountFlows",
                b"{}",
                {"content-type": "application/json", "content-encoding": "br"},
                "POST",
                415,
            ),
        ]
        for path, body, headers, method, status in cases:
            response = await asyncio.to_thread(_post, port, path, body, headers, method)
            assert response.status == status, (path, headers)


async def test_gzip_requests_are_accepted(any_backend_url: str) -> None:
    async with serving(any_backend_url) as running:
        port = running.http_port or 0
        body = gzip.compress(json.dumps({"name": "zipped"}).encode())
        headers = {"content-type": "application/json", "content-encoding": "gzip"}
        path = "/flowservice.v1.FlowService/CreateFlow"
        response = await asyncio.to_thread(_post, port, path, body, headers)
        assert response.status == 200
        message = gzip.compress(pb.CountFlowsRequest().SerializeToString())
        enveloped = struct.pack(">BI", 1, len(message)) + message
        web = {"content-type": "application/grpc-web+proto", "grpc-encoding": "gzip"}
        answer = await asyncio.to_thread(
            _post, port, "/flowservice.v1.FlowService/CountFlows", enveloped, web
        )
        assert answer.status == 200


def _count_over_https(port: int, context: ssl.SSLContext) -> bytes:
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=30)
    try:
        connection.request(
            "POST",
            "/flowservice.v1.FlowService/CountFlows",
            b"{}",
            {"content-type": "application/json"},
        )
        return connection.getresponse().read()
    finally:
        connection.close()


async def test_https_when_tls_is_configured(
    any_backend_url: str,
    certificates: Certificates,  # noqa: F811  # the fixture imported above
) -> None:
    tls = TlsSettings(
        cert_file=str(certificates.server_cert), key_file=str(certificates.server_key)
    )
    async with serving(any_backend_url, tls=tls) as running:
        context = ssl.create_default_context(cafile=str(certificates.ca))
        port = running.http_port or 0
        assert json.loads(await asyncio.to_thread(_count_over_https, port, context)) == {}
        with pytest.raises((ConnectionError, http.client.HTTPException, OSError)):
            await asyncio.to_thread(_post, running.http_port or 0, "/", b"", {})


async def test_mutual_tls_asks_http_clients_for_a_certificate_too(
    any_backend_url: str,
    certificates: Certificates,  # noqa: F811  # the fixture imported above
) -> None:
    tls = TlsSettings(
        cert_file=str(certificates.server_cert),
        key_file=str(certificates.server_key),
        client_ca_file=str(certificates.ca),
    )
    async with serving(any_backend_url, tls=tls) as running:
        port = running.http_port or 0
        anonymous = ssl.create_default_context(cafile=str(certificates.ca))
        with pytest.raises((ssl.SSLError, ConnectionError, http.client.HTTPException)):
            await asyncio.to_thread(_count_over_https, port, anonymous)
        known = ssl.create_default_context(cafile=str(certificates.ca))
        known.load_cert_chain(str(certificates.client_cert), str(certificates.client_key))
        assert json.loads(await asyncio.to_thread(_count_over_https, port, known)) == {}


async def test_draining_ends_http_streams_too(any_backend_url: str) -> None:
    running = await start_server(
        Settings(
            address="127.0.0.1:0",
            http_address="127.0.0.1:0",
            database=DatabaseSettings(url=any_backend_url),
        )
    )
    watchers = [
        HttpCaller(running.http_port or 0, protocol).call("WatchFlows", pb.WatchFlowsRequest())
        for protocol in ("connect-json", "grpc-web")
    ]
    pending = [asyncio.ensure_future(w) for w in watchers]
    await asyncio.sleep(1.0)  # the watches have begun
    async with asyncio.timeout(20):
        await running.stop(grace=10)
        answers = await asyncio.gather(*pending)
    for answer in answers:
        assert answer.code == grpc.StatusCode.UNAVAILABLE
        assert answer.details  # the resume token travels in the details, as over gRPC


def test_the_http_address_and_origins_are_settings() -> None:
    settings = settings_from(
        ["--http-address", "127.0.0.1:8080", "--http-allowed-origins", "https://a.test, *"], {}
    )
    assert settings.http_address == "127.0.0.1:8080"
    assert settings.http_allowed_origins == ("https://a.test", "*")
    from_env = settings_from([], {"FLOWSERVICE_HTTP_ADDRESS": "[::1]:0"})
    assert from_env.http_address == "[::1]:0"
    assert settings_from([], {}).http_address == ""  # off by default
    with pytest.raises(SettingsError, match="origin"):
        settings_from(["--http-allowed-origins", "a.test"], {})


async def test_workers_share_the_http_port_and_all_serve(tmp_path: Path) -> None:
    process = await start(
        ["--address", "127.0.0.1:0", "--http-address", "127.0.0.1:0", "--workers", "2"],
        tmp_path,
        {"FLOWSERVICE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"},
    )
    try:
        assert process.process.stderr is not None
        found = None
        while found is None:  # the HTTP address is logged right after the gRPC one
            line = await asyncio.wait_for(process.process.stderr.readline(), timeout=30)
            process.log.append(line.decode())
            found = re.search(r"gRPC-Web on http://[\d.]+:(\d+)", line.decode())
        port = int(found.group(1))
        for number in range(24):  # a new connection each time: the kernel spreads them
            answer = await HttpCaller(port, "connect-json").call(
                "CreateFlow", pb.CreateFlowRequest(name=f"flow-{number}")
            )
            assert answer.code == grpc.StatusCode.OK
        assert await process.stop() == 0
    finally:
        if process.process.returncode is None:
            await process.stop(signal.SIGKILL)
    access = [line for line in process.log if "flowservice.access" in line]
    pids = {match.group(1) for line in access if (match := re.search(r"\[(\d+)\]", line))}
    assert len(access) == 24
    assert len(pids) == 2, "both workers should have served HTTP calls"


async def test_calls_on_a_kept_alive_connection_are_not_held_back(any_backend_url: str) -> None:
    """With Nagle's algorithm on the server's socket, every call after the first on a
    connection waits for the client's delayed ACK: 40 ms on Linux, whatever the load."""
    async with serving(any_backend_url) as running:

        def timed_calls() -> list[float]:
            connection = http.client.HTTPConnection("127.0.0.1", running.http_port, timeout=30)
            durations = []
            try:
                for _ in range(21):
                    started = time.perf_counter()
                    connection.request(
                        "POST",
                        "/flowservice.v1.FlowService/CountFlows",
                        b"{}",
                        {"content-type": "application/json"},
                    )
                    assert connection.getresponse().read() == b"{}"
                    durations.append(time.perf_counter() - started)
                return durations[1:]  # the calls on the kept-alive connection
            finally:
                connection.close()

        durations = await asyncio.to_thread(timed_calls)
    median = statistics.median(durations)
    assert median < 0.03, f"a call on a kept-alive connection takes {median * 1000:.0f} ms"
