"""In-process event bus: registry and request events for the control API, dashboard and TUI.

Publishing is synchronous and never waits: each subscriber has a bounded queue, and a slow
subscriber loses its oldest events and is told how many with a ``gap`` event. The daemon's
speed therefore never depends on its slowest reader.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Event:
    type: str
    data: dict[str, Any]
    seq: int = 0
    time: float = field(default_factory=time.time)

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "seq": self.seq, "time": self.time, "data": self.data}


class Subscription:
    """One reader's view of the bus; iterate it with ``async for``."""

    def __init__(self, bus: EventBus, maxsize: int) -> None:
        self._bus = bus
        self._queue: deque[Event] = deque()
        self._maxsize = maxsize
        self._lost = 0
        self._wakeup = asyncio.Event()
        self.closed = False

    def _offer(self, event: Event) -> None:
        if len(self._queue) >= self._maxsize:
            self._queue.popleft()
            self._lost += 1
        self._queue.append(event)
        self._wakeup.set()

    async def get(self) -> Event:
        while True:
            if self._lost:
                lost, self._lost = self._lost, 0
                return Event("gap", {"lost": lost})
            if self._queue:
                return self._queue.popleft()
            self._wakeup.clear()
            await self._wakeup.wait()

    def get_nowait(self) -> Event | None:
        if self._lost:
            lost, self._lost = self._lost, 0
            return Event("gap", {"lost": lost})
        return self._queue.popleft() if self._queue else None

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        return await self.get()

    def close(self) -> None:
        self.closed = True
        self._bus._subscribers.discard(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventBus:
    def __init__(self) -> None:
        self._subscribers: set[Subscription] = set()
        self._seq = itertools.count(1)

    @property
    def has_subscribers(self) -> bool:
        """Lets hot paths skip building event payloads nobody will read."""
        return bool(self._subscribers)

    def subscribe(self, maxsize: int = 1000) -> Subscription:
        sub = Subscription(self, maxsize)
        self._subscribers.add(sub)
        return sub

    def publish(self, type_: str, data: dict[str, Any]) -> None:
        if not self._subscribers:
            return
        event = Event(type_, data, next(self._seq))
        for sub in tuple(self._subscribers):
            sub._offer(event)
