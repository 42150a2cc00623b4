"""Every reachable error: the gRPC status code AND the trailing metadata `sluice-code`.

Classification is on (code, sluice-code) only; messages are asserted non-empty, never parsed.

Codes not provoked here, and why:
  closed/UNAVAILABLE       only while draining (test_http.py accepts it from a drained long-poll)
  io_error/INTERNAL, corruption/DATA_LOSS   need a failing or corrupted disk
  timeout/DEADLINE_EXCEEDED, already_exists/ALREADY_EXISTS   reserved, never produced
  busy/ABORTED             needs a writer outside the engine's lock protocol
"""
from __future__ import annotations

import grpc
import pytest

from sluice_testlib import (TOKEN_A, Api, cancelled, enqueue, expect_error, failure, get_job,
                            heartbeat, job, lease, lease_n, no_retry, now_ms, pb, report, success,
                            uid, wait_until)
from sluiced_harness import pb_grpc

C = grpc.StatusCode
S = pb.JobStatus


@pytest.fixture
def tenant() -> str:
    return uid("err-")


# ---- NOT_FOUND ----------------------------------------------------------------------------

def test_not_found(op: Api, tenant: str) -> None:
    missing = uid("missing-")
    for method, req in [
        ("GetJob", pb.GetJobRequest(tenant=tenant, id=missing)),
        ("GetJobResult", pb.GetJobResultRequest(tenant=tenant, id=missing)),
        ("GetJobResult", pb.GetJobResultRequest(tenant=tenant, id=missing, wait_ms=100)),
        ("CancelJob", pb.CancelJobRequest(tenant=tenant, id=missing)),
        ("RestartJob", pb.RestartJobRequest(tenant=tenant, id=missing)),
        ("ExpediteJob", pb.ExpediteJobRequest(tenant=tenant, id=missing)),
        ("DeleteJob", pb.DeleteJobRequest(tenant=tenant, id=missing)),
        ("GetFloatingLimit", pb.GetFloatingLimitRequest(tenant=tenant, key=missing)),
        ("SetFloatingLimit", pb.SetFloatingLimitRequest(tenant=tenant, key=missing, max=3)),
    ]:
        expect_error(lambda: op.call(method, req), C.NOT_FOUND, "not_found")


def test_same_id_in_another_tenant_is_not_found(op: Api, tenant: str) -> None:
    jid = enqueue(op, job(uid("q-")), tenant).id
    expect_error(lambda: get_job(op, jid, tenant + "-other"), C.NOT_FOUND, "not_found")


# ---- INVALID_ARGUMENT ---------------------------------------------------------------------

def test_invalid_argument_enqueue(op: Api, tenant: str) -> None:
    q = uid("q-")
    bad_specs = {
        "empty queue": job(""),
        "priority 100": job(q, priority=100),
        "negative start_at_ms": job(q, start_at_ms=-1),
        "lease over 24h": job(q, lease_ms=24 * 3600 * 1000 + 1),
        "multiplier < 1": job(q, retry=pb.RetryPolicy(max_retries=1, multiplier=0.5)),
        "fixed max 0": job(q, limits=[pb.ConcurrencyLimit(kind=pb.ConcurrencyLimit.FIXED,
                                                          key="k", max=0)]),
        "limit without key": job(q, limits=[pb.ConcurrencyLimit(max=1)]),
        "floating without interval": job(q, limits=[pb.ConcurrencyLimit(
            kind=pb.ConcurrencyLimit.FLOATING, key="f", max=1)]),
        "repeated limit key": job(q, limits=[
            pb.ConcurrencyLimit(key="k", max=1), pb.ConcurrencyLimit(key="k", max=2)]),
    }
    for name, spec in bad_specs.items():
        expect_error(lambda: enqueue(op, spec, tenant), C.INVALID_ARGUMENT, "invalid_argument")
        # A bad job in a batch rejects the whole batch: nothing is written.
        good_id = uid("good-")
        expect_error(lambda: op.EnqueueBatch(pb.EnqueueBatchRequest(
            tenant=tenant, jobs=[job(q, id=good_id), spec])),
            C.INVALID_ARGUMENT, "invalid_argument")
        expect_error(lambda: get_job(op, good_id, tenant), C.NOT_FOUND, "not_found")
    assert len(lease(op, q, tenant=tenant).tasks) == 0, "a rejected enqueue wrote a task"


def test_invalid_argument_empty_batch(op: Api, tenant: str) -> None:
    expect_error(lambda: op.EnqueueBatch(pb.EnqueueBatchRequest(tenant=tenant)),
                 C.INVALID_ARGUMENT, "invalid_argument")


def test_invalid_argument_workers_and_reads(op: Api, tenant: str) -> None:
    q = uid("q-")
    for req in [
        pb.LeaseTasksRequest(tenant=tenant, queue="", worker_id="w", max_tasks=1),
        pb.LeaseTasksRequest(tenant=tenant, queue=q, worker_id="", max_tasks=1),
        pb.LeaseTasksRequest(tenant=tenant, queue=q, worker_id="w", max_tasks=0),
        pb.LeaseTasksRequest(tenant=tenant, queue=q, worker_id="w", max_tasks=10_000_000),
    ]:
        expect_error(lambda: op.LeaseTasks(req), C.INVALID_ARGUMENT, "invalid_argument")
    expect_error(lambda: get_job(op, "", tenant), C.INVALID_ARGUMENT, "invalid_argument")
    expect_error(lambda: op.GetFloatingLimit(pb.GetFloatingLimitRequest(tenant=tenant, key="")),
                 C.INVALID_ARGUMENT, "invalid_argument")

    enqueue(op, job(q), tenant)
    [t] = lease_n(op, q, 1, tenant=tenant)
    # A failure without an error code; an outcome that is not set; a malformed task id.
    expect_error(lambda: report(op, t, failure(""), tenant), C.INVALID_ARGUMENT,
                 "invalid_argument")
    expect_error(lambda: op.ReportOutcome(pb.ReportOutcomeRequest(
        tenant=tenant, task_id=t.task_id, lease_token=t.lease_token)),
        C.INVALID_ARGUMENT, "invalid_argument")
    expect_error(lambda: op.ReportOutcome(pb.ReportOutcomeRequest(
        tenant=tenant, task_id="no-hash-sign", lease_token=t.lease_token, outcome=success())),
        C.INVALID_ARGUMENT, "invalid_argument")
    # None of that touched the lease.
    report(op, t, success(), tenant)


# ---- RESOURCE_EXHAUSTED (too_large) -------------------------------------------------------

def test_resource_exhausted_too_large(op: Api, tenant: str) -> None:
    q = uid("q-")
    info = op.GetNodeInfo(pb.GetNodeInfoRequest()).limits
    too_big = [
        job(q, payload=b"x" * (info.max_payload_bytes + 1)),
        job(q, id="i" * (info.max_id_bytes + 1)),
        job("q" * (info.max_queue_bytes + 1)),
        job(q, metadata={"k": "v" * (info.max_metadata_value_bytes + 1)}),
        job(q, metadata={f"k{i}": "v" for i in range(info.max_metadata_entries + 1)}),
    ]
    for spec in too_big:
        expect_error(lambda: enqueue(op, spec, tenant), C.RESOURCE_EXHAUSTED, "too_large")
    expect_error(lambda: enqueue(op, job(q), "t" * (info.max_tenant_bytes + 1)),
                 C.RESOURCE_EXHAUSTED, "too_large")
    expect_error(lambda: op.EnqueueBatch(pb.EnqueueBatchRequest(
        tenant=tenant, jobs=[job(q)] * (info.max_batch_jobs + 1))),
        C.RESOURCE_EXHAUSTED, "too_large")
    expect_error(lambda: lease(op, q, tenant=tenant, worker="w" * (info.max_worker_id_bytes + 1)),
                 C.RESOURCE_EXHAUSTED, "too_large")
    assert len(lease(op, q, tenant=tenant).tasks) == 0


# ---- FAILED_PRECONDITION: lease_lost vs failed_precondition ----------------------------------

def test_lease_lost(op: Api, tenant: str) -> None:
    q = uid("q-")
    jid = enqueue(op, job(q, retry=no_retry()), tenant).id
    [t] = lease_n(op, q, 1, tenant=tenant, worker="w1")
    lost = (C.FAILED_PRECONDITION, "lease_lost")
    expect_error(lambda: heartbeat(op, t, tenant, worker="w1", token=t.lease_token + 1), *lost)
    expect_error(lambda: heartbeat(op, t, tenant, worker="other-worker"), *lost)
    expect_error(lambda: report(op, t, success(), tenant, token=t.lease_token + 1), *lost)
    assert get_job(op, jid, tenant).status == S.RUNNING  # nothing changed
    report(op, t, success(), tenant)
    expect_error(lambda: report(op, t, success(), tenant), *lost)       # already reported
    expect_error(lambda: heartbeat(op, t, tenant, worker="w1"), *lost)
    expect_error(lambda: op.HeartbeatRefresh(pb.HeartbeatRefreshRequest(
        tenant=tenant, key=uid("k-"), lease_token=12345)), *lost)


def test_lease_lost_after_expiry(op: Api, tenant: str) -> None:
    q = uid("q-")
    jid = enqueue(op, job(q, lease_ms=200, retry=no_retry()), tenant).id
    [t] = lease_n(op, q, 1, tenant=tenant)
    # Poll until the lease expired (the engine refuses an expired lease even before reaping).
    wait_until(lambda: now_ms() > t.lease_expires_ms + 20, timeout=5, what="lease expiry")
    expect_error(lambda: heartbeat(op, t, tenant), C.FAILED_PRECONDITION, "lease_lost")
    expect_error(lambda: report(op, t, success(), tenant), C.FAILED_PRECONDITION, "lease_lost")
    wait_until(lambda: get_job(op, jid, tenant).status == S.FAILED, timeout=5,
               what="the reaper failing the expired job")
    r = op.GetJobResult(pb.GetJobResultRequest(tenant=tenant, id=jid))
    assert r.error.code == "lease_expired"


def test_failed_precondition(op: Api, tenant: str) -> None:
    q = uid("q-")
    fp = (C.FAILED_PRECONDITION, "failed_precondition")
    done = enqueue(op, job(q, id="done", priority=0), tenant).id
    running = enqueue(op, job(q, id="running", priority=1), tenant).id
    waiting = enqueue(op, job(q, id="waiting", priority=2), tenant).id
    [t_done] = lease(op, q, tenant=tenant, max_tasks=1).tasks
    report(op, t_done, success(), tenant)
    [t_run] = lease(op, q, tenant=tenant, max_tasks=1).tasks
    assert (t_done.job_id, t_run.job_id) == (done, running)

    expect_error(lambda: op.CancelJob(pb.CancelJobRequest(tenant=tenant, id=done)), *fp)
    expect_error(lambda: op.RestartJob(pb.RestartJobRequest(tenant=tenant, id=waiting)), *fp)
    expect_error(lambda: op.RestartJob(pb.RestartJobRequest(tenant=tenant, id=running)), *fp)
    expect_error(lambda: op.RestartJob(pb.RestartJobRequest(tenant=tenant, id=done)), *fp)
    expect_error(lambda: op.ExpediteJob(pb.ExpediteJobRequest(tenant=tenant, id=running)), *fp)
    expect_error(lambda: op.ExpediteJob(pb.ExpediteJobRequest(tenant=tenant, id=done)), *fp)
    expect_error(lambda: op.DeleteJob(pb.DeleteJobRequest(tenant=tenant, id=running)), *fp)
    # Still running; a cancel request, then the job ends and can be deleted.
    assert get_job(op, running, tenant).status == S.RUNNING
    op.CancelJob(pb.CancelJobRequest(tenant=tenant, id=running))
    expect_error(lambda: op.DeleteJob(pb.DeleteJobRequest(tenant=tenant, id=running)), *fp)
    report(op, t_run, cancelled(), tenant)
    op.DeleteJob(pb.DeleteJobRequest(tenant=tenant, id=running))


# ---- UNAUTHENTICATED / PERMISSION_DENIED ----------------------------------------------------

def test_unauthenticated(stub: pb_grpc.SluiceStub, tenant: str) -> None:
    for token in (None, "not-a-token"):
        api = Api(stub, token)
        err = expect_error(lambda: api.GetJob(pb.GetJobRequest(tenant=tenant, id="x")),
                           C.UNAUTHENTICATED, "unauthenticated")
        assert "admin-token" not in (err.details() or "")  # never echo secrets


def test_permission_denied(api_a: Api) -> None:
    q = uid("q-")
    pd = (C.PERMISSION_DENIED, "permission_denied")
    expect_error(lambda: enqueue(api_a, job(q), "tenant-b"), *pd)
    expect_error(lambda: lease(api_a, q, tenant="tenant-b"), *pd)
    expect_error(lambda: get_job(api_a, "x", "tenant-b"), *pd)
    # The token itself is fine.
    assert enqueue(api_a, job(q), "").created
    assert Api(api_a.stub, TOKEN_A).GetNodeInfo(pb.GetNodeInfoRequest()).caller_tenant_bound
