#!/usr/bin/env python3
"""End-to-end throughput of the in-process engine from Python: jobs/s from enqueue to success.

One producer thread enqueues `--jobs` jobs in batches of `--batch` (enqueue_batch) while
`--threads` worker threads each lease up to `--lease` tasks at a time (long-poll) and complete
every task with its payload as the result. The clock stops when the last job succeeded.

    PYTHONPATH=build/python /usr/bin/python3 bindings/python/bench_e2e.py --threads 1,2,4,8
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import threading
import time

import sluice
from sluice import JobSpec


def run(jobs: int, batch: int, threads: int, lease: int, durability: str, payload: bytes) -> dict:
    with tempfile.TemporaryDirectory(prefix="sluice-bench-") as d, \
            sluice.Engine(d, durability=durability) as engine:
        done = [0] * threads
        produced = threading.Event()
        start = threading.Barrier(threads + 2)

        def producer() -> None:
            start.wait()
            for first in range(0, jobs, batch):
                n = min(batch, jobs - first)
                engine.enqueue_batch([JobSpec("bench", payload) for _ in range(n)])
            produced.set()

        def worker(i: int) -> None:
            start.wait()
            name = f"w{i}"
            while True:
                tasks = engine.lease("bench", name, max_tasks=lease, wait_ms=50)
                if not tasks:
                    if produced.is_set() and engine.stats().pending_tasks == 0:
                        return
                    continue
                for task in tasks:
                    engine.complete(task, task.payload)
                done[i] += len(tasks)

        ts = [threading.Thread(target=producer)] + [
            threading.Thread(target=worker, args=(i,)) for i in range(threads)]
        for t in ts:
            t.start()
        start.wait()
        t0 = time.perf_counter()
        for t in ts:
            t.join()
        elapsed = time.perf_counter() - t0
        stats = engine.stats()
        assert stats.succeeded == jobs == sum(done), (stats, sum(done))
        return {"threads": threads, "seconds": elapsed, "jobs_per_s": jobs / elapsed}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=50_000)
    p.add_argument("--batch", type=int, default=1000)
    p.add_argument("--lease", type=int, default=64)
    p.add_argument("--threads", default="1,2,4,8", help="comma-separated worker thread counts")
    p.add_argument("--durability", default="async", choices=["sync", "async"])
    p.add_argument("--payload-bytes", type=int, default=64)
    a = p.parse_args()
    payload = os.urandom(a.payload_bytes)
    print(f"sluice {sluice.library_version()} python {platform.python_version()} "
          f"cpus {os.cpu_count()} durability {a.durability} jobs {a.jobs} batch {a.batch} "
          f"lease {a.lease} payload {a.payload_bytes} B")
    for n in (int(x) for x in a.threads.split(",")):
        r = run(a.jobs, a.batch, n, a.lease, a.durability, payload)
        print(f"threads {r['threads']:2d}  {r['seconds']:6.2f} s  {r['jobs_per_s']:9.0f} jobs/s "
              "end to end")


if __name__ == "__main__":
    main()
