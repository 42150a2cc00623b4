"""A small stand-in for sluiced (sqlite, synchronous=FULL) used only to check test_crash.py
itself: its clients, kill/restart loop and verification, and that injected bugs are caught.

Run through a wrapper as SLUICED (same flags as sluiced for what the harness passes):
  SLUICED=/path/to/wrapper  with  exec python crash_fake_server.py "$@"
CRASH_FAKE_BUG=stale   accept reports with a stale or wrong token (must be caught)
CRASH_FAKE_BUG=lose    acknowledge enqueues that are never stored (must be caught)
CRASH_FAKE_BUG=losesuccess  acknowledge some success reports without storing them (caught)
Not a reference implementation: only the RPCs and semantics the crash test uses.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import sys
import threading
import time
from concurrent import futures

import grpc

sys.path.insert(0, sys.argv[sys.argv.index("--stubs") + 1] if "--stubs" in sys.argv else ".")
from sluice.v1 import sluice_pb2 as pb  # noqa: E402
from sluice.v1 import sluice_pb2_grpc as pb_grpc  # noqa: E402

BUG = os.environ.get("CRASH_FAKE_BUG", "")
PENDING, RUNNING, SUCCEEDED, FAILED, CANCELLED = "pending", "running", "succeeded", "failed", "cancelled"
PUBLIC = {SUCCEEDED: pb.SUCCEEDED, FAILED: pb.FAILED, CANCELLED: pb.CANCELLED, RUNNING: pb.RUNNING}
ATT = {"running": pb.ATTEMPT_RUNNING, SUCCEEDED: pb.ATTEMPT_SUCCEEDED, FAILED: pb.ATTEMPT_FAILED,
       CANCELLED: pb.ATTEMPT_CANCELLED}


def now_ms() -> int:
    return int(time.time() * 1000)


class Err(Exception):
    def __init__(self, code: grpc.StatusCode, sluice: str, msg: str) -> None:
        super().__init__(msg)
        self.code, self.sluice, self.msg = code, sluice, msg


def lease_lost(msg: str) -> Err:
    return Err(grpc.StatusCode.FAILED_PRECONDITION, "lease_lost", msg)


class Store:
    def __init__(self, path: str) -> None:
        self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript("""
        CREATE TABLE IF NOT EXISTS jobs(tenant TEXT, id TEXT, queue TEXT, priority INT, status TEXT,
          lease_ms INT, max_retries INT, backoff INT, attempts INT, retries_used INT,
          cancel_requested INT, due_ms INT, token INT, expires INT, worker TEXT,
          seq INTEGER, PRIMARY KEY(tenant, id));
        CREATE TABLE IF NOT EXISTS attempts(tenant TEXT, id TEXT, number INT, worker TEXT,
          status TEXT, result BLOB, code TEXT, PRIMARY KEY(tenant, id, number));
        CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v INT);
        INSERT OR IGNORE INTO meta VALUES('seq', 1);
        """)
        self.mu = threading.Lock()

    def tx(self, fn, *args):  # type: ignore[no-untyped-def]
        with self.mu:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                r = fn(*args)
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")
            return r

    def next_seq(self) -> int:
        v = self.db.execute("SELECT v FROM meta WHERE k='seq'").fetchone()[0]
        self.db.execute("UPDATE meta SET v=? WHERE k='seq'", (v + 1,))
        return v

    def enqueue(self, tenant: str, spec: pb.JobSpec) -> tuple[bool, str]:
        row = self.db.execute("SELECT status FROM jobs WHERE tenant=? AND id=?",
                              (tenant, spec.id)).fetchone()
        if row:
            return False, row[0]
        r = spec.retry
        self.db.execute("INSERT INTO jobs VALUES(?,?,?,?,?,?,?,?,0,0,0,?,0,0,'',?)", (
            tenant, spec.id, spec.queue, spec.priority, PENDING, spec.lease_ms or 30000,
            r.max_retries, r.initial_backoff_ms, now_ms(), self.next_seq()))
        return True, PENDING

    def finish(self, tenant: str, jid: str, attempt: int, status: str, result: bytes,
               code: str, no_retry: bool = False) -> None:
        (cancel, retries_used, max_retries, backoff) = self.db.execute(
            "SELECT cancel_requested, retries_used, max_retries, backoff FROM jobs "
            "WHERE tenant=? AND id=?", (tenant, jid)).fetchone()
        self.db.execute("UPDATE attempts SET status=?, result=?, code=? WHERE tenant=? AND id=? "
                        "AND number=?", (status, result, code, tenant, jid, attempt))
        if cancel or status == CANCELLED:
            js = CANCELLED
        elif status == SUCCEEDED:
            js = SUCCEEDED
        elif not no_retry and retries_used < max_retries:
            self.db.execute("UPDATE jobs SET status=?, retries_used=?, due_ms=?, token=0, "
                            "seq=? WHERE tenant=? AND id=?",
                            (PENDING, retries_used + 1, now_ms() + backoff, self.next_seq(),
                             tenant, jid))
            return
        else:
            js = FAILED
        self.db.execute("UPDATE jobs SET status=?, token=0, cancel_requested=0 WHERE tenant=? "
                        "AND id=?", (js, tenant, jid))

    def check_lease(self, tenant: str, task_id: str, token: int) -> tuple[str, int]:
        jid, _, att = task_id.rpartition("#")
        row = self.db.execute("SELECT status, attempts, token, expires FROM jobs WHERE tenant=? "
                              "AND id=?", (tenant, jid)).fetchone()
        if row is None or not att.isdigit():
            raise Err(grpc.StatusCode.NOT_FOUND, "not_found", "no such task")
        status, attempts, tok, expires = row
        if BUG != "stale":
            if status != RUNNING or attempts != int(att) or tok != token:
                raise lease_lost("stale token")
            if expires <= now_ms():
                raise lease_lost("expired")
        elif status != RUNNING or attempts != int(att):
            raise lease_lost("no live lease")
        return jid, int(att)


class Service(pb_grpc.SluiceServicer):
    def __init__(self, store: Store, tokens: list[str]) -> None:
        self.s = store
        self.tokens = tokens

    def _run(self, ctx, fn):  # type: ignore[no-untyped-def]
        md = dict(ctx.invocation_metadata())
        if md.get("authorization") not in [f"Bearer {t}" for t in self.tokens]:
            ctx.set_trailing_metadata((("sluice-code", "unauthenticated"),))
            ctx.abort(grpc.StatusCode.UNAUTHENTICATED, "bad token")
        try:
            return fn()
        except Err as e:
            ctx.set_trailing_metadata((("sluice-code", e.sluice),))
            ctx.abort(e.code, e.msg)

    def Enqueue(self, req, ctx):  # type: ignore[no-untyped-def]
        def go():  # type: ignore[no-untyped-def]
            if BUG == "lose" and random.random() < 0.5:
                return pb.EnqueueResponse(id=req.job.id, created=True, status=pb.WAITING)
            created, _ = self.s.tx(self.s.enqueue, req.tenant, req.job)
            return pb.EnqueueResponse(id=req.job.id, created=created, status=pb.WAITING)
        return self._run(ctx, go)

    def EnqueueBatch(self, req, ctx):  # type: ignore[no-untyped-def]
        def go():  # type: ignore[no-untyped-def]
            res = self.s.tx(lambda: [self.s.enqueue(req.tenant, j) for j in req.jobs])
            return pb.EnqueueBatchResponse(results=[
                pb.EnqueueResponse(id=j.id, created=c, status=pb.WAITING)
                for j, (c, _) in zip(req.jobs, res)])
        return self._run(ctx, go)

    def LeaseTasks(self, req, ctx):  # type: ignore[no-untyped-def]
        def lease():  # type: ignore[no-untyped-def]
            now = now_ms()
            rows = self.s.db.execute(
                "SELECT id, attempts, lease_ms, priority FROM jobs WHERE tenant=? AND queue=? "
                "AND status=? AND due_ms<=? ORDER BY priority, due_ms, seq LIMIT ?",
                (req.tenant, req.queue, PENDING, now, req.max_tasks)).fetchall()
            out = []
            for jid, attempts, lease_ms, prio in rows:
                tok = self.s.next_seq()
                n = attempts + 1
                self.s.db.execute("UPDATE jobs SET status=?, attempts=?, token=?, expires=?, "
                                  "worker=? WHERE tenant=? AND id=?",
                                  (RUNNING, n, tok, now + lease_ms, req.worker_id, req.tenant, jid))
                self.s.db.execute("INSERT INTO attempts VALUES(?,?,?,?,'running',x'','')",
                                  (req.tenant, jid, n, req.worker_id))
                out.append(pb.Task(task_id=f"{jid}#{n}", job_id=jid, queue=req.queue, attempt=n,
                                   priority=prio, lease_token=tok, lease_expires_ms=now + lease_ms,
                                   lease_ms=lease_ms))
            return out

        def go():  # type: ignore[no-untyped-def]
            deadline = time.monotonic() + req.wait_ms / 1000
            while True:
                tasks = self.s.tx(lease)
                if tasks or time.monotonic() >= deadline:
                    return pb.LeaseTasksResponse(tasks=tasks)
                time.sleep(0.02)
        return self._run(ctx, go)

    def Heartbeat(self, req, ctx):  # type: ignore[no-untyped-def]
        def hb():  # type: ignore[no-untyped-def]
            jid, _ = self.s.check_lease(req.tenant, req.task_id, req.lease_token)
            lease_ms, cancel = self.s.db.execute(
                "SELECT lease_ms, cancel_requested FROM jobs WHERE tenant=? AND id=?",
                (req.tenant, jid)).fetchone()
            exp = now_ms() + lease_ms
            self.s.db.execute("UPDATE jobs SET expires=? WHERE tenant=? AND id=?",
                              (exp, req.tenant, jid))
            return pb.HeartbeatResponse(lease_expires_ms=exp, cancel_requested=bool(cancel))
        return self._run(ctx, lambda: self.s.tx(hb))

    def _complete(self, tenant: str, r) -> None:  # type: ignore[no-untyped-def]
        jid, att = self.s.check_lease(tenant, r.task_id, r.lease_token)
        kind = r.outcome.WhichOneof("kind")
        if kind == "success":
            self.s.finish(tenant, jid, att, SUCCEEDED, r.outcome.success.result, "")
        elif kind == "failure":
            self.s.finish(tenant, jid, att, FAILED, b"", r.outcome.failure.error.code,
                          r.outcome.failure.no_retry)
        else:
            self.s.finish(tenant, jid, att, CANCELLED, b"", "")

    def ReportOutcome(self, req, ctx):  # type: ignore[no-untyped-def]
        if BUG == "losesuccess" and req.outcome.WhichOneof("kind") == "success" and \
                random.random() < 0.05:
            return pb.ReportOutcomeResponse()  # acknowledged, never stored: the job runs again
        return self._run(ctx, lambda: (self.s.tx(self._complete, req.tenant, req),
                                       pb.ReportOutcomeResponse())[1])

    def ReportOutcomes(self, req, ctx):  # type: ignore[no-untyped-def]
        def go():  # type: ignore[no-untyped-def]
            sts = []
            for r in req.reports:
                try:
                    self._complete(req.tenant, r)
                    sts.append(pb.ReportStatus(code=0, sluice_code="ok"))
                except Err as e:
                    sts.append(pb.ReportStatus(code=e.code.value[0], sluice_code=e.sluice,
                                               message=e.msg))
            return pb.ReportOutcomesResponse(statuses=sts)
        return self._run(ctx, lambda: self.s.tx(go))

    def CancelJob(self, req, ctx):  # type: ignore[no-untyped-def]
        def go():  # type: ignore[no-untyped-def]
            row = self.s.db.execute("SELECT status FROM jobs WHERE tenant=? AND id=?",
                                    (req.tenant, req.id)).fetchone()
            if row is None:
                raise Err(grpc.StatusCode.NOT_FOUND, "not_found", "no job")
            st = row[0]
            if st in (SUCCEEDED, FAILED):
                raise Err(grpc.StatusCode.FAILED_PRECONDITION, "failed_precondition", st)
            if st == RUNNING:
                self.s.db.execute("UPDATE jobs SET cancel_requested=1 WHERE tenant=? AND id=?",
                                  (req.tenant, req.id))
                return pb.CancelJobResponse(status=pb.RUNNING, cancel_requested=True)
            self.s.db.execute("UPDATE jobs SET status=? WHERE tenant=? AND id=?",
                              (CANCELLED, req.tenant, req.id))
            return pb.CancelJobResponse(status=pb.CANCELLED)
        return self._run(ctx, lambda: self.s.tx(go))

    def GetJob(self, req, ctx):  # type: ignore[no-untyped-def]
        def go():  # type: ignore[no-untyped-def]
            with self.s.mu:
                row = self.s.db.execute(
                    "SELECT status, attempts, retries_used, max_retries, due_ms FROM jobs "
                    "WHERE tenant=? AND id=?", (req.tenant, req.id)).fetchone()
                if row is None:
                    raise Err(grpc.StatusCode.NOT_FOUND, "not_found", "no job")
                atts = self.s.db.execute(
                    "SELECT number, worker, status, result, code FROM attempts WHERE tenant=? "
                    "AND id=? ORDER BY number", (req.tenant, req.id)).fetchall()
            st, attempts, used, maxr, due = row
            status = PUBLIC.get(st) or (pb.SCHEDULED if due > now_ms() else pb.WAITING)
            j = pb.Job(id=req.id, tenant=req.tenant, status=status, attempt_count=attempts,
                       retries_used=used, retry=pb.RetryPolicy(max_retries=maxr))
            if req.include_attempts:
                for n, w, s, res, code in atts:
                    j.attempts.append(pb.Attempt(number=n, task_id=f"{req.id}#{n}", worker_id=w,
                                                 status=ATT[s], result=res,
                                                 error=pb.ErrorInfo(code=code)))
            return pb.GetJobResponse(job=j)
        return self._run(ctx, go)


def reaper(store: Store) -> None:
    def reap() -> None:
        rows = store.db.execute("SELECT tenant, id, attempts FROM jobs WHERE status=? AND "
                                "expires<=?", (RUNNING, now_ms())).fetchall()
        for tenant, jid, att in rows:
            store.finish(tenant, jid, att, FAILED, b"", "lease_expired")
    while True:
        time.sleep(0.1)
        store.tx(reap)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--grpc-listen", default="127.0.0.1:0")
    ap.add_argument("--http-listen", default="127.0.0.1:0")
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--durability", default="sync")
    ap.add_argument("--token", action="append", default=[])
    ap.add_argument("--stubs", default=".")
    args = ap.parse_args()
    os.makedirs(args.data_dir, exist_ok=True)
    store = Store(os.path.join(args.data_dir, "fake.db"))
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=32))
    pb_grpc.add_SluiceServicer_to_server(Service(store, args.token), server)
    port = server.add_insecure_port(args.grpc_listen)
    server.start()
    threading.Thread(target=reaper, args=(store,), daemon=True).start()
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        json.dump({"grpc": f"127.0.0.1:{port}", "http": "127.0.0.1:0", "pid": os.getpid()}, f)
    os.replace(tmp, args.port_file)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
