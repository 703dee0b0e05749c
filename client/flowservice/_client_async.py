"""FlowClient: the asyncio client (grpc.aio)."""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
import grpc.aio

from flowservice import _shared
from flowservice.errors import from_failed_call
from flowservice.v1 import filters_pb2, flow_pb2, flow_service_pb2, flow_service_pb2_grpc

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Sequence
    from types import TracebackType

    from flowservice._shared import (
        FilterArg,
        FlowPage,
        IdArg,
        Labels,
        NewFlowArg,
        RetryBudget,
        SortArg,
    )
    from flowservice.prefect_compat import PrefectFilter

Req = TypeVar("Req")
Resp = TypeVar("Resp")


class FlowClient:
    """Async client for FlowService; raises `flowservice.errors.RpcError` on failure.

    Use as `async with FlowClient(target) as client: ...`, or call `close()`.
    `credentials` selects TLS; `token` is sent as `authorization: Bearer …`;
    `timeout` (seconds) is the deadline of each call; every method also takes
    `timeout=` for that call alone (None: the client's).

    With `wait_for_ready` (the default) a call made while no server answers
    waits for one, up to its deadline, instead of failing at once with
    UNAVAILABLE: a client started before its server works once it is up.
    UNAVAILABLE answers are retried (up to 5 attempts, backoff 0.1 s to 2 s)
    within `retry_budget` (gRPC's `retryThrottling`; None: no budget).
    `from_env()` builds one from FLOWSERVICE_* variables.

    `consistency="read_your_writes"`: every read sees this client's own
    earlier writes, even when the server reads from PostgreSQL hot standbys
    that lag behind (see `flowservice._shared.Consistency`); the default,
    `"eventual"`, lets a standby answer with what it has replayed.

    The read and count methods also take Prefect's keywords (`flow_filter`,
    `flow_run_filter`, `task_run_filter`, `deployment_filter`,
    `work_pool_filter`) and shapes (its JSON with `any_`, `"operator": "and_"`,
    sort `"NAME_ASC"`, or its pydantic filter objects); see
    `flowservice.prefect_compat`. Giving both forms of one filter is
    `InvalidArgument`.
    """

    def __init__(
        self,
        target: str = _shared.DEFAULT_TARGET,
        *,
        credentials: grpc.ChannelCredentials | None = None,
        token: str | None = None,
        timeout: float | None = None,
        options: Sequence[tuple[str, Any]] = (),
        wait_for_ready: bool = True,
        retry_budget: RetryBudget | None = _shared.DEFAULT_RETRY_BUDGET,
        consistency: str = "eventual",
    ) -> None:
        opts = _shared.channel_options(options, retry_budget=retry_budget)
        self._wait_for_ready = wait_for_ready
        self._channel = (
            grpc.aio.secure_channel(target, credentials, options=opts)
            if credentials is not None
            else grpc.aio.insecure_channel(target, options=opts)
        )
        self._stub = flow_service_pb2_grpc.FlowServiceStub(self._channel)
        self._metadata = _shared.call_metadata(token)
        self._consistency = _shared.Consistency(consistency)
        self._timeout = timeout

    @classmethod
    def from_env(
        cls,
        *,
        target: str | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        token: str | None = None,
        timeout: float | None = None,
        options: Sequence[tuple[str, Any]] = (),
        wait_for_ready: bool = True,
        retry_budget: RetryBudget | None = _shared.DEFAULT_RETRY_BUDGET,
        consistency: str = "eventual",
    ) -> FlowClient:
        """A client configured by the environment; a keyword given here wins over it.

        FLOWSERVICE_TARGET (default 127.0.0.1:50051), FLOWSERVICE_TOKEN,
        FLOWSERVICE_TIMEOUT (seconds), and TLS: FLOWSERVICE_TLS_CA_FILE (the
        CA that signed the server's certificate) with, for mutual TLS,
        FLOWSERVICE_TLS_CLIENT_CERT_FILE and FLOWSERVICE_TLS_CLIENT_KEY_FILE.
        """
        settings = _shared.settings_from_env(
            os.environ, target=target, token=token, timeout=timeout, credentials=credentials
        )
        return cls(
            settings.target,
            credentials=settings.credentials,
            token=settings.token,
            timeout=settings.timeout,
            options=options,
            wait_for_ready=wait_for_ready,
            retry_budget=retry_budget,
            consistency=consistency,
        )

    async def __aenter__(self) -> FlowClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    def _deadline(self, timeout: float | None) -> float | None:
        return self._timeout if timeout is None else timeout

    async def _call(
        self,
        method: grpc.aio.UnaryUnaryMultiCallable[Req, Resp],
        request: Req,
        timeout: float | None = None,
    ) -> Resp:
        try:
            call = method(
                request,
                metadata=self._consistency.metadata(self._metadata),
                timeout=self._deadline(timeout),
                wait_for_ready=self._wait_for_ready,
            )
            response = await call
            if self._consistency.enabled:
                self._consistency.seen(await call.trailing_metadata())
            return response
        except grpc.aio.AioRpcError as error:
            raise from_failed_call(error) from None

    async def create_flow(
        self,
        name: str,
        *,
        tags: Sequence[str] = (),
        labels: Labels | None = None,
        timeout: float | None = None,
    ) -> tuple[flow_pb2.Flow, bool]:
        """Get-or-create by name: the flow, and whether this call created it."""
        request = _shared.create_flow_request(name, tags, labels)
        response = await self._call(self._stub.CreateFlow, request, timeout)
        return response.flow, response.created

    async def read_flow(self, flow_id: IdArg, *, timeout: float | None = None) -> flow_pb2.Flow:
        request = flow_service_pb2.ReadFlowRequest(id=_shared.as_id(flow_id))
        return (await self._call(self._stub.ReadFlow, request, timeout)).flow

    async def read_flow_by_name(self, name: str, *, timeout: float | None = None) -> flow_pb2.Flow:
        request = flow_service_pb2.ReadFlowByNameRequest(name=name)
        return (await self._call(self._stub.ReadFlowByName, request, timeout)).flow

    async def read_flows(
        self,
        *,
        flows: FilterArg[filters_pb2.FlowFilter] = None,
        flow_runs: FilterArg[filters_pb2.FlowRunFilter] = None,
        task_runs: FilterArg[filters_pb2.TaskRunFilter] = None,
        deployments: FilterArg[filters_pb2.DeploymentFilter] = None,
        work_pools: FilterArg[filters_pb2.WorkPoolFilter] = None,
        latest_flow_run: FilterArg[filters_pb2.FlowRunFilter] = None,
        flow_filter: PrefectFilter = None,
        flow_run_filter: PrefectFilter = None,
        task_run_filter: PrefectFilter = None,
        deployment_filter: PrefectFilter = None,
        work_pool_filter: PrefectFilter = None,
        sort: SortArg = flow_service_pb2.FLOW_SORT_UNSPECIFIED,
        offset: int = 0,
        limit: int | None = None,
        timeout: float | None = None,
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
            flow_filter=flow_filter,
            flow_run_filter=flow_run_filter,
            task_run_filter=task_run_filter,
            deployment_filter=deployment_filter,
            work_pool_filter=work_pool_filter,
        )
        request = _shared.read_flows_request(filters, sort, offset, limit)
        return list((await self._call(self._stub.ReadFlows, request, timeout)).flows)

    async def read_flows_page(
        self,
        *,
        flows: FilterArg[filters_pb2.FlowFilter] = None,
        flow_runs: FilterArg[filters_pb2.FlowRunFilter] = None,
        task_runs: FilterArg[filters_pb2.TaskRunFilter] = None,
        deployments: FilterArg[filters_pb2.DeploymentFilter] = None,
        work_pools: FilterArg[filters_pb2.WorkPoolFilter] = None,
        latest_flow_run: FilterArg[filters_pb2.FlowRunFilter] = None,
        flow_filter: PrefectFilter = None,
        flow_run_filter: PrefectFilter = None,
        task_run_filter: PrefectFilter = None,
        deployment_filter: PrefectFilter = None,
        work_pool_filter: PrefectFilter = None,
        sort: SortArg = flow_service_pb2.FLOW_SORT_UNSPECIFIED,
        offset: int = 0,
        limit: int | None = None,
        page_token: str = "",
        include_total_size: bool = False,
        timeout: float | None = None,
    ) -> FlowPage:
        """One page of `read_flows`, with the token for the next page and, if asked, the total.

        Pass the returned `next_page_token` as `page_token`, with the same
        filters and sort, to read the page after it (empty: this was the last
        page). With `include_total_size`, `total_size` counts every matching
        flow, in the same snapshot as the page.
        """
        filters = _shared.filter_fields(
            flows=flows,
            flow_runs=flow_runs,
            task_runs=task_runs,
            deployments=deployments,
            work_pools=work_pools,
            latest_flow_run=latest_flow_run,
            flow_filter=flow_filter,
            flow_run_filter=flow_run_filter,
            task_run_filter=task_run_filter,
            deployment_filter=deployment_filter,
            work_pool_filter=work_pool_filter,
        )
        request = _shared.read_flows_request(
            filters,
            sort,
            offset,
            limit,
            page_token=page_token,
            include_total_size=include_total_size,
        )
        return _shared.flow_page(await self._call(self._stub.ReadFlows, request, timeout))

    async def iter_flows(
        self,
        *,
        flows: FilterArg[filters_pb2.FlowFilter] = None,
        flow_runs: FilterArg[filters_pb2.FlowRunFilter] = None,
        task_runs: FilterArg[filters_pb2.TaskRunFilter] = None,
        deployments: FilterArg[filters_pb2.DeploymentFilter] = None,
        work_pools: FilterArg[filters_pb2.WorkPoolFilter] = None,
        latest_flow_run: FilterArg[filters_pb2.FlowRunFilter] = None,
        flow_filter: PrefectFilter = None,
        flow_run_filter: PrefectFilter = None,
        task_run_filter: PrefectFilter = None,
        deployment_filter: PrefectFilter = None,
        work_pool_filter: PrefectFilter = None,
        sort: SortArg = flow_service_pb2.FLOW_SORT_UNSPECIFIED,
        page_size: int | None = None,
        timeout: float | None = None,
    ) -> AsyncIterator[flow_pb2.Flow]:
        """Every flow matching the filters, in order, read page by page with page tokens.

        `page_size` flows per call (None: the server's default, 200). Each
        flow that matches throughout the iteration comes exactly once, even
        while flows are created and deleted.
        """
        filters = _shared.filter_fields(
            flows=flows,
            flow_runs=flow_runs,
            task_runs=task_runs,
            deployments=deployments,
            work_pools=work_pools,
            latest_flow_run=latest_flow_run,
            flow_filter=flow_filter,
            flow_run_filter=flow_run_filter,
            task_run_filter=task_run_filter,
            deployment_filter=deployment_filter,
            work_pool_filter=work_pool_filter,
        )
        page_token = ""
        while True:
            request = _shared.read_flows_request(filters, sort, 0, page_size, page_token=page_token)
            response = await self._call(self._stub.ReadFlows, request, timeout)
            for flow in response.flows:
                yield flow
            page_token = response.next_page_token
            if not page_token:
                return

    async def stream_flows(
        self,
        *,
        flows: FilterArg[filters_pb2.FlowFilter] = None,
        flow_runs: FilterArg[filters_pb2.FlowRunFilter] = None,
        task_runs: FilterArg[filters_pb2.TaskRunFilter] = None,
        deployments: FilterArg[filters_pb2.DeploymentFilter] = None,
        work_pools: FilterArg[filters_pb2.WorkPoolFilter] = None,
        latest_flow_run: FilterArg[filters_pb2.FlowRunFilter] = None,
        flow_filter: PrefectFilter = None,
        flow_run_filter: PrefectFilter = None,
        task_run_filter: PrefectFilter = None,
        deployment_filter: PrefectFilter = None,
        work_pool_filter: PrefectFilter = None,
        sort: SortArg = flow_service_pb2.FLOW_SORT_UNSPECIFIED,
        limit: int | None = None,
        batch_size: int = 0,
        timeout: float | None = None,
    ) -> AsyncGenerator[flow_pb2.Flow, None]:
        """Every flow matching the filters, in sort order, streamed (StreamFlows).

        Same filters and sort as `read_flows`, without its 200-flow page:
        `limit` (None: all) caps the total, `batch_size` (1 to 1000; 0: the
        server's 100) the flows per response. All come from one snapshot,
        fetched by the server as this iterator is consumed. The client's
        `timeout` bounds the whole stream. Stopping early (break, then close
        the iterator or let it go) cancels the call.
        """
        filters = _shared.filter_fields(
            flows=flows,
            flow_runs=flow_runs,
            task_runs=task_runs,
            deployments=deployments,
            work_pools=work_pools,
            latest_flow_run=latest_flow_run,
            flow_filter=flow_filter,
            flow_run_filter=flow_run_filter,
            task_run_filter=task_run_filter,
            deployment_filter=deployment_filter,
            work_pool_filter=work_pool_filter,
        )
        request = _shared.stream_flows_request(filters, sort, limit, batch_size)
        call = self._stub.StreamFlows(
            request,
            metadata=self._consistency.metadata(self._metadata),
            timeout=self._deadline(timeout),
            wait_for_ready=self._wait_for_ready,
        )
        try:
            async for response in call:
                for flow in response.flows:
                    yield flow
        except grpc.aio.AioRpcError as error:
            raise from_failed_call(error) from None
        finally:
            call.cancel()  # a no-op once the stream has ended

    async def count_flows(
        self,
        *,
        flows: FilterArg[filters_pb2.FlowFilter] = None,
        flow_runs: FilterArg[filters_pb2.FlowRunFilter] = None,
        task_runs: FilterArg[filters_pb2.TaskRunFilter] = None,
        deployments: FilterArg[filters_pb2.DeploymentFilter] = None,
        work_pools: FilterArg[filters_pb2.WorkPoolFilter] = None,
        latest_flow_run: FilterArg[filters_pb2.FlowRunFilter] = None,
        flow_filter: PrefectFilter = None,
        flow_run_filter: PrefectFilter = None,
        task_run_filter: PrefectFilter = None,
        deployment_filter: PrefectFilter = None,
        work_pool_filter: PrefectFilter = None,
        timeout: float | None = None,
    ) -> int:
        """The number of flows `read_flows` returns for the same filters, unlimited."""
        filters = _shared.filter_fields(
            flows=flows,
            flow_runs=flow_runs,
            task_runs=task_runs,
            deployments=deployments,
            work_pools=work_pools,
            latest_flow_run=latest_flow_run,
            flow_filter=flow_filter,
            flow_run_filter=flow_run_filter,
            task_run_filter=task_run_filter,
            deployment_filter=deployment_filter,
            work_pool_filter=work_pool_filter,
        )
        request = flow_service_pb2.CountFlowsRequest(**filters)
        return (await self._call(self._stub.CountFlows, request, timeout)).count

    async def update_flow(
        self,
        flow_id: IdArg,
        *,
        tags: Sequence[str] | None = None,
        etag: str = "",
        timeout: float | None = None,
    ) -> flow_pb2.Flow:
        """Replace the flow's tags (None: change nothing but `updated`).

        With `etag` (a Flow's `etag` as read), write only if the flow has not
        changed since; otherwise raise `RpcError` with code ABORTED, nothing written.
        """
        request = _shared.update_flow_request(flow_id, tags, etag)
        return (await self._call(self._stub.UpdateFlow, request, timeout)).flow

    async def delete_flow(
        self, flow_id: IdArg, *, etag: str = "", timeout: float | None = None
    ) -> None:
        """Delete the flow with its runs and deployments.

        With `etag` (a Flow's `etag` as read), delete only if the flow has not
        changed since; otherwise raise `RpcError` with code ABORTED, nothing deleted.
        """
        request = flow_service_pb2.DeleteFlowRequest(id=_shared.as_id(flow_id), etag=etag)
        await self._call(self._stub.DeleteFlow, request, timeout)

    async def batch_get_flows(
        self, *, ids: Sequence[IdArg] = (), names: Sequence[str] = (), timeout: float | None = None
    ) -> list[flow_pb2.Flow]:
        """The flows of `ids` in order, then those of `names` (1 to 1,000 in all).

        All or nothing: if any is missing, `RpcError` NOT_FOUND with a
        `ResourceInfo` per missing id or name (`resource_infos`, the first 10).
        """
        request = _shared.batch_get_flows_request(ids, names)
        return list((await self._call(self._stub.BatchGetFlows, request, timeout)).flows)

    async def batch_create_flows(
        self, requests: Iterable[NewFlowArg], *, timeout: float | None = None
    ) -> list[tuple[flow_pb2.Flow, bool]]:
        """Get-or-create each flow in one transaction: (flow, created) per item, in order.

        An item is a `CreateFlowRequest` or `(name, tags, labels)` with tags and
        labels optional. A name given twice is one flow: only its first answer
        can have `created` true.
        """
        request = _shared.batch_create_flows_request(requests)
        response = await self._call(self._stub.BatchCreateFlows, request, timeout)
        return [(answer.flow, answer.created) for answer in response.responses]

    # --- WatchFlows ---------------------------------------------------------------------

    async def watch_flows(
        self,
        *,
        flows: FilterArg[filters_pb2.FlowFilter] = None,
        resume_token: str = "",
        send_initial_state: bool = False,
        relist_on_expiry: bool = False,
        max_reconnects: int = 10,
    ) -> AsyncGenerator[flow_service_pb2.WatchFlowsResponse, None]:
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
            call = self._stub.WatchFlows(
                resumer.request(),
                metadata=self._consistency.metadata(self._metadata),
                wait_for_ready=self._wait_for_ready,
            )
            try:
                async for response in call:
                    resumer.seen(response)
                    yield response
                return
            except grpc.aio.AioRpcError as failed:
                error = from_failed_call(failed)
                delay = resumer.retry_delay(error)
                if delay is None:
                    raise error from None
            finally:
                call.cancel()
            await asyncio.sleep(delay)
