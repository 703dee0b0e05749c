"""The FlowService servicer: validate, run one model function as a unit of work, convert.

Errors are raised, never aborted here: `interceptors.ErrorStatusInterceptor`
turns them into statuses.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

import grpc.aio

from flowservice.v1 import flow_service_pb2, flow_service_pb2_grpc
from flowservice_server import validate
from flowservice_server.convert import fill_flow, fill_flows
from flowservice_server.errors import NotFoundError
from flowservice_server.models import flows

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from flowservice_server.changefeed import ChangeFeed
    from flowservice_server.db.engine import Database

Context = grpc.aio.ServicerContext[Any, Any]
FLOW_RESOURCE = "flowservice.v1.Flow"


class FlowServiceServicer(flow_service_pb2_grpc.FlowServiceServicer):
    def __init__(self, database: Database, changefeed: ChangeFeed | None = None) -> None:
        self._database = database
        self._changefeed = changefeed

    async def CreateFlow(
        self, request: flow_service_pb2.CreateFlowRequest, context: Context
    ) -> flow_service_pb2.CreateFlowResponse:
        new = validate.create_flow(request)
        work = partial(flows.create_flow, name=new.name, tags=new.tags, labels=new.labels)
        row, created = await self._database.write(work, context.time_remaining())
        response = flow_service_pb2.CreateFlowResponse(created=created)
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
        response = flow_service_pb2.ReadFlowByNameResponse()
        fill_flow(response.flow, row)
        return response

    async def ReadFlows(
        self, request: flow_service_pb2.ReadFlowsRequest, context: Context
    ) -> flow_service_pb2.ReadFlowsResponse:
        query = validate.read_flows(request)
        work = partial(
            flows.read_flows,
            filters=query.filters,
            order_by=query.order_by,
            offset=query.offset,
            limit=query.limit,
        )
        rows = await self._database.read(work, context.time_remaining())
        response = flow_service_pb2.ReadFlowsResponse()
        fill_flows(response.flows, rows)
        return response

    async def CountFlows(
        self, request: flow_service_pb2.CountFlowsRequest, context: Context
    ) -> flow_service_pb2.CountFlowsResponse:
        work = partial(flows.count_flows, filters=validate.count_flows(request))
        count = await self._database.read(work, context.time_remaining())
        return flow_service_pb2.CountFlowsResponse(count=count)

    async def UpdateFlow(
        self, request: flow_service_pb2.UpdateFlowRequest, context: Context
    ) -> flow_service_pb2.UpdateFlowResponse:
        update = validate.update_flow(request)
        work = partial(flows.update_flow, flow_id=update.flow_id, tags=update.tags)
        row = await self._database.write(work, context.time_remaining())
        if row is None:
            raise NotFoundError(FLOW_RESOURCE, "id", str(update.flow_id))
        response = flow_service_pb2.UpdateFlowResponse()
        fill_flow(response.flow, row)
        return response

    async def DeleteFlow(
        self, request: flow_service_pb2.DeleteFlowRequest, context: Context
    ) -> flow_service_pb2.DeleteFlowResponse:
        flow_id = validate.flow_id(request.id)
        work = partial(flows.delete_flow, flow_id=flow_id)
        if not await self._database.write(work, context.time_remaining()):
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
