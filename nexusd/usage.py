"""Token usage as the backend reported it: for accounting, upstream ``usage`` always wins
over any estimate. Only the ``usage`` object is parsed, never the whole answer.
"""

from __future__ import annotations

import json
from typing import Any

_DECODER = json.JSONDecoder()


Tokens = tuple[int | None, int | None, int | None]
NONE: Tokens = (None, None, None)


def _tokens(usage: Any) -> Tokens:
    """(prompt, completion, cached prompt) from an OpenAI ``usage`` object."""
    if not isinstance(usage, dict):
        return NONE
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    details = usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    return (
        prompt if isinstance(prompt, int) else None,
        completion if isinstance(completion, int) else None,
        cached if isinstance(cached, int) else None,
    )


def usage_of(body: bytes) -> Tokens:
    """Token counts from a non-streaming answer: only the ``usage`` object is parsed."""
    at = body.rfind(b'"usage"')
    if at < 0:
        return NONE
    start = body.find(b"{", at)
    if start < 0:
        return NONE
    try:
        usage, _ = _DECODER.raw_decode(body[start:].decode("utf-8", "replace"))
    except ValueError:
        return NONE
    return _tokens(usage)


def stream_usage(events: bytes) -> Tokens:
    """Token counts from the last stream event that carries ``usage`` (include_usage; some
    servers, like Ollama, put a zeroed ``usage`` in every chunk before the real one)."""
    for line in reversed(events.split(b"\n")):
        if line.startswith(b"data:") and b'"usage"' in line:
            try:
                found = _tokens(json.loads(line[5:]).get("usage"))
            except (ValueError, AttributeError):
                continue
            if found[:2] != (None, None):
                return found
    return NONE
