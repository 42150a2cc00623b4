"""The blocking client: every RPC of sluice.v1 as a typed method, plus job handles.

    with Client("127.0.0.1:7070", token=token) as client:
        job = client.enqueue("email", json={"to": "ada@example.com"})
        print(job.await_result(timeout=30).json())

Thread-safe: one Client (one HTTP/2 channel) may be shared by many threads.
"""

from __future__ import annotations

import math
import threading
import time
from typing import (
    Any,
    FrozenSet,
    Iterable,
    Iterator,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    TypeVar,
    cast,
)

import grpc

from . import _convert as cv
from ._convert import _MISSING
from ._pb import pb
from ._requests import (
    RESULT_WAIT_SLICE_MS,
    MetadataFilter,
    RequestBuilder,
    bounded_deadline,
    call_status,
    list_jobs_request,
    map_error,
    result_wait_pause,
)
from .cancellation import CancellationToken
from .connection import (
    METHODS,
    QUERY_RETRYABLE_CODES,
    RETRYABLE_CODES,
    Connection,
    RpcRetryPolicy,
    check_wait,
)
from ._stream import LeaseStream
from .errors import CancelledError, SluiceTimeoutError, UnavailableError, closed_client
from .types import (
    CancelResult,
    EnqueueResult,
    FloatingLimitState,
    Heartbeat,
    Job,
    JobPage,
    JobResult,
    JobSpec,
    JobStatus,
    JobView,
    KeyState,
    LeaseResponse,
    Limit,
    LimitKind,
    NodeInfo,
    Outcome,
    QueryResult,
    QueueCounts,
    RefreshTask,
    Report,
    ReportStatus,
    RetryPolicy,
    Task,
)

__all__ = ["Client", "JobHandle"]

R = TypeVar("R")


def make_connection(target: str, *, token: Optional[str], tenant: str, tls: bool,
                    root_certificates: Optional[bytes], timeout: float,
                    retry: Optional[RpcRetryPolicy],
                    channel_options: Sequence[Tuple[str, Any]],
                    generate_ids: bool) -> Connection:
    return Connection(target=target, token=token, tenant=tenant, tls=tls,
                      root_certificates=root_certificates, timeout=timeout,
                      retry=retry or RpcRetryPolicy(), channel_options=tuple(channel_options),
                      generate_ids=generate_ids)


class JobHandle:
    """A job by id, bound to the client that made it; ``created`` and ``status`` are from the
    enqueue (None for handles made with :meth:`Client.job`)."""

    def __init__(self, client: Client, id: str, tenant: Optional[str] = None,
                 enqueued: Optional[EnqueueResult] = None) -> None:
        self.client = client
        self.id = id
        self.tenant = tenant
        self.created: Optional[bool] = enqueued.created if enqueued else None
        self.status: Optional[JobStatus] = enqueued.status if enqueued else None

    def __repr__(self) -> str:
        return f"JobHandle({self.id!r})"

    def get(self, *, include_attempts: bool = False) -> Job:
        return self.client.get_job(self.id, include_attempts=include_attempts, tenant=self.tenant)

    def result(self) -> JobResult:
        """The job's status and, once finished, its result or last error (no waiting)."""
        return self.client.get_result(self.id, tenant=self.tenant)

    def await_result(self, timeout: Optional[float] = None) -> JobResult:
        """Waits until the job is finished (succeeded, failed or cancelled) and returns its
        result, using the server-side wait (no polling).

        Raises:
            SluiceTimeoutError: ``timeout`` seconds passed first (None waits for ever).
        """
        return self.client.await_result(self.id, timeout=timeout, tenant=self.tenant)

    def cancel(self) -> CancelResult:
        return self.client.cancel(self.id, tenant=self.tenant)

    def restart(self) -> None:
        self.client.restart(self.id, tenant=self.tenant)

    def expedite(self) -> None:
        self.client.expedite(self.id, tenant=self.tenant)

    def delete(self) -> None:
        self.client.delete(self.id, tenant=self.tenant)


class Client:
    """A blocking client of one sluiced node (see :class:`~sluice_client.Connection` for the
    arguments). Every method takes ``timeout`` (seconds per send; the client's default when
    None) and, where the RPC has one, ``tenant`` (the client's tenant when None).

    Errors are :class:`~sluice_client.errors.SluiceError` subclasses. Idempotent calls are
    retried on UNAVAILABLE and DEADLINE_EXCEEDED with exponential backoff and jitter (enqueue
    only with an id, which the client generates by default).
    """

    def __init__(self, target: Optional[str] = None, *, token: Optional[str] = None,
                 tenant: str = "", tls: bool = False, root_certificates: Optional[bytes] = None,
                 timeout: float = 30.0, retry: Optional[RpcRetryPolicy] = None,
                 channel_options: Sequence[Tuple[str, Any]] = (), generate_ids: bool = True,
                 connection: Optional[Connection] = None,
                 interceptors: Sequence[Any] = ()) -> None:
        if connection is None:
            if target is None:
                raise TypeError("Client needs a target (host:port) or a connection")
            connection = make_connection(target, token=token, tenant=tenant, tls=tls,
                                         root_certificates=root_certificates, timeout=timeout,
                                         retry=retry, channel_options=channel_options,
                                         generate_ids=generate_ids)
        self.connection = connection
        self._req = RequestBuilder(connection)
        if connection.secure:
            channel = grpc.secure_channel(connection.target, connection.credentials(),
                                          options=connection.options())
        else:
            channel = grpc.insecure_channel(connection.target, options=connection.options())
        self._raw_channel = channel
        if interceptors:
            channel = grpc.intercept_channel(channel, *interceptors)
        self._channel = channel
        self._metadata = connection.metadata()
        self._stubs: dict[str, grpc.UnaryUnaryMultiCallable[Any, Any]] = {
            m.name: channel.unary_unary(m.path, request_serializer=m.request_type.SerializeToString,
                                        response_deserializer=m.response_type.FromString)
            for m in METHODS.values() if not m.streaming}
        lease_stream = METHODS["LeaseStream"]
        self._lease_stream = channel.stream_stream(
            lease_stream.path, request_serializer=lease_stream.request_type.SerializeToString,
            response_deserializer=lease_stream.response_type.FromString)
        self._closed = False

    # ---- plumbing ---------------------------------------------------------------------------

    def close(self) -> None:
        """Closes the channel; calls in flight fail. Idempotent."""
        self._closed = True
        self._raw_channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, name: str, request: Any, response_type: type[R], timeout: Optional[float],
              idempotent: Optional[bool] = None, wait_ms: int = 0,
              retry_codes: FrozenSet[grpc.StatusCode] = RETRYABLE_CODES,
              cancellation: Optional[CancellationToken] = None,
              end: Optional[float] = None) -> R:
        if self._closed:
            raise closed_client(name)
        method = METHODS[name]
        retryable = method.idempotent if idempotent is None else idempotent
        policy = self.connection.retry
        deadline = self._req.deadline(timeout, wait_ms)
        attempt = 0
        while True:
            attempt += 1
            send_deadline = bounded_deadline(deadline, end)
            try:
                if cancellation is not None:
                    return cast(R, self._send_cancellable(name, request, send_deadline,
                                                          cancellation))
                return cast(R, self._stubs[name](request, timeout=send_deadline,
                                                 metadata=self._metadata))
            except grpc.RpcError as e:
                status = call_status(e)
                pause = policy.backoff(attempt)
                if (retryable and status is not None and status[0] in retry_codes
                        and attempt < policy.max_attempts and not self._closed
                        and (end is None or time.monotonic() + pause < end)):
                    time.sleep(pause)
                    continue
                raise map_error(e, attempt) from e

    def _send_cancellable(self, name: str, request: Any, deadline: Optional[float],
                          token: CancellationToken) -> Any:
        """One send that is cancelled (the server sees the call go away) when ``token`` is."""
        if token.cancelled:
            raise CancelledError(f"{name} was cancelled before it was sent",
                                 grpc_code=grpc.StatusCode.CANCELLED)
        future = self._stubs[name].future(request, timeout=deadline, metadata=self._metadata)
        done = threading.Event()
        future.add_done_callback(lambda _: done.set())
        while not done.wait(0.02):
            if token.cancelled:
                future.cancel()
                raise CancelledError(f"{name} was cancelled ({token.reason or 'cancelled'})",
                                     grpc_code=grpc.StatusCode.CANCELLED)
        return future.result()

    # ---- producing --------------------------------------------------------------------------

    def enqueue(self, queue: str, payload: bytes = b"", *, json: Any = _MISSING,
                id: Optional[str] = None, priority: Optional[int] = None, start_at_ms: int = 0,
                retry: Optional[RetryPolicy] = None, lease_ms: int = 0,
                metadata: Optional[Mapping[str, str]] = None, limits: Sequence[Limit] = (),
                tenant: Optional[str] = None, timeout: Optional[float] = None) -> JobHandle:
        """Stores one job and returns its handle.

        ``payload`` is bytes, or give ``json=`` a JSON-serialisable value. ``id`` None gets a
        client-generated UUIDv7 (``generate_ids``), so a retried call never creates a second
        job; an existing id returns that job with ``created`` False. ``priority`` 0..99 (0 runs
        first; None: 50), ``start_at_ms`` epoch ms (0: now), ``retry`` the job's retry policy
        (None: the server's), ``lease_ms`` (0: the server's default), ``limits`` its
        concurrency limits, acquired in order.
        """
        spec = self._req.spec(queue, payload, json, id, priority, start_at_ms, retry, lease_ms,
                              metadata, limits)
        req, idem = self._req.enqueue(spec, tenant)
        r = self._call("Enqueue", req, pb.EnqueueResponse, timeout, idempotent=idem)
        return JobHandle(self, r.id, tenant, cv.enqueue_result(r))

    def enqueue_batch(self, specs: Iterable[JobSpec], *, tenant: Optional[str] = None,
                      timeout: Optional[float] = None) -> list[JobHandle]:
        """Stores many jobs in one atomic write (all or none); handles in input order."""
        req, idem = self._req.enqueue_batch(specs, tenant)
        r = self._call("EnqueueBatch", req, pb.EnqueueBatchResponse, timeout, idempotent=idem)
        return [JobHandle(self, x.id, tenant, cv.enqueue_result(x)) for x in r.results]

    def job(self, id: str, *, tenant: Optional[str] = None) -> JobHandle:
        """A handle for an existing job id (no call is made)."""
        return JobHandle(self, id, tenant)

    # ---- working ----------------------------------------------------------------------------

    def lease(self, queue: str, worker_id: str, *, max_tasks: int = 1, wait_ms: int = 0,
              tenant: Optional[str] = None, timeout: Optional[float] = None,
              reports: Sequence[Report] = ()) -> LeaseResponse:
        """Leases up to ``max_tasks`` due tasks of ``queue``, waiting up to ``wait_ms`` for one
        (long-poll; empty on timeout). Also returns the floating-limit refresh tasks the server
        handed this worker: run and report them (or use :class:`~sluice_client.Worker`).
        Never retried (a lost answer would strand leased tasks).

        ``reports`` (of the call's tenant) are applied first, like :meth:`report_outcomes`,
        and answered in ``report_statuses``: report and fetch in one round trip. A bad lease
        request applies none of them; when the call fails as a whole they may or may not have
        been applied (a repeat is fenced by the lease token: it gets ``lease_lost``)."""
        t = self._req.tenant(tenant)
        req = self._req.lease(queue, worker_id, max_tasks, wait_ms, tenant, reports)
        r = self._call("LeaseTasks", req, pb.LeaseTasksResponse, timeout, wait_ms=wait_ms)
        return cv.lease_response(r, t, worker_id)

    def lease_stream(self, *, tenant: Optional[str] = None) -> LeaseStream:
        """Opens a lease stream: :meth:`lease` requests over one ``LeaseStream`` call, answered
        in order, so the next may be sent before the previous is answered and no request pays
        for a call's set-up. ``send`` / ``receive`` pipeline; ``lease`` does one round trip;
        ``close`` half-closes, ``cancel`` ends it. Never retried: open a new one after it ended
        (a failed request ends it; the requests after it were not applied)."""
        if self._closed:
            raise closed_client("LeaseStream")
        return LeaseStream(self._lease_stream, self._metadata, self._req, tenant)

    def heartbeat(self, task: Task, *, timeout: Optional[float] = None) -> Heartbeat:
        """Extends the task's lease; says whether its cancellation was requested.

        Raises:
            LeaseLostError: the lease is no longer this worker's; stop and do not report.
        """
        r = self._call("Heartbeat", self._req.heartbeat(task), pb.HeartbeatResponse, timeout)
        return cv.heartbeat(r)

    def report_outcome(self, task: Task, outcome: Outcome, *,
                       timeout: Optional[float] = None) -> None:
        """Ends the attempt with ``outcome`` (see :meth:`complete`, :meth:`fail`,
        :meth:`report_cancelled`).

        Raises:
            LeaseLostError: the lease is not live any more; nothing was recorded.
        """
        self._call("ReportOutcome", self._req.report(task, outcome), pb.ReportOutcomeResponse,
                   timeout)

    def complete(self, task: Task, result: bytes = b"", *, json: Any = _MISSING,
                 timeout: Optional[float] = None) -> None:
        """Reports success with ``result`` bytes (or ``json=`` a value)."""
        self.report_outcome(task, Outcome.success(cv.payload_bytes(result, json)),
                            timeout=timeout)

    def fail(self, task: Task, error_code: str, message: str = "", *, data: bytes = b"",
             no_retry: bool = False, timeout: Optional[float] = None) -> None:
        """Reports a failure: the job retries per its policy unless ``no_retry`` or none are
        left. ``error_code`` (required) is a short machine-readable reason."""
        self.report_outcome(task, Outcome.failure(error_code, message, data=data,
                                                  no_retry=no_retry), timeout=timeout)

    def report_cancelled(self, task: Task, *, timeout: Optional[float] = None) -> None:
        """Reports that the task stopped because its cancellation was requested."""
        self.report_outcome(task, Outcome.cancelled(), timeout=timeout)

    def report_outcomes(self, reports: Sequence[Report], *, tenant: Optional[str] = None,
                        timeout: Optional[float] = None) -> list[ReportStatus]:
        """Ends many attempts in one atomic write; each report gets its own status (a stale
        one is refused alone). ``tenant`` defaults to the tasks' tenant."""
        r = self._call("ReportOutcomes", self._req.reports(reports, tenant),
                       pb.ReportOutcomesResponse, timeout)
        return cv.report_statuses(r)

    def heartbeat_refresh(self, refresh: RefreshTask, *,
                          timeout: Optional[float] = None) -> int:
        """Extends a refresh task's lease; returns the new expiry (epoch ms)."""
        r = self._call("HeartbeatRefresh", self._req.heartbeat_refresh(refresh),
                       pb.HeartbeatRefreshResponse, timeout)
        return r.lease_expires_ms

    def complete_refresh(self, refresh: RefreshTask, new_max: int, *,
                         timeout: Optional[float] = None) -> None:
        """Reports the floating key's newly computed max (0 pauses the key)."""
        self._call("ReportRefreshOutcome", self._req.refresh_outcome(refresh, new_max),
                   pb.ReportRefreshOutcomeResponse, timeout)

    def fail_refresh(self, refresh: RefreshTask, error_code: str, message: str = "", *,
                     timeout: Optional[float] = None) -> None:
        """Reports that computing the max failed: the key keeps its value and the server
        retries the refresh with backoff."""
        self._call("ReportRefreshOutcome",
                   self._req.refresh_outcome(refresh, None, error_code, message),
                   pb.ReportRefreshOutcomeResponse, timeout)

    # ---- operating --------------------------------------------------------------------------

    def get_job(self, id: str, *, include_attempts: bool = False, tenant: Optional[str] = None,
                timeout: Optional[float] = None) -> Job:
        """Reads a job (with its attempt history when ``include_attempts``).

        Raises:
            NotFoundError: no such job in this tenant.
        """
        req = pb.GetJobRequest(tenant=self._req.tenant(tenant), id=id,
                               include_attempts=include_attempts)
        return cv.job_from_pb(self._call("GetJob", req, pb.GetJobResponse, timeout).job)

    def get_result(self, id: str, *, wait_ms: int = 0, tenant: Optional[str] = None,
                   timeout: Optional[float] = None) -> JobResult:
        """The job's status and, once finished, its result or last error. With ``wait_ms``
        the server waits up to that long for the job to finish."""
        return self._get_result(id, wait_ms, tenant, timeout)

    def _get_result(self, id: str, wait_ms: int, tenant: Optional[str],
                    timeout: Optional[float], end: Optional[float] = None) -> JobResult:
        """GetJobResult; every send and retry ends by ``end`` (time.monotonic()) when given."""
        req = pb.GetJobResultRequest(tenant=self._req.tenant(tenant), id=id, wait_ms=wait_ms)
        return cv.job_result(self._call("GetJobResult", req, pb.GetJobResultResponse, timeout,
                                          wait_ms=wait_ms, end=end))

    def await_result(self, id: str, *, timeout: Optional[float] = None,
                     tenant: Optional[str] = None) -> JobResult:
        """Waits (server-side, in slices) until the job is finished; see
        :meth:`JobHandle.await_result`."""
        if timeout is not None and math.isinf(check_wait(timeout, "timeout")):
            timeout = None  # no limit
        end = None if timeout is None else time.monotonic() + timeout
        failures = 0
        while True:
            # Every send and retry of a slice ends by ``end``, and transient failures are
            # retried until then: a stalled or restarting server neither holds the caller past
            # its timeout (with the client's own per-send deadlines) nor ends the wait early.
            left_ms = RESULT_WAIT_SLICE_MS if end is None else int((end - time.monotonic()) * 1000)
            wait_ms = max(0, min(left_ms, RESULT_WAIT_SLICE_MS))
            try:
                r = self._get_result(id, wait_ms, tenant, None, end)
            except (UnavailableError, SluiceTimeoutError) as e:
                failures += 1
                pause = result_wait_pause(e, id, timeout, end, failures, self.connection.retry)
                time.sleep(pause)
                continue
            failures = 0
            if r.finished:
                return r
            if end is not None and time.monotonic() >= end:
                raise SluiceTimeoutError(f"job {id!r} not finished after {timeout} s "
                                         f"(status {r.status.name})")

    def cancel(self, id: str, *, tenant: Optional[str] = None,
               timeout: Optional[float] = None) -> CancelResult:
        """Cancels a job: a pending one ends cancelled at once; a running one gets
        ``cancel_requested`` and its worker learns on its next heartbeat.

        Raises:
            FailedPreconditionError: the job already succeeded or failed.
        """
        req = self._req.job_ref(pb.CancelJobRequest, id, tenant)
        return cv.cancel_result(self._call("CancelJob", req, pb.CancelJobResponse, timeout))

    def restart(self, id: str, *, tenant: Optional[str] = None,
                timeout: Optional[float] = None) -> None:
        """Failed or cancelled -> waiting again, with a fresh retry budget (not retried).

        Raises:
            FailedPreconditionError: the job is not failed or cancelled.
        """
        req = self._req.job_ref(pb.RestartJobRequest, id, tenant)
        self._call("RestartJob", req, pb.RestartJobResponse, timeout)

    def expedite(self, id: str, *, tenant: Optional[str] = None,
                 timeout: Optional[float] = None) -> None:
        """A scheduled job becomes due now (a waiting one is left as is).

        Raises:
            FailedPreconditionError: the job is running or finished.
        """
        req = self._req.job_ref(pb.ExpediteJobRequest, id, tenant)
        self._call("ExpediteJob", req, pb.ExpediteJobResponse, timeout)

    def delete(self, id: str, *, tenant: Optional[str] = None,
               timeout: Optional[float] = None) -> None:
        """Removes a job that is not running, with its attempts (not retried).

        Raises:
            FailedPreconditionError: the job is running.
        """
        req = self._req.job_ref(pb.DeleteJobRequest, id, tenant)
        self._call("DeleteJob", req, pb.DeleteJobResponse, timeout)

    # ---- concurrency limits -----------------------------------------------------------------

    def floating_limit(self, key: str, *, tenant: Optional[str] = None,
                       timeout: Optional[float] = None) -> FloatingLimitState:
        """A floating key's state.

        Raises:
            NotFoundError: the server has no state for this key.
        """
        t = self._req.tenant(tenant)
        req = pb.GetFloatingLimitRequest(tenant=t, key=key)
        r = self._call("GetFloatingLimit", req, pb.GetFloatingLimitResponse, timeout)
        return cv.floating_limit(r.limit, t)

    def list_floating_limits(self, *, after_key: str = "", limit: int = 0,
                             tenant: Optional[str] = None,
                             timeout: Optional[float] = None) -> list[FloatingLimitState]:
        """One page of the tenant's floating keys in key order (``limit`` 0: 100)."""
        t = self._req.tenant(tenant)
        req = pb.ListFloatingLimitsRequest(tenant=t, after_key=after_key, limit=limit)
        r = self._call("ListFloatingLimits", req, pb.ListFloatingLimitsResponse, timeout)
        return [cv.floating_limit(f, t) for f in r.limits]

    def iter_floating_limits(self, *, page_size: int = 100, tenant: Optional[str] = None,
                             timeout: Optional[float] = None) -> Iterator[FloatingLimitState]:
        """Every floating key of the tenant, page by page."""
        after = ""
        while True:
            page = self.list_floating_limits(after_key=after, limit=page_size, tenant=tenant,
                                             timeout=timeout)
            yield from page
            if len(page) < page_size:
                return
            after = page[-1].key

    def set_floating_limit(self, key: str, max: int, *, tenant: Optional[str] = None,
                           timeout: Optional[float] = None) -> None:
        """Operator override of a floating key's current max (0 pauses it)."""
        req = pb.SetFloatingLimitRequest(tenant=self._req.tenant(tenant), key=key, max=max)
        self._call("SetFloatingLimit", req, pb.SetFloatingLimitResponse, timeout)

    def concurrency_key(self, key: str, *, kind: LimitKind = LimitKind.FIXED,
                        tenant: Optional[str] = None,
                        timeout: Optional[float] = None) -> KeyState:
        """Live holders, waiters and max of a concurrency key (zeros when idle)."""
        r = self._call("GetConcurrencyKey", self._req.concurrency_key(key, kind, tenant),
                       pb.GetConcurrencyKeyResponse, timeout)
        return cv.key_state(r.key)

    def list_concurrency_keys(self, *, limit: int = 0, tenant: Optional[str] = None,
                              timeout: Optional[float] = None) -> list[KeyState]:
        """The tenant's active keys (with holders or waiters), busiest first."""
        req = pb.ListConcurrencyKeysRequest(tenant=self._req.tenant(tenant), limit=limit)
        r = self._call("ListConcurrencyKeys", req, pb.ListConcurrencyKeysResponse, timeout)
        return [cv.key_state(k) for k in r.keys]

    # ---- finding jobs -----------------------------------------------------------------------

    def list_jobs(self, queue: str = "", *, statuses: Iterable[JobStatus] = (), id: str = "",
                  id_prefix: str = "", metadata: MetadataFilter = None,
                  created_from_ms: int = 0, created_to_ms: int = 0, newest_first: bool = False,
                  limit: int = 0, cursor: str = "", view: JobView = JobView.SUMMARY,
                  tenant: Optional[str] = None, timeout: Optional[float] = None) -> JobPage:
        """One page of the tenant's jobs, in creation order (``newest_first`` reverses it).

        Every filter narrows the listing: ``queue`` ("" = every queue), ``statuses`` (any of
        them), ``id`` (exactly this job), ``id_prefix``, ``metadata`` (every pair must match;
        the first drives the server's index scan, so put the most selective first), and the
        creation time ``created_from_ms <= created_ms < created_to_ms`` (0 = unbounded).
        ``limit`` is the page size (0: 50; the server caps it). Pass the page's
        ``next_cursor`` back as ``cursor``, with the same filter and order, for the next page;
        a page may be short or empty while ``next_cursor`` is set. See :meth:`iter_jobs`.

        Raises:
            InvalidArgumentError: a bad filter, or a cursor of another filter or order.
        """
        req = list_jobs_request(self._req.tenant(tenant), queue, statuses, id, id_prefix,
                                metadata, created_from_ms, created_to_ms, newest_first, limit,
                                cursor, view)
        return cv.job_page(self._call("ListJobs", req, pb.ListJobsResponse, timeout))

    def iter_jobs(self, queue: str = "", *, statuses: Iterable[JobStatus] = (), id: str = "",
                  id_prefix: str = "", metadata: MetadataFilter = None,
                  created_from_ms: int = 0, created_to_ms: int = 0, newest_first: bool = False,
                  page_size: int = 0, view: JobView = JobView.SUMMARY,
                  tenant: Optional[str] = None,
                  timeout: Optional[float] = None) -> Iterator[Job]:
        """Every job matching the filter (see :meth:`list_jobs`), fetching page after page as
        the loop asks. Jobs that match throughout are seen exactly once while others change."""
        statuses = tuple(statuses)
        cursor = ""
        while True:
            page = self.list_jobs(queue, statuses=statuses, id=id, id_prefix=id_prefix,
                                  metadata=metadata, created_from_ms=created_from_ms,
                                  created_to_ms=created_to_ms, newest_first=newest_first,
                                  limit=page_size, cursor=cursor, view=view, tenant=tenant,
                                  timeout=timeout)
            yield from page.jobs
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    def count_jobs(self, queue: str = "", *, tenant: Optional[str] = None,
                   timeout: Optional[float] = None) -> list[QueueCounts]:
        """Job counts by status for ``queue``, or for every queue of the tenant ("" ), in
        queue order; served from counters (no scan)."""
        req = pb.CountJobsRequest(tenant=self._req.tenant(tenant), queue=queue)
        r = self._call("CountJobs", req, pb.CountJobsResponse, timeout)
        return [cv.queue_counts(c) for c in r.queues]

    def query(self, sql: str, *, timeout_ms: int = 0, max_rows: int = 0,
              cancellation: Optional[CancellationToken] = None, tenant: Optional[str] = None,
              timeout: Optional[float] = None) -> QueryResult:
        """Runs one read-only SQL statement (SQLite) over the tenant's tables (jobs,
        job_metadata, attempts, queues, concurrency_keys, floating_limits; docs/query.md).
        Rows are tuples of ``int``, ``float``, ``str``, ``bytes`` or ``None``.

        ``timeout_ms`` is the query's time budget (0: the server's maximum; it caps it); the
        call's deadline is that plus ``timeout``, so the server's answer comes first.
        ``max_rows`` caps the rows (0: the server's maximum). Setting ``cancellation`` (or
        closing the client) cancels the call, and the server stops the query. Retried only
        when it never reached the server (UNAVAILABLE).

        Raises:
            SluiceTimeoutError: the time budget ran out (``status_name`` ``"timeout"``).
            TooLargeError: more rows than allowed, or a result over the server's byte cap.
            InvalidArgumentError: SQL that does not parse or would write.
            CancelledError: ``cancellation`` was set while the query ran.
        """
        req = pb.QueryRequest(tenant=self._req.tenant(tenant), sql=sql, timeout_ms=timeout_ms,
                              max_rows=max_rows)
        r = self._call("Query", req, pb.QueryResponse, timeout, idempotent=True,
                       wait_ms=timeout_ms, retry_codes=QUERY_RETRYABLE_CODES,
                       cancellation=cancellation)
        return cv.query_result(r)

    def node_info(self, *, timeout: Optional[float] = None) -> NodeInfo:
        """The node's version, caps and the caller's tenant."""
        r = self._call("GetNodeInfo", pb.GetNodeInfoRequest(), pb.GetNodeInfoResponse, timeout)
        return cv.node_info(r)
