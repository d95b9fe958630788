"""Ollama: native endpoints for health and capabilities, its OpenAI layer for chat."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

import aiohttp

from nexusd.backends import heuristics
from nexusd.backends.base import BackendAgent, ProbeFailed, ProbeResult
from nexusd.types import BackendStatus, ModelInfo


class OllamaAgent(BackendAgent):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: digest -> capabilities from /api/show; a model's digest changes when it is replaced
        self._show_cache: dict[str, ModelInfo] = {}

    async def probe(self, timeout: float) -> ProbeResult:
        started = time.perf_counter()
        try:
            tags = await self.get_json("/api/tags", timeout)
        except ProbeFailed as exc:
            return ProbeResult(BackendStatus.UNHEALTHY, error=str(exc))
        latency = (time.perf_counter() - started) * 1000
        entries = tags.get("models") if isinstance(tags, dict) else None
        if not isinstance(entries, list):
            return ProbeResult(BackendStatus.UNHEALTHY, error="GET /api/tags: no 'models' list")
        named = [e for e in entries if isinstance(e, dict) and isinstance(e.get("name"), str)]
        loaded, models = await asyncio.gather(
            self._loaded(timeout), asyncio.gather(*(self._describe(e, timeout) for e in named))
        )
        for model in models:
            model.loaded = model.id in loaded if loaded is not None else None
        return ProbeResult(BackendStatus.HEALTHY, list(models), latency)

    async def _loaded(self, timeout: float) -> set[str] | None:
        try:
            ps = await self.get_json("/api/ps", timeout)
        except ProbeFailed:
            return None
        entries = ps.get("models") if isinstance(ps, dict) else None
        if not isinstance(entries, list):
            return None
        return {e.get("name") for e in entries if isinstance(e, dict)}

    async def _describe(self, entry: dict[str, Any], timeout: float) -> ModelInfo:
        name: str = entry["name"]
        digest = str(entry.get("digest") or name)
        cached = self._show_cache.get(digest)
        if cached is not None:
            return dataclasses.replace(cached)
        try:
            show = await self._post_json("/api/show", {"model": name}, timeout)
        except ProbeFailed:
            return heuristics.guess(name)  # not cached: try /api/show again next cycle
        model = _from_show(name, show)
        self._show_cache[digest] = dataclasses.replace(model)
        return model

    async def _post_json(self, path: str, payload: dict[str, Any], timeout: float) -> Any:
        try:
            async with self.http.post(
                self.backend.url + path,
                json=payload,
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as resp:
                if resp.status >= 300:
                    raise ProbeFailed(f"POST {path} returned HTTP {resp.status}")
                return await resp.json(content_type=None)
        except ProbeFailed:
            raise
        except (aiohttp.ClientError, OSError, ValueError, TimeoutError) as exc:
            raise ProbeFailed(f"POST {path}: {exc}") from exc


def _from_show(name: str, show: Any) -> ModelInfo:
    model = heuristics.guess(name)
    if not isinstance(show, dict):
        return model
    caps = show.get("capabilities")
    if isinstance(caps, list):
        model.vision = "vision" in caps
        model.tools = "tools" in caps
        model.embeddings = "embedding" in caps
    info = show.get("model_info")
    if isinstance(info, dict):
        for key, value in info.items():
            if key.endswith(".context_length") and isinstance(value, int) and value > 0:
                model.context_length = value
                break
    return model
