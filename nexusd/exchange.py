"""The Exchange: the one owner of a request from arrival to its record (design §2).

It holds the request's id, timing, routing story (the trace), the lease on the backend that
serves it and its phase, and ``finish()`` emits exactly one ``RequestRecord`` whatever
happened: an answer, a 4xx passed through, a refusal, an upstream failure, a stream cut
mid-way, a client that left, a cancellation at shutdown, or a bug. The decision log only
indexes traces for look-ups; nothing reads it back to account a request.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from enum import StrEnum

from nexusd.lease import Lease
from nexusd.pricing import PriceBook
from nexusd.records import RequestRecord
from nexusd.routing.decisions import RequestTrace
from nexusd.routing.intent import Requirements
from nexusd.types import Endpoint


class Phase(StrEnum):
    RECEIVED = "received"
    ROUTED = "routed"  # a backend accepted the request
    STREAMING = "streaming"  # the response head went out; body events follow
    ANSWERED = "answered"  # a whole response (success or error) went out
    FINISHED = "finished"


LEGAL: dict[Phase, frozenset[Phase]] = {
    Phase.RECEIVED: frozenset({Phase.ROUTED, Phase.ANSWERED, Phase.FINISHED}),
    Phase.ROUTED: frozenset({Phase.STREAMING, Phase.ANSWERED, Phase.FINISHED}),
    Phase.STREAMING: frozenset({Phase.FINISHED}),
    Phase.ANSWERED: frozenset({Phase.FINISHED}),
    Phase.FINISHED: frozenset(),
}


class IllegalTransition(RuntimeError):
    """A bug: the request flow moved an exchange along an edge that does not exist."""


Sink = Callable[[RequestRecord, str | None], None]


class Exchange:
    __slots__ = (
        "_done",
        "endpoint",
        "lease",
        "on_finish",
        "phase",
        "pricing",
        "request_id",
        "sink",
        "started_perf",
        "trace",
    )

    def __init__(
        self,
        endpoint: Endpoint,
        sink: Sink,
        *,
        request_id: str | None = None,
        on_finish: Callable[[Exchange], None] | None = None,
        pricing: PriceBook | None = None,
    ) -> None:
        self.request_id = request_id or str(uuid.uuid4())
        self.endpoint = endpoint
        self.started_perf = time.perf_counter()
        self.sink = sink
        self.on_finish = on_finish
        self.pricing = pricing
        self.phase = Phase.RECEIVED
        self.lease: Lease | None = None
        self._done = False
        # filled in as the request is understood; a refusal before parsing keeps the blanks
        self.trace = RequestTrace(
            self.request_id,
            "",
            "",
            [],
            Requirements(endpoint=endpoint),
            False,
            started_perf=self.started_perf,
        )

    @property
    def finished(self) -> bool:
        return self._done

    def advance(self, to: Phase) -> None:
        if to not in LEGAL[self.phase]:
            raise IllegalTransition(f"request {self.request_id}: {self.phase} → {to}")
        self.phase = to

    def hold(self, lease: Lease) -> None:
        """The request keeps this lease until it finishes (a stream outlives the attempt)."""
        self.lease = lease

    def finish(
        self,
        outcome: str,
        status: int,
        *,
        error: str | None = None,
        error_type: str | None = None,
    ) -> bool:
        """End the request: release its lease, emit its one record. Later calls do nothing
        (the catch-all calls it too) and return False."""
        if self._done:
            return False
        self._done = True
        if self.lease is not None:
            self.lease.release()
        self.advance(Phase.FINISHED)
        trace = self.trace
        trace.outcome, trace.status = outcome, status
        if error is not None:
            trace.error = error
        if error_type is not None:
            trace.error_type = error_type
        if self.pricing is not None:
            self.pricing.settle(trace)
        latency_ms = (time.perf_counter() - self.started_perf) * 1000
        try:
            self.sink(
                RequestRecord.from_trace(trace, latency_ms, self.endpoint.value),
                trace.prompt_preview,
            )
        finally:
            if self.on_finish is not None:
                self.on_finish(self)
        return True
