"""Size caps at their exact edges: limit-1 and limit accepted, limit+1 RESOURCE_EXHAUSTED with
nothing written (the rejected id is unknown and no extra task can be leased)."""
from __future__ import annotations

import grpc
import pytest

from sluice_testlib import (Servers, OP_TOKEN, Api, enqueue, expect_error, get_job, heartbeat, job, lease,
                            lease_n, pb, report, success, uid)

C = grpc.StatusCode
S = pb.JobStatus
TOO_LARGE = (C.RESOURCE_EXHAUSTED, "too_large")


@pytest.fixture(scope="module")
def limits(op: Api) -> pb.GetNodeInfoResponse.Limits:
    lim = op.GetNodeInfo(pb.GetNodeInfoRequest()).limits
    # The defaults of the spec; the tests below derive every edge from these.
    assert (lim.max_payload_bytes, lim.max_result_bytes, lim.max_id_bytes,
            lim.max_metadata_value_bytes) == (1 << 20, 1 << 20, 128, 1024)
    return lim


def assert_only_tasks(api: Api, tenant: str, queue: str, expected_ids: list[str]) -> None:
    tasks = lease_n(api, queue, len(expected_ids), tenant=tenant, wait_ms=0)
    assert sorted(t.job_id for t in tasks) == sorted(expected_ids)
    assert len(lease(api, queue, tenant=tenant).tasks) == 0


def test_payload_edges(op: Api, limits: pb.GetNodeInfoResponse.Limits) -> None:
    tenant, q = uid("size-"), uid("q-")
    cap = limits.max_payload_bytes
    ok_ids = []
    for n in (cap - 1, cap):
        jid = uid(f"p{n}-")
        assert enqueue(op, job(q, id=jid, payload=b"p" * n), tenant).created
        assert len(get_job(op, jid, tenant).payload) == n
        ok_ids.append(jid)
    bad = uid("p-over-")
    expect_error(lambda: enqueue(op, job(q, id=bad, payload=b"p" * (cap + 1)), tenant),
                 *TOO_LARGE)
    # In a batch, the oversize job rejects its good neighbour too.
    neighbour = uid("p-neigh-")
    expect_error(lambda: op.EnqueueBatch(pb.EnqueueBatchRequest(tenant=tenant, jobs=[
        job(q, id=neighbour, payload=b"ok"), job(q, id=bad, payload=b"p" * (cap + 1))])),
        *TOO_LARGE)
    for jid in (bad, neighbour):
        expect_error(lambda: get_job(op, jid, tenant), C.NOT_FOUND, "not_found")
    assert_only_tasks(op, tenant, q, ok_ids)


def test_id_length_edges(op: Api, limits: pb.GetNodeInfoResponse.Limits) -> None:
    tenant, q = uid("size-"), uid("q-")
    cap = limits.max_id_bytes
    ok_ids = []
    for n in (cap - 1, cap):
        jid = (uid("id-") + "x" * cap)[:n]
        assert enqueue(op, job(q, id=jid), tenant).created
        assert get_job(op, jid, tenant).id == jid
        ok_ids.append(jid)
    bad = uid("id-over-") + "y" * cap
    bad = bad[:cap + 1]
    expect_error(lambda: enqueue(op, job(q, id=bad), tenant), *TOO_LARGE)
    # The rejected id cannot even be named (too long); it was not stored truncated either.
    expect_error(lambda: get_job(op, bad, tenant), *TOO_LARGE)
    expect_error(lambda: get_job(op, bad[:cap], tenant), C.NOT_FOUND, "not_found")
    assert_only_tasks(op, tenant, q, ok_ids)


def test_metadata_value_edges(op: Api, limits: pb.GetNodeInfoResponse.Limits) -> None:
    tenant, q = uid("size-"), uid("q-")
    cap = limits.max_metadata_value_bytes
    ok_ids = []
    for n in (cap - 1, cap):
        jid = uid(f"m{n}-")
        assert enqueue(op, job(q, id=jid, metadata={"k": "v" * n}), tenant).created
        assert len(get_job(op, jid, tenant).metadata["k"]) == n
        ok_ids.append(jid)
    bad = uid("m-over-")
    expect_error(lambda: enqueue(op, job(q, id=bad, metadata={"k": "v" * (cap + 1)}), tenant),
                 *TOO_LARGE)
    expect_error(lambda: get_job(op, bad, tenant), C.NOT_FOUND, "not_found")
    assert_only_tasks(op, tenant, q, ok_ids)


def test_result_over_cap_keeps_lease(op: Api, limits: pb.GetNodeInfoResponse.Limits) -> None:
    tenant, q = uid("size-"), uid("q-")
    cap = limits.max_result_bytes
    jid = enqueue(op, job(q), tenant).id
    [t] = lease_n(op, q, 1, tenant=tenant)
    expect_error(lambda: report(op, t, success(b"r" * (cap + 1)), tenant), *TOO_LARGE)
    j = get_job(op, jid, tenant, attempts=True)
    assert j.status == S.RUNNING and j.attempts[-1].status == pb.ATTEMPT_RUNNING
    assert heartbeat(op, t, tenant).lease_expires_ms > 0  # the lease is still live
    report(op, t, success(b"r" * cap), tenant)
    r = op.GetJobResult(pb.GetJobResultRequest(tenant=tenant, id=jid))
    assert (r.status, len(r.result)) == (S.SUCCEEDED, cap)


def test_max_message_bytes(servers: Servers) -> None:
    max_msg = 64 << 10
    srv = servers.start(("--max-message-bytes", str(max_msg), "--max-payload-bytes", str(1 << 20)))
    api = Api(servers.stub(srv), OP_TOKEN)
    lim = api.GetNodeInfo(pb.GetNodeInfoRequest()).limits
    assert (lim.max_message_bytes, lim.max_payload_bytes) == (max_msg, 1 << 20)
    q = uid("q-")
    ok = enqueue(api, job(q, id="fits", payload=b"m" * (max_msg - 1024))).id
    # Within the payload cap, over the message cap: refused by gRPC before the engine.
    err = expect_error(lambda: enqueue(api, job(q, id="over", payload=b"m" * (max_msg + 1024))),
                       C.RESOURCE_EXHAUSTED, None)
    code = dict(err.trailing_metadata() or ()).get("sluice-code")
    assert code in (None, "too_large"), code
    expect_error(lambda: get_job(api, "over"), C.NOT_FOUND, "not_found")
    assert_only_tasks(api, "", q, [ok])

