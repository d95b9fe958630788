"""A client's own dialect relayed natively (Anthropic Messages to an Anthropic backend,
Responses to a server that serves ``/v1/responses``): whole events through unchanged, the
provider's usage read on the way for accounting.

Only events that mention ``"usage"`` are parsed (two per answer), so native pass-through
costs what OpenAI pass-through costs.
"""

from __future__ import annotations

from typing import Any

from nexusd.backends.translate import TokenUsage, json_object, parse_events
from nexusd.sse import SSEFramer
from nexusd.usage import tokens_of


class NativeStream:
    __slots__ = ("_dialect", "_framer", "_seen", "usage")

    def __init__(self, dialect: str, max_event_bytes: int | None) -> None:
        self._dialect = dialect
        self._framer = SSEFramer(max_event_bytes)
        self._seen: dict[str, Any] = {}  # Anthropic's usage arrives in two parts
        self.usage: TokenUsage | None = None

    def feed(self, data: bytes) -> bytes:
        out = self._framer.feed(data)
        if b'"usage"' in out:
            self._read_usage(out)
        return out

    def flush(self) -> bytes:
        out = self._framer.flush()
        if b'"usage"' in out:
            self._read_usage(out)
        return out

    def _read_usage(self, block: bytes) -> None:
        for event in parse_events(block):
            if '"usage"' not in event.data:
                continue
            payload = json_object(event.data) or {}
            if self._dialect == "anthropic":
                message = payload.get("message")
                usage = message.get("usage") if isinstance(message, dict) else payload.get("usage")
                if isinstance(usage, dict):
                    self._seen.update((k, v) for k, v in usage.items() if v is not None)
                    usage = self._seen
            else:  # responses: the final response object carries it
                response = payload.get("response")
                usage = response.get("usage") if isinstance(response, dict) else None
            prompt, completion, cached = tokens_of(usage)
            if prompt is not None or completion is not None:
                self.usage = TokenUsage(prompt, completion, cached)
