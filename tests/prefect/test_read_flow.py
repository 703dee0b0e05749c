"""ReadFlow / ReadFlowByName against `GET /flows/{id}` / `GET /flows/name/{name}`."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import grpc
import pytest

from flowservice.errors import RpcError
from tests.prefect.compare import from_flowservice, from_prefect
from tests.prefect.seed import FLOWS

if TYPE_CHECKING:
    from tests.prefect.conftest import Differential

NAMES = [name for name, _, _ in FLOWS]


@pytest.mark.parametrize("name", NAMES)
async def test_reads_every_flow_as_prefect_does(both: Differential, name: str) -> None:
    flow_id = both.seed.flows[name]["id"]
    by_id = await both.prefect_ok("GET", f"/flows/{flow_id}")
    by_name = await both.prefect_ok("GET", f"/flows/name/{both.prefect_server.api.quote(name)}")
    assert from_prefect(by_name) == from_prefect(by_id)
    assert from_flowservice(await both.client.read_flow(flow_id)) == from_prefect(by_id)
    assert from_flowservice(await both.client.read_flow_by_name(name)) == from_prefect(by_name)


async def test_an_unknown_id_is_404_and_not_found(both: Differential) -> None:
    missing = str(uuid.uuid4())
    reply = await both.prefect("GET", f"/flows/{missing}")
    assert (reply.status, reply.body) == (404, {"detail": "Flow not found"})
    with pytest.raises(RpcError) as error:
        await both.client.read_flow(missing)
    assert error.value.code == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize("name", ["no-such-flow", "ALPHA-ETL", "alpha-etl ", "Über-report"])
async def test_an_unknown_name_is_404_and_not_found(both: Differential, name: str) -> None:
    reply = await both.prefect("GET", f"/flows/name/{both.prefect_server.api.quote(name)}")
    assert (reply.status, reply.body) == (404, {"detail": "Flow not found"})
    with pytest.raises(RpcError) as error:
        await both.client.read_flow_by_name(name)
    assert error.value.code == grpc.StatusCode.NOT_FOUND


async def test_a_malformed_id_differs_as_documented(both: Differential) -> None:
    """README: Prefect's route does not match (404 Not Found); FlowService: INVALID_ARGUMENT."""
    reply = await both.prefect("GET", "/flows/not-a-uuid")
    assert (reply.status, reply.body) == (404, {"detail": "Not Found"})
    with pytest.raises(RpcError) as error:
        await both.client.read_flow("not-a-uuid")
    assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT
