"""A request's routing needs, computed in one pass over the (already parsed) body."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: characters per token for the context estimate (tiktoken arrives with cloud support)
CHARS_PER_TOKEN = 4


@dataclass(slots=True)
class Requirements:
    vision: bool = False
    tools: bool = False
    json_mode: bool = False
    prompt_tokens: int = 0
    max_tokens: int = 0

    @property
    def context_tokens(self) -> int:
        """What must fit in the model's context: the prompt plus the requested completion."""
        return self.prompt_tokens + self.max_tokens

    def to_json(self) -> dict[str, Any]:
        return {
            "vision": self.vision,
            "tools": self.tools,
            "json_mode": self.json_mode,
            "prompt_tokens": self.prompt_tokens,
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


def requirements_of(body: dict[str, Any]) -> Requirements:
    """Vision (any image part), tools/functions, JSON mode, and a context-size estimate."""
    req = Requirements()
    chars = 0
    for message in body.get("messages") or ():
        if not isinstance(message, dict):
            continue
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
    req.prompt_tokens = chars // CHARS_PER_TOKEN
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
