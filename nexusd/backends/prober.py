"""What a backend is and can do, asked of the backend itself — never by running inference.

A prober turns a server's own metadata endpoints into a health verdict and a model list with
capabilities. Facts the server states are marked ``reported`` on each ``ModelInfo``; the rest
are name heuristics, which only rank candidates (design §2). The OpenAI-compatible default
lists ``/v1/models``; families with richer metadata subclass it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from nexusd.backends import heuristics
from nexusd.backends.transport import Transport
from nexusd.backends.upstream import UpstreamError, UpstreamTimeout
from nexusd.registry import Backend
from nexusd.types import BackendStatus, ModelInfo


@dataclass(slots=True)
class ProbeResult:
    """One health check: the verdict, the models if the backend listed them, the round-trip."""

    status: BackendStatus
    models: list[ModelInfo] | None = None
    latency_ms: float | None = None
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    #: client dialects the server was found to serve itself (None: nothing learned)
    native_dialects: frozenset[str] | None = None


class ProbeFailed(Exception):
    pass


class Prober:
    """OpenAI-compatible backend (vLLM, llama.cpp, LM Studio, exo, generic, OpenAI)."""

    def __init__(self, backend: Backend, transport: Transport) -> None:
        self.backend = backend
        self.transport = transport

    async def _call(self, method: str, path: str, timeout: float, payload: Any = None) -> Any:
        try:
            return await self.transport.fetch(method, path, timeout, payload)
        except UpstreamTimeout as exc:
            raise ProbeFailed(f"{method} {path}: no answer within {timeout:g} s") from exc
        except UpstreamError as exc:
            raise ProbeFailed(f"{method} {path}: {exc.message}") from exc

    async def get_json(self, path: str, timeout: float) -> Any:
        """GET a JSON document; raises ProbeFailed with a message fit for ``last_error``."""
        return await self.request_json("GET", path, timeout)

    async def request_json(
        self, method: str, path: str, timeout: float, payload: Any = None
    ) -> Any:
        status, body = await self._call(method, path, timeout, payload)
        if status >= 300:
            text = body[:200].decode("utf-8", "replace")
            raise ProbeFailed(f"{method} {path} returned HTTP {status} {text}".strip())
        try:
            return json.loads(body)
        except ValueError as exc:
            raise ProbeFailed(f"{method} {path}: the answer is not JSON") from exc

    async def get_status(self, path: str, timeout: float) -> int:
        """Status code of a GET, body ignored; raises ProbeFailed when nothing answers."""
        status, _ = await self._call("GET", path, timeout)
        return status

    async def post_status(self, path: str, payload: Any, timeout: float) -> int:
        status, _ = await self._call("POST", path, timeout, payload)
        return status

    async def probe(self, timeout: float) -> ProbeResult:
        started = time.perf_counter()
        try:
            listing = await self.get_json("/v1/models", timeout)
        except ProbeFailed as exc:
            return ProbeResult(BackendStatus.UNHEALTHY, error=str(exc))
        latency = (time.perf_counter() - started) * 1000
        models = self.parse_openai_models(listing)
        if models is None:
            return ProbeResult(BackendStatus.UNHEALTHY, error="GET /v1/models: not a model list")
        return ProbeResult(BackendStatus.HEALTHY, models, latency)

    def parse_openai_models(self, listing: Any) -> list[ModelInfo] | None:
        data = listing.get("data") if isinstance(listing, dict) else None
        if not isinstance(data, list):
            return None
        models = []
        for entry in data:
            if isinstance(entry, dict) and isinstance(entry.get("id"), str):
                models.append(self.model_from_listing(entry))
        return models

    def model_from_listing(self, entry: dict[str, Any]) -> ModelInfo:
        model = heuristics.guess(entry["id"], cloud=self.backend.type.is_cloud)
        for key in ("max_model_len", "context_length", "max_context_length"):
            value = entry.get(key)
            if isinstance(value, int) and value > 0:
                model.report(context_length=value)
                break
        return model
