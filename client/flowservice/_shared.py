"""What the async and the blocking client share: defaults, channel options and request builders."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, TypeAlias, TypeVar

import grpc
from google.protobuf import json_format, struct_pb2
from google.protobuf.message import Message

from flowservice import prefect_compat
from flowservice.errors import invalid_argument
from flowservice.v1 import filters_pb2, flow_pb2, flow_service_pb2

if TYPE_CHECKING:
    from flowservice.errors import RpcError
    from flowservice.prefect_compat import PrefectFilter

DEFAULT_TARGET = "127.0.0.1:50051"
SERVICE_NAME = "flowservice.v1.FlowService"

#: Every FlowService method is safe to retry (see the service's proto comment),
#: so the client retries UNAVAILABLE (database busy or briefly unreachable,
#: server draining or killed, a stream refused as its connection goes away)
#: with exponential backoff. A retried DeleteFlow whose first attempt committed
#: answers NOT_FOUND: the flow is gone either way.
#:
#: `round_robin` spreads calls over every address the target resolves to
#: (`ipv4:127.0.0.1:50051,127.0.0.1:50052`, or `dns:///flowservice:50051` on
#: a headless Service), one connection to each, and leaves out a server whose
#: connection is down until it is back; a retry picks again, so it goes to a
#: live server. One address: the same as gRPC's default `pick_first`.
SERVICE_CONFIG: dict[str, Any] = {
    "loadBalancingConfig": [{"round_robin": {}}],
    "methodConfig": [
        {
            "name": [{"service": SERVICE_NAME}],
            "retryPolicy": {
                "maxAttempts": 5,
                "initialBackoff": "0.1s",
                "maxBackoff": "2s",
                "backoffMultiplier": 2,
                "retryableStatusCodes": ["UNAVAILABLE"],
            },
        }
    ],
}


#: The default retry budget (gRPC's `retryThrottling`): retries stop while more
#: than half of `max_tokens` is spent; each failure spends one token, each success
#: gives back `token_ratio`. A server that fails every call gets a few retries, not
#: five times the load.
class RetryBudget(NamedTuple):
    max_tokens: int = 10
    token_ratio: float = 0.1


DEFAULT_RETRY_BUDGET = RetryBudget()

#: The variables `from_env` reads (see the README's "The Python client").
ENV_TARGET = "FLOWSERVICE_TARGET"
ENV_TOKEN = "FLOWSERVICE_TOKEN"  # noqa: S105 (a variable name, not a secret)
ENV_TIMEOUT = "FLOWSERVICE_TIMEOUT"
ENV_TLS_CA_FILE = "FLOWSERVICE_TLS_CA_FILE"
ENV_TLS_CLIENT_CERT_FILE = "FLOWSERVICE_TLS_CLIENT_CERT_FILE"
ENV_TLS_CLIENT_KEY_FILE = "FLOWSERVICE_TLS_CLIENT_KEY_FILE"

LabelValue = bool | int | float | str
Labels = Mapping[str, LabelValue]
M = TypeVar("M", bound=Message)
#: A filter: the generated message, or its JSON form as a dict, e.g.
#: `{"name": {"any": ["etl"]}, "tags": {"all": ["prod"]}}`.
FilterArg: TypeAlias = "M | Mapping[str, Any] | None"
#: A flow id: its string form or a `uuid.UUID`.
IdArg: TypeAlias = str | uuid.UUID


def as_id(value: IdArg, field_path: str = "id") -> str:
    """An id for a request; anything but a `str` or `uuid.UUID` is `InvalidArgument`."""
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, str):
        return value  # the server checks the form and names the field if it is wrong
    raise invalid_argument(
        field_path, f"a flow id is a str or uuid.UUID, not {type(value).__name__}"
    )


def as_ids(values: Sequence[IdArg], field_path: str = "ids") -> list[str]:
    if isinstance(values, (str, uuid.UUID)):
        raise invalid_argument(field_path, "a sequence of ids, not a single id")
    return [as_id(value, f"{field_path}[{i}]") for i, value in enumerate(values)]


def service_config(retry_budget: RetryBudget | None = DEFAULT_RETRY_BUDGET) -> dict[str, Any]:
    """`SERVICE_CONFIG` with the retry budget (`retryThrottling`); None: no budget."""
    config = dict(SERVICE_CONFIG)
    if retry_budget is not None:
        config["retryThrottling"] = {
            "maxTokens": retry_budget.max_tokens,
            "tokenRatio": retry_budget.token_ratio,
        }
    return config


def channel_options(
    extra: Sequence[tuple[str, Any]] = (),
    *,
    retry_budget: RetryBudget | None = DEFAULT_RETRY_BUDGET,
) -> list[tuple[str, Any]]:
    """Channel options with the retry service config; `extra` entries win."""
    options: dict[str, Any] = {
        "grpc.service_config": json.dumps(service_config(retry_budget)),
        "grpc.enable_retries": 1,
    }
    options.update(dict(extra))
    return list(options.items())


class EnvSettings(NamedTuple):
    target: str
    token: str | None
    timeout: float | None
    credentials: grpc.ChannelCredentials | None


def settings_from_env(
    environ: Mapping[str, str],
    *,
    target: str | None,
    token: str | None,
    timeout: float | None,
    credentials: grpc.ChannelCredentials | None,
) -> EnvSettings:
    """The client's settings from FLOWSERVICE_* variables; a keyword given wins.

    TLS is on when any FLOWSERVICE_TLS_* variable is set (the CA file alone:
    server authentication; with the client certificate and key: mutual TLS).
    """
    ca_file = environ.get(ENV_TLS_CA_FILE) or None
    cert_file = environ.get(ENV_TLS_CLIENT_CERT_FILE) or None
    key_file = environ.get(ENV_TLS_CLIENT_KEY_FILE) or None
    if (cert_file is None) != (key_file is None):
        raise ValueError(
            f"set both {ENV_TLS_CLIENT_CERT_FILE} and {ENV_TLS_CLIENT_KEY_FILE}, or neither"
        )
    if credentials is None and (ca_file or cert_file):
        credentials = grpc.ssl_channel_credentials(
            root_certificates=_read(ca_file),
            private_key=_read(key_file),
            certificate_chain=_read(cert_file),
        )
    raw_timeout = environ.get(ENV_TIMEOUT) or None
    if timeout is None and raw_timeout is not None:
        try:
            timeout = float(raw_timeout)
        except ValueError:
            raise ValueError(f"{ENV_TIMEOUT} is seconds, not {raw_timeout!r}") from None
    return EnvSettings(
        target=target or environ.get(ENV_TARGET) or DEFAULT_TARGET,
        token=token if token is not None else environ.get(ENV_TOKEN) or None,
        timeout=timeout,
        credentials=credentials,
    )


def _read(path: str | None) -> bytes | None:
    if path is None:
        return None
    with open(path, "rb") as file:
        return file.read()


def call_metadata(token: str | None) -> tuple[tuple[str, str], ...]:
    """Per-call metadata: the bearer token when one is configured."""
    return (("authorization", f"Bearer {token}"),) if token else ()


#: Read-your-writes (see `Consistency`): a write's position, and a read's minimum.
WRITTEN_POSITION_KEY = "x-flowservice-lsn"
MIN_POSITION_KEY = "x-flowservice-min-lsn"
CONSISTENCY_CHOICES = ("eventual", "read_your_writes")


def _position(text: str) -> int | None:
    """A WAL position in PostgreSQL's text form (`16/B374D848`) as a number, or None."""
    high, slash, low = text.partition("/")
    try:
        return int(high, 16) << 32 | int(low, 16) if slash else None
    except ValueError:
        return None


class Consistency:
    """What the client's reads must see.

    `eventual` (the default): whatever the server picks, a standby's reads may
    lag behind this client's own writes. `read_your_writes`: the client keeps
    the highest WAL position its writes' answers carried (trailing metadata
    `x-flowservice-lsn`) and sends it with every later call
    (`x-flowservice-min-lsn`), so no read misses a write this client made.
    Shared by the threads or tasks using one client.
    """

    def __init__(self, mode: str) -> None:
        if mode not in CONSISTENCY_CHOICES:
            raise invalid_argument(
                "consistency", f"{mode!r} is not one of {', '.join(CONSISTENCY_CHOICES)}"
            )
        self.enabled = mode == "read_your_writes"
        self._lock = threading.Lock()
        self._highest: tuple[int, str] | None = None

    @property
    def token(self) -> str | None:
        """The highest position seen so far, as the server wrote it."""
        highest = self._highest
        return None if highest is None else highest[1]

    def metadata(self, base: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
        """`base` plus the minimum position, once a write has returned one."""
        token = self.token if self.enabled else None
        return base if token is None else (*base, (MIN_POSITION_KEY, token))

    def seen(self, trailing_metadata: Any) -> None:
        """Remember the position an answer's trailing metadata carries, if it is the highest."""
        if not self.enabled:
            return
        for key, value in trailing_metadata or ():
            if key != WRITTEN_POSITION_KEY:
                continue
            text = value.decode() if isinstance(value, bytes) else str(value)
            position = _position(text)
            if position is None:
                continue
            with self._lock:
                if self._highest is None or position > self._highest[0]:
                    self._highest = (position, text)


def any_of(*values: str) -> struct_pb2.ListValue:
    """An `any` list for a filter message; `any_of()` is the empty list that matches nothing."""
    result = struct_pb2.ListValue()
    result.extend(values)
    return result


def as_message(
    value: M | Mapping[str, Any] | None, message_type: type[M], field_path: str = ""
) -> M | None:
    """Accept a filter as a message or as its JSON-form dict.

    A dict that does not parse (an unknown key, a wrong type) raises
    `InvalidArgument` naming `field_path`, before any call.
    """
    path = field_path or message_type.DESCRIPTOR.name
    if isinstance(value, Mapping):
        try:
            return json_format.ParseDict(dict(value), message_type())
        except json_format.ParseError as error:
            raise invalid_argument(path, str(error)) from None
    if value is not None and not isinstance(value, message_type):
        raise invalid_argument(
            path, f"a {message_type.DESCRIPTOR.full_name} or a dict, not {type(value).__name__}"
        )
    return value


def flow_labels(flow: flow_pb2.Flow) -> dict[str, LabelValue] | None:
    """A flow's labels as a dict (None when it has none); whole numbers come back as int."""
    if not flow.HasField("labels"):
        return None
    return {key: _label_value(value) for key, value in flow.labels.fields.items()}


def _label_value(value: struct_pb2.Value) -> LabelValue:
    kind = value.WhichOneof("kind")
    if kind == "bool_value":
        return value.bool_value
    if kind == "string_value":
        return value.string_value
    number = value.number_value
    # The server stores whole numbers within +/-2^53 as integers (exact in a double).
    return int(number) if number.is_integer() and abs(number) <= 2**53 else number


def create_flow_request(
    name: str, tags: Sequence[str], labels: Labels | None
) -> flow_service_pb2.CreateFlowRequest:
    request = flow_service_pb2.CreateFlowRequest(name=name, tags=tags)
    if labels is not None:
        request.labels.SetInParent()  # present even when empty: {} is not "no labels"
        request.labels.update(dict(labels))
    return request


def update_flow_request(
    flow_id: IdArg, tags: Sequence[str] | None, etag: str = ""
) -> flow_service_pb2.UpdateFlowRequest:
    """Replace the tags when given (an empty list clears them); None writes nothing."""
    request = flow_service_pb2.UpdateFlowRequest(id=as_id(flow_id), etag=etag)
    if tags is not None:
        request.tags.extend(tags)
        request.update_mask.paths.append("tags")
    return request


#: A sort: our enum, or its name, or Prefect's (`"NAME_ASC"`, `FlowSort.NAME_ASC`).
SortArg: TypeAlias = "flow_service_pb2.FlowSort.ValueType | str"


def as_sort(sort: SortArg) -> flow_service_pb2.FlowSort.ValueType:
    if isinstance(sort, str):
        try:
            return prefect_compat.translate_sort(sort)
        except prefect_compat.UntranslatableError as error:
            raise invalid_argument("sort", str(error).removeprefix("sort: ")) from None
    return sort


def _filter_value(name: str, ours: Any, prefects: Any, prefect_keyword: str) -> Any:
    """One filter from our keyword or Prefect's (not both), in a form `as_message` takes."""
    if ours is not None and prefects is not None:
        raise invalid_argument(name, f"given twice: as {name} and as {prefect_keyword}")
    value = ours if ours is not None else prefects
    prefect_shaped = prefects is not None or isinstance(value, prefect_compat.PrefectModel)
    if value is None or not (prefect_shaped or prefect_compat.looks_like_prefect(value)):
        return value
    try:
        return prefect_compat.translate_filter(prefect_compat.prefect_json(value, name), name)
    except prefect_compat.UntranslatableError as error:
        raise invalid_argument(name, str(error)) from None


def filter_fields(
    *,
    flows: FilterArg[filters_pb2.FlowFilter],
    flow_runs: FilterArg[filters_pb2.FlowRunFilter],
    task_runs: FilterArg[filters_pb2.TaskRunFilter],
    deployments: FilterArg[filters_pb2.DeploymentFilter],
    work_pools: FilterArg[filters_pb2.WorkPoolFilter],
    latest_flow_run: FilterArg[filters_pb2.FlowRunFilter] = None,
    flow_filter: PrefectFilter = None,
    flow_run_filter: PrefectFilter = None,
    task_run_filter: PrefectFilter = None,
    deployment_filter: PrefectFilter = None,
    work_pool_filter: PrefectFilter = None,
) -> dict[str, Any]:
    """The filter fields that the flow queries (ReadFlows, CountFlows, …) share.

    Each filter comes from our keyword or from Prefect's (`flow_filter`, …),
    in our shape or Prefect's (its JSON or its pydantic object).
    """
    return {
        "flows": as_message(
            _filter_value("flows", flows, flow_filter, "flow_filter"),
            filters_pb2.FlowFilter,
            "flows",
        ),
        "flow_runs": as_message(
            _filter_value("flow_runs", flow_runs, flow_run_filter, "flow_run_filter"),
            filters_pb2.FlowRunFilter,
            "flow_runs",
        ),
        "task_runs": as_message(
            _filter_value("task_runs", task_runs, task_run_filter, "task_run_filter"),
            filters_pb2.TaskRunFilter,
            "task_runs",
        ),
        "deployments": as_message(
            _filter_value("deployments", deployments, deployment_filter, "deployment_filter"),
            filters_pb2.DeploymentFilter,
            "deployments",
        ),
        "work_pools": as_message(
            _filter_value("work_pools", work_pools, work_pool_filter, "work_pool_filter"),
            filters_pb2.WorkPoolFilter,
            "work_pools",
        ),
        "latest_flow_run": as_message(
            _filter_value("latest_flow_run", latest_flow_run, None, ""),
            filters_pb2.FlowRunFilter,
            "latest_flow_run",
        ),
    }


def read_flows_request(
    filters: dict[str, Any],
    sort: SortArg,
    offset: int,
    limit: int | None,
    *,
    page_token: str = "",
    include_total_size: bool = False,
) -> flow_service_pb2.ReadFlowsRequest:
    request = flow_service_pb2.ReadFlowsRequest(**filters, sort=as_sort(sort), offset=offset)
    if limit is not None:
        request.limit = limit
    request.page_token = page_token
    request.include_total_size = include_total_size
    return request


class FlowPage(NamedTuple):
    """One page of ReadFlows: its flows, the token for the next one, the total when asked."""

    flows: list[flow_pb2.Flow]
    #: Pass as `page_token` to read the next page; empty on the last page.
    next_page_token: str
    #: Every matching flow on all pages; None unless `include_total_size` was set.
    total_size: int | None


def flow_page(response: flow_service_pb2.ReadFlowsResponse) -> FlowPage:
    total_size = response.total_size if response.HasField("total_size") else None
    return FlowPage(list(response.flows), response.next_page_token, total_size)


def stream_flows_request(
    filters: dict[str, Any],
    sort: SortArg,
    limit: int | None,
    batch_size: int,
) -> flow_service_pb2.StreamFlowsRequest:
    request = flow_service_pb2.StreamFlowsRequest(
        **filters, sort=as_sort(sort), batch_size=batch_size
    )
    if limit is not None:
        request.limit = limit
    return request


# --- batches -------------------------------------------------------------------------

#: One flow for `batch_create_flows`: a CreateFlowRequest, or (name, tags, labels)
#: with tags and labels optional, e.g. `("etl",)` or `("etl", ["db"], {"env": "dev"})`.
NewFlowArg: TypeAlias = (
    "flow_service_pb2.CreateFlowRequest | tuple[str] | tuple[str, Sequence[str]] "
    "| tuple[str, Sequence[str], Labels | None]"
)


def batch_get_flows_request(
    ids: Sequence[IdArg], names: Sequence[str]
) -> flow_service_pb2.BatchGetFlowsRequest:
    return flow_service_pb2.BatchGetFlowsRequest(ids=as_ids(ids), names=names)


def batch_create_flows_request(
    requests: Iterable[NewFlowArg],
) -> flow_service_pb2.BatchCreateFlowsRequest:
    batch = flow_service_pb2.BatchCreateFlowsRequest()
    for item in requests:
        if isinstance(item, flow_service_pb2.CreateFlowRequest):
            batch.requests.append(item)
        else:
            tags: Sequence[str] = item[1] if len(item) > 1 else ()
            labels: Labels | None = item[2] if len(item) > 2 else None
            batch.requests.append(create_flow_request(item[0], tags, labels))
    return batch


# --- watch_flows ----------------------------------------------------------------------

#: The ErrorInfo reason of a WatchFlows call whose history is gone.
EXPIRED_REASON = "RESUME_TOKEN_EXPIRED"


class WatchResumer:
    """What `watch_flows` of both clients asks for next, and whether a failure ends it.

    It remembers the last resume token (only once the initial state is
    complete: a watch cut off during it starts it over), reconnects after
    UNAVAILABLE with a backoff, and after RESUME_TOKEN_EXPIRED either starts
    over with the initial state (`relist_on_expiry`) or lets the error through.
    """

    def __init__(
        self,
        flows: FilterArg[filters_pb2.FlowFilter],
        resume_token: str,
        send_initial_state: bool,
        relist_on_expiry: bool,
        max_reconnects: int,
    ) -> None:
        self._flows = as_message(flows, filters_pb2.FlowFilter, "flows")
        self._token = resume_token
        self._initial = send_initial_state and not resume_token
        self._in_initial_state = False
        self._relist = relist_on_expiry
        self._max_reconnects = max_reconnects
        self._failures = 0

    def request(self) -> flow_service_pb2.WatchFlowsRequest:
        request = flow_service_pb2.WatchFlowsRequest(resume_token=self._token)
        if self._flows is not None:
            request.flows.CopyFrom(self._flows)
        if self._initial and not self._token:
            request.send_initial_state = True
            self._in_initial_state = True
        return request

    def seen(self, response: flow_service_pb2.WatchFlowsResponse) -> None:
        self._failures = 0
        if response.WhichOneof("event") == "initial_state_done":
            self._in_initial_state = False
        if not self._in_initial_state:
            self._token = response.resume_token

    def retry_delay(self, error: RpcError) -> float | None:
        """Seconds to wait before calling again, or None: the error ends the watch."""
        reason = error.error_info.reason if error.error_info is not None else ""
        if error.code == grpc.StatusCode.UNAVAILABLE and self._failures < self._max_reconnects:
            self._failures += 1
            if error.error_info is not None and not self._in_initial_state:
                self._token = error.error_info.metadata.get("resume_token") or self._token
            return float(min(0.05 * 2**self._failures, 2.0))
        if reason == EXPIRED_REASON and self._relist:
            self._token = ""
            self._initial = True
            return 0.0
        return None
