"""Value types of sluice_client: what goes to sluiced and what comes back.

They mirror the in-process ``sluice`` module's types in names and meaning (``JobSpec``,
``Limit``, ``Task``, ``Job``, ``JobResult``, ...), but enum values are the wire's
(``sluice.v1`` in proto/sluice/v1/sluice.proto). All are frozen dataclasses or ``IntEnum``s.
Times are Unix epoch milliseconds of the server's clock; durations are milliseconds. Payloads,
results and error data are ``bytes``; the ``json()`` helpers decode them.
"""

from __future__ import annotations

import enum
import json as _json
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence, Tuple, Union

from .errors import SluiceError, from_report_status

__all__ = [
    "JobStatus",
    "AttemptStatus",
    "LimitKind",
    "RetryPolicy",
    "Limit",
    "JobSpec",
    "EnqueueResult",
    "Task",
    "RefreshTask",
    "LeaseResponse",
    "Heartbeat",
    "Outcome",
    "OutcomeKind",
    "Report",
    "ReportStatus",
    "CancelResult",
    "Attempt",
    "Job",
    "JobResult",
    "FloatingLimitState",
    "KeyState",
    "NodeLimits",
    "NodeInfo",
    "JobView",
    "JobPage",
    "QueueCounts",
    "QueryCell",
    "QueryResult",
    "encode_json",
    "decode_json",
]


def encode_json(value: Any) -> bytes:
    """The payload/result encoding of the JSON helpers: compact UTF-8 JSON."""
    return _json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def decode_json(data: bytes) -> Any:
    """Decodes bytes written by :func:`encode_json` (or any UTF-8 JSON)."""
    return _json.loads(data)


class JobStatus(enum.IntEnum):
    """A job's status (wire ``JobStatus``). SCHEDULED vs WAITING is derived from the clock."""

    SCHEDULED = 1
    WAITING = 2
    RUNNING = 3
    SUCCEEDED = 4
    FAILED = 5
    CANCELLED = 6

    @property
    def terminal(self) -> bool:
        """True for SUCCEEDED, FAILED and CANCELLED."""
        return self >= JobStatus.SUCCEEDED


class AttemptStatus(enum.IntEnum):
    """An attempt's status (wire ``AttemptStatus``)."""

    RUNNING = 1
    SUCCEEDED = 2
    FAILED = 3
    CANCELLED = 4


class LimitKind(enum.IntEnum):
    """A concurrency limit's kind (wire ``ConcurrencyLimit.Kind``)."""

    FIXED = 0
    FLOATING = 1


@dataclass(frozen=True)
class RetryPolicy:
    """How a failed attempt of a job is retried. Before retry ``r`` (1-based) the job waits
    ``min(max_backoff_ms, initial_backoff_ms * multiplier ** (r - 1))``, or a uniform draw from
    ``[0, that]`` with ``jitter``. Omitting the policy uses the server's default."""

    max_retries: int = 3
    initial_backoff_ms: int = 1000
    max_backoff_ms: int = 60_000
    multiplier: float = 2.0
    jitter: bool = False

    @classmethod
    def none(cls) -> RetryPolicy:
        """A policy that never retries."""
        return cls(max_retries=0, initial_backoff_ms=0, max_backoff_ms=0, multiplier=1.0)


@dataclass(frozen=True)
class Limit:
    """One concurrency limit of a job; build it with :meth:`fixed` or :meth:`floating`.

    ``max`` is the fixed maximum, or the default maximum of a floating key until a worker
    reports a computed one (refresh handlers, :class:`sluice_client.Worker`).
    """

    kind: LimitKind
    key: str
    max: int
    refresh_interval_ms: int = 0
    metadata: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def fixed(cls, key: str, max: int) -> Limit:
        """At most ``max`` jobs holding ``key`` run at once."""
        return cls(LimitKind.FIXED, key, max)

    @classmethod
    def floating(cls, key: str, default_max: int, refresh_interval_ms: int,
                 metadata: Optional[Mapping[str, str]] = None) -> Limit:
        """A key whose maximum a worker recomputes every ``refresh_interval_ms``; ``metadata`` is
        handed to the refresh handler."""
        return cls(LimitKind.FLOATING, key, default_max, refresh_interval_ms,
                   dict(metadata or {}))


@dataclass(frozen=True)
class JobSpec:
    """A job to enqueue (see :meth:`sluice_client.Client.enqueue` for the fields). An empty
    ``id`` gets a client-generated UUIDv7 when the client generates ids (the default), so a
    retried enqueue never creates a second job. ``priority`` None means the server's default
    (50)."""

    queue: str
    payload: bytes = b""
    id: str = ""
    priority: Optional[int] = None
    start_at_ms: int = 0
    retry: Optional[RetryPolicy] = None
    lease_ms: int = 0
    metadata: Optional[Mapping[str, str]] = None
    limits: Sequence[Limit] = ()

    @classmethod
    def from_json(cls, queue: str, value: Any, **fields: Any) -> JobSpec:
        """A spec whose payload is ``value`` encoded as JSON (:func:`encode_json`)."""
        return cls(queue, encode_json(value), **fields)


@dataclass(frozen=True)
class EnqueueResult:
    """The outcome of one enqueue. ``created`` is False when a job with that id already existed
    (it is left unchanged and ``status`` is its current status)."""

    id: str
    created: bool
    status: JobStatus


@dataclass(frozen=True)
class Task:
    """A leased attempt of a job. Pass it back to heartbeat / complete / fail.

    ``lease_token`` fences the attempt: reports with an older token get LeaseLostError.
    ``worker_id`` and ``tenant`` are those it was leased under. ``lease_ms`` is the lease length
    as the server granted it: heartbeat well within it (the Worker does every third).
    """

    task_id: str
    job_id: str
    tenant: str
    queue: str
    attempt: int
    priority: int
    payload: bytes
    metadata: Mapping[str, str]
    lease_token: int
    lease_expires_ms: int
    lease_ms: int
    worker_id: str

    def json(self) -> Any:
        """The payload decoded as JSON."""
        return decode_json(self.payload)


@dataclass(frozen=True)
class RefreshTask:
    """A floating-limit refresh: compute the key's max and report it with
    :meth:`complete_refresh` (or :meth:`fail_refresh`)."""

    tenant: str
    key: str
    metadata: Mapping[str, str]
    current_max: int
    default_max: int
    last_refreshed_ms: int
    lease_token: int
    lease_expires_ms: int
    lease_ms: int = 0  # the refresh lease's length (0 from servers that do not send it)


@dataclass(frozen=True)
class LeaseResponse:
    """What ``lease`` returns: job tasks, refresh tasks for floating keys of the queue, and one
    status per report the call carried (``reports=``), in order. ``report_statuses`` is shorter
    than the reports only from a server that predates them (it ignored them: none applied)."""

    tasks: list[Task]
    refreshes: list[RefreshTask]
    report_statuses: list[ReportStatus] = field(default_factory=list)


@dataclass(frozen=True)
class Heartbeat:
    """A heartbeat's answer: the new lease expiry, and whether the job's cancellation was
    requested (then stop and report it with ``report_cancelled``)."""

    expires_ms: int
    cancel_requested: bool


class OutcomeKind(enum.Enum):
    SUCCESS = "success"
    FAILURE = "failure"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class Outcome:
    """How an attempt ended; build it with :meth:`success`, :meth:`failure` or
    :meth:`cancelled`."""

    kind: OutcomeKind
    result: bytes = b""
    error_code: str = ""
    error_message: str = ""
    error_data: bytes = b""
    no_retry: bool = False

    @classmethod
    def success(cls, result: bytes = b"") -> Outcome:
        return cls(OutcomeKind.SUCCESS, result=bytes(result))

    @classmethod
    def failure(cls, code: str, message: str = "", *, data: bytes = b"",
                no_retry: bool = False) -> Outcome:
        """A failure with a required machine-readable ``code``; ``no_retry`` fails the job now
        even if retries remain."""
        return cls(OutcomeKind.FAILURE, error_code=code, error_message=message,
                   error_data=bytes(data), no_retry=no_retry)

    @classmethod
    def cancelled(cls) -> Outcome:
        return cls(OutcomeKind.CANCELLED)


@dataclass(frozen=True)
class Report:
    """One entry of a batch report (``report_outcomes``)."""

    task: Task
    outcome: Outcome


@dataclass(frozen=True)
class ReportStatus:
    """The per-report answer of a batch report: ``code`` is a gRPC code number (0 = OK),
    ``sluice_code`` the engine's name (``"ok"``, ``"lease_lost"``, ...)."""

    code: int
    sluice_code: str
    message: str

    @property
    def ok(self) -> bool:
        return self.code == 0

    def error(self) -> Optional[SluiceError]:
        """The exception this status stands for (e.g. LeaseLostError), or None when OK."""
        return from_report_status(self.code, self.sluice_code, self.message)


@dataclass(frozen=True)
class CancelResult:
    """A cancel's answer: CANCELLED at once for a pending job; RUNNING with
    ``cancel_requested`` for a running one (its worker learns on its next heartbeat)."""

    status: JobStatus
    cancel_requested: bool


@dataclass(frozen=True)
class Attempt:
    """One attempt of a job, as returned with ``get_job(..., include_attempts=True)``."""

    number: int
    task_id: str
    worker_id: str
    status: AttemptStatus
    started_ms: int
    finished_ms: int
    result: bytes
    error_code: str
    error_message: str
    error_data: bytes


@dataclass(frozen=True)
class Job:
    """A job as read back."""

    id: str
    tenant: str
    queue: str
    priority: int
    status: JobStatus
    cancel_requested: bool
    start_at_ms: int
    next_run_ms: int
    lease_ms: int
    retry: RetryPolicy
    payload: bytes
    metadata: Mapping[str, str]
    limits: Tuple[Limit, ...]
    attempt_count: int
    retries_used: int
    created_ms: int
    updated_ms: int
    finished_ms: int
    attempts: Tuple[Attempt, ...]

    def json(self) -> Any:
        """The payload decoded as JSON."""
        return decode_json(self.payload)


@dataclass(frozen=True)
class JobResult:
    """A job's result: ``finished`` tells whether ``status`` is terminal; ``result`` is the
    success bytes, ``error_*`` the last failure."""

    status: JobStatus
    finished: bool
    result: bytes
    error_code: str
    error_message: str
    error_data: bytes

    @property
    def succeeded(self) -> bool:
        return self.status == JobStatus.SUCCEEDED

    def json(self) -> Any:
        """The result decoded as JSON."""
        return decode_json(self.result)


@dataclass(frozen=True)
class FloatingLimitState:
    """The server's state for a floating key."""

    tenant: str
    key: str
    current_max: int
    default_max: int
    refresh_interval_ms: int
    last_refreshed_ms: int
    metadata: Mapping[str, str]
    consecutive_failures: int
    next_refresh_ms: int
    refresh_in_flight: bool
    holders: int
    waiters: int


@dataclass(frozen=True)
class KeyState:
    """Live holders, waiters and max of a concurrency key (all zero when idle)."""

    holders: int
    waiters: int
    max: int
    key: str = ""
    kind: LimitKind = LimitKind.FIXED


@dataclass(frozen=True)
class NodeLimits:
    """The caps of a node (sizes in bytes)."""

    max_message_bytes: int
    max_id_bytes: int
    max_tenant_bytes: int
    max_queue_bytes: int
    max_worker_id_bytes: int
    max_payload_bytes: int
    max_result_bytes: int
    max_error_code_bytes: int
    max_error_message_bytes: int
    max_error_data_bytes: int
    max_metadata_entries: int
    max_metadata_key_bytes: int
    max_metadata_value_bytes: int
    max_limits_per_job: int
    max_limit_key_bytes: int
    max_batch_jobs: int
    max_lease_batch: int
    max_wait_ms: int
    max_list_page: int = 0           # most jobs per list_jobs page (larger limits are capped)
    max_query_bytes: int = 0         # longest SQL text of a query
    query_timeout_ms: int = 0        # longest a query may run
    query_max_rows: int = 0          # most rows a query may return
    query_max_result_bytes: int = 0  # largest result a query may return


@dataclass(frozen=True)
class NodeInfo:
    """What a node is, and who the caller is (``caller_tenant`` of a tenant-bound token)."""

    version: str
    node_id: str
    durability: str
    started_ms: int
    caller_tenant: str
    caller_tenant_bound: bool
    limits: NodeLimits
    default_lease_ms: int


# ---- finding jobs ----------------------------------------------------------------------------

class JobView(enum.IntEnum):
    """How much of each listed job :meth:`Client.list_jobs` returns (wire
    ``ListJobsRequest.View``)."""

    SUMMARY = 0
    """Every field except payload and attempts (the default)."""
    INDEX = 1
    """``id``, ``queue``, ``status`` and ``created_ms`` only: read from the index (cheapest)."""
    FULL = 2
    """With the payload (attempts never: :meth:`Client.get_job` has them)."""


@dataclass(frozen=True)
class JobPage:
    """One page of a listing. ``jobs`` may be shorter than the limit, even empty, while more
    remain (one call visits a bounded number of index entries): keep paging while
    ``next_cursor`` is not ``""``. ``keys_visited`` is what the page cost the server."""

    jobs: Tuple[Job, ...]
    next_cursor: str
    keys_visited: int


@dataclass(frozen=True)
class QueueCounts:
    """Jobs of one queue by status (from counters kept with the transitions)."""

    queue: str
    scheduled: int
    waiting: int
    running: int
    succeeded: int
    failed: int
    cancelled: int


QueryCell = Union[int, float, str, bytes, None]
"""One cell of a query result, by SQLite storage class: INTEGER ``int``, REAL ``float``, TEXT
``str`` (TEXT that is not valid UTF-8 arrives as ``bytes``), BLOB ``bytes``, NULL ``None``."""


@dataclass(frozen=True)
class QueryResult:
    """What :meth:`Client.query` returns: column names and one tuple of cells per row."""

    columns: Tuple[str, ...]
    rows: Tuple[Tuple[QueryCell, ...], ...]
    keys_visited: int = 0
