"""Threads: engine calls release the GIL, so Python threads lease, run and report in parallel,
and a thread blocked in a long-poll never stalls the others."""

from __future__ import annotations

import threading
import time

import sluice
from sluice import JobSpec

THREADS = 8


def test_blocked_lease_does_not_block_other_threads(engine: sluice.Engine) -> None:
    started = threading.Event()
    waited: list[float] = []

    def idle_worker() -> None:
        started.set()
        t0 = time.monotonic()
        assert engine.lease("empty", "idle", wait_ms=1500) == []
        waited.append(time.monotonic() - t0)

    t = threading.Thread(target=idle_worker)
    t.start()
    started.wait()
    time.sleep(0.05)  # let it enter the long-poll
    t0 = time.monotonic()
    for i in range(200):
        engine.enqueue("busy", b"%d" % i)
        [task] = engine.lease("busy", "main")
        engine.complete(task)
    busy = time.monotonic() - t0
    assert t.is_alive(), "the long-poll should still be waiting"
    assert busy < 1.0, f"200 round trips took {busy:.2f}s while another thread long-polled"
    t.join()
    assert waited and waited[0] >= 1.4


def test_long_polls_wait_in_parallel(engine: sluice.Engine) -> None:
    barrier = threading.Barrier(THREADS)
    durations: list[float] = []
    lock = threading.Lock()

    def poll(i: int) -> None:
        barrier.wait()
        t0 = time.monotonic()
        assert engine.lease(f"empty-{i}", f"w{i}", wait_ms=400) == []
        with lock:
            durations.append(time.monotonic() - t0)

    threads = [threading.Thread(target=poll, args=(i,)) for i in range(THREADS)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - t0
    assert len(durations) == THREADS and min(durations) >= 0.39
    # Serialized by the GIL this would take 8 x 0.4 s = 3.2 s.
    assert wall < 1.5, f"8 parallel 400 ms long-polls took {wall:.2f}s"


def test_enqueue_wakes_a_long_poll(engine: sluice.Engine) -> None:
    got: list[tuple[float, list[sluice.Task]]] = []

    def wait() -> None:
        t0 = time.monotonic()
        tasks = engine.lease("q", "w", wait_ms=5000)
        got.append((time.monotonic() - t0, tasks))

    t = threading.Thread(target=wait)
    t.start()
    time.sleep(0.2)
    r = engine.enqueue("q", b"wake")
    t.join(5)
    [(elapsed, tasks)] = got
    assert elapsed < 2.0 and [x.job_id for x in tasks] == [r.id]


def test_eight_workers_drain_a_queue(engine: sluice.Engine) -> None:
    jobs = 4000
    for start in range(0, jobs, 1000):
        engine.enqueue_batch([JobSpec("work", b"%d" % i) for i in range(start, start + 1000)])
    done: list[list[str]] = [[] for _ in range(THREADS)]
    spans: list[tuple[float, float]] = [(0.0, 0.0)] * THREADS
    barrier = threading.Barrier(THREADS)
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            barrier.wait()
            first = last = 0.0
            while True:
                tasks = engine.lease("work", f"w{i}", max_tasks=16, wait_ms=200)
                if not tasks:
                    break
                for task in tasks:
                    engine.heartbeat(task)
                    engine.complete(task, task.payload)
                    done[i].append(task.job_id)
                last = time.monotonic()
                first = first or last
            spans[i] = (first, last)
        except BaseException as e:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    all_done = [j for d in done for j in d]
    assert len(all_done) == jobs and len(set(all_done)) == jobs  # each job exactly once
    s = engine.stats()
    assert (s.succeeded, s.running, s.pending_tasks) == (jobs, 0, 0)
    # Every thread worked, and their working periods overlapped.
    assert all(done), [len(d) for d in done]
    assert max(a for a, _ in spans) < min(b for _, b in spans)
    sample = engine.get_result(all_done[123])
    assert sample.result == engine.get_job(all_done[123]).payload


def test_concurrent_close_drains(store) -> None:  # type: ignore[no-untyped-def]
    engine = sluice.Engine(store, durability="async")
    stop = threading.Event()
    outcomes: list[str] = []
    lock = threading.Lock()

    def churn(i: int) -> None:
        try:
            while not stop.is_set():
                engine.enqueue("c", b"x")
                for task in engine.lease("c", f"w{i}", max_tasks=4, wait_ms=50):
                    engine.complete(task)
        except sluice.ClosedError:
            with lock:
                outcomes.append("closed")
        except sluice.LeaseLostError:  # a completion racing the close is fine too
            with lock:
                outcomes.append("closed")

    threads = [threading.Thread(target=churn, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    engine.close()
    stop.set()
    for t in threads:
        t.join(10)
    assert not any(t.is_alive() for t in threads)
    assert outcomes.count("closed") == THREADS
