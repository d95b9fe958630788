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
from typing import TYPE_CHECKING, Any, Protocol

from nexusd.backends.native import NativeStream
from nexusd.backends.upstream import UpstreamProtocolError, UpstreamReply
from nexusd.sse import SSEFramer

if TYPE_CHECKING:
    from nexusd.backends.translate import TokenUsage
from nexusd.types import Endpoint

#: OpenAI's paths, as every OpenAI-compatible server serves them
OPENAI_PATHS = {
    Endpoint.CHAT: "/v1/chat/completions",
    Endpoint.COMPLETIONS: "/v1/completions",
    Endpoint.EMBEDDINGS: "/v1/embeddings",
}
#: where a backend that speaks a client dialect natively serves it
NATIVE_PATHS = {"anthropic": "/v1/messages", "responses": "/v1/responses"}


@dataclass(slots=True)
class Call:
    """One client request in canonical form: parsed once by the inbound adapter.

    A client speaking another dialect (Anthropic Messages, OpenAI Responses) is translated
    to the canonical form (``body``/``raw``) for routing and for backends that need it;
    its own request stays in ``native_body``/``native_raw`` for a backend that speaks that
    dialect itself, which then gets it as bytes (only ``model`` replaced)."""

    endpoint: Endpoint
    body: dict[str, Any]
    raw: bytes
    stream: bool = False
    #: the client's dialect: "openai" (canonical), "anthropic" or "responses"
    dialect: str = "openai"
    native_body: dict[str, Any] | None = None
    native_raw: bytes = b""
    #: why only a backend speaking the client's dialect can serve it (e.g. Anthropic
    #: server tools): any other backend is skipped with this reason
    native_only: str | None = None
    #: the client's dialect headers a native backend needs as sent (``anthropic-beta``)
    native_headers: dict[str, str] | None = None
    #: ``X-Nexus-Privacy``: a zone the client asks for (it can only tighten)
    privacy: str | None = None
    #: ``X-Nexus-Strict`` / ``X-Nexus-Flexible`` as sent (parsed by the gateway)
    strict: str | None = None
    flexible: str | None = None


@dataclass(slots=True)
class WireRequest:
    path: str
    body: bytes
    #: request headers of the client's own to pass on (a native dialect's ``anthropic-beta``)
    headers: dict[str, str] | None = None


class StreamDecoder(Protocol):
    """Upstream stream bytes in, client-dialect SSE events out (whole events only).

    ``feed`` and ``flush`` may raise ``UpstreamError`` (a provider's in-stream error, a
    stream that ended before its end event): the relay turns it into an error event.
    ``usage`` is the provider's token count once known (translating decoders set it even
    when the client did not ask for a usage chunk); ``None`` when the bytes carry it.
    """

    usage: TokenUsage | None

    def feed(self, data: bytes) -> bytes: ...

    def flush(self) -> bytes: ...


def with_model(body: dict[str, Any], model: str) -> bytes:
    """The body with another model name; the client's dict is left as it was."""
    return json.dumps({**body, "model": model}, ensure_ascii=False, separators=(",", ":")).encode()


class OpenAICodec:
    """Identity: OpenAI-compatible servers speak the client's dialect.

    The base of every codec: a translating codec overrides ``encode``, ``decode``,
    ``decode_error``, ``stream_decoder`` and, when its provider authenticates otherwise,
    ``auth_headers``.
    """

    #: the API dialect the backend speaks ("openai", "anthropic", "google")
    dialect = "openai"
    #: the client dialects the backend serves natively, as bytes (besides canonical
    #: OpenAI): a class default, widened per backend when its prober finds more
    #: (llama.cpp's ``/v1/responses``)
    native_dialects: frozenset[str] = frozenset()

    def __init__(self, max_event_bytes: int | None = None) -> None:
        #: ``server.max_event_bytes``, for every stream decoder this codec makes
        self.max_event_bytes = max_event_bytes
        self.native_dialects = type(self).native_dialects

    def dialects_served(self) -> list[str]:
        """The client dialects relayed to this backend as bytes (``nexusctl backends``)."""
        own = ["openai"] if self.dialect == "openai" else []
        return own + sorted(self.native_dialects.difference(own))

    def speaks(self, call: Call) -> bool:
        """The client's own dialect goes to this backend as it is (no translation)."""
        return call.dialect != "openai" and call.dialect in self.native_dialects

    def encode_native(self, call: Call, model: str) -> WireRequest:
        native = call.native_body or {}
        if call.dialect == "responses" and "store" not in native:
            # Nexus is stateless: a provider must not keep the response by its default either
            body = json.dumps(
                {**native, "model": model, "store": False},
                ensure_ascii=False,
                separators=(",", ":"),
            ).encode()
        elif native.get("model") == model:
            body = call.native_raw
        else:
            body = with_model(native, model)
        return WireRequest(NATIVE_PATHS[call.dialect], body, call.native_headers)

    def native_decoder(self, call: Call) -> StreamDecoder:
        return NativeStream(call.dialect, self.max_event_bytes)

    @staticmethod
    def auth_headers(api_key: str) -> dict[str, str]:
        """How the configured key goes out (never the client's: see the transport)."""
        return {"Authorization": f"Bearer {api_key}"}

    def encode(self, call: Call, model: str) -> WireRequest:
        body = call.raw if call.body.get("model") == model else with_model(call.body, model)
        return WireRequest(OPENAI_PATHS[call.endpoint], body)

    def decode(self, call: Call, reply: UpstreamReply, model: str) -> bytes:
        """The answer's bytes, after a sanity check that it is the JSON object promised."""
        body = reply.body
        if not is_json_object(body):
            raise UpstreamProtocolError(not_json_object(body))
        return body

    #: a native answer is in the client's dialect already: only the same sanity check
    decode_native = decode

    def decode_error(self, call: Call, status: int, body: bytes, content_type: str) -> bytes:
        """A 4xx passed through to the client: already in the client's envelope."""
        return body

    def stream_decoder(self, call: Call, model: str) -> StreamDecoder:
        return SSEFramer(self.max_event_bytes)


def is_json_object(body: bytes) -> bool:
    """A structural check that ``body`` is one whole JSON object: it opens with ``{`` and
    closes with ``}`` (whitespace aside). O(1) whatever the size: it looks at 64 bytes at
    each end, where a full parse costs ~4.5 µs for a 1.4 KB answer and grows with the body
    (an embeddings answer of many vectors is megabytes). The HTTP framing (Content-Length or
    the chunked terminator) already catches a body cut by the network; this catches a backend
    that sends a cut or non-JSON body as 200, unless the cut falls just after a nested ``}``."""
    if body.startswith(b"{") and body.endswith(b"}"):
        return True  # the usual compact answer
    return body[:64].lstrip()[:1] == b"{" and body[-64:].rstrip()[-1:] == b"}"


def not_json_object(body: bytes) -> str:
    if body[:64].lstrip()[:1] != b"{":
        return f"invalid backend response: expected a JSON object, got {body[:80]!r}"
    return (
        f"invalid backend response: the JSON object is incomplete ({len(body)} bytes, "
        f"ending {body[-40:]!r})"
    )


def openai_error(message: str, *, type_: str = "invalid_request_error") -> bytes:
    return json.dumps(
        {"error": {"message": message, "type": type_, "param": None, "code": None}}
    ).encode()
