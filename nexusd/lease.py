"""Leases: the only way work is counted in flight on a backend (design §2).

A lease is taken before an upstream call and released exactly once, whatever happens to the
request (answer, failure, stream end, client gone, cancellation). Its release wakes whoever
waits for capacity on that backend (the queue, later), so "capacity freed" has one source.
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nexusd.registry import Backend


class CapacitySignal:
    """Wakes every waiter at the next release; no loop is bound until someone waits."""

    __slots__ = ("_waiters",)

    def __init__(self) -> None:
        self._waiters: list[asyncio.Future[None]] = []

    def notify(self) -> None:
        if not self._waiters:
            return
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    async def wait(self) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await fut
        finally:
            if fut in self._waiters:
                self._waiters.remove(fut)

    @property
    def waiting(self) -> int:
        return len(self._waiters)


class Lease:
    """One unit of in-flight work on one backend; ``release`` is idempotent."""

    __slots__ = ("_released", "backend")

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self._released = False
        backend.pending += 1
        # every attempt sent to a backend is one of its requests, whatever becomes of it: the
        # one count behind /v1/stats, the control API and the dashboard (errors: its faults)
        backend.total_requests += 1

    @property
    def released(self) -> bool:
        return self._released

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        backend = self.backend
        backend.pending -= 1
        backend.capacity_freed.notify()

    def __enter__(self) -> Lease:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    async def __aenter__(self) -> Lease:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
