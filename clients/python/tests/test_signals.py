"""SIGTERM drains a worker process: it leases nothing more, lets the jobs it holds finish and
report, then exits 0. Jobs it never took stay waiting for other workers."""

from __future__ import annotations

import signal
import time
from typing import Any

from harness import Sluiced, uid
from sluice_client import Client, JobStatus
from test_lease_loss import spawn, wait_line  # noqa: F401  (the `spawn` fixture)


def test_sigterm_drains_the_worker(server: Sluiced, client: Client, spawn: Any) -> None:
    q = uid("q-")
    ids = [client.enqueue(q, b"").id for _ in range(6)]
    # Jobs take 3 s so that the signal surely lands while the first three still run, even on a
    # loaded CI machine (a 1 s job once finished before the test got to send the signal).
    proc, lines = spawn(q, 3.0, 3)
    wait_line(lines, lambda x: sum(1 for y in lines if y.get("kind") == "started") >= 3)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0
    took = time.monotonic() - t0
    exit_line = wait_line(lines, lambda x: x.get("kind") == "exit")
    log = [x for x in lines if x.get("kind") != "text" or x.get("line", "").strip()]
    assert exit_line["drained"] is True, log
    assert took < 7.0, log
    # The worker's stdout is in order: no lease went out after it took the signal.
    at = next(i for i, x in enumerate(lines) if x.get("name") == "signal")
    assert not [x for x in lines[at + 1:] if x.get("method") == "LeaseTasks"], log
    started = {x["job_id"] for x in lines if x.get("kind") == "started"}
    assert len(started) == 3, log  # nothing was leased after the signal
    jobs = [client.get_job(i) for i in ids]
    done = {j.id for j in jobs if j.status == JobStatus.SUCCEEDED}
    untouched = [j for j in jobs if j.status == JobStatus.WAITING and j.attempt_count == 0]
    assert done == started and len(untouched) == 3, [(j.status, j.attempt_count) for j in jobs]
    assert all(client.get_result(i).result == b"done-by-proc" for i in done)
    assert any(x.get("name") == "signal" for x in lines)


def test_sigterm_of_an_idle_worker_is_quick(server: Sluiced, spawn: Any) -> None:
    proc, lines = spawn(uid("q-"), 0.1, 2)
    wait_line(lines, lambda x: x.get("name") == "started")
    time.sleep(0.2)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0
    assert time.monotonic() - t0 < 3.0  # at most one long-poll (500 ms here) plus start-up
