"""The cancellation token a Worker hands to each handler, and the exceptions handlers raise."""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Optional, Union

__all__ = ["CancellationToken", "JobCancelled", "JobFailed", "CANCEL_REQUESTED", "LEASE_LOST",
           "SHUTDOWN"]

CANCEL_REQUESTED = "cancel_requested"
"""The job's cancellation was requested (CancelJob); the worker learnt it on a heartbeat."""
LEASE_LOST = "lease_lost"
"""The lease is no longer this worker's; whatever the handler does is never reported."""
SHUTDOWN = "shutdown"
"""The worker's stop deadline passed while the handler was still running."""


class CancellationToken:
    """Set when the handler should stop: ``reason`` says why (first reason wins; see
    :data:`CANCEL_REQUESTED`, :data:`LEASE_LOST`, :data:`SHUTDOWN`).

    Thread-safe. Blocking handlers poll :attr:`cancelled` or sleep with :meth:`wait`; async
    handlers ``await token.wait_async()``. Cancellation is cooperative: a handler that ignores it
    keeps running (after lease loss its outcome is dropped).
    """

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._reason: Optional[str] = None
        self._lease_lost = False
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    @property
    def reason(self) -> Optional[str]:
        return self._reason

    @property
    def lease_lost(self) -> bool:
        """True once the lease was lost (even when another reason came first)."""
        return self._lease_lost

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Blocks until cancelled or ``timeout`` seconds passed; returns :attr:`cancelled`."""
        return self._event.wait(timeout)

    async def wait_async(self) -> None:
        """Returns once the token is cancelled."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if self._event.is_set():
                return
            self._waiters.append((loop, fut))
        await fut

    def raise_if_cancelled(self) -> None:
        """Raises :class:`JobCancelled` when the token is set."""
        if self._event.is_set():
            raise JobCancelled(self._reason or "")

    def set(self, reason: str) -> None:
        """Cancels the token (the Worker calls this; tests and handlers may too)."""
        with self._lock:
            if reason == LEASE_LOST:
                self._lease_lost = True
            if self._event.is_set():
                return
            self._reason = reason
            self._event.set()
            waiters, self._waiters = self._waiters, []
        for loop, fut in waiters:
            try:
                loop.call_soon_threadsafe(_settle, fut)
            except RuntimeError:
                pass

    def __repr__(self) -> str:
        return f"CancellationToken(cancelled={self.cancelled}, reason={self._reason!r})"


def _settle(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class JobFailed(Exception):
    """Raise it (or a subclass) from a handler to fail the attempt with a chosen error code.

    ``code`` is the machine-readable reason stored with the attempt; ``no_retry`` fails the job
    now even if retries remain; ``data`` is stored as the error's bytes. A subclass can fix
    them for an exception type::

        class RateLimited(JobFailed):
            code = "rate_limited"

        class BadInput(JobFailed):
            code = "bad_input"
            no_retry = True

    Any other exception also fails the attempt, with its class name as the code.
    """

    code: str = "job_failed"
    no_retry: bool = False

    def __init__(self, message: str = "", *, code: Optional[str] = None,
                 no_retry: Optional[bool] = None, data: Union[bytes, str] = b"") -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if no_retry is not None:
            self.no_retry = no_retry
        if isinstance(data, str):
            self.data = data.encode()
        elif isinstance(data, int):  # bytes(n) would allocate n zero bytes
            raise TypeError(f"JobFailed data must be bytes or str, not {type(data).__name__}")
        else:
            self.data = bytes(data)  # bytes-like, or an iterable of ints; else TypeError


class JobCancelled(Exception):
    """Raise it from a handler (or call ``token.raise_if_cancelled()``) to end the attempt as
    cancelled. After a requested cancellation the job ends CANCELLED; if the token was set by
    the worker's shutdown instead, the attempt is reported as the failure ``worker_shutdown``
    (the job retries per its policy)."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
