"""The full job lifecycle over gRPC against a real sluiced.

Each test works in its own tenant (operator token + a fresh tenant name), so tenant-wide lists
(floating limits, concurrency keys) see only what the test made.
"""
from __future__ import annotations

import time

import grpc
import pytest

from sluice_testlib import (Api, Background, cancelled, enqueue, expect_error, failure, get_job,
                            heartbeat, job, lease, lease_n, no_retry, now_ms, pb, quick_retry,
                            report, success, uid)

S = pb.JobStatus
OK = grpc.StatusCode.OK.value[0]
FAILED_PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION.value[0]
INVALID_ARGUMENT = grpc.StatusCode.INVALID_ARGUMENT.value[0]


@pytest.fixture
def tenant() -> str:
    return uid("life-")


def test_enqueue_is_idempotent_on_id(op: Api, tenant: str) -> None:
    q, jid = uid("q-"), uid("job-")
    r1 = enqueue(op, job(q, id=jid, payload=b"first", metadata={"k": "v"}), tenant)
    assert (r1.id, r1.created, r1.status) == (jid, True, S.WAITING)
    r2 = enqueue(op, job(q, id=jid, payload=b"second", priority=1), tenant)
    assert (r2.id, r2.created, r2.status) == (jid, False, S.WAITING)
    j = get_job(op, jid, tenant)
    # The second enqueue changed nothing.
    assert (j.id, j.tenant, j.queue, j.payload, dict(j.metadata), j.priority) == \
        (jid, tenant, q, b"first", {"k": "v"}, 50)
    assert j.status == S.WAITING and j.attempt_count == 0 and j.created_ms > 0
    # Exactly one task exists.
    assert len(lease(op, q, tenant=tenant, max_tasks=10).tasks) == 1
    assert len(lease(op, q, tenant=tenant, max_tasks=10).tasks) == 0


def test_enqueue_generates_ids(op: Api, tenant: str) -> None:
    q = uid("q-")
    ids = {enqueue(op, job(q), tenant).id for _ in range(3)}
    assert len(ids) == 3 and all(ids)
    for i in ids:
        assert get_job(op, i, tenant).queue == q


def test_enqueue_batch(op: Api, tenant: str) -> None:
    q = uid("q-")
    old = enqueue(op, job(q, id="exists"), tenant)
    assert old.created
    resp = op.EnqueueBatch(pb.EnqueueBatchRequest(tenant=tenant, jobs=[
        job(q, id="b1", priority=10), job(q, id="b2", priority=5), job(q, id="exists"),
        job(q, id="b1"), job(q, priority=0, start_at_ms=now_ms() + 3_600_000)]))
    got = [(r.id, r.created, r.status) for r in resp.results]
    assert got[:4] == [("b1", True, S.WAITING), ("b2", True, S.WAITING),
                       ("exists", False, S.WAITING), ("b1", False, S.WAITING)]
    assert got[4][0] and got[4][1] and got[4][2] == S.SCHEDULED
    # Leased in priority order; the scheduled job is not due.
    tasks = lease_n(op, q, 3, tenant=tenant)
    assert [t.job_id for t in tasks] == ["b2", "b1", "exists"]


def test_lease_heartbeat_success_result(op: Api, tenant: str) -> None:
    q = uid("q-")
    jid = enqueue(op, job(q, payload=b"\x00\xffpay", metadata={"m": "1"}, priority=7,
                          lease_ms=20_000), tenant).id
    before = now_ms()
    [t] = lease_n(op, q, 1, tenant=tenant, worker="worker-1")
    assert (t.job_id, t.queue, t.attempt, t.priority, t.payload, dict(t.metadata)) == \
        (jid, q, 1, 7, b"\x00\xffpay", {"m": "1"})
    # lease_ms: the job's lease length, exactly.
    assert t.task_id and t.lease_token != 0 and t.lease_ms == 20_000
    assert before + 19_000 <= t.lease_expires_ms <= now_ms() + 21_000
    assert get_job(op, jid, tenant).status == S.RUNNING

    hb = heartbeat(op, t, tenant, worker="worker-1")
    assert hb.lease_expires_ms >= t.lease_expires_ms and not hb.cancel_requested

    r0 = op.GetJobResult(pb.GetJobResultRequest(tenant=tenant, id=jid))
    assert (r0.status, r0.finished) == (S.RUNNING, False)
    report(op, t, success(b"result-bytes\x00"), tenant)
    r = op.GetJobResult(pb.GetJobResultRequest(tenant=tenant, id=jid))
    assert (r.status, r.finished, r.result) == (S.SUCCEEDED, True, b"result-bytes\x00")

    j = get_job(op, jid, tenant, attempts=True)
    assert j.status == S.SUCCEEDED and j.finished_ms > 0 and j.attempt_count == 1
    [a] = j.attempts
    assert (a.number, a.task_id, a.worker_id, a.status, a.result) == \
        (1, t.task_id, "worker-1", pb.ATTEMPT_SUCCEEDED, b"result-bytes\x00")
    assert 0 < a.started_ms <= a.finished_ms
    # Without include_attempts the history is not sent.
    assert len(get_job(op, jid, tenant).attempts) == 0


def test_failure_retries_then_fails(op: Api, tenant: str) -> None:
    q = uid("q-")
    jid = enqueue(op, job(q, retry=quick_retry(1)), tenant).id
    [t1] = lease_n(op, q, 1, tenant=tenant, worker="wa")
    report(op, t1, failure("boom", "first try", b"d1"), tenant)
    j = get_job(op, jid, tenant)
    assert j.status in (S.WAITING, S.SCHEDULED) and j.retries_used == 1
    [t2] = lease_n(op, q, 1, tenant=tenant, worker="wb")
    assert (t2.job_id, t2.attempt) == (jid, 2) and t2.task_id != t1.task_id
    report(op, t2, failure("boom2", "second try", b"d2"), tenant)

    r = op.GetJobResult(pb.GetJobResultRequest(tenant=tenant, id=jid))
    assert (r.status, r.finished) == (S.FAILED, True)
    assert (r.error.code, r.error.message, r.error.data) == ("boom2", "second try", b"d2")
    j = get_job(op, jid, tenant, attempts=True)
    assert j.status == S.FAILED and j.attempt_count == 2
    assert [(a.number, a.worker_id, a.status, a.error.code) for a in j.attempts] == \
        [(1, "wa", pb.ATTEMPT_FAILED, "boom"), (2, "wb", pb.ATTEMPT_FAILED, "boom2")]
    assert j.attempts[0].error.data == b"d1"


def test_failure_no_retry_and_cancelled_outcome(op: Api, tenant: str) -> None:
    q = uid("q-")
    j1 = enqueue(op, job(q, retry=quick_retry(5)), tenant).id
    j2 = enqueue(op, job(q), tenant).id
    t1, t2 = lease_n(op, q, 2, tenant=tenant)
    report(op, t1, failure("fatal", no_retry=True), tenant)
    report(op, t2, cancelled(), tenant)
    assert get_job(op, j1, tenant).status == S.FAILED
    assert get_job(op, j2, tenant).status == S.CANCELLED
    r = op.GetJobResult(pb.GetJobResultRequest(tenant=tenant, id=j2))
    assert (r.status, r.finished) == (S.CANCELLED, True)


def test_report_outcomes_batch_per_item_status(op: Api, tenant: str) -> None:
    q = uid("q-")
    ids = [enqueue(op, job(q, id=f"j{i}", priority=i, retry=no_retry()), tenant).id
           for i in range(4)]
    t0, t1, t2, t3 = lease_n(op, q, 4, tenant=tenant)
    report(op, t3, success(), tenant)  # t3 is already reported: its token is spent
    resp = op.ReportOutcomes(pb.ReportOutcomesRequest(tenant=tenant, reports=[
        pb.ReportOutcomeRequest(task_id=t0.task_id, lease_token=t0.lease_token,
                                outcome=success(b"r0")),
        pb.ReportOutcomeRequest(task_id=t1.task_id, lease_token=t1.lease_token,
                                outcome=failure("bad", no_retry=True)),
        pb.ReportOutcomeRequest(task_id=t2.task_id, lease_token=t2.lease_token + 1,
                                outcome=success()),                       # stale token
        pb.ReportOutcomeRequest(task_id=t0.task_id, lease_token=t0.lease_token,
                                outcome=success(b"again")),               # repeated in batch
        pb.ReportOutcomeRequest(task_id=t3.task_id, lease_token=t3.lease_token,
                                outcome=success()),                       # already reported
        pb.ReportOutcomeRequest(task_id=t2.task_id, lease_token=t2.lease_token,
                                outcome=failure("")),                     # no error code
    ]))
    got = [(s.code, s.sluice_code) for s in resp.statuses]
    assert got == [(OK, "ok"), (OK, "ok"), (FAILED_PRECONDITION, "lease_lost"),
                   (FAILED_PRECONDITION, "lease_lost"), (FAILED_PRECONDITION, "lease_lost"),
                   (INVALID_ARGUMENT, "invalid_argument")], resp
    for s in resp.statuses[2:]:
        assert s.message
    assert [get_job(op, i, tenant).status for i in ids] == \
        [S.SUCCEEDED, S.FAILED, S.RUNNING, S.SUCCEEDED]
    assert op.GetJobResult(pb.GetJobResultRequest(tenant=tenant, id=ids[0])).result == b"r0"
    # t2's lease is still live and works.
    report(op, t2, success(), tenant)
    assert get_job(op, ids[2], tenant).status == S.SUCCEEDED


def test_get_job_result_wait_returns_when_job_completes(op: Api, tenant: str) -> None:
    q = uid("q-")
    jid = enqueue(op, job(q), tenant).id
    [t] = lease_n(op, q, 1, tenant=tenant)
    # A short wait on a running job ends with finished=false after about wait_ms.
    start = time.perf_counter()
    r = op.GetJobResult(pb.GetJobResultRequest(tenant=tenant, id=jid, wait_ms=200))
    elapsed = time.perf_counter() - start
    assert (r.status, r.finished) == (S.RUNNING, False)
    assert 0.18 <= elapsed < 2.0, elapsed

    waiter = Background(lambda: op.GetJobResult(
        pb.GetJobResultRequest(tenant=tenant, id=jid, wait_ms=10_000)))
    # The waiter has no observable "parked" state; give it time to reach the server.
    time.sleep(0.1)
    assert waiter.alive(), "GetJobResult(wait_ms=10000) returned before the job finished"
    report(op, t, success(b"done"), tenant)
    reported_at = time.perf_counter()
    r = waiter.get()
    assert (r.status, r.finished, r.result) == (S.SUCCEEDED, True, b"done")
    assert waiter.returned_at is not None
    assert waiter.returned_at - reported_at < 1.0, "the waiting GetJobResult did not return promptly"
    # On a finished job a wait returns at once.
    start = time.perf_counter()
    r = op.GetJobResult(pb.GetJobResultRequest(tenant=tenant, id=jid, wait_ms=10_000))
    assert r.finished and time.perf_counter() - start < 1.0


def test_cancel_pending_and_running(op: Api, tenant: str) -> None:
    q = uid("q-")
    pending = enqueue(op, job(q, id="pending", priority=90), tenant).id
    running = enqueue(op, job(q, id="running", priority=0), tenant).id
    [t] = lease(op, q, tenant=tenant, max_tasks=1).tasks
    assert t.job_id == running

    c = op.CancelJob(pb.CancelJobRequest(tenant=tenant, id=pending))
    assert (c.status, c.cancel_requested) == (S.CANCELLED, False)
    assert get_job(op, pending, tenant).status == S.CANCELLED
    # Cancelling a cancelled job is a no-op.
    c = op.CancelJob(pb.CancelJobRequest(tenant=tenant, id=pending))
    assert c.status == S.CANCELLED
    # Its task is gone.
    assert len(lease(op, q, tenant=tenant).tasks) == 0

    c = op.CancelJob(pb.CancelJobRequest(tenant=tenant, id=running))
    assert (c.status, c.cancel_requested) == (S.RUNNING, True)
    j = get_job(op, running, tenant)
    assert (j.status, j.cancel_requested) == (S.RUNNING, True)
    assert heartbeat(op, t, tenant).cancel_requested
    report(op, t, cancelled(), tenant)
    assert get_job(op, running, tenant).status == S.CANCELLED


def test_restart_failed_and_cancelled(op: Api, tenant: str) -> None:
    q = uid("q-")
    jid = enqueue(op, job(q, retry=quick_retry(1)), tenant).id
    for _ in range(2):
        [t] = lease_n(op, q, 1, tenant=tenant)
        report(op, t, failure("e"), tenant)
    j = get_job(op, jid, tenant)
    assert (j.status, j.retries_used, j.attempt_count) == (S.FAILED, 1, 2)
    op.RestartJob(pb.RestartJobRequest(tenant=tenant, id=jid))
    j = get_job(op, jid, tenant)
    assert (j.status, j.retries_used) == (S.WAITING, 0)
    [t] = lease_n(op, q, 1, tenant=tenant)
    assert (t.job_id, t.attempt) == (jid, 3)  # numbered after the last attempt
    report(op, t, success(b"third time"), tenant)
    assert get_job(op, jid, tenant).status == S.SUCCEEDED

    cid = enqueue(op, job(q), tenant).id
    op.CancelJob(pb.CancelJobRequest(tenant=tenant, id=cid))
    op.RestartJob(pb.RestartJobRequest(tenant=tenant, id=cid))
    assert get_job(op, cid, tenant).status == S.WAITING
    [t] = lease_n(op, q, 1, tenant=tenant)
    assert t.job_id == cid


def test_expedite_scheduled_job(op: Api, tenant: str) -> None:
    q = uid("q-")
    start_at = now_ms() + 3_600_000
    jid = enqueue(op, job(q, start_at_ms=start_at), tenant).id
    j = get_job(op, jid, tenant)
    assert j.status == S.SCHEDULED and j.start_at_ms == start_at and j.next_run_ms == start_at
    assert len(lease(op, q, tenant=tenant).tasks) == 0
    op.ExpediteJob(pb.ExpediteJobRequest(tenant=tenant, id=jid))
    assert get_job(op, jid, tenant).status == S.WAITING
    op.ExpediteJob(pb.ExpediteJobRequest(tenant=tenant, id=jid))  # waiting: a no-op
    [t] = lease_n(op, q, 1, tenant=tenant)
    assert t.job_id == jid


def test_delete(op: Api, tenant: str) -> None:
    q = uid("q-")
    waiting = enqueue(op, job(q, id="w"), tenant).id
    done = enqueue(op, job(q, id="d"), tenant).id
    op.DeleteJob(pb.DeleteJobRequest(tenant=tenant, id=waiting))
    expect_error(lambda: get_job(op, waiting, tenant), grpc.StatusCode.NOT_FOUND, "not_found")
    [t] = lease_n(op, q, 1, tenant=tenant)  # the deleted job's task is gone too
    assert t.job_id == done
    report(op, t, success(), tenant)
    op.DeleteJob(pb.DeleteJobRequest(tenant=tenant, id=done))
    expect_error(lambda: get_job(op, done, tenant), grpc.StatusCode.NOT_FOUND, "not_found")
    expect_error(lambda: op.GetJobResult(pb.GetJobResultRequest(tenant=tenant, id=done)),
                 grpc.StatusCode.NOT_FOUND, "not_found")
    # The id is free again.
    assert enqueue(op, job(q, id=done), tenant).created


def floating(key: str, max: int, interval_ms: int = 60_000,
             metadata: dict[str, str] | None = None) -> pb.ConcurrencyLimit:
    return pb.ConcurrencyLimit(kind=pb.ConcurrencyLimit.FLOATING, key=key, max=max,
                               refresh_interval_ms=interval_ms, metadata=metadata or {})


def fixed(key: str, max: int) -> pb.ConcurrencyLimit:
    return pb.ConcurrencyLimit(kind=pb.ConcurrencyLimit.FIXED, key=key, max=max)


def test_floating_limit_refresh_round_trip(op: Api, tenant: str) -> None:
    q, key = uid("q-"), uid("quota-")
    FLOAT = pb.ConcurrencyLimit.FLOATING
    ids = [enqueue(op, job(q, limits=[floating(key, 1, metadata={"region": "eu"})]), tenant).id
           for _ in range(3)]
    resp = lease(op, q, tenant=tenant, max_tasks=10, wait_ms=2000)
    assert len(resp.tasks) == 1
    [rt] = resp.refreshes
    assert (rt.key, rt.current_max, rt.default_max, rt.last_refreshed_ms) == (key, 1, 1, 0)
    assert dict(rt.metadata) == {"region": "eu"} and rt.lease_token != 0
    assert rt.lease_expires_ms > now_ms() - 1000
    assert rt.lease_ms == 30_000  # the server's default refresh lease

    k = op.GetConcurrencyKey(pb.GetConcurrencyKeyRequest(tenant=tenant, kind=FLOAT, key=key)).key
    assert (k.key, k.kind, k.holders, k.waiters, k.max) == (key, FLOAT, 1, 2, 1)
    fl = op.GetFloatingLimit(pb.GetFloatingLimitRequest(tenant=tenant, key=key)).limit
    assert (fl.key, fl.current_max, fl.default_max, fl.refresh_interval_ms) == (key, 1, 1, 60_000)
    assert fl.refresh_in_flight and (fl.holders, fl.waiters) == (1, 2)
    assert dict(fl.metadata) == {"region": "eu"}

    hb = op.HeartbeatRefresh(pb.HeartbeatRefreshRequest(tenant=tenant, key=key,
                                                        lease_token=rt.lease_token))
    assert hb.lease_expires_ms >= rt.lease_expires_ms
    # One refresh in flight at a time.
    assert len(lease(op, q, tenant=tenant, worker="w2").refreshes) == 0

    op.ReportRefreshOutcome(pb.ReportRefreshOutcomeRequest(
        tenant=tenant, key=key, lease_token=rt.lease_token, new_max=3))
    fl = op.GetFloatingLimit(pb.GetFloatingLimitRequest(tenant=tenant, key=key)).limit
    assert (fl.current_max, fl.default_max, fl.holders, fl.waiters) == (3, 1, 3, 0)
    assert fl.last_refreshed_ms > 0 and not fl.refresh_in_flight and fl.consecutive_failures == 0
    # The raise granted the two waiters.
    rest = lease_n(op, q, 2, tenant=tenant)
    tasks = list(resp.tasks) + rest
    assert sorted(t.job_id for t in tasks) == sorted(ids)
    # The refresh token is spent.
    expect_error(lambda: op.ReportRefreshOutcome(pb.ReportRefreshOutcomeRequest(
        tenant=tenant, key=key, lease_token=rt.lease_token, new_max=9)),
        grpc.StatusCode.FAILED_PRECONDITION, "lease_lost")

    listed = op.ListFloatingLimits(pb.ListFloatingLimitsRequest(tenant=tenant)).limits
    assert [(x.key, x.current_max) for x in listed] == [(key, 3)]
    op.SetFloatingLimit(pb.SetFloatingLimitRequest(tenant=tenant, key=key, max=5))
    fl = op.GetFloatingLimit(pb.GetFloatingLimitRequest(tenant=tenant, key=key)).limit
    assert fl.current_max == 5

    keys = op.ListConcurrencyKeys(pb.ListConcurrencyKeysRequest(tenant=tenant)).keys
    assert [(x.key, x.kind, x.holders, x.waiters) for x in keys] == [(key, FLOAT, 3, 0)]
    for t in tasks:
        report(op, t, success(), tenant)
    k = op.GetConcurrencyKey(pb.GetConcurrencyKeyRequest(tenant=tenant, kind=FLOAT, key=key)).key
    assert (k.holders, k.waiters) == (0, 0)
    assert len(op.ListConcurrencyKeys(pb.ListConcurrencyKeysRequest(tenant=tenant)).keys) == 0


def test_floating_refresh_failure_keeps_max(op: Api, tenant: str) -> None:
    q, key = uid("q-"), uid("quota-")
    for _ in range(3):
        enqueue(op, job(q, limits=[floating(key, 2)]), tenant)
    resp = lease(op, q, tenant=tenant, max_tasks=10, wait_ms=2000)
    assert len(resp.tasks) == 2
    [rt] = resp.refreshes
    op.ReportRefreshOutcome(pb.ReportRefreshOutcomeRequest(
        tenant=tenant, key=key, lease_token=rt.lease_token,
        error=pb.ErrorInfo(code="upstream_down", message="503")))
    fl = op.GetFloatingLimit(pb.GetFloatingLimitRequest(tenant=tenant, key=key)).limit
    assert (fl.current_max, fl.consecutive_failures) == (2, 1)
    assert fl.next_refresh_ms > now_ms() - 1000  # backing off
    op.SetFloatingLimit(pb.SetFloatingLimitRequest(tenant=tenant, key=key, max=3))
    assert len(lease_n(op, q, 1, tenant=tenant)) == 1  # the raise granted the waiter


def test_fixed_concurrency_key(op: Api, tenant: str) -> None:
    q, key = uid("q-"), uid("db-")
    FIX = pb.ConcurrencyLimit.FIXED
    for _ in range(3):
        enqueue(op, job(q, limits=[fixed(key, 1)], retry=no_retry()), tenant)
    [t1] = lease_n(op, q, 1, tenant=tenant)
    k = op.GetConcurrencyKey(pb.GetConcurrencyKeyRequest(tenant=tenant, kind=FIX, key=key)).key
    assert (k.key, k.kind, k.holders, k.waiters, k.max) == (key, FIX, 1, 2, 1)
    keys = op.ListConcurrencyKeys(pb.ListConcurrencyKeysRequest(tenant=tenant, limit=10)).keys
    assert [(x.key, x.kind, x.holders, x.waiters, x.max) for x in keys] == [(key, FIX, 1, 2, 1)]
    assert len(lease(op, q, tenant=tenant).tasks) == 0  # parked behind the key
    report(op, t1, success(), tenant)
    [t2] = lease_n(op, q, 1, tenant=tenant)
    report(op, t2, success(), tenant)
    [t3] = lease_n(op, q, 1, tenant=tenant)
    report(op, t3, success(), tenant)
    k = op.GetConcurrencyKey(pb.GetConcurrencyKeyRequest(tenant=tenant, kind=FIX, key=key)).key
    assert (k.holders, k.waiters) == (0, 0)
    # An idle key reads as zeros, not NOT_FOUND.
    k = op.GetConcurrencyKey(pb.GetConcurrencyKeyRequest(tenant=tenant, kind=FIX,
                                                         key=uid("never-"))).key
    assert (k.holders, k.waiters) == (0, 0)


def test_get_node_info(op: Api, api_a: Api, api_b: Api) -> None:
    info = op.GetNodeInfo(pb.GetNodeInfoRequest())
    assert info.version and info.node_id and info.durability == "sync"
    assert 0 < info.started_ms <= now_ms()
    assert (info.caller_tenant, info.caller_tenant_bound) == ("", False)
    assert info.default_lease_ms == 30_000
    lim = info.limits
    assert lim.max_message_bytes == 32 << 20
    assert (lim.max_id_bytes, lim.max_payload_bytes, lim.max_result_bytes) == (128, 1 << 20, 1 << 20)
    assert (lim.max_metadata_value_bytes, lim.max_batch_jobs) == (1024, 10_000)
    assert lim.max_lease_batch > 0 and lim.max_wait_ms > 0 and lim.max_tenant_bytes == 128
    a = api_a.GetNodeInfo(pb.GetNodeInfoRequest())
    assert (a.caller_tenant, a.caller_tenant_bound) == ("tenant-a", True)
    b = api_b.GetNodeInfo(pb.GetNodeInfoRequest())
    assert (b.caller_tenant, b.caller_tenant_bound) == ("tenant-b", True)
    assert a.node_id == info.node_id
