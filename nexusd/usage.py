"""Token usage as the backend reported it: for accounting, upstream ``usage`` always wins
over any estimate. Only the ``usage`` object is parsed, never the whole answer.
"""

from __future__ import annotations

import json
from typing import Any

_DECODER = json.JSONDecoder()


Tokens = tuple[int | None, int | None, int | None]
NONE: Tokens = (None, None, None)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _tokens(usage: Any) -> Tokens:
    """(prompt, completion, cached prompt) from a ``usage`` object in any dialect Nexus
    relays: OpenAI chat (``prompt_tokens``…), Responses (``input_tokens`` with
    ``input_tokens_details``; cached tokens included) or Anthropic (``input_tokens`` *without*
    the cache reads and writes, which it counts apart)."""
    if not isinstance(usage, dict):
        return NONE
    if "prompt_tokens" in usage or "completion_tokens" in usage:
        details = usage.get("prompt_tokens_details")
        cached = details.get("cached_tokens") if isinstance(details, dict) else None
        return _int(usage.get("prompt_tokens")), _int(usage.get("completion_tokens")), _int(cached)
    inputs, outputs = _int(usage.get("input_tokens")), _int(usage.get("output_tokens"))
    details = usage.get("input_tokens_details")
    if isinstance(details, dict):  # Responses
        return inputs, outputs, _int(details.get("cached_tokens"))
    read = _int(usage.get("cache_read_input_tokens"))
    written = _int(usage.get("cache_creation_input_tokens"))
    if inputs is not None:
        inputs += (read or 0) + (written or 0)
    return inputs, outputs, read


def tokens_of(usage: Any) -> Tokens:
    return _tokens(usage)


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
    except (ValueError, RecursionError):
        return NONE
    return _tokens(usage)


def stream_usage(events: bytes) -> Tokens:
    """Token counts from the last stream event that carries ``usage`` (include_usage; some
    servers, like Ollama, put a zeroed ``usage`` in every chunk before the real one)."""
    for line in reversed(events.split(b"\n")):
        if line.startswith(b"data:") and b'"usage"' in line:
            try:
                found = _tokens(json.loads(line[5:]).get("usage"))
            except (ValueError, AttributeError, RecursionError):
                continue
            if found[:2] != (None, None):
                return found
    return NONE
