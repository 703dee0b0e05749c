"""Every RPC carries a `google.api.http` rule whose path variables name request fields.

The rules are for transcoding proxies (Envoy, grpc-gateway), which refuse a
rule whose `{variable}` is not a field of the request; buf only checks that
the option is well-formed. The rules are read from the generated descriptors,
i.e. from what clients and proxies get.
"""

from __future__ import annotations

import re

import pytest
from google.api import annotations_pb2, http_pb2

from flowservice.v1 import flow_service_pb2

SERVICE = flow_service_pb2.DESCRIPTOR.services_by_name["FlowService"]
VARIABLE = re.compile(r"\{([a-z_.]+)(?:=[^}]*)?\}")


def rule_of(method_name: str) -> http_pb2.HttpRule:
    options = SERVICE.methods_by_name[method_name].GetOptions()
    rule: http_pb2.HttpRule = options.Extensions[annotations_pb2.http]
    return rule


@pytest.mark.parametrize("method", [m.name for m in SERVICE.methods])
def test_every_rpc_has_a_rule_whose_variables_are_request_fields(method: str) -> None:
    rule = rule_of(method)
    verb = rule.WhichOneof("pattern")
    assert verb in ("get", "post", "patch", "delete"), f"{method} has no google.api.http rule"
    path = getattr(rule, verb)
    assert path.startswith("/v1/flows")
    request = SERVICE.methods_by_name[method].input_type
    for variable in VARIABLE.findall(path):
        assert variable in request.fields_by_name, f"{method}: {{{variable}}} is not a field"
    if verb in ("get", "delete"):
        assert not rule.body, f"{method}: {verb.upper()} has no body"
    else:
        assert rule.body == "*", f"{method}: the whole request is the body"


def test_no_two_rpcs_share_a_rule() -> None:
    rules = set()
    for method in SERVICE.methods:
        rule = rule_of(method.name)
        verb = rule.WhichOneof("pattern")
        rules.add((verb, getattr(rule, verb)))
    assert len(rules) == len(SERVICE.methods)
