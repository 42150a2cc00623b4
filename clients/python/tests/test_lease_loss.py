"""Lease loss: a worker whose lease ran out (heartbeats stalled, or the whole process paused)
sets the handler's token and never reports; the server re-delivers the job, and the attempt the
worker lost ends `lease_expired`, not with the stale worker's result."""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Iterator

import grpc
import grpc.aio
import pytest

from harness import OP_TOKEN, Sluiced, uid
from recorder import AsyncRecorder
from sluice_client import (
    RpcRetryPolicy,
    AttemptStatus,
    Client,
    JobContext,
    JobStatus,
    RetryPolicy,
    Task,
    Worker,
)
from sluice_client.cancellation import LEASE_LOST

HERE = pathlib.Path(__file__).resolve().parent
QUICK_RETRY = RetryPolicy(max_retries=3, initial_backoff_ms=0, max_backoff_ms=0, multiplier=1.0)


def reported_task_ids(rec: AsyncRecorder) -> set[str]:
    ids = {r.task_id for r in rec.requests("ReportOutcome")}
    for batch in rec.requests("ReportOutcomes") + rec.requests("LeaseTasks"):
        ids |= {r.task_id for r in batch.reports}
    return ids


def lease_redelivery(client: Client, queue: str, timeout: float = 10.0) -> Task:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        tasks = client.lease(queue, "rescuer", max_tasks=1, wait_ms=500).tasks
        if tasks:
            return tasks[0]
    raise AssertionError("the job was not re-delivered after its lease expired")


def test_stalled_heartbeats_lose_the_lease_and_the_worker_never_reports(
        server: Sluiced, client: Client) -> None:
    q, rec = uid("q-"), AsyncRecorder()
    rec.held.add("Heartbeat")  # every heartbeat stalls inside the worker's process
    seen: dict[str, Any] = {}
    started, returned, stopping = threading.Event(), threading.Event(), threading.Event()
    w = Worker(server.address, token=OP_TOKEN, concurrency=1, poll_wait_ms=200,
               interceptors=[rec])

    @w.handler(q)
    def handle(job: JobContext) -> bytes:
        seen["task_id"] = job.task.task_id
        started.set()
        seen["token_set"] = job.cancellation.wait(10)
        seen["reason"] = job.cancellation.reason
        seen["after_ms"] = (time.monotonic() - seen["t0"]) * 1000
        returned.set()
        stopping.wait(10)  # hold the slot until the worker stops leasing (no re-lease by it)
        return b"stale result"  # must never reach the server

    h = client.enqueue(q, b"", lease_ms=400, retry=QUICK_RETRY)
    with w.running(stop_timeout=5):
        seen["t0"] = time.monotonic()
        assert started.wait(10) and returned.wait(10)
        w.request_stop(5)
        time.sleep(0.1)
        stopping.set()
        time.sleep(0.3)  # room for a (wrong) report to go out
    assert seen["token_set"] and seen["reason"] == LEASE_LOST
    assert seen["after_ms"] < 3000  # soon after the lease (400 ms) ended
    assert seen["task_id"] not in reported_task_ids(rec)
    assert rec.count("Heartbeat") >= 1 and w.stats.reports_sent == 0
    # The server re-delivers the job; its first attempt is the expired one, not "stale result".
    t2 = lease_redelivery(client, q)
    assert (t2.job_id, t2.attempt) == (h.id, 2)
    client.complete(t2, b"fresh")
    job = client.get_job(h.id, include_attempts=True)
    assert job.status == JobStatus.SUCCEEDED and h.result().result == b"fresh"
    first = job.attempts[0]
    assert (first.status, first.error_code) == (AttemptStatus.FAILED, "lease_expired")


def _read_lines(proc: subprocess.Popen[str], out: list[dict[str, Any]]) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            out.append({"kind": "text", "line": line})


@pytest.fixture
def spawn(server: Sluiced) -> Iterator[Any]:
    procs: list[subprocess.Popen[str]] = []

    def start(queue: str, sleep_s: float, concurrency: int) -> tuple[subprocess.Popen[str],
                                                                     list[dict[str, Any]]]:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        proc = subprocess.Popen([sys.executable, str(HERE / "worker_proc.py"), server.address,
                                 OP_TOKEN, queue, str(sleep_s), str(concurrency)],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=env)
        procs.append(proc)
        lines: list[dict[str, Any]] = []
        threading.Thread(target=_read_lines, args=(proc, lines), daemon=True).start()
        return proc, lines
    yield start
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGCONT)
            p.kill()
            p.wait()


def wait_line(lines: list[dict[str, Any]], pred: Any, timeout: float = 15.0) -> dict[str, Any]:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for x in list(lines):
            if pred(x):
                return x
        time.sleep(0.01)
    raise AssertionError(f"no matching line in {lines[-20:]}")


def test_a_paused_worker_process_never_reports_after_its_lease_ended(
        server: Sluiced, client: Client, spawn: Any) -> None:
    q = uid("q-")
    h = client.enqueue(q, b"", lease_ms=500, retry=QUICK_RETRY)
    proc, lines = spawn(q, 2.5, 1)
    started = wait_line(lines, lambda x: x.get("kind") == "started")
    task_id = started["task_id"]
    proc.send_signal(signal.SIGSTOP)  # the whole worker freezes mid-job: no heartbeats
    try:
        t2 = lease_redelivery(client, q)  # expired and re-delivered while it is frozen
        assert (t2.job_id, t2.attempt) == (h.id, 2)
    finally:
        proc.send_signal(signal.SIGCONT)
    keep = threading.Event()

    def keep_alive() -> None:  # the rescuer heartbeats its own (live) attempt meanwhile
        while not keep.wait(0.1):
            client.heartbeat(t2)
    hb = threading.Thread(target=keep_alive, daemon=True)
    hb.start()
    wait_line(lines, lambda x: x.get("kind") == "finished")
    wait_line(lines, lambda x: x.get("name") == "lease_lost_no_report")
    time.sleep(0.3)
    keep.set()
    hb.join(5)
    client.complete(t2, b"by the rescuer")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0
    reports = [x for x in lines if x.get("kind") == "rpc"
               and x["method"] in ("ReportOutcome", "ReportOutcomes", "LeaseTasks")]
    assert all(task_id not in x["task_ids"] for x in reports), reports
    assert any(x.get("name") == "lease_lost" for x in lines)
    job = client.get_job(h.id, include_attempts=True)
    assert h.result().result == b"by the rescuer"
    assert job.attempts[0].error_code == "lease_expired"


class SlowReportFailingHeartbeats(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """Faults around the worker's first report call (a LeaseTasks carrying reports, or
    ReportOutcomes), all ``delay`` seconds long:

    - ``"answer"``: the server takes the report in time; its answer comes late.
    - ``"request"``: the report reaches the server late, after the lease ran out there.
    - ``"lost_answer"``: the server takes the report, the answer is lost (UNAVAILABLE); the
      worker sends it again, is refused ``lease_lost``, and reads the job's attempts to see
      whether the first send landed: that read is slow.

    From the first report call until the fault is over every Heartbeat of the tasks it carries
    fails UNAVAILABLE at once, so the worker's lease clock runs out meanwhile."""

    def __init__(self, where: str, delay: float) -> None:
        self.where, self.delay = where, delay
        self.armed, self.faulty = True, False
        self.task_ids: set[str] = set()
        self.failed_heartbeats = 0

    @staticmethod
    def _unavailable() -> grpc.aio.AioRpcError:
        return grpc.aio.AioRpcError(grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(),
                                    grpc.aio.Metadata(), "injected: connection reset")

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        name = str(details.method.decode() if isinstance(details.method, bytes)
                   else details.method).rsplit("/", 1)[-1]
        if name == "Heartbeat" and self.faulty and request.task_id in self.task_ids:
            self.failed_heartbeats += 1
            raise self._unavailable()
        if name == "GetJob" and self.faulty and self.where == "lost_answer":
            try:
                await asyncio.sleep(self.delay)
                return await continuation(details, request)
            finally:
                self.faulty = False
        carries = name == "ReportOutcomes" or (name == "LeaseTasks" and len(request.reports) > 0)
        if not (carries and self.armed):
            return await continuation(details, request)
        self.armed, self.faulty = False, True
        self.task_ids = {r.task_id for r in request.reports}
        try:
            if self.where == "request":
                await asyncio.sleep(self.delay)
            call = await continuation(details, request)
            await call  # the server has answered
            if self.where == "lost_answer":
                raise self._unavailable()
            if self.where == "answer":
                await asyncio.sleep(self.delay)
            return call
        finally:
            if self.where != "lost_answer":
                self.faulty = False


@pytest.mark.parametrize("with_lease", [True, False], ids=["on-lease", "alone"])
@pytest.mark.parametrize("where", ["answer", "request", "lost_answer"])
def test_a_lease_that_runs_out_while_its_report_is_in_flight_is_counted_once(
        server: Sluiced, client: Client, where: str, with_lease: bool) -> None:
    """The worker's lease clock runs a little ahead of the server's, so a report can be taken
    by the server while its answer is still on the way after the local clock ran out. The task
    then counts once: succeeded when the server took the outcome, lease lost when it refused
    it; never both."""
    q = uid("q-")
    fault = SlowReportFailingHeartbeats(where, 1.2)
    events: list[tuple[str, dict[str, Any]]] = []
    w = Worker(server.address, token=OP_TOKEN, concurrency=1, poll_wait_ms=200,
               interceptors=[fault], retry=RpcRetryPolicy(max_attempts=1),
               report_with_lease=with_lease,
               on_event=lambda name, fields: events.append((name, dict(fields))))
    runs: list[int] = []

    @w.handler(q)
    def handle(job: JobContext) -> bytes:
        runs.append(job.attempt)
        return f"attempt {job.attempt}".encode()

    h = client.enqueue(q, b"", lease_ms=600, retry=QUICK_RETRY)
    with w.running(stop_timeout=5):
        result = h.await_result(timeout=15)
        time.sleep(0.2)  # the answer of the last report is counted
    assert fault.failed_heartbeats >= 2  # heartbeats failed while the report was in flight
    names = [n for n, _ in events]
    s = w.stats
    if where in ("answer", "lost_answer"):
        # The server took the outcome before its lease ran out there: one success, no loss.
        assert result.result == b"attempt 1" and runs == [1]
        assert (s.succeeded, s.lease_lost) == (1, 0), (s, names)
        assert "lease_lost" not in names and names.count("reported") == 1, names
        assert s.reports_recovered == (1 if where == "lost_answer" else 0), s
    else:
        # It came too late: the first attempt is lost (once), the retry succeeds.
        assert result.result == b"attempt 2" and runs == [1, 2]
        assert (s.succeeded, s.lease_lost) == (1, 1), (s, names)
        assert names.count("reported") == 1, names
        job = client.get_job(h.id, include_attempts=True)
        assert job.attempts[0].error_code == "lease_expired"
