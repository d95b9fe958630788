"""What every translating codec shares: an incremental SSE event parser, the OpenAI chunk and
error shapes it emits, and the vocabulary for what cannot be translated.

Translation maps the canonical request (OpenAI chat, as the client sent it) to a provider's
dialect and the provider's answer back to OpenAI's. Streams are translated event by event by
a state machine fed from ``SSEEvents``, which is correct for any network chunking: an event
split across reads waits for its end, several events in one read all come out.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from nexusd.backends.upstream import UpstreamError
from nexusd.sse import SSEFramer

log = logging.getLogger("nexus.translate")

DONE = b"data: [DONE]\n\n"


@dataclass(slots=True)
class TokenUsage:
    """Tokens as the provider counted them, in OpenAI's terms: ``prompt`` includes ``cached``
    (prompt tokens read from the provider's cache, billed at the cached-input price)."""

    prompt: int | None = None
    completion: int | None = None
    cached: int | None = None

    def to_openai(self) -> dict[str, Any]:
        prompt, completion = self.prompt or 0, self.completion or 0
        usage: dict[str, Any] = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
        if self.cached:
            usage["prompt_tokens_details"] = {"cached_tokens": self.cached}
        return usage


class Untranslatable(UpstreamError):
    """The request asks for something this provider cannot take (e.g. ``n`` > 1 on
    Anthropic). Another backend may serve it, so the gateway tries the next one; when none
    can, the client gets a 400 naming the field and the fix. Never the backend's fault."""

    counts_against_backend = False
    status = 400

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class UpstreamStreamError(UpstreamError):
    """The provider reported an error inside a stream it had already started (Anthropic's
    ``error`` event, Google's ``error`` object). The relay turns it into the client's
    in-stream error event; ``counts_against_backend`` is the provider's verdict (overloaded
    or internal: yes; rate limited or invalid request: no)."""

    def __init__(self, message: str, *, counts_against_backend: bool = True) -> None:
        super().__init__(message)
        self.counts_against_backend = counts_against_backend


# --- reading streams ---------------------------------------------------------------------------


@dataclass(slots=True)
class SSEEvent:
    event: str  # the ``event:`` field; "message" when absent
    data: str  # the ``data:`` lines joined with "\n"


class SSEEvents:
    """Upstream bytes in any chunking → whole parsed events (bounded by ``max_event_bytes``)."""

    __slots__ = ("_framer",)

    def __init__(self, max_event_bytes: int | None = None) -> None:
        self._framer = SSEFramer(max_event_bytes)

    def feed(self, data: bytes) -> list[SSEEvent]:
        return parse_events(self._framer.feed(data))

    def flush(self) -> list[SSEEvent]:
        return parse_events(self._framer.flush())


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def parse_events(block: bytes) -> list[SSEEvent]:
    """Whole SSE events (LF line endings, as ``SSEFramer`` gives them) → parsed events.
    Comments and events without data are skipped, as the SSE spec says."""
    if not block:
        return []
    events = []
    for raw in block.split(b"\n\n"):
        if not raw:
            continue
        # the shapes providers send, without a line loop: "event: X\ndata: …" and "data: …"
        if raw[:7] == b"event: ":
            nl = raw.find(b"\n")
            if nl > 0 and raw[nl + 1 : nl + 7] == b"data: " and raw.find(b"\n", nl + 1) < 0:
                events.append(SSEEvent(raw[7:nl].decode("utf-8", "replace"), _text(raw[nl + 7 :])))
                continue
        elif raw[:6] == b"data: " and b"\n" not in raw:
            events.append(SSEEvent("message", _text(raw[6:])))
            continue
        name, data = "message", []
        for line in raw.decode("utf-8", "replace").split("\n"):
            if not line or line[0] == ":":
                continue
            field, _, value = line.partition(":")
            if value[:1] == " ":
                value = value[1:]
            if field == "data":
                data.append(value)
            elif field == "event":
                name = value
        if data:
            events.append(SSEEvent(name, "\n".join(data)))
    return events


_DECODER = json.JSONDecoder()


def json_object(text: str | bytes) -> dict[str, Any] | None:
    """A JSON object, or None for anything else (invalid JSON, a list, a number).

    One shared decoder, straight to ``raw_decode`` (``json.loads`` adds a type dispatch and a
    second whitespace scan): this runs once per stream event."""
    if isinstance(text, bytes | bytearray):
        text = text.decode("utf-8", "replace")
    start = 0 if text[:1] == "{" else len(text) - len(text.lstrip())
    try:
        value, end = _DECODER.raw_decode(text, start)
    except (ValueError, RecursionError):  # a hostile depth is "not an object" too
        return None
    if end != len(text) and text[end:].strip():
        return None
    return value if isinstance(value, dict) else None


# --- writing OpenAI ----------------------------------------------------------------------------

#: one encoder for every translated body and event (``json.dumps`` with options builds a new
#: ``JSONEncoder`` per call)
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def dumps(value: Any) -> bytes:
    return _ENCODER.encode(value).encode()


def sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + dumps(payload) + b"\n\n"


_CHUNK_TAIL = b',"logprobs":null,"finish_reason":null}]}\n\n'


class ChunkWriter:
    """OpenAI ``chat.completion.chunk`` events for one answer (one id, model and time).

    All but the delta is the same in every chunk of an answer, so it is rendered once: a
    chunk is that head, the delta's JSON and a constant tail — the bytes ``dumps`` of the
    whole chunk would give."""

    __slots__ = ("_head", "created", "id", "model")

    def __init__(self, id_: str, model: str, created: int) -> None:
        self.id, self.model, self.created = id_, model, created
        self._head = b"".join(
            (
                b'data: {"id":',
                dumps(id_),
                b',"object":"chat.completion.chunk","created":',
                str(created).encode(),
                b',"model":',
                dumps(model),
                b',"choices":[{"index":',
            )
        )

    def chunk(
        self, delta: dict[str, Any], finish_reason: str | None = None, index: int = 0
    ) -> bytes:
        tail = _CHUNK_TAIL if finish_reason is None else _finish_tail(finish_reason)
        number = b"0" if index == 0 else str(index).encode()
        return b"".join((self._head, number, b',"delta":', dumps(delta), tail))

    def content(self, literal: str) -> bytes:
        """A content delta from a JSON string literal as the provider sent it (quotes and
        escapes included): no parse, no re-encode. The hot path of a translated stream."""
        return b"".join((self._head, b'0,"delta":{"content":', literal.encode(), b"}", _CHUNK_TAIL))

    def usage_chunk(self, usage: TokenUsage) -> bytes:
        """The final usage-only chunk of ``stream_options.include_usage`` (empty choices)."""
        return sse(
            {
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "choices": [],
                "usage": usage.to_openai(),
            }
        )


def _finish_tail(finish_reason: str) -> bytes:
    return b',"logprobs":null,"finish_reason":' + dumps(finish_reason) + b"}]}\n\n"


def completion(
    id_: str,
    model: str,
    created: int,
    message: dict[str, Any],
    finish_reason: str,
    usage: TokenUsage | None,
) -> bytes:
    """A whole OpenAI ``chat.completion`` object with one choice."""
    return completion_of(id_, model, created, [(0, message, finish_reason)], usage)


def completion_of(
    id_: str,
    model: str,
    created: int,
    choices: list[tuple[int, dict[str, Any], str]],
    usage: TokenUsage | None,
) -> bytes:
    """A whole ``chat.completion`` with its choices as ``(index, message, finish_reason)``."""
    body: dict[str, Any] = {
        "id": id_,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {"index": index, "message": message, "logprobs": None, "finish_reason": finish}
            for index, message, finish in choices
        ],
    }
    if usage is not None:
        body["usage"] = usage.to_openai()
    return dumps(body)


def assistant_message(text: str | None, tool_calls: list[dict[str, Any]]) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return message


def tool_call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


#: OpenAI's ``error.type`` for a provider's HTTP status
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
}


def openai_error(status: int, message: str, code: str | None = None) -> bytes:
    """The OpenAI error envelope for a provider's error (its status decides ``type``)."""
    type_ = _ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return dumps({"error": {"message": message, "type": type_, "param": None, "code": code}})


# --- reading the canonical request -------------------------------------------------------------


def drop_unknown(body: dict[str, Any], known: Iterable[str], provider: str) -> None:
    """Fields the provider cannot take are dropped, never sent; a DEBUG line names them."""
    dropped = sorted(k for k in body if k not in known)
    if dropped:
        log.debug("%s: dropped request fields it cannot take: %s", provider, ", ".join(dropped))


def text_of(content: Any) -> str:
    """The text of a message's content: a string, or the text parts of a list joined."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            p.get("text", "")
            for p in content
            if isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
        )
    return ""


_DATA_URL = re.compile(r"data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(;[^;,]*)*?);base64,", re.I)


def parse_data_url(url: str) -> tuple[str, str] | None:
    """``data:image/png;base64,AAAA`` → (``image/png``, ``AAAA``); None if not a base64 data URL.
    The payload is checked to be base64, so a broken image fails here with a 400, not later
    at the provider."""
    match = _DATA_URL.match(url)
    if match is None:
        return None
    payload = url[match.end() :]
    head = payload[:64]
    try:
        base64.b64decode(head[: len(head) - len(head) % 4], validate=True)
    except (binascii.Error, ValueError):
        return None
    if not payload:
        return None
    return (match.group("mime") or "application/octet-stream").lower(), payload


def image_url_of(part: dict[str, Any]) -> str | None:
    """The URL of an OpenAI ``image_url`` content part (either spelling)."""
    value = part.get("image_url")
    if isinstance(value, dict):
        value = value.get("url")
    return value if isinstance(value, str) else None


def arguments_object(arguments: Any, where: str) -> dict[str, Any]:
    """An assistant tool call's ``arguments`` (a JSON string) as the object providers want."""
    if isinstance(arguments, dict):
        return arguments
    if arguments in (None, ""):
        return {}
    parsed = json_object(arguments) if isinstance(arguments, str) else None
    if parsed is None:
        raise Untranslatable(
            f"{where}: the tool call's arguments are not a JSON object ({str(arguments)[:80]!r}); "
            "this backend needs them as one",
            param="messages",
        )
    return parsed


def int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
