"""What can go wrong talking to a backend, and whether the next backend should be tried.

Retry rule (F01): connect errors, timeouts, 5xx and 429 fail over to the next backend;
any other 4xx is the client's fault and is passed through unchanged.

Health rule: a failure counts against a backend only when it is the backend's fault —
connect errors, timeouts, protocol violations and 5xx other than 501. 4xx, 429 and 501 never
count, and neither does any failure of a request sent to a model we guessed could not serve
its endpoint (``gateway._predicted``): that is the client's mistake showing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol


class UpstreamError(Exception):
    retryable = True
    #: counted against the backend's health (passive failure)
    counts_against_backend = True

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UpstreamConnectError(UpstreamError):
    """The backend could not be reached (refused, reset, DNS, disconnected before answering)."""


class UpstreamTimeout(UpstreamError):
    def __init__(self, phase: str, seconds: float, detail: str = "") -> None:
        super().__init__(f"no {phase} within {seconds:g} s{detail}")
        self.phase = phase
        self.seconds = seconds


class UpstreamProtocolError(UpstreamError):
    """The backend answered with something that is not what the API promises: a 2xx body
    that is not one JSON object, a stream that is not SSE, an answer or an event larger than
    its limit, or a redirect (``status`` is then the 3xx). A backend fault: fail over."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status


class UpstreamHTTPError(UpstreamError):
    """A non-2xx answer. ``retryable`` only for 5xx and 429."""

    def __init__(self, status: int, body: bytes, content_type: str, retry_after: str | None):
        snippet = body[:300].decode("utf-8", "replace").strip()
        super().__init__(f"HTTP {status}: {snippet}" if snippet else f"HTTP {status}")
        self.status = status
        self.body = body
        self.content_type = content_type
        self.retry_after = retry_after
        self.retryable = status >= 500 or status == 429
        # a 429 says "busy", not "broken"; a 501 says "this server does not do that
        # endpoint" (e.g. llama.cpp without --embeddings): fail over, but neither is a
        # sign of a broken backend, so neither counts against its health
        self.counts_against_backend = status >= 500 and status != 501


MIB = 1024 * 1024


@dataclass(slots=True)
class Timeouts:
    """Per-call bounds on a backend: how long it may take, and how much it may send back.

    ``idle`` counts only bytes that complete SSE events: a backend trickling bytes that never
    form an event is as idle as a silent one. The two byte limits are ``server.max_response_bytes``
    and ``server.max_event_bytes``; exceeding either is a backend fault (``UpstreamProtocolError``).
    """

    connect: float
    total: float
    first_byte: float
    idle: float
    #: a non-streaming answer (or an error body, or a probe's answer) larger than this
    max_response_bytes: int = 64 * MIB
    #: stream bytes pending without an event boundary beyond this
    max_event_bytes: int = 1 * MIB


@dataclass(slots=True)
class UpstreamReply:
    status: int
    body: bytes
    content_type: str


class UpstreamStream(Protocol):
    """An upstream SSE response whose status was 2xx and whose first bytes already arrived."""

    first: bytes

    def chunks(self) -> AsyncIterator[bytes]: ...

    def close(self) -> None: ...
