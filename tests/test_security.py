"""Security: bearer tokens, TLS and mutual TLS, and no secret in any log."""

from __future__ import annotations

import asyncio
import logging
import subprocess
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from flowservice._shared import settings_from_env
from flowservice.client import DEFAULT_TARGET, FlowClient, FlowClientSync, RpcError, Unauthenticated
from flowservice_server.app import start_server
from flowservice_server.config import (
    AuthSettings,
    DatabaseSettings,
    Settings,
    SettingsError,
    TlsSettings,
    settings_from,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from flowservice_server.app import RunningServer

TOKENS = ("s3cret-token-a", "s3cret-token-b")
#: Fail fast: no retries, and no waiting for a connection that will never be made.
NO_RETRIES = [("grpc.enable_retries", 0)]
FAIL_FAST: dict[str, Any] = {"options": NO_RETRIES, "wait_for_ready": False}


async def _serve(database_url: str, **settings: Any) -> RunningServer:
    return await start_server(
        Settings(address="127.0.0.1:0", database=DatabaseSettings(url=database_url), **settings)
    )


@pytest.fixture
async def guarded(any_backend_url: str) -> AsyncIterator[RunningServer]:
    running = await _serve(any_backend_url, auth=AuthSettings(tokens=TOKENS))
    yield running
    await running.stop(grace=None)


# --- tokens ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(None, id="no-token"),
        pytest.param("wrong", id="wrong-token"),
        pytest.param(TOKENS[0] + "x", id="longer-token"),
        pytest.param("", id="empty-token"),
    ],
)
async def test_a_missing_or_wrong_token_is_unauthenticated(
    guarded: RunningServer, token: str | None
) -> None:
    async with FlowClient(f"127.0.0.1:{guarded.port}", token=token, **FAIL_FAST) as client:
        with pytest.raises(RpcError) as raised:
            await client.create_flow("refused")
    error = raised.value
    assert error.code == grpc.StatusCode.UNAUTHENTICATED
    assert error.error_info is not None
    assert error.error_info.reason == "UNAUTHENTICATED"
    assert "Bearer" in error.message


@pytest.mark.parametrize("token", TOKENS)
async def test_every_accepted_token_works(guarded: RunningServer, token: str) -> None:
    async with FlowClient(f"127.0.0.1:{guarded.port}", token=token) as client:
        flow, created = await client.create_flow("allowed")
        assert created
        assert (await client.read_flow(flow.id)).name == "allowed"


async def test_a_refused_call_writes_nothing(guarded: RunningServer) -> None:
    target = f"127.0.0.1:{guarded.port}"
    async with FlowClient(target, token="wrong", **FAIL_FAST) as intruder:
        with pytest.raises(RpcError):
            await intruder.create_flow("refused")
    async with FlowClient(target, token=TOKENS[1]) as client:
        assert await client.count_flows() == 0


async def _health(target: str, *, credentials: grpc.ChannelCredentials | None = None) -> int:
    channel = (
        grpc.aio.secure_channel(target, credentials)
        if credentials
        else grpc.aio.insecure_channel(target)
    )
    async with channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=10
        )
        status: int = reply.status
        return status


async def test_health_stays_open_by_default(guarded: RunningServer) -> None:
    assert await _health(f"127.0.0.1:{guarded.port}") == health_pb2.HealthCheckResponse.SERVING


async def test_health_and_reflection_can_require_the_token_too(any_backend_url: str) -> None:
    running = await _serve(
        any_backend_url, auth=AuthSettings(tokens=TOKENS, open_health_and_reflection=False)
    )
    try:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await _health(f"127.0.0.1:{running.port}")
        assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        await running.stop(grace=None)


async def test_tokens_can_come_from_a_file(any_backend_url: str, tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("\nfile-token-1\nfile-token-2\n")
    running = await _serve(any_backend_url, auth=AuthSettings(tokens_file=str(tokens)))
    try:
        target = f"127.0.0.1:{running.port}"
        async with FlowClient(target, token="file-token-2") as client:
            assert await client.count_flows() == 0
        async with FlowClient(target, token="file-token-3", options=NO_RETRIES) as client:
            with pytest.raises(RpcError) as raised:
                await client.count_flows()
            assert raised.value.code == grpc.StatusCode.UNAUTHENTICATED
    finally:
        await running.stop(grace=None)


async def test_no_token_reaches_a_log(
    guarded: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        target = f"127.0.0.1:{guarded.port}"
        async with FlowClient(target, token="wrong-guess-123", options=NO_RETRIES) as intruder:
            with pytest.raises(RpcError):
                await intruder.count_flows()
        async with FlowClient(target, token=TOKENS[0]) as client:
            await client.count_flows()
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert "unauthenticated call to /flowservice.v1.FlowService/CountFlows" in text
    for secret in ("wrong-guess-123", *TOKENS):
        assert secret not in text


# --- TLS and mutual TLS --------------------------------------------------------------


@dataclass(frozen=True)
class Certificates:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    stranger_cert: Path
    stranger_key: Path

    def credentials(
        self, *, client: bool = False, stranger: bool = False
    ) -> grpc.ChannelCredentials:
        cert, key = (
            (self.stranger_cert, self.stranger_key)
            if stranger
            else (self.client_cert, self.client_key)
        )
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca.read_bytes(),
            private_key=key.read_bytes() if client or stranger else None,
            certificate_chain=cert.read_bytes() if client or stranger else None,
        )


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)


def _issue(directory: Path, name: str, ca: str, extensions: str) -> tuple[Path, Path]:
    """A P-256 key and a certificate for `name`, signed by the CA named `ca`."""
    key, csr, cert = (directory / f"{name}.{suffix}" for suffix in ("key", "csr", "pem"))
    ext = directory / f"{name}.ext"
    ext.write_text(extensions)
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key)
    _openssl("req", "-new", "-key", key, "-out", csr, "-subj", f"/CN={name}")
    _openssl(
        "x509",
        "-req",
        "-in",
        csr,
        "-CA",
        directory / f"{ca}.pem",
        "-CAkey",
        directory / f"{ca}.key",
        "-CAcreateserial",
        "-out",
        cert,
        "-days",
        "2",
        "-extfile",
        ext,
    )
    return cert, key


def _authority(directory: Path, name: str) -> None:
    key, cert = directory / f"{name}.key", directory / f"{name}.pem"
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key)
    _openssl(
        "req", "-x509", "-new", "-key", key, "-out", cert, "-days", "2", "-subj", f"/CN={name}"
    )


@pytest.fixture(scope="session")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    directory = tmp_path_factory.mktemp("tls")
    _authority(directory, "flowservice-test-ca")
    _authority(directory, "stranger-ca")
    server = "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"
    client = "extendedKeyUsage=clientAuth\n"
    server_cert, server_key = _issue(directory, "server", "flowservice-test-ca", server)
    client_cert, client_key = _issue(directory, "client", "flowservice-test-ca", client)
    stranger_cert, stranger_key = _issue(directory, "stranger", "stranger-ca", client)
    return Certificates(
        directory / "flowservice-test-ca.pem",
        server_cert,
        server_key,
        client_cert,
        client_key,
        stranger_cert,
        stranger_key,
    )


def _tls(certificates: Certificates, *, mutual: bool) -> TlsSettings:
    return TlsSettings(
        cert_file=str(certificates.server_cert),
        key_file=str(certificates.server_key),
        client_ca_file=str(certificates.ca) if mutual else "",
    )


@pytest.fixture
async def tls_server(
    any_backend_url: str, certificates: Certificates
) -> AsyncIterator[RunningServer]:
    running = await _serve(any_backend_url, tls=_tls(certificates, mutual=False))
    yield running
    await running.stop(grace=None)


@pytest.fixture
async def mtls_server(
    any_backend_url: str, certificates: Certificates
) -> AsyncIterator[RunningServer]:
    running = await _serve(any_backend_url, tls=_tls(certificates, mutual=True))
    yield running
    await running.stop(grace=None)


async def test_tls_serves_a_client_that_trusts_the_ca(
    tls_server: RunningServer, certificates: Certificates
) -> None:
    target = f"127.0.0.1:{tls_server.port}"
    async with FlowClient(target, credentials=certificates.credentials()) as client:
        flow, _ = await client.create_flow("over-tls")
        assert (await client.read_flow(flow.id)).name == "over-tls"


async def test_tls_refuses_plaintext(tls_server: RunningServer) -> None:
    async with FlowClient(f"127.0.0.1:{tls_server.port}", **FAIL_FAST, timeout=5) as client:
        with pytest.raises(RpcError) as raised:
            await client.count_flows()
    assert raised.value.code == grpc.StatusCode.UNAVAILABLE


async def test_mutual_tls_works_with_a_client_certificate(
    mtls_server: RunningServer, certificates: Certificates
) -> None:
    target = f"127.0.0.1:{mtls_server.port}"
    async with FlowClient(target, credentials=certificates.credentials(client=True)) as client:
        await client.create_flow("mutual")
        assert await client.count_flows() == 1


@pytest.mark.parametrize("stranger", [False, True], ids=["no-certificate", "foreign-ca"])
async def test_mutual_tls_refuses_clients_without_a_trusted_certificate(
    mtls_server: RunningServer, certificates: Certificates, stranger: bool
) -> None:
    credentials = certificates.credentials(stranger=stranger)
    target = f"127.0.0.1:{mtls_server.port}"
    async with FlowClient(target, credentials=credentials, **FAIL_FAST, timeout=5) as client:
        with pytest.raises(RpcError) as raised:
            await client.count_flows()
    assert raised.value.code == grpc.StatusCode.UNAVAILABLE


async def test_tls_and_tokens_together(any_backend_url: str, certificates: Certificates) -> None:
    running = await _serve(
        any_backend_url, tls=_tls(certificates, mutual=False), auth=AuthSettings(tokens=TOKENS)
    )
    target = f"127.0.0.1:{running.port}"
    try:
        async with FlowClient(target, credentials=certificates.credentials(), token=TOKENS[0]) as c:
            assert await c.count_flows() == 0
        async with FlowClient(
            target, credentials=certificates.credentials(), options=NO_RETRIES
        ) as anonymous:
            with pytest.raises(RpcError) as raised:
                await anonymous.count_flows()
            assert raised.value.code == grpc.StatusCode.UNAUTHENTICATED
    finally:
        await running.stop(grace=None)


def test_tls_settings_must_come_in_pairs(certificates: Certificates) -> None:
    with pytest.raises(SettingsError, match="both --tls-cert-file and --tls-key-file"):
        settings_from(["--tls-cert-file", str(certificates.server_cert)], {})
    with pytest.raises(SettingsError, match="needs TLS"):
        settings_from(["--tls-client-ca-file", str(certificates.ca)], {})
    with pytest.raises(SettingsError, match="--tls-key-file / FLOWSERVICE_TLS_KEY_FILE"):
        settings_from(["--tls-key-file", "/no/such/key.pem"], {})


def test_tokens_are_environment_only_and_never_in_repr() -> None:
    settings = settings_from([], {"FLOWSERVICE_AUTH_TOKENS": "alpha, beta"})
    assert settings.auth.accepted_tokens() == ("alpha", "beta")
    assert "alpha" not in repr(settings)
    with pytest.raises(SystemExit):
        settings_from(["--auth-tokens", "alpha"], {})


# --- FlowClient.from_env --------------------------------------------------------------


async def test_from_env_reads_target_token_and_mutual_tls(
    any_backend_url: str, certificates: Certificates, monkeypatch: pytest.MonkeyPatch
) -> None:
    running = await _serve(
        any_backend_url, tls=_tls(certificates, mutual=True), auth=AuthSettings(tokens=TOKENS)
    )
    try:
        monkeypatch.setenv("FLOWSERVICE_TARGET", f"localhost:{running.port}")
        monkeypatch.setenv("FLOWSERVICE_TOKEN", TOKENS[0])
        monkeypatch.setenv("FLOWSERVICE_TIMEOUT", "30")
        monkeypatch.setenv("FLOWSERVICE_TLS_CA_FILE", str(certificates.ca))
        monkeypatch.setenv("FLOWSERVICE_TLS_CLIENT_CERT_FILE", str(certificates.client_cert))
        monkeypatch.setenv("FLOWSERVICE_TLS_CLIENT_KEY_FILE", str(certificates.client_key))
        async with FlowClient.from_env() as client:
            await client.create_flow("from-env")
            assert await client.count_flows() == 1
        with FlowClientSync.from_env() as sync_client:
            assert await asyncio.to_thread(sync_client.count_flows) == 1
        # A keyword wins over its variable.
        async with FlowClient.from_env(token="wrong", wait_for_ready=False) as client:
            with pytest.raises(Unauthenticated):
                await client.count_flows()
    finally:
        await running.stop(grace=None)


def test_from_env_needs_both_halves_of_a_client_certificate(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FLOWSERVICE_TLS_CLIENT_CERT_FILE", "client.pem")
    monkeypatch.delenv("FLOWSERVICE_TLS_CLIENT_KEY_FILE", raising=False)
    with pytest.raises(ValueError, match="FLOWSERVICE_TLS_CLIENT_KEY_FILE"):
        FlowClientSync.from_env()


def test_from_env_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TARGET", "TOKEN", "TIMEOUT", "TLS_CA_FILE", "TLS_CLIENT_CERT_FILE"):
        monkeypatch.delenv(f"FLOWSERVICE_{name}", raising=False)
    monkeypatch.delenv("FLOWSERVICE_TLS_CLIENT_KEY_FILE", raising=False)
    settings = settings_from_env({}, target=None, token=None, timeout=None, credentials=None)
    assert settings == (DEFAULT_TARGET, None, None, None)
    with pytest.raises(ValueError, match="FLOWSERVICE_TIMEOUT"):
        settings_from_env(
            {"FLOWSERVICE_TIMEOUT": "soon"}, target=None, token=None, timeout=None, credentials=None
        )
