"""The FlowService servicer: validate, run one model function as a unit of work, convert.

Errors are raised, never aborted here: `interceptors.ErrorStatusInterceptor`
turns them into statuses.
"""

from __future__ import annotations

import contextlib
from functools import partial
from typing import TYPE_CHECKING, Any

import grpc.aio

from flowservice.v1 import flow_service_pb2, flow_service_pb2_grpc
from flowservice_server import page_tokens, sorting, validate
from flowservice_server.convert import FlowMemo, fill_flow, fill_flows
from flowservice_server.errors import (
    BatchNotFoundError,
    EtagMismatchError,
    MissingItem,
    NotFoundError,
)
from flowservice_server.models import flows
from flowservice_server.wire import as_response, message_field

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterable, Sequence

    import sqlalchemy as sa

    from flowservice_server.changefeed import ChangeFeed
    from flowservice_server.db.engine import Database
    from flowservice_server.models.flows import FlowRow

Context = grpc.aio.ServicerContext[Any, Any]
FLOW_RESOURCE = "flowservice.v1.Flow"


class FlowServiceServicer(flow_service_pb2_grpc.FlowServiceServicer):
    def __init__(
        self,
        database: Database,
        changefeed: ChangeFeed | None = None,
        memo: FlowMemo | None = None,
    ) -> None:
        self._database = database
        self._changefeed = changefeed
        #: With a memo, responses of flows are joined from serialized flows (`wire`).
        self._memo = memo
        # Get-or-create of an existing name: a short read instead of a write transaction.
        self._read_before_create = database.read_before_create

    async def CreateFlow(
        self, request: flow_service_pb2.CreateFlowRequest, context: Context
    ) -> flow_service_pb2.CreateFlowResponse:
        new = validate.create_flow(request)
        existing = None
        if self._read_before_create:  # the usual case: the flow exists; nothing to write
            lookup = partial(flows.read_flow_by_name, name=new.name)
            existing = await self._database.read(lookup, context.time_remaining())
        if existing is not None:
            row, created = existing, False
        else:
            work = partial(flows.create_flow, name=new.name, tags=new.tags, labels=new.labels)
            row, created = await self._database.write(work, context.time_remaining())
        response = flow_service_pb2.CreateFlowResponse(created=created)
        if self._memo is not None:
            encoded = message_field(1, self._memo.flow_bytes(row)) + response.SerializeToString()
            return as_response(flow_service_pb2.CreateFlowResponse, encoded)
        fill_flow(response.flow, row)
        return response

    async def ReadFlow(
        self, request: flow_service_pb2.ReadFlowRequest, context: Context
    ) -> flow_service_pb2.ReadFlowResponse:
        flow_id = validate.flow_id(request.id)
        work = partial(flows.read_flow, flow_id=flow_id)
        row = await self._database.read(work, context.time_remaining())
        if row is None:
            raise NotFoundError(FLOW_RESOURCE, "id", str(flow_id))
        if self._memo is not None:
            encoded = message_field(1, self._memo.flow_bytes(row))
            return as_response(flow_service_pb2.ReadFlowResponse, encoded)
        response = flow_service_pb2.ReadFlowResponse()
        fill_flow(response.flow, row)
        return response

    async def ReadFlowByName(
        self, request: flow_service_pb2.ReadFlowByNameRequest, context: Context
    ) -> flow_service_pb2.ReadFlowByNameResponse:
        name = validate.flow_name(request.name)
        work = partial(flows.read_flow_by_name, name=name)
        row = await self._database.read(work, context.time_remaining())
        if row is None:
            raise NotFoundError(FLOW_RESOURCE, "name", name)
        if self._memo is not None:
            encoded = message_field(1, self._memo.flow_bytes(row))
            return as_response(flow_service_pb2.ReadFlowByNameResponse, encoded)
        response = flow_service_pb2.ReadFlowByNameResponse()
        fill_flow(response.flow, row)
        return response

    async def ReadFlows(
        self, request: flow_service_pb2.ReadFlowsRequest, context: Context
    ) -> flow_service_pb2.ReadFlowsResponse:
        page = validate.read_flows_page(request)
        work = partial(
            flows.read_flow_page,
            filters=page.query.filters,
            order_by=page.query.order_by,
            after=page.after,
            offset=page.query.offset,
            limit=page.query.limit,
            with_total_size=page.include_total_size,
        )
        # The count must describe the same database as the page: one snapshot.
        snapshot = page.include_total_size
        result = await self._database.read(work, context.time_remaining(), snapshot=snapshot)
        response = flow_service_pb2.ReadFlowsResponse()
        _fill_page_fields(response, page, result)
        if self._memo is not None:  # the flows (field 1), then the page fields
            encoded = self._memo.flows_field(result.rows) + response.SerializeToString()
            return as_response(flow_service_pb2.ReadFlowsResponse, encoded)
        fill_flows(response.flows, result.rows)
        return response

    async def CountFlows(
        self, request: flow_service_pb2.CountFlowsRequest, context: Context
    ) -> flow_service_pb2.CountFlowsResponse:
        filters = validate.count_flows(request)
        work: Callable[[sa.Connection], int] = (
            flows.count_all_flows if filters.empty else partial(flows.count_flows, filters=filters)
        )
        count = await self._database.read(work, context.time_remaining())
        return flow_service_pb2.CountFlowsResponse(count=count)

    async def StreamFlows(
        self, request: flow_service_pb2.StreamFlowsRequest, context: Context
    ) -> AsyncIterator[flow_service_pb2.StreamFlowsResponse]:
        """One response per batch the database stream yields; it fetches as we are read.

        grpc.aio awaits the write of each yielded response, which waits for
        the client's flow-control window, so the next batch is fetched only
        once the client has taken the one before (or transport buffers have).
        """
        stream = validate.stream_flows(request)
        query = flows.stream_flows(
            filters=stream.filters, order_by=stream.order_by, limit=stream.limit
        )
        batches = self._database.stream(query, stream.batch_size, context.time_remaining())
        async with contextlib.aclosing(batches):
            async for rows in batches:
                response = flow_service_pb2.StreamFlowsResponse()
                fill_flows(response.flows, rows)
                yield response

    async def UpdateFlow(
        self, request: flow_service_pb2.UpdateFlowRequest, context: Context
    ) -> flow_service_pb2.UpdateFlowResponse:
        conditional = validate.conditional_update_flow(request)
        update = conditional.update
        if conditional.etag:
            row = await self._update_if_unchanged(conditional, context)
        else:
            work = partial(flows.update_flow, flow_id=update.flow_id, tags=update.tags)
            row = await self._database.write(work, context.time_remaining())
        if row is None:
            raise NotFoundError(FLOW_RESOURCE, "id", str(update.flow_id))
        if self._memo is not None:
            encoded = message_field(1, self._memo.flow_bytes(row))
            return as_response(flow_service_pb2.UpdateFlowResponse, encoded)
        response = flow_service_pb2.UpdateFlowResponse()
        fill_flow(response.flow, row)
        return response

    async def DeleteFlow(
        self, request: flow_service_pb2.DeleteFlowRequest, context: Context
    ) -> flow_service_pb2.DeleteFlowResponse:
        conditional = validate.conditional_delete_flow(request)
        flow_id = conditional.flow_id
        if conditional.etag:
            deleted = await self._delete_if_unchanged(conditional, context)
        else:
            work = partial(flows.delete_flow, flow_id=flow_id)
            deleted = await self._database.write(work, context.time_remaining())
        if not deleted:
            raise NotFoundError(FLOW_RESOURCE, "id", str(flow_id))
        return flow_service_pb2.DeleteFlowResponse()

    # --- WatchFlows -------------------------------------------------------------------

    async def WatchFlows(
        self, request: flow_service_pb2.WatchFlowsRequest, context: Context
    ) -> AsyncIterator[flow_service_pb2.WatchFlowsResponse]:
        """The change feed (`changefeed.ChangeFeed`): until cancelled or the server stops."""
        query = validate.watch_flows(request)
        if self._changefeed is None:
            raise NotImplementedError
        async for response in self._changefeed.watch(query):
            yield response

    # --- batches ---------------------------------------------------------------------

    async def BatchGetFlows(
        self, request: flow_service_pb2.BatchGetFlowsRequest, context: Context
    ) -> flow_service_pb2.BatchGetFlowsResponse:
        keys = validate.batch_get_flows(request)
        work = partial(flows.batch_read_flows, flow_ids=keys.ids, names=keys.names)
        by_id, by_name = await self._database.read(work, context.time_remaining())
        missing = _missing(("ids", "id", map(str, keys.ids), by_id))
        missing += _missing(("names", "name", keys.names, by_name))
        if missing:
            raise BatchNotFoundError(FLOW_RESOURCE, len(by_id) + len(by_name), missing)
        response = flow_service_pb2.BatchGetFlowsResponse()
        fill_flows(response.flows, [row for row in (*by_id, *by_name) if row is not None])
        return response

    async def BatchCreateFlows(
        self, request: flow_service_pb2.BatchCreateFlowsRequest, context: Context
    ) -> flow_service_pb2.BatchCreateFlowsResponse:
        checked = validate.batch_create_flows(request)
        new_flows = [(new.name, new.tags, new.labels) for new in checked]
        work = partial(flows.batch_create_flows, new_flows=new_flows)
        answers = await self._database.write(work, context.time_remaining())
        response = flow_service_pb2.BatchCreateFlowsResponse()
        for row, created in answers:
            answer = response.responses.add(created=created)
            fill_flow(answer.flow, row)
        return response

    # --- conditional writes (etags) ----------------------------------------------------

    async def _update_if_unchanged(
        self, conditional: validate.ConditionalTagsUpdate, context: Context
    ) -> FlowRow | None:
        update = conditional.update
        work = partial(
            flows.update_flow_if_unchanged,
            flow_id=update.flow_id,
            tags=update.tags,
            etag=conditional.etag,
        )
        try:
            return await self._database.write(work, context.time_remaining())
        except flows.StaleFlowError:
            raise EtagMismatchError(
                FLOW_RESOURCE, "id", str(update.flow_id), conditional.etag
            ) from None

    async def _delete_if_unchanged(
        self, conditional: validate.ConditionalDelete, context: Context
    ) -> bool:
        work = partial(
            flows.delete_flow_if_unchanged, flow_id=conditional.flow_id, etag=conditional.etag
        )
        try:
            return await self._database.write(work, context.time_remaining())
        except flows.StaleFlowError:
            raise EtagMismatchError(
                FLOW_RESOURCE, "id", str(conditional.flow_id), conditional.etag
            ) from None


def _missing(
    lookup: tuple[str, str, Iterable[str], Sequence[FlowRow | None]],
) -> list[MissingItem]:
    """Each distinct requested value without a row, as (field path, key, value)."""
    field, key, values, rows = lookup
    missing: dict[str, MissingItem] = {}
    for index, (value, row) in enumerate(zip(values, rows, strict=True)):
        if row is None and value not in missing:
            missing[value] = (f"{field}[{index}]", key, value)
    return list(missing.values())


def _fill_page_fields(
    response: flow_service_pb2.ReadFlowsResponse,
    page: validate.FlowPageQuery,
    result: flows.FlowPage,
) -> None:
    """ReadFlows' paging fields: the next page's token when more flows follow, the total."""
    if result.more:  # never a token to an empty page: a row past this page was read
        position = sorting.position_of(page.sort, result.rows[-1])
        response.next_page_token = page_tokens.encode(page.fingerprint, position)
    if result.total_size is not None:
        response.total_size = result.total_size
