"""`flowservice flows …` as people and scripts use it: a real server, the real script.

Scripts' output (`--json`, `--jsonl`) and exit codes come from the script run
as a subprocess; the table comes from the script on a pseudo-terminal with a
set window size, as a person sees it. The server is the in-process `server`
fixture, so the script always runs as an asyncio subprocess (a blocking wait
would starve the server on the same event loop).
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import re
import shlex
import shutil
import struct
import subprocess
import sys
import termios
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest

from flowservice.client import FlowClient
from flowservice_server.config import AuthSettings
from tests.processes import FLOWSERVICE, environment
from tests.test_security import TOKENS, Certificates, _serve, _tls
from tests.test_security import certificates as certificates  # noqa: PLC0414  (the fixture)

if TYPE_CHECKING:
    from flowservice_server.app import RunningServer
    from tests.factories import Seeder

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


async def flowservice(
    server: RunningServer | None, *args: str, env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    """Run the script with FLOWSERVICE_TARGET at `server`: exit code, stdout, stderr."""
    extra = {"FLOWSERVICE_TARGET": f"127.0.0.1:{server.port}"} if server else {}
    process = await asyncio.create_subprocess_exec(
        FLOWSERVICE,
        *args,
        env=environment({**extra, **(env or {})}),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def on_terminal(
    server: RunningServer, columns: int, *args: str, stdin: bytes | None = None
) -> tuple[int, list[str]]:
    """Run the script on a pty `columns` wide: exit code and the screen's lines, colours removed.

    With `stdin`, standard input is a pipe holding it (stdout and stderr stay on the pty).
    """
    leader, follower = os.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    env = {"FLOWSERVICE_TARGET": f"127.0.0.1:{server.port}", "TERM": "xterm-256color"}
    env_all = {k: v for k, v in environment(env).items() if k not in ("COLUMNS", "LINES")}
    env_all.pop("NO_COLOR", None)
    process = await asyncio.create_subprocess_exec(
        FLOWSERVICE,
        *args,
        env=env_all,
        stdin=follower if stdin is None else subprocess.PIPE,
        stdout=follower,
        stderr=follower,
    )
    os.close(follower)
    if stdin is not None:
        assert process.stdin is not None
        process.stdin.write(stdin)
        await process.stdin.drain()
        process.stdin.close()

    def read_all() -> bytes:
        chunks: list[bytes] = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the other side has closed
                return b"".join(chunks)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)

    try:
        screen = await asyncio.wait_for(asyncio.to_thread(read_all), timeout=60)
        code = await asyncio.wait_for(process.wait(), timeout=60)
    finally:
        os.close(leader)
    text = ANSI.sub("", screen.decode()).replace("\r\n", "\n")
    return code, [line.rstrip() for line in text.splitlines() if line.strip()]


@pytest.fixture
async def flows(server: RunningServer) -> dict[str, str]:
    """Three flows: name -> id."""
    async with FlowClient(f"127.0.0.1:{server.port}") as client:
        made = [
            await client.create_flow("etl-nightly", tags=["db", "prod"], labels={"team": "data"}),
            await client.create_flow("etl-hourly", tags=["db"]),
            await client.create_flow("report", tags=["bi"]),
        ]
    return {flow.name: flow.id for flow, _ in made}


# --- scripts: --json, --jsonl, exit codes ---------------------------------------------------


async def test_ls_jsonl_is_one_flow_a_line_filtered_and_sorted(
    server: RunningServer, flows: dict[str, str]
) -> None:
    code, out, _ = await flowservice(server, "flows", "ls", "--jsonl", "--tag", "db")
    assert code == 0
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["name"] for r in records] == ["etl-hourly", "etl-nightly"]
    assert records[1]["id"] == flows["etl-nightly"]
    assert records[1]["labels"] == {"team": "data"}

    code, out, _ = await flowservice(
        server, "flows", "ls", "--json", "--sort", "name-desc", "--limit", "2"
    )
    assert code == 0
    assert [r["name"] for r in json.loads(out)] == ["report", "etl-nightly"]


async def test_flag_filters_and_filter_json_combine(
    server: RunningServer, flows: dict[str, str]
) -> None:
    code, out, _ = await flowservice(
        server,
        "flows",
        "ls",
        "--json",
        "--name-like",
        "etl",
        "--filter",
        json.dumps({"flows": {"tags": {"all": ["prod"]}}}),
    )
    assert code == 0, out
    assert [r["name"] for r in json.loads(out)] == ["etl-nightly"]


async def test_run_state_and_runs_since_filter_through_flow_runs(
    server: RunningServer, flows: dict[str, str], seed: Seeder
) -> None:
    now = datetime.now(UTC)
    await seed.flow_run(
        uuid.UUID(flows["report"]), "old", state_type="FAILED", start_time=now - timedelta(days=3)
    )
    await seed.flow_run(uuid.UUID(flows["etl-hourly"]), "new", state_type="FAILED", start_time=now)
    failed = ["flows", "ls", "--jsonl", "--run-state", "FAILED"]
    _, out, _ = await flowservice(server, *failed)
    assert sorted(json.loads(line)["name"] for line in out.splitlines()) == ["etl-hourly", "report"]
    _, out, _ = await flowservice(server, *failed, "--runs-since", "1d")
    assert [json.loads(line)["name"] for line in out.splitlines()] == ["etl-hourly"]
    _, out, _ = await flowservice(server, "flows", "count", "--latest-run-state", "FAILED")
    assert out.strip() == "2"


async def test_create_get_tag_rm_round_trip(server: RunningServer) -> None:
    code, out, _ = await flowservice(
        server, "flows", "create", "ingest", "--tag", "a", "--label", "n=3", "--json"
    )
    assert code == 0
    made = json.loads(out)
    assert (made["name"], made["tags"], made["labels"]) == ("ingest", ["a"], {"n": 3})

    code, out, err = await flowservice(server, "flows", "create", "ingest", "--json")
    assert code == 0
    assert json.loads(out)["id"] == made["id"]
    assert "already exists" in err

    for ref in (made["id"], "ingest"):
        code, out, _ = await flowservice(server, "flows", "get", ref, "--json")
        assert code == 0
        assert json.loads(out)["id"] == made["id"]

    code, out, _ = await flowservice(
        server, "flows", "tag", "ingest", "b", "c", "--remove", "a", "--json"
    )
    assert code == 0
    assert json.loads(out)["tags"] == ["b", "c"]
    code, out, _ = await flowservice(server, "flows", "tag", made["id"], "z", "--set", "--json")
    assert json.loads(out)["tags"] == ["z"]

    code, out, _ = await flowservice(server, "flows", "count", "--json")
    assert json.loads(out) == {"count": 1}
    code, out, _ = await flowservice(server, "flows", "rm", "ingest", "--json")
    assert code == 0
    assert json.loads(out) == {"deleted": 1, "not_found": []}
    code, _, _ = await flowservice(server, "flows", "get", made["id"])
    assert code == 3


async def test_stream_jsonl_returns_every_flow(
    server: RunningServer, flows: dict[str, str]
) -> None:
    code, out, _ = await flowservice(server, "flows", "stream", "--jsonl", "--batch-size", "1")
    assert code == 0
    assert [json.loads(line)["name"] for line in out.splitlines()] == sorted(flows)


async def test_watch_prints_changes_as_json_lines(server: RunningServer) -> None:
    process = await asyncio.create_subprocess_exec(
        FLOWSERVICE,
        "flows",
        "watch",
        "--jsonl",
        "--initial",
        "--max-events",
        "2",
        env=environment({"FLOWSERVICE_TARGET": f"127.0.0.1:{server.port}"}),
        stdout=subprocess.PIPE,
    )
    assert process.stdout is not None
    first = json.loads(await asyncio.wait_for(process.stdout.readline(), timeout=30))
    assert first["event"] == "initial_state_done"
    async with FlowClient(f"127.0.0.1:{server.port}") as client:
        flow, _ = await client.create_flow("watched")
        await client.delete_flow(flow.id)
    out, _ = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 0
    events = [json.loads(line) for line in out.decode().splitlines()]
    assert [(e["event"], e["flow"]["name"]) for e in events] == [
        ("created", "watched"),
        ("deleted", "watched"),
    ]
    assert all(e["resume_token"] for e in events)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        pytest.param(["flows", "ls", "--sort", "sideways"], 2, id="usage: a bad choice"),
        pytest.param(["flows", "ls", "--runs-since", "soon"], 2, id="usage: a bad duration"),
        pytest.param(["flows", "ls", "--filter", "{"], 2, id="usage: bad --filter JSON"),
        pytest.param(["flows", "ls", "--filter", '{"flows": {"id": {"any": ["x"]}}}'], 2,
                     id="usage: the server refuses the filter"),
        pytest.param(["flows", "get", "no-such-flow"], 3, id="not found: a name"),
        pytest.param(["flows", "get", str(uuid.uuid4())], 3, id="not found: an id"),
        pytest.param(["flows", "rm", "report", "no-such-flow"], 3, id="not found: rm of some"),
    ],
)  # fmt: skip
async def test_exit_codes(
    server: RunningServer, flows: dict[str, str], args: list[str], expected: int
) -> None:
    code, out, err = await flowservice(server, *args)
    assert code == expected, out + err
    assert "Traceback" not in err
    if expected == 3:
        assert "NOT_FOUND" in err or "no flow" in err


async def test_a_server_error_exits_1_saying_why(
    server: RunningServer, flows: dict[str, str]
) -> None:
    code, _, err = await flowservice(
        server, "flows", "ls", "--timeout", "10", env={"FLOWSERVICE_TARGET": "127.0.0.1:1"}
    )
    assert code == 1
    assert "UNAVAILABLE" in err  # at once, not DEADLINE_EXCEEDED after waiting for it
    assert "Traceback" not in err
    code, _, err = await flowservice(server, "flows", "ls", "--tls-cert-file", "/nonexistent.pem")
    assert code == 2  # a certificate without its key


async def test_tls_token_and_client_certificate_come_from_the_variables(
    any_backend_url: str, certificates: Certificates
) -> None:
    running = await _serve(
        any_backend_url, tls=_tls(certificates, mutual=True), auth=AuthSettings(tokens=TOKENS)
    )
    tls = {
        "FLOWSERVICE_TLS_CA_FILE": str(certificates.ca),
        "FLOWSERVICE_TLS_CERT_FILE": str(certificates.client_cert),
        "FLOWSERVICE_TLS_KEY_FILE": str(certificates.client_key),
    }
    try:
        code, out, err = await flowservice(
            running, "flows", "count", env={**tls, "FLOWSERVICE_TOKEN": TOKENS[0]}
        )
        assert (code, out.strip()) == (0, "0"), err
        code, _, err = await flowservice(running, "flows", "count", env=tls)
        assert code == 1
        assert "UNAUTHENTICATED" in err
        code, out, err = await flowservice(
            running, "flows", "count", "--token", TOKENS[1], env={**tls, "FLOWSERVICE_TOKEN": "x"}
        )
        assert code == 0, err  # the flag wins over its variable
    finally:
        await running.stop(grace=None)


async def test_server_commands_without_the_server_say_what_to_install() -> None:
    blocked = (
        "import sys; sys.modules['flowservice_server'] = None; "
        "from flowservice.cli import main; sys.exit(main(['serve']))"
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", blocked, stderr=subprocess.PIPE, env=environment({})
    )
    _, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 1
    assert "pip install flowservice-server" in err.decode()


async def test_version_names_the_client_distribution() -> None:
    from importlib.metadata import version

    code, out, _ = await flowservice(None, "--version")
    assert code == 0
    assert out.strip() == f"flowservice {version('flowservice-client')}"


async def test_server_commands_are_handed_to_the_server_package() -> None:
    code, out, _ = await flowservice(None, "serve", "--help")
    assert code == 0
    assert "FLOWSERVICE_DATABASE_URL" in out


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
async def test_bash_completion_script_loads_and_completes() -> None:
    code, script, _ = await flowservice(None, "completion", "bash")
    assert code == 0
    assert "complete -o default -F _flowservice_complete flowservice" in script
    check = (
        f"source <({shlex.quote(FLOWSERVICE)} completion bash) && complete -p flowservice && "
        "COMP_WORDS=(flowservice flows l); COMP_CWORD=2; _flowservice_complete && "
        'echo "verbs: ${COMPREPLY[*]}" && '
        "COMP_WORDS=(flowservice flows ls --run-state F); COMP_CWORD=4; _flowservice_complete && "
        'echo "states: ${COMPREPLY[*]}" && '
        "COMP_WORDS=(flowservice serve --database-u); COMP_CWORD=2; _flowservice_complete && "
        'echo "serve: ${COMPREPLY[*]}"'
    )
    process = await asyncio.create_subprocess_exec(
        "bash", "-c", check, stdout=subprocess.PIPE, env=environment({})
    )
    out, _ = await process.communicate()
    assert process.returncode == 0
    lines = out.decode().splitlines()
    assert lines[0].startswith("complete ")
    assert lines[0].endswith(" flowservice")
    assert lines[1] == "verbs: ls list"
    assert lines[2] == "states: FAILED"
    assert lines[3] == "serve: --database-url"  # the server's own options, when installed


# --- people: the table on a terminal ----------------------------------------------------------


async def test_a_wide_terminal_gets_every_column(
    server: RunningServer, flows: dict[str, str]
) -> None:
    code, screen = await on_terminal(server, 160, "flows", "ls")
    assert code == 0
    assert screen[0].split() == ["NAME", "ID", "TAGS", "LABELS", "CREATED", "UPDATED"]
    nightly = next(line for line in screen if line.startswith("etl-nightly"))
    assert flows["etl-nightly"] in nightly
    assert "db, prod" in nightly
    assert "team=data" in nightly
    assert all(len(line) <= 160 for line in screen)


@pytest.mark.parametrize("columns", [40, 72, 100])
async def test_the_table_fits_a_narrow_terminal(
    server: RunningServer, flows: dict[str, str], columns: int
) -> None:
    code, screen = await on_terminal(server, columns, "flows", "ls")
    assert code == 0
    assert screen[0].startswith("NAME")
    assert all(len(line) <= columns for line in screen), screen
    assert [line.split()[0] for line in screen[1:]] == sorted(flows)


async def test_not_found_on_a_terminal_is_one_line_and_exit_3(server: RunningServer) -> None:
    code, screen = await on_terminal(server, 80, "flows", "get", "nothing-here")
    assert code == 3
    assert screen == ["flowservice: NOT_FOUND: no flowservice.v1.Flow with name 'nothing-here'"]


async def test_a_long_listing_shows_progress_only_on_a_terminal(
    server: RunningServer, seed: Seeder
) -> None:
    for number in range(600):
        await seed.flow(f"bulk-{number:04}")
    code, screen = await on_terminal(server, 100, "flows", "ls", "--limit", "550")
    assert code == 0
    assert sum(line.startswith("bulk-") for line in screen) == 550
    assert any("listing flows" in line for line in screen)
    code, out, err = await flowservice(server, "flows", "ls", "--jsonl")
    assert len(out.splitlines()) == 600
    assert err == ""
    process = await asyncio.create_subprocess_shell(
        f"{shlex.quote(FLOWSERVICE)} flows ls --jsonl | head -n 1",
        env=environment({"FLOWSERVICE_TARGET": f"127.0.0.1:{server.port}"}),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out_bytes, err_bytes = await asyncio.wait_for(process.communicate(), timeout=60)
    assert json.loads(out_bytes)["name"] == "bulk-0000"
    assert err_bytes == b""  # a reader that stops early is no error


async def test_rm_of_many_from_stdin_shows_progress_on_a_terminal(
    server: RunningServer, seed: Seeder
) -> None:
    ids = [str(await seed.flow(f"old-{number:04}", tags=["old"])) for number in range(520)]
    await seed.flow("keep")
    listed = "\n".join(ids).encode() + b"\n"
    code, screen = await on_terminal(server, 100, "flows", "rm", "-", stdin=listed)
    assert code == 0, screen
    assert any("deleting flows" in line for line in screen)
    assert screen[-1] == "deleted 520 flow(s)"
    code, out, _ = await flowservice(server, "flows", "ls", "--jsonl")
    assert [json.loads(line)["name"] for line in out.splitlines()] == ["keep"]
