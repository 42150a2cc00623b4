"""Runs one test body against both clients: the blocking Client, and the AsyncClient driven
through a blocking adapter (an event loop on a thread), so every method is proven twice."""

from __future__ import annotations

import asyncio
import inspect
import threading
from typing import Any, Callable, Optional

from recorder import AsyncRecorder, SyncRecorder
from sluice_client import AsyncClient, AsyncJobHandle, Client


class LoopThread:
    """An asyncio loop on a daemon thread; run() blocks on a coroutine there."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any, timeout: float = 120.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


async def _collect(agen: Any) -> list[Any]:
    return [x async for x in agen]


class Blocking:
    """Wraps an async object (AsyncClient, AsyncJobHandle): each coroutine method blocks."""

    def __init__(self, target: Any, lt: LoopThread) -> None:
        self._target = target
        self._lt = lt

    def _wrap(self, value: Any) -> Any:
        if isinstance(value, AsyncJobHandle):
            return Blocking(value, self._lt)
        if isinstance(value, list) and value and isinstance(value[0], AsyncJobHandle):
            return [Blocking(v, self._lt) for v in value]
        return value

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            res = attr(*args, **kwargs)
            if inspect.isasyncgen(res):
                return iter(self._lt.run(_collect(res)))
            if inspect.isawaitable(res):
                res = self._lt.run(res)
            return self._wrap(res)
        return call


class Api:
    """A client under test (``c``), its call recorder, and how to close it."""

    def __init__(self, kind: str, c: Any, recorder: Any, close: Callable[[], None]) -> None:
        self.kind = kind
        self.c = c
        self.recorder = recorder
        self._close = close

    def close(self) -> None:
        self._close()


def make_api(kind: str, address: str, token: Optional[str], **kwargs: Any) -> Api:
    if kind == "sync":
        rec_s = SyncRecorder()
        c = Client(address, token=token, interceptors=[rec_s], **kwargs)
        return Api(kind, c, rec_s, c.close)
    lt = LoopThread()
    rec_a = AsyncRecorder()

    async def make() -> AsyncClient:
        return AsyncClient(address, token=token, interceptors=[rec_a], **kwargs)

    ac = lt.run(make())

    def close() -> None:
        lt.run(ac.close())
        lt.close()
    return Api(kind, Blocking(ac, lt), rec_a, close)
