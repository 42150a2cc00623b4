"""Finding jobs with both clients against a real sluiced: list_jobs / iter_jobs (filters,
views, cursor paging), count_jobs, query (typed rows, bounds, cancellation) and tenants."""

from __future__ import annotations

import asyncio
import threading
import time
import urllib.request
from typing import Any, Iterator

import pytest

from clients import Api, make_api
from harness import OP_TOKEN, TOKEN_A, Sluiced, uid
from sluice_client import (
    AsyncClient,
    CancellationToken,
    CancelledError,
    Client,
    DeadlineExceededError,
    InvalidArgumentError,
    JobStatus,
    JobView,
    PermissionDeniedError,
    QueueCounts,
    SluiceTimeoutError,
    TooLargeError,
)

ENDLESS = ("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
           "SELECT count(*) FROM c")


def rows_sql(n: int, blob: int = 1) -> str:
    return (f"WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {n}) "
            f"SELECT x, randomblob({blob}) FROM c")


def queries(server: Sluiced, outcome: str) -> float:
    """sluice_queries_total{outcome=...} from the server's /metrics."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"http://{server.http_address}/metrics", timeout=5) as r:
        body = r.read().decode()
    for line in body.splitlines():
        if line.startswith(f'sluice_queries_total{{outcome="{outcome}"}} '):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no sluice_queries_total{{outcome={outcome!r}}} in /metrics")


def wait_for(pred: Any, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)


@pytest.fixture(params=["sync", "async"], scope="module")
def api(request: pytest.FixtureRequest, server: Sluiced) -> Iterator[Api]:
    a = make_api(request.param, server.address, OP_TOKEN, timeout=15)
    yield a
    a.close()


@pytest.fixture(scope="module")
def bounded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sluiced]:
    """A server with a long query budget and small result caps."""
    s = Sluiced(tmp_path_factory.mktemp("bounded") / "data", extra_args=[
        "--query-timeout-ms", "60000", "--query-max-rows", "500",
        "--query-max-result-bytes", "100000"]).start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def fleet(server: Sluiced) -> str:
    """A tenant with jobs in several states over two queues."""
    tenant = uid("find-")
    with Client(server.address, token=OP_TOKEN, tenant=tenant) as c:
        for i in range(5):
            c.enqueue("mail", f"body{i}".encode(), id=f"mail{i}", priority=i,
                      metadata={"parity": "odd" if i % 2 else "even", "n": str(i)})
            time.sleep(0.003)
        c.enqueue("sms", id="sms0")
        c.enqueue("sms", id="sms1", start_at_ms=int(time.time() * 1000) + 3_600_000)
        t0, t1 = c.lease("mail", "w", max_tasks=2).tasks
        c.fail(t1, "boom", no_retry=True)
        c.cancel("mail2")
        assert (t0.job_id, t1.job_id) == ("mail0", "mail1")
    return tenant


def test_list_jobs_filters(api: Api, fleet: str) -> None:
    tenant = fleet

    def ids(**kw: Any) -> list[str]:
        return [j.id for j in api.c.iter_jobs(tenant=tenant, **kw)]
    every = ["mail0", "mail1", "mail2", "mail3", "mail4", "sms0", "sms1"]
    assert ids() == every
    assert ids(newest_first=True) == every[::-1]
    assert ids(queue="sms") == ["sms0", "sms1"]
    assert ids(statuses=[JobStatus.RUNNING]) == ["mail0"]
    assert ids(statuses=[JobStatus.FAILED, JobStatus.CANCELLED]) == ["mail1", "mail2"]
    assert ids(statuses=(s for s in [JobStatus.SCHEDULED])) == ["sms1"]  # any iterable
    assert ids(queue="mail", statuses=[JobStatus.WAITING]) == ["mail3", "mail4"]
    assert ids(metadata={"parity": "odd"}) == ["mail1", "mail3"]
    assert ids(metadata=[("parity", "even"), ("n", "4")]) == ["mail4"]
    assert ids(id="sms1") == ["sms1"]
    assert ids(id_prefix="mail") == every[:5]
    jobs = list(api.c.iter_jobs("mail", tenant=tenant))
    t = jobs[2].created_ms
    assert ids(queue="mail", created_from_ms=t) == [j.id for j in jobs if j.created_ms >= t]
    assert ids(queue="mail", created_to_ms=t) == [j.id for j in jobs if j.created_ms < t]


def test_list_jobs_views_and_pages(api: Api, fleet: str) -> None:
    tenant = fleet
    [s] = api.c.list_jobs(id="mail3", tenant=tenant).jobs
    assert (s.status, s.priority, dict(s.metadata), s.payload) == \
        (JobStatus.WAITING, 3, {"parity": "odd", "n": "3"}, b"")
    [f] = api.c.list_jobs(id="mail3", view=JobView.FULL, tenant=tenant).jobs
    assert f.payload == b"body3"
    [i] = api.c.list_jobs(id="mail3", view=JobView.INDEX, tenant=tenant).jobs
    assert (i.id, i.queue, i.status, i.created_ms) == ("mail3", "mail", JobStatus.WAITING,
                                                       s.created_ms)
    assert dict(i.metadata) == {}
    # Pages by cursor.
    first = api.c.list_jobs(limit=3, tenant=tenant)
    assert [j.id for j in first.jobs] == ["mail0", "mail1", "mail2"]
    assert first.next_cursor and first.keys_visited > 0
    rest = []
    cursor = first.next_cursor
    while cursor:
        page = api.c.list_jobs(limit=3, cursor=cursor, tenant=tenant)
        rest += [j.id for j in page.jobs]
        cursor = page.next_cursor
    assert rest == ["mail3", "mail4", "sms0", "sms1"]
    assert [j.id for j in api.c.iter_jobs(page_size=2, newest_first=True, tenant=tenant)] == \
        ["sms1", "sms0", "mail4", "mail3", "mail2", "mail1", "mail0"]
    with pytest.raises(InvalidArgumentError):
        api.c.list_jobs(limit=3, cursor=first.next_cursor, newest_first=True, tenant=tenant)
    with pytest.raises(InvalidArgumentError):
        api.c.list_jobs(cursor="???", tenant=tenant)


def test_count_jobs(api: Api, fleet: str) -> None:
    tenant = fleet
    every = api.c.count_jobs(tenant=tenant)
    assert every == [QueueCounts("mail", 0, 2, 1, 0, 1, 1), QueueCounts("sms", 1, 1, 0, 0, 0, 0)]
    assert api.c.count_jobs("sms", tenant=tenant) == [every[1]]


def test_query_rows_are_typed_tuples(api: Api, fleet: str) -> None:
    tenant = fleet
    r = api.c.query("SELECT 7 AS i, 0.5 AS r, 'häh' AS t, x'00ff' AS b, NULL AS n, "
                    "9223372036854775807 AS big")
    assert r.columns == ("i", "r", "t", "b", "n", "big")
    assert r.rows == ((7, 0.5, "häh", b"\x00\xff", None, 2**63 - 1),)
    assert [type(v) for v in r.rows[0]] == [int, float, str, bytes, type(None), int]
    r = api.c.query("SELECT id FROM jobs WHERE queue = 'sms' ORDER BY id", tenant=tenant)
    assert r.rows == (("sms0",), ("sms1",))
    with pytest.raises(InvalidArgumentError):
        api.c.query("SELEKT 1")
    with pytest.raises(InvalidArgumentError):
        api.c.query("DELETE FROM jobs", tenant=tenant)


def test_query_bounds(bounded: Sluiced) -> None:
    for kind in ("sync", "async"):
        a = make_api(kind, bounded.address, OP_TOKEN, timeout=15)
        try:
            t0 = time.monotonic()
            with pytest.raises(SluiceTimeoutError) as e:
                a.c.query(ENDLESS, timeout_ms=300)
            assert not isinstance(e.value, DeadlineExceededError), "the server's timeout"
            assert e.value.status_name == "timeout" and e.value.attempts == 1
            assert 0.25 < time.monotonic() - t0 < 3
            with pytest.raises(TooLargeError):
                a.c.query(rows_sql(11), max_rows=10)
            with pytest.raises(TooLargeError):
                a.c.query(rows_sql(501))
            with pytest.raises(TooLargeError):
                a.c.query(rows_sql(200, 1000))
            assert len(a.c.query(rows_sql(500)).rows) == 500
            limits = a.c.node_info().limits
            assert (limits.query_timeout_ms, limits.query_max_rows,
                    limits.query_max_result_bytes) == (60000, 500, 100000)
        finally:
            a.close()


def test_cancelled_query_stops_on_the_server(bounded: Sluiced) -> None:
    for kind in ("sync", "async"):
        before = queries(bounded, "cancelled")
        a = make_api(kind, bounded.address, OP_TOKEN, timeout=15)
        token = CancellationToken()
        threading.Timer(0.4, token.set, args=("operator closed the page",)).start()
        t0 = time.monotonic()
        try:
            with pytest.raises(CancelledError) as e:
                a.c.query(ENDLESS, timeout_ms=60_000, cancellation=token)
            assert 0.35 < time.monotonic() - t0 < 1.5
            assert "operator closed the page" in str(e.value)
            wait_for(lambda: queries(bounded, "cancelled") == before + 1, 3,
                     "the server counting the cancelled query")
            assert time.monotonic() - t0 < 2.5
            # An already cancelled token sends nothing.
            with pytest.raises(CancelledError):
                a.c.query("SELECT 1", cancellation=token)
            # And a token that is never set changes nothing.
            assert a.c.query("SELECT 1", cancellation=CancellationToken()).rows == ((1,),)
        finally:
            a.close()


async def test_cancelling_the_task_cancels_the_query(bounded: Sluiced) -> None:
    before = queries(bounded, "cancelled")
    async with AsyncClient(bounded.address, token=OP_TOKEN) as c:
        task = asyncio.create_task(c.query(ENDLESS, timeout_ms=60_000))
        await asyncio.sleep(0.4)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        end = time.monotonic() + 3
        while queries(bounded, "cancelled") < before + 1 and time.monotonic() < end:
            await asyncio.sleep(0.02)
        assert queries(bounded, "cancelled") == before + 1
        assert (await c.query("SELECT 'still serving'")).rows == (("still serving",),)


def test_a_bound_token_finds_only_its_tenants_jobs(api: Api, server: Sluiced) -> None:
    q = uid("iso-")
    for _ in range(2):
        api.c.enqueue(q, metadata={"who": "default"})
    bound = make_api(api.kind, server.address, TOKEN_A)
    try:
        mine = bound.c.enqueue(q, metadata={"who": "a"}).id
        assert [j.id for j in bound.c.iter_jobs(q)] == [mine]
        assert list(bound.c.iter_jobs(metadata={"who": "default"})) == []
        assert [c.waiting for c in bound.c.count_jobs(q)] == [1]
        assert [c.waiting for c in api.c.count_jobs(q)] == [2]
        assert bound.c.query(f"SELECT id FROM jobs WHERE queue = '{q}'").rows == ((mine,),)
        with pytest.raises(PermissionDeniedError):
            bound.c.list_jobs(tenant="someone-else")
        with pytest.raises(PermissionDeniedError):
            bound.c.count_jobs(tenant="someone-else")
        with pytest.raises(PermissionDeniedError):
            bound.c.query("SELECT 1", tenant="someone-else")
    finally:
        bound.close()
