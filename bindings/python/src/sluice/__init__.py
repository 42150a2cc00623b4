"""Sluice in-process: a durable job queue engine (C++ on RocksDB) embedded in Python.

    import sluice

    with sluice.Engine("/var/lib/myapp/jobs") as engine:
        engine.enqueue("emails", b'{"to": "ada@example.com"}')
        for task in engine.lease("emails", "worker-1", max_tasks=10, wait_ms=1000):
            engine.complete(task, b"sent")

Every engine call releases the GIL. Errors are subclasses of :class:`SluiceError`, one per
status code of the C ABI (:mod:`sluice.errors`, docs/errors.md).
"""

from . import _sluice
from ._engine import Engine
from ._sluice import CancelToken
from .errors import (
    AlreadyExistsError,
    BusyError,
    CancelledError,
    ClosedError,
    CorruptionError,
    FailedPreconditionError,
    InternalError,
    InvalidArgumentError,
    LeaseLostError,
    NoMemoryError,
    NotFoundError,
    SluiceError,
    SluiceTimeoutError,
    StorageError,
    TooLargeError,
    error_class,
)
from .types import (
    Attempt,
    AttemptStatus,
    CancelResult,
    Durability,
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
    QueryResult,
    QueueCounts,
    RefreshTask,
    RetryPolicy,
    Stats,
    Task,
)

__version__ = "0.1.0"


def library_version() -> str:
    """The version of the linked libsluice (the C ABI), e.g. ``"0.1.0"``."""
    return _sluice.version()


__all__ = [
    "Engine",
    "CancelToken",
    "library_version",
    "__version__",
    # values
    "Attempt",
    "AttemptStatus",
    "CancelResult",
    "Durability",
    "EnqueueResult",
    "FloatingLimitState",
    "Heartbeat",
    "Job",
    "JobPage",
    "JobResult",
    "JobSpec",
    "JobStatus",
    "JobView",
    "KeyState",
    "LeaseResponse",
    "Limit",
    "LimitKind",
    "QueryResult",
    "QueueCounts",
    "RefreshTask",
    "RetryPolicy",
    "Stats",
    "Task",
    # errors
    "SluiceError",
    "NotFoundError",
    "InvalidArgumentError",
    "TooLargeError",
    "LeaseLostError",
    "FailedPreconditionError",
    "ClosedError",
    "StorageError",
    "CorruptionError",
    "SluiceTimeoutError",
    "AlreadyExistsError",
    "BusyError",
    "InternalError",
    "NoMemoryError",
    "CancelledError",
    "error_class",
]
