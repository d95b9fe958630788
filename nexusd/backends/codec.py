"""Dialects: the canonical request (OpenAI's shape, as the client sent it) to a backend's wire
request, and the backend's answers back (design §2).

The OpenAI-compatible codec is identity on bytes: the client's body goes out unchanged
unless the model name changes (a fallback or an alias), and answers come back unparsed, so
pass-through costs nothing. A translating codec (Ollama's native embeddings here; cloud
dialects later) overrides the parts it needs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol

from nexusd.backends.upstream import UpstreamProtocolError, UpstreamReply
from nexusd.sse import SSEFramer
from nexusd.types import Endpoint

#: OpenAI's paths, as every OpenAI-compatible server serves them
OPENAI_PATHS = {
    Endpoint.CHAT: "/v1/chat/completions",
    Endpoint.COMPLETIONS: "/v1/completions",
    Endpoint.EMBEDDINGS: "/v1/embeddings",
}


@dataclass(slots=True)
class Call:
    """One client request in canonical form: parsed once by the inbound adapter."""

    endpoint: Endpoint
    body: dict[str, Any]
    raw: bytes
    stream: bool = False


@dataclass(slots=True)
class WireRequest:
    path: str
    body: bytes


class StreamDecoder(Protocol):
    """Upstream stream bytes in, client-dialect SSE events out (whole events only)."""

    def feed(self, data: bytes) -> bytes: ...

    def flush(self) -> bytes: ...


def with_model(body: dict[str, Any], model: str) -> bytes:
    """The body with another model name; the client's dict is left as it was."""
    return json.dumps({**body, "model": model}, ensure_ascii=False, separators=(",", ":")).encode()


class OpenAICodec:
    """Identity: OpenAI-compatible servers speak the client's dialect."""

    def encode(self, call: Call, model: str) -> WireRequest:
        body = call.raw if call.body.get("model") == model else with_model(call.body, model)
        return WireRequest(OPENAI_PATHS[call.endpoint], body)

    def decode(self, call: Call, reply: UpstreamReply, model: str) -> bytes:
        """The answer's bytes, after a sanity check that it is the JSON object promised."""
        body = reply.body
        if body.lstrip()[:1] != b"{":
            raise UpstreamProtocolError(
                f"invalid backend response: expected a JSON object, got {body[:80]!r}"
            )
        return body

    def decode_error(self, call: Call, status: int, body: bytes, content_type: str) -> bytes:
        """A 4xx passed through to the client: already in the client's envelope."""
        return body

    def stream_decoder(self, call: Call) -> StreamDecoder:
        return SSEFramer()


def openai_error(message: str, *, type_: str = "invalid_request_error") -> bytes:
    return json.dumps(
        {"error": {"message": message, "type": type_, "param": None, "code": None}}
    ).encode()
