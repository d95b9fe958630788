"""Inbound adapters: one per endpoint (design §2). Thin — parse and validate the body,
say which endpoint it is and whether it streams, render errors in the dialect's envelope.
No routing and no I/O here: the gateway owns the flow.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nexusd.api.validation import (
    parse_chat_body,
    parse_completions_body,
    parse_embeddings_body,
)
from nexusd.backends.codec import Call
from nexusd.errors import NexusError
from nexusd.routing.intent import Requirements, requirements_of
from nexusd.types import Endpoint


@dataclass(frozen=True, slots=True)
class InboundAdapter:
    path: str
    endpoint: Endpoint
    validate: Callable[[bytes], dict[str, Any]]

    def parse(self, raw: bytes) -> Call:
        body = self.validate(raw)
        return Call(self.endpoint, body, raw, body.get("stream") is True)

    def requirements(self, call: Call) -> Requirements:
        """What routing needs from this endpoint's body (one pass)."""
        return requirements_of(call.body, self.endpoint)

    def render_error(self, err: NexusError) -> bytes:
        """OpenAI's envelope; other dialects (Anthropic, Responses) override this."""
        return err.render()


OPENAI_ADAPTERS: tuple[InboundAdapter, ...] = (
    InboundAdapter("/v1/chat/completions", Endpoint.CHAT, parse_chat_body),
    InboundAdapter("/v1/completions", Endpoint.COMPLETIONS, parse_completions_body),
    InboundAdapter("/v1/embeddings", Endpoint.EMBEDDINGS, parse_embeddings_body),
)
