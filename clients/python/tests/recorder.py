"""gRPC client interceptors for tests: record every call a client sends, optionally hold some.

Holding a method (e.g. Heartbeat) keeps its calls from leaving the process until released, as a
stalled network would; the worker under test must cope on its own.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, Callable

import grpc
import grpc.aio


def _method(details: Any) -> str:
    m = details.method
    if isinstance(m, bytes):
        m = m.decode()
    return str(m).rsplit("/", 1)[-1]


class _Log:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.held: set[str] = set()
        self._lock = threading.Lock()

    def record(self, name: str, request: Any) -> None:
        with self._lock:
            self.calls.append((name, request))

    def names(self) -> list[str]:
        with self._lock:
            return [n for n, _ in self.calls]

    def requests(self, name: str) -> list[Any]:
        with self._lock:
            return [r for n, r in self.calls if n == name]

    def count(self, name: str) -> int:
        return len(self.requests(name))


class AsyncRecorder(_Log, grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    async def intercept_unary_unary(self, continuation: Callable[..., Any], details: Any,
                                    request: Any) -> Any:
        name = _method(details)
        self.record(name, request)
        while name in self.held:
            await asyncio.sleep(0.005)
        return await continuation(details, request)


class SyncRecorder(_Log, grpc.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    def intercept_unary_unary(self, continuation: Callable[..., Any], details: Any,
                              request: Any) -> Any:
        name = _method(details)
        self.record(name, request)
        while name in self.held:
            time.sleep(0.005)
        return continuation(details, request)
