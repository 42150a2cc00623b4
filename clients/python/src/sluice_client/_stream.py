"""Lease streams: LeaseTasks requests over one ``LeaseStream`` call, answered in order.

A worker may send its next request before the previous one is answered (pipelining), and no
request pays for a call's set-up. A request that fails ends the stream: its error is raised by
the ``receive`` of that request and of every later one (the server applied none of the later
ones). Open a new stream after one ended. The stream has no deadline of its own: give each
``receive`` a timeout, and ``cancel()`` a stream whose answer is overdue.
"""

from __future__ import annotations

import collections
import queue as queue_mod
import threading
from typing import Any, Iterator, Optional, Sequence

import grpc
import grpc.aio

from . import _convert as cv
from ._pb import pb
from ._requests import RequestBuilder, map_error
from .errors import CancelledError, SluiceError, SluiceTimeoutError
from .types import LeaseResponse, Report

_END = object()


class _Base:
    def __init__(self, requests: RequestBuilder, tenant: Optional[str]) -> None:
        self._req = requests
        self._tenant = tenant
        self._asked: collections.deque[tuple[str, str]] = collections.deque()  # (tenant, worker)
        self._error: Optional[SluiceError] = None

    def _request(self, queue: str, worker_id: str, max_tasks: int, wait_ms: int,
                 reports: Sequence[Report]) -> pb.LeaseTasksRequest:
        if self._error is not None:
            raise self._error
        req = self._req.lease(queue, worker_id, max_tasks, wait_ms, self._tenant, reports)
        self._asked.append((self._req.tenant(self._tenant), worker_id))
        return req

    def _answer(self, resp: pb.LeaseTasksResponse) -> LeaseResponse:
        tenant, worker_id = self._asked.popleft()
        return cv.lease_response(resp, tenant, worker_id)

    def _ended(self, e: BaseException) -> BaseException:
        if self._error is None:
            self._error = e if isinstance(e, SluiceError) else SluiceError(
                str(e), grpc_code=grpc.StatusCode.UNKNOWN)
        return self._error

    @property
    def in_flight(self) -> int:
        """Requests sent and not yet answered."""
        return len(self._asked)

    @property
    def ended(self) -> bool:
        """Whether the stream has ended (every later send raises)."""
        return self._error is not None


class LeaseStream(_Base):
    """A lease stream of :class:`~sluice_client.Client` (``client.lease_stream()``)."""

    def __init__(self, multicallable: grpc.StreamStreamMultiCallable[Any, Any],
                 metadata: Any, requests: RequestBuilder, tenant: Optional[str]) -> None:
        super().__init__(requests, tenant)
        self._out: queue_mod.SimpleQueue[Any] = queue_mod.SimpleQueue()
        self._closed = False
        self._call = multicallable(self._requests(), metadata=metadata)

    def _ended(self, e: BaseException) -> BaseException:
        self._out.put(_END)  # gRPC's thread feeding the requests stops
        return super()._ended(e)

    def _requests(self) -> Iterator[pb.LeaseTasksRequest]:
        while True:
            item = self._out.get()
            if item is _END:
                return
            yield item

    def send(self, queue: str, worker_id: str, *, max_tasks: int = 1, wait_ms: int = 0,
             reports: Sequence[Report] = ()) -> None:
        """Sends one lease request (as :meth:`Client.lease`) without waiting for its answer."""
        if self._closed and self._error is None:
            raise ValueError("send() after close()")
        self._out.put(self._request(queue, worker_id, max_tasks, wait_ms, reports))

    def receive(self, timeout: Optional[float] = None) -> LeaseResponse:
        """The answer to the oldest unanswered request. With ``timeout`` (seconds) an answer
        that does not come in time cancels the stream (:class:`SluiceTimeoutError`)."""
        if not self._asked:
            raise ValueError("receive() without a request in flight")
        if self._error is not None:
            raise self._error
        timer = _Timer(timeout, self._call.cancel) if timeout is not None else None
        try:
            resp = next(self._call)
        except StopIteration:
            raise self._ended(SluiceError("the lease stream ended before answering",
                                          grpc_code=grpc.StatusCode.UNAVAILABLE)) from None
        except grpc.RpcError as e:
            if timer is not None and timer.fired:
                raise self._ended(SluiceTimeoutError(
                    "a lease stream answer is overdue",
                    grpc_code=grpc.StatusCode.DEADLINE_EXCEEDED)) from e
            raise self._ended(map_error(e, 1)) from e
        finally:
            if timer is not None:
                timer.cancel()
        if timer is not None and timer.fired:
            # The answer came, but the timer cancelled the call as it did: the stream is over.
            self._ended(SluiceTimeoutError("a lease stream answer is overdue",
                                           grpc_code=grpc.StatusCode.DEADLINE_EXCEEDED))
        return self._answer(resp)

    def lease(self, queue: str, worker_id: str, *, max_tasks: int = 1, wait_ms: int = 0,
              reports: Sequence[Report] = (), timeout: Optional[float] = None) -> LeaseResponse:
        """Sends one request and waits for its answer (no earlier request may be unanswered)."""
        if self._asked:
            raise ValueError("lease() with earlier requests unanswered: receive() them first")
        self.send(queue, worker_id, max_tasks=max_tasks, wait_ms=wait_ms, reports=reports)
        return self.receive(timeout)

    def close(self) -> None:
        """Half-closes: requests in flight are still answered; then the stream ends."""
        self._closed = True
        self._out.put(_END)

    def cancel(self) -> None:
        """Cancels the stream: unanswered requests raise :class:`CancelledError`."""
        self._ended(CancelledError("the lease stream was cancelled",
                                   grpc_code=grpc.StatusCode.CANCELLED))
        self._call.cancel()

    def __enter__(self) -> "LeaseStream":
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        # Left by an exception with requests unanswered: cancel, so the server does not go on
        # leasing into answers nobody reads. Otherwise half-close (they are still answered).
        if exc_type is not None and self._asked:
            self.cancel()
        else:
            self.close()


class _Timer:
    """Runs fn once after ``seconds`` unless cancelled first."""

    def __init__(self, seconds: float, fn: Any) -> None:
        self.fired = False

        def run() -> None:
            self.fired = True
            fn()

        self._t = threading.Timer(seconds, run)
        self._t.daemon = True
        self._t.start()

    def cancel(self) -> None:
        self._t.cancel()


class AsyncLeaseStream(_Base):
    """A lease stream of :class:`~sluice_client.aio.AsyncClient` (``client.lease_stream()``)."""

    def __init__(self, multicallable: grpc.aio.StreamStreamMultiCallable[Any, Any],
                 metadata: Any, requests: RequestBuilder, tenant: Optional[str]) -> None:
        super().__init__(requests, tenant)
        self._call: Any = multicallable(metadata=metadata)

    async def send(self, queue: str, worker_id: str, *, max_tasks: int = 1, wait_ms: int = 0,
                   reports: Sequence[Report] = ()) -> None:
        """Sends one lease request (as :meth:`AsyncClient.lease`) without waiting for its
        answer."""
        req = self._request(queue, worker_id, max_tasks, wait_ms, reports)
        try:
            await self._call.write(req)
        except grpc.aio.AioRpcError as e:
            raise self._ended(map_error(e, 1)) from e

    async def receive(self) -> LeaseResponse:
        """The answer to the oldest unanswered request (bound it with ``asyncio.wait_for``;
        a cancelled receive leaves the stream unusable: cancel it)."""
        if not self._asked:
            raise ValueError("receive() without a request in flight")
        if self._error is not None:
            raise self._error
        try:
            resp = await self._call.read()
        except grpc.aio.AioRpcError as e:
            raise self._ended(map_error(e, 1)) from e
        if resp is grpc.aio.EOF:
            raise self._ended(SluiceError("the lease stream ended before answering",
                                          grpc_code=grpc.StatusCode.UNAVAILABLE))
        return self._answer(resp)

    async def lease(self, queue: str, worker_id: str, *, max_tasks: int = 1, wait_ms: int = 0,
                    reports: Sequence[Report] = ()) -> LeaseResponse:
        """Sends one request and waits for its answer (no earlier request may be unanswered)."""
        if self._asked:
            raise ValueError("lease() with earlier requests unanswered: receive() them first")
        await self.send(queue, worker_id, max_tasks=max_tasks, wait_ms=wait_ms, reports=reports)
        return await self.receive()

    async def close(self) -> None:
        """Half-closes: requests in flight are still answered; then the stream ends."""
        try:
            await self._call.done_writing()
        except grpc.aio.AioRpcError:
            pass

    def cancel(self) -> None:
        """Cancels the stream: unanswered requests raise :class:`CancelledError`."""
        self._ended(CancelledError("the lease stream was cancelled",
                                   grpc_code=grpc.StatusCode.CANCELLED))
        self._call.cancel()
