"""Server crash test (issue 5): SIGKILL sluiced repeatedly under a mixed load from several client
processes, restart it on the same data directory each time, then check the acknowledgements:

  0 acknowledged enqueues lost, 0 jobs succeeded twice, 0 completions accepted from a stale lease.

Clients (crash_client.py, spawned processes): producers enqueue jobs with client ids (single and
batch, two tenants, two queues), resubmit acked ids (must answer created=false) and cancel some;
workers lease with long-polls, heartbeat sometimes, report success (single and ReportOutcomes
batches) or a retryable failure, and make deliberately stale reports: an abandoned task reported
after its lease expired (often after the job was re-leased), a second report of an attempt
already reported, and a wrong token on a live lease. Each must be refused with
FAILED_PRECONDITION / sluice-code lease_lost. Every acknowledged call is logged per process.

The test kills the server with SIGKILL at seeded random moments, restarts it (new ports: the
address is published to the clients through a file), lets the workers drain every job to a
terminal state after the last restart, kills and restarts once more (terminal states must be
durable too) and verifies every acked job with GetJob(include_attempts=True).

Knobs (environment): SLUICE_CRASH_SEED (kill schedule and client choices), SLUICE_CRASH_JOBS.
Self-check of this test: crash_fake_server.py is a sqlite stand-in with injectable bugs
(CRASH_FAKE_BUG=stale|lose|losesuccess); pointed at it through SLUICED, the test must fail.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import pathlib
import random
import sys
import time
from collections import Counter, defaultdict
from typing import Any

import grpc
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import sluiced_harness as h  # noqa: E402
from sluiced_harness import ADMIN_TOKEN, SLUICED, Sluiced, pb, pb_grpc  # noqa: E402

import crash_client as cc  # noqa: E402  (after the harness: it needs the generated stubs)

SEED = int(os.environ.get("SLUICE_CRASH_SEED", "20250605"))
KILLS = 6                 # during the load; one more after the drain
PRODUCERS = 3
WORKERS = 4
JOBS = int(os.environ.get("SLUICE_CRASH_JOBS", "5000"))  # spread over the producers, paced over the load
UP_S = (2.0, 4.5)         # server uptime before each kill
DOWN_S = (0.05, 1.0)      # time the server stays dead
DRAIN_TIMEOUT_S = 60.0

TERMINAL = {pb.SUCCEEDED, pb.FAILED, pb.CANCELLED}


def publish(addr_file: pathlib.Path, addr: str) -> None:
    tmp = addr_file.with_suffix(".tmp")
    tmp.write_text(addr)
    os.replace(tmp, addr_file)


class Logs:
    """Everything the clients logged, parsed."""

    def __init__(self, paths: list[pathlib.Path]) -> None:
        self.enqueued: dict[tuple[str, str], int] = {}          # (tenant, id) -> ack lines
        self.resubmits = 0
        self.cancel_sent: set[tuple[str, str]] = set()
        self.cancel_acked: dict[tuple[str, str], list[tuple[str, int]]] = defaultdict(list)
        self.leases: list[tuple[str, str, str, int, int, str]] = []  # tenant job task att token wid
        self.acks: dict[str, list[tuple[str, str, str, int, int]]] = {"S": [], "F": [], "K": []}
        self.stale: Counter[str] = Counter()
        self.report_lease_lost = 0
        self.violations: list[str] = []
        self.unexpected: list[str] = []
        self.counters: Counter[str] = Counter()
        for p in paths:
            if not p.exists():
                continue
            for line in p.read_text(encoding="utf-8").splitlines():
                f = line.split("\t")
                k = f[0]
                if k == "E":
                    key = (f[1], f[2])
                    self.enqueued[key] = self.enqueued.get(key, 0) + 1
                elif k == "R":
                    self.resubmits += 1
                elif k == "c":
                    self.cancel_sent.add((f[1], f[2]))
                elif k == "C":
                    self.cancel_acked[(f[1], f[2])].append((f[3], int(f[4])))
                elif k == "L":
                    self.leases.append((f[1], f[2], f[3], int(f[4]), int(f[5]), f[6]))
                elif k in ("S", "F", "K"):
                    self.acks[k].append((f[1], f[2], f[3], int(f[4]), int(f[5])))
                elif k == "Z":
                    self.stale[f[1]] += 1
                elif k == "N":
                    self.report_lease_lost += 1
                elif k == "V":
                    self.violations.append(line)
                elif k == "X":
                    self.unexpected.append(line)
                elif k == "T":
                    self.counters[f[1]] += int(f[2])
                else:
                    self.unexpected.append("malformed log line: " + line)

    def job_keys(self) -> set[tuple[str, str]]:
        keys = set(self.enqueued)
        keys.update((t, j) for t, j, *_ in self.leases)
        return keys


def get_jobs(stub: pb_grpc.SluiceStub, keys: set[tuple[str, str]]) -> dict[tuple[str, str], Any]:
    """GetJob(include_attempts) for every key; a missing job maps to None."""
    out: dict[tuple[str, str], Any] = {}
    md = h.auth(ADMIN_TOKEN)
    for tenant, jid in sorted(keys):
        try:
            out[(tenant, jid)] = stub.GetJob(
                pb.GetJobRequest(tenant=tenant, id=jid, include_attempts=True),
                metadata=md, timeout=10).job
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.NOT_FOUND:  # type: ignore[attr-defined]
                raise
            out[(tenant, jid)] = None
    return out


def check_history(key: tuple[str, str], j: Any) -> list[str]:
    who = f"job {key[0]!r}/{key[1]} ({pb.JobStatus.Name(j.status)})"
    bad = []
    if len(j.attempts) != j.attempt_count:
        bad.append(f"{who}: attempt_count {j.attempt_count} but {len(j.attempts)} attempts")
    for i, a in enumerate(j.attempts):
        if a.number != i + 1:
            bad.append(f"{who}: attempt #{i} numbered {a.number}")
        if a.task_id != f"{key[1]}#{a.number}":
            bad.append(f"{who}: attempt {a.number} has task id {a.task_id!r}")
        if a.status == pb.ATTEMPT_RUNNING and (i + 1 != len(j.attempts) or j.status != pb.RUNNING):
            bad.append(f"{who}: attempt {a.number} is running")
    succeeded = [a for a in j.attempts if a.status == pb.ATTEMPT_SUCCEEDED]
    if len(succeeded) > 1:
        bad.append(f"{who}: SUCCEEDED TWICE: attempts {[a.number for a in succeeded]}")
    last = j.attempts[-1] if j.attempts else None
    if j.status == pb.SUCCEEDED and (last is None or last.status != pb.ATTEMPT_SUCCEEDED):
        bad.append(f"{who}: succeeded but its last attempt did not succeed")
    if j.status == pb.FAILED and (last is None or last.status != pb.ATTEMPT_FAILED):
        bad.append(f"{who}: failed but its last attempt did not fail")
    if j.retries_used > j.retry.max_retries:
        bad.append(f"{who}: retries_used {j.retries_used} > max_retries {j.retry.max_retries}")
    return bad


def verify(logs: Logs, jobs: dict[tuple[str, str], Any]) -> tuple[list[str], Counter[str]]:
    bad: list[str] = []
    # (1) 0 acknowledged enqueues lost.
    for key in logs.enqueued:
        if jobs.get(key) is None:
            bad.append(f"LOST: acknowledged enqueue {key[0]!r}/{key[1]} does not exist")
    for key, j in jobs.items():
        if j is None:
            if key not in logs.enqueued:
                bad.append(f"LOST: leased job {key[0]!r}/{key[1]} does not exist")
            continue
        bad += check_history(key, j)
        if j.status not in TERMINAL:
            bad.append(f"job {key[0]!r}/{key[1]} not terminal after the drain: "
                       f"{pb.JobStatus.Name(j.status)}, {j.attempt_count} attempts")

    # Leases: tokens and task ids are never handed out twice; the server recorded each.
    leased: dict[tuple[str, str], tuple[int, str]] = {}  # (tenant, task id) -> (token, worker)
    tokens: Counter[int] = Counter()
    for tenant, jid, task, attempt, token, wid in logs.leases:
        tokens[token] += 1
        if (tenant, task) in leased:
            bad.append(f"task {tenant!r}/{task} leased twice")
        leased[(tenant, task)] = (token, wid)
        j = jobs.get((tenant, jid))
        if j is None:
            continue
        if attempt < 1 or attempt > len(j.attempts):
            bad.append(f"leased task {tenant!r}/{task} has no attempt {attempt} on the server")
            continue
        a = j.attempts[attempt - 1]
        if a.task_id != task or a.worker_id != wid:
            bad.append(f"leased task {tenant!r}/{task} by {wid}: server attempt is "
                       f"{a.task_id!r} by {a.worker_id!r}")
    for token, n in tokens.items():
        if n > 1:
            bad.append(f"lease token {token} handed out {n} times")

    # (3) Completions come only from live leases: every worker-made outcome on the server was
    # reported with a lease a client received, and no stale report's marker ever got stored.
    for key, j in jobs.items():
        if j is None:
            continue
        for a in j.attempts:
            if a.result.startswith(b"STALE"):
                bad.append(f"STALE COMPLETION ACCEPTED: {key[0]!r}/{a.task_id} result {a.result!r}")
            if a.status == pb.ATTEMPT_SUCCEEDED:
                if a.result != b"ok:" + a.task_id.encode():
                    bad.append(f"{key[0]!r}/{a.task_id} succeeded with result {a.result!r}")
                if (key[0], a.task_id) not in leased:
                    bad.append(f"{key[0]!r}/{a.task_id} succeeded but no client received its lease")
            if a.status == pb.ATTEMPT_FAILED and a.error.code not in ("planned", "lease_expired"):
                bad.append(f"{key[0]!r}/{a.task_id} failed with {a.error.code!r}")
            if a.status == pb.ATTEMPT_FAILED and a.error.code == "planned" and \
                    (key[0], a.task_id) not in leased:
                bad.append(f"{key[0]!r}/{a.task_id} failed by a worker without a received lease")

    # (2) 0 jobs succeeded twice, and each acked report is the recorded end of its attempt.
    success_acks: Counter[tuple[str, str]] = Counter()
    want_status = {"S": pb.ATTEMPT_SUCCEEDED, "F": pb.ATTEMPT_FAILED, "K": pb.ATTEMPT_CANCELLED}
    for kind, acks in logs.acks.items():
        for tenant, jid, task, attempt, token in acks:
            if kind == "S":
                success_acks[(tenant, jid)] += 1
            if leased.get((tenant, task), (None,))[0] != token:
                bad.append(f"acked {kind} of {tenant!r}/{task} with token {token} that was not "
                           f"the token leased for it")
            j = jobs.get((tenant, jid))
            if j is None:
                bad.append(f"acked {kind} of {tenant!r}/{task}: the job is lost")
                continue
            if attempt < 1 or attempt > len(j.attempts):
                bad.append(f"acked {kind} of {tenant!r}/{task}: no attempt {attempt} on the server")
                continue
            a = j.attempts[attempt - 1]
            if a.task_id != task or a.status != want_status[kind]:
                bad.append(f"acked {kind} of {tenant!r}/{task}: server attempt {a.task_id!r} is "
                           f"{pb.AttemptStatus.Name(a.status)}")
            if kind == "S" and j.status != pb.SUCCEEDED and not (
                    j.status == pb.CANCELLED and (tenant, jid) in logs.cancel_sent):
                bad.append(f"acked success of {tenant!r}/{task} but the job is "
                           f"{pb.JobStatus.Name(j.status)}")
            if kind == "K" and j.status != pb.CANCELLED:
                bad.append(f"acked cancelled report of {tenant!r}/{task} but the job is "
                           f"{pb.JobStatus.Name(j.status)}")
    for key, n in success_acks.items():
        if n > 1:
            bad.append(f"SUCCEEDED TWICE: job {key[0]!r}/{key[1]} had {n} acknowledged successes")
    for key in logs.cancel_acked:
        j = jobs.get(key)
        if j is not None and j.status != pb.CANCELLED:
            bad.append(f"acked cancel of {key[0]!r}/{key[1]} but the job is "
                       f"{pb.JobStatus.Name(j.status)}")

    by_status = Counter(pb.JobStatus.Name(j.status) for j in jobs.values() if j is not None)
    return bad, by_status


def log_counts(paths: list[pathlib.Path]) -> Counter[str]:
    c: Counter[str] = Counter()
    for p in paths:
        if p.exists():
            for line in p.read_text(encoding="utf-8").splitlines():
                c[line.split("\t", 1)[0]] += 1
    return c


def test_acknowledged_work_survives_sigkill(tmp_path: pathlib.Path) -> None:
    if not os.access(SLUICED, os.X_OK):
        pytest.fail(f"sluiced binary not found at {SLUICED}: build it (make build) or point "
                    "SLUICED at it", pytrace=False)
    t0 = time.monotonic()
    rng = random.Random(SEED)
    # (uptime, downtime, burst lead): half the kills land in a producer burst.
    schedule = [(rng.uniform(*UP_S), rng.uniform(*DOWN_S), rng.choice((0.0, 0.3)))
                for _ in range(KILLS)]
    load_s = sum(u + d for u, d, _ in schedule) + 1.0

    server = Sluiced(tmp_path / "data", durability="sync")
    addr_file = tmp_path / "addr"
    publish(addr_file, "-")
    server.start()
    publish(addr_file, server.grpc_addr)

    ctx = mp.get_context("spawn")
    phase = ctx.Value("i", cc.PHASE_LOAD)
    burst = ctx.Value("i", 0)  # producers ignore their pacing while set
    logs_paths: list[pathlib.Path] = []
    procs: list[tuple[str, Any]] = []
    base = {"addr_file": str(addr_file), "token": ADMIN_TOKEN, "seed": SEED}
    for i in range(PRODUCERS):
        p = tmp_path / f"producer{i}.log"
        logs_paths.append(p)
        cfg = dict(base, idx=i, log=str(p), quota=JOBS // PRODUCERS, duration_s=load_s)
        procs.append(("producer", ctx.Process(target=cc.producer_main, args=(cfg, phase, burst),
                                              name=f"producer{i}")))
    for i in range(WORKERS):
        p = tmp_path / f"worker{i}.log"
        logs_paths.append(p)
        cfg = dict(base, idx=i, log=str(p))
        procs.append(("worker", ctx.Process(target=cc.worker_main, args=(cfg, phase),
                                            name=f"worker{i}")))
    kills = 0
    try:
        for _, pr in procs:
            pr.start()
        # Start the clock once the clients are up (spawn + import takes a moment).
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            c = log_counts(logs_paths)
            if c["E"] > 0 and c["S"] > 0:
                break
            time.sleep(0.05)
        else:
            pytest.fail(f"clients did not get going: {log_counts(logs_paths)}")

        for up, down, lead in schedule:
            time.sleep(max(up - lead, 0))
            burst.value = 1
            time.sleep(lead)
            server.kill()
            burst.value = 0
            kills += 1
            publish(addr_file, "-")
            c = log_counts(logs_paths)
            print(f"kill {kills} after {up:.2f}s up{' (burst)' if lead else ''}: so far {c['E']} enqueue acks, "
                  f"{c['L']} leases, {c['S']} success acks, {c['Z']} stale reports rejected")
            time.sleep(down)
            t_restart = time.monotonic()
            server.start()
            publish(addr_file, server.grpc_addr)
            print(f"  restarted in {time.monotonic() - t_restart:.2f}s on {server.grpc_addr}")

        time.sleep(1.0)
        phase.value = cc.PHASE_DRAIN
        for role, pr in procs:
            if role == "producer":
                pr.join(timeout=30)
                assert not pr.is_alive(), f"{pr.name} did not stop"

        # Drain: workers finish every job (leases of the killed runs expire and are retried).
        logs = Logs(logs_paths)
        keys = logs.job_keys()
        stub = server.stub()
        pending = set(keys)
        t_drain = time.monotonic()
        while pending and time.monotonic() - t_drain < DRAIN_TIMEOUT_S:
            jobs = get_jobs(stub, pending)
            pending = {k for k, j in jobs.items() if j is not None and j.status not in TERMINAL}
            if pending:
                time.sleep(0.5)
        print(f"drained {len(keys)} jobs in {time.monotonic() - t_drain:.1f}s, "
              f"{len(pending)} not terminal")
        phase.value = cc.PHASE_STOP
        for _, pr in procs:
            pr.join(timeout=30)
            assert not pr.is_alive(), f"{pr.name} did not stop"
        exit_codes = {pr.name: pr.exitcode for _, pr in procs}

        # One more kill: terminal states must survive too.
        server.kill()
        kills += 1
        server.start()
        logs = Logs(logs_paths)
        jobs = get_jobs(server.stub(), logs.job_keys())
        bad, by_status = verify(logs, jobs)
    finally:
        phase.value = cc.PHASE_STOP
        for _, pr in procs:
            if pr.is_alive():
                pr.join(timeout=10)
            if pr.is_alive():
                pr.kill()
        server.kill()

    c = logs.counters
    print(f"\n{kills} SIGKILLs; {len(logs.enqueued)} acked enqueues "
          f"({sum(logs.enqueued.values())} ack lines), {logs.resubmits} idempotent resubmits, "
          f"{len(logs.cancel_acked)} acked cancels")
    print(f"{len(logs.leases)} leases, {len(logs.acks['S'])} acked successes, "
          f"{len(logs.acks['F'])} acked failures, {len(logs.acks['K'])} acked cancelled reports, "
          f"{logs.report_lease_lost} ordinary reports refused lease_lost")
    print(f"stale reports rejected: {dict(logs.stale)} (total {sum(logs.stale.values())})")
    print(f"final job states: {dict(by_status)}")
    print(f"client transient errors: {c['producer.transient_errors']} producer, "
          f"{c['worker.transient_errors']} worker; ReportOutcomes batches "
          f"{c['worker.batch_reports']}, heartbeats {c['worker.heartbeats']}")
    print("calls cut by a kill (outcome unknown, retried): " + ", ".join(
        f"{k[len('unknown.'):]} {v}" for k, v in sorted(c.items()) if k.startswith("unknown.")))
    print(f"total {time.monotonic() - t0:.1f}s")

    problems = [f"client exit codes {exit_codes}"] if any(exit_codes.values()) else []
    problems += [f"client-side violation: {v}" for v in logs.violations]
    problems += [f"unexpected error: {x}" for x in logs.unexpected]
    problems += bad
    if pending:
        problems.append(f"{len(pending)} jobs not terminal after {DRAIN_TIMEOUT_S}s, e.g. "
                        f"{sorted(pending)[:5]}")
    assert not problems, f"{len(problems)} problem(s):\n" + "\n".join(problems[:60])

    # The load meant something.
    assert kills == KILLS + 1
    assert len(logs.enqueued) >= JOBS * 0.9
    assert len(logs.acks["S"]) >= JOBS * 0.5
    assert logs.stale["expired"] > 0 and logs.stale["dup"] > 0 and logs.stale["badtoken"] > 0
