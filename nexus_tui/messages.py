"""Messages the data source posts to the app (the only way daemon data enters the UI)."""

from __future__ import annotations

from typing import Any

from textual.message import Message


class Connected(Message):
    """The source reached the daemon (a snapshot follows)."""

    def __init__(self, where: str) -> None:
        super().__init__()
        self.where = where


class Disconnected(Message):
    """The daemon is not reachable; the source retries by itself in ``retry_in`` seconds."""

    def __init__(self, where: str, reason: str, retry_in: int) -> None:
        super().__init__()
        self.where, self.reason, self.retry_in = where, reason, retry_in


class SnapshotLoaded(Message):
    """Everything at once: ``{status, backends, aliases, fallbacks, requests, keymap}``."""

    def __init__(self, snapshot: dict[str, Any]) -> None:
        super().__init__()
        self.snapshot = snapshot


class DaemonEvent(Message):
    """One event from ``GET /v1/events``: ``{type, seq, time, data}``."""

    def __init__(self, event: dict[str, Any]) -> None:
        super().__init__()
        self.event = event


class BackendRefreshed(Message):
    """The full current JSON of one backend (fetched after a ``backend.status`` event)."""

    def __init__(self, backend: dict[str, Any]) -> None:
        super().__init__()
        self.backend = backend


class Polled(Message):
    """Periodic counters: status and the backends list (pending, latency EMA, totals)."""

    def __init__(
        self,
        status: dict[str, Any] | None,
        backends: list[dict[str, Any]],
        trends: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.status, self.backends = status, backends
        #: ``GET /v1/trends``, every few polls (None in between)
        self.trends = trends
