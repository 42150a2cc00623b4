"""Helpers shared by the sluiced integration tests (imported by conftest.py and the tests).

Everything here talks to a real sluiced through sluiced_harness: no fakes.
"""
from __future__ import annotations

import os
import pathlib
import threading
import time
import urllib.error
import urllib.request
import uuid
from typing import Any, Callable, Iterable

import grpc
import pytest

import sluiced_harness
from sluiced_harness import ADMIN_TOKEN, Sluiced, auth, pb, pb_grpc  # noqa: F401  (re-exported)

# Tokens every `server` fixture is started with (conftest.py).
OP_TOKEN = ADMIN_TOKEN            # operator: acts for the tenant named in each request
TOKEN_A, TENANT_A = "tokA-4f1c9e", "tenant-a"   # bound to tenant-a
TOKEN_B, TENANT_B = "tokB-8d2a7b", "tenant-b"   # bound to tenant-b
SERVER_TOKENS = (OP_TOKEN, f"{TOKEN_A}@{TENANT_A}", f"{TOKEN_B}@{TENANT_B}")

RPC_TIMEOUT_S = 15.0


def uid(prefix: str = "") -> str:
    """A fresh name: tests share a module-scoped server, so every id/queue/tenant is unique."""
    return f"{prefix}{uuid.uuid4().hex[:12]}"


def now_ms() -> int:
    return int(time.time() * 1000)


class Api:
    """A stub that adds `authorization: Bearer <token>` and a deadline to every call.

    api.Enqueue(req) -> response; api.call("Enqueue", req, wait=...) for extra kwargs.
    """

    def __init__(self, stub: pb_grpc.SluiceStub, token: str | None,
                 timeout: float = RPC_TIMEOUT_S) -> None:
        self.stub = stub
        self.token = token
        self.timeout = timeout

    def metadata(self) -> list[tuple[str, str]]:
        return auth(self.token) if self.token is not None else []

    def call(self, method: str, request: Any, timeout: float | None = None) -> Any:
        """One call; a streaming method (LeaseStream) gets `request` as its only message and
        returns the list of its answers."""
        fn = getattr(self.stub, method)
        kwargs = {"metadata": self.metadata(),
                  "timeout": self.timeout if timeout is None else timeout}
        if pb.DESCRIPTOR.services_by_name["Sluice"].methods_by_name[method].client_streaming:
            return list(fn(iter([request]), **kwargs))
        return fn(request, **kwargs)

    def __getattr__(self, method: str) -> Callable[..., Any]:
        if not method[:1].isupper():
            raise AttributeError(method)
        return lambda request, timeout=None: self.call(method, request, timeout)


def sluice_code(err: grpc.RpcError) -> str | None:
    """The `sluice-code` trailing metadata of a failed call (None when absent)."""
    values = [v for k, v in (err.trailing_metadata() or ()) if k == "sluice-code"]
    assert len(values) <= 1, f"sluice-code repeated: {values}"
    return values[0] if values else None


def rpc_error(fn: Callable[[], Any]) -> grpc.RpcError:
    """Runs fn and returns the grpc.RpcError it raised; fails the test when it succeeded."""
    try:
        resp = fn()
    except grpc.RpcError as e:  # noqa: PERF203
        return e
    pytest.fail(f"expected an RPC error, got success: {resp!r}")
    raise AssertionError  # unreachable


def expect_error(fn: Callable[[], Any], code: grpc.StatusCode,
                 scode: str | None) -> grpc.RpcError:
    """Asserts fn fails with gRPC `code` and trailer sluice-code == scode; message non-empty.

    Classification is on the code and the trailer only, never on the message.
    """
    err = rpc_error(fn)
    assert err.code() == code, (err.code(), err.details(), err.trailing_metadata())
    if scode is not None:
        assert sluice_code(err) == scode, (err.code(), err.details(), err.trailing_metadata())
    assert err.details(), f"empty error message for {code}"
    return err


def code_pair(fn: Callable[[], Any]) -> tuple[grpc.StatusCode, str | None]:
    err = rpc_error(fn)
    return err.code(), sluice_code(err)


def wait_until(pred: Callable[[], Any], timeout: float = 5.0, interval: float = 0.01,
               what: str = "condition") -> Any:
    """Polls pred until it returns a truthy value; returns it. Fails after timeout."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


class Background:
    """Runs fn() in a thread, recording the result or exception and the perf_counter at return."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self.started = time.perf_counter()
        self.returned_at: float | None = None
        self._fn = fn
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.result = self._fn()
        except BaseException as e:  # noqa: BLE001  (re-raised by get())
            self.error = e
        finally:
            self.returned_at = time.perf_counter()

    def alive(self) -> bool:
        return self._thread.is_alive()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"background call still running after {timeout}s"

    def get(self, timeout: float = RPC_TIMEOUT_S) -> Any:
        self.join(timeout)
        if self.error is not None:
            raise self.error
        return self.result


# ---- servers -------------------------------------------------------------------------------

def _require_binary() -> None:
    if not os.access(sluiced_harness.SLUICED, os.X_OK):
        pytest.fail(f"sluiced binary not found at {sluiced_harness.SLUICED}: build it "
                    "(make build) or point SLUICED at it", pytrace=False)


class Servers:
    """Starts servers and stops every one it started (SIGTERM, then SIGKILL on a hang)."""

    def __init__(self, base: pathlib.Path) -> None:
        self.base = base
        self.started: list[Sluiced] = []
        self.channels: list[grpc.Channel] = []
        self.n = 0

    def start(self, extra_args: tuple[str, ...] = (), data_dir: pathlib.Path | None = None,
              tokens: tuple[str, ...] = SERVER_TOKENS, durability: str = "sync",
              separate_stderr: bool = False) -> Sluiced:
        _require_binary()
        if data_dir is None:
            self.n += 1
            data_dir = self.base / f"data{self.n}"
        s = Sluiced(data_dir, tokens=tokens, extra_args=extra_args, durability=durability,
                    separate_stderr=separate_stderr)
        self.started.append(s)
        return s.start()

    def stub(self, s: Sluiced) -> pb_grpc.SluiceStub:
        ch = s.channel()
        self.channels.append(ch)
        return pb_grpc.SluiceStub(ch)

    def close(self) -> None:
        for ch in self.channels:
            ch.close()
        for s in self.started:
            s.__exit__(None, None, None)


# ---- request builders ---------------------------------------------------------------------

def job(queue: str, *, id: str = "", payload: bytes = b"", priority: int | None = None,
        start_at_ms: int = 0, lease_ms: int = 0, metadata: dict[str, str] | None = None,
        retry: pb.RetryPolicy | None = None,
        limits: Iterable[pb.ConcurrencyLimit] = ()) -> pb.JobSpec:
    spec = pb.JobSpec(id=id, queue=queue, payload=payload, start_at_ms=start_at_ms,
                      lease_ms=lease_ms, metadata=metadata or {}, limits=list(limits))
    if priority is not None:
        spec.priority = priority
    if retry is not None:
        spec.retry.CopyFrom(retry)
    return spec


def no_retry() -> pb.RetryPolicy:
    return pb.RetryPolicy(max_retries=0, initial_backoff_ms=0, max_backoff_ms=0, multiplier=1.0)


def quick_retry(n: int) -> pb.RetryPolicy:
    """n retries, due again at once (no backoff)."""
    return pb.RetryPolicy(max_retries=n, initial_backoff_ms=0, max_backoff_ms=0, multiplier=1.0)


def success(result: bytes = b"") -> pb.Outcome:
    return pb.Outcome(success=pb.Outcome.Success(result=result))


def failure(code: str, message: str = "", data: bytes = b"", no_retry: bool = False) -> pb.Outcome:
    return pb.Outcome(failure=pb.Outcome.Failure(
        error=pb.ErrorInfo(code=code, message=message, data=data), no_retry=no_retry))


def cancelled() -> pb.Outcome:
    return pb.Outcome(cancelled=pb.Outcome.Cancelled())


def enqueue(api: Api, spec: pb.JobSpec, tenant: str = "") -> pb.EnqueueResponse:
    return api.Enqueue(pb.EnqueueRequest(tenant=tenant, job=spec))


def lease(api: Api, queue: str, *, tenant: str = "", worker: str = "w1", max_tasks: int = 10,
          wait_ms: int = 0, timeout: float | None = None) -> pb.LeaseTasksResponse:
    return api.LeaseTasks(pb.LeaseTasksRequest(tenant=tenant, queue=queue, worker_id=worker,
                                               max_tasks=max_tasks, wait_ms=wait_ms),
                          timeout=timeout)


def lease_n(api: Api, queue: str, n: int, *, tenant: str = "", worker: str = "w1",
            wait_ms: int = 2000) -> list[pb.Task]:
    """Leases exactly n tasks (they are due now); fails when fewer or more come."""
    resp = lease(api, queue, tenant=tenant, worker=worker, max_tasks=max(n, 1) + 5,
                 wait_ms=wait_ms)
    assert len(resp.tasks) == n, [t.job_id for t in resp.tasks]
    return list(resp.tasks)


def report(api: Api, task: pb.Task, outcome: pb.Outcome, tenant: str = "",
           token: int | None = None) -> pb.ReportOutcomeResponse:
    return api.ReportOutcome(pb.ReportOutcomeRequest(
        tenant=tenant, task_id=task.task_id,
        lease_token=task.lease_token if token is None else token, outcome=outcome))


def heartbeat(api: Api, task: pb.Task, tenant: str = "", worker: str = "w1",
              token: int | None = None) -> pb.HeartbeatResponse:
    return api.Heartbeat(pb.HeartbeatRequest(
        tenant=tenant, task_id=task.task_id, worker_id=worker,
        lease_token=task.lease_token if token is None else token))


def get_job(api: Api, id: str, tenant: str = "", attempts: bool = False) -> pb.Job:
    return api.GetJob(pb.GetJobRequest(tenant=tenant, id=id, include_attempts=attempts)).job


# ---- HTTP ---------------------------------------------------------------------------------

# Loopback only: never route through a proxy from the environment.
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_get(addr: str, path: str, timeout: float = 5.0) -> tuple[int, str]:
    """GET http://addr/path -> (status, body); non-2xx statuses are returned, not raised."""
    status, body, _ = http_get_full(addr, path, timeout)
    return status, body


def http_get_full(addr: str, path: str, timeout: float = 5.0) -> tuple[int, str, dict[str, str]]:
    """GET http://addr/path -> (status, body, headers with lowercase names)."""
    try:
        with _NO_PROXY.open(f"http://{addr}{path}", timeout=timeout) as r:
            return r.status, r.read().decode(), {k.lower(): v for k, v in r.headers.items()}
    except urllib.error.HTTPError as e:
        return (e.code, e.read().decode(errors="replace"),
                {k.lower(): v for k, v in e.headers.items()})
