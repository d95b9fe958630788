"""FakeHost: an event loop in a daemon thread, so synchronous tests can drive fakes.

Sync clients (the openai SDK, a CLI under test) block the calling thread; the fakes must keep
serving meanwhile, hence their own loop in another thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from .server import FakeBackend

T = TypeVar("T")


class FakeHost:
    """Owns a background loop; every backend started through it is stopped on close."""

    def __init__(self, *, timeout: float = 30.0) -> None:
        self.timeout = timeout
        self.loop = asyncio.new_event_loop()
        self.backends: list[FakeBackend] = []
        self._thread = threading.Thread(target=self.loop.run_forever, name="fake-host", daemon=True)
        self._thread.start()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run `coro` on the host loop and return its result (re-raising its exception)."""
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(self.timeout if timeout is None else timeout)

    def start(self, backend: FakeBackend, host: str = "127.0.0.1", port: int = 0) -> FakeBackend:
        self.call(backend.start(host, port))
        if backend not in self.backends:
            self.backends.append(backend)
        return backend

    def stop(self, backend: FakeBackend) -> None:
        self.call(backend.stop())

    def restart(self, backend: FakeBackend) -> FakeBackend:
        """Bring a backend back on the same host:port, i.e. at the same URL."""
        self.call(backend.stop())
        return self.start(backend, backend.host, backend.port)

    def wait_until(
        self, backend: FakeBackend, predicate: Callable[[], bool], timeout: float = 5.0
    ) -> bool:
        """Sync form of `FakeBackend.wait_until`."""
        return self.call(backend.wait_until(predicate, timeout), timeout + self.timeout)

    def close(self) -> None:
        if not self.loop.is_running():
            return
        for backend in self.backends:
            self.call(backend.stop())
        self.backends.clear()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(self.timeout)
        self.loop.close()

    def __enter__(self) -> FakeHost:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
