"""Ollama: native endpoints for health, capabilities and embeddings; its OpenAI layer for
chat and legacy completions.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import struct
import time
from typing import Any

from nexusd.backends import heuristics
from nexusd.backends.codec import Call, OpenAICodec, WireRequest, openai_error
from nexusd.backends.prober import ProbeFailed, Prober, ProbeResult
from nexusd.backends.upstream import UpstreamProtocolError, UpstreamReply
from nexusd.types import BackendStatus, Endpoint, ModelInfo

#: embeddings options Ollama's /api/embed understands besides model and input
_EMBED_OPTIONS = ("dimensions", "truncate", "keep_alive", "options")


class OllamaProber(Prober):
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
            show = await self.request_json("POST", "/api/show", timeout, {"model": name})
        except ProbeFailed:
            return heuristics.guess(name)  # not cached: try /api/show again next cycle
        model = _from_show(name, show)
        self._show_cache[digest] = dataclasses.replace(model)
        return model


def _from_show(name: str, show: Any) -> ModelInfo:
    model = heuristics.guess(name)
    if not isinstance(show, dict):
        return model
    caps = show.get("capabilities")
    if isinstance(caps, list):
        model.report(vision="vision" in caps, tools="tools" in caps)
        if "embedding" in caps:
            # an embedding model cannot chat; a chat model can still embed through
            # /api/embed, so only the positive answer is a fact
            model.report(embeddings=True)
        else:
            model.embeddings = False
    info = show.get("model_info")
    if isinstance(info, dict):
        for key, value in info.items():
            if key.endswith(".context_length") and isinstance(value, int) and value > 0:
                model.report(context_length=value)
                break
    return model


class OllamaCodec(OpenAICodec):
    """Chat and completions through Ollama's OpenAI layer (identity); embeddings through the
    native ``/api/embed``, the whole batch in one call, translated to OpenAI's shape."""

    def encode(self, call: Call, model: str) -> WireRequest:
        if call.endpoint is not Endpoint.EMBEDDINGS:
            return super().encode(call, model)
        body = call.body
        wire: dict[str, Any] = {"model": model, "input": body.get("input")}
        for key in _EMBED_OPTIONS:
            if key in body:
                wire[key] = body[key]
        return WireRequest("/api/embed", json.dumps(wire, ensure_ascii=False).encode())

    def decode(self, call: Call, reply: UpstreamReply, model: str) -> bytes:
        if call.endpoint is not Endpoint.EMBEDDINGS:
            return super().decode(call, reply, model)
        try:
            native = json.loads(reply.body)
        except ValueError:
            native = None
        vectors = native.get("embeddings") if isinstance(native, dict) else None
        if not isinstance(vectors, list) or not all(isinstance(v, list) for v in vectors):
            raise UpstreamProtocolError(
                f"invalid /api/embed response: no 'embeddings' list in {reply.body[:80]!r}"
            )
        as_base64 = call.body.get("encoding_format") == "base64"
        tokens = native.get("prompt_eval_count")
        tokens = tokens if isinstance(tokens, int) else 0
        return json.dumps(
            {
                "object": "list",
                "data": [
                    {
                        "object": "embedding",
                        "index": i,
                        "embedding": _base64(vector) if as_base64 else vector,
                    }
                    for i, vector in enumerate(vectors)
                ],
                "model": native.get("model") or model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
            separators=(",", ":"),
        ).encode()

    def decode_error(self, call: Call, status: int, body: bytes, content_type: str) -> bytes:
        """Ollama's native errors are ``{"error": "text"}``: give clients OpenAI's envelope."""
        if call.endpoint is not Endpoint.EMBEDDINGS:
            return body
        try:
            message = json.loads(body).get("error")
        except (ValueError, AttributeError):
            message = None
        if not isinstance(message, str):
            message = body[:300].decode("utf-8", "replace") or f"HTTP {status}"
        return openai_error(message)


def _base64(vector: list[float]) -> str:
    """OpenAI's ``encoding_format: base64``: little-endian float32, base64-encoded."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
