"""OpenAI-compatible servers, each probed through its own metadata endpoints.

Chat is identical for all of them (``/v1/chat/completions``); what differs is how they tell
us they are alive, loading, and what their models can do.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from nexusd.backends.base import BackendAgent, ProbeFailed, ProbeResult
from nexusd.types import BackendStatus, ModelInfo


class GenericAgent(BackendAgent):
    """Any OpenAI-compatible server; exo and OpenAI itself need nothing more."""


async def _health_endpoint(agent: BackendAgent, timeout: float, loading: str) -> ProbeResult | None:
    """``GET /health``: None when ready; 503 means still loading; anything else is down."""
    try:
        status = await agent.get_status("/health", timeout)
    except ProbeFailed as exc:
        return ProbeResult(BackendStatus.UNHEALTHY, error=str(exc))
    if status == 503:
        return ProbeResult(BackendStatus.LOADING, error=loading)
    if status >= 300:
        return ProbeResult(BackendStatus.UNHEALTHY, error=f"GET /health returned HTTP {status}")
    return None


class LlamaCppAgent(BackendAgent):
    """llama.cpp server: ``/health`` (503 while loading), ``/v1/models`` meta and ``/props``."""

    async def probe(self, timeout: float) -> ProbeResult:
        started = time.perf_counter()
        not_ready = await _health_endpoint(self, timeout, "model is loading")
        if not_ready is not None:
            return not_ready
        latency = (time.perf_counter() - started) * 1000
        listing, props = await asyncio.gather(
            self.get_json("/v1/models", timeout), self._props(timeout), return_exceptions=True
        )
        if isinstance(listing, BaseException):
            return ProbeResult(BackendStatus.UNHEALTHY, error=str(listing))
        models = self.parse_openai_models(listing)
        if models is None:
            return ProbeResult(BackendStatus.UNHEALTHY, error="GET /v1/models: not a model list")
        if isinstance(props, dict):
            for model in models:
                _apply_props(model, props)
        return ProbeResult(
            BackendStatus.HEALTHY,
            models,
            latency,
            details={"slots": props.get("total_slots")} if isinstance(props, dict) else {},
        )

    async def _props(self, timeout: float) -> Any:
        try:
            return await self.get_json("/props", timeout)
        except ProbeFailed:
            return None

    def model_from_listing(self, entry: dict[str, Any]) -> ModelInfo:
        model = super().model_from_listing(entry)
        meta = entry.get("meta")
        if isinstance(meta, dict) and isinstance(meta.get("n_ctx_train"), int):
            model.context_length = meta["n_ctx_train"]
        return model


def _apply_props(model: ModelInfo, props: dict[str, Any]) -> None:
    """The served context (``n_ctx``) beats the trained one; modalities say vision."""
    settings = props.get("default_generation_settings")
    if isinstance(settings, dict) and isinstance(settings.get("n_ctx"), int):
        model.context_length = settings["n_ctx"]
    modalities = props.get("modalities")
    if isinstance(modalities, dict) and isinstance(modalities.get("vision"), bool):
        model.vision = modalities["vision"]
    caps = props.get("chat_template_caps")
    template = props.get("chat_template")
    if isinstance(caps, dict) and isinstance(caps.get("supports_tools"), bool):
        model.tools = caps["supports_tools"]
    elif isinstance(template, str) and template:
        model.tools = "tool" in template


class VllmAgent(BackendAgent):
    """vLLM: ``/health`` for the engine, ``/v1/models`` carries ``max_model_len``."""

    async def probe(self, timeout: float) -> ProbeResult:
        not_ready = await _health_endpoint(self, timeout, "engine is starting")
        return not_ready or await super().probe(timeout)


class LmStudioAgent(BackendAgent):
    """LM Studio: ``/api/v0/models`` adds model type (vlm, embeddings), state and context."""

    async def probe(self, timeout: float) -> ProbeResult:
        result = await super().probe(timeout)
        if result.status is not BackendStatus.HEALTHY or result.models is None:
            return result
        try:
            rich = await self.get_json("/api/v0/models", timeout)
        except ProbeFailed:
            return result
        by_id = (
            {e["id"]: e for e in (rich.get("data") or []) if isinstance(e, dict) and "id" in e}
            if isinstance(rich, dict)
            else {}
        )
        for model in result.models:
            entry = by_id.get(model.id)
            if entry is None:
                continue
            kind = entry.get("type")
            model.vision = kind == "vlm" or model.vision
            model.embeddings = kind == "embeddings"
            if isinstance(entry.get("max_context_length"), int):
                model.context_length = entry["max_context_length"]
            if isinstance(entry.get("state"), str):
                model.loaded = entry["state"] == "loaded"
        return result
