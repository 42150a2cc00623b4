"""Tenant isolation through tenant-bound tokens (tokA@tenant-a, tokB@tenant-b).

A's token must not read, change, work on or even detect B's jobs: for every operation, the
answer for B's existing id equals the answer for an id that never existed (same gRPC code,
same sluice-code, same message once the id itself is blanked out).
"""
from __future__ import annotations

from typing import Any, Callable

import grpc
from google.protobuf import message_factory

from sluice_testlib import (TENANT_A, TENANT_B, Api, cancelled, enqueue, expect_error, get_job,
                            heartbeat, job, lease, lease_n, now_ms, pb, report, rpc_error,
                            sluice_code, success, uid)

S = pb.JobStatus
C = grpc.StatusCode


def answer(fn: Callable[[], Any], *ids: str) -> tuple[Any, ...]:
    """(code, sluice-code, message with the given ids blanked) of a call that must fail."""
    err = rpc_error(fn)
    msg = err.details() or ""
    for i in ids:
        msg = msg.replace(i, "<ID>")
    return err.code(), sluice_code(err), msg


def same_as_missing(make: Callable[[str], Callable[[], Any]], existing: str,
                    expected: tuple[grpc.StatusCode, str]) -> None:
    """A's call on B's `existing` id answers exactly like on a never-existing id."""
    missing = uid("never-")
    got_existing = answer(make(existing), existing)
    got_missing = answer(make(missing), missing)
    assert got_existing == got_missing, (existing, got_existing, got_missing)
    assert got_existing[:2] == expected, got_existing


def test_a_cannot_touch_b_jobs(api_a: Api, api_b: Api) -> None:
    q = uid("shared-q-")
    # B's jobs in every state, in a queue whose name A also uses.
    b_run = enqueue(api_b, job(q, id=uid("b-run-"), priority=0)).id
    [tb] = lease(api_b, q, worker="wb", max_tasks=1).tasks
    assert tb.job_id == b_run
    b_wait = enqueue(api_b, job(q, id=uid("b-wait-"), payload=b"secret")).id
    b_sched = enqueue(api_b, job(q, id=uid("b-sched-"), start_at_ms=now_ms() + 3_600_000)).id
    b_canc = enqueue(api_b, job(q, id=uid("b-canc-"))).id
    api_b.CancelJob(pb.CancelJobRequest(id=b_canc))
    before = {i: get_job(api_b, i) for i in (b_run, b_wait, b_sched, b_canc)}

    nf = (C.NOT_FOUND, "not_found")
    for bid in (b_run, b_wait, b_sched, b_canc):
        same_as_missing(lambda i: lambda: get_job(api_a, i, attempts=True), bid, nf)
        same_as_missing(lambda i: lambda: api_a.GetJobResult(pb.GetJobResultRequest(id=i)),
                        bid, nf)
    # A waiting GetJobResult on B's id does not wait for B's job either.
    same_as_missing(lambda i: lambda: api_a.GetJobResult(
        pb.GetJobResultRequest(id=i, wait_ms=200)), b_run, nf)
    same_as_missing(lambda i: lambda: api_a.CancelJob(pb.CancelJobRequest(id=i)), b_wait, nf)
    same_as_missing(lambda i: lambda: api_a.CancelJob(pb.CancelJobRequest(id=i)), b_run, nf)
    same_as_missing(lambda i: lambda: api_a.RestartJob(pb.RestartJobRequest(id=i)), b_canc, nf)
    same_as_missing(lambda i: lambda: api_a.ExpediteJob(pb.ExpediteJobRequest(id=i)), b_sched,
                    nf)
    same_as_missing(lambda i: lambda: api_a.DeleteJob(pb.DeleteJobRequest(id=i)), b_wait, nf)
    same_as_missing(lambda i: lambda: api_a.DeleteJob(pb.DeleteJobRequest(id=i)), b_canc, nf)

    # Heartbeat / report with B's task id, lease token and worker id.
    def task_id(i: str) -> str:
        return tb.task_id if i == b_run else f"{i}#1"
    lost = (C.FAILED_PRECONDITION, "lease_lost")
    same_as_missing(lambda i: lambda: api_a.Heartbeat(pb.HeartbeatRequest(
        task_id=task_id(i), worker_id="wb", lease_token=tb.lease_token)), b_run, lost)
    for outcome in (success(b"forged"), cancelled()):
        same_as_missing(lambda i: lambda: api_a.ReportOutcome(pb.ReportOutcomeRequest(
            task_id=task_id(i), lease_token=tb.lease_token, outcome=outcome)), b_run, lost)
    batch = api_a.ReportOutcomes(pb.ReportOutcomesRequest(reports=[
        pb.ReportOutcomeRequest(task_id=tb.task_id, lease_token=tb.lease_token,
                                outcome=success(b"forged")),
        pb.ReportOutcomeRequest(task_id=f"{uid('never-')}#1", lease_token=tb.lease_token,
                                outcome=success(b"forged"))]))
    [s_b, s_never] = batch.statuses
    assert (s_b.code, s_b.sluice_code) == (s_never.code, s_never.sluice_code) == \
        (C.FAILED_PRECONDITION.value[0], "lease_lost")

    # A leasing "the same" queue name sees none of B's tasks, even after expediting its own.
    assert len(lease(api_a, q, worker="wa", max_tasks=100).tasks) == 0
    a_job = enqueue(api_a, job(q)).id
    assert [t.job_id for t in lease(api_a, q, worker="wa", max_tasks=100).tasks] == [a_job]

    # B's jobs are exactly as they were, and B's lease is live.
    after = {i: get_job(api_b, i) for i in before}
    for i in before:
        assert (after[i].status, after[i].payload, after[i].attempt_count,
                after[i].cancel_requested, after[i].updated_ms) == \
            (before[i].status, before[i].payload, before[i].attempt_count,
             before[i].cancel_requested, before[i].updated_ms), i
    assert not heartbeat(api_b, tb, worker="wb").cancel_requested
    report(api_b, tb, success(b"real"))
    assert api_b.GetJobResult(pb.GetJobResultRequest(id=b_run)).result == b"real"
    [t2] = lease_n(api_b, q, 1, worker="wb")
    assert t2.job_id == b_wait


def test_a_cannot_touch_b_floating_keys(api_a: Api, api_b: Api) -> None:
    q, key = uid("q-"), uid("bkey-")
    enqueue(api_b, job(q, limits=[pb.ConcurrencyLimit(
        kind=pb.ConcurrencyLimit.FLOATING, key=key, max=1, refresh_interval_ms=60_000)]))
    enqueue(api_b, job(q, limits=[pb.ConcurrencyLimit(
        kind=pb.ConcurrencyLimit.FLOATING, key=key, max=1, refresh_interval_ms=60_000)]))
    resp = lease(api_b, q, wait_ms=2000)
    [rt] = resp.refreshes
    nf = (C.NOT_FOUND, "not_found")
    lost = (C.FAILED_PRECONDITION, "lease_lost")
    same_as_missing(lambda k: lambda: api_a.GetFloatingLimit(
        pb.GetFloatingLimitRequest(key=k)), key, nf)
    same_as_missing(lambda k: lambda: api_a.SetFloatingLimit(
        pb.SetFloatingLimitRequest(key=k, max=100)), key, nf)
    same_as_missing(lambda k: lambda: api_a.HeartbeatRefresh(
        pb.HeartbeatRefreshRequest(key=k, lease_token=rt.lease_token)), key, lost)
    same_as_missing(lambda k: lambda: api_a.ReportRefreshOutcome(
        pb.ReportRefreshOutcomeRequest(key=k, lease_token=rt.lease_token, new_max=100)),
        key, lost)
    assert key not in [x.key for x in
                       api_a.ListFloatingLimits(pb.ListFloatingLimitsRequest(limit=1000)).limits]
    assert key not in [x.key for x in
                       api_a.ListConcurrencyKeys(pb.ListConcurrencyKeysRequest(limit=1000)).keys]
    ka = api_a.GetConcurrencyKey(pb.GetConcurrencyKeyRequest(
        kind=pb.ConcurrencyLimit.FLOATING, key=key)).key
    assert (ka.holders, ka.waiters) == (0, 0)
    # B's key is untouched: still max 1 with one holder and one waiter, refresh in flight.
    fl = api_b.GetFloatingLimit(pb.GetFloatingLimitRequest(key=key)).limit
    assert (fl.current_max, fl.holders, fl.waiters, fl.refresh_in_flight) == (1, 1, 1, True)
    assert key in [x.key for x in
                   api_b.ListConcurrencyKeys(pb.ListConcurrencyKeysRequest(limit=1000)).keys]
    api_b.ReportRefreshOutcome(pb.ReportRefreshOutcomeRequest(
        key=key, lease_token=rt.lease_token, new_max=2))
    for t in list(resp.tasks) + lease_n(api_b, q, 1):
        report(api_b, t, success())


def test_bound_token_with_other_tenant_is_permission_denied(api_a: Api) -> None:
    """Every RPC whose request has a `tenant` field refuses a tenant other than the token's."""
    checked = []
    for method in pb.DESCRIPTOR.services_by_name["Sluice"].methods:
        if "tenant" not in method.input_type.fields_by_name:
            continue
        req = message_factory.GetMessageClass(method.input_type)(tenant=TENANT_B)
        err = expect_error(lambda: api_a.call(method.name, req), C.PERMISSION_DENIED,
                           "permission_denied")
        assert err.details()
        checked.append(method.name)
    assert len(checked) >= 19, checked
    # A valid request for B with A's token writes nothing for B.
    jid = uid("pd-")
    expect_error(lambda: enqueue(api_a, job(uid("q-"), id=jid), TENANT_B),
                 C.PERMISSION_DENIED, "permission_denied")
    expect_error(lambda: get_job(api_a, jid, TENANT_A), C.NOT_FOUND, "not_found")


def test_bound_token_acts_as_its_tenant(api_a: Api, op: Api) -> None:
    q = uid("q-")
    implicit = enqueue(api_a, job(q, id=uid("imp-")))          # tenant "" -> tenant-a
    explicit = enqueue(api_a, job(q, id=uid("exp-")), TENANT_A)
    for r in (implicit, explicit):
        assert get_job(api_a, r.id).tenant == TENANT_A
        assert get_job(api_a, r.id, TENANT_A).tenant == TENANT_A
        assert get_job(op, r.id, TENANT_A).tenant == TENANT_A      # the operator names it
        expect_error(lambda: get_job(op, r.id, ""), C.NOT_FOUND, "not_found")
    tasks = lease_n(api_a, q, 2, tenant=TENANT_A)
    for t in tasks:
        report(api_a, t, success(), tenant="")


def test_operator_acts_for_the_named_tenant(op: Api, api_a: Api, api_b: Api) -> None:
    q, jid = uid("q-"), uid("same-id-")
    # One id in three tenants: three jobs.
    assert enqueue(op, job(q, id=jid, payload=b"b"), TENANT_B).created
    assert enqueue(op, job(q, id=jid, payload=b"a"), TENANT_A).created
    assert enqueue(op, job(q, id=jid, payload=b"default"), "").created
    assert get_job(api_b, jid).payload == b"b"
    assert get_job(api_a, jid).payload == b"a"
    assert get_job(op, jid).payload == b"default"
    assert get_job(op, jid, TENANT_B).tenant == TENANT_B
    # The operator leases and reports in B's name; A still sees its own job waiting.
    [t] = lease_n(op, q, 1, tenant=TENANT_B)
    report(op, t, success(b"by-op"), TENANT_B)
    assert api_b.GetJobResult(pb.GetJobResultRequest(id=jid)).result == b"by-op"
    assert get_job(api_a, jid).status == S.WAITING
