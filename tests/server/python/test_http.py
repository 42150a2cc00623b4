"""The HTTP side (/healthz, /readyz, /metrics) and the SIGTERM drain.

/metrics is parsed with prometheus_client's own text parser, so a malformed exposition fails.
"""
from __future__ import annotations

import json
import signal
import time
from typing import Any

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sluice_testlib import (Servers, OP_TOKEN, SERVER_TOKENS, TOKEN_A, Api, Background, cancelled,
                            enqueue, expect_error, failure, get_job, http_get, http_get_full, job,
                            lease, lease_n, no_retry, now_ms, pb, quick_retry, report, success, uid,
                            wait_until)
from sluiced_harness import Sluiced

S = pb.JobStatus


class Metrics:
    """One parsed scrape: families by name, and sample lookups by name and labels."""

    def __init__(self, text: str) -> None:
        self.families = list(text_string_to_metric_families(text))
        self.samples = [(s.name, s.labels, s.value, f.type)
                        for f in self.families for s in f.samples]

    def type_of(self, sample_name: str) -> str:
        types = {t for n, _, _, t in self.samples if n == sample_name}
        assert len(types) == 1, (sample_name, types)
        return types.pop()

    def value(self, sample_name: str, **labels: str) -> float:
        """Sum of the samples named sample_name whose labels include `labels` (0 if none)."""
        return sum(v for n, ls, v, _ in self.samples
                   if n == sample_name and all(ls.get(k) == x for k, x in labels.items()))

    def has(self, sample_name: str) -> bool:
        return any(n == sample_name for n, _, _, _ in self.samples)


def scrape(server: Sluiced) -> Metrics:
    status, body, headers = http_get_full(server.http_addr, "/metrics")
    assert status == 200, body
    assert headers.get("content-type", "").startswith("text/plain"), headers
    return Metrics(body)


def test_healthz_and_readyz(server: Sluiced) -> None:
    status, body = http_get(server.http_addr, "/healthz")
    assert (status, body.strip()) == (200, "ok")
    status, _ = http_get(server.http_addr, "/readyz")
    assert status == 200
    status, _ = http_get(server.http_addr, "/no-such-page")
    assert status == 404


def test_metrics_exposition_is_well_formed(server: Sluiced, op: Api) -> None:
    op.GetNodeInfo(pb.GetNodeInfoRequest())
    m = scrape(server)
    for name, kind in [("sluice_jobs_enqueued_total", "counter"),
                       ("sluice_tasks_leased_total", "counter"),
                       ("sluice_lease_expirations_total", "counter"),
                       ("sluice_pending_tasks", "gauge"),
                       ("sluice_running_tasks", "gauge"),
                       ("sluice_concurrency_holders", "gauge"),
                       ("sluice_concurrency_waiters", "gauge"),
                       ("sluice_rpc_duration_seconds_count", "histogram")]:
        assert m.has(name), f"{name} missing from /metrics"
        assert m.type_of(name) == kind, name
    # A histogram series is complete and cumulative.
    labels = {"method": "GetNodeInfo", "code": "OK"}
    wait_until(lambda: scrape(server).value("sluice_rpc_duration_seconds_count", **labels) >= 1,
               what="GetNodeInfo in the rpc histogram")
    m = scrape(server)
    buckets = sorted(((float(ls["le"]), v) for n, ls, v, _ in m.samples
                      if n == "sluice_rpc_duration_seconds_bucket"
                      and all(ls.get(k) == x for k, x in labels.items())))
    assert buckets and buckets[-1][0] == float("inf")
    counts = [v for _, v in buckets]
    assert counts == sorted(counts), "histogram buckets are not cumulative"
    assert buckets[-1][1] == m.value("sluice_rpc_duration_seconds_count", **labels)
    assert m.value("sluice_rpc_duration_seconds_sum", **labels) >= 0


def test_counters_move(server: Sluiced, op: Api) -> None:
    tenant, q = uid("met-"), uid("q-")
    before = scrape(server)

    def delta(m: Metrics, name: str, **labels: str) -> float:
        return m.value(name, **labels) - before.value(name, **labels)

    ok_id = enqueue(op, job(q, id="ok", priority=0), tenant).id
    enqueue(op, job(q, id="fail", priority=1, retry=quick_retry(5)), tenant)
    enqueue(op, job(q, id="canc", priority=2), tenant)
    enqueue(op, job(q, id="retry", priority=3, retry=quick_retry(1)), tenant)
    t_ok, t_fail, t_canc, t_retry = lease_n(op, q, 4, tenant=tenant)
    report(op, t_ok, success(), tenant)
    report(op, t_fail, failure("fatal", no_retry=True), tenant)
    report(op, t_canc, cancelled(), tenant)
    report(op, t_retry, failure("transient"), tenant)     # retried
    [t_retry2] = lease_n(op, q, 1, tenant=tenant)
    report(op, t_retry2, success(), tenant)
    expect_error(lambda: get_job(op, "missing", tenant), grpc.StatusCode.NOT_FOUND, "not_found")
    assert get_job(op, ok_id, tenant).status == S.SUCCEEDED

    def moved() -> Metrics | None:
        m = scrape(server)
        return m if delta(m, "sluice_rpc_duration_seconds_count", method="GetJob",
                          code="NOT_FOUND") >= 1 else None
    m = wait_until(moved, what="the last RPC in the histogram")
    assert delta(m, "sluice_jobs_enqueued_total") == 4
    assert delta(m, "sluice_tasks_leased_total") == 5
    assert delta(m, "sluice_outcomes_total", kind="succeeded") == 2
    assert delta(m, "sluice_outcomes_total", kind="cancelled") == 1
    assert delta(m, "sluice_outcomes_total", kind="retried") == 1
    # "failed" may count every failed attempt (2) or only final failures (1).
    assert delta(m, "sluice_outcomes_total", kind="failed") in (1, 2)
    assert delta(m, "sluice_rpc_duration_seconds_count", method="Enqueue", code="OK") == 4
    assert delta(m, "sluice_rpc_duration_seconds_count", method="LeaseTasks", code="OK") == 2
    assert delta(m, "sluice_rpc_duration_seconds_count", method="ReportOutcome", code="OK") == 5
    assert m.type_of("sluice_outcomes_total") == "counter"


def test_gauges_show_queue_depth_and_keys(server: Sluiced, op: Api) -> None:
    tenant, q, key = uid("gauge-"), uid("q-"), uid("db-")
    for _ in range(3):
        enqueue(op, job(q), tenant)
    for _ in range(2):
        enqueue(op, job(q, start_at_ms=now_ms() + 3_600_000), tenant)

    def depth(m: Metrics, state: str) -> float:
        return m.value("sluice_queue_depth", tenant=tenant, queue=q, state=state)
    m = wait_until(lambda: (lambda m: m if depth(m, "waiting") == 3 else None)(scrape(server)),
                   what="queue depth gauge")
    assert depth(m, "scheduled") == 2
    assert m.type_of("sluice_queue_depth") == "gauge"
    assert m.value("sluice_pending_tasks") >= 5

    kq = uid("kq-")
    for _ in range(3):
        enqueue(op, job(kq, limits=[pb.ConcurrencyLimit(key=key, max=1)], retry=no_retry()),
                tenant)
    [t] = lease_n(op, kq, 1, tenant=tenant)

    def keys(m: Metrics) -> tuple[float, float]:
        return (m.value("sluice_concurrency_key_holders", tenant=tenant, key=key),
                m.value("sluice_concurrency_key_waiters", tenant=tenant, key=key))
    m = wait_until(lambda: (lambda m: m if keys(m) == (1, 2) else None)(scrape(server)),
                   what="concurrency key gauges")
    assert m.value("sluice_concurrency_holders") >= 1
    assert m.value("sluice_concurrency_waiters") >= 2
    assert m.value("sluice_running_tasks") >= 1
    report(op, t, success(), tenant)


def test_sigterm_drains_and_data_survives_restart(servers: Servers) -> None:
    drain_ms = 5000
    srv = servers.start(("--drain-timeout-ms", str(drain_ms)), separate_stderr=True)
    api = Api(servers.stub(srv), OP_TOKEN)
    tenant, q = uid("drain-"), uid("q-")
    done = enqueue(api, job(q, id="done", priority=0, payload=b"P1"), tenant).id
    running = enqueue(api, job(q, id="running", priority=1), tenant).id
    t_done, t_run = lease_n(api, q, 2, tenant=tenant)
    report(api, t_done, success(b"R1"), tenant)
    waiting = enqueue(api, job(q, id="waiting", metadata={"m": "v"}), tenant).id
    sched_at = now_ms() + 3_600_000
    sched = enqueue(api, job(q, id="sched", start_at_ms=sched_at), tenant).id

    poll = Background(lambda: lease(api, uid("empty-"), tenant=tenant, wait_ms=30_000,
                                    timeout=60))
    time.sleep(0.1)  # no observable "parked" state: give the long-poll time to reach the server
    assert poll.alive()
    assert srv.proc is not None and srv.stderr_path is not None
    signalled = time.perf_counter()
    srv.proc.send_signal(signal.SIGTERM)
    try:
        resp: Any = poll.get(timeout=drain_ms / 1000 + 10)
        assert len(resp.tasks) == 0
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.UNAVAILABLE, (e.code(), e.details())
    assert poll.returned_at is not None
    took = poll.returned_at - signalled
    assert took < drain_ms / 1000 / 2, f"long-poll took {took:.2f}s to end after SIGTERM"
    assert srv.proc.wait(timeout=drain_ms / 1000 + 10) == 0

    # The log (stderr) is JSON, one object per line; no output carries a token.
    stdout = srv.log_path.read_text(errors="replace")
    log = srv.stderr_path.read_text(errors="replace")
    for token in SERVER_TOKENS:
        assert token.split("@")[0] not in stdout + log, "a token was written to the output"
    lines = [ln for ln in log.splitlines() if ln.strip()]
    assert lines, "sluiced logged nothing"
    for ln in lines:
        assert isinstance(json.loads(ln), dict), f"not a JSON log line: {ln!r}"

    again = servers.start(data_dir=srv.data_dir)
    api2 = Api(servers.stub(again), OP_TOKEN)
    r = api2.GetJobResult(pb.GetJobResultRequest(tenant=tenant, id=done))
    assert (r.status, r.result) == (S.SUCCEEDED, b"R1")
    assert get_job(api2, done, tenant).payload == b"P1"
    assert get_job(api2, running, tenant).status == S.RUNNING
    assert get_job(api2, sched, tenant).status == S.SCHEDULED
    w = get_job(api2, waiting, tenant)
    assert (w.status, dict(w.metadata)) == (S.WAITING, {"m": "v"})
    # The lease taken before the restart is still valid, and the waiting job is leasable.
    report(api2, t_run, success(b"after restart"), tenant)
    [t] = lease_n(api2, q, 1, tenant=tenant)
    assert t.job_id == waiting
    assert Api(servers.stub(again), TOKEN_A).GetNodeInfo(pb.GetNodeInfoRequest()).caller_tenant_bound
    status, _ = http_get(again.http_addr, "/readyz")
    assert status == 200


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
def test_http_needs_no_grpc_auth(server: Sluiced, path: str) -> None:
    assert http_get(server.http_addr, path)[0] == 200
