"""A fixed-size pool of daemon threads that runs blocking handlers for an asyncio loop.

Not concurrent.futures.ThreadPoolExecutor: its threads are joined at interpreter exit, so one
handler stuck after a worker gave up on it (stop deadline, lease lost) would hang the process's
exit. These threads are daemons; the Worker bounds how many run through its slots.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from typing import Any, Callable, Optional, Tuple

_Item = Optional[Tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", Callable[..., Any],
                       Tuple[Any, ...]]]


class DaemonPool:
    """Runs callables on up to ``size`` daemon threads, started as needed."""

    def __init__(self, size: int, name: str) -> None:
        assert size >= 1
        self._size = size
        self._name = name
        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self._idle = 0      # threads waiting for an item
        self._pending = 0   # items queued and not yet taken
        self._closed = False

    def run(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        """Schedules ``fn(*args)`` on a pool thread; the future resolves on the calling loop."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        with self._lock:
            if self._closed:
                raise RuntimeError("pool is shut down")
            self._pending += 1
            if self._pending > self._idle and self._threads < self._size:
                self._threads += 1
                threading.Thread(target=self._main, name=f"{self._name}-{self._threads}",
                                 daemon=True).start()
        self._queue.put((loop, fut, fn, args))
        return fut

    def shutdown(self) -> None:
        """Idle threads exit; busy ones exit after their current call (never waited for)."""
        with self._lock:
            self._closed = True
            n = self._threads
        for _ in range(n):
            self._queue.put(None)

    def _main(self) -> None:
        while True:
            with self._lock:
                self._idle += 1
            item = self._queue.get()
            with self._lock:
                self._idle -= 1
                if item is not None:
                    self._pending -= 1
            if item is None:
                return
            loop, fut, fn, args = item
            if fut.cancelled():
                continue  # the caller gave up before a thread was free (a refresh timed out)
            try:
                result = fn(*args)
            except BaseException as e:  # noqa: BLE001 (handed to the awaiting coroutine)
                _resolve(loop, fut, None, e)
            else:
                _resolve(loop, fut, result, None)


def _resolve(loop: asyncio.AbstractEventLoop, fut: asyncio.Future[Any], result: Any,
             error: Optional[BaseException]) -> None:
    def settle() -> None:
        if fut.done():
            return  # the worker gave up on this call (cancelled)
        if error is not None:
            fut.set_exception(error)
        else:
            fut.set_result(result)

    try:
        loop.call_soon_threadsafe(settle)
    except RuntimeError:
        pass  # the loop is closed: nobody waits any more
