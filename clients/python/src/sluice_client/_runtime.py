"""The Worker's engine room, run inside one asyncio loop: leasing, heartbeats, reports, refreshes.

One lease loop per queue asks for as many tasks as there are free handler slots
(``concurrency`` bounds the handlers running at once; leases held, i.e. running or being
reported, are bounded by twice that, so a slow report path cannot make the worker hoard
leases). Each task's heartbeats run from a timer on the loop at a third of its lease,
independent of its handler (sync handlers run on daemon threads).

Outcomes ride on their queue's next LeaseTasks call (``LeaseTasksRequest.reports``: report a
batch and fetch the next in one round trip) when that loop leases anyway. A call carrying
reports never long-polls (wait_ms 0), so a stop never waits on it or gives up on it with its
reports' fate unknown. While the loop's call is in flight (a long-poll, or a call carrying
earlier reports), a second lane per queue sends the outcomes that finished meanwhile on a
LeaseTasks of their own (wait_ms 0, asking for the slots they freed), so two report-and-fetch
round trips overlap as a lease and a ReportOutcomes did. The reporter sends outcomes alone,
batched into one ReportOutcomes call, when no lease is coming: while stopping or backing off,
once an outcome has waited ``report_linger_ms`` without a free slot, and for the reports of a
LeaseTasks call that failed as a whole (they may or may not have been applied: a repeat is
fenced by the lease token, and a ``lease_lost`` answer to it is checked against the job's
attempts).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
import time
import traceback
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Optional, Union

from ._pool import DaemonPool
from .aio import AsyncClient
from .cancellation import LEASE_LOST, SHUTDOWN, CancellationToken, JobCancelled, JobFailed
from .errors import (
    DeadlineExceededError,
    LeaseLostError,
    SluiceError,
    TooLargeError,
    UnavailableError,
)
from .types import (
    AttemptStatus,
    LeaseResponse,
    NodeLimits,
    Outcome,
    OutcomeKind,
    RefreshTask,
    Report,
    ReportStatus,
    Task,
    encode_json,
)

if TYPE_CHECKING:
    from .worker import JobContext, RefreshRequest, Worker

log = logging.getLogger("sluice_client.worker")

MAX_REPORT_BATCH = 500
# Most outcome bytes (results, error data and messages) one request carries: well under the
# server's request cap (32 MiB by default), so a burst of large results goes in several calls.
MAX_REPORT_BYTES = 4 << 20
REFRESH_THREADS = 2
_SECOND = "\x00second"  # lease_loops / polling key suffix of a queue's second lane
DEFAULT_REFRESH_LEASE_S = 30.0
_TRANSIENT = (UnavailableError, DeadlineExceededError)

# What the server enforces by default; replaced by GetNodeInfo's limits at start.
DEFAULT_LIMITS = NodeLimits(
    max_message_bytes=32 << 20, max_id_bytes=128, max_tenant_bytes=128, max_queue_bytes=128,
    max_worker_id_bytes=128, max_payload_bytes=1 << 20, max_result_bytes=1 << 20,
    max_error_code_bytes=128, max_error_message_bytes=8 << 10, max_error_data_bytes=64 << 10,
    max_metadata_entries=64, max_metadata_key_bytes=128, max_metadata_value_bytes=1 << 10,
    max_limits_per_job=8, max_limit_key_bytes=256, max_batch_jobs=10_000,
    max_lease_batch=1_000, max_wait_ms=60_000)


def is_async_callable(fn: Any) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None))


def _truncate(text: str, max_bytes: int) -> str:
    # "replace": a lone surrogate (os.fsdecode of undecodable bytes) becomes "?" instead of
    # failing the encoding, and with it the report that carries the text.
    raw = text.encode("utf-8", "replace")
    return raw[:max_bytes].decode(errors="ignore")


def _outcome_bytes(o: Outcome) -> int:
    """The bytes an outcome adds to a request, roughly (its variable-size fields)."""
    return 16 + len(o.result) + len(o.error_code) + len(o.error_message) + len(o.error_data)


def _backoff(failures: int, cap: float = 5.0) -> float:
    return random.uniform(0.0, min(cap, 0.05 * 2 ** min(failures, 10)))


class Slots:
    """Handler slots (``running`` < ``capacity``) and held leases (``held`` < ``held_cap``).

    ``take`` waits until both have room and reserves up to ``most`` of each; a task gives its
    handler slot back when the handler returns and its lease when the report is done. Used
    from the worker's loop only (no locks).
    """

    def __init__(self, capacity: int, held_cap: int, fair: bool = False) -> None:
        self.capacity = capacity
        self.held_cap = held_cap
        self.fair = fair
        self.running = 0
        self.held = 0
        self._waiters: list[asyncio.Future[None]] = []
        self._woken = 0  # waiters woken by _wake that have not yet looked at the room

    def _room(self) -> int:
        return min(self.capacity - self.running, self.held_cap - self.held)

    async def take(self, most: int) -> int:
        woken = False
        while True:
            room = self._room()
            if room > 0 and self.fair and not woken and self._woken > 0:
                # Slots go round (several queues): a loop that gave its slots back and asks
                # again at once (after an empty long-poll) lets the loops its release woke take
                # them first, or one queue would keep every slot from the others.
                await asyncio.sleep(0)
                continue
            if room > 0:
                break
            fut = asyncio.get_running_loop().create_future()
            self._waiters.append(fut)
            try:
                await fut
            finally:
                if fut in self._waiters:
                    self._waiters.remove(fut)
                elif fut.done() and not fut.cancelled():
                    self._woken -= 1
                    woken = True
        n = min(self._room(), most)
        self.running += n
        self.held += n
        return n

    def give(self, n: int) -> None:
        """Returns ``n`` unused reservations (both kinds)."""
        self.handler_done(n)
        self.lease_done(n)

    def handler_done(self, n: int = 1) -> None:
        self.running -= n
        assert self.running >= 0, "slot accounting broke"
        self._wake()

    def lease_done(self, n: int = 1) -> None:
        self.held -= n
        assert self.held >= 0, "lease accounting broke"
        self._wake()

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)
                self._woken += 1


@dataclass(eq=False)
class Running:
    """One task held by this worker."""

    task: Task
    token: CancellationToken
    expires: float                   # monotonic time the lease ends, as far as we know
    lost: bool = False
    reporting: bool = False          # handed to a report call: a lease_lost after it is ours
    in_flight: bool = False          # a report call carrying its outcome awaits its answer
    untold_loss: Optional[str] = None  # lost by the local clock while in flight: told unless
                                       # the answer says the server took the outcome
    handled: bool = False            # the handler returned: its outcome decides, not a newer lease
    done: bool = False               # reported, dropped or abandoned: no more heartbeats
    handler_task: Optional[asyncio.Task[None]] = None
    hb_timer: Optional[asyncio.TimerHandle] = None
    hb_task: Optional[asyncio.Task[None]] = None
    started: float = field(default_factory=time.monotonic)

    def expired(self) -> bool:
        return time.monotonic() >= self.expires


@dataclass(eq=False)
class Pending:
    """One finished outcome waiting for its acknowledgement."""

    st: Running
    outcome: Outcome
    fut: asyncio.Future[None]
    queued: float                    # monotonic time it was queued
    alone: bool = False              # by ReportOutcomes only (a LeaseTasks carrying it failed)
    maybe_applied: bool = False      # a call carrying it failed: it may have landed all the same


@dataclass
class Stats:
    """Counters of one Worker run (read them from any thread; they only grow)."""

    leased: int = 0
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0
    reports_sent: int = 0
    report_batches: int = 0          # ReportOutcomes calls
    lease_report_calls: int = 0      # LeaseTasks calls that carried reports
    reports_with_lease: int = 0      # reports answered in a LeaseTasks response
    reports_alone: int = 0           # reports sent in ReportOutcomes calls (resends count again)
    reports_recovered: int = 0       # repeats refused lease_lost whose first send had landed
    lease_lost: int = 0
    duplicates: int = 0
    refreshes: int = 0
    abandoned: int = 0
    max_running: int = 0     # handlers running at once (never above concurrency)
    max_held: int = 0        # leases held at once (never above twice that)


def _retrieve(fut: "asyncio.Future[Any]") -> None:
    """Marks a finished future's exception as retrieved (the caller may have given up)."""
    if not fut.cancelled():
        fut.exception()


class Runtime:
    """All state of a running Worker; lives and dies with one ``Worker.run_async`` call."""

    def __init__(self, worker: Worker, client: AsyncClient) -> None:
        self.w = worker
        self.client = client
        self.limits = DEFAULT_LIMITS
        self.slots = Slots(worker.concurrency, 2 * worker.concurrency,
                           fair=len(worker.queues) > 1)
        # Most reports and outcome bytes per call; lowered when the server refuses a batch as
        # a whole for having more reports than its max_lease_batch, or for being over its
        # message cap (the limits from GetNodeInfo keep that from happening, when known).
        self.report_cap = MAX_REPORT_BATCH
        self.report_bytes = MAX_REPORT_BYTES
        self._async_handlers = {q: is_async_callable(h) for q, h in worker.handlers.items()}
        self.running: dict[str, Running] = {}
        self.by_job: dict[str, Running] = {}
        self.refreshing: dict[str, asyncio.Task[None]] = {}  # by key + lease token
        # key -> (lease token, state) of the refresh of that key running here: a new lease of
        # the key means the server let this one go (it expired), so it is no longer reported.
        self._refresh_runs: dict[str, tuple[int, dict[str, Union[float, bool]]]] = {}
        self.polling: dict[str, bool] = {}
        self.lease_loops: dict[str, asyncio.Task[None]] = {}
        self.loop_state: dict[str, str] = {}  # queue -> take | fast | poll | backoff | done
        self.stopping = False
        self.closing = False  # close() without a drain: leased tasks are no longer started
        self.hurry = False   # stop at once (a second signal): skip the drain and the grace
        self.report_with_lease = worker.report_with_lease
        self.linger = worker.report_linger_ms / 1000.0
        self._reports: list[Pending] = []
        self._report_ready = asyncio.Event()
        self._reporter: Optional[asyncio.Task[None]] = None
        self._linger_timer: Optional[asyncio.TimerHandle] = None
        self._linger_due = 0.0
        self._lane_wake: dict[str, asyncio.Event] = {}  # queue -> wakes its second lane
        self._second_fast: dict[str, bool] = {}          # queue -> its second lane's call in flight
        self._changed = asyncio.Event()   # a task or refresh ended (drain waits on it)
        self.job_pool = DaemonPool(worker.concurrency, f"sluice-worker-{worker.worker_id}")
        self.refresh_pool = DaemonPool(REFRESH_THREADS, f"sluice-refresh-{worker.worker_id}")
        self.stats = worker.stats

    # ---- events -----------------------------------------------------------------------------

    def event(self, name: str, **fields: Any) -> None:
        level = logging.WARNING if name in ("lease_lost", "report_rejected", "abandoned",
                                            "lease_error", "report_error") else logging.DEBUG
        log.log(level, "%s %s", name, fields)
        hook = self.w.on_event
        if hook is not None:
            try:
                hook(name, fields)
            except Exception:  # noqa: BLE001 (a broken hook must not break the worker)
                log.exception("on_event hook raised for %s", name)

    # ---- start ------------------------------------------------------------------------------

    async def start(self) -> None:
        try:
            self.limits = (await self.client.node_info()).limits
        except _TRANSIENT as e:  # the server may come up later; lease loops keep trying
            self.event("node_info_unavailable", error=repr(e))
        self._reporter = asyncio.create_task(self._reporter_loop(), name="sluice-reporter")
        for queue in self.w.queues:
            self.polling[queue] = False
            self.lease_loops[queue] = asyncio.create_task(self._lease_loop(queue),
                                                          name=f"sluice-lease-{queue}")
            if self.report_with_lease:
                self._lane_wake[queue] = asyncio.Event()
                self._second_fast[queue] = False
                self.polling[queue + _SECOND] = False
                self.lease_loops[queue + _SECOND] = asyncio.create_task(
                    self._second_lane(queue), name=f"sluice-lease2-{queue}")
        self.event("started", worker_id=self.w.worker_id, queues=list(self.w.queues),
                   concurrency=self.w.concurrency)

    # ---- leasing ----------------------------------------------------------------------------

    async def _lease_loop(self, queue: str) -> None:
        try:
            await self._lease_rounds(queue)
        finally:
            self._set_state(queue, "done")

    async def _lease_rounds(self, queue: str) -> None:
        idle = False
        failures = 0
        multi = len(self.w.queues) > 1
        while not self.stopping:
            # An idle queue of a multi-queue worker reserves one slot while it long-polls, so
            # it does not sit on slots another queue's work could use.
            most = 1 if (multi and idle) else min(self.limits.max_lease_batch, 1_000_000)
            self._set_state(queue, "take")
            n = await self.slots.take(most)
            if self.stopping:
                self.slots.give(n)
                return
            batch = self._take_reports(queue)
            self._set_state(queue, "fast" if batch else "poll")
            self.polling[queue] = True
            try:
                if batch:
                    self.stats.lease_report_calls += 1
                # A call carrying reports does not long-poll: its answer, soon, is what says
                # whether they were applied.
                resp = await self.client.lease(
                    queue, self.w.worker_id, max_tasks=n,
                    wait_ms=0 if batch else self.w.poll_wait_ms,
                    reports=[Report(p.st.task, p.outcome) for p in batch])
            except SluiceError as e:
                self.polling[queue] = False
                self.slots.give(n)
                # Not applied, or applied with the answer lost: the reporter sends them again.
                self._requeue_alone(batch)
                failures += 1
                self.event("lease_error", queue=queue, error=repr(e))
                self._set_state(queue, "backoff")
                await self._sleep_unless_stopping(_backoff(failures))
                continue
            except BaseException:
                self.slots.give(n)
                self._requeue_alone(batch)
                raise
            finally:
                self.polling[queue] = False
            failures = 0
            idle = not self._leased(queue, n, batch, resp)

    def _leased(self, queue: str, n: int, batch: list[Pending], resp: LeaseResponse) -> bool:
        """Takes in a LeaseTasks answer: the reports' statuses, then the tasks (over the ``n``
        reserved slots) and refreshes. Returns whether it brought tasks."""
        if batch:
            self._lease_reported(queue, batch, resp)
        used = self._accept(resp.tasks, n, time.monotonic())
        self.slots.give(n - used)
        for r in resp.refreshes:
            self._start_refresh(r)
        return bool(resp.tasks)

    def _second_due(self, queue: str) -> int:
        """How many outcomes the queue's second lane should send now: those of the queue that
        wait for a lease while the first lane has a call in flight (else 0)."""
        if (not self.report_with_lease or self.stopping or self._second_fast[queue]
                or self.loop_state.get(queue) not in ("fast", "poll")):
            return 0
        return sum(1 for p in self._reports if p.st.task.queue == queue and not p.alone)

    async def _second_lane(self, queue: str) -> None:
        """A queue's second lane: while the first lane's call is in flight, outcomes that
        finished meanwhile go at once on a LeaseTasks of their own (wait_ms 0) with the slots
        they freed, instead of waiting for that call to come back: two report-and-fetch round
        trips overlap. It never long-polls."""
        key = queue + _SECOND
        wake = self._lane_wake[queue]
        failures = 0
        while not self.stopping:
            due = self._second_due(queue)
            if not due:
                wake.clear()
                await wake.wait()
                continue
            # As many tasks as the outcomes it carries freed slots (it takes no other queue's).
            n = await self.slots.take(min(due, self.limits.max_lease_batch))
            batch = self._take_reports(queue) if self._second_due(queue) else []
            if not batch:
                self.slots.give(n)
                continue
            self._second_fast[queue] = True
            self.polling[key] = True
            try:
                self.stats.lease_report_calls += 1
                resp = await self.client.lease(
                    queue, self.w.worker_id, max_tasks=n, wait_ms=0,
                    reports=[Report(p.st.task, p.outcome) for p in batch])
            except SluiceError as e:
                self._second_fast[queue] = False
                self.polling[key] = False
                self.slots.give(n)
                self._requeue_alone(batch)
                failures += 1
                self.event("lease_error", queue=queue, error=repr(e))
                await self._sleep_unless_stopping(_backoff(failures))
                continue
            except BaseException:
                self.slots.give(n)
                self._requeue_alone(batch)
                raise
            finally:
                self._second_fast[queue] = False
                self.polling[key] = False
            failures = 0
            self._leased(queue, n, batch, resp)
            self._recheck_reports()

    def _set_state(self, queue: str, state: str) -> None:
        self.loop_state[queue] = state
        if state in ("fast", "poll") and queue in self._lane_wake:
            self._lane_wake[queue].set()  # outcomes that wait may go on the second lane
        self._recheck_reports()

    def _accept(self, tasks: list[Task], n: int, received: float) -> int:
        """Starts the leased tasks (dropping duplicates); returns how many slots they use."""
        used = 0
        for t in tasks:
            if t.task_id in self.running:
                self.stats.duplicates += 1
                self.event("duplicate_delivery", task_id=t.task_id, job_id=t.job_id)
                continue
            if used == n:  # never more than asked for (the server does not do this)
                self.event("over_delivery", task_id=t.task_id, job_id=t.job_id)
                continue
            if self.closing:
                # Closing without a drain: nothing would report it. Its lease expires and the
                # job runs again elsewhere, without running here first.
                self.stats.abandoned += 1
                self.event("abandoned", task_id=t.task_id, job_id=t.job_id)
                continue
            old = self.by_job.get(t.job_id)
            if old is not None and not old.handled:
                # A newer attempt of a job whose handler still runs here: our lease is dead.
                # (One whose outcome is being reported is left to its report's answer: the
                # newer attempt may be the retry that very report asked for.)
                self._lose(old, "superseded")
            used += 1
            self._start_task(t, received)
        return used

    async def _sleep_unless_stopping(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while not self.stopping and time.monotonic() < end:
            await asyncio.sleep(min(0.05, max(0.0, end - time.monotonic())))

    # ---- running tasks ----------------------------------------------------------------------

    def _start_task(self, t: Task, received: float) -> None:
        # Task.lease_ms is what was left of the lease when the server answered (a long-poll may
        # have waited before that). Count from receipt, less a margin for the answer's trip.
        lease_s = t.lease_ms / 1000.0
        st = Running(t, CancellationToken(), received + lease_s - min(0.05 * lease_s, 1.0))
        self.running[t.task_id] = st
        self.by_job[t.job_id] = st
        self.stats.leased += 1
        self.stats.max_running = max(self.stats.max_running, self.slots.running)
        self.stats.max_held = max(self.stats.max_held, len(self.running))
        st.handler_task = asyncio.create_task(self._run_task(st), name=f"sluice-task-{t.job_id}")

    async def _run_task(self, st: Running) -> None:
        self._schedule_heartbeat(st, st.task.lease_ms / 3000.0)
        try:
            try:
                outcome = await self._invoke(st)
            finally:
                st.handled = True
                self.slots.handler_done()
            if outcome is not None and not self._lease_gone(st):
                await self._report(st, outcome)
            elif outcome is not None:
                self.event("lease_lost_no_report", task_id=st.task.task_id,
                           job_id=st.task.job_id)
        finally:
            st.done = True
            if st.untold_loss is not None:
                # Lost by the local clock while its report was in flight, and no answer said the
                # server took the outcome.
                self._tell_loss(st, st.untold_loss)
            if st.hb_timer is not None:
                st.hb_timer.cancel()
            self.running.pop(st.task.task_id, None)
            if self.by_job.get(st.task.job_id) is st:
                del self.by_job[st.task.job_id]
            self.slots.lease_done()
            self._changed.set()

    def _lease_gone(self, st: Running) -> bool:
        if not st.lost and st.expired():
            self._lose(st, "expired_locally")
        return st.lost

    async def _invoke(self, st: Running) -> Optional[Outcome]:
        """Runs the handler; its return or exception becomes the outcome (None: abandoned)."""
        handler = self.w.handlers[st.task.queue]
        ctx = self.w._context(st.task, st.token)
        try:
            if self._async_handlers[st.task.queue]:
                value = await handler(ctx)
            else:
                value = await self.job_pool.run(handler, ctx)
                if inspect.isawaitable(value):
                    value = await value
            return self._success(value)
        except asyncio.CancelledError:
            return None  # abandoned at the stop deadline: never reported
        except JobCancelled:
            if st.token.reason == SHUTDOWN:
                return Outcome.failure("worker_shutdown", "the worker stopped before the job "
                                       "finished")
            return Outcome.cancelled()
        except JobFailed as e:
            return self._safe_failure(lambda: self._failure(e.code, e.message, e.data,
                                                            e.no_retry), e.no_retry)
        except Exception as e:  # noqa: BLE001 (every handler error becomes a failure)
            self.event("handler_error", job_id=st.task.job_id, error=repr(e))

            def build() -> Outcome:
                tb = "".join(traceback.format_exception(type(e), e, e.__traceback__))
                return self._failure(type(e).__name__, str(e), tb.encode(), False)
            return self._safe_failure(build, False)

    def _safe_failure(self, build: Callable[[], Outcome], no_retry: Any) -> Outcome:
        """The failure ``build`` makes, or, when its fields cannot be encoded (a ``__str__``
        that raises), a ``handler_error`` failure saying so: an outcome must never break its
        report."""
        try:
            return build()
        except Exception as e:  # noqa: BLE001
            try:
                nr = bool(no_retry)
            except Exception:  # noqa: BLE001
                nr = False
            return self._failure("handler_error", f"the failure could not be encoded: {e!r}",
                                 b"", nr)

    def _success(self, value: Any) -> Outcome:
        if value is None:
            result = b""
        elif isinstance(value, (bytes, bytearray, memoryview)):
            result = bytes(value)
        else:
            try:
                view = memoryview(value)  # any other buffer: array.array, a NumPy array, mmap
            except TypeError:
                result = encode_json(value)
            else:
                with view:
                    result = view.tobytes()
        if len(result) > self.limits.max_result_bytes:
            return self._failure("result_too_large", f"result of {len(result)} bytes exceeds "
                                 f"the cap of {self.limits.max_result_bytes}", b"", False)
        return Outcome.success(result)

    def _failure(self, code: str, message: str, data: bytes, no_retry: bool) -> Outcome:
        lim = self.limits
        # JobFailed(e) with an exception as its message is common; a subclass may set a
        # non-string code: both are taken as their str().
        if isinstance(data, (int, str)) or data is None:  # bytes(n) would allocate n bytes
            raise TypeError(f"failure data must be bytes, not {type(data).__name__}")
        return Outcome.failure(_truncate(str(code) or "error", lim.max_error_code_bytes),
                               _truncate(str(message), lim.max_error_message_bytes),
                               data=bytes(data)[:lim.max_error_data_bytes],
                               no_retry=bool(no_retry))

    def _lose(self, st: Running, why: str) -> None:
        if st.lost:
            return
        st.lost = True
        if st.in_flight:
            # The server may have taken the outcome before the lease ran out by its clock (ours
            # runs a little ahead): the report's answer decides, and the loss is told only when
            # it was not a success (one count per task, not lease_lost and succeeded).
            st.untold_loss = why
            return
        self._tell_loss(st, why)

    def _tell_loss(self, st: Running, why: str) -> None:
        st.untold_loss = None
        self.stats.lease_lost += 1
        st.token.set(LEASE_LOST)
        self.event("lease_lost", task_id=st.task.task_id, job_id=st.task.job_id, why=why)

    def _schedule_heartbeat(self, st: Running, delay: float) -> None:
        """Arms the task's heartbeat timer (a timer, not a coroutine per task: short jobs
        finish and cancel it before it ever fires)."""
        delay = max(0.0, min(delay, st.expires - time.monotonic()))
        st.hb_timer = asyncio.get_running_loop().call_later(delay, self._heartbeat_due, st)

    def _heartbeat_due(self, st: Running) -> None:
        st.hb_timer = None
        if st.done or st.lost:
            return
        st.hb_task = asyncio.create_task(self._heartbeat(st))

    async def _heartbeat(self, st: Running) -> None:
        """One heartbeat, then the next timer. Bounded by the lease as we know it (retries
        included): a heartbeat that has not come back when the lease ends means it is gone."""
        lease_s = max(st.task.lease_ms, 30) / 1000.0
        if self._lease_gone(st):
            return
        sent = time.monotonic()
        try:
            hb = await asyncio.wait_for(
                self.client.heartbeat(st.task, timeout=max(0.05, st.expires - sent)),
                timeout=max(0.0, st.expires - sent))
        except asyncio.TimeoutError:
            if not st.reporting and not st.done:
                self._lose(st, "heartbeat_timeout")
            return
        except LeaseLostError:
            if not st.reporting and not st.done:
                self._lose(st, "heartbeat")
            return
        except SluiceError as e:
            self.event("heartbeat_error", task_id=st.task.task_id, error=repr(e))
            if not st.done:
                self._schedule_heartbeat(st, max(0.02, (st.expires - time.monotonic()) / 3.0))
            return
        st.expires = sent + lease_s
        if hb.cancel_requested and not st.token.cancelled:
            self.event("cancel_requested", task_id=st.task.task_id, job_id=st.task.job_id)
            st.token.set("cancel_requested")
        if not st.done:
            self._schedule_heartbeat(st, lease_s / 3.0)

    # ---- reporting --------------------------------------------------------------------------

    async def _report(self, st: Running, outcome: Outcome) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        p = Pending(st, outcome, fut, time.monotonic())
        self._reports.append(p)
        wake = self._lane_wake.get(st.task.queue)
        if wake is not None:
            wake.set()
        at = self._alone_at(p)
        if at <= p.queued:
            self._report_ready.set()
        else:
            self._arm_linger(at)
        await fut

    def _alone_at(self, p: Pending) -> float:
        """When a waiting outcome goes alone (ReportOutcomes) rather than on its queue's next
        LeaseTasks (monotonic; inf: not while things stay as they are). At once when
        piggybacking is off or failed for it, when stopping, and when its queue's loop backs
        off or ended; never while a call of its queue that does not long-poll is in flight
        (the next call takes it); else once it has waited the linger for a loop that is out of
        slots or in a long-poll."""
        if p.alone or self.stopping or not self.report_with_lease:
            return 0.0
        queue = p.st.task.queue
        state = self.loop_state.get(queue)
        if state == "fast" or self._second_fast.get(queue):
            return float("inf")
        if state not in ("take", "poll"):
            return 0.0
        return p.queued + self.linger

    def _recheck_reports(self) -> None:
        """After a change of what the lease loops do: wakes the reporter for the outcomes that
        go alone now, and arms the linger for the first that will."""
        if not self._reports:
            return
        at = min(self._alone_at(p) for p in self._reports)
        if at <= time.monotonic():
            self._report_ready.set()
        else:
            self._arm_linger(at)

    def _arm_linger(self, due: float) -> None:
        """Wakes the reporter at ``due`` (monotonic), when an outcome stops waiting for a lease."""
        if due == float("inf") or (self._linger_timer is not None and self._linger_due <= due):
            return
        if self._linger_timer is not None:
            self._linger_timer.cancel()
        self._linger_due = due
        self._linger_timer = asyncio.get_running_loop().call_later(
            max(0.0, due - time.monotonic()), self._linger_over)

    def _linger_over(self) -> None:
        self._linger_timer = None
        self._report_ready.set()

    def _take_reports(self, queue: str) -> list[Pending]:
        """The queue's waiting outcomes, for its next LeaseTasks call."""
        if not self.report_with_lease or not self._reports:
            return []
        batch: list[Pending] = []
        keep: list[Pending] = []
        cap, budget = self._report_cap(), self._report_budget()
        size = 0
        for p in self._reports:
            if (len(batch) >= cap or p.alone or p.st.task.queue != queue
                    or (batch and size + _outcome_bytes(p.outcome) > budget)):
                keep.append(p)
            elif self._lease_gone(p.st):
                self._drop_lost(p)
            else:
                p.st.reporting = p.st.in_flight = True
                size += _outcome_bytes(p.outcome)
                batch.append(p)
        self._reports[:] = keep
        return batch

    def _drop_lost(self, p: Pending) -> None:
        """A waiting outcome whose lease is gone: it is never sent (again); a loss kept back
        while a call carried it is told now."""
        self.event("lease_lost_no_report", task_id=p.st.task.task_id, job_id=p.st.task.job_id)
        if p.st.untold_loss is not None:
            self._tell_loss(p.st, p.st.untold_loss)
        if not p.fut.done():
            p.fut.set_result(None)

    def _report_cap(self) -> int:
        """Most reports per call: the server's max_lease_batch, lowered by refusals."""
        return max(1, min(self.report_cap, self.limits.max_lease_batch))

    def _report_budget(self) -> int:
        """Most outcome bytes per call: half the server's request cap, at most 4 MiB."""
        return max(1024, min(self.report_bytes, self.limits.max_message_bytes // 2))

    def _lease_reported(self, queue: str, batch: list[Pending], resp: LeaseResponse) -> None:
        """The answers to the reports a LeaseTasks call carried."""
        statuses = resp.report_statuses
        if len(statuses) != len(batch):
            # A server that predates LeaseTasks reports ignored them: report alone from now on
            # (said once; the other lane may have had such a call in flight too).
            if self.report_with_lease:
                self.event("lease_reports_ignored", queue=queue, reports=len(batch),
                           statuses=len(statuses))
            self.report_with_lease = False
            self._requeue_alone(batch, maybe_applied=bool(statuses))
            return
        self.stats.reports_with_lease += len(batch)
        for p in batch:
            p.st.in_flight = False
        for p, status in zip(batch, statuses):
            self._count(p.st, p.outcome, status.ok, status.sluice_code, status.message)
            if not p.fut.done():
                p.fut.set_result(None)

    def _requeue_alone(self, batch: list[Pending], maybe_applied: bool = True) -> None:
        """Reports of a LeaseTasks call that failed go by ReportOutcomes."""
        for p in batch:
            p.st.in_flight = False
            if p.st.lost:  # lost here while the call was in flight: never sent again
                self._drop_lost(p)
                continue
            p.alone = True
            p.maybe_applied = p.maybe_applied or maybe_applied
            self._reports.append(p)
        if batch:
            self._report_ready.set()

    async def _reporter_loop(self) -> None:
        """Sends the outcomes that go alone, one ReportOutcomes call at a time; the others
        wait for their queue's next LeaseTasks."""
        while True:
            await self._report_ready.wait()
            self._report_ready.clear()
            while self._reports:
                now = time.monotonic()
                batch: list[Pending] = []
                keep: list[Pending] = []
                due = float("inf")
                cap, budget = self._report_cap(), self._report_budget()
                size = 0
                for p in self._reports:
                    at = self._alone_at(p)
                    if (len(batch) < cap and at <= now and
                            (not batch or size + _outcome_bytes(p.outcome) <= budget)):
                        size += _outcome_bytes(p.outcome)
                        batch.append(p)
                        continue
                    keep.append(p)
                    if at > now:
                        due = min(due, at)
                self._reports[:] = keep
                self._arm_linger(due)
                if not batch:
                    break
                try:
                    await self._send_reports(batch)
                finally:
                    for p in batch:
                        if not p.fut.done():
                            p.fut.set_result(None)

    async def _send_reports(self, batch: list[Pending]) -> None:
        failures = 0
        while True:
            live = [p for p in batch if not self._lease_gone(p.st)]
            for p in batch:
                if p.st.lost:
                    self._drop_lost(p)
            if not live:
                return
            batch = live
            for p in batch:
                p.st.reporting = p.st.in_flight = True
            self.stats.reports_alone += len(batch)
            try:
                try:
                    statuses = await self.client.report_outcomes(
                        [Report(p.st.task, p.outcome) for p in batch],
                        tenant=batch[0].st.task.tenant)
                except BaseException:
                    for p in batch:
                        p.st.in_flight = False  # (answered: they stay in flight until counted)
                    raise
                break
            except _TRANSIENT as e:
                failures += 1
                for p in batch:
                    p.maybe_applied = True  # the answer may be what was lost
                self.event("report_error", error=repr(e), reports=len(batch))
                await asyncio.sleep(_backoff(failures))
            except TooLargeError as e:
                if e.sluice_code is None and sum(_outcome_bytes(p.outcome) for p in batch) < 512:
                    # Far below any message cap (at least 1 KiB): an older sluiced's overload
                    # answer, retried like a transient failure.
                    failures += 1
                    self.event("report_error", error=repr(e), reports=len(batch))
                    await asyncio.sleep(_backoff(failures))
                    continue
                # Refused as a whole, nothing applied: `too_large` says the batch has more
                # reports than the server's max_lease_batch, no code that the request is over
                # its message cap. The halves go again (which always gets through), and the
                # limit the refusal names is kept for later batches. A lone report refused so
                # is that report's own answer, unless an earlier try of the call (the client
                # retries transient failures) may have landed.
                self.event("report_error", error=repr(e), reports=len(batch))
                if e.attempts > 1:
                    for p in batch:
                        p.maybe_applied = True
                if len(batch) > 1:
                    half = len(batch) // 2
                    size = sum(_outcome_bytes(p.outcome) for p in batch)
                    if e.sluice_code == "too_large":
                        self.report_cap = max(1, min(self.report_cap, half))
                    elif size // 2 >= 1024:
                        self.report_bytes = min(self.report_bytes, size // 2)
                    await self._send_reports(batch[:half])
                    await self._send_reports(batch[half:])
                    return
                if e.attempts > 1:
                    failures += 1
                    await asyncio.sleep(_backoff(failures))
                    continue
                self._count(batch[0].st, batch[0].outcome, False, e.sluice_code or "too_large",
                            str(e))
                return
            except SluiceError as e:
                self.event("report_error", error=repr(e), reports=len(batch))
                return
        self.stats.report_batches += 1
        try:
            for p, status in zip(batch, statuses):
                # A task stays in flight until its answer is counted: a loss by the local clock
                # meanwhile (e.g. while the attempt record is read below) waits for it. A task
                # lost here while the report was in flight is checked too: the earlier send may
                # have landed before the lease ran out on the server.
                if (status.sluice_code == "lease_lost" and p.maybe_applied
                        and (not p.st.lost or p.st.untold_loss is not None)
                        and await self._landed(p)):
                    self.stats.reports_recovered += 1
                    status = ReportStatus(0, "ok", "")
                p.st.in_flight = False
                self._count(p.st, p.outcome, status.ok, status.sluice_code, status.message)
        finally:
            for p in batch:
                p.st.in_flight = False

    async def _landed(self, p: Pending) -> bool:
        """After a resent report met lease_lost: whether its earlier send was applied (the
        attempt's record holds this outcome)."""
        want = {OutcomeKind.SUCCESS: AttemptStatus.SUCCEEDED,
                OutcomeKind.FAILURE: AttemptStatus.FAILED,
                OutcomeKind.CANCELLED: AttemptStatus.CANCELLED}[p.outcome.kind]
        try:
            job = await self.client.get_job(p.st.task.job_id, include_attempts=True,
                                            tenant=p.st.task.tenant)
        except SluiceError as e:
            self.event("report_error", error=repr(e), reports=1)
            return False
        for a in job.attempts:
            if a.task_id == p.st.task.task_id:
                return a.status == want and (want != AttemptStatus.FAILED
                                             or a.error_code == p.outcome.error_code)
        return False

    def _count(self, st: Running, outcome: Outcome, ok: bool, code: str, message: str) -> None:
        """Counts a report's answer: the task's one outcome (succeeded, failed, cancelled, or
        its lease lost)."""
        if st.done:
            # The task was abandoned at the stop deadline meanwhile (and counted so): an answer
            # that comes after that changes nothing.
            return
        if ok:
            st.untold_loss = None  # the server took the outcome: its lease had not run out there
            self.stats.reports_sent += 1
            if outcome.kind is OutcomeKind.SUCCESS:
                self.stats.succeeded += 1
            elif outcome.kind is OutcomeKind.FAILURE:
                self.stats.failed += 1
            else:
                self.stats.cancelled += 1
            self.event("reported", task_id=st.task.task_id, job_id=st.task.job_id,
                       outcome=outcome.kind.value)
        else:
            if st.untold_loss is not None:
                self._tell_loss(st, st.untold_loss)
            elif code == "lease_lost" and not st.lost:
                st.lost = True
                self.stats.lease_lost += 1
            self.event("report_rejected", task_id=st.task.task_id, job_id=st.task.job_id,
                       code=code, message=message)

    # ---- floating-limit refreshes -----------------------------------------------------------

    def _start_refresh(self, r: RefreshTask) -> None:
        cur = self._refresh_runs.get(r.key)
        if cur is not None:
            if r.lease_token <= cur[0]:  # the same lease again (tokens only grow)
                self.event("duplicate_refresh", key=r.key)
                return
            # A newer refresh lease of a key still refreshing here: the older one is gone on
            # the server. Its run is never reported; this one runs on its own.
            cur[1]["lost"] = cur[1]["superseded"] = True
            self.event("refresh_lease_lost", key=r.key, why="superseded")
        state: dict[str, Union[float, bool]] = {
            "expires": time.monotonic() + self._refresh_lease_s(r), "lost": False}
        self._refresh_runs[r.key] = (r.lease_token, state)
        self.refreshing[f"{r.key}\0{r.lease_token}"] = asyncio.create_task(
            self._run_refresh(r, state), name=f"sluice-refresh-{r.key}")

    async def _run_refresh(self, r: RefreshTask, state: dict[str, Union[float, bool]]) -> None:
        try:
            self.stats.refreshes += 1
            handler = self.w._refresh_handler_for(r.key)
            if handler is None:
                await self._refresh_outcome(r, None, "no_refresh_handler",
                                            f"worker {self.w.worker_id} has no refresh handler "
                                            f"for key {r.key!r}")
                return
            await self._refresh_with_heartbeat(r, handler, state)
        finally:
            self.refreshing.pop(f"{r.key}\0{r.lease_token}", None)
            if self._refresh_runs.get(r.key, (None, None))[0] == r.lease_token:
                del self._refresh_runs[r.key]
            self._changed.set()

    async def _refresh_with_heartbeat(self, r: RefreshTask,
                                      handler: Callable[[RefreshRequest], Any],
                                      state: dict[str, Union[float, bool]]) -> None:
        lease_s = self._refresh_lease_s(r)
        hb = asyncio.create_task(self._refresh_heartbeat(r, state, lease_s))
        call = asyncio.ensure_future(self._call_refresh(handler, self.w._refresh_request(r)))
        call.add_done_callback(_retrieve)  # a throw after we gave up is not "never retrieved"
        limit_ms = self.w.refresh_timeout_ms
        timed_out = False
        try:
            # asyncio.wait, not wait_for: a TimeoutError the handler raises itself is its own
            # failure, not the worker's timeout. The heartbeat task ends when the lease is
            # lost: the handler is then cancelled at once (nothing would report it).
            await asyncio.wait({call, hb}, timeout=limit_ms / 1000.0 if limit_ms else None,
                               return_when=asyncio.FIRST_COMPLETED)
            if call.done():
                value = call.result()
                if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**32:
                    new_max, code = None, "invalid_refresh_value"
                    msg = f"handler returned {value!r}"
                else:
                    new_max, code, msg = value, "", ""
            else:
                timed_out = not hb.done()
                new_max, code = None, "refresh_timeout"
                msg = f"the refresh handler for {r.key!r} did not return within {limit_ms} ms"
        except Exception as e:  # noqa: BLE001 (reported as a refresh failure)
            code = str(e.code) if isinstance(e, JobFailed) else type(e).__name__
            new_max = None
            try:
                msg = str(e)
            except Exception:  # noqa: BLE001 (a __str__ that raises)
                msg = f"the refresh handler raised {type(e).__name__}"
        finally:
            hb.cancel()
            if not call.done():
                # Timed out, lease lost, or this run was cancelled (close()): give an async
                # handler a moment to run its cleanup (a sync one's pool item is dropped).
                call.cancel()
                await asyncio.wait({call}, timeout=1.0)
        if state["lost"] or time.monotonic() >= float(state["expires"]):
            if not state.get("superseded"):  # (said when it was)
                self.event("refresh_lease_lost", key=r.key)
            return
        if timed_out:
            self.event("refresh_timeout", key=r.key, timeout_ms=limit_ms)
        await self._refresh_outcome(r, new_max, code, msg)

    @staticmethod
    def _refresh_lease_s(r: RefreshTask) -> float:
        """The refresh lease's length: RefreshTask.lease_ms; from a server that does not send
        it, estimated from the expiry (trusting the clocks) with the server default as the
        fallback."""
        if r.lease_ms > 0:
            return r.lease_ms / 1000.0
        est = (r.lease_expires_ms - time.time() * 1000.0) / 1000.0
        return est if 0.05 < est < 86_400 else DEFAULT_REFRESH_LEASE_S

    async def _call_refresh(self, handler: Callable[[RefreshRequest], Any],
                            req: RefreshRequest) -> Any:
        if is_async_callable(handler):
            return await handler(req)
        value = await self.refresh_pool.run(handler, req)
        return (await value) if inspect.isawaitable(value) else value

    async def _refresh_heartbeat(self, r: RefreshTask, state: dict[str, Union[float, bool]],
                                 lease_s: float) -> None:
        """Heartbeats every third of the lease, counted from each send (however long it took);
        each gives up after a quarter of the lease, so one stalled call leaves two more tries
        before the lease runs out."""
        next_at = time.monotonic() + lease_s / 3.0
        while not state["lost"]:
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            if state["lost"]:
                return
            sent = time.monotonic()
            next_at = sent + lease_s / 3.0
            try:
                await self.client.heartbeat_refresh(r, timeout=max(0.05, lease_s / 4.0))
                state["expires"] = sent + lease_s
            except LeaseLostError:
                state["lost"] = True
                return
            except Exception as e:  # noqa: BLE001 (a failed heartbeat; the next one may pass)
                self.event("refresh_heartbeat_error", key=r.key, error=repr(e))

    async def _refresh_outcome(self, r: RefreshTask, new_max: Optional[int], code: str,
                               message: str) -> None:
        try:
            if new_max is not None:
                await self.client.complete_refresh(r, new_max)
                self.event("refresh_reported", key=r.key, new_max=new_max)
            else:
                lim = self.limits
                await self.client.fail_refresh(r, _truncate(code or "error",
                                                            lim.max_error_code_bytes),
                                               _truncate(message, lim.max_error_message_bytes))
                self.event("refresh_failed", key=r.key, code=code, message=message)
        except Exception as e:  # noqa: BLE001 (nothing may escape the refresh's task)
            self.event("refresh_report_error", key=r.key, error=repr(e))

    # ---- stopping ---------------------------------------------------------------------------

    def idle(self) -> bool:
        return (not self.running and not self.refreshing and not self._reports
                and all(t.done() for t in self.lease_loops.values()))

    async def drain(self, timeout: float, grace: float) -> bool:
        """Stops leasing and waits up to ``timeout`` for held tasks to finish and report.
        Then sets the tokens of what still runs (``shutdown``), waits ``grace`` more, and
        abandons the rest (never reported: their leases expire on the server)."""
        self.stopping = True
        self._report_ready.set()  # nothing waits for a lease any more
        for wake in self._lane_wake.values():
            wake.set()
        for queue, loop_task in self.lease_loops.items():
            if not self.polling.get(queue):  # waiting for a slot: no RPC to lose
                loop_task.cancel()
        deadline = time.monotonic() + timeout
        if await self._wait_idle(deadline):
            return True
        for loop_task in self.lease_loops.values():
            loop_task.cancel()  # a long-poll past the deadline: give up on it
        for st in list(self.running.values()):
            st.token.set(SHUTDOWN)
        if await self._wait_idle(time.monotonic() + grace):
            return False
        self.hurry = False  # (let the cancelled handlers unwind below)
        for st in list(self.running.values()):
            self.stats.abandoned += 1
            self.event("abandoned", task_id=st.task.task_id, job_id=st.task.job_id)
            if st.handler_task is not None:
                st.handler_task.cancel()
        for t in list(self.refreshing.values()):
            t.cancel()
        await self._wait_idle(time.monotonic() + 1.0)
        return False

    async def _wait_idle(self, deadline: float) -> bool:
        while not self.idle():
            left = deadline - time.monotonic()
            if left <= 0 or self.hurry:
                return False
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), timeout=min(left, 0.05))
            except asyncio.TimeoutError:
                pass
        return True

    async def close(self) -> None:
        if self._linger_timer is not None:
            self._linger_timer.cancel()
        # After a drain every loop has ended. Closed without one (the run was cancelled or
        # failed), a long-poll would lease into nothing, and a loop waiting for a slot, or a
        # second lane waiting for outcomes, would wait forever: cancel them. A call carrying
        # reports is answered soon (it does not long-poll) and its answer says whether they
        # were applied: wait for it a little first.
        self.closing = True
        carrying = []
        for key, lane in self.lease_loops.items():
            if lane.done():
                continue
            queue = key[:-len(_SECOND)] if key.endswith(_SECOND) else key
            if (self._second_fast.get(queue) if key.endswith(_SECOND)
                    else self.polling.get(key) and self.loop_state.get(key) == "fast"):
                carrying.append(lane)
            else:
                lane.cancel()
        if carrying:
            try:
                # Shielded: a second cancellation of the run must not skip the rest of its
                # cleanup (closing the client, marking the worker finished).
                _, late = await asyncio.shield(asyncio.wait(carrying, timeout=5.0))
            except asyncio.CancelledError:
                late = set(carrying)
            for lane in late:
                lane.cancel()
        if self._reporter is not None:
            self._reporter.cancel()
        # After a drain none is left; closed without one, a refresh would outlive the client.
        for t in list(self.refreshing.values()):
            t.cancel()
        await asyncio.gather(*self.lease_loops.values(), *self.refreshing.values(),
                             return_exceptions=True)
        self.job_pool.shutdown()
        self.refresh_pool.shutdown()


Handler = Callable[["JobContext"], Union[Any, Awaitable[Any]]]
RefreshHandler = Callable[["RefreshRequest"], Union[int, Awaitable[int]]]
