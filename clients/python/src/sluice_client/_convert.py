"""Conversions between the value types (types.py) and the generated wire messages.

Shared by Client, AsyncClient and the Worker so that every request is built in one place.
"""

from __future__ import annotations

from typing import Any, Iterable, Optional, Sequence

from ._pb import pb
from .types import (
    Attempt,
    AttemptStatus,
    CancelResult,
    EnqueueResult,
    FloatingLimitState,
    Heartbeat,
    Job,
    JobResult,
    JobPage,
    JobSpec,
    JobStatus,
    KeyState,
    LeaseResponse,
    Limit,
    LimitKind,
    NodeInfo,
    NodeLimits,
    Outcome,
    OutcomeKind,
    RefreshTask,
    QueryCell,
    QueryResult,
    QueueCounts,
    ReportStatus,
    RetryPolicy,
    Task,
    encode_json,
)

_MISSING: Any = object()


def payload_bytes(payload: Any, json: Any = _MISSING) -> bytes:
    """bytes-like payload, or ``json`` encoded (exactly one of them may be given)."""
    if json is not _MISSING:
        if payload:
            raise TypeError("give either payload or json, not both")
        return encode_json(json)
    if isinstance(payload, str):
        raise TypeError("payload must be bytes (use json=... or .encode() for text)")
    return bytes(payload)


def retry_to_pb(r: RetryPolicy) -> pb.RetryPolicy:
    return pb.RetryPolicy(max_retries=r.max_retries, initial_backoff_ms=r.initial_backoff_ms,
                          max_backoff_ms=r.max_backoff_ms, multiplier=r.multiplier,
                          jitter=r.jitter)


def limit_to_pb(limit: Limit) -> pb.ConcurrencyLimit:
    return pb.ConcurrencyLimit(kind=int(limit.kind),  # type: ignore[arg-type]
                               key=limit.key, max=limit.max,
                               refresh_interval_ms=limit.refresh_interval_ms,
                               metadata=dict(limit.metadata))


def spec_to_pb(spec: JobSpec) -> pb.JobSpec:
    msg = pb.JobSpec(id=spec.id, queue=spec.queue, payload=bytes(spec.payload),
                     start_at_ms=spec.start_at_ms, lease_ms=spec.lease_ms,
                     metadata=dict(spec.metadata or {}),
                     limits=[limit_to_pb(x) for x in spec.limits])
    if spec.priority is not None:
        msg.priority = spec.priority
    if spec.retry is not None:
        msg.retry.CopyFrom(retry_to_pb(spec.retry))
    return msg


def enqueue_result(r: pb.EnqueueResponse) -> EnqueueResult:
    return EnqueueResult(r.id, r.created, JobStatus(r.status))


def task_from_pb(t: pb.Task, tenant: str, worker_id: str) -> Task:
    return Task(task_id=t.task_id, job_id=t.job_id, tenant=tenant, queue=t.queue,
                attempt=t.attempt, priority=t.priority, payload=t.payload,
                metadata=dict(t.metadata), lease_token=t.lease_token,
                lease_expires_ms=t.lease_expires_ms, lease_ms=t.lease_ms, worker_id=worker_id)


def refresh_from_pb(r: pb.RefreshTask, tenant: str) -> RefreshTask:
    return RefreshTask(tenant=tenant, key=r.key, metadata=dict(r.metadata),
                       current_max=r.current_max, default_max=r.default_max,
                       last_refreshed_ms=r.last_refreshed_ms, lease_token=r.lease_token,
                       lease_expires_ms=r.lease_expires_ms, lease_ms=r.lease_ms)


def lease_response(r: pb.LeaseTasksResponse, tenant: str, worker_id: str) -> LeaseResponse:
    return LeaseResponse([task_from_pb(t, tenant, worker_id) for t in r.tasks],
                         [refresh_from_pb(x, tenant) for x in r.refreshes],
                         [ReportStatus(s.code, s.sluice_code, s.message)
                          for s in r.report_statuses])


def heartbeat(r: pb.HeartbeatResponse) -> Heartbeat:
    return Heartbeat(r.lease_expires_ms, r.cancel_requested)


def outcome_to_pb(o: Outcome) -> pb.Outcome:
    if o.kind is OutcomeKind.SUCCESS:
        return pb.Outcome(success=pb.Outcome.Success(result=o.result))
    if o.kind is OutcomeKind.FAILURE:
        error = pb.ErrorInfo(code=o.error_code, message=o.error_message, data=o.error_data)
        return pb.Outcome(failure=pb.Outcome.Failure(error=error, no_retry=o.no_retry))
    return pb.Outcome(cancelled=pb.Outcome.Cancelled())


def report_request(task_id: str, lease_token: int, outcome: Outcome,
                   tenant: str = "") -> pb.ReportOutcomeRequest:
    return pb.ReportOutcomeRequest(tenant=tenant, task_id=task_id, lease_token=lease_token,
                                   outcome=outcome_to_pb(outcome))


def report_statuses(r: pb.ReportOutcomesResponse) -> list[ReportStatus]:
    return [ReportStatus(s.code, s.sluice_code, s.message) for s in r.statuses]


def cancel_result(r: pb.CancelJobResponse) -> CancelResult:
    return CancelResult(JobStatus(r.status), r.cancel_requested)


def _retry_from_pb(r: pb.RetryPolicy) -> RetryPolicy:
    return RetryPolicy(r.max_retries, r.initial_backoff_ms, r.max_backoff_ms, r.multiplier,
                       r.jitter)


def _limit_from_pb(c: pb.ConcurrencyLimit) -> Limit:
    return Limit(LimitKind(c.kind), c.key, c.max, c.refresh_interval_ms, dict(c.metadata))


def _attempt_from_pb(a: pb.Attempt) -> Attempt:
    return Attempt(a.number, a.task_id, a.worker_id, AttemptStatus(a.status), a.started_ms,
                   a.finished_ms, a.result, a.error.code, a.error.message, a.error.data)


def job_from_pb(j: pb.Job) -> Job:
    return Job(id=j.id, tenant=j.tenant, queue=j.queue, priority=j.priority,
               status=JobStatus(j.status), cancel_requested=j.cancel_requested,
               start_at_ms=j.start_at_ms, next_run_ms=j.next_run_ms, lease_ms=j.lease_ms,
               retry=_retry_from_pb(j.retry), payload=j.payload, metadata=dict(j.metadata),
               limits=tuple(_limit_from_pb(x) for x in j.limits),
               attempt_count=j.attempt_count, retries_used=j.retries_used,
               created_ms=j.created_ms, updated_ms=j.updated_ms, finished_ms=j.finished_ms,
               attempts=tuple(_attempt_from_pb(a) for a in j.attempts))


def job_result(r: pb.GetJobResultResponse) -> JobResult:
    return JobResult(JobStatus(r.status), r.finished, r.result, r.error.code, r.error.message,
                     r.error.data)


def floating_limit(f: pb.FloatingLimit, tenant: str) -> FloatingLimitState:
    return FloatingLimitState(
        tenant=tenant, key=f.key, current_max=f.current_max, default_max=f.default_max,
        refresh_interval_ms=f.refresh_interval_ms, last_refreshed_ms=f.last_refreshed_ms,
        metadata=dict(f.metadata), consecutive_failures=f.consecutive_failures,
        next_refresh_ms=f.next_refresh_ms, refresh_in_flight=f.refresh_in_flight,
        holders=f.holders, waiters=f.waiters)


def key_state(k: pb.ConcurrencyKey) -> KeyState:
    return KeyState(k.holders, k.waiters, k.max, k.key, LimitKind(k.kind))


def node_info(r: pb.GetNodeInfoResponse) -> NodeInfo:
    lim = r.limits
    limits = NodeLimits(**{f.name: getattr(lim, f.name) for f in lim.DESCRIPTOR.fields})
    return NodeInfo(r.version, r.node_id, r.durability, r.started_ms, r.caller_tenant,
                    r.caller_tenant_bound, limits, r.default_lease_ms)


def all_have_ids(specs: Sequence[JobSpec]) -> bool:
    return all(s.id for s in specs)


def specs_with_ids(specs: Iterable[JobSpec], make_id: Optional[Any]) -> list[JobSpec]:
    """Fills empty ids with ``make_id()`` (when given) so retries are safe."""
    out = []
    for s in specs:
        if not s.id and make_id is not None:
            s = JobSpec(s.queue, s.payload, make_id(), s.priority, s.start_at_ms, s.retry,
                        s.lease_ms, s.metadata, s.limits)
        out.append(s)
    return out


def job_page(r: pb.ListJobsResponse) -> JobPage:
    return JobPage(tuple(job_from_pb(j) for j in r.jobs), r.next_cursor, r.keys_visited)


def queue_counts(c: pb.QueueCounts) -> QueueCounts:
    return QueueCounts(c.queue, c.scheduled, c.waiting, c.running, c.succeeded, c.failed,
                       c.cancelled)


def _cell(v: pb.QueryValue) -> QueryCell:
    kind = v.WhichOneof("value")
    if kind == "integer":
        return v.integer
    if kind == "real":
        return v.real
    if kind == "text":
        return v.text
    if kind == "blob":
        return v.blob
    return None  # "null", or nothing set


def query_result(r: pb.QueryResponse) -> QueryResult:
    return QueryResult(tuple(r.columns), tuple(tuple(_cell(v) for v in row.values)
                                               for row in r.rows), r.keys_visited)
