"""The Worker: runs handlers for the jobs of one or more queues, with heartbeats, cancellation,
lease-loss safety, graceful stop and floating-limit refresh handlers.

    worker = Worker("127.0.0.1:7070", token=token, concurrency=16)

    @worker.handler("email")
    def send(job: JobContext) -> dict:          # a thread per running job (blocking code)
        return {"sent_to": job.json()["to"]}    # returned value -> success (JSON; bytes as is)

    @worker.handler("resize")
    async def resize(job: JobContext) -> bytes: # an asyncio task (must not block the loop)
        await job.cancellation.wait_async()     # set on cancel_requested or lease loss
        raise JobCancelled()

    @worker.refresh_handler("partner-api")
    def partner_limit(r: RefreshRequest) -> int:
        return 5                                # the key's new max

    worker.run_until_signal()                   # SIGTERM/SIGINT drain, then return

Guarantees: at most ``concurrency`` handlers run at once (and twice that many tasks are held:
leased and not yet acknowledged); each is heartbeated at a third of its lease from the
worker's event loop, independent of the handler;
after a lease is lost (heartbeat refused, or its expiry passed without a successful heartbeat)
the task's token is set and its outcome is never reported; a task id delivered twice is run once.

CPU-bound code belongs in sync handlers (threads): an async handler that blocks the event loop
also blocks the heartbeats of every task, and its leases can expire.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import threading
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence

from ._runtime import Handler, RefreshHandler, Runtime, Stats
from .aio import AsyncClient
from .cancellation import CancellationToken, JobCancelled, JobFailed
from .client import make_connection
from .connection import Connection, RpcRetryPolicy, check_wait
from .types import RefreshTask, Task, decode_json

__all__ = ["Worker", "JobContext", "RefreshRequest", "CancellationToken", "JobCancelled",
           "JobFailed", "Stats"]

EventHook = Callable[[str, Mapping[str, Any]], None]


class JobContext:
    """What a handler gets: the leased task, its payload and its cancellation token."""

    def __init__(self, task: Task, token: CancellationToken, worker_id: str) -> None:
        self.task = task
        self.cancellation = token
        self.worker_id = worker_id

    @property
    def job_id(self) -> str:
        return self.task.job_id

    @property
    def queue(self) -> str:
        return self.task.queue

    @property
    def attempt(self) -> int:
        """1 for the first run, 2 for the first retry, ..."""
        return self.task.attempt

    @property
    def payload(self) -> bytes:
        return self.task.payload

    @property
    def metadata(self) -> Mapping[str, str]:
        return self.task.metadata

    @property
    def cancelled(self) -> bool:
        """True once the job's cancellation was requested, its lease was lost, or the worker's
        stop deadline passed (see ``cancellation.reason``)."""
        return self.cancellation.cancelled

    def json(self) -> Any:
        """The payload decoded as JSON."""
        return decode_json(self.task.payload)

    def __repr__(self) -> str:
        return f"JobContext(job_id={self.job_id!r}, queue={self.queue!r}, attempt={self.attempt})"


@dataclass(frozen=True)
class RefreshRequest:
    """What a refresh handler gets: compute and return the key's new max (an int >= 0; 0
    pauses the key). Raising reports a failure: the server keeps ``current_max`` and retries
    the refresh later with backoff."""

    key: str
    metadata: Mapping[str, str]
    current_max: int
    last_refreshed_ms: int   # 0: never refreshed
    default_max: int
    tenant: str


def _default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class Worker:
    """Leases and runs jobs of its handlers' queues (see the module docs for an example).

    Args:
        target, token, tenant, tls, root_certificates, timeout, retry: how to reach sluiced
            (as for :class:`~sluice_client.Client`), or give ``connection`` (e.g.
            ``client.connection``).
        handlers: queue -> handler, or register with :meth:`handler`.
        concurrency: most tasks held at once (running, or finished and being reported).
        worker_id: recorded on every attempt (default: host-pid-random).
        poll_wait_ms: long-poll bound of one LeaseTasks call (also the longest a graceful stop
            waits for an in-flight poll before giving up on it).
        refresh_handlers: floating key -> refresh handler; ``refresh_handler``: the handler for
            every other key. A refresh for a key without a handler is reported failed at once.
        on_event: ``hook(name, fields)`` for metrics and tests, called on the worker's loop
            (events: started, stopped, reported, report_rejected, lease_lost,
            lease_lost_no_report, cancel_requested, duplicate_delivery, handler_error,
            refresh_reported, refresh_failed, abandoned, ...). Events are also logged to the
            ``sluice_client.worker`` logger.
        shutdown_grace: seconds handlers get after their token is set at the stop deadline.
        interceptors: grpc.aio client interceptors for the worker's channel.
        report_with_lease: send finished outcomes on the queue's next LeaseTasks call when the
            worker leases anyway, so one round trip reports a batch and fetches the next
            (default True); False: every batch is a ReportOutcomes call of its own.
        report_linger_ms: longest an outcome waits for its queue's next lease call before it
            is sent alone with ReportOutcomes (a call in flight that does not long-poll is
            waited for instead: its successor takes the outcome).
        refresh_timeout_ms: longest a refresh handler may run (default 60,000; 0: no limit).
            Past it the refresh is reported failed with code ``refresh_timeout`` (the server
            keeps the old max and backs off) and an async handler is cancelled; a sync
            handler's thread cannot be stopped, and what it returns later is ignored.
    """

    def __init__(self, target: Optional[str] = None, *, token: Optional[str] = None,
                 tenant: str = "", tls: bool = False, root_certificates: Optional[bytes] = None,
                 timeout: float = 30.0, retry: Optional[RpcRetryPolicy] = None,
                 connection: Optional[Connection] = None,
                 handlers: Optional[Mapping[str, Handler]] = None, concurrency: int = 10,
                 worker_id: Optional[str] = None, poll_wait_ms: int = 2_000,
                 refresh_handlers: Optional[Mapping[str, RefreshHandler]] = None,
                 refresh_handler: Optional[RefreshHandler] = None,
                 on_event: Optional[EventHook] = None, shutdown_grace: float = 1.0,
                 interceptors: Sequence[Any] = (), report_with_lease: bool = True,
                 report_linger_ms: int = 10, refresh_timeout_ms: int = 60_000) -> None:
        if connection is None:
            if target is None:
                raise TypeError("Worker needs a target (host:port) or a connection")
            connection = make_connection(target, token=token, tenant=tenant, tls=tls,
                                         root_certificates=root_certificates, timeout=timeout,
                                         retry=retry, channel_options=(), generate_ids=True)
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        if poll_wait_ms < 0:
            raise ValueError("poll_wait_ms must be >= 0")
        if report_linger_ms < 0:
            raise ValueError("report_linger_ms must be >= 0")
        if not refresh_timeout_ms >= 0 or refresh_timeout_ms == float("inf"):
            raise ValueError("refresh_timeout_ms must be a finite number >= 0")
        self.connection = connection
        self.handlers: dict[str, Handler] = dict(handlers or {})
        self.concurrency = concurrency
        self.worker_id = worker_id or _default_worker_id()
        self.poll_wait_ms = poll_wait_ms
        self.refresh_handlers: dict[str, RefreshHandler] = dict(refresh_handlers or {})
        self.default_refresh_handler = refresh_handler
        self.on_event = on_event
        self.shutdown_grace = check_wait(shutdown_grace, "shutdown_grace")
        self.interceptors = list(interceptors)
        self.report_with_lease = report_with_lease
        self.report_linger_ms = report_linger_ms
        self.refresh_timeout_ms = refresh_timeout_ms
        self.stats = Stats()
        self._lock = threading.Lock()
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._loop_thread = 0
        self._runtime: Optional[Runtime] = None
        self._stop_requested: Optional[asyncio.Event] = None
        self._stop_timeout = 30.0
        self._drained = False
        self._started = threading.Event()
        self._finished = threading.Event()
        self._start_error: Optional[BaseException] = None
        self._thread: Optional[threading.Thread] = None

    # ---- registration -----------------------------------------------------------------------

    @property
    def queues(self) -> list[str]:
        return list(self.handlers)

    def handler(self, queue: str) -> Callable[[Handler], Handler]:
        """Decorator: ``fn`` runs the jobs of ``queue`` (sync: on a thread; async: a task).
        Its return value is the result (bytes as is, None as empty, anything else as JSON);
        raising fails the attempt (:class:`JobFailed` chooses the code), :class:`JobCancelled`
        ends it cancelled."""
        def register(fn: Handler) -> Handler:
            self._check_not_running()
            self.handlers[queue] = fn
            return fn
        return register

    def refresh_handler(self, key: Optional[str] = None
                        ) -> Callable[[RefreshHandler], RefreshHandler]:
        """Decorator: ``fn(RefreshRequest) -> int`` computes floating key ``key``'s max (None:
        every key without its own handler)."""
        def register(fn: RefreshHandler) -> RefreshHandler:
            self._check_not_running()
            if key is None:
                self.default_refresh_handler = fn
            else:
                self.refresh_handlers[key] = fn
            return fn
        return register

    def _check_not_running(self) -> None:
        if self._runtime is not None:
            raise RuntimeError("register handlers before the worker starts")

    def _refresh_handler_for(self, key: str) -> Optional[RefreshHandler]:
        return self.refresh_handlers.get(key, self.default_refresh_handler)

    def _context(self, task: Task, token: CancellationToken) -> JobContext:
        return JobContext(task, token, self.worker_id)

    @staticmethod
    def _refresh_request(r: RefreshTask) -> RefreshRequest:
        return RefreshRequest(r.key, r.metadata, r.current_max, r.last_refreshed_ms,
                              r.default_max, r.tenant)

    # ---- running in the caller's event loop -------------------------------------------------

    async def run_async(self, *, signals: Sequence[signal.Signals] = (),
                        drain_timeout: float = 30.0) -> bool:
        """Runs the worker in the current event loop until :meth:`stop_async` (or
        :meth:`stop` from another thread, or one of ``signals``); returns True when it drained
        cleanly. A first signal drains for ``drain_timeout`` s; a second one stops at once."""
        if not self.handlers:
            raise ValueError("the worker has no handlers: register one with @worker.handler()")
        check_wait(drain_timeout, "drain_timeout")
        with self._lock:
            if self._runtime is not None:
                raise RuntimeError("this worker is already running")
            self._loop = asyncio.get_running_loop()
            self._loop_thread = threading.get_ident()
            self._stop_requested = asyncio.Event()
            self._stop_timeout = 30.0
            self._drained = False
            self._finished.clear()
            client = AsyncClient(connection=self.connection, interceptors=self.interceptors)
            self._runtime = rt = Runtime(self, client)
        installed = self._install_signals(signals, drain_timeout)
        try:
            await rt.start()
            self._started.set()
            await self._stop_requested.wait()
            self._drained = await rt.drain(self._stop_timeout, self.shutdown_grace)
            return self._drained
        except BaseException as e:
            self._start_error = e
            rt.stopping = True
            raise
        finally:
            for sig in installed:
                self._loop.remove_signal_handler(sig)
            await rt.close()
            await client.close()
            rt.event("stopped", drained=self._drained, stats=vars(self.stats).copy())
            with self._lock:
                self._runtime = None
            self._started.set()
            self._finished.set()

    async def stop_async(self, timeout: float = 30.0) -> bool:
        """Stops leasing, waits up to ``timeout`` s for held tasks to finish and report, then
        sets the tokens of the rest and abandons them after ``shutdown_grace`` (their leases
        expire on the server). Returns True when everything drained in time. ``timeout`` may be
        ``float("inf")`` (wait as long as it takes); a negative or NaN one raises ValueError."""
        self._request_stop(check_wait(timeout, "timeout"))
        while not self._finished.is_set():
            await asyncio.sleep(0.01)
        return self._drained

    def _request_stop(self, timeout: float) -> None:
        with self._lock:
            if self._stop_requested is None or self._stop_requested.is_set():
                if self._stop_requested is not None and timeout < self._stop_timeout:
                    self._stop_timeout = timeout  # a second, more urgent stop
                return
            self._stop_timeout = timeout
            self._stop_requested.set()

    def _install_signals(self, signals: Sequence[signal.Signals],
                         drain_timeout: float) -> list[signal.Signals]:
        assert self._loop is not None
        installed = []
        for sig in signals:
            def on_signal(sig: signal.Signals = sig) -> None:
                first = self._stop_requested is not None and not self._stop_requested.is_set()
                if self._runtime is not None:
                    self._runtime.event("signal", signal=sig.name, draining=first)
                if first:
                    self._request_stop(drain_timeout)
                elif self._runtime is not None:
                    self._runtime.hurry = True  # a second signal: stop now
            self._loop.add_signal_handler(sig, on_signal)
            installed.append(sig)
        return installed

    # ---- running on a thread ----------------------------------------------------------------

    def run(self, *, signals: Sequence[signal.Signals] = (), drain_timeout: float = 30.0) -> bool:
        """Runs the worker in this thread (its own event loop) until stopped; see
        :meth:`run_async`."""
        return asyncio.run(self.run_async(signals=signals, drain_timeout=drain_timeout))

    def run_until_signal(self, drain_timeout: float = 30.0,
                         signals: Sequence[signal.Signals] = (signal.SIGTERM, signal.SIGINT)
                         ) -> bool:
        """Runs in the main thread until SIGTERM or SIGINT, then drains: no new leases,
        held tasks get ``drain_timeout`` s to finish and report. A second signal stops at once.
        Returns True when the drain completed in time."""
        return self.run(signals=signals, drain_timeout=drain_timeout)

    def start(self, timeout: float = 30.0) -> Worker:
        """Runs the worker on a background thread and returns once it is leasing.

        Raises:
            SluiceError: the worker could not start (e.g. UnauthenticatedError).
        """
        self._started.clear()
        self._finished.clear()
        self._start_error = None
        self._thread = threading.Thread(target=self._thread_main, daemon=True,
                                        name=f"sluice-worker-{self.worker_id}")
        self._thread.start()
        if not self._started.wait(timeout):
            raise TimeoutError("the worker did not start in time")
        if self._start_error is not None:
            raise self._start_error
        return self

    def _thread_main(self) -> None:
        with contextlib.suppress(BaseException):  # reported through start() / stop()
            self.run()

    def stop(self, timeout: float = 30.0) -> bool:
        """Graceful stop from any thread but the worker's own (see :meth:`stop_async`);
        blocks until the worker has stopped. Returns True when it drained in time."""
        check_wait(timeout, "timeout")
        loop = self._loop
        if loop is None or self._finished.is_set():
            return self._drained
        if threading.get_ident() == self._loop_thread:
            raise RuntimeError("use await worker.stop_async() inside the worker's loop")
        self.request_stop(timeout)
        most = timeout + self.shutdown_grace + 10.0
        # (Event.wait overflows past threading.TIMEOUT_MAX: beyond it, wait without a limit.)
        self._finished.wait(None if most > threading.TIMEOUT_MAX else most)
        if self._thread is not None:
            self._thread.join(1.0)
        return self._drained

    def request_stop(self, timeout: float = 30.0) -> None:
        """Asks the worker to stop (as :meth:`stop`) without waiting: safe from any thread,
        handlers included."""
        check_wait(timeout, "timeout")
        loop = self._loop
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(self._request_stop, timeout)
        except RuntimeError:
            pass  # its loop already closed

    @contextlib.contextmanager
    def running(self, stop_timeout: float = 30.0) -> Iterator[Worker]:
        """``with worker.running():`` starts it on a thread and stops it (gracefully) on exit."""
        check_wait(stop_timeout, "stop_timeout")
        self.start()
        try:
            yield self
        finally:
            self.stop(stop_timeout)

    @property
    def is_running(self) -> bool:
        return self._runtime is not None

    def held(self) -> int:
        """How many tasks the worker holds right now (approximate from other threads)."""
        rt = self._runtime
        return len(rt.running) if rt is not None else 0
