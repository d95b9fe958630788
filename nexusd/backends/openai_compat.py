"""OpenAI-compatible servers, each probed through its own metadata endpoints.

Inference is identical for all of them (OpenAI's paths, the identity codec); what differs
is how they tell us they are alive, loading, and what their models can do.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from nexusd.backends.prober import ProbeFailed, Prober, ProbeResult
from nexusd.types import BackendStatus, ModelInfo


class GenericProber(Prober):
    """Any OpenAI-compatible server; exo and OpenAI itself need nothing more."""


async def _health_endpoint(prober: Prober, timeout: float, loading: str) -> ProbeResult | None:
    """``GET /health``: None when ready; 503 means still loading; anything else is down."""
    try:
        status = await prober.get_status("/health", timeout)
    except ProbeFailed as exc:
        return ProbeResult(BackendStatus.UNHEALTHY, error=str(exc))
    if status == 503:
        return ProbeResult(BackendStatus.LOADING, error=loading)
    if status >= 300:
        return ProbeResult(BackendStatus.UNHEALTHY, error=f"GET /health returned HTTP {status}")
    return None


class LlamaCppProber(Prober):
    """llama.cpp server: ``/health`` (503 while loading), ``/v1/models`` meta and ``/props``.

    Whether the server runs in embedding mode is not in ``/props``; the server says it
    without inference: ``POST /v1/embeddings {}`` answers 501 ("start it with --embeddings")
    on a generation server and 400 (no input) on an embedding one. An embedding server cannot
    generate (no logits), so that answer settles both endpoints.
    """

    _responses: bool | None = None  # whether the server has /v1/responses, once known

    async def probe(self, timeout: float) -> ProbeResult:
        started = time.perf_counter()
        not_ready = await _health_endpoint(self, timeout, "model is loading")
        if not_ready is not None:
            return not_ready
        latency = (time.perf_counter() - started) * 1000
        listing, props, embedding, responses = await asyncio.gather(
            self.get_json("/v1/models", timeout),
            self._props(timeout),
            self._embedding_mode(timeout),
            self._serves_responses(timeout),
            return_exceptions=True,
        )
        if isinstance(listing, BaseException):
            return ProbeResult(BackendStatus.UNHEALTHY, error=str(listing))
        models = self.parse_openai_models(listing)
        if models is None:
            return ProbeResult(BackendStatus.UNHEALTHY, error="GET /v1/models: not a model list")
        for model in models:
            if isinstance(props, dict):
                _apply_props(model, props)
            if isinstance(embedding, bool):
                model.report(embeddings=embedding)
        return ProbeResult(
            BackendStatus.HEALTHY,
            models,
            latency,
            details={"slots": props.get("total_slots")} if isinstance(props, dict) else {},
            native_dialects=frozenset({"responses"}) if responses is True else None,
        )

    async def _serves_responses(self, timeout: float) -> bool | None:
        """``POST /v1/responses {}``: 400 ("'input' is required") where the server has the
        Responses API (so Responses clients pass through natively), 404 where it has not.
        Asked until the server answered once: the answer does not change while it runs."""
        if self._responses is not None:
            return self._responses
        try:
            status = await self.post_status("/v1/responses", {}, timeout)
        except ProbeFailed:
            return None
        if status in (400, 422):
            self._responses = True
        elif status in (404, 405, 501):
            self._responses = False
        return self._responses

    async def _props(self, timeout: float) -> Any:
        try:
            return await self.get_json("/props", timeout)
        except ProbeFailed:
            return None

    async def _embedding_mode(self, timeout: float) -> bool | None:
        try:
            status = await self.post_status("/v1/embeddings", {}, timeout)
        except ProbeFailed:
            return None
        if status == 501:
            return False
        if status == 400:
            return True
        return None  # an older or different server: keep the name's guess

    def model_from_listing(self, entry: dict[str, Any]) -> ModelInfo:
        model = super().model_from_listing(entry)
        meta = entry.get("meta")
        if isinstance(meta, dict) and isinstance(meta.get("n_ctx_train"), int):
            model.report(context_length=meta["n_ctx_train"])
        return model


def _apply_props(model: ModelInfo, props: dict[str, Any]) -> None:
    """The served context (``n_ctx``) beats the trained one; modalities say vision."""
    settings = props.get("default_generation_settings")
    if isinstance(settings, dict) and isinstance(settings.get("n_ctx"), int):
        model.report(context_length=settings["n_ctx"])
    modalities = props.get("modalities")
    if isinstance(modalities, dict) and isinstance(modalities.get("vision"), bool):
        model.report(vision=modalities["vision"])
    caps = props.get("chat_template_caps")
    template = props.get("chat_template")
    if isinstance(caps, dict) and isinstance(caps.get("supports_tools"), bool):
        model.report(tools=caps["supports_tools"])
    elif isinstance(template, str) and template:
        model.tools = "tool" in template  # a guess from the template text


class VllmProber(Prober):
    """vLLM: ``/health`` for the engine, ``/v1/models`` carries ``max_model_len``."""

    async def probe(self, timeout: float) -> ProbeResult:
        not_ready = await _health_endpoint(self, timeout, "engine is starting")
        return not_ready or await super().probe(timeout)


class LmStudioProber(Prober):
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
            if isinstance(kind, str):
                model.report(vision=kind == "vlm" or model.vision, embeddings=kind == "embeddings")
            if isinstance(entry.get("max_context_length"), int):
                model.report(context_length=entry["max_context_length"])
            if isinstance(entry.get("state"), str):
                model.loaded = entry["state"] == "loaded"
        return result
