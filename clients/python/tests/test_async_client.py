"""AsyncClient used natively from asyncio (pytest-asyncio): concurrent calls on one channel,
handles, async iteration, a long-poll that wakes on enqueue, and errors."""

from __future__ import annotations

import asyncio
import time

import pytest

from harness import uid
from sluice_client import (AsyncClient, InvalidArgumentError, JobSpec, JobStatus, Limit,
                           NotFoundError, Outcome, Report)


async def test_concurrent_calls_share_one_channel(aclient: AsyncClient) -> None:
    q = uid("q-")
    handles = await asyncio.gather(*(aclient.enqueue(q, json={"i": i}) for i in range(50)))
    assert len({h.id for h in handles}) == 50
    jobs = await asyncio.gather(*(h.get() for h in handles))
    assert sorted(j.json()["i"] for j in jobs) == list(range(50))


async def test_long_poll_wakes_on_enqueue(aclient: AsyncClient) -> None:
    q = uid("q-")
    poll = asyncio.create_task(aclient.lease(q, "w", max_tasks=1, wait_ms=10_000))
    await asyncio.sleep(0.2)
    assert not poll.done()
    t0 = time.monotonic()
    h = await aclient.enqueue(q, b"wake")
    resp = await poll
    assert time.monotonic() - t0 < 1.0
    assert [t.job_id for t in resp.tasks] == [h.id]
    await aclient.complete(resp.tasks[0], b"ok")
    assert (await h.await_result(timeout=5)).result == b"ok"


async def test_await_result_of_many_jobs_at_once(aclient: AsyncClient) -> None:
    q = uid("q-")
    handles = await aclient.enqueue_batch([JobSpec(q) for _ in range(5)])
    waits = [asyncio.create_task(h.await_result(timeout=10)) for h in handles]
    tasks = (await aclient.lease(q, "w", max_tasks=5, wait_ms=1000)).tasks
    for t in tasks:
        await aclient.fail(t, "nope", no_retry=True)
    results = await asyncio.gather(*waits)
    assert {r.status for r in results} == {JobStatus.FAILED}


async def test_async_iteration_and_errors(aclient: AsyncClient) -> None:
    q, key = uid("q-"), uid("fk-")
    await aclient.enqueue(q, b"", limits=[Limit.floating(key, 2, 60_000)])
    await aclient.lease(q, "w", max_tasks=1, wait_ms=500)
    keys = [f.key async for f in aclient.iter_floating_limits(page_size=2)]
    assert key in keys
    with pytest.raises(NotFoundError):
        await aclient.get_job(uid("missing-"))


async def test_lease_stream_pipelines_and_reports(aclient: AsyncClient) -> None:
    q = uid("q-")
    hs = await aclient.enqueue_batch([JobSpec(q, payload=bytes([i])) for i in range(4)])
    s = aclient.lease_stream()
    await s.send(q, "w1", max_tasks=1)
    await s.send(q, "w1", max_tasks=3)
    assert s.in_flight == 2
    first, second = await s.receive(), await s.receive()
    assert (len(first.tasks), len(second.tasks)) == (1, 3)
    tasks = first.tasks + second.tasks
    r = await s.lease(q, "w1", max_tasks=1, reports=[Report(t, Outcome.success()) for t in tasks])
    assert [st.code for st in r.report_statuses] == [0, 0, 0, 0] and r.tasks == []
    await s.close()
    for h in hs:
        assert (await aclient.get_result(h.id)).succeeded
    bad = aclient.lease_stream()
    await bad.send(q, "", max_tasks=1)
    with pytest.raises(InvalidArgumentError):
        await bad.receive()
    assert bad.ended
