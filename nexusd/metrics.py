"""Prometheus metrics (F09) on Nexus's own registry, fed by one RequestRecord per request.

Label values are sanitised to ``[A-Za-z0-9_]`` (the reference's contract) and the number of
distinct model labels is capped: past ``MAX_MODEL_LABELS`` new models are counted as
``other``, so a client inventing model names cannot blow up the time-series count. Only
``nexus_requests_total`` has an ``endpoint`` label: ``chat``, ``completions`` or
``embeddings``, from the route the request came in on, never from the client (any other
value would read ``other``), so it multiplies that metric's series by three at most.
Fleet gauges (backends, healthy, models, pending) are read from the registry at scrape
time, so they cost nothing per request.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from nexusd.stats import ENDPOINTS  # the ``endpoint`` label's values; anything else is ``other``

if TYPE_CHECKING:
    from nexusd.records import RequestRecord
    from nexusd.registry import Registry

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DURATION_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
FAST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
TOKEN_BUCKETS = (10, 50, 100, 500, 1000, 2000, 4000, 8000, 16000, 32000, 64000, 128000)
MAX_MODEL_LABELS = 200
_UNSAFE = re.compile(r"[^A-Za-z0-9_]")

disable_created_metrics()  # ``*_created`` series double the output for no use here


def sanitise(value: str) -> str:
    """``llama3:70b`` → ``llama3_70b``; a leading digit gets a ``_`` prefix."""
    clean = _UNSAFE.sub("_", value) or "_"
    return "_" + clean if clean[0].isdigit() else clean


class _FleetCollector(Collector):
    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def collect(self) -> Iterator[GaugeMetricFamily]:
        backends = self.registry.all()
        yield GaugeMetricFamily(
            "nexus_backends_total", "Total number of registered backends", value=len(backends)
        )
        yield GaugeMetricFamily(
            "nexus_backends_healthy",
            "Number of healthy backends",
            value=sum(1 for b in backends if b.routable),
        )
        models = {m for b in backends if b.routable for m in b.models}
        yield GaugeMetricFamily(
            "nexus_models_available", "Number of distinct models available", value=len(models)
        )
        pending = GaugeMetricFamily(
            "nexus_pending_requests",
            "Number of requests currently pending per backend",
            labels=["backend"],
        )
        for b in backends:
            pending.add_metric([sanitise(b.id)], b.pending)
        yield pending


@dataclass(slots=True)
class _Children:
    requests: dict[tuple[int, str], Any]  # (status code, endpoint) -> counter child
    duration: Any
    ttft: Any
    prompt_tokens: Any
    completion_tokens: Any
    cost: Any = None  # made at the first priced answer (most pairs are local: never)


class Metrics:
    def __init__(self, backends: Registry) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "nexus_requests",
            "Total number of requests processed by the gateway",
            ["model", "backend", "status", "endpoint"],
            registry=r,
        )
        self.errors = Counter(
            "nexus_errors",
            "Total number of errors encountered",
            ["error_type", "model", "backend"],
            registry=r,
        )
        self.fallbacks = Counter(
            "nexus_fallbacks",
            "Total number of fallback routing events",
            ["from_model", "to_model"],
            registry=r,
        )
        self.duration = Histogram(
            "nexus_request_duration_seconds",
            "Request duration from handler entry to response end",
            ["model", "backend"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "nexus_time_to_first_token_seconds",
            "Time to the first byte of the answer (streams: first event)",
            ["model", "backend"],
            buckets=(*FAST_BUCKETS, 30, 60, 120),
            registry=r,
        )
        self.overhead = Histogram(
            "nexus_overhead_seconds",
            "Time Nexus itself spent on a request, upstream time excluded",
            buckets=FAST_BUCKETS,
            registry=r,
        )
        self.tokens = Histogram(
            "nexus_tokens_total",
            "Token counts from backend responses",
            ["model", "backend", "type"],
            buckets=TOKEN_BUCKETS,
            registry=r,
        )
        self.cost = Counter(
            "nexus_cost_usd",
            "What cloud answers cost, in USD (from the providers' usage and the price table)",
            ["backend", "model"],
            registry=r,
        )
        self.unpriced = Counter(
            "nexus_unpriced_requests",
            'Cloud answers whose model has no price (cost unknown): add [pricing."model"]',
            ["backend", "model"],
            registry=r,
        )
        self.privacy_blocks = Counter(
            "nexus_privacy_blocks",
            "Requests refused because no backend in their allowed privacy zone could serve",
            ["zone"],
            registry=r,
        )
        self.backend_latency = Histogram(
            "nexus_backend_latency_seconds",
            "Backend health check latency",
            ["backend"],
            buckets=FAST_BUCKETS,
            registry=r,
        )
        r.register(_FleetCollector(backends))
        self._models: dict[str, str] = {}
        self._bound: dict[tuple[str, str], _Children] = {}

    def _model(self, name: str | None) -> str:
        if not name:
            return "none"
        label = self._models.get(name)
        if label is None:
            label = sanitise(name) if len(self._models) < MAX_MODEL_LABELS else "other"
            self._models[name] = label
        return label

    def _children(self, model: str, backend: str) -> _Children:
        """Label children are looked up once per (model, backend), not per request."""
        key = (model, backend)
        children = self._bound.get(key)
        if children is None:
            children = self._bound[key] = _Children(
                {},
                self.duration.labels(model, backend),
                self.ttft.labels(model, backend),
                self.tokens.labels(model, backend, "prompt"),
                self.tokens.labels(model, backend, "completion"),
            )
        return children

    def observe(self, rec: RequestRecord) -> None:
        model = self._model(rec.served_model or rec.requested_model)
        backend = sanitise(rec.backend) if rec.backend else "none"
        children = self._children(model, backend)
        key = (rec.status_code, rec.endpoint)
        counter = children.requests.get(key)
        if counter is None:
            endpoint = rec.endpoint if rec.endpoint in ENDPOINTS else "other"
            counter = children.requests[key] = self.requests.labels(
                model, backend, str(rec.status_code), endpoint
            )
        counter.inc()
        if rec.error_type:
            self.errors.labels(rec.error_type, self._model(rec.requested_model), backend).inc()
        if rec.fallback_model and rec.ok:
            self.fallbacks.labels(
                self._model(rec.requested_model), self._model(rec.fallback_model)
            ).inc()
        if rec.backend:
            children.duration.observe(rec.latency_ms / 1000)
            if rec.ttft_ms is not None:
                children.ttft.observe(rec.ttft_ms / 1000)
            if rec.prompt_tokens is not None:
                children.prompt_tokens.observe(rec.prompt_tokens)
            if rec.completion_tokens is not None:
                children.completion_tokens.observe(rec.completion_tokens)
        if rec.overhead_ms is not None:
            self.overhead.observe(rec.overhead_ms / 1000)
        if rec.cost_status is not None and rec.cost_status != "free":
            if rec.cost_usd is None:
                self.unpriced.labels(backend, model).inc()
            elif rec.cost_usd > 0:
                if children.cost is None:
                    children.cost = self.cost.labels(backend, model)
                children.cost.inc(rec.cost_usd)

    def observe_attempt_failure(self, error_type: str, requested_model: str, backend: str) -> None:
        """Each failed upstream attempt (even one a retry later rescued) counts as an error,
        attributed to the backend that failed."""
        self.errors.labels(error_type, self._model(requested_model), sanitise(backend)).inc()

    def observe_probe(self, backend_id: str, seconds: float) -> None:
        self.backend_latency.labels(sanitise(backend_id)).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
