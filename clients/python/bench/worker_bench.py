#!/usr/bin/env python3
"""Python Worker end-to-end throughput: jobs/s through a real sluiced at a given concurrency.

Each run enqueues N jobs into a fresh queue (EnqueueBatch, 1,000 per call), then starts a
Worker with a no-op handler and times until it has reported all N (lease, run, report: the
worker's own batching included). Prints every run and the median.

    .venv/bin/python clients/python/bench/worker_bench.py [--jobs 20000] [--concurrency 16]
        [--runs 3] [--handler sync|async] [--durability sync|async] [--address HOST:PORT
        --token TOKEN]

Without --address it starts build/server/sluiced (SLUICED) on loopback over a temporary data
directory. Run clients/python/gen_proto.py first in a checkout (run_tests.sh does).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import sys
import tempfile
import time
import uuid
from typing import Any, Optional

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE.parent / "tests"))

from harness import OP_TOKEN, Sluiced  # noqa: E402
from sluice_client import Client, JobContext, JobSpec, Worker  # noqa: E402


def one_run(address: str, token: str, jobs: int, concurrency: int, handler: str) -> float:
    queue = f"bench-{uuid.uuid4().hex[:8]}"
    with Client(address, token=token, timeout=60) as client:
        for start in range(0, jobs, 1000):
            client.enqueue_batch([JobSpec(queue) for _ in range(min(1000, jobs - start))])
    worker = Worker(address, token=token, concurrency=concurrency, poll_wait_ms=1000)
    if handler == "async":
        async def noop_async(job: JobContext) -> None:
            return None
        worker.handler(queue)(noop_async)
    else:
        def noop(job: JobContext) -> None:
            return None
        worker.handler(queue)(noop)
    t0 = time.perf_counter()
    worker.start()
    while worker.stats.succeeded < jobs:
        time.sleep(0.002)
    elapsed = time.perf_counter() - t0
    worker.stop(10)
    assert worker.stats.max_running <= concurrency
    return jobs / elapsed


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=20_000)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--handler", choices=["sync", "async"], default="sync")
    ap.add_argument("--durability", choices=["sync", "async"], default="sync")
    ap.add_argument("--address", help="use a running sluiced instead of starting one")
    ap.add_argument("--token", default=OP_TOKEN)
    ns = ap.parse_args(argv)
    server: Optional[Sluiced] = None
    address = ns.address
    if address is None:
        data = pathlib.Path(tempfile.mkdtemp(prefix="sluice-pybench-")) / "data"
        server = Sluiced(data, durability=ns.durability).start()
        address = server.address
    try:
        rates = [one_run(address, ns.token, ns.jobs, ns.concurrency, ns.handler)
                 for _ in range(ns.runs)]
    finally:
        if server is not None:
            server.stop()
    result: dict[str, Any] = {
        "bench": "python_worker", "jobs": ns.jobs, "concurrency": ns.concurrency,
        "handler": ns.handler, "durability": ns.durability if server else "external",
        "runs_jobs_per_s": [round(r) for r in rates], "median_jobs_per_s": round(
            statistics.median(rates))}
    for i, r in enumerate(rates, 1):
        print(f"run {i}: {r:,.0f} jobs/s")
    print(f"median of {ns.runs}: {result['median_jobs_per_s']:,} jobs/s "
          f"(concurrency {ns.concurrency}, {ns.handler} no-op handler, {ns.jobs} jobs, "
          f"durability {result['durability']})")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
