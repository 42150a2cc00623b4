"""Every status maps to its exception class: each reachable one is provoked through the engine;
the rest (storage faults, reserved codes) are checked through the translator's table."""

from __future__ import annotations

import dataclasses
import pathlib
import threading
import time
from typing import Callable

import pytest

import sluice
from sluice import JobSpec, Limit, RetryPolicy, _sluice, errors

from conftest import lease_one

ALL = [
    (1, "not_found", sluice.NotFoundError),
    (2, "invalid_argument", sluice.InvalidArgumentError),
    (3, "too_large", sluice.TooLargeError),
    (4, "lease_lost", sluice.LeaseLostError),
    (5, "failed_precondition", sluice.FailedPreconditionError),
    (6, "closed", sluice.ClosedError),
    (7, "io_error", sluice.StorageError),
    (8, "corruption", sluice.CorruptionError),
    (9, "timeout", sluice.SluiceTimeoutError),
    (10, "already_exists", sluice.AlreadyExistsError),
    (11, "busy", sluice.BusyError),
    (12, "internal", sluice.InternalError),
    (13, "no_memory", sluice.NoMemoryError),
    (14, "cancelled", sluice.CancelledError),
]


def raises(cls: type[sluice.SluiceError], fn: Callable[[], object]) -> sluice.SluiceError:
    with pytest.raises(cls) as info:
        fn()
    err = info.value
    assert type(err) is cls, repr(err)
    assert err.status == cls.status and err.status_name == cls.status_name
    assert isinstance(err, sluice.SluiceError) and err.message and str(err) == err.message
    return err


@pytest.mark.parametrize("status,name,cls", ALL)
def test_table_matches_the_c_abi(status: int, name: str, cls: type) -> None:
    assert _sluice.status_name(status) == name  # the library's own name for the code
    assert cls.status == status and cls.status_name == name
    assert sluice.error_class(status) is cls
    err = errors._from_status(status, "msg")
    assert type(err) is cls and err.status == status and err.message == "msg"


def test_unknown_status_is_the_base_class() -> None:
    err = errors._from_status(99, "from a newer library")
    assert type(err) is sluice.SluiceError and err.status == 99 and err.status_name == "unknown"
    assert sluice.error_class(99) is sluice.SluiceError


def test_builtin_bases() -> None:
    assert issubclass(sluice.InvalidArgumentError, ValueError)
    assert issubclass(sluice.TooLargeError, ValueError)
    assert issubclass(sluice.NoMemoryError, MemoryError)
    assert not issubclass(sluice.StorageError, OSError)


def test_not_found(engine: sluice.Engine) -> None:
    for fn in (engine.get_job, engine.get_result, engine.cancel, engine.restart,
               engine.expedite, engine.delete):
        raises(sluice.NotFoundError, lambda: fn("missing"))
    raises(sluice.NotFoundError, lambda: engine.set_floating_limit("no-such-key", 1))


def test_invalid_argument(engine: sluice.Engine) -> None:
    bad: list[Callable[[], object]] = [
        lambda: engine.enqueue(""),
        lambda: engine.enqueue("q", priority=100),
        lambda: engine.enqueue("q", priority=-1),  # rejected before the C call
        lambda: engine.enqueue("q", lease_ms=2**64),
        lambda: engine.enqueue("q", retry=RetryPolicy(multiplier=0.5)),
        lambda: engine.enqueue("q", limits=[Limit.fixed("k", 0)]),
        lambda: engine.enqueue("q", limits=[Limit.fixed("k", 1), Limit.fixed("k", 2)]),
        lambda: engine.enqueue("q", limits=[Limit.floating("f", 1, 0)]),
        lambda: engine.lease("q", "w", max_tasks=0),
        lambda: engine.lease("q", ""),
        lambda: engine.lease("", "w"),
        lambda: sluice.Engine("", durability="async"),
        lambda: sluice.Engine("/tmp/x", durability="sometimes"),  # type: ignore[arg-type]
    ]
    for fn in bad:
        err = raises(sluice.InvalidArgumentError, fn)
        assert isinstance(err, ValueError)
    err = raises(sluice.InvalidArgumentError,
                 lambda: engine.enqueue_batch([JobSpec("q"), JobSpec("q", priority=200)]))
    assert "jobs[1]" in err.message
    assert engine.stats().enqueued == 0  # nothing was written
    engine.enqueue("q")
    task = lease_one(engine)
    raises(sluice.InvalidArgumentError, lambda: engine.fail(task, ""))  # code required


def test_too_large(tmp_path: pathlib.Path) -> None:
    with sluice.Engine(tmp_path / "s", durability="async", max_payload_bytes=1024) as engine:
        raises(sluice.TooLargeError, lambda: engine.enqueue("q", b"x" * 1025))
        raises(sluice.TooLargeError, lambda: engine.enqueue("q", id="i" * 129))
        raises(sluice.TooLargeError, lambda: engine.enqueue("q", metadata={"k": "v" * 1025}))
        engine.enqueue("q", b"x" * 1024)
        task = lease_one(engine)
        raises(sluice.TooLargeError, lambda: engine.complete(task, b"r" * 1025))
        engine.complete(task, b"r" * 1024)


def test_lease_lost(engine: sluice.Engine) -> None:
    engine.enqueue("q")
    task = lease_one(engine, worker="w1")
    other = dataclasses.replace(task, worker_id="w2")
    raises(sluice.LeaseLostError, lambda: engine.heartbeat(other))
    stale = dataclasses.replace(task, lease_token=task.lease_token - 1)
    raises(sluice.LeaseLostError, lambda: engine.complete(stale))
    engine.complete(task)
    raises(sluice.LeaseLostError, lambda: engine.complete(task))  # reported already
    raises(sluice.LeaseLostError, lambda: engine.heartbeat(task))


def test_failed_precondition(engine: sluice.Engine) -> None:
    r = engine.enqueue("q")
    task = lease_one(engine)
    raises(sluice.FailedPreconditionError, lambda: engine.delete(r.id))  # running
    raises(sluice.FailedPreconditionError, lambda: engine.expedite(r.id))
    engine.complete(task)
    raises(sluice.FailedPreconditionError, lambda: engine.restart(r.id))  # succeeded is final
    raises(sluice.FailedPreconditionError, lambda: engine.cancel(r.id))


def test_closed(store: pathlib.Path) -> None:
    engine = sluice.Engine(store, durability="async")
    r = engine.enqueue("q")
    engine.close()
    for fn in (lambda: engine.enqueue("q"), lambda: engine.lease("q", "w"),
               lambda: engine.get_job(r.id), lambda: engine.reap_expired(),
               lambda: engine.enqueue_batch([JobSpec("q")])):
        raises(sluice.ClosedError, fn)


def test_close_wakes_a_waiting_lease(store: pathlib.Path) -> None:
    engine = sluice.Engine(store, durability="async")
    outcome: list[BaseException] = []

    def wait() -> None:
        try:
            engine.lease("q", "w", wait_ms=10_000)
        except BaseException as e:  # noqa: BLE001 - recorded for the assertion
            outcome.append(e)

    t = threading.Thread(target=wait)
    t.start()
    time.sleep(0.2)
    start = time.monotonic()
    engine.close()
    t.join(5)
    assert not t.is_alive() and time.monotonic() - start < 2.0
    assert len(outcome) == 1 and type(outcome[0]) is sluice.ClosedError


def test_storage_error_when_the_store_is_locked(store: pathlib.Path) -> None:
    with sluice.Engine(store, durability="async"):
        raises(sluice.StorageError, lambda: sluice.Engine(store))


def test_type_errors_are_not_sluice_errors(engine: sluice.Engine) -> None:
    with pytest.raises(TypeError):
        engine.enqueue(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        engine.enqueue("q", priority="high")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        engine.enqueue("q", metadata={"k": 1})  # type: ignore[dict-item]
