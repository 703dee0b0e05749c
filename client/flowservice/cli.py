"""The `flowservice` command: `flows …` for people and scripts; `serve` and friends if installed.

The client distribution owns the console script, so `flowservice flows ls`
works wherever the client is installed. `serve`, `indexes` and `changefeed`
belong to the server distribution: they are handed, arguments and all, to
`flowservice_server.cli.main` when that package is importable.

Exit codes: 0 ok, 1 error, 2 usage (a bad flag, or a request the server
refuses as INVALID_ARGUMENT), 3 not found.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import inspect
import os
import sys
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
from rich.markup import escape

from flowservice._cli_completion import bash_script
from flowservice._cli_filters import SORTS, UsageError, add_filter_flags, filters_from
from flowservice._cli_output import Output, flow_dict
from flowservice.client import DEFAULT_TARGET, FlowClientSync, RpcError

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from flowservice.v1 import flow_pb2, flow_service_pb2

OK, ERROR, USAGE, NOT_FOUND = 0, 1, 2, 3
#: A server's refusal as an exit code; any other status is 1.
EXIT_CODES = {grpc.StatusCode.NOT_FOUND: NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT: USAGE}
SERVER_COMMANDS = ("serve", "indexes", "changefeed")
DISTRIBUTION = "flowservice-client"
#: Attempts of `flows tag`'s read-modify-write before giving up on a busy flow.
TAG_ATTEMPTS = 5


def version() -> str:
    return importlib.metadata.version(DISTRIBUTION)


def _connection_flags() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("connection")
    group.add_argument(
        "--target", help=f"server address (FLOWSERVICE_TARGET; default {DEFAULT_TARGET})"
    )
    group.add_argument("--token", help="bearer token (FLOWSERVICE_TOKEN; prefer the variable)")
    group.add_argument("--tls", action="store_true", help="use TLS with the system's CAs")
    group.add_argument(
        "--tls-ca-file", help="CA bundle, PEM; implies TLS (FLOWSERVICE_TLS_CA_FILE)"
    )
    group.add_argument(
        "--tls-cert-file",
        help="client certificate, PEM, for mutual TLS (FLOWSERVICE_TLS_CERT_FILE)",
    )
    group.add_argument("--tls-key-file", help="its private key, PEM (FLOWSERVICE_TLS_KEY_FILE)")
    group.add_argument("--timeout", type=float, help="seconds per call (default 30; none to watch)")
    out = common.add_argument_group("output")
    modes = out.add_mutually_exclusive_group()
    modes.add_argument("--json", dest="mode", action="store_const", const="json", help="JSON")
    modes.add_argument(
        "--jsonl", dest="mode", action="store_const", const="jsonl", help="one JSON object a line"
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flowservice",
        description="FlowService: Prefect 3's flow API over gRPC. `flows` talks to a server; "
        "`serve`, `indexes` and `changefeed` need flowservice-server installed.",
        epilog="exit codes: 0 ok, 1 error, 2 usage, 3 not found",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    flows = commands.add_parser("flows", help="list, read, create, tag and delete flows")
    for name, helptext in (
        ("serve", "run the gRPC server (flowservice-server)"),
        ("indexes", "add or drop indexes in a Prefect database (flowservice-server)"),
        ("changefeed", "add or drop change capture in a Prefect database (flowservice-server)"),
    ):
        commands.add_parser(name, help=helptext, add_help=False)
    completion = commands.add_parser("completion", help="print a shell completion script")
    completion.add_argument("shell", choices=("bash",))

    common = _connection_flags()
    verbs = flows.add_subparsers(dest="verb", required=True, metavar="VERB")

    def verb(name: str, helptext: str, *aliases: str) -> argparse.ArgumentParser:
        return verbs.add_parser(
            name, help=helptext, description=helptext, parents=[common], aliases=list(aliases)
        )

    ls = verb("ls", "list flows (a table on a terminal)", "list")
    add_filter_flags(ls)
    ls.add_argument("--sort", choices=tuple(SORTS), default="name", help="order (default name)")
    ls.add_argument("--limit", type=_positive, help="at most this many (default: all)")

    stream = verb("stream", "stream every matching flow from one snapshot (StreamFlows)")
    add_filter_flags(stream)
    stream.add_argument("--sort", choices=tuple(SORTS), default="name", help="order")
    stream.add_argument("--limit", type=_positive, help="at most this many (default: all)")
    stream.add_argument("--batch-size", type=_positive, default=0, help="flows per response")

    count = verb("count", "count matching flows")
    add_filter_flags(count)

    get = verb("get", "show flows by id or name")
    get.add_argument("flows", nargs="+", metavar="FLOW", help="an id or a name")

    create = verb("create", "create a flow (or get the one with that name)")
    create.add_argument("name")
    create.add_argument("--tag", action="append", default=[], help="a tag (repeat for more)")
    create.add_argument("--label", action="append", default=[], metavar="KEY=VALUE")

    tag = verb("tag", "add or remove a flow's tags")
    tag.add_argument("flow", metavar="FLOW", help="an id or a name")
    tag.add_argument("tags", nargs="*", metavar="TAG", help="tags to add")
    tag.add_argument("--remove", action="append", default=[], metavar="TAG", help="remove it")
    tag.add_argument("--set", action="store_true", help="replace all tags with TAG…")

    rm = verb("rm", "delete flows, with their runs and deployments", "delete")
    rm.add_argument(
        "flows", nargs="+", metavar="FLOW", help="an id or a name; - reads them from stdin"
    )

    watch = verb("watch", "print changes to flows as they happen (WatchFlows)")
    add_filter_flags(watch, flows_only=True)
    watch.add_argument("--initial", action="store_true", help="first the flows as they are")
    watch.add_argument("--resume-token", default="", help="continue after this token")
    watch.add_argument("--max-events", type=_positive, help="stop after this many changes")
    return parser


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    arguments_given = list(sys.argv[1:] if argv is None else argv)
    if arguments_given and arguments_given[0] in SERVER_COMMANDS:
        return _delegate(arguments_given)
    parser = build_parser()
    arguments = parser.parse_args(arguments_given)
    if arguments.command == "completion":
        sys.stdout.write(bash_script(parser, grafted=_server_parser()))
        return OK
    output = Output(arguments.mode or "table")
    try:
        with _connect(arguments) as client:
            return COMMANDS[arguments.verb](client, arguments, output)
    except UsageError as error:
        parser.exit(USAGE, f"flowservice: error: {error}\n")
    except RpcError as error:
        output.message(f"flowservice: {error}")
        return EXIT_CODES.get(error.code, ERROR)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `flowservice flows ls | head`: the reader has had enough
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return OK


def _delegate(argv: list[str]) -> int:
    try:
        server_cli = importlib.import_module("flowservice_server.cli")
    except ModuleNotFoundError as error:
        if error.name not in ("flowservice_server", "flowservice_server.cli"):
            raise
        sys.stderr.write(
            f"flowservice: `{argv[0]}` is part of the server: pip install flowservice-server\n"
        )
        return ERROR
    code: int = server_cli.main(argv)
    return code


def _server_parser() -> argparse.ArgumentParser | None:
    """The server's parser, for completing its commands' options; None without the server."""
    try:
        server_cli = importlib.import_module("flowservice_server.cli")
    except ImportError:
        return None
    server_parser: argparse.ArgumentParser = server_cli.build_parser()
    return server_parser


def _setting(arguments: argparse.Namespace, name: str) -> str | None:
    value: str | None = getattr(arguments, name)
    return value if value is not None else os.environ.get(f"FLOWSERVICE_{name.upper()}") or None


def _connect(arguments: argparse.Namespace) -> FlowClientSync:
    files = {
        name: _setting(arguments, name) for name in ("tls_ca_file", "tls_cert_file", "tls_key_file")
    }
    if bool(files["tls_cert_file"]) != bool(files["tls_key_file"]):
        raise UsageError("--tls-cert-file and --tls-key-file go together")
    credentials = None
    if arguments.tls or any(files.values()):
        contents = {}
        for name, path in files.items():
            try:
                contents[name] = Path(path).read_bytes() if path else None
            except OSError as error:
                raise UsageError(f"--{name.replace('_', '-')}: {error}") from None
        credentials = grpc.ssl_channel_credentials(
            contents["tls_ca_file"], contents["tls_key_file"], contents["tls_cert_file"]
        )
    streaming = arguments.verb in ("stream", "watch")
    # A person at a terminal wants "unreachable" at once, not a wait for the deadline:
    # where the client can wait for the channel to be ready, the command does not.
    fail_fast: dict[str, Any] = (
        {"wait_for_ready": False}
        if "wait_for_ready" in inspect.signature(FlowClientSync).parameters
        else {}
    )
    return FlowClientSync(
        _setting(arguments, "target") or DEFAULT_TARGET,
        credentials=credentials,
        token=_setting(arguments, "token"),
        timeout=arguments.timeout if arguments.timeout or streaming else 30.0,
        **fail_fast,
    )


def _resolve(client: FlowClientSync, ref: str) -> flow_pb2.Flow:
    """A flow by id when `ref` is a UUID that names one, else by name."""
    try:
        uuid.UUID(ref)
    except ValueError:
        return client.read_flow_by_name(ref)
    try:
        return client.read_flow(ref)
    except RpcError as error:
        if error.code != grpc.StatusCode.NOT_FOUND:
            raise
    return client.read_flow_by_name(ref)


# --- the verbs ---------------------------------------------------------------------------


def _ls(client: FlowClientSync, arguments: argparse.Namespace, output: Output) -> int:
    filters = filters_from(arguments)
    sort = SORTS[arguments.sort]
    wanted: int | None = arguments.limit
    flows: list[flow_pb2.Flow] = []
    page = client.read_flows_page(
        **filters, sort=sort, limit=min(wanted or 200, 200), include_total_size=True
    )
    total = page.total_size if wanted is None else min(wanted, page.total_size or 0)
    with output.progress("listing flows", total) as advance:
        while True:
            flows += page.flows
            advance(len(page.flows))
            if not page.next_page_token or (wanted is not None and len(flows) >= wanted):
                break
            size = min(wanted - len(flows), 200) if wanted is not None else 200
            page = client.read_flows_page(
                **filters, sort=sort, limit=size, page_token=page.next_page_token
            )
    output.flows(flows[:wanted] if wanted is not None else flows)
    return OK


def _stream(client: FlowClientSync, arguments: argparse.Namespace, output: Output) -> int:
    flows = client.stream_flows(
        **filters_from(arguments),
        sort=SORTS[arguments.sort],
        limit=arguments.limit,
        batch_size=arguments.batch_size,
    )
    output.flows(flows)
    return OK


def _count(client: FlowClientSync, arguments: argparse.Namespace, output: Output) -> int:
    count = client.count_flows(**filters_from(arguments))
    output.value({"count": count} if output.mode != "table" else count)
    return OK


def _get(client: FlowClientSync, arguments: argparse.Namespace, output: Output) -> int:
    flows = [_resolve(client, ref) for ref in arguments.flows]
    output.flows(flows, single=len(arguments.flows) == 1)
    return OK


def _label(text: str) -> tuple[str, Any]:
    key, equals, raw = text.partition("=")
    if not equals or not key:
        raise UsageError(f"--label {text!r}: use KEY=VALUE")
    for kind in (int, float):
        try:
            return key, kind(raw)
        except ValueError:
            pass
    return key, {"true": True, "false": False}.get(raw, raw)


def _create(client: FlowClientSync, arguments: argparse.Namespace, output: Output) -> int:
    labels = dict(_label(text) for text in arguments.label) if arguments.label else None
    flow, created = client.create_flow(arguments.name, tags=arguments.tag, labels=labels)
    if not created:
        output.message(f"flow {flow.name!r} already exists; nothing changed")
    output.flows([flow], single=True)
    return OK


def _tag(client: FlowClientSync, arguments: argparse.Namespace, output: Output) -> int:
    for attempt in range(TAG_ATTEMPTS):
        flow = _resolve(client, arguments.flow)
        tags = [] if arguments.set else list(flow.tags)
        tags += [tag for tag in arguments.tags if tag not in tags]
        tags = [tag for tag in tags if tag not in arguments.remove]
        try:
            updated = client.update_flow(flow.id, tags=tags, etag=flow.etag)
        except RpcError as error:  # written by someone else since we read it: again
            if error.code != grpc.StatusCode.ABORTED or attempt == TAG_ATTEMPTS - 1:
                raise
            time.sleep(0.05 * (attempt + 1))
            continue
        output.flows([updated], single=True)
        return OK
    raise AssertionError("unreachable")


def _rm(client: FlowClientSync, arguments: argparse.Namespace, output: Output) -> int:
    refs = [ref for given in arguments.flows for ref in _refs(given)]
    missing: list[str] = []
    deleted = 0
    with output.progress("deleting flows", len(refs)) as advance:
        for ref in refs:
            try:
                flow = _resolve(client, ref)
                client.delete_flow(flow.id)
                deleted += 1
            except RpcError as error:
                if error.code != grpc.StatusCode.NOT_FOUND:
                    raise
                missing.append(ref)
            advance(1)
    if output.mode == "table":
        output.message(f"deleted {deleted} flow(s)")
    else:
        output.value({"deleted": deleted, "not_found": missing})
    for ref in missing:
        output.message(f"flowservice: no flow {ref!r}")
    return NOT_FOUND if missing else OK


def _refs(given: str) -> list[str]:
    """`-`: the ids and names on stdin, one a line (`… ls --jsonl | jq -r .id | … rm -`)."""
    if given != "-":
        return [given]
    return [line.strip() for line in sys.stdin if line.strip()]


def _watch(client: FlowClientSync, arguments: argparse.Namespace, output: Output) -> int:
    filters = filters_from(arguments)
    events = client.watch_flows(
        flows=filters.get("flows"),
        resume_token=arguments.resume_token,
        send_initial_state=arguments.initial,
    )
    seen = 0
    for response in events:
        _show_event(response, output)
        if response.WhichOneof("event") in ("created", "updated", "deleted"):
            seen += 1
            if arguments.max_events is not None and seen >= arguments.max_events:
                events.close()
                break
    return OK


def _show_event(response: flow_service_pb2.WatchFlowsResponse, output: Output) -> None:
    event = response.WhichOneof("event") or "unknown"
    flow = (
        getattr(response, event) if event in ("created", "updated", "deleted", "existing") else None
    )
    if output.mode != "table":
        record: dict[str, Any] = {"event": event, "resume_token": response.resume_token}
        if flow is not None:
            record["flow"] = flow_dict(flow)
        output.value(record)
        output.stdout.flush()
    elif flow is not None:
        styles = {"created": "green", "updated": "yellow", "deleted": "red", "existing": "dim"}
        output.console.print(
            f"[{styles[event]}]{event:8}[/] {escape(flow.name)}  [dim]{flow.id}[/]  "
            + escape(", ".join(flow.tags)),
            highlight=False,
        )
    elif event == "initial_state_done":
        output.console.print("[dim]— watching for changes —[/]")


COMMANDS: dict[str, Callable[[FlowClientSync, argparse.Namespace, Output], int]] = {
    "ls": _ls,
    "list": _ls,
    "stream": _stream,
    "count": _count,
    "get": _get,
    "create": _create,
    "tag": _tag,
    "rm": _rm,
    "delete": _rm,
    "watch": _watch,
}

if __name__ == "__main__":
    raise SystemExit(main())
