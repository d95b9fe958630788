"""A request's routing needs, computed in one pass over the (already parsed) body.

Requirements are of two kinds (design §2). **Hard**: the backend cannot serve the request —
image input to a model that has no vision, the wrong endpoint for the model's kind, a prompt
longer than the context by a real tokenizer's count. **Soft**: tools, JSON mode,
``max_tokens`` beyond the remaining context, and any hard requirement judged only from a
guess: these rank candidates, they never refuse a request a backend would accept.

The prompt size starts as a cheap estimate (characters / 4); the gateway replaces it with a
tokenizer count only when a verdict could depend on it (see ``needs_count``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nexusd.types import Endpoint, PrivacyZone

#: characters per token for the cheap estimate (documented in docs/api.md)
CHARS_PER_TOKEN = 4
#: an upper bound of tokens per character (a token covers at least one UTF-8 byte)
MAX_TOKENS_PER_CHAR = 4
#: OpenAI's chat framing: tokens per message, and the reply's priming
PER_MESSAGE_TOKENS = 4


@dataclass(slots=True)
class Requirements:
    vision: bool = False
    tools: bool = False
    json_mode: bool = False
    prompt_tokens: int = 0
    max_tokens: int = 0
    endpoint: Endpoint = Endpoint.CHAT
    #: True when ``prompt_tokens`` came from the model family's own tokenizer
    prompt_exact: bool = False
    #: how the prompt was counted: "estimate" (chars/4), or the tokenizer's encoding name
    prompt_method: str = "estimate"
    prompt_chars: int = 0
    messages: int = 0

    @property
    def context_tokens(self) -> int:
        """What must fit in the model's context: the prompt plus the requested completion."""
        return self.prompt_tokens + self.max_tokens

    def token_bound(self) -> int:
        """No tokenizer can count the prompt above this (so no count can change a verdict
        that this bound already passes)."""
        if self.prompt_method != "estimate":
            return self.prompt_tokens
        return self.prompt_chars * MAX_TOKENS_PER_CHAR + self.messages * PER_MESSAGE_TOKENS + 3

    def to_json(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint.value,
            "vision": self.vision,
            "tools": self.tools,
            "json_mode": self.json_mode,
            "prompt_tokens": self.prompt_tokens,
            "prompt_tokens_method": self.prompt_method,
            "max_tokens": self.max_tokens,
        }


@dataclass(slots=True)
class RoutingIntent:
    request_id: str
    requested_model: str
    requirements: Requirements
    stream: bool = False
    #: backends that failed during this request: never tried twice
    excluded: set[str] = field(default_factory=set)
    #: the least trusted zone allowed to serve it, at every hop, and why (policy, header)
    allowed_zone: PrivacyZone = PrivacyZone.PUBLIC
    zone_reason: str = ""
    #: the lowest capability tier allowed (None: any), and whether other models of the
    #: chain may stand in (flexible) or only the requested one (strict, the default)
    min_tier: int | None = None
    flexible: bool = False


def requirements_of(body: dict[str, Any], endpoint: Endpoint = Endpoint.CHAT) -> Requirements:
    """Vision (any image part), tools/functions, JSON mode, and a prompt-size estimate."""
    req = Requirements(endpoint=endpoint)
    if endpoint is Endpoint.CHAT:
        _scan_messages(body.get("messages"), req)
    else:
        key = "input" if endpoint is Endpoint.EMBEDDINGS else "prompt"
        req.prompt_chars = _text_chars(body.get(key))
    req.prompt_tokens = req.prompt_chars // CHARS_PER_TOKEN
    if endpoint is Endpoint.EMBEDDINGS:
        return req
    tools = body.get("tools")
    functions = body.get("functions")
    req.tools = (bool(tools) and isinstance(tools, list)) or (
        bool(functions) and isinstance(functions, list)
    )
    fmt = body.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") in ("json_object", "json_schema"):
        req.json_mode = True
    limit = body.get("max_completion_tokens")
    if limit is None:
        limit = body.get("max_tokens")
    if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0:
        req.max_tokens = limit
    return req


def _scan_messages(messages: Any, req: Requirements) -> None:
    if not isinstance(messages, list):
        return
    chars = 0
    for message in messages:
        if not isinstance(message, dict):
            continue
        req.messages += 1
        content = message.get("content")
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):
            for part in content:
                if not isinstance(part, dict):
                    continue
                kind = part.get("type")
                if kind == "text":
                    text = part.get("text")
                    if isinstance(text, str):
                        chars += len(text)
                elif kind in ("image_url", "input_image", "image"):
                    req.vision = True
    req.prompt_chars = chars


def _text_chars(value: Any) -> int:
    """Characters of a ``prompt``/``input``: a string, a list of strings; token-id arrays
    count one character per token id (their exact length is known without a tokenizer)."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list):
        total = 0
        for item in value:
            if isinstance(item, str):
                total += len(item)
            elif isinstance(item, int) and not isinstance(item, bool):
                total += CHARS_PER_TOKEN
            elif isinstance(item, list):
                total += CHARS_PER_TOKEN * len(item)
        return total
    return 0
