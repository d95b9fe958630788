"""Live request statistics for ``/v1/stats`` — real numbers, updated per record in O(1).

Percentiles come from a bounded window of recent latencies per backend (the last 1,000),
computed only when someone asks. Per-model entries are bounded (``MAX_MODELS``, least
recently used dropped), since model names come from clients. Requests are also counted per
API (``endpoints``: chat, completions, embeddings — always all three, zeros included).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nexusd.types import Endpoint

if TYPE_CHECKING:
    from nexusd.records import RequestRecord
    from nexusd.registry import Registry

WINDOW = 1000
#: per-model entries kept (least recently used dropped first): names come from clients
MAX_MODELS = 1000
ENDPOINTS = tuple(e.value for e in Endpoint)
DIALECTS = ("openai", "anthropic", "responses")


@dataclass(slots=True)
class _BackendStats:
    """Latencies of the requests a backend answered (its request and error counts live on
    the backend itself, counted per attempt by its leases: one source for every surface)."""

    records: int = 0
    cost_usd: float = 0.0
    latency_sum_ms: float = 0.0
    ttft_sum_ms: float = 0.0
    ttft_count: int = 0
    recent_ms: deque[float] = field(default_factory=lambda: deque(maxlen=WINDOW))


@dataclass(slots=True)
class _ModelStats:
    requests: int = 0
    errors: int = 0
    duration_sum_ms: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0


@dataclass(slots=True)
class _Cost:
    """Spend since start: what the providers' usage priced, and what could not be priced."""

    usd: float = 0.0
    priced: int = 0  # cloud answers with a cost (exact or estimated)
    estimated: int = 0  # ... of which the usage was missing (prompt estimate only)
    unknown: int = 0  # cloud answers of a model without a price

    def add(self, rec: RequestRecord) -> None:
        status = rec.cost_status
        if status is None or status == "free":
            return
        if rec.cost_usd is None:
            self.unknown += 1
            return
        self.usd += rec.cost_usd
        self.priced += 1
        self.estimated += status == "estimated"

    def to_json(self) -> dict[str, Any]:
        return {
            "total_usd": round(self.usd, 6),
            "priced_requests": self.priced,
            "estimated_requests": self.estimated,
            "unknown_requests": self.unknown,
        }


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(math.ceil(q / 100 * len(ordered)), 1)
    return ordered[rank - 1]


class Stats:
    def __init__(self) -> None:
        self.total = 0
        self.success = 0
        self.errors = 0
        self.endpoints: dict[str, int] = dict.fromkeys(ENDPOINTS, 0)
        #: requests per client dialect (OpenAI, Anthropic Messages, Responses)
        self.dialects: dict[str, int] = dict.fromkeys(DIALECTS, 0)
        self.backends: dict[str, _BackendStats] = {}
        self.models: dict[str, _ModelStats] = {}
        self.cost = _Cost()

    def observe(self, rec: RequestRecord) -> None:
        self.total += 1
        if rec.ok:
            self.success += 1
        else:
            self.errors += 1
        endpoint = rec.endpoint
        if endpoint in self.endpoints:
            self.endpoints[endpoint] += 1
        else:  # not one of the three: still counted, under its own (plain str) name
            self.endpoints[str(endpoint)] = 1
        if rec.backend is not None:
            b = self.backends.get(rec.backend)
            if b is None:
                b = self.backends[rec.backend] = _BackendStats()
            b.records += 1
            b.cost_usd += rec.cost_usd or 0.0
            b.latency_sum_ms += rec.latency_ms
            b.recent_ms.append(rec.latency_ms)
            if rec.ttft_ms is not None:
                b.ttft_sum_ms += rec.ttft_ms
                b.ttft_count += 1
        name = rec.served_model or rec.requested_model
        self.cost.add(rec)
        if rec.dialect in self.dialects:
            self.dialects[rec.dialect] += 1
        if not name:  # refused before a model was named (a body that is not JSON)
            return
        models = self.models
        m = models.get(name)
        if m is None:
            # names come from clients: keep the most recently used MAX_MODELS only
            if len(models) >= MAX_MODELS:
                del models[next(iter(models))]
            m = models[name] = _ModelStats()
        else:
            models[name] = models.pop(name)  # most recently used last
        m.requests += 1
        m.errors += not rec.ok
        m.duration_sum_ms += rec.latency_ms
        m.prompt_tokens += rec.prompt_tokens or 0
        m.completion_tokens += rec.completion_tokens or 0
        m.cost_usd += rec.cost_usd or 0.0

    def snapshot(self, registry: Registry, uptime_seconds: float) -> dict[str, Any]:
        backends = []
        for backend in sorted(registry.all(), key=lambda b: b.id):
            s = self.backends.get(backend.id) or _BackendStats()
            backends.append(
                {
                    "id": backend.id,
                    "name": backend.name,
                    "status": backend.status.value,
                    "requests": backend.total_requests,
                    "errors": backend.errors,
                    "average_latency_ms": round(s.latency_sum_ms / s.records, 1)
                    if s.records
                    else 0.0,
                    "p95_latency_ms": round(percentile(list(s.recent_ms), 95), 1)
                    if s.recent_ms
                    else 0.0,
                    "average_ttft_ms": round(s.ttft_sum_ms / s.ttft_count, 1)
                    if s.ttft_count
                    else None,
                    "latency_ema_ms": None
                    if backend.latency_ema_ms is None
                    else round(backend.latency_ema_ms, 1),
                    "pending": backend.pending,
                    "cost_usd": round(s.cost_usd, 6),
                }
            )
        models = [
            {
                "name": name,
                "requests": m.requests,
                "errors": m.errors,
                "average_duration_ms": round(m.duration_sum_ms / m.requests, 1),
                "tokens": {"prompt": m.prompt_tokens, "completion": m.completion_tokens},
                "cost_usd": round(m.cost_usd, 6),
            }
            for name, m in sorted(self.models.items(), key=lambda kv: (-kv[1].requests, kv[0]))
        ]
        return {
            "uptime_seconds": int(uptime_seconds),
            "requests": {"total": self.total, "success": self.success, "errors": self.errors},
            "endpoints": dict(self.endpoints),
            "dialects": dict(self.dialects),
            "backends": backends,
            "models": models,
            "cost": self.cost.to_json(),
        }
