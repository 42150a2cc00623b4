"""sluice_client: Sluice over gRPC — a typed client (blocking and asyncio) and a Worker.

    from sluice_client import Client, Worker

    with Client("127.0.0.1:7070", token=token) as client:
        job = client.enqueue("email", json={"to": "ada@example.com"})
        print(job.await_result(timeout=30).json())

The wire contract is proto/sluice/v1/sluice.proto; the protobuf module is generated from it
when the package is built. Exceptions share names and meanings with the in-process ``sluice``
module (docs/errors.md); see :mod:`sluice_client.errors`.
"""

from .aio import AsyncClient, AsyncJobHandle
from .client import Client, JobHandle
from ._stream import AsyncLeaseStream, LeaseStream
from .connection import RPC_METHODS, Connection, RpcRetryPolicy
from .errors import (
    AlreadyExistsError,
    BusyError,
    CancelledError,
    ClosedError,
    CorruptionError,
    DeadlineExceededError,
    FailedPreconditionError,
    InternalError,
    InvalidArgumentError,
    LeaseLostError,
    NoMemoryError,
    NotFoundError,
    PermissionDeniedError,
    SluiceError,
    SluiceTimeoutError,
    StorageError,
    TooLargeError,
    UnauthenticatedError,
    UnavailableError,
    error_class,
)
from .types import (
    Attempt,
    AttemptStatus,
    CancelResult,
    EnqueueResult,
    FloatingLimitState,
    Heartbeat,
    Job,
    JobResult,
    JobSpec,
    JobPage,
    JobStatus,
    JobView,
    KeyState,
    LeaseResponse,
    Limit,
    LimitKind,
    NodeInfo,
    NodeLimits,
    Outcome,
    OutcomeKind,
    QueryCell,
    QueryResult,
    QueueCounts,
    RefreshTask,
    Report,
    ReportStatus,
    RetryPolicy,
    Task,
    decode_json,
    encode_json,
)
from .worker import (
    CancellationToken,
    JobCancelled,
    JobContext,
    JobFailed,
    RefreshRequest,
    Worker,
)

__version__ = "0.1.0"

__all__ = [
    "__version__",
    # clients
    "Client",
    "AsyncClient",
    "JobHandle",
    "AsyncJobHandle",
    "Connection",
    "RpcRetryPolicy",
    "RPC_METHODS",
    "LeaseStream",
    "AsyncLeaseStream",
    # worker
    "Worker",
    "JobContext",
    "RefreshRequest",
    "CancellationToken",
    "JobFailed",
    "JobCancelled",
    # values
    "Attempt",
    "AttemptStatus",
    "CancelResult",
    "EnqueueResult",
    "FloatingLimitState",
    "Heartbeat",
    "Job",
    "JobResult",
    "JobSpec",
    "JobStatus",
    "JobPage",
    "JobView",
    "KeyState",
    "LeaseResponse",
    "Limit",
    "LimitKind",
    "NodeInfo",
    "NodeLimits",
    "Outcome",
    "OutcomeKind",
    "QueryCell",
    "QueryResult",
    "QueueCounts",
    "RefreshTask",
    "Report",
    "ReportStatus",
    "RetryPolicy",
    "Task",
    "encode_json",
    "decode_json",
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
    "UnauthenticatedError",
    "PermissionDeniedError",
    "CancelledError",
    "UnavailableError",
    "DeadlineExceededError",
    "error_class",
]
