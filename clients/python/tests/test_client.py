"""Every client method against a real sluiced, once with Client and once with AsyncClient."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
import uuid
from typing import Iterator

import pytest

from clients import Api, make_api
from harness import OP_TOKEN, TENANT_A, TOKEN_A, Sluiced, uid
from sluice_client import (
    RPC_METHODS,
    AsyncClient,
    Client,
    ClosedError,
    FailedPreconditionError,
    InvalidArgumentError,
    JobSpec,
    JobStatus,
    LeaseLostError,
    Limit,
    LimitKind,
    NotFoundError,
    Outcome,
    Report,
    RetryPolicy,
    SluiceTimeoutError,
    Task,
)


@pytest.fixture(params=["sync", "async"], scope="module")
def api(request: pytest.FixtureRequest, server: Sluiced) -> Iterator[Api]:
    a = make_api(request.param, server.address, OP_TOKEN, timeout=15)
    yield a
    a.close()


def lease_one(api: Api, queue: str, worker: str = "w1", wait_ms: int = 2000) -> Task:
    resp = api.c.lease(queue, worker, max_tasks=5, wait_ms=wait_ms)
    assert len(resp.tasks) == 1, resp
    return resp.tasks[0]


def test_every_rpc_has_a_method_on_both_clients() -> None:
    from sluice_client._pb import pb

    rpcs = {m.name for m in pb.DESCRIPTOR.services_by_name["Sluice"].methods}
    assert rpcs == set(RPC_METHODS)
    for method in RPC_METHODS.values():
        assert callable(getattr(Client, method)), method
        assert callable(getattr(AsyncClient, method)), method


def test_enqueue_json_with_a_generated_uuid7(api: Api) -> None:
    q = uid("q-")
    h = api.c.enqueue(q, json={"to": "ada@example.com"})
    assert h.created is True and h.status == JobStatus.WAITING
    assert uuid.UUID(h.id).version == 7
    job = api.c.get_job(h.id)
    assert job.json() == {"to": "ada@example.com"}
    assert (job.queue, job.priority, job.status) == (q, 50, JobStatus.WAITING)


def test_enqueue_fields_round_trip(api: Api) -> None:
    q = uid("q-")
    start = int(time.time() * 1000) + 3_600_000
    retry = RetryPolicy(max_retries=2, initial_backoff_ms=10, max_backoff_ms=100,
                        multiplier=3.0, jitter=True)
    limits = [Limit.fixed(uid("fx-"), 3),
              Limit.floating(uid("fl-"), 4, 60_000, {"region": "eu"})]
    h = api.c.enqueue(q, b"\x00raw\xff", priority=7, start_at_ms=start, retry=retry,
                      lease_ms=1234, metadata={"k": "v"}, limits=limits)
    job = api.c.get_job(h.id)
    assert job.payload == b"\x00raw\xff" and job.priority == 7
    assert job.status == JobStatus.SCHEDULED and job.start_at_ms == start
    assert job.retry == retry and job.lease_ms == 1234 and dict(job.metadata) == {"k": "v"}
    assert [(x.kind, x.key, x.max) for x in job.limits] == [(x.kind, x.key, x.max)
                                                            for x in limits]
    assert dict(job.limits[1].metadata) == {"region": "eu"}
    assert job.limits[1].refresh_interval_ms == 60_000


def test_enqueue_with_an_existing_id_returns_it(api: Api) -> None:
    q, id = uid("q-"), uid("job-")
    first = api.c.enqueue(q, b"one", id=id)
    second = api.c.enqueue(q, b"two", id=id)
    assert (first.id, first.created) == (id, True)
    assert (second.id, second.created) == (id, False)
    assert api.c.get_job(id).payload == b"one"


def test_enqueue_batch(api: Api) -> None:
    q = uid("q-")
    specs = [JobSpec(q, b"a"), JobSpec.from_json(q, [1, 2], priority=1),
             JobSpec(q, b"c", id=uid("fixed-"))]
    handles = api.c.enqueue_batch(specs)
    assert [h.created for h in handles] == [True, True, True]
    assert handles[2].id == specs[2].id
    assert all(h.id for h in handles) and len({h.id for h in handles}) == 3
    tasks = api.c.lease(q, "w", max_tasks=10, wait_ms=1000).tasks
    assert tasks[0].json() == [1, 2]  # priority 1 first
    assert sorted(t.job_id for t in tasks) == sorted(h.id for h in handles)


def test_lease_heartbeat_complete_and_result(api: Api) -> None:
    q = uid("q-")
    h = api.c.enqueue(q, json={"n": 1}, lease_ms=5000)
    t = lease_one(api, q, worker="w-1")
    assert (t.job_id, t.attempt, t.worker_id, t.queue) == (h.id, 1, "w-1", q)
    assert 4000 <= t.lease_ms <= 5000 and t.json() == {"n": 1}
    hb = api.c.heartbeat(t)
    assert hb.cancel_requested is False and hb.expires_ms >= t.lease_expires_ms
    assert api.c.get_result(h.id).status == JobStatus.RUNNING
    api.c.complete(t, json={"ok": True})
    r = api.c.get_result(h.id)
    assert r.finished and r.succeeded and r.json() == {"ok": True}
    with pytest.raises(LeaseLostError):
        api.c.heartbeat(t)


def test_fail_with_retries_then_no_retry_and_attempt_history(api: Api) -> None:
    q = uid("q-")
    h = api.c.enqueue(q, b"", retry=RetryPolicy(max_retries=5, initial_backoff_ms=0,
                                                max_backoff_ms=0, multiplier=1.0))
    api.c.fail(lease_one(api, q), "flaky", "try again", data=b"d1")
    api.c.fail(lease_one(api, q), "fatal", "give up", data=b"d2", no_retry=True)
    r = api.c.get_result(h.id)
    assert r.status == JobStatus.FAILED and (r.error_code, r.error_message) == ("fatal",
                                                                                "give up")
    job = api.c.get_job(h.id, include_attempts=True)
    assert [a.error_code for a in job.attempts] == ["flaky", "fatal"]
    assert [a.error_data for a in job.attempts] == [b"d1", b"d2"]
    assert job.attempt_count == 2 and job.retries_used == 1
    assert api.c.get_job(h.id).attempts == ()


def test_cancel_running_reaches_heartbeat_then_report_cancelled(api: Api) -> None:
    q = uid("q-")
    h = api.c.enqueue(q, b"")
    t = lease_one(api, q)
    c = api.c.cancel(h.id)
    assert c.status == JobStatus.RUNNING and c.cancel_requested
    assert api.c.heartbeat(t).cancel_requested is True
    api.c.report_cancelled(t)
    assert api.c.get_result(h.id).status == JobStatus.CANCELLED


def test_report_outcome_and_batch_with_a_stale_report(api: Api) -> None:
    q = uid("q-")
    ids = [api.c.enqueue(q, b"").id for _ in range(3)]
    tasks = api.c.lease(q, "w", max_tasks=3, wait_ms=1000).tasks
    assert len(tasks) == 3
    api.c.report_outcome(tasks[0], Outcome.success(b"r0"))
    stale = dataclasses.replace(tasks[2], lease_token=tasks[2].lease_token + 1)
    statuses = api.c.report_outcomes([Report(tasks[1], Outcome.success(b"r1")),
                                      Report(stale, Outcome.success(b"never"))])
    assert statuses[0].ok and statuses[0].sluice_code in ("", "ok")
    assert not statuses[1].ok and statuses[1].sluice_code == "lease_lost"
    assert statuses[0].error() is None and isinstance(statuses[1].error(), LeaseLostError)
    results = {i: api.c.get_result(i) for i in ids}
    assert results[tasks[0].job_id].result == b"r0"
    assert results[tasks[1].job_id].result == b"r1"
    assert results[tasks[2].job_id].status == JobStatus.RUNNING


def test_await_result_uses_the_server_side_wait(api: Api) -> None:
    q = uid("q-")
    h = api.c.enqueue(q, b"")
    t = lease_one(api, q)
    before = api.recorder.count("GetJobResult")
    timer = threading.Timer(0.4, lambda: api.c.complete(t, b"done"))
    timer.start()
    started = time.monotonic()
    r = h.await_result(timeout=10)
    took = time.monotonic() - started
    assert r.result == b"done" and 0.3 < took < 3.0
    # One waiting call, not a polling loop.
    assert api.recorder.count("GetJobResult") - before == 1


def test_await_result_times_out(api: Api) -> None:
    h = api.c.enqueue(uid("q-"), b"")
    started = time.monotonic()
    with pytest.raises(SluiceTimeoutError):
        h.await_result(timeout=0.3)
    assert 0.25 < time.monotonic() - started < 3.0


def test_timeouts_infinity_has_no_limit_and_nan_or_negative_are_refused(api: Api) -> None:
    assert api.c.node_info(timeout=float("inf")).version
    for bad in (float("nan"), -1.0):
        with pytest.raises(ValueError):
            api.c.node_info(timeout=bad)
    q = uid("q-")
    h = api.c.enqueue(q, b"")
    with pytest.raises(ValueError):
        h.await_result(timeout=float("nan"))
    t = lease_one(api, q)
    threading.Timer(0.3, lambda: api.c.complete(t, b"done")).start()
    assert h.await_result(timeout=float("inf")).result == b"done"


def test_a_closed_client_raises_closed_error_without_sending(server: Sluiced) -> None:
    c = Client(server.address, token=OP_TOKEN)
    c.node_info()
    c.close()
    with pytest.raises(ClosedError):
        c.node_info()
    with pytest.raises(ClosedError):
        c.lease_stream()

    async def run() -> None:
        ac = AsyncClient(server.address, token=OP_TOKEN)
        await ac.node_info()
        await ac.close()
        with pytest.raises(ClosedError):
            await ac.node_info()
        with pytest.raises(ClosedError):
            ac.lease_stream()
    asyncio.run(run())


def test_expedite_cancel_restart_delete_and_handle(api: Api) -> None:
    q = uid("q-")
    h = api.c.enqueue(q, b"", start_at_ms=int(time.time() * 1000) + 3_600_000)
    assert h.get().status == JobStatus.SCHEDULED
    h.expedite()
    assert h.result().status == JobStatus.WAITING
    assert h.cancel().status == JobStatus.CANCELLED
    assert api.c.cancel(h.id).status == JobStatus.CANCELLED  # again: same answer
    h.restart()
    assert api.c.get_job(h.id).status == JobStatus.WAITING
    with pytest.raises(FailedPreconditionError):
        api.c.restart(h.id)
    t = lease_one(api, q)
    with pytest.raises(FailedPreconditionError):
        api.c.delete(h.id)  # running
    api.c.complete(t)
    h.delete()
    with pytest.raises(NotFoundError):
        api.c.get_job(h.id)
    assert api.c.job(h.id).id == h.id


def test_floating_limits_refresh_tasks_and_overrides(api: Api) -> None:
    q, k1, k2 = uid("q-"), uid("fk1-"), uid("fk2-")
    api.c.enqueue(q, b"", limits=[Limit.floating(k1, 2, 60_000, {"m": "1"}),
                                  Limit.floating(k2, 3, 60_000)])
    refreshes = []
    deadline = time.monotonic() + 5
    while len(refreshes) < 2 and time.monotonic() < deadline:
        resp = api.c.lease(q, "w", max_tasks=1, wait_ms=200)
        refreshes += resp.refreshes
    by_key = {r.key: r for r in refreshes}
    assert set(by_key) == {k1, k2}, refreshes
    r1 = by_key[k1]
    assert dict(r1.metadata) == {"m": "1"} and r1.default_max == 2 and r1.last_refreshed_ms == 0
    assert api.c.heartbeat_refresh(r1) >= r1.lease_expires_ms
    api.c.complete_refresh(r1, 7)
    api.c.fail_refresh(by_key[k2], "upstream_down", "no answer")
    s1, s2 = api.c.floating_limit(k1), api.c.floating_limit(k2)
    assert s1.current_max == 7 and s1.last_refreshed_ms > 0 and s1.consecutive_failures == 0
    assert s2.current_max == 3 and s2.consecutive_failures == 1
    with pytest.raises(LeaseLostError):
        api.c.complete_refresh(r1, 8)  # already reported
    api.c.set_floating_limit(k1, 1)
    assert api.c.floating_limit(k1).current_max == 1
    keys = {f.key for f in api.c.list_floating_limits(limit=1000)}
    assert {k1, k2} <= keys
    page = api.c.list_floating_limits(after_key=min(k1, k2), limit=1000)
    assert min(k1, k2) not in {f.key for f in page}
    assert {k1, k2} <= {f.key for f in api.c.iter_floating_limits(page_size=1)}
    with pytest.raises(NotFoundError):
        api.c.floating_limit(uid("missing-"))


def test_concurrency_keys(api: Api) -> None:
    q, key = uid("q-"), uid("fixed-")
    for _ in range(3):
        api.c.enqueue(q, b"", limits=[Limit.fixed(key, 1)])
    tasks = api.c.lease(q, "w", max_tasks=3, wait_ms=500).tasks
    assert len(tasks) == 1  # the key admits one
    ks = api.c.concurrency_key(key)
    assert (ks.holders, ks.max, ks.key, ks.kind) == (1, 1, key, LimitKind.FIXED)
    assert ks.waiters >= 1
    assert key in {k.key for k in api.c.list_concurrency_keys(limit=1000)}
    assert api.c.concurrency_key(key, kind=LimitKind.FLOATING).holders == 0
    api.c.complete(tasks[0])


def test_node_info_and_tenants(api: Api, server: Sluiced) -> None:
    info = api.c.node_info()
    assert info.version and info.caller_tenant_bound is False
    assert info.limits.max_payload_bytes == 1 << 20 and info.default_lease_ms == 30_000
    q = uid("q-")
    h = api.c.enqueue(q, b"", tenant="t-1")
    assert api.c.get_job(h.id, tenant="t-1").tenant == "t-1"
    with pytest.raises(NotFoundError):
        api.c.get_job(h.id, tenant="t-2")
    bound = make_api(api.kind, server.address, TOKEN_A)
    try:
        info = bound.c.node_info()
        assert info.caller_tenant == TENANT_A and info.caller_tenant_bound
        hb = bound.c.enqueue(q, b"")
        assert api.c.get_job(hb.id, tenant=TENANT_A).tenant == TENANT_A
    finally:
        bound.close()


def test_client_tenant_default(server: Sluiced) -> None:
    with Client(server.address, token=OP_TOKEN, tenant="t-default") as c:
        h = c.enqueue(uid("q-"), b"")
        assert c.get_job(h.id).tenant == "t-default"
        assert h.get().tenant == "t-default"


def test_payload_argument_checks(client: Client) -> None:
    with pytest.raises(TypeError):
        client.enqueue("q", "text")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        client.enqueue("q", b"x", json={"a": 1})




def test_client_ids_are_time_ordered_uuid7() -> None:
    from sluice_client._uuid import uuid7

    ids = [uuid7() for _ in range(5000)]
    assert ids == sorted(ids) and len(set(ids)) == 5000
    u = uuid.UUID(ids[0])
    assert u.version == 7 and u.variant == uuid.RFC_4122
    assert abs((u.int >> 80) - time.time() * 1000) < 5000  # 48-bit Unix ms


def test_lease_stream_answers_pipelined_requests_in_order(server: Sluiced) -> None:
    q = uid("q-")
    with Client(server.address, token=OP_TOKEN, timeout=15) as c:
        hs = c.enqueue_batch([JobSpec(q, payload=bytes([i])) for i in range(6)])
        with c.lease_stream() as s:
            for n in (1, 2, 3):
                s.send(q, "w1", max_tasks=n)
            assert s.in_flight == 3
            got = [s.receive(timeout=10) for _ in range(3)]
            assert [len(r.tasks) for r in got] == [1, 2, 3]
            tasks = [t for r in got for t in r.tasks]
            assert len({t.job_id for t in tasks}) == 6 and all(t.worker_id == "w1" for t in tasks)
            stale = dataclasses.replace(tasks[0], lease_token=tasks[0].lease_token + 1)
            r = s.lease(q, "w1", max_tasks=2, timeout=10, reports=[
                Report(stale, Outcome.success())] + [Report(t, Outcome.success()) for t in tasks])
            assert [st.sluice_code for st in r.report_statuses][:1] == ["lease_lost"]
            assert all(st.code == 0 for st in r.report_statuses[1:])
            assert r.tasks == []
        assert all(c.get_result(h.id).succeeded for h in hs)
        # A bad request ends the stream with its error; the request behind it is not applied.
        h = c.enqueue(q)
        s2 = c.lease_stream()
        s2.send(q, "", max_tasks=1)
        s2.send(q, "w1", max_tasks=1)
        with pytest.raises(InvalidArgumentError):
            s2.receive(timeout=10)
        assert s2.ended
        with pytest.raises(InvalidArgumentError):
            s2.send(q, "w1")
        assert c.get_job(h.id).status == JobStatus.WAITING
        # An answer that does not come in time cancels the stream.
        s3 = c.lease_stream()
        s3.send(uid("idle-"), "w1", wait_ms=5000)
        t0 = time.monotonic()
        with pytest.raises(SluiceTimeoutError):
            s3.receive(timeout=0.3)
        assert time.monotonic() - t0 < 3 and s3.ended
