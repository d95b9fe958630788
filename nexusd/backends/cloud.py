"""Cloud providers' probers, and the metered OpenAI codec.

Probes ask each provider's model listing with the configured key — a metadata call, never
inference, never billed — at ``health_check.cloud_interval_seconds`` once healthy. What a
listing states (Google's token limits) is ``reported``; the rest (vision, tools) is known
about the provider's families and only ranks candidates.
"""

from __future__ import annotations

import json
import time
from typing import Any

from nexusd.backends import heuristics
from nexusd.backends.codec import Call, OpenAICodec, StreamDecoder, WireRequest
from nexusd.backends.prober import ProbeFailed, Prober, ProbeResult
from nexusd.backends.translate import TokenUsage, int_or_none, json_object, parse_events
from nexusd.sse import SSEFramer
from nexusd.types import BackendStatus, Endpoint, ModelInfo

#: most listing pages followed in one probe (a provider paging forever must not stall it)
MAX_PAGES = 10
CLAUDE_CONTEXT = 200_000


class OpenAICloudProber(Prober):
    """``GET /v1/models`` with the key: OpenAI's listing is the OpenAI-compatible one."""


class AnthropicProber(Prober):
    """``GET /v1/models`` (Anthropic's paged listing; llama.cpp's server answers it too)."""

    async def probe(self, timeout: float) -> ProbeResult:
        started = time.perf_counter()
        models: list[ModelInfo] = []
        after: str | None = None
        try:
            for _ in range(MAX_PAGES):
                path = "/v1/models?limit=1000" + (f"&after_id={after}" if after else "")
                listing = await self.get_json(path, timeout)
                page = self.parse_openai_models(listing)
                if page is None:
                    return ProbeResult(_UNHEALTHY, error="GET /v1/models: not a model list")
                models.extend(page)
                after = listing.get("last_id")
                if not listing.get("has_more") or not isinstance(after, str) or not page:
                    break
        except ProbeFailed as exc:
            return ProbeResult(_UNHEALTHY, error=str(exc))
        return ProbeResult(_HEALTHY, models, (time.perf_counter() - started) * 1000)

    def model_from_listing(self, entry: dict[str, Any]) -> ModelInfo:
        model = super().model_from_listing(entry)
        if entry["id"].startswith("claude"):
            # every Claude 3+ model takes images and tools; JSON output is emulated by the codec
            model.vision = model.tools = model.json_mode = True
            if "context_length" not in model.reported:
                model.context_length = CLAUDE_CONTEXT
        return model


class GoogleProber(Prober):
    """``GET /v1beta/models`` with ``x-goog-api-key``: keeps the models that generate content,
    with the token limits Google states."""

    async def probe(self, timeout: float) -> ProbeResult:
        started = time.perf_counter()
        models: list[ModelInfo] = []
        token: str | None = None
        try:
            for _ in range(MAX_PAGES):
                path = "/v1beta/models?pageSize=1000" + (f"&pageToken={token}" if token else "")
                listing = await self.get_json(path, timeout)
                entries = listing.get("models") if isinstance(listing, dict) else None
                if not isinstance(entries, list):
                    return ProbeResult(_UNHEALTHY, error="GET /v1beta/models: not a model list")
                models.extend(m for e in entries if (m := self.gemini(e)) is not None)
                token = listing.get("nextPageToken")
                if not isinstance(token, str) or not token:
                    break
        except ProbeFailed as exc:
            return ProbeResult(_UNHEALTHY, error=str(exc))
        return ProbeResult(_HEALTHY, models, (time.perf_counter() - started) * 1000)

    @staticmethod
    def gemini(entry: Any) -> ModelInfo | None:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            return None
        methods = entry.get("supportedGenerationMethods")
        if not isinstance(methods, list) or "generateContent" not in methods:
            return None  # embedding-only and other models: the codec serves chat only
        model = heuristics.guess(entry["name"].removeprefix("models/"), cloud=True)
        model.vision = model.tools = model.json_mode = True
        context, output = int_or_none(entry.get("inputTokenLimit")), entry.get("outputTokenLimit")
        if context and context > 0:
            model.report(context_length=context)
        if int_or_none(output):
            model.report(max_output_tokens=output)
        return model


_HEALTHY, _UNHEALTHY = BackendStatus.HEALTHY, BackendStatus.UNHEALTHY


class MeteredOpenAICodec(OpenAICodec):
    """OpenAI's own API: pass-through, except that a stream always asks for usage
    (``stream_options.include_usage``), because a billed answer must be accounted from the
    provider's count. The usage-only chunk is kept from a client that did not ask for it;
    the ``"usage": null`` OpenAI then adds to the other chunks is passed on (SDKs ignore it)."""

    #: OpenAI serves the Responses API itself (Nexus stays stateless: see docs/api.md)
    native_dialects = frozenset({"responses"})

    def encode(self, call: Call, model: str) -> WireRequest:
        if call.stream and call.endpoint is Endpoint.CHAT and not wants_usage(call.body):
            options = call.body.get("stream_options")
            options = (
                {**options, "include_usage": True}
                if isinstance(options, dict)
                else {"include_usage": True}
            )
            body = json.dumps(
                {**call.body, "model": model, "stream_options": options},
                ensure_ascii=False,
                separators=(",", ":"),
            ).encode()
            return WireRequest("/v1/chat/completions", body)
        return super().encode(call, model)

    def stream_decoder(self, call: Call, model: str) -> StreamDecoder:
        if call.endpoint is not Endpoint.CHAT or wants_usage(call.body):
            return SSEFramer(self.max_event_bytes)
        return UsageWithheld(self.max_event_bytes)


def wants_usage(body: dict[str, Any]) -> bool:
    options = body.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


class UsageWithheld:
    """Whole events through, but the usage-only chunk (``"choices":[]``) is kept back and
    its count kept in ``usage``. Only events holding that marker are parsed."""

    __slots__ = ("_framer", "usage")

    def __init__(self, max_event_bytes: int | None) -> None:
        self._framer = SSEFramer(max_event_bytes)
        self.usage: TokenUsage | None = None

    def feed(self, data: bytes) -> bytes:
        return self._withhold(self._framer.feed(data))

    def flush(self) -> bytes:
        return self._withhold(self._framer.flush())

    def _withhold(self, out: bytes) -> bytes:
        if b'"choices":[]' not in out and b'"choices": []' not in out:
            return out
        kept = []
        for block in out.split(b"\n\n"):
            if not block:
                continue
            parsed = parse_events(block)
            payload = json_object(parsed[0].data) if parsed else None
            usage = payload.get("usage") if payload and payload.get("choices") == [] else None
            if isinstance(usage, dict):
                details = usage.get("prompt_tokens_details")
                self.usage = TokenUsage(
                    int_or_none(usage.get("prompt_tokens")),
                    int_or_none(usage.get("completion_tokens")),
                    int_or_none(details.get("cached_tokens"))
                    if isinstance(details, dict)
                    else None,
                )
                continue
            kept.append(block + b"\n\n")
        return b"".join(kept)
