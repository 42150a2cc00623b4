"""Engine.query: typed cells, tenants, bounds, timeouts, cancellation from another thread, and
the GIL released while a query runs."""

from __future__ import annotations

import threading
import time

import pytest

import sluice

ENDLESS = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT count(*) FROM c"
HUNDRED = ("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < 100) "
           "SELECT x FROM c")


def test_typed_cells(engine: sluice.Engine) -> None:
    r = engine.query("", "SELECT 42 AS i, 1.5 AS r, 'h\u00e9llo' AS t, x'00ff01' AS b, NULL AS n, "
                         "9223372036854775807 AS big, -9223372036854775808 AS small")
    assert r.columns == ("i", "r", "t", "b", "n", "big", "small")
    assert r.rows == [(42, 1.5, "h\u00e9llo", b"\x00\xff\x01", None, 2**63 - 1, -(2**63))]
    [row] = r.rows
    assert [type(v) for v in row] == [int, float, str, bytes, type(None), int, int]
    assert isinstance(r.keys_visited, int)
    many = engine.query("", HUNDRED)
    assert many.columns == ("x",) and len(many.rows) == 100 and many.rows[99] == (100,)


def test_the_tenant_is_the_callers(engine: sluice.Engine) -> None:
    engine.enqueue_batch([sluice.JobSpec("q", id="x1", tenant="t1"),
                          sluice.JobSpec("q", id="x2", tenant="t1"),
                          sluice.JobSpec("q", id="y1", tenant="t2")])
    def count(tenant: str) -> object:
        return engine.query(tenant, "SELECT count(*) FROM jobs").rows[0][0]

    assert (count("t1"), count("t2"), count("")) == (2, 1, 0)
    ids = engine.query("t1", "SELECT id FROM jobs ORDER BY id")
    assert ids.rows == [("x1",), ("x2",)] and ids.keys_visited > 0


def test_bad_sql_writes_and_bounds_change_nothing(engine: sluice.Engine) -> None:
    engine.enqueue("q", id="keep")
    for sql in ("DELETE FROM jobs", "SELEC 1"):
        with pytest.raises(sluice.InvalidArgumentError):
            engine.query("", sql)
    assert engine.query("", "SELECT count(*) FROM jobs").rows == [(1,)]
    engine.get_job("keep")
    with pytest.raises(sluice.TooLargeError):
        engine.query("", HUNDRED, max_rows=10)
    with pytest.raises(sluice.TooLargeError):
        engine.query("", HUNDRED, max_result_bytes=64)
    with pytest.raises(sluice.InvalidArgumentError):
        engine.query("", "SELECT 1", timeout_ms=-1)
    with pytest.raises(TypeError):
        engine.query("", 42)  # type: ignore[arg-type]


def test_timeout_releases_the_gil(engine: sluice.Engine) -> None:
    ticks = 0
    stop = threading.Event()

    def count() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            time.sleep(0.005)

    t = threading.Thread(target=count)
    t.start()
    start = time.monotonic()
    try:
        with pytest.raises(sluice.SluiceTimeoutError) as info:
            engine.query("", ENDLESS, timeout_ms=300)
    finally:
        stop.set()
        t.join()
    took = time.monotonic() - start
    assert info.value.status == 9 and info.value.status_name == "timeout"
    assert 0.25 <= took < 10
    assert ticks >= 10, f"another thread ran only {ticks} times during the query"


def test_cancel_from_another_thread(engine: sluice.Engine) -> None:
    token = sluice.CancelToken()
    assert not token.cancelled
    assert engine.query("", "SELECT 1", cancel_token=token).rows == [(1,)]
    timer = threading.Timer(0.2, token.cancel)
    start = time.monotonic()
    timer.start()
    with pytest.raises(sluice.CancelledError) as info:
        engine.query("", ENDLESS, timeout_ms=60_000, cancel_token=token)
    took = time.monotonic() - start
    timer.join()
    assert info.value.status == 14 and info.value.status_name == "cancelled"
    assert isinstance(info.value, sluice.SluiceError) and not isinstance(info.value, ValueError)
    assert 0.15 <= took < 10
    assert token.cancelled
    # A cancelled token stays cancelled: the next query stops before it starts.
    with pytest.raises(sluice.CancelledError):
        engine.query("", "SELECT 1", cancel_token=token)
    token.cancel()  # idempotent
    assert "cancelled" in repr(token)


def test_one_token_cancels_queries_in_several_threads(engine: sluice.Engine) -> None:
    token = sluice.CancelToken()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            engine.query("", ENDLESS, timeout_ms=60_000, cancel_token=token)
        except BaseException as e:  # noqa: BLE001 - recorded for the assertion
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.2)
    token.cancel()
    for t in threads:
        t.join(10)
    assert not any(t.is_alive() for t in threads)
    assert len(errors) == 3 and all(type(e) is sluice.CancelledError for e in errors)
