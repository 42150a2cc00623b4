"""Value types of the sluice package: what goes into the engine and what comes back.

All are frozen dataclasses (hashable where their fields are) or ``IntEnum``s whose values are the
C ABI's constants, so they compare equal to the raw integers. Times are milliseconds since the
Unix epoch (the engine's clock); durations are milliseconds. Payloads, results and error data are
``bytes``; ids, tenants, queues, keys and metadata are ``str``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence, Tuple

__all__ = [
    "Durability",
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
    "CancelResult",
    "Attempt",
    "Job",
    "JobResult",
    "FloatingLimitState",
    "KeyState",
    "Stats",
    "JobView",
    "JobPage",
    "QueueCounts",
    "QueryResult",
]


class Durability(enum.IntEnum):
    """When an acknowledged write is durable (``SLUICE_DURABILITY_*``)."""

    SYNC = 0
    """fsync (with group commit) before acknowledging: survives power loss."""
    ASYNC = 1
    """WAL without fsync: survives a killed process, not power loss."""


class JobStatus(enum.IntEnum):
    """A job's status (``SLUICE_JOB_*``). SCHEDULED vs WAITING is derived from the clock."""

    SCHEDULED = 0
    WAITING = 1
    RUNNING = 2
    SUCCEEDED = 3
    FAILED = 4
    CANCELLED = 5

    @property
    def terminal(self) -> bool:
        """True for SUCCEEDED, FAILED and CANCELLED."""
        return self >= JobStatus.SUCCEEDED


class AttemptStatus(enum.IntEnum):
    """An attempt's status (``SLUICE_ATTEMPT_*``)."""

    RUNNING = 0
    SUCCEEDED = 1
    FAILED = 2
    CANCELLED = 3


class LimitKind(enum.IntEnum):
    """A concurrency limit's kind (``SLUICE_LIMIT_*``)."""

    FIXED = 0
    FLOATING = 1


@dataclass(frozen=True)
class RetryPolicy:
    """How a failed attempt is retried. Before retry ``r`` (1-based) the job waits
    ``min(max_backoff_ms, initial_backoff_ms * multiplier ** (r - 1))``, or a uniform draw from
    ``[0, that]`` with ``jitter``. Omitting the policy uses the engine default (3 retries, 1 s,
    x2, capped at 60 s, no jitter)."""

    max_retries: int = 3
    initial_backoff_ms: int = 1000
    max_backoff_ms: int = 60_000
    multiplier: float = 2.0
    jitter: bool = False

    @classmethod
    def none(cls) -> RetryPolicy:
        """A policy that never retries."""
        return cls(max_retries=0)


@dataclass(frozen=True)
class Limit:
    """One concurrency limit of a job; build it with :meth:`fixed` or :meth:`floating`.

    ``max`` is the fixed maximum, or the default maximum of a floating key until a worker
    reports a computed one.
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
    def floating(
        cls,
        key: str,
        default_max: int,
        refresh_interval_ms: int,
        metadata: Optional[Mapping[str, str]] = None,
    ) -> Limit:
        """A key whose maximum a worker recomputes every ``refresh_interval_ms`` (refresh task);
        ``metadata`` is handed to the refresh handler."""
        return cls(LimitKind.FLOATING, key, default_max, refresh_interval_ms, dict(metadata or {}))


@dataclass(frozen=True)
class JobSpec:
    """A job to enqueue (see :meth:`sluice.Engine.enqueue` for the fields)."""

    queue: str
    payload: bytes = b""
    id: str = ""
    tenant: str = ""
    priority: int = 50
    start_at_ms: int = 0
    retry: Optional[RetryPolicy] = None
    lease_ms: int = 0
    metadata: Optional[Mapping[str, str]] = None
    limits: Sequence[Limit] = ()


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
    ``worker_id`` is the id it was leased under (heartbeats must present it).
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
    worker_id: str


@dataclass(frozen=True)
class RefreshTask:
    """A floating-limit refresh: compute the key's max and report it with
    :meth:`sluice.Engine.complete_refresh` (or :meth:`sluice.Engine.fail_refresh`)."""

    tenant: str
    key: str
    metadata: Mapping[str, str]
    current_max: int
    default_max: int
    last_refreshed_ms: int
    lease_token: int
    lease_expires_ms: int


@dataclass(frozen=True)
class LeaseResponse:
    """What :meth:`sluice.Engine.lease_with_refreshes` returns."""

    tasks: list[Task]
    refreshes: list[RefreshTask]


@dataclass(frozen=True)
class Heartbeat:
    """A heartbeat's answer: the new lease expiry, and whether an operator asked the job to
    stop (then report it with :meth:`sluice.Engine.report_cancelled`)."""

    expires_ms: int
    cancel_requested: bool


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


@dataclass(frozen=True)
class FloatingLimitState:
    """The engine's state for a floating key."""

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


@dataclass(frozen=True)
class Stats:
    """Engine counters (since open) and gauges."""

    enqueued: int
    leased: int
    succeeded: int
    failed: int
    cancelled: int
    retried: int
    lease_expired: int
    pending_tasks: int
    running: int
    limit_keys: int
    limit_holders: int
    limit_waiters: int


class JobView(enum.IntEnum):
    """How much of each listed job :meth:`sluice.Engine.list_jobs` returns (``SLUICE_VIEW_*``)."""

    INDEX = 0
    """id, queue, status and created_ms only, read from the index (other fields empty or 0)."""
    SUMMARY = 1
    """Every field except payload and attempts (the default)."""
    FULL = 2
    """With payload (attempts are never listed: use get_job)."""


@dataclass(frozen=True)
class JobPage:
    """One page of a listing. A page may be shorter than the limit (even empty) while more
    remain: keep paging while ``next_cursor`` is not empty (or use
    :meth:`sluice.Engine.iter_jobs`)."""

    jobs: list[Job]
    next_cursor: str
    """Empty when the listing is complete; an opaque string otherwise."""
    keys_visited: int
    """Index entries and records read (the call's cost)."""


@dataclass(frozen=True)
class QueueCounts:
    """Job counts of one queue by status (kept as counters: no scan)."""

    queue: str
    counts: Mapping[JobStatus, int]

    @property
    def total(self) -> int:
        """Jobs of the queue in every status."""
        return sum(self.counts.values())


@dataclass(frozen=True)
class QueryResult:
    """What :meth:`sluice.Engine.query` returned. Cells are ``int`` (INTEGER), ``float`` (REAL),
    ``str`` (TEXT), ``bytes`` (BLOB) or ``None`` (NULL)."""

    columns: Tuple[str, ...]
    rows: list[Tuple[Any, ...]]
    keys_visited: int
    """Index entries and records the query read (its cost)."""
