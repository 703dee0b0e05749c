"""A gRPC health probe: `python -m flowservice_server.probe [HOST:PORT]` exits 0 when SERVING.

Container HEALTHCHECKs and exec probes need a program that speaks the gRPC
health protocol, and the image has Python and grpcio but no
grpc_health_probe binary. It asks `grpc.health.v1.Health/Check` once, within a
timeout, and exits 0 for SERVING and 1 for anything else (NOT_SERVING while
the database is unreachable or the server drains, no answer, a refusal),
printing the status. Plaintext only, as Kubernetes' own gRPC probes.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

if TYPE_CHECKING:
    from collections.abc import Sequence

DEFAULT_ADDRESS = "127.0.0.1:50051"


def check(address: str, service: str, timeout: float) -> str:
    """The health status name of `service` at `address`, or the gRPC status that prevented it."""
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        except grpc.RpcError as error:
            code: grpc.StatusCode = error.code()
            return code.name
    name: str = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    return name


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flowservice_server.probe", description=__doc__)
    parser.add_argument("address", nargs="?", default=DEFAULT_ADDRESS, help="HOST:PORT")
    parser.add_argument("--service", default="", help="a service name; empty: the server")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds (default 3)")
    arguments = parser.parse_args(argv)
    status = check(arguments.address, arguments.service, arguments.timeout)
    print(status)
    return 0 if status == "SERVING" else 1


if __name__ == "__main__":
    sys.exit(main())
