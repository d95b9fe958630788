"""Inbound adapters: one per endpoint (design §2). Thin — parse and validate the body,
say which endpoint it is and whether it streams, render answers and errors in the client's
dialect. No routing and no I/O here: the gateway owns the flow.

OpenAI's endpoints are the canonical form: their answers pass through. The Anthropic
Messages and Responses adapters translate the request to a canonical chat ``Call`` (keeping
the client's own bytes for a backend that speaks the dialect natively) and translate the
canonical answer back — unless it came from such a backend, when it is already theirs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from nexusd.api.dialects import anthropic_messages as messages
from nexusd.api.dialects import responses
from nexusd.api.validation import (
    parse_chat_body,
    parse_completions_body,
    parse_embeddings_body,
)
from nexusd.backends.codec import Call
from nexusd.backends.native import native_error_event
from nexusd.backends.translate import dumps
from nexusd.errors import NexusError
from nexusd.routing.intent import Requirements, requirements_of
from nexusd.sse import error_event
from nexusd.types import Endpoint

if TYPE_CHECKING:
    from nexusd.gateway import Answer


class StreamEncoder(Protocol):
    """Canonical (OpenAI chat) stream events in, the client dialect's events out."""

    def feed(self, data: bytes) -> bytes: ...

    def flush(self) -> bytes: ...


@dataclass(frozen=True, slots=True)
class InboundAdapter:
    path: str
    endpoint: Endpoint
    validate: Callable[[bytes], dict[str, Any]]
    #: the client's dialect, on the request's record
    dialect: str = "openai"

    def parse(self, raw: bytes) -> Call:
        body = self.validate(raw)
        return Call(self.endpoint, body, raw, body.get("stream") is True)

    def requirements(self, call: Call) -> Requirements:
        """What routing needs from this endpoint's body (one pass, on the canonical form)."""
        return requirements_of(call.body, self.endpoint)

    def render_error(self, err: NexusError) -> bytes:
        """Nexus's own refusal in the dialect's envelope (OpenAI's here)."""
        return err.render()

    def answer_body(self, answer: Answer, call: Call) -> bytes:
        """A whole answer (success or a backend's 4xx) for the client: as is for OpenAI."""
        return answer.body

    def stream_encoder(self, call: Call) -> StreamEncoder | None:
        """What turns canonical stream events into the dialect's (None: pass-through)."""
        return None

    def stream_error(self, message: str) -> bytes:
        """The last event of a stream that fails after its head went out."""
        return error_event(message)


@dataclass(frozen=True, slots=True)
class AnthropicMessagesAdapter(InboundAdapter):
    """``POST /v1/messages``: Anthropic's Messages API in front of every backend."""

    def parse(self, raw: bytes) -> Call:
        try:
            native, canonical = messages.parse_request(raw)
        except messages.AnthropicOnly as exc:
            if exc.body is None:
                raise
            # valid, but only an Anthropic backend can take it as sent (server tools…)
            native = exc.body
            canonical = {
                "model": native["model"],
                "messages": [],
                "stream": bool(native.get("stream")),
            }
            call = Call(
                Endpoint.CHAT, canonical, b"", canonical["stream"], "anthropic", native, raw
            )
            call.native_only = exc.message
            return call
        stream = canonical.get("stream") is True
        return Call(Endpoint.CHAT, canonical, dumps(canonical), stream, "anthropic", native, raw)

    def render_error(self, err: NexusError) -> bytes:
        return messages.error_body(err.status, err.message)

    def answer_body(self, answer: Answer, call: Call) -> bytes:
        if answer.native:
            return answer.body
        if answer.status >= 300:
            return messages.error_from_openai(answer.status, answer.body)
        return messages.message_from_completion(answer.body, call.body["model"])

    def stream_encoder(self, call: Call) -> StreamEncoder | None:
        return messages.MessagesStreamEncoder(call.body["model"])

    def stream_error(self, message: str) -> bytes:
        return native_error_event("anthropic", message)


@dataclass(frozen=True, slots=True)
class ResponsesAdapter(InboundAdapter):
    """``POST /v1/responses``: OpenAI's Responses API, stateless, in front of every backend."""

    def parse(self, raw: bytes) -> Call:
        native, canonical = responses.parse_request(raw)
        stream = canonical.get("stream") is True
        return Call(Endpoint.CHAT, canonical, dumps(canonical), stream, "responses", native, raw)

    def render_error(self, err: NexusError) -> bytes:
        return responses.error_body(err.status, err.message, err.param, err.code)

    def answer_body(self, answer: Answer, call: Call) -> bytes:
        if answer.native or answer.status >= 300:  # the same error envelope as chat
            return answer.body
        return responses.response_from_completion(answer.body, call.native_body or {})

    def stream_encoder(self, call: Call) -> StreamEncoder | None:
        return responses.ResponsesStreamEncoder(call.native_body or {})

    def stream_error(self, message: str) -> bytes:
        return native_error_event("responses", message)


OPENAI_ADAPTERS: tuple[InboundAdapter, ...] = (
    InboundAdapter("/v1/chat/completions", Endpoint.CHAT, parse_chat_body),
    InboundAdapter("/v1/completions", Endpoint.COMPLETIONS, parse_completions_body),
    InboundAdapter("/v1/embeddings", Endpoint.EMBEDDINGS, parse_embeddings_body),
)
ADAPTERS: tuple[InboundAdapter, ...] = (
    *OPENAI_ADAPTERS,
    AnthropicMessagesAdapter("/v1/messages", Endpoint.CHAT, parse_chat_body, "anthropic"),
    ResponsesAdapter("/v1/responses", Endpoint.CHAT, parse_chat_body, "responses"),
)
