"""Finding jobs over gRPC: ListJobs (filters, views, paging with a cursor), CountJobs, Query
(typed rows, bounds), tenant isolation of all three, and what happens to a query whose caller
cancels or disappears (LESSONS.md: queries have a deadline, a result cap and stop when the
caller goes away).

Most tests use a fresh tenant through the operator token, so the module's shared server holds
nothing else they could see.
"""
from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from typing import Any, Iterable

import grpc
import pytest

from sluice_testlib import (OP_TOKEN, TENANT_B, Api, Servers, cancelled, enqueue, expect_error,
                            failure, http_get, job, lease, lease_n, now_ms, pb, report, success,
                            uid, wait_until)
from sluiced_harness import Sluiced

S = pb.JobStatus
C = grpc.StatusCode
View = pb.ListJobsRequest

# Runs until its time budget ends or its caller goes away.
ENDLESS = ("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
           "SELECT count(*) FROM c")


def rows_sql(n: int, blob: int = 1) -> str:
    return (f"WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {n}) "
            f"SELECT x, randomblob({blob}) FROM c")


def list_all(api: Api, req: pb.ListJobsRequest, max_pages: int = 1000) -> list[pb.Job]:
    """Every job of a listing, following next_cursor (a page may be short or empty)."""
    out: list[pb.Job] = []
    req = pb.ListJobsRequest.FromString(req.SerializeToString())
    for _ in range(max_pages):
        resp = api.ListJobs(req)
        out += list(resp.jobs)
        if not resp.next_cursor:
            return out
        req.cursor = resp.next_cursor
    pytest.fail("the listing did not end")
    raise AssertionError


def ids(jobs: Iterable[pb.Job]) -> list[str]:
    return [j.id for j in jobs]


def cell(v: pb.QueryValue) -> Any:
    """A query cell as a Python value (NULL: None)."""
    kind = v.WhichOneof("value")
    return None if kind in (None, "null") else getattr(v, kind)


def query(api: Api, sql: str, tenant: str = "", timeout: float | None = None,
          **kw: int) -> tuple[list[str], list[tuple[Any, ...]]]:
    r = api.call("Query", pb.QueryRequest(tenant=tenant, sql=sql, **kw), timeout=timeout)
    return list(r.columns), [tuple(cell(v) for v in row.values) for row in r.rows]


def queries(server: Sluiced, outcome: str) -> float:
    """sluice_queries_total{outcome=...} from /metrics."""
    status, body = http_get(server.http_addr, "/metrics")
    assert status == 200
    for line in body.splitlines():
        if line.startswith(f'sluice_queries_total{{outcome="{outcome}"}} '):
            return float(line.rsplit(" ", 1)[1])
    pytest.fail(f"sluice_queries_total{{outcome={outcome!r}}} missing from /metrics")
    raise AssertionError


# ---- ListJobs ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fleet(op: Api) -> tuple[str, dict[str, str]]:
    """A tenant with jobs in every state over two queues: (tenant, {name: id})."""
    tenant = uid("find-")
    names: dict[str, str] = {}

    def add(name: str, queue: str, **kw: Any) -> None:
        names[name] = enqueue(op, job(queue, id=f"{name}-{uid()}", **kw), tenant).id
        time.sleep(0.003)  # distinct creation times
    for i in range(6):
        add(f"mail{i}", "mail", payload=f"body{i}".encode(), priority=i,
            metadata={"customer": "even" if i % 2 == 0 else "odd",
                      "region": "eu" if i < 3 else "us"})
    add("sms0", "sms")
    add("sms1", "sms", start_at_ms=now_ms() + 3_600_000)
    add("sms2", "sms", priority=0)
    running, done, to_cancel = lease(op, "mail", tenant=tenant, max_tasks=3).tasks  # by priority
    report(op, done, success(), tenant)
    report(op, to_cancel, cancelled(), tenant)
    [t_fail] = lease(op, "sms", tenant=tenant, max_tasks=1).tasks
    report(op, t_fail, failure("boom", no_retry=True), tenant)
    assert (running.job_id, done.job_id, to_cancel.job_id, t_fail.job_id) == \
        (names["mail0"], names["mail1"], names["mail2"], names["sms2"])
    return tenant, names


def test_list_filters(op: Api, fleet: tuple[str, dict[str, str]]) -> None:
    tenant, n = fleet

    def listed(**kw: Any) -> list[str]:
        meta = kw.pop("metadata", [])
        req = pb.ListJobsRequest(tenant=tenant, metadata=[pb.MetadataPair(key=k, value=v)
                                                          for k, v in meta], **kw)
        inv = {v: k for k, v in n.items()}
        return [inv[i] for i in ids(list_all(op, req))]

    everything = ["mail0", "mail1", "mail2", "mail3", "mail4", "mail5", "sms0", "sms1", "sms2"]
    assert listed() == everything
    assert listed(newest_first=True) == everything[::-1]
    assert listed(queue="sms") == ["sms0", "sms1", "sms2"]
    assert listed(queue="nope") == []
    assert listed(statuses=[S.RUNNING]) == ["mail0"]
    assert listed(statuses=[S.SUCCEEDED, S.FAILED, S.CANCELLED]) == ["mail1", "mail2", "sms2"]
    assert listed(statuses=[S.SCHEDULED]) == ["sms1"]
    assert listed(queue="mail", statuses=[S.WAITING]) == ["mail3", "mail4", "mail5"]
    assert listed(metadata=[("customer", "odd")]) == ["mail1", "mail3", "mail5"]
    assert listed(metadata=[("region", "us"), ("customer", "odd")]) == ["mail3", "mail5"]
    assert listed(metadata=[("region", "nowhere")]) == []
    assert listed(id=n["sms0"]) == ["sms0"]
    assert listed(id_prefix="mail") == everything[:6]
    created = {name: j.created_ms for name, j in
               zip(everything, list_all(op, pb.ListJobsRequest(tenant=tenant)))}
    t = created["mail4"]
    assert listed(created_from_ms=t) == [x for x in everything if created[x] >= t]
    assert listed(created_to_ms=t) == [x for x in everything if created[x] < t]
    assert listed(created_from_ms=created["mail1"], created_to_ms=created["mail1"] + 1,
                  queue="mail") == [x for x in everything[:6] if created[x] == created["mail1"]]


def test_list_views(op: Api, fleet: tuple[str, dict[str, str]]) -> None:
    tenant, n = fleet
    req = pb.ListJobsRequest(tenant=tenant, id=n["mail3"])
    [summary] = op.ListJobs(req).jobs
    assert (summary.queue, summary.status, summary.priority) == ("mail", S.WAITING, 3)
    assert dict(summary.metadata) == {"customer": "odd", "region": "us"}
    assert summary.payload == b""
    req.view = View.FULL
    [full] = op.ListJobs(req).jobs
    assert full.payload == b"body3" and len(full.attempts) == 0
    req.view = View.INDEX
    [index] = op.ListJobs(req).jobs
    assert (index.id, index.queue, index.status, index.created_ms) == \
        (summary.id, "mail", S.WAITING, summary.created_ms)
    assert not index.metadata and index.priority == 0


def test_list_pages_with_a_cursor(op: Api) -> None:
    tenant, q = uid("page-"), uid("q-")
    want = [enqueue(op, job(q, id=f"p{i:03d}"), tenant).id for i in range(37)]
    req = pb.ListJobsRequest(tenant=tenant, queue=q, limit=10)
    first = op.ListJobs(req)
    assert len(first.jobs) == 10 and first.next_cursor and first.keys_visited > 0
    assert ids(list_all(op, req)) == want
    # Newest first pages the other way.
    assert ids(list_all(op, pb.ListJobsRequest(tenant=tenant, queue=q, limit=7,
                                              newest_first=True))) == want[::-1]
    # Jobs enqueued while paging come after the cursor: nothing skipped or repeated.
    seen, r = [], pb.ListJobsRequest(tenant=tenant, queue=q, limit=10)
    while True:
        resp = op.ListJobs(r)
        seen += ids(resp.jobs)
        if len(seen) == 10:
            want.append(enqueue(op, job(q, id="p999"), tenant).id)
        if not resp.next_cursor:
            break
        r.cursor = resp.next_cursor
    assert seen == want
    # A cursor belongs to its filter and order; a made-up one is refused.
    other = pb.ListJobsRequest(tenant=tenant, queue=q, limit=10, newest_first=True,
                               cursor=first.next_cursor)
    expect_error(lambda: op.ListJobs(other), C.INVALID_ARGUMENT, "invalid_argument")
    expect_error(lambda: op.ListJobs(pb.ListJobsRequest(tenant=tenant, cursor="%%%")),
                 C.INVALID_ARGUMENT, "invalid_argument")
    expect_error(lambda: op.ListJobs(pb.ListJobsRequest(tenant=tenant, statuses=[0])),
                 C.INVALID_ARGUMENT, "invalid_argument")
    # A huge limit is capped at max_list_page, not refused.
    assert op.GetNodeInfo(pb.GetNodeInfoRequest()).limits.max_list_page == 1000
    assert len(op.ListJobs(pb.ListJobsRequest(tenant=tenant, limit=10**9)).jobs) <= 1000


# ---- CountJobs -----------------------------------------------------------------------------

def test_count_jobs(op: Api, fleet: tuple[str, dict[str, str]]) -> None:
    tenant, _ = fleet

    def counts(c: pb.QueueCounts) -> tuple[int, ...]:
        return (c.scheduled, c.waiting, c.running, c.succeeded, c.failed, c.cancelled)
    every = op.CountJobs(pb.CountJobsRequest(tenant=tenant)).queues
    assert [c.queue for c in every] == ["mail", "sms"]
    assert counts(every[0]) == (0, 3, 1, 1, 0, 1)
    assert counts(every[1]) == (1, 1, 0, 0, 1, 0)
    [mail] = op.CountJobs(pb.CountJobsRequest(tenant=tenant, queue="mail")).queues
    assert mail == every[0]
    # Counters follow the transitions at once.
    tenant2, q = uid("cnt-"), uid("q-")
    enqueue(op, job(q), tenant2)
    [c] = op.CountJobs(pb.CountJobsRequest(tenant=tenant2, queue=q)).queues
    assert counts(c) == (0, 1, 0, 0, 0, 0)
    [t] = lease_n(op, q, 1, tenant=tenant2)
    [c] = op.CountJobs(pb.CountJobsRequest(tenant=tenant2, queue=q)).queues
    assert counts(c) == (0, 0, 1, 0, 0, 0)
    report(op, t, success(), tenant2)
    [c] = op.CountJobs(pb.CountJobsRequest(tenant=tenant2, queue=q)).queues
    assert counts(c) == (0, 0, 0, 1, 0, 0)


# ---- Query ---------------------------------------------------------------------------------

def test_query_typed_rows(op: Api, fleet: tuple[str, dict[str, str]]) -> None:
    cols, rows = query(op, "SELECT 7 AS i, 0.25 AS r, 'häh' AS t, x'00ff10' AS b, NULL AS n, "
                           "9223372036854775807 AS big")
    assert cols == ["i", "r", "t", "b", "n", "big"]
    assert rows == [(7, 0.25, "häh", b"\x00\xff\x10", None, 2**63 - 1)]
    r = op.Query(pb.QueryRequest(sql="SELECT 1, 1.0, '1', x'31', NULL"))
    assert [v.WhichOneof("value") for v in r.rows[0].values] == \
        ["integer", "real", "text", "blob", "null"]
    # Non-UTF-8 TEXT travels as a blob.
    assert query(op, "SELECT CAST(x'c328' AS TEXT)")[1] == [(b"\xc3\x28",)]
    # The tables hold the tenant's jobs.
    tenant, n = fleet
    cols, rows = query(op, "SELECT id FROM jobs WHERE queue = 'sms' ORDER BY id", tenant)
    assert cols == ["id"] and [r[0] for r in rows] == sorted([n["sms0"], n["sms1"], n["sms2"]])
    assert query(op, "SELECT count(*) FROM jobs", tenant)[1] == [(9,)]
    expect_error(lambda: query(op, "SELEKT 1"), C.INVALID_ARGUMENT, "invalid_argument")
    expect_error(lambda: query(op, "DELETE FROM jobs", tenant), C.INVALID_ARGUMENT,
                 "invalid_argument")
    assert query(op, "SELECT count(*) FROM jobs", tenant)[1] == [(9,)]


def test_query_result_caps_are_resource_exhausted(servers: Servers) -> None:
    srv = servers.start(("--query-max-result-bytes", "50000", "--query-max-rows", "300"))
    api = Api(servers.stub(srv), OP_TOKEN)
    expect_error(lambda: query(api, rows_sql(200, 1000)), C.RESOURCE_EXHAUSTED, "too_large")
    expect_error(lambda: query(api, rows_sql(301)), C.RESOURCE_EXHAUSTED, "too_large")
    expect_error(lambda: query(api, rows_sql(20), max_rows=19), C.RESOURCE_EXHAUSTED,
                 "too_large")
    assert len(query(api, rows_sql(300))[1]) == 300
    assert len(query(api, rows_sql(20), max_rows=20)[1]) == 20
    assert queries(srv, "too_large") == 3
    assert queries(srv, "ok") == 2
    limits = api.GetNodeInfo(pb.GetNodeInfoRequest()).limits
    assert (limits.query_max_rows, limits.query_max_result_bytes) == (300, 50000)


def test_query_timeout_is_deadline_exceeded_with_code_timeout(servers: Servers) -> None:
    srv = servers.start(("--query-timeout-ms", "400"))
    api = Api(servers.stub(srv), OP_TOKEN)
    for asked in (0, 120_000):  # the server's maximum bounds every request
        t0 = time.monotonic()
        expect_error(lambda: query(api, ENDLESS, timeout_ms=asked, timeout=30),
                     C.DEADLINE_EXCEEDED, "timeout")
        assert 0.35 <= time.monotonic() - t0 < 3
    t0 = time.monotonic()
    expect_error(lambda: query(api, ENDLESS, timeout_ms=100, timeout=30), C.DEADLINE_EXCEEDED,
                 "timeout")
    assert time.monotonic() - t0 < 0.38
    assert queries(srv, "timeout") == 3
    # The call's own deadline bounds it too, and the server stops at it (not 400 ms later
    # for ever: counted as a timeout, never left running).
    slow = servers.start(("--query-timeout-ms", "60000"))
    api2 = Api(servers.stub(slow), OP_TOKEN)
    t0 = time.monotonic()
    expect_error(lambda: query(api2, ENDLESS, timeout=0.5), C.DEADLINE_EXCEEDED, None)
    assert time.monotonic() - t0 < 2
    wait_until(lambda: queries(slow, "timeout") == 1, timeout=3, what="the server-side timeout")
    assert queries(slow, "cancelled") == 0


def test_cancelled_and_abandoned_queries_stop_promptly(servers: Servers) -> None:
    srv = servers.start(("--query-timeout-ms", "120000"))
    stub = servers.stub(srv)
    api = Api(stub, OP_TOKEN)
    assert queries(srv, "cancelled") == 0
    # 1. Callers that cancel their calls.
    futures = [stub.Query.future(pb.QueryRequest(sql=ENDLESS), metadata=api.metadata(),
                                 timeout=300) for _ in range(3)]
    time.sleep(0.5)
    assert not any(f.done() for f in futures), "the queries should still be running"
    t0 = time.monotonic()
    for f in futures:
        f.cancel()
    wait_until(lambda: queries(srv, "cancelled") == 3, timeout=5, what="3 cancelled queries")
    assert time.monotonic() - t0 < 2, "the server noticed the cancellations late"
    # 2. A caller that disappears (SIGKILL while its query runs): the connection closes.
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import grpc, sys
        ch = grpc.insecure_channel({srv.grpc_addr!r})
        call = ch.unary_unary("/sluice.v1.Sluice/Query")
        print("calling", flush=True)
        call(bytes.fromhex({pb.QueryRequest(sql=ENDLESS).SerializeToString().hex()!r}),
             metadata=[("authorization", "Bearer {OP_TOKEN}")], timeout=300)
    """)], stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == b"calling"
        time.sleep(0.7)
        assert child.poll() is None
        assert queries(srv, "cancelled") == 3
        t0 = time.monotonic()
        child.kill()
    finally:
        child.kill()
        child.wait()
    wait_until(lambda: queries(srv, "cancelled") == 4, timeout=5, what="the abandoned query")
    assert time.monotonic() - t0 < 2
    # The server keeps serving, at once.
    t0 = time.monotonic()
    assert query(api, "SELECT 'still here'")[1] == [("still here",)]
    enqueue(api, job(uid("q-")))
    assert time.monotonic() - t0 < 1
    assert queries(srv, "timeout") == 0
    assert queries(srv, "ok") == 1


# ---- Tenants -------------------------------------------------------------------------------

def test_bound_tokens_find_only_their_tenants_jobs(op: Api, api_a: Api, api_b: Api) -> None:
    q = uid("iso-")
    b_ids = [enqueue(api_b, job(q, id=uid("b-"), metadata={"who": "b"})).id for _ in range(3)]
    a_ids = [enqueue(api_a, job(q, id=uid("a-"), metadata={"who": "a"})).id]
    # ListJobs: A sees its own job only, whatever it filters on.
    assert ids(list_all(api_a, pb.ListJobsRequest(queue=q))) == a_ids
    assert ids(list_all(api_a, pb.ListJobsRequest(id=b_ids[0]))) == []
    assert ids(list_all(api_a, pb.ListJobsRequest(
        metadata=[pb.MetadataPair(key="who", value="b")]))) == []
    assert ids(list_all(api_b, pb.ListJobsRequest(queue=q))) == b_ids
    assert ids(list_all(op, pb.ListJobsRequest(tenant=TENANT_B, queue=q))) == b_ids
    # A cursor from B's listing does not open B's jobs to A.
    page = api_b.ListJobs(pb.ListJobsRequest(queue=q, limit=1))
    assert page.next_cursor
    try:
        leaked = ids(api_a.ListJobs(pb.ListJobsRequest(queue=q, limit=1,
                                                       cursor=page.next_cursor)).jobs)
    except grpc.RpcError as e:
        assert e.code() == C.INVALID_ARGUMENT
        leaked = []
    assert not set(leaked) & set(b_ids)
    # CountJobs.
    [ca] = api_a.CountJobs(pb.CountJobsRequest(queue=q)).queues
    [cb] = api_b.CountJobs(pb.CountJobsRequest(queue=q)).queues
    assert (ca.waiting, cb.waiting) == (1, 3)
    # Query: the tenant is the token's, whatever the SQL says.
    rows = query(api_a, f"SELECT id FROM jobs WHERE queue = '{q}'")[1]
    assert [r[0] for r in rows] == a_ids
    assert query(api_a, f"SELECT count(*) FROM jobs WHERE id = '{b_ids[0]}'")[1] == [(0,)]
    # Naming the other tenant is refused outright.
    for call in (lambda: api_a.ListJobs(pb.ListJobsRequest(tenant=TENANT_B)),
                 lambda: api_a.CountJobs(pb.CountJobsRequest(tenant=TENANT_B)),
                 lambda: api_a.Query(pb.QueryRequest(tenant=TENANT_B, sql="SELECT 1"))):
        expect_error(call, C.PERMISSION_DENIED, "permission_denied")
