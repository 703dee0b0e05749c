"""deploy/: the Dockerfile's instructions and the Kubernetes manifests, checked as far as
this machine can (no container engine that can pull a base image).

- The manifests are validated (strictly: unknown fields fail) against the
  Kubernetes OpenAPI schemas of the oldest version whose gRPC probes are GA
  (1.27) and of the newest the validator knows, with `kubernetes-validate`.
- The Dockerfile is parsed with `dockerfile-parse` and its instructions checked.
- Both are checked against the server: every FLOWSERVICE_* variable they set
  is a real setting with a valid value, the HEALTHCHECK command runs against a
  real server, the drain fits in the termination grace period.
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import shlex
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from dockerfile_parse import DockerfileParser

from flowservice_server import app, config, supervisor
from flowservice_server.config import settings_from

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
MANIFESTS = sorted((DEPLOY / "kubernetes").glob("*.yaml"))
#: gRPC probes are GA from 1.27; the validator's own newest schemas too.
KUBERNETES_VERSIONS = ("1.27.0", kubernetes_validate.latest_version())


def _documents() -> list[dict[str, Any]]:
    return [doc for path in MANIFESTS for doc in yaml.safe_load_all(path.read_text()) if doc]


def _one(kind: str) -> dict[str, Any]:
    (found,) = [doc for doc in _documents() if doc["kind"] == kind]
    return found


def _container() -> dict[str, Any]:
    containers: list[dict[str, Any]] = _one("Deployment")["spec"]["template"]["spec"]["containers"]
    (container,) = containers
    return container


def _dockerfile() -> DockerfileParser:
    return DockerfileParser(str(DEPLOY / "Dockerfile"))


def _instructions(stage: int | None = None) -> list[tuple[str, str]]:
    """(instruction, value) of the Dockerfile, of one stage (0-based; -1 the last) if given."""
    stages: list[list[tuple[str, str]]] = []
    for item in _dockerfile().structure:
        if item["instruction"] == "FROM":
            stages.append([])
        if stages and item["instruction"] != "COMMENT":
            stages[-1].append((item["instruction"], item["value"]))
    if stage is None:
        return [pair for instructions in stages for pair in instructions]
    return stages[stage]


# --- Kubernetes ------------------------------------------------------------------------


def test_there_is_a_deployment_a_headless_service_and_a_disruption_budget() -> None:
    kinds = sorted(doc["kind"] for doc in _documents())
    assert kinds == ["Deployment", "PodDisruptionBudget", "Service"]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("path", MANIFESTS, ids=lambda path: path.name)
def test_each_manifest_matches_the_kubernetes_schema(path: Path, version: str) -> None:
    for document in yaml.safe_load_all(path.read_text()):
        kubernetes_validate.validate(document, version, strict=True)


@pytest.mark.parametrize(
    "breakage",
    [
        ("livenessProbe", {"grpc": {"port": "grpc"}}),  # gRPC probes take a number
        ("readinessProbe", {"grpc": {"port": 50051}, "timeout": 3}),  # misspelled field
        ("resources", {"limits": {"cpu": ["2"]}}),
    ],
    ids=["port-name", "unknown-field", "bad-quantity"],
)
def test_the_validator_refuses_a_broken_deployment(breakage: tuple[str, Any]) -> None:
    """The schema check can fail: the same Deployment with one mistake does."""
    deployment = _one("Deployment")
    key, value = breakage
    deployment["spec"]["template"]["spec"]["containers"][0][key] = value
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)


def test_probes_are_native_grpc_on_the_grpc_port() -> None:
    container = _container()
    port = next(p["containerPort"] for p in container["ports"] if p["name"] == "grpc")
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"]["port"] == port, probe
    # Liveness must not follow the database: the health entry that never does.
    assert container["livenessProbe"]["grpc"]["service"] == app.LIVENESS_NAME
    assert "service" not in container["readinessProbe"]["grpc"]


def test_the_kubelet_waits_longer_than_the_drain() -> None:
    pod = _one("Deployment")["spec"]["template"]["spec"]
    container = _container()
    settings = settings_from([], _environment(container["env"]))
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    drain = int(command[1]) + settings.grace_period + supervisor.EXIT_MARGIN_SECONDS
    assert pod["terminationGracePeriodSeconds"] > drain


def test_the_pod_runs_unprivileged_on_a_read_only_root() -> None:
    pod = _one("Deployment")["spec"]["template"]["spec"]
    container = _container()
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["automountServiceAccountToken"] is False
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    # The one place the server writes (the supervisor's metrics files) is a volume.
    assert {m["mountPath"] for m in container["volumeMounts"]} == {"/tmp"}
    assert {"cpu", "memory"} <= set(container["resources"]["limits"])
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])


def test_service_and_budget_select_the_deployments_pods() -> None:
    labels = _one("Deployment")["spec"]["template"]["metadata"]["labels"]
    service = _one("Service")["spec"]
    assert service["clusterIP"] == "None"  # headless: clients balance over the pod IPs
    assert service["selector"].items() <= labels.items()
    budget = _one("PodDisruptionBudget")["spec"]
    assert budget["selector"]["matchLabels"].items() <= labels.items()
    assert budget["maxUnavailable"] == 1
    ports = {p["name"] for p in _container()["ports"]}
    assert {p["targetPort"] for p in service["ports"]} <= ports


def _environment(env: list[dict[str, Any]]) -> dict[str, str]:
    """The container's plain variables (those from Secrets stand in as a PostgreSQL URL)."""
    values = {}
    for variable in env:
        if "valueFrom" in variable:
            values[variable["name"]] = "postgresql://user:secret@db:5432/flowservice"
        else:
            values[variable["name"]] = variable["value"]
    return values


def _known_variables() -> set[str]:
    return {option.variable for option in config.options()}


def test_the_deployments_variables_are_settings_with_valid_values() -> None:
    environment = _environment(_container()["env"])
    assert set(environment) <= _known_variables()
    settings = settings_from([], environment)
    assert settings.address == "0.0.0.0:50051"  # the pod IP, not loopback
    assert settings.database.url.startswith("postgresql+asyncpg://")
    metrics_port = next(p for p in _container()["ports"] if p["name"] == "metrics")
    assert settings.metrics_address.endswith(f":{metrics_port['containerPort']}")


# --- the Dockerfile --------------------------------------------------------------------


def test_the_image_is_built_in_two_stages_and_runs_unprivileged() -> None:
    parser = _dockerfile()
    assert len(parser.parent_images) == 2
    build, runtime = _instructions(0), _instructions(-1)
    assert build[0] == ("FROM", "${PYTHON_IMAGE} AS build")
    assert ("COPY", "--from=build /opt/flowservice /opt/flowservice") in runtime
    assert not any(name == "RUN" and "pip install" in value for name, value in runtime)
    user = [value for name, value in runtime if name == "USER"]
    assert user, "the runtime stage must drop root"
    uid = user[-1].split(":")[0]
    assert uid.isdigit()
    assert int(uid) != 0
    pod = _one("Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == int(uid)


def test_the_image_listens_on_every_interface_and_stops_on_sigterm() -> None:
    runtime = dict(_instructions(-1))
    environment = _dockerfile().envs
    flowservice = {k: v for k, v in environment.items() if k.startswith("FLOWSERVICE_")}
    assert set(flowservice) <= _known_variables()
    settings = settings_from([], flowservice)
    assert settings.address.startswith("0.0.0.0:")
    assert runtime["EXPOSE"] == settings.address.rpartition(":")[2]
    assert runtime["STOPSIGNAL"] == "SIGTERM"
    assert json.loads(runtime["ENTRYPOINT"]) == ["flowservice"]
    assert json.loads(runtime["CMD"]) == ["serve"]


def _healthcheck() -> list[str]:
    value = dict(_instructions(-1))["HEALTHCHECK"]
    options, _, command = value.partition("CMD")
    assert "--interval" in options
    parsed: list[str] = json.loads(command.strip())
    return parsed


def test_the_build_context_holds_what_the_dockerfile_copies() -> None:
    """Each COPY source exists and .dockerignore lets it through."""
    rules = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def ignored(path: str) -> bool:
        verdict = False
        for rule in rules:
            negated, pattern = rule.startswith("!"), rule.lstrip("!").rstrip("/")
            if fnmatch.fnmatch(path, pattern) or path.startswith(pattern + "/"):
                verdict = not negated
        return verdict

    sources = [
        source
        for name, value in _instructions()
        if name == "COPY" and not value.startswith("--from")
        for source in shlex.split(value)[:-1]
    ]
    assert sources
    for source in sources:
        assert (ROOT / source).exists(), source
        assert not ignored(source.rstrip("/")), f"{source} is excluded by .dockerignore"
    assert ignored(".venv")
    assert ignored(".git")


@pytest.fixture
async def serving(any_backend_url: str) -> Any:
    settings = config.Settings(
        address="127.0.0.1:0", database=config.DatabaseSettings(url=any_backend_url)
    )
    running = await app.start_server(settings)
    yield running
    await running.stop(grace=None)


async def _probe(command: list[str], port: int) -> tuple[int, str]:
    """The HEALTHCHECK command, aimed at `port`, run as the image would run it."""
    assert command[0] == "python"
    # The image's port, here a free one.
    arguments = [argument.replace(":50051", f":{port}") for argument in command[1:]]
    process = await asyncio.create_subprocess_exec(
        sys.executable, *arguments, stdout=asyncio.subprocess.PIPE
    )
    stdout, _ = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode is not None
    return process.returncode, stdout.decode().strip()


async def test_the_healthcheck_command_reports_a_real_servers_health(serving: Any) -> None:
    command = _healthcheck()
    assert await _probe(command, serving.port) == (0, "SERVING")
    liveness = [*command, "--service", app.LIVENESS_NAME]
    assert await _probe(liveness, serving.port) == (0, "SERVING")
    unknown = [*command, "--service", "no.such.Service"]
    assert await _probe(unknown, serving.port) == (1, "NOT_FOUND")
    await serving.health.enter_graceful_shutdown()  # what SIGTERM does first
    assert await _probe(command, serving.port) == (1, "NOT_SERVING")


async def test_the_healthcheck_command_fails_when_nothing_listens(serving: Any) -> None:
    port = serving.port
    await serving.stop(grace=None)
    assert await _probe(_healthcheck(), port) == (1, "UNAVAILABLE")
