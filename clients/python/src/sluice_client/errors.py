"""The exceptions of sluice_client: one class per status, as in the in-process ``sluice`` module.

Every failed call raises a subclass of :class:`SluiceError`. The engine's statuses keep the
names, numbers (``.status``) and stable lowercase names (``.status_name``) of
``sluice.errors`` (docs/errors.md), so code written against the in-process module catches the
same classes here. Errors only a remote call can meet get their own classes:
:class:`UnauthenticatedError`, :class:`PermissionDeniedError`, :class:`UnavailableError` and
:class:`DeadlineExceededError` (``.status`` is -1: no engine code). :class:`CancelledError` carries
the engine's ``cancelled`` code (14).

A call is classified on its gRPC code and the ``sluice-code`` trailer, never on the message:
the trailer tells apart the two causes of FAILED_PRECONDITION (``lease_lost`` vs
``failed_precondition``). ``.grpc_code`` and ``.sluice_code`` keep what the server sent.
"""

from __future__ import annotations

from typing import Iterable, Optional, Tuple, Union

import grpc

__all__ = [
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
    "error_for_code",
]


class SluiceError(Exception):
    """Base class of every error sluice_client raises for a failed call.

    Attributes:
        status: the engine's numeric status (docs/errors.md); -1 when the error has no engine
            code (transport, authentication).
        status_name: its stable lowercase name, e.g. ``"lease_lost"``.
        message: the server's human-readable message (also ``str(error)``); never parse it.
        grpc_code: the gRPC status code of the failed call (None when not from a call).
        sluice_code: the ``sluice-code`` trailer the server sent, or None.
        attempts: how many times the client sent the call (retries included).
    """

    status: int = -1
    status_name: str = "unknown"

    def __init__(self, message: str = "", *, grpc_code: Optional[grpc.StatusCode] = None,
                 sluice_code: Optional[str] = None, attempts: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.grpc_code = grpc_code
        self.sluice_code = sluice_code
        self.attempts = attempts

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, status={self.status_name})"


class NotFoundError(SluiceError):
    """No such job (or key) in this tenant. Another tenant's job looks missing too."""

    status = 1
    status_name = "not_found"


class InvalidArgumentError(SluiceError, ValueError):
    """Malformed input (the message names the field). Nothing was changed."""

    status = 2
    status_name = "invalid_argument"


class TooLargeError(SluiceError, ValueError):
    """A field exceeds its size limit, or the whole request exceeds the server's message limit
    (then ``sluice_code`` is None). Nothing was changed."""

    status = 3
    status_name = "too_large"


class LeaseLostError(SluiceError):
    """The lease is not the live one (stale token, expired, already reported).

    The worker must stop working on the task and never report it. Nothing was changed. A report
    that the client retried after a transport error may get this when its first copy landed.
    """

    status = 4
    status_name = "lease_lost"


class FailedPreconditionError(SluiceError):
    """The job's state forbids the operation (e.g. restart of a succeeded job)."""

    status = 5
    status_name = "failed_precondition"


class UnavailableError(SluiceError):
    """The server could not be reached or is shutting down (gRPC UNAVAILABLE). Transient: the
    client already retried idempotent calls with backoff before raising this."""

    status = -1
    status_name = "unavailable"


class ClosedError(UnavailableError):
    """The server's engine is closed or closing (a draining node): retry against a live node.
    Also raised, with ``grpc_code`` None, by a call on a client that was closed (close()):
    nothing was sent, and no retry of that client can succeed."""

    status = 6
    status_name = "closed"


class StorageError(SluiceError):
    """Storage failed on the server (status ``io_error``); the node stops acknowledging and
    restarts."""

    status = 7
    status_name = "io_error"


class CorruptionError(SluiceError):
    """Stored data could not be decoded on the server."""

    status = 8
    status_name = "corruption"


class SluiceTimeoutError(SluiceError):
    """A bounded wait ended without its answer: a server-side timeout, or
    :meth:`JobHandle.await_result` reaching the caller's timeout before the job finished."""

    status = 9
    status_name = "timeout"


class DeadlineExceededError(SluiceTimeoutError):
    """The call's deadline passed before the server answered (gRPC DEADLINE_EXCEEDED). The call
    may or may not have taken effect. Also a :class:`SluiceTimeoutError`."""

    status = -1
    status_name = "deadline_exceeded"


class AlreadyExistsError(SluiceError):
    """Reserved. Enqueue with an existing id is not an error (``created`` is False)."""

    status = 10
    status_name = "already_exists"


class BusyError(SluiceError):
    """A transient conflict; retry the call as is."""

    status = 11
    status_name = "busy"


class InternalError(SluiceError):
    """An unexpected failure inside the server or the transport (a bug: please report it)."""

    status = 12
    status_name = "internal"


class NoMemoryError(SluiceError, MemoryError):
    """An allocation failed (kept for parity with the in-process module)."""

    status = 13
    status_name = "no_memory"


class CancelledError(SluiceError):
    """The call was cancelled before it finished (gRPC CANCELLED): by the caller (a cancelled
    :class:`~sluice_client.CancellationToken` passed to ``query``, a closed client), or by the
    server (``sluice_code`` ``"cancelled"``). Not ``asyncio.CancelledError``: cancelling an
    asyncio task that awaits a call raises that one, as asyncio requires."""

    status = 14
    status_name = "cancelled"


class UnauthenticatedError(SluiceError):
    """No token, a malformed ``authorization`` header, or a token the server does not know."""

    status = -1
    status_name = "unauthenticated"


class PermissionDeniedError(SluiceError):
    """A tenant-bound token named another tenant in the request."""

    status = -1
    status_name = "permission_denied"


_ENGINE_CLASSES: Tuple[type[SluiceError], ...] = (
    NotFoundError, InvalidArgumentError, TooLargeError, LeaseLostError, FailedPreconditionError,
    ClosedError, StorageError, CorruptionError, SluiceTimeoutError, AlreadyExistsError, BusyError,
    InternalError, NoMemoryError, CancelledError,
)
_BY_STATUS: dict[int, type[SluiceError]] = {cls.status: cls for cls in _ENGINE_CLASSES}

# The `sluice-code` trailer names the class exactly (one-to-one).
_BY_SLUICE_CODE: dict[str, type[SluiceError]] = {
    cls.status_name: cls
    for cls in _ENGINE_CLASSES + (UnauthenticatedError, PermissionDeniedError)
}

# Without a trailer (errors raised by gRPC itself, not by a handler) the gRPC code decides.
_BY_GRPC_CODE: dict[grpc.StatusCode, type[SluiceError]] = {
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: TooLargeError,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPreconditionError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.INTERNAL: InternalError,
    grpc.StatusCode.DATA_LOSS: CorruptionError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExistsError,
    grpc.StatusCode.ABORTED: BusyError,
    grpc.StatusCode.UNAUTHENTICATED: UnauthenticatedError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.CANCELLED: CancelledError,
}

_Metadata = Iterable[Tuple[str, Union[str, bytes]]]


def error_class(status: int) -> type[SluiceError]:
    """The exception class for an engine status number (:class:`SluiceError` when unknown)."""
    return _BY_STATUS.get(status, SluiceError)


def error_for_code(grpc_code: grpc.StatusCode, sluice_code: Optional[str]) -> type[SluiceError]:
    """The class for a failed call's (gRPC code, ``sluice-code`` trailer)."""
    if sluice_code:
        cls = _BY_SLUICE_CODE.get(sluice_code)
        if cls is not None:
            return cls
    return _BY_GRPC_CODE.get(grpc_code, SluiceError)


def sluice_code_of(trailing: Optional[_Metadata]) -> Optional[str]:
    """The ``sluice-code`` trailer value in a call's trailing metadata, or None."""
    for key, value in trailing or ():
        if key == "sluice-code":
            return value.decode() if isinstance(value, bytes) else value
    return None


def from_status(grpc_code: grpc.StatusCode, details: Optional[str],
                trailing: Optional[_Metadata], attempts: int = 1) -> SluiceError:
    """Builds the exception for a failed call (the one place codes become classes)."""
    scode = sluice_code_of(trailing)
    cls = error_for_code(grpc_code, scode)
    message = details or grpc_code.name.lower()
    if cls is LeaseLostError and attempts > 1:
        message += " (the call was retried: an earlier copy may have been recorded)"
    err = cls(message, grpc_code=grpc_code, sluice_code=scode, attempts=attempts)
    if cls is SluiceError:
        err.status_name = scode or grpc_code.name.lower()
    return err


def from_report_status(code: int, sluice_code: str, message: str) -> Optional[SluiceError]:
    """The exception for one ``ReportStatus`` of a batch report, or None when it is OK."""
    if code == 0:
        return None
    grpc_code = _GRPC_BY_VALUE.get(code, grpc.StatusCode.UNKNOWN)
    return from_status(grpc_code, message, (("sluice-code", sluice_code),) if sluice_code else ())


_GRPC_BY_VALUE: dict[int, grpc.StatusCode] = {c.value[0]: c for c in grpc.StatusCode}


def closed_client(method: str) -> ClosedError:
    """The error of a call on a client that was closed: raised before anything is sent."""
    return ClosedError(f"{method}: the client is closed")
