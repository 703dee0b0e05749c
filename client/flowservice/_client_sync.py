"""FlowClientSync: the blocking client, for code without an event loop."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, TypeVar

import grpc

from flowservice import _shared
from flowservice.errors import from_failed_call
from flowservice.v1 import filters_pb2, flow_pb2, flow_service_pb2, flow_service_pb2_grpc

if TYPE_CHECKING:
    from collections.abc import Generator, Sequence
    from types import TracebackType

    from flowservice._shared import FilterArg, Labels

Req = TypeVar("Req")
Resp = TypeVar("Resp")


class FlowClientSync:
    """Blocking client for FlowService; raises `flowservice.errors.RpcError` on failure.

    Use as `with FlowClientSync(target) as client: ...`, or call `close()`.
    `credentials` selects TLS; `token` is sent as `authorization: Bearer …`;
    `timeout` (seconds) is the deadline of each call.
    """

    def __init__(
        self,
        target: str = _shared.DEFAULT_TARGET,
        *,
        credentials: grpc.ChannelCredentials | None = None,
        token: str | None = None,
        timeout: float | None = None,
        options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        opts = _shared.channel_options(options)
        self._channel = (
            grpc.secure_channel(target, credentials, options=opts)
            if credentials is not None
            else grpc.insecure_channel(target, options=opts)
        )
        self._stub = flow_service_pb2_grpc.FlowServiceStub(self._channel)
        self._metadata = _shared.call_metadata(token)
        self._timeout = timeout

    def __enter__(self) -> FlowClientSync:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def _call(self, method: grpc.UnaryUnaryMultiCallable[Req, Resp], request: Req) -> Resp:
        try:
            return method(request, metadata=self._metadata, timeout=self._timeout)
        except grpc.RpcError as error:
            if isinstance(error, grpc.Call):  # what a failed unary call raises
                raise from_failed_call(error) from None
            raise

    def create_flow(
        self, name: str, *, tags: Sequence[str] = (), labels: Labels | None = None
    ) -> tuple[flow_pb2.Flow, bool]:
        """Get-or-create by name: the flow, and whether this call created it."""
        request = _shared.create_flow_request(name, tags, labels)
        response = self._call(self._stub.CreateFlow, request)
        return response.flow, response.created

    def read_flow(self, flow_id: str) -> flow_pb2.Flow:
        request = flow_service_pb2.ReadFlowRequest(id=flow_id)
        return self._call(self._stub.ReadFlow, request).flow

    def read_flow_by_name(self, name: str) -> flow_pb2.Flow:
        request = flow_service_pb2.ReadFlowByNameRequest(name=name)
        return self._call(self._stub.ReadFlowByName, request).flow

    def read_flows(
        self,
        *,
        flows: FilterArg[filters_pb2.FlowFilter] = None,
        flow_runs: FilterArg[filters_pb2.FlowRunFilter] = None,
        task_runs: FilterArg[filters_pb2.TaskRunFilter] = None,
        deployments: FilterArg[filters_pb2.DeploymentFilter] = None,
        work_pools: FilterArg[filters_pb2.WorkPoolFilter] = None,
        latest_flow_run: FilterArg[filters_pb2.FlowRunFilter] = None,
        sort: flow_service_pb2.FlowSort.ValueType = flow_service_pb2.FLOW_SORT_UNSPECIFIED,
        offset: int = 0,
        limit: int | None = None,
    ) -> list[flow_pb2.Flow]:
        """Flows matching every given filter (a message or its JSON-form dict).

        `latest_flow_run` must hold for each flow's latest started run.
        """
        filters = _shared.filter_fields(
            flows=flows,
            flow_runs=flow_runs,
            task_runs=task_runs,
            deployments=deployments,
            work_pools=work_pools,
            latest_flow_run=latest_flow_run,
        )
        request = _shared.read_flows_request(filters, sort, offset, limit)
        return list(self._call(self._stub.ReadFlows, request).flows)

    def count_flows(
        self,
        *,
        flows: FilterArg[filters_pb2.FlowFilter] = None,
        flow_runs: FilterArg[filters_pb2.FlowRunFilter] = None,
        task_runs: FilterArg[filters_pb2.TaskRunFilter] = None,
        deployments: FilterArg[filters_pb2.DeploymentFilter] = None,
        work_pools: FilterArg[filters_pb2.WorkPoolFilter] = None,
        latest_flow_run: FilterArg[filters_pb2.FlowRunFilter] = None,
    ) -> int:
        """The number of flows `read_flows` returns for the same filters, unlimited."""
        filters = _shared.filter_fields(
            flows=flows,
            flow_runs=flow_runs,
            task_runs=task_runs,
            deployments=deployments,
            work_pools=work_pools,
            latest_flow_run=latest_flow_run,
        )
        request = flow_service_pb2.CountFlowsRequest(**filters)
        return self._call(self._stub.CountFlows, request).count

    def update_flow(self, flow_id: str, *, tags: Sequence[str] | None = None) -> flow_pb2.Flow:
        """Replace the flow's tags (None: change nothing but `updated`)."""
        request = _shared.update_flow_request(flow_id, tags)
        return self._call(self._stub.UpdateFlow, request).flow

    def delete_flow(self, flow_id: str) -> None:
        """Delete the flow with its runs and deployments."""
        self._call(self._stub.DeleteFlow, flow_service_pb2.DeleteFlowRequest(id=flow_id))

    # --- WatchFlows ---------------------------------------------------------------------

    def watch_flows(
        self,
        *,
        flows: FilterArg[filters_pb2.FlowFilter] = None,
        resume_token: str = "",
        send_initial_state: bool = False,
        relist_on_expiry: bool = False,
        max_reconnects: int = 10,
    ) -> Generator[flow_service_pb2.WatchFlowsResponse, None, None]:
        """Every change to flows, as it is committed, until the caller stops iterating.

        `flows` filters the changes (a created or updated flow as it is after
        the change, a deleted one as it was). With `send_initial_state`, the
        matching flows as they are come first (`existing`), then
        `initial_state_done`, then the changes, with no gap and no duplicate.
        `resume_token` continues after the response that carried it.

        The watch survives servers going away: on UNAVAILABLE (a server
        shutting down, a lost connection) it calls again with the last
        response's token, on any server behind the target, up to
        `max_reconnects` times in a row, and the caller sees every change
        exactly once. A cut during the initial state starts it over (the
        `existing` responses come again). When the server no longer keeps the
        history after the token (FAILED_PRECONDITION, reason
        RESUME_TOKEN_EXPIRED), `relist_on_expiry` starts over with the
        initial state: the caller gets `existing` responses again and must
        replace what it knows with them once `initial_state_done` arrives;
        without it, that `RpcError` ends the iteration. Every other error
        ends it too. No call deadline applies to a watch.
        """
        resumer = _shared.WatchResumer(
            flows, resume_token, send_initial_state, relist_on_expiry, max_reconnects
        )
        while True:
            call = self._stub.WatchFlows(resumer.request(), metadata=self._metadata)
            try:
                for response in call:
                    resumer.seen(response)
                    yield response
                return
            except grpc.RpcError as failed:
                if not isinstance(failed, grpc.Call):
                    raise
                error = from_failed_call(failed)
                delay = resumer.retry_delay(error)
                if delay is None:
                    raise error from None
            finally:
                call.cancel()
            time.sleep(delay)
