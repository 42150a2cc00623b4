"""The engine's life cycle through the Python API: open/close, enqueue, lease, heartbeat,
outcomes, results, attempts, retries and operator calls, bytes and strings in and out."""

from __future__ import annotations

import pathlib
import time

import pytest

import sluice
from sluice import AttemptStatus, JobSpec, JobStatus, RetryPolicy

from conftest import lease_one


def test_versions() -> None:
    assert sluice.__version__ == "0.1.0"
    assert sluice.library_version() == "0.1.0"


def test_enqueue_lease_heartbeat_complete_result(engine: sluice.Engine) -> None:
    r = engine.enqueue("q", b"payload", metadata={"k": "v"})
    assert r.created and r.status is JobStatus.WAITING and r.id
    task = lease_one(engine, worker="w1")
    assert (task.job_id, task.queue, task.tenant, task.attempt) == (r.id, "q", "", 1)
    assert task.payload == b"payload" and task.metadata == {"k": "v"}
    assert task.worker_id == "w1" and task.task_id.startswith(r.id)
    assert engine.get_job(r.id).status is JobStatus.RUNNING
    hb = engine.heartbeat(task)
    assert hb.expires_ms >= task.lease_expires_ms and not hb.cancel_requested
    engine.complete(task, b"done")
    res = engine.get_result(r.id)
    assert res.finished and res.status is JobStatus.SUCCEEDED and res.result == b"done"
    job = engine.get_job(r.id, include_attempts=True)
    assert job.status is JobStatus.SUCCEEDED and job.attempt_count == 1
    assert job.payload == b"payload" and job.metadata == {"k": "v"}
    assert job.finished_ms >= job.created_ms > 0
    [attempt] = job.attempts
    assert attempt.number == 1 and attempt.status is AttemptStatus.SUCCEEDED
    assert attempt.worker_id == "w1" and attempt.result == b"done"
    assert engine.get_job(r.id).attempts == ()  # only when asked for
    assert engine.lease("q", "w1") == []
    s = engine.stats()
    assert (s.enqueued, s.leased, s.succeeded, s.running) == (1, 1, 1, 0)


def test_failure_retries_then_fails(engine: sluice.Engine) -> None:
    retry = RetryPolicy(max_retries=1, initial_backoff_ms=60_000, max_backoff_ms=60_000)
    r = engine.enqueue("q", b"x", retry=retry)
    t1 = lease_one(engine)
    engine.fail(t1, "boom", "first", data=b"\x00\x01")
    job = engine.get_job(r.id)
    assert job.status is JobStatus.SCHEDULED and job.retries_used == 1
    assert job.retry == retry
    assert engine.lease("q", "w") == []  # backing off
    engine.expedite(r.id)
    t2 = lease_one(engine)
    assert t2.attempt == 2 and t2.task_id != t1.task_id
    engine.fail(t2, "boom", "second", data=b"\xff")
    res = engine.get_result(r.id)
    assert res.status is JobStatus.FAILED and res.finished
    assert (res.error_code, res.error_message, res.error_data) == ("boom", "second", b"\xff")
    job = engine.get_job(r.id, include_attempts=True)
    assert [a.status for a in job.attempts] == [AttemptStatus.FAILED] * 2
    assert job.attempts[0].error_data == b"\x00\x01"
    engine.restart(r.id)
    t3 = lease_one(engine)
    assert t3.attempt == 3
    engine.complete(t3)
    assert engine.get_result(r.id).status is JobStatus.SUCCEEDED


def test_no_retry_fails_at_once(engine: sluice.Engine) -> None:
    r = engine.enqueue("q", retry=RetryPolicy(max_retries=5))
    engine.fail(lease_one(engine), "bad_input", no_retry=True)
    assert engine.get_job(r.id).status is JobStatus.FAILED


def test_cancel_pending_and_running(engine: sluice.Engine) -> None:
    pending = engine.enqueue("q", start_at_ms=int(time.time() * 1000) + 3_600_000)
    assert pending.status is JobStatus.SCHEDULED
    c = engine.cancel(pending.id)
    assert c.status is JobStatus.CANCELLED and not c.cancel_requested
    running = engine.enqueue("q")
    task = lease_one(engine)
    c = engine.cancel(running.id)
    assert c.status is JobStatus.RUNNING and c.cancel_requested
    assert engine.heartbeat(task).cancel_requested
    engine.report_cancelled(task)
    assert engine.get_job(running.id).status is JobStatus.CANCELLED
    engine.restart(running.id)
    assert engine.get_job(running.id).status is JobStatus.WAITING


def test_scheduled_expedite_and_delete(engine: sluice.Engine) -> None:
    later = int(time.time() * 1000) + 3_600_000
    r = engine.enqueue("q", start_at_ms=later)
    assert engine.get_job(r.id).start_at_ms == later
    assert engine.lease("q", "w") == []
    engine.expedite(r.id)
    task = lease_one(engine)
    engine.complete(task)
    engine.delete(r.id)
    with pytest.raises(sluice.NotFoundError):
        engine.get_job(r.id)


def test_idempotent_enqueue_with_client_id(engine: sluice.Engine) -> None:
    a = engine.enqueue("q", b"first", id="order-42")
    b = engine.enqueue("q", b"second", id="order-42")
    assert a.created and not b.created and a.id == b.id == "order-42"
    assert engine.get_job("order-42").payload == b"first"


def test_priority_order_and_batch(engine: sluice.Engine) -> None:
    specs = [JobSpec("q", bytes([i]), priority=99 - i) for i in range(100)]
    results = engine.enqueue_batch(specs)
    assert len(results) == 100 and all(r.created for r in results)
    assert len({r.id for r in results}) == 100
    tasks = engine.lease("q", "w", max_tasks=100)
    assert [t.payload for t in tasks] == [bytes([i]) for i in reversed(range(100))]
    assert engine.enqueue_batch([]) == []


def test_bytes_in_and_out(engine: sluice.Engine) -> None:
    every_byte = bytes(range(256)) * 4
    for payload in (every_byte, bytearray(every_byte), memoryview(every_byte), b""):
        r = engine.enqueue("bytes", payload)
        task = lease_one(engine, "bytes")
        assert type(task.payload) is bytes and task.payload == bytes(payload)
        engine.complete(task, bytearray(b"\x00result\xff"))
        res = engine.get_result(r.id)
        assert type(res.result) is bytes and res.result == b"\x00result\xff"
    with pytest.raises(TypeError):
        engine.enqueue("bytes", "a str is not bytes")  # type: ignore[arg-type]


def test_strings_round_trip(engine: sluice.Engine) -> None:
    r = engine.enqueue("队列", b"", id="ид-1", tenant="tenänt", metadata={"ключ": "значение ✓"})
    job = engine.get_job("ид-1", tenant="tenänt")
    assert (job.id, job.tenant, job.queue) == ("ид-1", "tenänt", "队列")
    assert job.metadata == {"ключ": "значение ✓"}
    # Undecodable ids round-trip as lone surrogates (surrogateescape).
    raw = b"caf\xe9".decode("utf-8", "surrogateescape")
    engine.enqueue("q", id=raw)
    assert engine.get_job(raw).id == raw
    assert r.id == "ид-1"


def test_tenants_are_separate(engine: sluice.Engine) -> None:
    r = engine.enqueue("q", tenant="a")
    with pytest.raises(sluice.NotFoundError):
        engine.get_job(r.id, tenant="b")
    assert engine.lease("q", "w") == []  # default tenant
    task = engine.lease("q", "w", tenant="a")[0]
    assert task.tenant == "a"
    engine.complete(task)


def test_lease_expiry_loses_the_lease(engine: sluice.Engine) -> None:
    r = engine.enqueue("q", lease_ms=50, retry=RetryPolicy.none())
    task = lease_one(engine)
    time.sleep(0.2)
    engine.reap_expired()  # the background reaper may have done it already
    with pytest.raises(sluice.LeaseLostError):
        engine.heartbeat(task)
    with pytest.raises(sluice.LeaseLostError):
        engine.complete(task)
    res = engine.get_result(r.id)
    assert res.status is JobStatus.FAILED and res.error_code == "lease_expired"
    assert engine.stats().lease_expired == 1


def test_context_manager_closes(store: pathlib.Path) -> None:
    with sluice.Engine(store) as engine:
        assert not engine.closed and engine.path == str(store)
        r = engine.enqueue("q", b"durable")
    assert engine.closed and "closed" in repr(engine)
    with pytest.raises(sluice.ClosedError):
        engine.enqueue("q")
    engine.close()  # idempotent
    with sluice.Engine(store) as again:  # the store was closed (the RocksDB lock released)
        assert again.get_job(r.id).payload == b"durable"


def test_context_manager_closes_on_exception(store: pathlib.Path) -> None:
    with pytest.raises(RuntimeError):
        with sluice.Engine(store) as engine:
            raise RuntimeError("boom")
    assert engine.closed
    with pytest.raises(sluice.ClosedError):
        engine.lease("q", "w")


def test_engine_options(tmp_path: pathlib.Path) -> None:
    with sluice.Engine(tmp_path / "s", durability=sluice.Durability.SYNC,
                       default_lease_ms=1234, max_lease_batch=5) as engine:
        r = engine.enqueue("q")
        assert engine.get_job(r.id).lease_ms == 1234
        with pytest.raises(sluice.InvalidArgumentError):
            engine.lease("q", "w", max_tasks=6)
