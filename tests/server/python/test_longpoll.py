"""Long-poll LeaseTasks: woken by an enqueue within milliseconds; empty after wait_ms.

Wake-up latency is measured from the moment the Enqueue RPC returns (the job is acknowledged)
to the moment the parked LeaseTasks RPC returns, both seen by this client on loopback. It is
noisy on a 2-core machine, so one round is 20 trials and the check is on the round:
median <= 10 ms and every trial <= 50 ms. A round that misses is retried, up to 3 rounds in
all; the test fails only when no round passes (all rounds are shown then).

There is no observable "parked" state of a long-poll, so each trial sleeps 50 ms after starting
the LeaseTasks before enqueueing (and asserts the call is still in flight): that is the one
sleep that cannot be replaced by polling.
"""
from __future__ import annotations

import statistics
import time
from typing import Any, Iterator

import pytest

from sluice_testlib import OP_TOKEN, Api, Background, enqueue, job, lease, now_ms, pb, uid
from sluiced_harness import Sluiced, pb_grpc

TRIALS, ROUNDS = 20, 3
MEDIAN_MAX_MS, EACH_MAX_MS = 10.0, 50.0
PARK_S = 0.05


@pytest.fixture(scope="module")
def two_clients(server: Sluiced) -> Iterator[tuple[Api, ...]]:
    """A lease client and an enqueue client on separate channels, both warmed up."""
    chans = [server.channel(), server.channel()]
    apis = tuple(Api(pb_grpc.SluiceStub(ch), OP_TOKEN) for ch in chans)
    for api in apis:
        api.GetNodeInfo(pb.GetNodeInfoRequest())
    yield apis
    for ch in chans:
        ch.close()


def one_trial(leaser: Api, producer: Api, tenant: str) -> float:
    q = uid("lp-")
    bg = Background(lambda: lease(leaser, q, tenant=tenant, max_tasks=1, wait_ms=5000))
    time.sleep(PARK_S)
    assert bg.alive(), "the long-poll returned before anything was enqueued"
    jid = enqueue(producer, job(q), tenant).id
    acked = time.perf_counter()
    resp: Any = bg.get(timeout=10)
    assert [t.job_id for t in resp.tasks] == [jid]
    assert bg.returned_at is not None
    return (bg.returned_at - acked) * 1000.0


def test_longpoll_wakes_within_10ms_of_enqueue_ack(two_clients: tuple[Api, Api]) -> None:
    leaser, producer = two_clients
    tenant = uid("lp-")
    rounds = []
    for _ in range(ROUNDS):
        lat = [one_trial(leaser, producer, tenant) for _ in range(TRIALS)]
        med, worst = statistics.median(lat), max(lat)
        rounds.append((round(med, 2), round(worst, 2), [round(x, 1) for x in lat]))
        if med <= MEDIAN_MAX_MS and worst <= EACH_MAX_MS:
            return
    pytest.fail(f"no round met median<={MEDIAN_MAX_MS}ms and max<={EACH_MAX_MS}ms; "
                f"(median, max, trials) per round: {rounds}")


def test_longpoll_empty_queue_returns_after_wait(op: Api) -> None:
    q, tenant = uid("lp-empty-"), uid("lp-")
    start = time.perf_counter()
    resp = lease(op, q, tenant=tenant, wait_ms=300)
    elapsed = time.perf_counter() - start
    assert len(resp.tasks) == 0 and len(resp.refreshes) == 0
    assert 0.29 <= elapsed <= 1.0, f"returned after {elapsed * 1000:.0f} ms, expected ~300"


def test_longpoll_returns_when_scheduled_job_becomes_due(op: Api) -> None:
    q, tenant = uid("lp-sched-"), uid("lp-")
    jid = enqueue(op, job(q, start_at_ms=now_ms() + 400), tenant).id
    start = time.perf_counter()
    resp = lease(op, q, tenant=tenant, wait_ms=5000)
    elapsed = time.perf_counter() - start
    assert [t.job_id for t in resp.tasks] == [jid]
    assert 0.3 <= elapsed <= 2.0, elapsed


def test_one_enqueue_wakes_one_of_two_waiters(two_clients: tuple[Api, Api]) -> None:
    leaser, producer = two_clients
    q, tenant = uid("lp-two-"), uid("lp-")
    def poll(worker: str) -> Background:
        return Background(lambda: lease(leaser, q, tenant=tenant, worker=worker, max_tasks=1,
                                         wait_ms=5000))
    polls = [poll("w1"), poll("w2")]
    time.sleep(PARK_S)
    assert all(p.alive() for p in polls)
    first = enqueue(producer, job(q), tenant).id
    # Exactly one returns with the job; the other keeps waiting.
    deadline = time.monotonic() + 5
    while all(p.alive() for p in polls) and time.monotonic() < deadline:
        time.sleep(0.005)
    done = [p for p in polls if not p.alive()]
    assert len(done) == 1
    assert [t.job_id for t in done[0].get().tasks] == [first]
    other = next(p for p in polls if p is not done[0])
    # A negative check needs a wait: the other long-poll is still parked 100 ms later.
    time.sleep(0.1)
    assert other.alive(), "an enqueue of one job ended two long-polls"
    second = enqueue(producer, job(q), tenant).id
    assert [t.job_id for t in other.get(timeout=10).tasks] == [second]
