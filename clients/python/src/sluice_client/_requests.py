"""Request building shared by Client and AsyncClient (the I/O-free half of every method)."""

from __future__ import annotations

import math
import time
from typing import Any, Iterable, Mapping, Optional, Sequence, Tuple, Union

import grpc

from . import _convert as cv
from ._pb import pb
from ._uuid import uuid7
from .connection import Connection, check_wait
from .errors import ClosedError, SluiceTimeoutError, from_status
from .types import (
    JobSpec,
    JobStatus,
    JobView,
    Limit,
    LimitKind,
    Outcome,
    RefreshTask,
    Report,
    RetryPolicy,
    Task,
)

# GetJobResult waits at most this long per call inside await_result (server caps long waits at
# its max_wait_ms, 60 s by default); the loop continues until the caller's timeout.
RESULT_WAIT_SLICE_MS = 20_000


def result_wait_pause(e: Exception, id: str, timeout: Optional[float], end: Optional[float],
                      failures: int, policy: Any) -> float:
    """How long await_result pauses after a transient failure of one of its slices (the
    ``failures``-th in a row) before the next, within its ``end``; re-raises ``e`` when it is
    not retried there (no timeout, or a closed client), SluiceTimeoutError once time is up."""
    if end is None or isinstance(e, ClosedError):
        raise e
    rest = end - time.monotonic()
    if rest <= 0:
        raise SluiceTimeoutError(f"job {id!r} not finished after {timeout} s ({e})") from e
    return float(min(policy.backoff(failures), rest))


def bounded_deadline(deadline: Optional[float], end: Optional[float]) -> Optional[float]:
    """One send's deadline (seconds; None: none) cut to what is left before ``end``
    (time.monotonic(); None: not cut). At least 1 ms, so a send past the end fails
    DEADLINE_EXCEEDED at once."""
    if end is None:
        return deadline
    left = max(0.001, end - time.monotonic())
    return left if deadline is None else min(deadline, left)


class RequestBuilder:
    """Builds the wire requests from method arguments; no I/O."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def tenant(self, tenant: Optional[str]) -> str:
        return self.connection.tenant if tenant is None else tenant

    def deadline(self, timeout: Optional[float], wait_ms: int = 0) -> Optional[float]:
        """Each send's deadline: the call's timeout, plus the server-side wait of long-polls
        (None, no deadline, for an infinite timeout)."""
        base = self.connection.timeout if timeout is None else check_wait(timeout, "timeout")
        if math.isinf(base):
            return None
        return base + wait_ms / 1000.0

    def new_id(self) -> str:
        return uuid7()

    def spec(self, queue: str, payload: Any, json: Any, id: Optional[str],
             priority: Optional[int], start_at_ms: int, retry: Optional[RetryPolicy],
             lease_ms: int, metadata: Optional[Mapping[str, str]],
             limits: Sequence[Limit]) -> JobSpec:
        if id is None:
            id = self.new_id() if self.connection.generate_ids else ""
        return JobSpec(queue, cv.payload_bytes(payload, json), id, priority, start_at_ms, retry,
                       lease_ms, metadata, tuple(limits))

    def enqueue(self, spec: JobSpec, tenant: Optional[str]) -> tuple[pb.EnqueueRequest, bool]:
        [spec] = cv.specs_with_ids([spec], self.new_id if self.connection.generate_ids else None)
        req = pb.EnqueueRequest(tenant=self.tenant(tenant), job=cv.spec_to_pb(spec))
        return req, bool(spec.id)

    def enqueue_batch(self, specs: Iterable[JobSpec],
                      tenant: Optional[str]) -> tuple[pb.EnqueueBatchRequest, bool]:
        filled = cv.specs_with_ids(specs, self.new_id if self.connection.generate_ids else None)
        req = pb.EnqueueBatchRequest(tenant=self.tenant(tenant),
                                     jobs=[cv.spec_to_pb(s) for s in filled])
        return req, cv.all_have_ids(filled)

    def lease(self, queue: str, worker_id: str, max_tasks: int, wait_ms: int,
              tenant: Optional[str], reports: Sequence[Report] = ()) -> pb.LeaseTasksRequest:
        return pb.LeaseTasksRequest(
            tenant=self.tenant(tenant), queue=queue, worker_id=worker_id, max_tasks=max_tasks,
            wait_ms=wait_ms,
            reports=[cv.report_request(r.task.task_id, r.task.lease_token, r.outcome)
                     for r in reports])

    @staticmethod
    def heartbeat(task: Task) -> pb.HeartbeatRequest:
        return pb.HeartbeatRequest(tenant=task.tenant, task_id=task.task_id,
                                   worker_id=task.worker_id, lease_token=task.lease_token)

    @staticmethod
    def report(task: Task, outcome: Outcome) -> pb.ReportOutcomeRequest:
        return cv.report_request(task.task_id, task.lease_token, outcome, task.tenant)

    def reports(self, reports: Sequence[Report],
                tenant: Optional[str]) -> pb.ReportOutcomesRequest:
        if tenant is None:
            tenants = {r.task.tenant for r in reports}
            tenant = tenants.pop() if len(tenants) == 1 else self.tenant(None)
        return pb.ReportOutcomesRequest(
            tenant=tenant,
            reports=[cv.report_request(r.task.task_id, r.task.lease_token, r.outcome)
                     for r in reports])

    @staticmethod
    def heartbeat_refresh(refresh: RefreshTask) -> pb.HeartbeatRefreshRequest:
        return pb.HeartbeatRefreshRequest(tenant=refresh.tenant, key=refresh.key,
                                          lease_token=refresh.lease_token)

    @staticmethod
    def refresh_outcome(refresh: RefreshTask, new_max: Optional[int], code: str = "",
                        message: str = "") -> pb.ReportRefreshOutcomeRequest:
        req = pb.ReportRefreshOutcomeRequest(tenant=refresh.tenant, key=refresh.key,
                                             lease_token=refresh.lease_token)
        if new_max is not None:
            req.new_max = new_max
        else:
            req.error.CopyFrom(pb.ErrorInfo(code=code, message=message))
        return req

    def job_ref(self, request_type: Any, id: str, tenant: Optional[str]) -> Any:
        return request_type(tenant=self.tenant(tenant), id=id)

    def concurrency_key(self, key: str, kind: LimitKind,
                        tenant: Optional[str]) -> pb.GetConcurrencyKeyRequest:
        return pb.GetConcurrencyKeyRequest(tenant=self.tenant(tenant),
                                           kind=int(kind),  # type: ignore[arg-type]
                                           key=key)


MetadataFilter = Union[Mapping[str, str], Sequence[Tuple[str, str]], None]
"""Metadata pairs a listed job must all carry: a mapping (its order kept) or (key, value)
pairs. The first pair drives the server's index scan: put the most selective first."""


def list_jobs_request(tenant: str, queue: str, statuses: Iterable[JobStatus], id: str,
                      id_prefix: str, metadata: MetadataFilter, created_from_ms: int,
                      created_to_ms: int, newest_first: bool, limit: int, cursor: str,
                      view: JobView) -> pb.ListJobsRequest:
    pairs = list(metadata.items()) if isinstance(metadata, Mapping) else list(metadata or ())
    return pb.ListJobsRequest(
        tenant=tenant, queue=queue,
        statuses=[JobStatus(s).value for s in statuses],  # type: ignore[misc]
        id=id, id_prefix=id_prefix,
        metadata=[pb.MetadataPair(key=k, value=v) for k, v in pairs],
        created_from_ms=created_from_ms, created_to_ms=created_to_ms, newest_first=newest_first,
        limit=limit, cursor=cursor, view=JobView(view).value)  # type: ignore[arg-type]


def call_status(err: BaseException) -> Optional[tuple[grpc.StatusCode, str, Any]]:
    """(code, details, trailing metadata) of a failed gRPC call (sync or asyncio), else None."""
    if isinstance(err, grpc.Call):  # sync: the RpcError is also the Call
        return err.code(), err.details() or "", err.trailing_metadata()
    if isinstance(err, grpc.aio.AioRpcError):
        return err.code(), err.details() or "", err.trailing_metadata()
    return None


def map_error(err: BaseException, attempts: int) -> BaseException:
    """The sluice_client exception for a failed call (other exceptions pass through)."""
    status = call_status(err)
    if status is None:
        return err
    code, details, trailing = status
    return from_status(code, details, trailing, attempts)
