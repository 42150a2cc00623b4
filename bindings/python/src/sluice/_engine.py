"""sluice.Engine: the in-process engine, a typed layer over the ``_sluice`` extension."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Iterable, Iterator, Mapping, Optional, Sequence, Tuple, Union

from . import _sluice
from .errors import InvalidArgumentError
from .types import (
    Attempt,
    AttemptStatus,
    CancelResult,
    Durability,
    EnqueueResult,
    FloatingLimitState,
    Heartbeat,
    Job,
    JobResult,
    JobPage,
    JobSpec,
    JobStatus,
    JobView,
    KeyState,
    LeaseResponse,
    Limit,
    LimitKind,
    QueryResult,
    QueueCounts,
    RefreshTask,
    RetryPolicy,
    Stats,
    Task,
)

if TYPE_CHECKING:
    from ._sluice import CancelToken

    from ._sluice import _EnqueueTuple, _JobTuple

__all__ = ["Engine"]

_OUTCOME_SUCCESS = 0
_OUTCOME_FAILURE = 1
_OUTCOME_CANCELLED = 2

BytesLike = Union[bytes, bytearray, memoryview]
# Metadata to match: a mapping, or (key, value) pairs where the order matters (the first pair
# drives the index scan).
MetadataFilter = Union[Mapping[str, str], Iterable[Tuple[str, str]]]

_NO_UPPER_BOUND = 2**63 - 1


def _job_status(value: Union[JobStatus, int, str]) -> int:
    if isinstance(value, str):
        try:
            return JobStatus[value.upper()].value
        except KeyError:
            raise InvalidArgumentError(f"statuses: {value!r} is not a job status") from None
    return int(value)  # out-of-range numbers are refused by the library


def _view(value: Union[JobView, int, str]) -> int:
    if isinstance(value, str):
        try:
            return JobView[value.upper()].value
        except KeyError:
            raise InvalidArgumentError(
                f"view: {value!r} is not 'index', 'summary' or 'full'"
            ) from None
    return int(value)


def _durability(value: Union[str, int, Durability]) -> int:
    if isinstance(value, str):
        try:
            return Durability[value.upper()].value
        except KeyError:
            raise InvalidArgumentError(
                f"durability: {value!r} is not 'sync' or 'async'"
            ) from None
    return int(Durability(value))


def _non_negative(name: str, value: int) -> int:
    if value < 0:
        raise InvalidArgumentError(f"{name}: must not be negative")
    return value


def _enqueue_result(t: _EnqueueTuple) -> EnqueueResult:
    return EnqueueResult(t[0], t[1], JobStatus(t[2]))


def _job(t: _JobTuple) -> Job:
    (id_, tenant, queue, priority, status, cancel_requested, start_at_ms, next_run_ms, lease_ms,
     retry, payload, metadata, limits, attempt_count, retries_used, created_ms, updated_ms,
     finished_ms, attempts) = t
    return Job(
        id_, tenant, queue, priority, JobStatus(status), cancel_requested, start_at_ms,
        next_run_ms, lease_ms, RetryPolicy(*retry), payload, metadata,
        tuple(Limit(LimitKind(l[0]), *l[1:]) for l in limits), attempt_count, retries_used,
        created_ms, updated_ms, finished_ms,
        tuple(Attempt(a[0], a[1], a[2], AttemptStatus(a[3]), *a[4:]) for a in attempts),
    )


class Engine:
    """A Sluice engine over one store directory, in this process.

    Every method is thread-safe and releases the GIL while the engine works, so threads that
    lease, run and report jobs run in parallel. :meth:`lease` blocks for at most ``wait_ms``
    (and cannot be interrupted by Ctrl-C meanwhile). Use it as a context manager, or call
    :meth:`close`; a closed engine raises :class:`sluice.ClosedError` from every call.

    Errors are :class:`sluice.SluiceError` subclasses (see :mod:`sluice.errors`). Ids, tenants,
    queues, worker ids, keys and metadata are ``str``; payloads, results and error data are
    bytes-like in and ``bytes`` out. ``tenant=""`` is the default tenant.
    """

    def __init__(
        self,
        path: Union[str, os.PathLike[str]],
        *,
        durability: Union[str, Durability] = "sync",
        default_lease_ms: int = 0,
        reaper_interval_ms: int = 0,
        max_lease_batch: int = 0,
        max_payload_bytes: int = 0,
    ) -> None:
        """Opens (creating when missing) the store in directory ``path``.

        Args:
            durability: ``"sync"`` (fsync before acknowledging; the default) or ``"async"``
                (survives a killed process, not power loss).
            default_lease_ms: lease of jobs that set none (0: 30 s).
            reaper_interval_ms: how often expired leases are reaped (0: 100 ms).
            max_lease_batch: the largest ``max_tasks`` (0: 1000).
            max_payload_bytes: payload and result cap (0: 1 MiB).
        """
        self._path = os.fspath(path)
        self._closed = False
        self._h = _sluice.Engine(
            self._path,
            _durability(durability),
            _non_negative("default_lease_ms", default_lease_ms),
            _non_negative("reaper_interval_ms", reaper_interval_ms),
            _non_negative("max_lease_batch", max_lease_batch),
            _non_negative("max_payload_bytes", max_payload_bytes),
        )

    # ---- lifecycle ----------------------------------------------------------------------------

    @property
    def path(self) -> str:
        """The store directory."""
        return self._path

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    def close(self) -> None:
        """Stops the engine and closes the store. Calls in flight in other threads drain (a
        waiting lease raises ClosedError); later calls raise ClosedError. Idempotent."""
        self._closed = True
        self._h.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<sluice.Engine {self._path!r} {state}>"

    # ---- producing ----------------------------------------------------------------------------

    def enqueue(
        self,
        queue: str,
        payload: BytesLike = b"",
        *,
        id: str = "",
        tenant: str = "",
        priority: int = 50,
        start_at_ms: int = 0,
        retry: Optional[RetryPolicy] = None,
        lease_ms: int = 0,
        metadata: Optional[Mapping[str, str]] = None,
        limits: Sequence[Limit] = (),
    ) -> EnqueueResult:
        """Enqueues one job on ``queue`` and returns its id.

        Args:
            payload: opaque bytes handed to the worker.
            id: a client id makes the enqueue idempotent (an existing job is returned with
                ``created=False``, unchanged); empty generates a time-ordered UUIDv7.
            priority: 0..99, 0 runs first.
            start_at_ms: run no earlier than this epoch time (0: now).
            retry: the retry policy (None: the engine default).
            lease_ms: lease per attempt (0: the engine default).
            metadata: string map stored with the job and handed to workers.
            limits: concurrency limits, acquired in order before the job runs.

        Raises:
            InvalidArgumentError, TooLargeError: nothing was stored.
        """
        spec = JobSpec(queue, payload, id, tenant, priority, start_at_ms, retry, lease_ms,
                       metadata, limits)
        return _enqueue_result(self._h.enqueue(spec))

    def enqueue_batch(self, specs: Iterable[JobSpec]) -> list[EnqueueResult]:
        """Enqueues many jobs in one atomic write; results are in input order. One bad spec
        rejects the whole batch (its message starts with ``jobs[i]:``) and nothing is stored."""
        return [_enqueue_result(t) for t in self._h.enqueue_batch(list(specs))]

    # ---- working ------------------------------------------------------------------------------

    def lease(
        self,
        queue: str,
        worker_id: str,
        *,
        max_tasks: int = 1,
        wait_ms: int = 0,
        tenant: str = "",
    ) -> list[Task]:
        """Leases up to ``max_tasks`` due tasks of ``queue`` for ``worker_id``.

        When none is due, waits up to ``wait_ms`` for one (the GIL is released meanwhile) and
        returns an empty list on timeout. Run each task, heartbeat it before its
        ``lease_expires_ms``, then report it with :meth:`complete`, :meth:`fail` or
        :meth:`report_cancelled`.
        """
        tasks, _ = self._h.lease(tenant, queue, worker_id, max_tasks, wait_ms, False)
        return [Task(*t, worker_id) for t in tasks]

    def lease_with_refreshes(
        self,
        queue: str,
        worker_id: str,
        *,
        max_tasks: int = 1,
        wait_ms: int = 0,
        tenant: str = "",
    ) -> LeaseResponse:
        """Like :meth:`lease`, but this worker also takes floating-limit refresh tasks for the
        keys its queue uses (see :meth:`complete_refresh`)."""
        tasks, refreshes = self._h.lease(tenant, queue, worker_id, max_tasks, wait_ms, True)
        return LeaseResponse(
            [Task(*t, worker_id) for t in tasks], [RefreshTask(*r) for r in refreshes]
        )

    def heartbeat(self, task: Task) -> Heartbeat:
        """Extends the task's lease by the job's lease duration.

        Raises:
            LeaseLostError: the lease is no longer this worker's; stop and do not report.
        """
        expires, cancel = self._h.heartbeat(task.tenant, task.task_id, task.worker_id,
                                            task.lease_token)
        return Heartbeat(expires, cancel)

    def complete(self, task: Task, result: BytesLike = b"") -> None:
        """Reports success with ``result`` bytes (read back with :meth:`get_result`).

        Raises:
            LeaseLostError: the lease is not live any more; the report was not recorded.
            TooLargeError: ``result`` is over the size cap.
        """
        self._h.complete(task.tenant, task.task_id, task.lease_token, _OUTCOME_SUCCESS, result,
                         "", "", b"", False)

    def fail(
        self,
        task: Task,
        error_code: str,
        message: str = "",
        *,
        data: BytesLike = b"",
        no_retry: bool = False,
    ) -> None:
        """Reports a failure: the job retries per its policy unless ``no_retry`` or none are
        left. ``error_code`` (required) is a short machine-readable reason.

        Raises:
            LeaseLostError: the lease is not live any more; the report was not recorded.
        """
        self._h.complete(task.tenant, task.task_id, task.lease_token, _OUTCOME_FAILURE, b"",
                         error_code, message, data, no_retry)

    def report_cancelled(self, task: Task) -> None:
        """Reports that the worker stopped the task because cancellation was requested
        (:attr:`Heartbeat.cancel_requested`); the job ends cancelled."""
        self._h.complete(task.tenant, task.task_id, task.lease_token, _OUTCOME_CANCELLED, b"",
                         "", "", b"", False)

    # ---- operating ----------------------------------------------------------------------------

    def get_job(self, id: str, *, tenant: str = "", include_attempts: bool = False) -> Job:
        """Reads a job (with its attempt history when ``include_attempts``).

        Raises:
            NotFoundError: no such job in this tenant.
        """
        return _job(self._h.get_job(tenant, id, include_attempts))

    def get_result(self, id: str, *, tenant: str = "") -> JobResult:
        """A job's status, and its result or last error once it finished."""
        status, finished, result, code, message, data = self._h.get_result(tenant, id)
        return JobResult(JobStatus(status), finished, result, code, message, data)

    def cancel(self, id: str, *, tenant: str = "") -> CancelResult:
        """Cancels a job: a pending one ends cancelled at once; a running one gets
        ``cancel_requested`` and ends cancelled when its worker reports.

        Raises:
            FailedPreconditionError: the job already succeeded or failed.
        """
        status, requested = self._h.cancel(tenant, id)
        return CancelResult(JobStatus(status), requested)

    def restart(self, id: str, *, tenant: str = "") -> None:
        """Failed or cancelled -> waiting again, with a fresh retry budget.

        Raises:
            FailedPreconditionError: the job is not failed or cancelled.
        """
        self._h.restart(tenant, id)

    def expedite(self, id: str, *, tenant: str = "") -> None:
        """A scheduled job becomes due now (a waiting one is left as is).

        Raises:
            FailedPreconditionError: the job is running or finished.
        """
        self._h.expedite(tenant, id)

    def delete(self, id: str, *, tenant: str = "") -> None:
        """Removes a job that is not running, with its attempts and limit slots.

        Raises:
            FailedPreconditionError: the job is running.
        """
        self._h.delete(tenant, id)

    def reap_expired(self) -> int:
        """Reaps expired leases now (the background reaper does it too); returns how many."""
        return self._h.reap_expired()

    def stats(self) -> Stats:
        """Engine counters since open and current gauges."""
        return Stats(*self._h.stats())

    # ---- concurrency limits -------------------------------------------------------------------

    def heartbeat_refresh(self, refresh: RefreshTask) -> int:
        """Extends a refresh task's lease; returns the new expiry (epoch ms)."""
        return self._h.refresh_heartbeat(refresh.tenant, refresh.key, refresh.lease_token)

    def complete_refresh(self, refresh: RefreshTask, new_max: int) -> None:
        """Reports the floating key's newly computed max (0 pauses the key); raising it grants
        waiting jobs at once."""
        self._h.refresh_complete(refresh.tenant, refresh.key, refresh.lease_token, True,
                                 new_max, "", "")

    def fail_refresh(self, refresh: RefreshTask, error_code: str, message: str = "") -> None:
        """Reports that computing the max failed: the key keeps its last value and the refresh
        is retried with exponential backoff."""
        self._h.refresh_complete(refresh.tenant, refresh.key, refresh.lease_token, False, 0,
                                 error_code, message)

    def floating_limit(self, key: str, *, tenant: str = "") -> FloatingLimitState:
        """A floating key's state.

        Raises:
            NotFoundError: the engine has no state for this key.
        """
        return FloatingLimitState(*self._h.floating_limit_get(tenant, key))

    def set_floating_limit(self, key: str, max: int, *, tenant: str = "") -> None:
        """Operator override of a floating key's current max (0 pauses it); a raise grants
        waiting jobs at once."""
        self._h.floating_limit_set(tenant, key, max)

    def concurrency_key(
        self, key: str, *, kind: LimitKind = LimitKind.FIXED, tenant: str = ""
    ) -> KeyState:
        """Live holders, waiters and max of a concurrency key (zeros when idle)."""
        return KeyState(*self._h.concurrency_key(tenant, int(kind), key))

    # ---- finding jobs -------------------------------------------------------------------------

    def list_jobs(
        self,
        *,
        tenant: str = "",
        queue: str = "",
        statuses: Iterable[Union[JobStatus, int, str]] = (),
        id: str = "",
        id_prefix: str = "",
        metadata: Optional[MetadataFilter] = None,
        created_from_ms: int = 0,
        created_to_ms: Optional[int] = None,
        newest_first: bool = False,
        limit: int = 50,
        cursor: str = "",
        view: Union[JobView, str] = JobView.SUMMARY,
    ) -> JobPage:
        """One page of ``tenant``'s jobs matching the filter, in creation order.

        Every filter narrows the listing: ``queue`` ("" = every queue), ``statuses`` (empty =
        every status; ``JobStatus`` or names like ``"failed"``), ``id`` (exactly this job),
        ``id_prefix``, ``metadata`` (every pair must match), and the creation-time range
        ``[created_from_ms, created_to_ms)`` (None: no upper bound). Metadata, queue, statuses
        and the time range are indexed; the first metadata pair drives the scan when there is
        one. Pass the previous page's ``next_cursor`` as ``cursor`` to continue; a page may be
        short (even empty) while more remain. See :meth:`iter_jobs`.

        Raises:
            InvalidArgumentError: a bad filter, ``limit`` outside 1..1000, or a cursor that is
                malformed or from another filter or order.
        """
        jobs, next_cursor, keys_visited = self._h.list_jobs(
            tenant, queue, [_job_status(s) for s in statuses], id, id_prefix, metadata,
            created_from_ms, _NO_UPPER_BOUND if created_to_ms is None else created_to_ms,
            newest_first, limit, cursor, _view(view),
        )
        return JobPage([_job(t) for t in jobs], next_cursor, keys_visited)

    def iter_jobs(
        self,
        *,
        tenant: str = "",
        queue: str = "",
        statuses: Iterable[Union[JobStatus, int, str]] = (),
        id: str = "",
        id_prefix: str = "",
        metadata: Optional[MetadataFilter] = None,
        created_from_ms: int = 0,
        created_to_ms: Optional[int] = None,
        newest_first: bool = False,
        page_size: int = 100,
        view: Union[JobView, str] = JobView.SUMMARY,
    ) -> Iterator[Job]:
        """Every job matching the filter (see :meth:`list_jobs`), fetched ``page_size`` at a
        time; the GIL is released for each page. Jobs that match throughout are yielded exactly
        once while writes continue."""
        statuses = [_job_status(s) for s in statuses]
        if metadata is not None and not isinstance(metadata, Mapping):
            metadata = list(metadata)  # read it once, not once per page
        cursor = ""
        while True:
            page = self.list_jobs(
                tenant=tenant, queue=queue, statuses=statuses, id=id, id_prefix=id_prefix,
                metadata=metadata, created_from_ms=created_from_ms,
                created_to_ms=created_to_ms, newest_first=newest_first, limit=page_size,
                cursor=cursor, view=view,
            )
            yield from page.jobs
            cursor = page.next_cursor
            if not cursor:
                return

    def count_jobs(self, tenant: str = "", queue: str = "") -> list[QueueCounts]:
        """Job counts by status of one ``queue`` of ``tenant``, or of every queue of the tenant
        that ever had jobs (``queue=""``). Read from counters kept with the transitions: no
        scan of jobs."""
        return [
            QueueCounts(q, {JobStatus(i): n for i, n in enumerate(counts)})
            for q, counts in self._h.count_jobs(tenant, queue)
        ]

    def query(
        self,
        tenant: str,
        sql: str,
        *,
        timeout_ms: Optional[int] = None,
        max_rows: Optional[int] = None,
        max_result_bytes: Optional[int] = None,
        cancel_token: Optional[CancelToken] = None,
    ) -> QueryResult:
        """Runs one read-only SQL statement (SQLite dialect) over ``tenant``'s virtual tables
        jobs, job_metadata, attempts, queues, concurrency_keys and floating_limits
        (docs/query.md). The tenant is fixed here, never by the SQL. The GIL is released while
        it runs; to stop it early, call ``cancel_token.cancel()`` from another thread.

        Args:
            timeout_ms: SluiceTimeoutError after this long (None: 5000).
            max_rows: TooLargeError beyond this many rows (None: 10000).
            max_result_bytes: TooLargeError beyond this size (None: 4 MiB).
            cancel_token: a :class:`sluice.CancelToken`; once cancelled, the query raises
                CancelledError.

        Raises:
            InvalidArgumentError: the SQL does not parse or would write.
            SluiceTimeoutError, TooLargeError, CancelledError: a bound stopped it.
        """
        columns, rows, keys_visited = self._h.query(
            tenant, sql,
            _non_negative("timeout_ms", timeout_ms or 0),
            _non_negative("max_rows", max_rows or 0),
            _non_negative("max_result_bytes", max_result_bytes or 0),
            cancel_token,
        )
        return QueryResult(tuple(columns), rows, keys_visited)

    def verify_indexes(self) -> None:
        """Operator check (fsck): verifies every index entry and counter against the job
        records. Reads the whole store.

        Raises:
            CorruptionError: naming the first mismatch.
        """
        self._h.verify_indexes()
