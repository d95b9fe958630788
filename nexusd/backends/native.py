"""A client's own dialect relayed natively (Anthropic Messages to an Anthropic backend,
Responses to a server that serves ``/v1/responses``): whole events through unchanged, the
provider's usage read on the way for accounting.

Only events that mention ``"usage"`` are parsed (two per answer), so native pass-through
costs what OpenAI pass-through costs.
"""

from __future__ import annotations

from typing import Any

from nexusd.backends.translate import (
    TokenUsage,
    UpstreamStreamError,
    dumps,
    json_object,
    parse_events,
)
from nexusd.sse import SSEFramer
from nexusd.usage import tokens_of

#: how a native stream says it failed (its last event)
_FAILURES = (b"event: error", b'"type":"error"', b"response.failed")
#: how it says it is complete, per dialect
_ENDS = {
    "anthropic": (b"message_stop",),
    "responses": (b"response.completed", b"response.incomplete"),
}


class NativeStream:
    __slots__ = ("_dialect", "_ended", "_events", "_framer", "_seen", "failed", "usage")

    def __init__(self, dialect: str, max_event_bytes: int | None) -> None:
        self._dialect = dialect
        self._framer = SSEFramer(max_event_bytes)
        self._seen: dict[str, Any] = {}  # Anthropic's usage arrives in two parts
        self._events = 0  # relayed so far: a Responses error event continues the numbering
        self.usage: TokenUsage | None = None
        #: the provider's own in-stream error, relayed as it is: the request failed
        self.failed: str | None = None
        self._ended = False  # the dialect's last event was seen

    def feed(self, data: bytes) -> bytes:
        out = self._framer.feed(data)
        if out:
            self._events += out.count(b"\n\n")
            self._watch(out)
        return out

    def flush(self) -> bytes:
        out = self._framer.flush()
        self._watch(out)
        if not self._ended and self.failed is None:
            end = _ENDS[self._dialect][0].decode()
            raise UpstreamStreamError(f"the stream ended before its {end} event")
        return out

    def _watch(self, out: bytes) -> None:
        if not self._ended and any(marker in out for marker in _ENDS[self._dialect]):
            self._ended = True
        if b'"usage"' in out:
            self._read_usage(out)
        if any(marker in out for marker in _FAILURES):
            self._read_failure(out)

    def _read_failure(self, block: bytes) -> None:
        for event in parse_events(block):
            payload = json_object(event.data) or {}
            kind = payload.get("type", event.event)
            if kind == "error":
                error = payload.get("error")
                error = error if isinstance(error, dict) else payload
                self.failed = f"{error.get('type') or error.get('code') or 'error'}: " + str(
                    error.get("message") or "no message"
                )
            elif kind == "response.failed":
                response = payload.get("response")
                error = response.get("error") if isinstance(response, dict) else None
                message = error.get("message") if isinstance(error, dict) else None
                self.failed = f"response.failed: {message or 'no message'}"

    def error_event(self, message: str) -> bytes:
        """The backend failed after the head went out: the last event, in the dialect."""
        return native_error_event(self._dialect, message, self._events)

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


def native_error_event(dialect: str, message: str, sequence_number: int = 0) -> bytes:
    """An in-stream error as each dialect's clients expect it: Anthropic's ``error`` event,
    the Responses API's ``error`` event (numbered after the events before it)."""
    if dialect == "anthropic":
        payload: dict[str, Any] = {
            "type": "error",
            "error": {"type": "api_error", "message": message},
        }
    else:
        payload = {
            "type": "error",
            "code": "server_error",
            "message": message,
            "param": None,
            "sequence_number": sequence_number,
        }
    return b"event: error\ndata: " + dumps(payload) + b"\n\n"
