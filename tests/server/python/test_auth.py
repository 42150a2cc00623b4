"""Authentication on every RPC, enumerated from the service descriptor.

Each method is called through a generic unary call with a default request of its input type,
so a newly added RPC is covered without touching this file; the set of methods called is
checked against the descriptor and against the rpc lines of proto/sluice/v1/sluice.proto.
"""
from __future__ import annotations

import re
from typing import Any, Callable

import grpc
import pytest
from google.protobuf import message_factory

import sluiced_harness
from sluice_testlib import (OP_TOKEN, TOKEN_A, TOKEN_B, Api, enqueue, expect_error, get_job,
                            job, pb, uid)
from sluiced_harness import Sluiced

SERVICE = pb.DESCRIPTOR.services_by_name["Sluice"]
METHODS = {m.name: m for m in SERVICE.methods}

BAD_METADATA: dict[str, list[tuple[str, str]]] = {
    "no metadata": [],
    "unknown token": [("authorization", "Bearer not-a-real-token")],
    "unknown token, prefix of a real one": [("authorization", f"Bearer {OP_TOKEN[:-1]}")],
    "real token plus a suffix": [("authorization", f"Bearer {OP_TOKEN}x")],
    "Bearer with empty token": [("authorization", "Bearer ")],
    "Bearer alone": [("authorization", "Bearer")],
    "empty authorization": [("authorization", "")],
    "wrong scheme Basic": [("authorization", f"Basic {OP_TOKEN}")],
    "wrong scheme Token": [("authorization", f"Token {OP_TOKEN}")],
    "no scheme": [("authorization", OP_TOKEN)],
    "token in another header": [("x-api-key", OP_TOKEN), ("token", OP_TOKEN)],
    "token@tenant form as a token": [("authorization", f"Bearer {TOKEN_A}@tenant-a")],
}

VALID_TOKENS = {"operator": OP_TOKEN, "bound tenant-a": TOKEN_A, "bound tenant-b": TOKEN_B}


def generic_call(channel: grpc.Channel, method: Any) -> Callable[..., Any]:
    req_cls = message_factory.GetMessageClass(method.input_type)
    resp_cls = message_factory.GetMessageClass(method.output_type)
    return channel.unary_unary(f"/{SERVICE.full_name}/{method.name}",
                               request_serializer=req_cls.SerializeToString,
                               response_deserializer=resp_cls.FromString)


def call_every_method(channel: grpc.Channel,
                      metadata: list[tuple[str, str]]) -> dict[str, grpc.StatusCode]:
    """Calls each RPC with a default request; returns {method: status code}."""
    codes: dict[str, grpc.StatusCode] = {}
    for name, method in METHODS.items():
        req = message_factory.GetMessageClass(method.input_type)()
        try:
            generic_call(channel, method)(req, metadata=metadata, timeout=10)
            codes[name] = grpc.StatusCode.OK
        except grpc.RpcError as e:
            codes[name] = e.code()
            if e.code() == grpc.StatusCode.UNAUTHENTICATED:
                assert e.details(), f"{name}: empty message"
                meta = dict(e.trailing_metadata() or ())
                assert meta.get("sluice-code") == "unauthenticated", (name, meta)
    return codes


@pytest.fixture(scope="module")
def channel(server: Sluiced) -> Any:
    ch = server.channel()
    yield ch
    ch.close()


def test_descriptor_matches_proto_file() -> None:
    text = (sluiced_harness.PROTO_DIR / "sluice" / "v1" / "sluice.proto").read_text()
    in_file = set(re.findall(r"^\s*rpc\s+(\w+)\s*\(", text, flags=re.M))
    assert in_file == set(METHODS), "descriptor and proto file disagree"
    assert len(METHODS) >= 23
    assert {"ListJobs", "CountJobs", "Query"} <= set(METHODS)


@pytest.mark.parametrize("case", list(BAD_METADATA))
def test_bad_credentials_are_unauthenticated_on_every_method(channel: grpc.Channel,
                                                             case: str) -> None:
    codes = call_every_method(channel, BAD_METADATA[case])
    assert set(codes) == set(METHODS)  # a new RPC cannot skip the check
    wrong = {m: c for m, c in codes.items() if c != grpc.StatusCode.UNAUTHENTICATED}
    assert not wrong, f"{case}: not UNAUTHENTICATED: {wrong}"


@pytest.mark.parametrize("who", list(VALID_TOKENS))
def test_valid_token_passes_auth_on_every_method(channel: grpc.Channel, who: str) -> None:
    codes = call_every_method(channel, [("authorization", f"Bearer {VALID_TOKENS[who]}")])
    assert set(codes) == set(METHODS)
    refused = {m: c for m, c in codes.items()
               if c in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED,
                        grpc.StatusCode.UNIMPLEMENTED)}
    assert not refused, f"{who}: {refused}"
    assert codes["GetNodeInfo"] == grpc.StatusCode.OK


def test_unauthenticated_call_has_no_effect(channel: grpc.Channel, op: Any) -> None:
    q, jid = uid("q-"), uid("job-")
    bad = Api(op.stub, "not-a-real-token")
    expect_error(lambda: enqueue(bad, job(q, id=jid)), grpc.StatusCode.UNAUTHENTICATED,
                 "unauthenticated")
    expect_error(lambda: get_job(op, jid), grpc.StatusCode.NOT_FOUND, "not_found")
