"""Floating-limit refresh handlers: the value a handler returns is the key's max in force
(observed as jobs running at once on the key); a raising handler keeps the old value; a key
without a handler is reported failed at once; a slow refresh keeps its own lease alive."""

from __future__ import annotations

import asyncio
import pathlib
import threading
import time
from typing import Any, Iterator

import pytest

from harness import OP_TOKEN, Sluiced, uid
from recorder import AsyncRecorder
from sluice_client import Client, JobContext, Limit, NotFoundError, RefreshRequest, Worker


class KeyGauge:
    """Jobs of one key running at once: current, peak, and the peak since the last reset."""

    def __init__(self) -> None:
        self.now = self.peak = 0
        self._lock = threading.Lock()

    def enter(self) -> None:
        with self._lock:
            self.now += 1
            self.peak = max(self.peak, self.now)

    def exit(self) -> None:
        with self._lock:
            self.now -= 1

    def reset(self) -> None:
        with self._lock:
            self.peak = self.now


@pytest.fixture
def workers() -> Iterator[list[Worker]]:
    ws: list[Worker] = []
    yield ws
    for w in ws:
        w.stop(5)


def wait_for(pred: Any, timeout: float = 15.0, what: str = "condition") -> Any:
    """Polls pred until it is truthy. NotFoundError counts as not yet: a floating key's
    record is created when its first job is leased, which a loaded machine may delay."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            v = pred()
        except NotFoundError:
            v = None
        if v:
            return v
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def gauge_handler(gauge: KeyGauge, seconds: float) -> Any:
    def handle(job: JobContext) -> None:
        gauge.enter()
        try:
            time.sleep(seconds)
        finally:
            gauge.exit()
    return handle


class RefreshWatch:
    """Records a Worker's events, and holds each job (its metadata names its key) until that
    key's refresh has failed. One refresh rides on each lease answer and a key whose jobs are
    all done gets none: tests of several keys keep a job of each running (and one waiting on
    it: enqueue two per key with max 1) and a spare slot that keeps the Worker leasing. A key's
    jobs end as soon as its refresh failed, so the server's retry of it (1 s later) finds none."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self._failed: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def _event(self, key: str) -> threading.Event:
        with self._lock:
            return self._failed.setdefault(key, threading.Event())

    def on_event(self, name: str, f: dict[str, Any]) -> None:
        self.events.append((name, f))
        if name == "refresh_failed":
            self._event(f["key"]).set()

    def hold(self, job: JobContext) -> None:
        self._event(job.metadata["key"]).wait(15)

    def names(self) -> list[str]:
        return [n for n, _ in self.events]

    def enqueue(self, client: Client, queue: str, keys: Any) -> None:
        """Two jobs per key, each limited by the key's floating limit (max 1)."""
        for key in [*keys, *keys]:
            client.enqueue(queue, b"", metadata={"key": key},
                           limits=[Limit.floating(key, 1, 60_000)])


def test_value_followed_one_then_five(server: Sluiced, client: Client,
                                      workers: list[Worker]) -> None:
    q, key, gauge = uid("q-"), uid("fk-"), KeyGauge()
    value = {"max": 1}
    calls: list[RefreshRequest] = []
    w = Worker(server.address, token=OP_TOKEN, concurrency=10, poll_wait_ms=200)
    workers.append(w)
    w.handler(q)(gauge_handler(gauge, 0.12))

    @w.refresh_handler(key)
    def refresh(r: RefreshRequest) -> int:
        calls.append(r)
        return value["max"]
    limit = [Limit.floating(key, 3, 250, {"team": "a"})]
    with w.running():
        first = client.enqueue(q, b"", limits=limit)
        wait_for(lambda: client.floating_limit(key).last_refreshed_ms > 0, what="1st refresh")
        assert client.floating_limit(key).current_max == 1
        first.await_result(timeout=10)
        gauge.reset()
        ids = [client.enqueue(q, b"", limits=limit).id for _ in range(8)]
        for i in ids:
            client.job(i).await_result(timeout=20)
        assert gauge.peak == 1, "more than one job ran while the refreshed max was 1"
        value["max"] = 5
        ids = [client.enqueue(q, b"", limits=limit).id for _ in range(25)]
        wait_for(lambda: client.floating_limit(key).current_max == 5, what="max 5")
        for i in ids:
            assert client.job(i).await_result(timeout=30).succeeded
    assert gauge.peak == 5, f"peak {gauge.peak}: the raised max was not followed"
    r0 = calls[0]
    assert (r0.key, dict(r0.metadata), r0.default_max, r0.last_refreshed_ms) == (
        key, {"team": "a"}, 3, 0)
    assert calls[-1].current_max in (1, 5) and calls[-1].last_refreshed_ms > 0


def test_a_raising_handler_keeps_the_old_value(server: Sluiced, client: Client,
                                               workers: list[Worker]) -> None:
    q, key, gauge = uid("q-"), uid("fk-"), KeyGauge()
    mode = {"raise": False}
    w = Worker(server.address, token=OP_TOKEN, concurrency=8, poll_wait_ms=200)
    workers.append(w)
    w.handler(q)(gauge_handler(gauge, 0.1))

    @w.refresh_handler()  # the catch-all handler, async this time
    async def refresh(r: RefreshRequest) -> int:
        if mode["raise"]:
            raise ConnectionError("quota service down")
        return 2
    limit = [Limit.floating(key, 6, 200)]
    with w.running():
        client.enqueue(q, b"", limits=limit).await_result(timeout=10)
        wait_for(lambda: client.floating_limit(key).current_max == 2, what="max 2")
        mode["raise"] = True
        gauge.reset()
        ids = [client.enqueue(q, b"", limits=limit).id for _ in range(16)]
        wait_for(lambda: client.floating_limit(key).consecutive_failures >= 1,
                 what="a failed refresh")
        for i in ids:
            client.job(i).await_result(timeout=20)
        state = client.floating_limit(key)
    assert state.current_max == 2 and state.consecutive_failures >= 1
    assert gauge.peak == 2


def test_a_key_without_a_handler_is_reported_failed_at_once(server: Sluiced, client: Client,
                                                            workers: list[Worker]) -> None:
    q, key = uid("q-"), uid("fk-")
    events: list[str] = []
    w = Worker(server.address, token=OP_TOKEN, poll_wait_ms=200,
               on_event=lambda name, f: events.append(name))
    workers.append(w)
    w.handler(q)(lambda job: time.sleep(0.3))
    with w.running():
        t0 = time.monotonic()
        client.enqueue(q, b"", limits=[Limit.floating(key, 2, 60_000)])
        wait_for(lambda: client.floating_limit(key).consecutive_failures >= 1,
                 what="the refresh failure")
        took = time.monotonic() - t0
        state = client.floating_limit(key)
    assert took < 5.0  # not held until its 30 s lease expires
    assert state.current_max == 2 and not state.refresh_in_flight
    assert "refresh_failed" in events


def test_a_handler_raising_an_odd_message_is_reported_failed(server: Sluiced, client: Client,
                                                              workers: list[Worker]) -> None:
    """A message with a lone surrogate (as os.fsdecode makes of undecodable bytes) and one
    over the server's cap: each refresh is reported failed at once, not left to its lease."""
    q, k1, k2 = uid("q-"), uid("fk-"), uid("fk-")
    watch = RefreshWatch()
    w = Worker(server.address, token=OP_TOKEN, poll_wait_ms=200, concurrency=3,
               on_event=watch.on_event)
    workers.append(w)
    w.handler(q)(watch.hold)

    @w.refresh_handler()
    def refresh(r: RefreshRequest) -> int:
        if r.key == k1:
            raise RuntimeError("file " + b"\xff.txt".decode("utf-8", "surrogateescape"))
        raise RuntimeError("\u754c" * 7000)  # 21,000 bytes of UTF-8
    with w.running():
        t0 = time.monotonic()
        watch.enqueue(client, q, (k1, k2))
        for key in (k1, k2):
            wait_for(lambda: client.floating_limit(key).consecutive_failures >= 1,
                     timeout=5, what=f"the refresh failure of {key}")
        took = time.monotonic() - t0
    assert took < 5.0  # not held until its 30 s lease expires
    assert watch.names().count("refresh_failed") == 2
    assert "refresh_report_error" not in watch.names()


def test_a_handler_returning_no_max_is_reported_invalid_refresh_value(
        server: Sluiced, client: Client, workers: list[Worker]) -> None:
    """-1, 2.5, 2**32, a string and a bool are no max: each refresh is reported failed with
    code invalid_refresh_value (the TypeScript Worker's code too), and the old max stays."""
    q = uid("q-")
    bad: dict[str, Any] = {uid("fk-"): v for v in (-1, 2.5, 2**32, "3", True)}
    watch = RefreshWatch()
    rec = AsyncRecorder()
    w = Worker(server.address, token=OP_TOKEN, poll_wait_ms=200, concurrency=len(bad) + 1,
               on_event=watch.on_event, interceptors=[rec])
    workers.append(w)
    w.handler(q)(watch.hold)

    @w.refresh_handler()
    def refresh(r: RefreshRequest) -> Any:
        return bad[r.key]
    with w.running():
        watch.enqueue(client, q, bad)
        for key in bad:
            wait_for(lambda: client.floating_limit(key).consecutive_failures >= 1,
                     timeout=10, what=f"the refresh failure of {key}")
        states = {key: client.floating_limit(key) for key in bad}
    for key, st in states.items():
        assert st.current_max == 1 and st.consecutive_failures == 1, key
    failed = {f["key"]: f["code"] for name, f in watch.events if name == "refresh_failed"}
    assert failed == {key: "invalid_refresh_value" for key in bad}
    assert rec.count("ReportRefreshOutcome") == len(bad)


def test_a_refresh_past_its_timeout_is_reported_failed(server: Sluiced, client: Client,
                                                        workers: list[Worker]) -> None:
    """refresh_timeout_ms: a sync handler that hangs, and an async one that never returns,
    are reported failed with code refresh_timeout (the async one cancelled), and the old max
    stays; a handler raising TimeoutError itself is its own failure, reported at once."""
    q, k_sync, k_async, k_own = uid("q-"), uid("fk-"), uid("fk-"), uid("fk-")
    watch = RefreshWatch()
    events = watch.events
    release = threading.Event()
    cancelled = threading.Event()
    rec = AsyncRecorder()
    w = Worker(server.address, token=OP_TOKEN, poll_wait_ms=200, refresh_timeout_ms=400,
               concurrency=4, on_event=watch.on_event, interceptors=[rec])
    workers.append(w)
    w.handler(q)(watch.hold)

    @w.refresh_handler(k_sync)
    def hang(r: RefreshRequest) -> int:
        release.wait(30)
        return 9

    @w.refresh_handler(k_async)
    async def forever(r: RefreshRequest) -> int:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return 9

    @w.refresh_handler(k_own)
    def own(r: RefreshRequest) -> int:
        raise TimeoutError("the quota API timed out")

    try:
        with w.running():
            t0 = time.monotonic()
            watch.enqueue(client, q, (k_sync, k_async, k_own))
            for key in (k_sync, k_async, k_own):
                wait_for(lambda: client.floating_limit(key).consecutive_failures >= 1,
                         timeout=10, what=f"the refresh failure of {key}")
            took = time.monotonic() - t0
            release.set()  # the hung sync handler returns 9 now: too late, ignored
            time.sleep(0.5)
            states = {key: client.floating_limit(key) for key in (k_sync, k_async, k_own)}
    finally:
        release.set()
    assert took < 8.0  # at the timeout, not at the 30 s refresh lease
    for key, st in states.items():
        assert st.current_max == 1 and st.consecutive_failures == 1, key
        assert not st.refresh_in_flight, key
    failed = {f["key"]: f["code"] for name, f in events if name == "refresh_failed"}
    assert failed == {k_sync: "refresh_timeout", k_async: "refresh_timeout",
                      k_own: "TimeoutError"}
    assert sorted(f["key"] for name, f in events if name == "refresh_timeout") == sorted(
        [k_sync, k_async])
    assert cancelled.is_set()
    assert not any(name in ("refresh_reported", "refresh_report_error") for name, _ in events)
    assert rec.count("ReportRefreshOutcome") == 3  # one per refresh; no late value sent


def test_a_lost_refresh_lease_cancels_its_async_handler_at_once(
        tmp_path: pathlib.Path, servers: list[Sluiced], workers: list[Worker]) -> None:
    """Heartbeats held until the 0.45 s refresh lease has expired: the next one answers
    LEASE_LOST, and the handler is cancelled then, not at refresh_timeout_ms (30 s)."""
    server = Sluiced(tmp_path / "data", extra_args=["--refresh-lease-ms", "450"]).start()
    servers.append(server)
    client = Client(server.address, token=OP_TOKEN, timeout=15)
    q, key, rec = uid("q-"), uid("fk-"), AsyncRecorder()
    events: list[str] = []
    started: list[float] = []
    cancelled: list[float] = []
    w = Worker(server.address, token=OP_TOKEN, poll_wait_ms=200, interceptors=[rec],
               refresh_timeout_ms=30_000, on_event=lambda name, f: events.append(name))
    workers.append(w)
    w.handler(q)(lambda job: None)

    @w.refresh_handler(key)
    async def forever(r: RefreshRequest) -> int:
        started.append(time.monotonic())
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.append(time.monotonic())
            raise
        return 1
    rec.held.add("HeartbeatRefresh")
    with w.running():
        client.enqueue(q, b"", limits=[Limit.floating(key, 1, 60_000)])
        wait_for(lambda: started, what="the refresh handler's start")
        time.sleep(1.0)  # the refresh lease (0.45 s) expires meanwhile
        rec.held.discard("HeartbeatRefresh")
        wait_for(lambda: cancelled, timeout=10, what="the handler's cancellation")
        took = cancelled[0] - started[0]
    client.close()
    assert took < 8.0, f"cancelled after {took:.1f} s: not at the lease loss"
    assert "refresh_lease_lost" in events
    assert "refresh_timeout" not in events and "refresh_reported" not in events


def test_the_pool_drops_a_call_given_up_before_a_thread_was_free() -> None:
    """A refresh that timed out while queued behind hung sync handlers never runs."""
    from sluice_client._pool import DaemonPool

    pool = DaemonPool(1, "test-pool")
    release = threading.Event()
    ran: list[str] = []

    async def main() -> None:
        first = pool.run(lambda: (release.wait(10), ran.append("first")))
        second = pool.run(lambda: ran.append("second"))
        second.cancel()  # given up while the only thread is busy
        release.set()
        await first
        third = pool.run(lambda: ran.append("third") or 3)
        assert await third == 3
    try:
        asyncio.run(main())
    finally:
        release.set()
        pool.shutdown()
    assert ran == ["first", "third"]


def test_refresh_timeout_ms_must_be_finite_and_not_negative(server: Sluiced) -> None:
    for bad in (-1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="refresh_timeout_ms"):
            Worker(server.address, token=OP_TOKEN, refresh_timeout_ms=bad)  # type: ignore[arg-type]


def test_a_slow_refresh_heartbeats_its_lease(tmp_path: pathlib.Path, servers: list[Sluiced],
                                            workers: list[Worker]) -> None:
    # Refresh leases of 0.45 s (RefreshTask.lease_ms): heartbeats every 0.15 s.
    server = Sluiced(tmp_path / "data", extra_args=["--refresh-lease-ms", "450"]).start()
    servers.append(server)
    client = Client(server.address, token=OP_TOKEN, timeout=15)
    q, key, rec = uid("q-"), uid("fk-"), AsyncRecorder()
    w = Worker(server.address, token=OP_TOKEN, poll_wait_ms=200, interceptors=[rec])
    workers.append(w)
    w.handler(q)(lambda job: None)

    @w.refresh_handler(key)
    def slow(r: RefreshRequest) -> int:
        time.sleep(1.0)
        return 4
    with w.running():
        client.enqueue(q, b"", limits=[Limit.floating(key, 1, 60_000)])
        wait_for(lambda: client.floating_limit(key).current_max == 4, what="max 4")
    client.close()
    assert rec.count("HeartbeatRefresh") >= 4
    assert rec.count("ReportRefreshOutcome") == 1
