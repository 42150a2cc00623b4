"""A Worker in its own process, for tests that signal or pause it (SIGTERM, SIGSTOP).

    python worker_proc.py ADDRESS TOKEN QUEUE SLEEP_S CONCURRENCY

Its handler prints `started <job_id>`, sleeps SLEEP_S (in small steps, ignoring cancellation
so that a paused worker really tries to finish), then returns b"done-by-proc". Every worker
event and every RPC the worker sends is printed as one JSON line on stdout; the process runs
until SIGTERM/SIGINT (run_until_signal) and prints `exit <drained>` last.
"""

from __future__ import annotations

import json
import pathlib
import sys
import threading
import time
from typing import Any, Mapping

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from recorder import AsyncRecorder  # noqa: E402
from sluice_client import JobContext, Worker  # noqa: E402


_out = threading.Lock()


def emit(kind: str, **fields: Any) -> None:
    # One write per line, under a lock: handlers run on several threads, and print() writes the
    # text and its newline separately (two lines could merge into one unparsable line).
    line = json.dumps({"kind": kind, **fields}, default=str) + "\n"
    with _out:
        sys.stdout.write(line)
        sys.stdout.flush()


class PrintingRecorder(AsyncRecorder):
    def record(self, name: str, request: Any) -> None:
        super().record(name, request)
        ids = [r.task_id for r in getattr(request, "reports", [])]
        if getattr(request, "task_id", ""):
            ids.append(request.task_id)
        emit("rpc", method=name, task_ids=ids)


def main() -> int:
    address, token, queue, sleep_s, concurrency = sys.argv[1:6]

    def on_event(name: str, fields: Mapping[str, Any]) -> None:
        emit("event", name=name, **{k: v for k, v in fields.items() if k != "stats"})

    worker = Worker(address, token=token, concurrency=int(concurrency), poll_wait_ms=500,
                    on_event=on_event, interceptors=[PrintingRecorder()])

    @worker.handler(queue)
    def handle(job: JobContext) -> bytes:
        emit("started", job_id=job.job_id, task_id=job.task.task_id)
        end = time.monotonic() + float(sleep_s)
        while time.monotonic() < end:
            time.sleep(0.01)
        emit("finished", job_id=job.job_id, token=job.cancellation.reason)
        return b"done-by-proc"

    drained = worker.run_until_signal(drain_timeout=15.0)
    emit("exit", drained=drained)
    return 0


if __name__ == "__main__":
    sys.exit(main())
