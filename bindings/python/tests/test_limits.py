"""Concurrency limits through the binding: fixed keys, floating keys and refresh tasks."""

from __future__ import annotations

import pytest

import sluice
from sluice import JobStatus, Limit, LimitKind, RetryPolicy


def test_fixed_limit_parks_and_grants(engine: sluice.Engine) -> None:
    ids = [engine.enqueue("q", b"%d" % i, limits=[Limit.fixed("db", 1)],
                          retry=RetryPolicy.none()).id for i in range(3)]
    [t1] = engine.lease("q", "w", max_tasks=10)
    assert engine.concurrency_key("db") == sluice.KeyState(holders=1, waiters=2, max=1)
    assert engine.lease("q", "w", max_tasks=10) == []
    engine.complete(t1)
    [t2] = engine.lease("q", "w", max_tasks=10)
    engine.fail(t2, "nope")
    [t3] = engine.lease("q", "w", max_tasks=10)
    engine.complete(t3)
    assert [t.job_id for t in (t1, t2, t3)] == ids
    assert engine.concurrency_key("db") == sluice.KeyState(0, 0, 0)  # idle keys return to zero
    job = engine.get_job(ids[0])
    assert job.limits == (Limit(LimitKind.FIXED, "db", 1),)
    assert engine.get_job(ids[1]).status is JobStatus.FAILED


def test_floating_limit_refresh_round_trip(engine: sluice.Engine) -> None:
    for _ in range(5):
        engine.enqueue("api", limits=[Limit.floating("quota", 1, 60_000, {"region": "eu"})])
    resp = engine.lease_with_refreshes("api", "w", max_tasks=10)
    assert len(resp.tasks) == 1
    [refresh] = resp.refreshes
    assert (refresh.key, refresh.current_max, refresh.default_max) == ("quota", 1, 1)
    assert refresh.metadata == {"region": "eu"}
    assert engine.concurrency_key("quota", kind=LimitKind.FLOATING).waiters == 4
    assert engine.heartbeat_refresh(refresh) >= refresh.lease_expires_ms
    assert engine.lease_with_refreshes("api", "w2").refreshes == []  # one in flight at a time
    engine.complete_refresh(refresh, 5)
    state = engine.floating_limit("quota")
    assert (state.current_max, state.default_max, state.holders, state.waiters) == (5, 1, 5, 0)
    assert state.refresh_interval_ms == 60_000 and state.metadata == {"region": "eu"}
    assert not state.refresh_in_flight and state.consecutive_failures == 0
    rest = engine.lease("api", "w", max_tasks=10)
    assert len(rest) == 4
    with pytest.raises(sluice.LeaseLostError):
        engine.complete_refresh(refresh, 9)  # the token was used
    for t in resp.tasks + rest:
        engine.complete(t)
    assert engine.floating_limit("quota").holders == 0


def test_floating_refresh_failure_and_override(engine: sluice.Engine) -> None:
    for _ in range(3):
        engine.enqueue("api", limits=[Limit.floating("quota", 2, 60_000)])
    resp = engine.lease_with_refreshes("api", "w", max_tasks=10)
    assert len(resp.tasks) == 2
    engine.fail_refresh(resp.refreshes[0], "upstream_down", "503")
    state = engine.floating_limit("quota")
    assert state.current_max == 2 and state.consecutive_failures == 1
    engine.set_floating_limit("quota", 3)
    assert len(engine.lease("api", "w", max_tasks=10)) == 1  # the raise granted the waiter
    assert engine.floating_limit("quota").current_max == 3
