"""Every request's routing story, kept for the last N requests and retrievable by id.

A trace holds each pipeline run (candidates and every exclusion with its stage and reason)
and each upstream attempt, so "why did this go there?" always has an answer.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from nexusd.routing.intent import Requirements
from nexusd.routing.pipeline import Decision


@dataclass(slots=True)
class Attempt:
    backend: str
    model: str
    outcome: str  # "ok" | "failed" | "passed_through"
    error: str | None = None
    status: int | None = None
    duration_ms: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "model": self.model,
            "outcome": self.outcome,
            "error": self.error,
            "status": self.status,
            "duration_ms": round(self.duration_ms, 2),
        }


@dataclass(slots=True)
class RequestTrace:
    request_id: str
    requested_model: str
    resolved_model: str
    alias_hops: list[str]
    requirements: Requirements
    stream: bool
    started_at: float = field(default_factory=time.time)
    steps: list[Decision] = field(default_factory=list)
    attempts: list[Attempt] = field(default_factory=list)
    backend: str | None = None
    backend_name: str | None = None
    backend_type: str | None = None
    served_model: str | None = None
    fallback_model: str | None = None
    route_reason: str | None = None
    status: int | None = None
    error: str | None = None
    error_type: str | None = None
    outcome: str = "in_progress"
    # timings and usage, filled by the proxy
    started_perf: float = 0.0
    ttft_ms: float | None = None
    overhead_ms: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    #: prompt tokens the provider read from its cache (part of ``prompt_tokens``)
    cached_tokens: int | None = None
    #: USD, set when the request finishes (pricing.PriceBook.settle)
    cost_usd: float | None = None
    cost_status: str | None = None  # free | exact | estimated | unknown
    #: the client's dialect, and whether the answer was translated between dialects
    dialect: str = "openai"
    translated: bool = False
    prompt_preview: str | None = None

    def summary(self) -> dict[str, Any]:
        """The short form for live views: no pipeline details."""
        return {
            "request_id": self.request_id,
            "requested_model": self.requested_model,
            "served_model": self.served_model,
            "backend": self.backend,
            "stream": self.stream,
            "status": self.status,
            "outcome": self.outcome,
            "error": self.error,
            "attempts": len(self.attempts),
            "fallback_model": self.fallback_model,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "started_at": self.started_at,
            "requested_model": self.requested_model,
            "resolved_model": self.resolved_model,
            "alias_hops": self.alias_hops,
            "requirements": self.requirements.to_json(),
            "stream": self.stream,
            "steps": [s.to_json() for s in self.steps],
            "attempts": [a.to_json() for a in self.attempts],
            "backend": self.backend,
            "served_model": self.served_model,
            "fallback_model": self.fallback_model,
            "route_reason": self.route_reason,
            "status": self.status,
            "error": self.error,
            "error_type": self.error_type,
            "outcome": self.outcome,
        }


class DecisionLog:
    """Bounded, insertion-ordered map of request id -> trace (oldest dropped first)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._traces: OrderedDict[str, RequestTrace] = OrderedDict()

    def add(self, trace: RequestTrace) -> None:
        self._traces[trace.request_id] = trace
        if len(self._traces) > self.size:
            self._traces.popitem(last=False)

    def get(self, request_id: str) -> RequestTrace | None:
        return self._traces.get(request_id)

    def recent(self, limit: int = 100) -> list[RequestTrace]:
        items = list(self._traces.values())[-limit:]
        items.reverse()
        return items

    def __len__(self) -> int:
        return len(self._traces)
