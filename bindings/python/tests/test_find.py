"""Finding jobs: list_jobs (filters, views, cursors over many pages), iter_jobs, count_jobs and
verify_indexes, against a real store."""

from __future__ import annotations

import time
from typing import Any, Callable

import pytest

import sluice
from sluice import JobStatus, JobView

TENANT = "find"
N = 30


def status_of(i: int) -> JobStatus:
    if i == 0:
        return JobStatus.SUCCEEDED
    if i == 2:
        return JobStatus.RUNNING
    if i >= 25:
        return JobStatus.SCHEDULED
    return JobStatus.WAITING


def ids(pred: Callable[[int], bool]) -> list[str]:
    return [f"job-{i:02d}" for i in range(N) if pred(i)]


@pytest.fixture
def jobs(engine: sluice.Engine) -> sluice.Engine:
    """job-NN in tenant "find": even NN on queue "a", odd on "b"; color=red when NN % 3 == 0
    else blue; payload b"pNN"; NN >= 25 scheduled an hour ahead; job-00 succeeded, job-02
    running. Created in three bursts a few ms apart, for exact creation-time ranges."""
    for i in range(N):
        if i in (10, 20):
            time.sleep(0.005)
        engine.enqueue(
            "a" if i % 2 == 0 else "b", f"p{i:02d}".encode(), id=f"job-{i:02d}", tenant=TENANT,
            metadata={"color": "red" if i % 3 == 0 else "blue"},
            start_at_ms=int(time.time() * 1000) + 3_600_000 if i >= 25 else 0,
        )
    engine.enqueue("a", id="job-00", tenant="other")
    tasks = engine.lease("a", "w", max_tasks=2, tenant=TENANT)
    assert [t.job_id for t in tasks] == ["job-00", "job-02"]
    engine.complete(tasks[0])
    return engine


def list_all(engine: sluice.Engine, limit: int = 4, **filters: Any) -> tuple[list[str], int]:
    """Pages through a listing; returns the ids in order and the number of pages."""
    out: list[str] = []
    cursor, pages = "", 0
    while True:
        page = engine.list_jobs(tenant=TENANT, limit=limit, cursor=cursor, **filters)
        assert len(page.jobs) <= limit
        if page.jobs:
            assert page.keys_visited > 0
        for job in page.jobs:
            assert job.tenant == TENANT
            assert job.status == status_of(int(job.id[4:])), job.id
            out.append(job.id)
        pages += 1
        assert pages < 100
        cursor = page.next_cursor
        if not cursor:
            return out, pages


def expect(engine: sluice.Engine, want: list[str], **filters: Any) -> None:
    oldest, pages = list_all(engine, **filters)
    assert oldest == want
    if len(want) > 8:
        assert pages >= 3
    newest, _ = list_all(engine, newest_first=True, **filters)
    assert newest == want[::-1]


def test_filters_in_both_orders_over_several_pages(jobs: sluice.Engine) -> None:
    expect(jobs, ids(lambda i: True))
    expect(jobs, ids(lambda i: i % 2 == 0), queue="a")
    expect(jobs, ids(lambda i: status_of(i) == JobStatus.WAITING), statuses=[JobStatus.WAITING])
    expect(jobs, ids(lambda i: i == 0 or i >= 25), statuses=["scheduled", "succeeded"])
    expect(jobs, ids(lambda i: i % 3 == 0), metadata={"color": "red"})
    expect(jobs, ids(lambda i: i % 3 == 0 and i % 2 == 1 and i < 25),
           metadata=[("color", "red")], queue="b", statuses=["waiting"])
    expect(jobs, [], metadata=[("color", "red"), ("color", "blue")])
    expect(jobs, ids(lambda i: 10 <= i < 20), id_prefix="job-1")
    expect(jobs, ["job-07"], id="job-07")
    start = jobs.get_job("job-10", tenant=TENANT).created_ms
    end = jobs.get_job("job-20", tenant=TENANT).created_ms
    expect(jobs, ids(lambda i: 10 <= i < 20), created_from_ms=start, created_to_ms=end)
    other = jobs.list_jobs(tenant="other")
    assert [(j.tenant, j.id) for j in other.jobs] == [("other", "job-00")]
    assert other.next_cursor == ""
    assert jobs.list_jobs().jobs == []  # the default tenant has none


def test_views(jobs: sluice.Engine) -> None:
    def one(view: JobView | str) -> sluice.Job:
        [job] = jobs.list_jobs(tenant=TENANT, id="job-07", view=view).jobs
        return job

    index = one(JobView.INDEX)
    assert (index.id, index.queue, index.status) == ("job-07", "b", JobStatus.WAITING)
    assert index.created_ms > 0 and index.payload == b""
    summary = one("summary")
    assert summary.metadata == {"color": "blue"} and summary.payload == b""
    assert summary.attempts == ()
    full = one("full")
    assert full.payload == b"p07" and full.metadata == {"color": "blue"}


def test_a_cursor_only_continues_its_own_listing(jobs: sluice.Engine) -> None:
    first = jobs.list_jobs(tenant=TENANT, queue="a", limit=2)
    cursor = first.next_cursor
    assert cursor
    with pytest.raises(sluice.InvalidArgumentError):
        jobs.list_jobs(tenant=TENANT, queue="a", limit=2, cursor=cursor, newest_first=True)
    with pytest.raises(sluice.InvalidArgumentError):
        jobs.list_jobs(tenant=TENANT, queue="b", limit=2, cursor=cursor)
    with pytest.raises(sluice.InvalidArgumentError):
        jobs.list_jobs(tenant=TENANT, cursor="not a cursor")
    second = jobs.list_jobs(tenant=TENANT, queue="a", limit=2, cursor=cursor)
    assert [j.id for j in second.jobs] == ["job-04", "job-06"]


def test_bad_arguments(jobs: sluice.Engine) -> None:
    bad_calls: list[Callable[[], object]] = [
        lambda: jobs.list_jobs(tenant=TENANT, limit=0),
        lambda: jobs.list_jobs(tenant=TENANT, limit=100_000),
        lambda: jobs.list_jobs(limit=-1),
        lambda: jobs.list_jobs(statuses=["done"]),
        lambda: jobs.list_jobs(statuses=[6]),
        lambda: jobs.list_jobs(view="all"),
        lambda: jobs.list_jobs(view=3),  # type: ignore[arg-type]
    ]
    for bad in bad_calls:
        with pytest.raises(sluice.InvalidArgumentError):
            bad()
    with pytest.raises(TypeError):
        jobs.list_jobs(metadata=[("only-a-key",)])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        jobs.list_jobs(queue=7)  # type: ignore[arg-type]


def test_iter_jobs_walks_every_page(jobs: sluice.Engine) -> None:
    assert [j.id for j in jobs.iter_jobs(tenant=TENANT, queue="b", page_size=3)] == ids(
        lambda i: i % 2 == 1
    )
    newest = jobs.iter_jobs(tenant=TENANT, newest_first=True, view="index",
                            metadata=iter([("color", "red")]), page_size=2)
    assert [j.id for j in newest] == ids(lambda i: i % 3 == 0)[::-1]
    assert list(jobs.iter_jobs(tenant="nobody")) == []


def test_count_jobs_and_verify_indexes(jobs: sluice.Engine) -> None:
    [a] = jobs.count_jobs(TENANT, "a")
    assert a.queue == "a"
    assert a.counts == {
        JobStatus.SCHEDULED: 2, JobStatus.WAITING: 11, JobStatus.RUNNING: 1,
        JobStatus.SUCCEEDED: 1, JobStatus.FAILED: 0, JobStatus.CANCELLED: 0,
    }
    assert a.total == 15
    jobs.cancel("job-01", tenant=TENANT)
    by_queue = {c.queue: c for c in jobs.count_jobs(TENANT)}
    assert set(by_queue) == {"a", "b"}
    b = by_queue["b"].counts
    assert (b[JobStatus.SCHEDULED], b[JobStatus.WAITING], b[JobStatus.CANCELLED]) == (3, 11, 1)
    [other] = jobs.count_jobs("other")
    assert other.queue == "a" and other.counts[JobStatus.WAITING] == 1 and other.total == 1
    assert jobs.count_jobs("nobody") == []
    jobs.verify_indexes()
    jobs.close()
    with pytest.raises(sluice.ClosedError):
        jobs.count_jobs(TENANT)
    with pytest.raises(sluice.ClosedError):
        jobs.list_jobs(tenant=TENANT)
