"""The FlowService servicer: validate, run one model function as a unit of work, convert.

Errors are raised, never aborted here: `interceptors.ErrorStatusInterceptor`
turns them into statuses.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

import grpc.aio

from flowservice.v1 import flow_service_pb2 as s
from flowservice.v1 import flow_service_pb2_grpc
from flowservice_server import validate
from flowservice_server.convert import fill_flow, fill_flows
from flowservice_server.errors import NotFoundError
from flowservice_server.models import flows

if TYPE_CHECKING:
    from flowservice_server.db.engine import Database

Context = grpc.aio.ServicerContext[Any, Any]
FLOW_RESOURCE = "flowservice.v1.Flow"


class FlowServiceServicer(flow_service_pb2_grpc.FlowServiceServicer):
    def __init__(self, database: Database) -> None:
        self._database = database

    async def CreateFlow(
        self, request: s.CreateFlowRequest, context: Context
    ) -> s.CreateFlowResponse:
        new = validate.create_flow(request)
        work = partial(flows.create_flow, name=new.name, tags=new.tags, labels=new.labels)
        row, created = await self._database.write(work, context.time_remaining())
        response = s.CreateFlowResponse(created=created)
        fill_flow(response.flow, row)
        return response

    async def ReadFlow(self, request: s.ReadFlowRequest, context: Context) -> s.ReadFlowResponse:
        flow_id = validate.flow_id(request.id)
        work = partial(flows.read_flow, flow_id=flow_id)
        row = await self._database.read(work, context.time_remaining())
        if row is None:
            raise NotFoundError(FLOW_RESOURCE, "id", str(flow_id))
        response = s.ReadFlowResponse()
        fill_flow(response.flow, row)
        return response

    async def ReadFlowByName(
        self, request: s.ReadFlowByNameRequest, context: Context
    ) -> s.ReadFlowByNameResponse:
        name = validate.flow_name(request.name)
        work = partial(flows.read_flow_by_name, name=name)
        row = await self._database.read(work, context.time_remaining())
        if row is None:
            raise NotFoundError(FLOW_RESOURCE, "name", name)
        response = s.ReadFlowByNameResponse()
        fill_flow(response.flow, row)
        return response

    async def ReadFlows(self, request: s.ReadFlowsRequest, context: Context) -> s.ReadFlowsResponse:
        query = validate.read_flows(request)
        work = partial(
            flows.read_flows,
            where=query.where,
            order_by=query.order_by,
            offset=query.offset,
            limit=query.limit,
        )
        rows = await self._database.read(work, context.time_remaining())
        response = s.ReadFlowsResponse()
        fill_flows(response.flows, rows)
        return response

    async def CountFlows(
        self, request: s.CountFlowsRequest, context: Context
    ) -> s.CountFlowsResponse:
        work = partial(flows.count_flows, query=validate.count_flows(request))
        count = await self._database.read(work, context.time_remaining())
        return s.CountFlowsResponse(count=count)

    async def UpdateFlow(
        self, request: s.UpdateFlowRequest, context: Context
    ) -> s.UpdateFlowResponse:
        update = validate.update_flow(request)
        work = partial(flows.update_flow, flow_id=update.flow_id, tags=update.tags)
        row = await self._database.write(work, context.time_remaining())
        if row is None:
            raise NotFoundError(FLOW_RESOURCE, "id", str(update.flow_id))
        response = s.UpdateFlowResponse()
        fill_flow(response.flow, row)
        return response

    async def DeleteFlow(
        self, request: s.DeleteFlowRequest, context: Context
    ) -> s.DeleteFlowResponse:
        flow_id = validate.flow_id(request.id)
        work = partial(flows.delete_flow, flow_id=flow_id)
        if not await self._database.write(work, context.time_remaining()):
            raise NotFoundError(FLOW_RESOURCE, "id", str(flow_id))
        return s.DeleteFlowResponse()
