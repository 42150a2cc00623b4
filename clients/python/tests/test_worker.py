"""The Worker against a real sluiced: concurrency, outcomes, cancellation, heartbeats,
duplicate delivery, several queues, graceful stop."""

from __future__ import annotations

import array
import asyncio
import random
import threading
import time
from typing import Any, Iterator

import grpc
import grpc.aio
import pytest

from harness import OP_TOKEN, Sluiced, uid
from recorder import AsyncRecorder
from sluice_client import (
    AttemptStatus,
    Client,
    JobCancelled,
    JobContext,
    JobFailed,
    JobSpec,
    JobStatus,
    RetryPolicy,
    UnauthenticatedError,
    Worker,
)
from sluice_client.cancellation import CANCEL_REQUESTED, SHUTDOWN


class Gauge:
    """Counts handlers running at once (thread-safe) and remembers the peak."""

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0
        self.runs = 0
        self._lock = threading.Lock()

    def __enter__(self) -> Gauge:
        with self._lock:
            self.now += 1
            self.runs += 1
            self.peak = max(self.peak, self.now)
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self.now -= 1


@pytest.fixture
def make_worker(server: Sluiced) -> Iterator[Any]:
    started: list[Worker] = []

    def make(**kwargs: Any) -> Worker:
        kwargs.setdefault("poll_wait_ms", 300)
        w = Worker(server.address, token=OP_TOKEN, **kwargs)
        started.append(w)
        return w
    yield make
    for w in started:
        w.stop(5)


def wait_for(pred: Any, timeout: float = 10.0, what: str = "condition") -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def all_finished(client: Client, ids: list[str], timeout: float = 20.0) -> list[Any]:
    return [client.job(i).await_result(timeout=timeout) for i in ids]


@pytest.mark.parametrize("style", ["sync", "async"])
def test_concurrency_is_reached_and_never_exceeded(style: str, client: Client,
                                                   make_worker: Any) -> None:
    q, gauge = uid("q-"), Gauge()
    w = make_worker(concurrency=4)
    if style == "sync":
        @w.handler(q)
        def handle(job: JobContext) -> None:
            with gauge:
                time.sleep(0.08)
    else:
        @w.handler(q)
        async def handle_async(job: JobContext) -> None:
            with gauge:
                await asyncio.sleep(0.08)
    ids = [h.id for h in client.enqueue_batch([JobSpec(q) for _ in range(24)])]
    with w.running():
        results = all_finished(client, ids)
    assert all(r.succeeded for r in results)
    assert gauge.peak == 4 and gauge.runs == 24
    assert w.stats.max_running <= 4 and w.stats.max_held <= 8 and w.stats.succeeded == 24


def test_lease_requests_ask_for_the_free_slots(client: Client, make_worker: Any) -> None:
    q, rec = uid("q-"), AsyncRecorder()
    w = make_worker(concurrency=6, interceptors=[rec])
    w.handler(q)(lambda job: time.sleep(0.02))
    ids = [client.enqueue(q, b"").id for _ in range(30)]
    with w.running():
        all_finished(client, ids)
    asks = [r.max_tasks for r in rec.requests("LeaseTasks")]
    assert asks[0] == 6 and max(asks) == 6 and min(asks) >= 1
    assert rec.count("ReportOutcomes") <= 30


def test_outcomes(client: Client, make_worker: Any) -> None:
    q = uid("q-")

    class BadInput(JobFailed):
        code = "bad_input"
        no_retry = True

    def handle(job: JobContext) -> Any:
        kind = job.json()["kind"]
        if kind == "bytes":
            return b"\x00raw"
        if kind == "array":
            return array.array("B", [1, 2, 3])  # any buffer is stored as its bytes
        if kind == "json":
            return {"n": job.attempt}
        if kind == "none":
            return None
        if kind == "jobfailed":
            raise JobFailed("nope", code="quota", no_retry=True, data=b"ctx")
        if kind == "subclass":
            raise BadInput("bad field")
        if kind == "exception":
            raise ValueError("boom")
        if kind == "cancel":
            raise JobCancelled()
        if kind == "large":
            return b"x" * ((1 << 20) + 1)
        raise AssertionError(kind)

    w = make_worker(concurrency=4)
    w.handler(q)(handle)
    retry = RetryPolicy(max_retries=3, initial_backoff_ms=0, max_backoff_ms=0, multiplier=1.0)
    kinds = ["bytes", "array", "json", "none", "jobfailed", "subclass", "exception", "cancel",
             "large"]
    ids = {k: client.enqueue(q, json={"kind": k}, retry=RetryPolicy.none()
                             if k in ("exception", "large") else retry).id for k in kinds}
    with w.running():
        r = {k: client.job(i).await_result(timeout=20) for k, i in ids.items()}
    assert r["bytes"].result == b"\x00raw"
    assert r["array"].succeeded and r["array"].result == b"\x01\x02\x03"
    assert r["json"].json() == {"n": 1}
    assert r["none"].succeeded and r["none"].result == b""
    assert (r["jobfailed"].status, r["jobfailed"].error_code, r["jobfailed"].error_data) == (
        JobStatus.FAILED, "quota", b"ctx")
    assert client.get_job(ids["jobfailed"]).attempt_count == 1  # no_retry
    assert (r["subclass"].error_code, r["subclass"].error_message) == ("bad_input", "bad field")
    assert (r["exception"].error_code, r["exception"].error_message) == ("ValueError", "boom")
    assert b"Traceback" in r["exception"].error_data
    assert r["cancel"].status == JobStatus.CANCELLED
    assert r["large"].error_code == "result_too_large"


@pytest.mark.parametrize("style", ["sync", "async"])
def test_cancellation_reaches_the_handler_token(style: str, client: Client,
                                                make_worker: Any) -> None:
    q = uid("q-")
    seen: dict[str, Any] = {}
    running = threading.Event()
    w = make_worker(concurrency=2)
    if style == "sync":
        @w.handler(q)
        def handle(job: JobContext) -> bytes:
            running.set()
            seen["set"] = job.cancellation.wait(10)
            seen["reason"] = job.cancellation.reason
            job.cancellation.raise_if_cancelled()
            return b"not cancelled"
    else:
        @w.handler(q)
        async def handle_async(job: JobContext) -> bytes:
            running.set()
            await asyncio.wait_for(job.cancellation.wait_async(), 10)
            seen["set"], seen["reason"] = job.cancelled, job.cancellation.reason
            raise JobCancelled()
    h = client.enqueue(q, b"", lease_ms=600)  # heartbeats every 200 ms
    with w.running():
        assert running.wait(10)
        t0 = time.monotonic()
        assert h.cancel().cancel_requested
        r = h.await_result(timeout=10)
        took = time.monotonic() - t0
    assert seen == {"set": True, "reason": CANCEL_REQUESTED}
    assert r.status == JobStatus.CANCELLED and took < 2.0


def test_heartbeats_keep_a_long_job_alive(client: Client, make_worker: Any) -> None:
    q, rec = uid("q-"), AsyncRecorder()
    w = make_worker(concurrency=1, interceptors=[rec])

    @w.handler(q)
    def busy(job: JobContext) -> bytes:
        end = time.monotonic() + 2.0  # CPU-bound: heartbeats come from the worker's loop
        n = 0
        while time.monotonic() < end:
            n += 1
        return b"ok"
    h = client.enqueue(q, b"", lease_ms=900, retry=RetryPolicy.none())
    with w.running():
        r = h.await_result(timeout=15)
    assert r.succeeded, r
    job = client.get_job(h.id)
    assert job.attempt_count == 1
    assert rec.count("Heartbeat") >= 4  # every 300 ms for 2 s, well past the 900 ms lease


def test_duplicate_delivery_of_a_running_task_is_ignored(client: Client,
                                                         make_worker: Any) -> None:
    q = uid("q-")
    release, calls, ctxs = threading.Event(), [], []
    w = make_worker(concurrency=2)

    @w.handler(q)
    def handle(job: JobContext) -> bytes:
        calls.append(job.task.task_id)
        ctxs.append(job)
        release.wait(10)
        return b"once"
    h = client.enqueue(q, b"")
    with w.running():
        wait_for(lambda: ctxs, what="the handler to start")
        rt = w._runtime
        assert rt is not None and w._loop is not None

        async def deliver_again() -> int:  # as if a lease response carried it again
            return rt._accept([ctxs[0].task], 1, time.monotonic())
        used = asyncio.run_coroutine_threadsafe(deliver_again(), w._loop).result(5)
        release.set()
        assert h.await_result(timeout=10).result == b"once"
    assert used == 0 and len(calls) == 1 and w.stats.duplicates == 1
    assert w.stats.reports_sent == 1


def test_several_queues_one_worker(client: Client, make_worker: Any) -> None:
    qa, qb = uid("qa-"), uid("qb-")
    w = make_worker(concurrency=3, handlers={qa: lambda j: b"A", qb: lambda j: b"B"})
    assert set(w.queues) == {qa, qb}
    ids = [(client.enqueue(qa, b"").id, b"A"), (client.enqueue(qb, b"").id, b"B")] * 3
    with w.running():
        for i, want in ids:
            assert client.job(i).await_result(timeout=10).result == want


def test_an_idle_queue_does_not_keep_the_only_slot(client: Client, make_worker: Any) -> None:
    """With one slot and two queues, the idle queue's loop takes the slot for its long-poll
    first; each empty answer must let the other queue have a turn."""
    idle, busy = uid("idle-"), uid("busy-")
    ids = [h.id for h in client.enqueue_batch([JobSpec(busy) for _ in range(3)])]
    w = make_worker(concurrency=1, poll_wait_ms=200,
                    handlers={idle: lambda j: b"", busy: lambda j: b"ok"})
    with w.running():
        wait_for(lambda: w.stats.succeeded == 3, timeout=5, what="the busy queue's jobs")
    assert [client.get_job(i).status for i in ids] == [JobStatus.SUCCEEDED] * 3


def test_two_busy_queues_take_turns_with_one_slot(client: Client, make_worker: Any) -> None:
    qa, qb = uid("turna-"), uid("turnb-")
    client.enqueue_batch([JobSpec(qa) for _ in range(30)])
    client.enqueue_batch([JobSpec(qb) for _ in range(30)])
    ran = {qa: 0, qb: 0}
    lock = threading.Lock()

    def handle(job: JobContext) -> None:
        with lock:
            ran[job.queue] += 1
    w = make_worker(concurrency=1, poll_wait_ms=200, handlers={qa: handle, qb: handle})
    with w.running():
        wait_for(lambda: ran[qa] + ran[qb] >= 30, timeout=10, what="30 jobs")
    assert ran[qa] >= 5 and ran[qb] >= 5, ran


def test_stop_finishes_in_flight_work_and_leases_no_more(client: Client,
                                                         make_worker: Any) -> None:
    q = uid("q-")
    started = threading.Semaphore(0)
    w = make_worker(concurrency=3)

    @w.handler(q)
    def slow(job: JobContext) -> bytes:
        started.release()
        time.sleep(0.6)
        return b"finished"
    ids = [client.enqueue(q, b"").id for _ in range(6)]
    w.start()
    for _ in range(3):
        assert started.acquire(timeout=10)
    t0 = time.monotonic()
    assert w.stop(timeout=10) is True
    assert time.monotonic() - t0 < 3.0
    jobs = [client.get_job(i) for i in ids]
    done = [j for j in jobs if j.status == JobStatus.SUCCEEDED]
    untouched = [j for j in jobs if j.status == JobStatus.WAITING and j.attempt_count == 0]
    assert len(done) == 3 and len(untouched) == 3, [(j.status, j.attempt_count) for j in jobs]


def test_stop_with_an_infinite_timeout_waits_and_a_wait_that_is_no_duration_is_refused(
        client: Client, make_worker: Any) -> None:
    q = uid("q-")
    started = threading.Event()
    w = make_worker(concurrency=1)

    @w.handler(q)
    def slow(job: JobContext) -> bytes:
        started.set()
        time.sleep(0.4)
        return b"late"
    h = client.enqueue(q, b"", retry=RetryPolicy.none())
    w.start()
    assert started.wait(10)
    for bad in (-1.0, float("nan")):
        with pytest.raises(ValueError):
            w.stop(bad)
        with pytest.raises(ValueError):
            w.request_stop(bad)
    assert w.is_running  # a refused stop stops nothing
    # Event.wait overflows past threading.TIMEOUT_MAX; infinity must wait, not fail.
    assert w.stop(float("inf")) is True
    r = h.await_result(timeout=10)
    assert r.succeeded and r.result == b"late"


def test_stop_timeout_sets_shutdown_tokens_then_abandons(client: Client,
                                                         make_worker: Any) -> None:
    q = uid("q-")
    running = threading.Semaphore(0)
    w = make_worker(concurrency=2, shutdown_grace=0.5)

    @w.handler(q)
    def handle(job: JobContext) -> bytes:
        running.release()
        if job.json()["polite"]:
            job.cancellation.wait(10)
            assert job.cancellation.reason == SHUTDOWN
            raise JobCancelled()  # after a shutdown: reported as worker_shutdown, retried
        time.sleep(4)  # ignores its token: abandoned, never reported
        return b"too late"
    polite = client.enqueue(q, json={"polite": True}, retry=RetryPolicy.none())
    stubborn = client.enqueue(q, json={"polite": False}, lease_ms=60_000)
    w.start()
    assert running.acquire(timeout=10) and running.acquire(timeout=10)
    t0 = time.monotonic()
    assert w.stop(timeout=0.3) is False
    assert time.monotonic() - t0 < 3.0
    r = polite.result()
    assert (r.status, r.error_code) == (JobStatus.FAILED, "worker_shutdown")
    assert stubborn.result().status == JobStatus.RUNNING  # its lease just runs out
    assert w.stats.abandoned == 1
    client.cancel(stubborn.id)


def test_start_fails_fast_with_a_bad_token(server: Sluiced) -> None:
    w = Worker(server.address, token="not-a-token")
    w.handler("q")(lambda job: None)
    with pytest.raises(UnauthenticatedError):
        w.start()
    assert not w.is_running


async def test_run_async_in_the_callers_loop(server: Sluiced) -> None:
    from sluice_client import AsyncClient

    q = uid("q-")
    w = Worker(server.address, token=OP_TOKEN, poll_wait_ms=200)

    @w.handler(q)
    async def handle(job: JobContext) -> dict[str, Any]:
        return {"echo": job.json()}
    runner = asyncio.create_task(w.run_async())
    async with AsyncClient(server.address, token=OP_TOKEN) as c:
        h = await c.enqueue(q, json=[1, "two"])
        r = await h.await_result(timeout=10)
    assert r.json() == {"echo": [1, "two"]}
    assert await w.stop_async(5) is True
    assert await runner is True


def test_a_task_arriving_late_in_a_long_poll_keeps_its_lease(client: Client,
                                                             make_worker: Any) -> None:
    """Regression: the lease's local clock starts when the task arrives, not when the
    long-poll that brought it was sent (else a short lease looks expired on arrival and the
    worker drops a good outcome)."""
    q = uid("q-")
    w = make_worker(concurrency=1, poll_wait_ms=1500)
    w.handler(q)(lambda job: b"in time")
    with w.running():
        time.sleep(0.7)  # the worker is parked in a long-poll
        h = client.enqueue(q, b"", lease_ms=300, retry=RetryPolicy.none())
        r = h.await_result(timeout=10)
    assert r.result == b"in time" and w.stats.lease_lost == 0
    assert client.get_job(h.id).attempt_count == 1


def test_worker_rides_out_a_server_restart(tmp_path: Any, servers: list[Sluiced]) -> None:
    """The worker keeps leasing through a crash and restart of sluiced (same port and data)
    and picks up work again by itself."""
    s = Sluiced(tmp_path / "restart").start()
    servers.append(s)
    q = uid("q-")
    w = Worker(s.address, token=OP_TOKEN, concurrency=2, poll_wait_ms=300)
    w.handler(q)(lambda job: job.payload[::-1])
    with Client(s.address, token=OP_TOKEN) as c, w.running(stop_timeout=5):
        assert c.enqueue(q, b"abc").await_result(timeout=10).result == b"cba"
        s.kill()
        time.sleep(0.5)  # the worker's long-polls fail meanwhile and back off
        restarted = Sluiced(s.data_dir, grpc_port=s.grpc_port).start()
        servers.append(restarted)
        h = c.enqueue(q, b"xyz")
        assert h.await_result(timeout=20).result == b"zyx"


class LeaseFaults(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """Fails LeaseTasks calls that carry reports: every 4th one before it is sent (nothing
    applied), every 4th after it was answered (applied, the answer lost in transit)."""

    def __init__(self) -> None:
        self.with_reports = 0
        self.unsent = 0
        self.answer_lost = 0

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        method = details.method.decode() if isinstance(details.method, bytes) else details.method
        if not method.endswith("/LeaseTasks") or not request.reports:
            return await continuation(details, request)
        k = self.with_reports % 4
        self.with_reports += 1
        if k == 1:
            self.unsent += 1
            raise grpc.aio.AioRpcError(grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(),
                                       grpc.aio.Metadata(), "injected before sending")
        call = await continuation(details, request)
        await call
        if k == 3:
            self.answer_lost += 1
            raise grpc.aio.AioRpcError(grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(),
                                       grpc.aio.Metadata(), "injected: answer lost")
        return call


def _reported_on(rec: AsyncRecorder) -> tuple[list[str], list[str]]:
    """(task ids reported on LeaseTasks, task ids reported by ReportOutcomes), as sent."""
    on_lease = [r.task_id for req in rec.requests("LeaseTasks") for r in req.reports]
    alone = [r.task_id for req in rec.requests("ReportOutcomes") for r in req.reports]
    return on_lease, alone


def _each_succeeded_once(client: Client, ids: list[str]) -> None:
    for i in ids:
        job = client.get_job(i, include_attempts=True)
        ok = [a for a in job.attempts if a.status == AttemptStatus.SUCCEEDED]
        assert job.status == JobStatus.SUCCEEDED and len(ok) == 1, (i, job.attempts)
        assert ok[0].result == i.encode()


@pytest.mark.parametrize("style", ["sync", "async"])
def test_reports_ride_on_lease_calls(style: str, client: Client, make_worker: Any) -> None:
    """With a steady stream of jobs, one round trip reports a batch and fetches the next: most
    outcomes are acknowledged through LeaseTasks report_statuses; none lost or sent twice."""
    q, rec, gauge, n = uid("q-"), AsyncRecorder(), Gauge(), 600
    w = make_worker(concurrency=8, interceptors=[rec])
    if style == "sync":
        @w.handler(q)
        def handle(job: JobContext) -> bytes:
            with gauge:
                time.sleep(random.random() * 0.003)
            return job.job_id.encode()
    else:
        @w.handler(q)
        async def handle_async(job: JobContext) -> bytes:
            with gauge:
                await asyncio.sleep(random.random() * 0.003)
            return job.job_id.encode()
    # A backlog, then a producer that keeps adding while the worker runs.
    ids = [h.id for h in client.enqueue_batch([JobSpec(q) for _ in range(n // 2)])]
    with w.running():
        while len(ids) < n:
            ids += [h.id for h in client.enqueue_batch([JobSpec(q) for _ in range(30)])]
            time.sleep(0.01)
        wait_for(lambda: w.stats.succeeded == n, timeout=60, what=f"{n} jobs")
    on_lease, alone = _reported_on(rec)
    leases = rec.requests("LeaseTasks")
    carrying = [r for r in leases if r.reports]
    print(f"{len(on_lease)} of {n} reports on {len(carrying)} of {len(leases)} LeaseTasks; "
          f"{len(alone)} in {rec.count('ReportOutcomes')} ReportOutcomes")
    # Each outcome was sent once and acknowledged once; every job has one succeeded attempt.
    assert len(on_lease) + len(alone) == n and len(set(on_lease + alone)) == n
    assert rec.count("ReportOutcome") == 0
    s = w.stats
    assert (s.succeeded, s.reports_sent, s.lease_lost, s.duplicates) == (n, n, 0, 0)
    assert s.max_running <= 8 and gauge.peak <= 8
    _each_succeeded_once(client, ids)
    # Most rode on LeaseTasks, in calls that did not long-poll.
    assert len(on_lease) >= 0.8 * n, (len(on_lease), len(alone))
    assert all(r.wait_ms == 0 for r in carrying)
    assert (s.reports_with_lease, s.reports_alone) == (len(on_lease), len(alone))
    assert s.lease_report_calls == len(carrying)
    # Fewer round trips than a ReportOutcomes per batch next to each lease.
    assert len(leases) + rec.count("ReportOutcomes") < 2 * len(carrying), (
        len(leases), len(carrying), rec.count("ReportOutcomes"))


def test_a_failed_lease_call_sends_its_reports_again_alone(client: Client,
                                                          make_worker: Any) -> None:
    """A LeaseTasks call carrying reports fails as a whole: they go again by ReportOutcomes;
    a repeat of one that had been applied (answer lost) is refused lease_lost and found
    applied, so nothing is lost, doubled or miscounted."""
    q, rec, faults, n = uid("q-"), AsyncRecorder(), LeaseFaults(), 200
    events: list[str] = []
    w = make_worker(concurrency=4, interceptors=[rec, faults],
                    on_event=lambda name, f: events.append(name))
    w.handler(q)(lambda job: job.job_id.encode())
    ids = [h.id for h in client.enqueue_batch([JobSpec(q, lease_ms=1500) for _ in range(n)])]
    with w.running():
        # The tasks leased by calls whose answer was lost come back when their leases expire.
        wait_for(lambda: w.stats.succeeded == n, timeout=60, what=f"{n} jobs")
    s = w.stats
    print(f"{faults.unsent} calls failed unsent, {faults.answer_lost} answers lost; "
          f"{s.reports_recovered} recovered, {s.reports_alone} reports alone, "
          f"{s.reports_with_lease} on LeaseTasks")
    assert faults.unsent > 0 and faults.answer_lost > 0
    assert s.reports_recovered > 0 and rec.count("ReportOutcomes") > 0
    assert (s.succeeded, s.failed, s.lease_lost) == (n, 0, 0)
    assert "report_rejected" not in events
    _each_succeeded_once(client, ids)


class RefuseBigReports(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """Refuses ReportOutcomes calls of more than ``most`` reports as a whole, as a server does
    when a request is over its message cap (RESOURCE_EXHAUSTED; nothing applied)."""

    def __init__(self, most: int) -> None:
        self.most = most
        self.refused = 0

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        method = details.method.decode() if isinstance(details.method, bytes) else details.method
        if method.endswith("/ReportOutcomes") and len(request.reports) > self.most:
            self.refused += 1
            raise grpc.aio.AioRpcError(grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.aio.Metadata(),
                                       grpc.aio.Metadata(), "injected: request too large")
        return await continuation(details, request)


def _barrier_handler(n: int, result: bytes) -> Any:
    """A handler whose first ``n`` calls all return at once (their outcomes queue together)."""
    barrier = threading.Barrier(n)

    def handle(job: JobContext) -> bytes:
        barrier.wait(timeout=10)
        return result
    return handle


def test_a_report_batch_refused_as_a_whole_is_split(client: Client, make_worker: Any) -> None:
    """A batch the server refuses as a whole applied nothing: the worker sends it again in
    smaller batches instead of dropping the outcomes (they would wait for lease expiry)."""
    q, n, refuse = uid("q-"), 16, RefuseBigReports(4)
    ids = [h.id for h in client.enqueue_batch([JobSpec(q, lease_ms=60_000) for _ in range(n)])]
    # Results of 100 bytes: a batch of 16 is 1.6 KB, a size refusal (not an overload).
    w = make_worker(concurrency=n, report_with_lease=False, interceptors=[refuse],
                    handlers={q: _barrier_handler(n, b"d" * 100)})
    with w.running():
        wait_for(lambda: w.stats.succeeded == n, timeout=10, what=f"{n} acknowledged outcomes")
    assert refuse.refused > 0
    for i in ids:
        job = client.get_job(i, include_attempts=True)
        assert job.status == JobStatus.SUCCEEDED and len(job.attempts) == 1, job.attempts


class RefuseFirst(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """Refuses the first ``n`` ReportOutcomes calls RESOURCE_EXHAUSTED without a code, as an
    older sluiced did when it had no thread free."""

    def __init__(self, n: int) -> None:
        self.left = n

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        method = details.method.decode() if isinstance(details.method, bytes) else details.method
        if method.endswith("/ReportOutcomes") and self.left > 0:
            self.left -= 1
            raise grpc.aio.AioRpcError(grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.aio.Metadata(),
                                       grpc.aio.Metadata(), "no thread free for this call")
        return await continuation(details, request)


def test_a_small_report_refused_without_a_code_is_retried(client: Client,
                                                         make_worker: Any) -> None:
    q, refuse = uid("q-"), RefuseFirst(2)
    h = client.enqueue(q, lease_ms=60_000)
    w = make_worker(report_with_lease=False, interceptors=[refuse], handlers={q: lambda j: b"ok"})
    with w.running():
        wait_for(lambda: w.stats.succeeded == 1, timeout=5, what="the success acknowledged")
    assert refuse.left == 0
    job = client.get_job(h.id, include_attempts=True)
    assert job.status == JobStatus.SUCCEEDED and len(job.attempts) == 1, job.attempts


def test_outcomes_too_big_for_one_request_go_in_several(tmp_path: Any,
                                                        servers: list[Sluiced]) -> None:
    """A server that takes requests of at most 256 KiB; 32 results of 20 KB finish at once."""
    s = Sluiced(tmp_path / "small", extra_args=["--max-message-bytes", "262144"]).start()
    servers.append(s)
    q, n = uid("q-"), 32
    w = Worker(s.address, token=OP_TOKEN, concurrency=n, poll_wait_ms=300,
               handlers={q: _barrier_handler(n, b"r" * 20_000)})
    with Client(s.address, token=OP_TOKEN) as c, w.running(stop_timeout=5):
        ids = [h.id for h in c.enqueue_batch([JobSpec(q, lease_ms=60_000) for _ in range(n)])]
        wait_for(lambda: w.stats.succeeded == n, timeout=10, what=f"{n} acknowledged outcomes")
        for i in ids:
            job = c.get_job(i, include_attempts=True)
            assert job.status == JobStatus.SUCCEEDED and len(job.attempts) == 1, job.attempts
            assert len(job.attempts[0].result) == 20_000


def test_a_failure_with_an_exception_as_message_is_reported(client: Client,
                                                            make_worker: Any) -> None:
    """JobFailed(e) with an exception (not a string) as its message, and a non-string code:
    the attempt fails with their str(), at once (it used to go unreported until its lease
    expired)."""
    q = uid("q-")

    class Odd(JobFailed):
        code = 42  # type: ignore[assignment]

    def handle(job: JobContext) -> None:
        if job.json()["kind"] == "exc":
            raise JobFailed(ValueError("boom"), code="bad")  # type: ignore[arg-type]
        raise Odd("odd")
    w = make_worker(concurrency=2, handlers={q: handle})
    once = RetryPolicy(max_retries=0)
    h1 = client.enqueue(q, json={"kind": "exc"}, lease_ms=60_000, retry=once)
    h2 = client.enqueue(q, json={"kind": "odd"}, lease_ms=60_000, retry=once)
    with w.running():
        wait_for(lambda: w.stats.failed == 2, timeout=5, what="2 reported failures")
    a1 = client.get_job(h1.id, include_attempts=True).attempts
    a2 = client.get_job(h2.id, include_attempts=True).attempts
    assert [(a.status, a.error_code, a.error_message) for a in a1] == [
        (AttemptStatus.FAILED, "bad", "boom")]
    assert [(a.status, a.error_code, a.error_message) for a in a2] == [
        (AttemptStatus.FAILED, "42", "odd")]


async def test_a_cancelled_run_async_returns_without_waiting_for_its_long_poll(
        server: Sluiced) -> None:
    """Cancelling run_async (or it failing) closes without a drain: a 30 s long-poll and a
    loop waiting for a slot are cancelled rather than waited for."""
    q1, q2 = uid("q-"), uid("q-")
    w = Worker(server.address, token=OP_TOKEN, poll_wait_ms=30_000, concurrency=1,
               handlers={q1: lambda j: None, q2: lambda j: None})
    runner = asyncio.create_task(w.run_async())
    # Started (its loops exist), then a moment: one queue long-polls, the other waits for the
    # only slot.
    end = time.monotonic() + 10
    while not w._started.is_set() and time.monotonic() < end:
        await asyncio.sleep(0.02)
    assert w._started.is_set()
    await asyncio.sleep(0.5)
    runner.cancel()
    t0 = time.monotonic()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(runner, 10)
    assert time.monotonic() - t0 < 3


def test_a_server_ignoring_lease_reports_gets_them_alone(client: Client,
                                                        make_worker: Any) -> None:
    """A server older than LeaseTasksRequest.reports drops them and answers no statuses: the
    worker notices at once and reports alone from then on."""

    class OldServer(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
        async def intercept_unary_unary(self, continuation: Any, details: Any,
                                        request: Any) -> Any:
            if request.__class__.__name__ == "LeaseTasksRequest":
                stripped = type(request)()
                stripped.CopyFrom(request)
                stripped.ClearField("reports")
                call = await continuation(details, stripped)
                resp = await call
                resp.ClearField("report_statuses")
                return resp
            return await continuation(details, request)

    q, rec, n = uid("q-"), AsyncRecorder(), 60
    events: list[str] = []
    w = make_worker(concurrency=4, interceptors=[rec, OldServer()],
                    on_event=lambda name, f: events.append(name))
    w.handler(q)(lambda job: job.job_id.encode())
    ids = [h.id for h in client.enqueue_batch([JobSpec(q) for _ in range(n)])]
    with w.running():
        wait_for(lambda: w.stats.succeeded == n, timeout=30, what=f"{n} jobs")
    assert events.count("lease_reports_ignored") == 1
    # The first answer tells; the second lane may have sent one more call with reports.
    assert 1 <= sum(1 for r in rec.requests("LeaseTasks") if r.reports) <= 2
    assert w.stats.lease_lost == 0
    _each_succeeded_once(client, ids)
