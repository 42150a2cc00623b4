"""The exception hierarchy of the sluice package: one class per status of the C ABI.

Every failed engine call raises a subclass of :class:`SluiceError`; ``.status`` is the stable
numeric code (``sluice_status`` in ``sluice.h``, ``StatusCode`` in the core) and ``.status_name``
its stable lowercase name. Match on the class (or on ``.status``), never on the message: messages
are for people and may change. The table lives in ``docs/errors.md``.

Names avoid shadowing Python builtins: ``IO_ERROR`` is :class:`StorageError` (not ``IOError``,
which is ``OSError``), ``TIMEOUT`` is :class:`SluiceTimeoutError` (not ``TimeoutError``).
:class:`CancelledError` is this package's (an ``Exception``), not ``asyncio.CancelledError``.
Argument errors are also ``ValueError`` and allocation failure is also ``MemoryError``, so
generic handlers keep working.
"""

from __future__ import annotations

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
    "CancelledError",
    "error_class",
]


class SluiceError(Exception):
    """Base class of every error the engine reports.

    Attributes:
        status: the numeric status code (never 0).
        status_name: its stable name, e.g. ``"lease_lost"``.
        message: the human-readable message (also ``str(error)``).
    """

    status: int = -1
    status_name: str = "unknown"

    def __init__(self, message: str = "", status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None and status != type(self).status:
            # Only for codes this package does not know yet (a newer library).
            self.status = status

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
    """A field exceeds its size limit (the message names field, size and cap). Nothing changed."""

    status = 3
    status_name = "too_large"


class LeaseLostError(SluiceError):
    """The lease is not the live one (stale token, expired, already reported).

    The worker must stop working on the task and never report it.
    """

    status = 4
    status_name = "lease_lost"


class FailedPreconditionError(SluiceError):
    """The job's state forbids the operation (e.g. restart of a succeeded job)."""

    status = 5
    status_name = "failed_precondition"


class ClosedError(SluiceError):
    """The engine is closed or closing."""

    status = 6
    status_name = "closed"


class StorageError(SluiceError):
    """Storage failed (status ``io_error``); the engine stops acknowledging until reopened."""

    status = 7
    status_name = "io_error"


class CorruptionError(SluiceError):
    """Stored data could not be decoded."""

    status = 8
    status_name = "corruption"


class SluiceTimeoutError(SluiceError):
    """A bounded call ran out of time: a query past its ``timeout_ms``. (A lease long-poll that
    times out returns an empty list instead.)"""

    status = 9
    status_name = "timeout"


class AlreadyExistsError(SluiceError):
    """Reserved. Enqueue with an existing id is not an error (``created`` is False)."""

    status = 10
    status_name = "already_exists"


class BusyError(SluiceError):
    """A transient conflict; retry the call as is."""

    status = 11
    status_name = "busy"


class InternalError(SluiceError):
    """An unexpected failure inside the library (a bug: please report it)."""

    status = 12
    status_name = "internal"


class NoMemoryError(SluiceError, MemoryError):
    """The library could not allocate memory."""

    status = 13
    status_name = "no_memory"


class CancelledError(SluiceError):
    """The caller cancelled the call: a query whose :class:`sluice.CancelToken` was cancelled
    (while it ran, or before it started). Queries only read, so nothing changed.

    Not ``asyncio.CancelledError``: this one is an ``Exception`` like every SluiceError."""

    status = 14
    status_name = "cancelled"


_BY_STATUS: dict[int, type[SluiceError]] = {
    cls.status: cls
    for cls in (
        NotFoundError,
        InvalidArgumentError,
        TooLargeError,
        LeaseLostError,
        FailedPreconditionError,
        ClosedError,
        StorageError,
        CorruptionError,
        SluiceTimeoutError,
        AlreadyExistsError,
        BusyError,
        InternalError,
        NoMemoryError,
        CancelledError,
    )
}


def error_class(status: int) -> type[SluiceError]:
    """The exception class for a status code (:class:`SluiceError` for unknown codes)."""
    return _BY_STATUS.get(status, SluiceError)


def _from_status(status: int, message: str) -> SluiceError:
    # Called by the extension's exception translator (the one place statuses become classes).
    cls = _BY_STATUS.get(status)
    if cls is None:
        err = SluiceError(message, status)
        err.status_name = "unknown"
        return err
    return cls(message)
