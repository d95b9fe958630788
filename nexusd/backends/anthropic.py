"""Anthropic's Messages API (``POST /v1/messages``) behind the OpenAI chat API, both ways,
streamed and not. Replaces the reference's translation (spec v0.3 §3.3), which lost images,
tools and ``stop`` and assumed one event per network read (§8 W6, W7): what cannot be
translated is refused with ``Untranslatable`` (a 400 naming the field, or the next backend),
never silently degraded.

Request decisions, where the two APIs differ:

- ``system`` and ``developer`` messages, wherever they are, become the top-level ``system``
  (joined with a blank line); when a part carries ``cache_control`` it stays a list of text
  blocks so the breakpoint survives.
- Anthropic wants user and assistant turns to alternate: same-role runs are merged into one
  turn, blocks in order. ``tool`` messages are user turns of ``tool_result`` blocks, put first
  in their turn (Anthropic's rule) with any user text after them.
- Anthropic wants the conversation to open with a user turn: one that opens with an assistant
  message (a chat UI's greeting) or has none at all (a system prompt only) gets a user turn
  reading ``CONVERSATION_START`` put first — answering beats refusing a common shape.
- Empty text is left out (Anthropic refuses empty text blocks); a final assistant turn (a
  prefill for the answer to continue) loses its trailing whitespace, which Anthropic refuses.
- ``max_tokens`` is required by Anthropic: ``DEFAULT_MAX_TOKENS`` when the client sets none.
- ``temperature`` above 1 is clamped to 1: OpenAI's range is 0–2, Anthropic's 0–1. With
  ``temperature`` set, ``top_p`` is dropped: Claude models since Opus 4.1 refuse the two
  together (400 "cannot both be specified"), and clients often send both as defaults.
- JSON output has no Anthropic parameter: ``response_format`` ``json_schema`` / ``json_object``
  become a tool (named after the schema, else ``JSON_TOOL``) that the model is made to call;
  the call's input comes back as the message's text content (streamed: its
  ``input_json_delta`` pieces as content deltas) with ``finish_reason`` ``"stop"``. With tools
  of the client's own and no forced choice, the model must call one of the tools — the JSON
  one means "this is the answer".
- ``reasoning_effort`` is dropped: extended thinking needs a token budget and excludes forced
  tool use and ``temperature``, so turning it on would break other fields; thinking blocks
  in answers are skipped. ``n`` > 1 and log probabilities are refused; other fields Anthropic
  has no use for (penalties, ``seed``, ``logit_bias``…) are dropped with a DEBUG line.

Answers: the ``msg_…`` id is kept as the completion's id; ``tool_use`` blocks become
``tool_calls`` with their ids (streamed: numbered from 0 in order); ``prompt_tokens`` counts
cache reads and writes too (Anthropic counts them apart), ``cached_tokens`` the reads;
``max_tokens`` and ``model_context_window_exceeded`` finish as ``length``, ``refusal`` as
``content_filter``, anything else as ``stop``.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from json.decoder import scanstring
from typing import Any

from nexusd.backends.codec import Call, OpenAICodec, WireRequest
from nexusd.backends.translate import (
    DONE,
    ChunkWriter,
    SSEEvent,
    TokenUsage,
    Untranslatable,
    UpstreamStreamError,
    arguments_object,
    assistant_message,
    completion,
    drop_unknown,
    dumps,
    image_url_of,
    int_or_none,
    json_object,
    openai_error,
    parse_data_url,
    parse_events,
    text_of,
    tool_call,
)
from nexusd.backends.upstream import UpstreamError, UpstreamProtocolError, UpstreamReply
from nexusd.sse import SSEFramer
from nexusd.types import Endpoint

log = logging.getLogger("nexus.translate")

ANTHROPIC_VERSION = "2023-06-01"
#: Anthropic requires ``max_tokens``; this is sent when the client gives none (every current
#: Claude model can produce at least this many)
DEFAULT_MAX_TOKENS = 4096
#: the user turn put first when a conversation opens with the assistant (or has no turns)
CONVERSATION_START = "(conversation start)"
#: the forced tool emulating JSON output when the schema has no usable name
JSON_TOOL = "json_output"
_JSON_TOOL_DESCRIPTION = (
    "Give your whole answer as this tool's input: it is the response, in the JSON format "
    "the user asked for."
)

#: request fields translated (or, for ``stream_options``, honoured by the stream decoder)
_KNOWN = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "max_completion_tokens",
        "stop",
        "temperature",
        "top_p",
        "top_k",
        "user",
        "stream",
        "stream_options",
        "response_format",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "n",
        "logprobs",
        "top_logprobs",
    }
)
_IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
_TOOL_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
_FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
#: Anthropic error types that are the provider's fault (count against the backend)
_BACKEND_FAULTS = frozenset({"overloaded_error", "api_error"})
#: ``_StreamDecoder._blocks`` value for the JSON-emulation tool's block
_JSON_BLOCK = -1


class AnthropicCodec(OpenAICodec):
    """OpenAI chat completions ⇄ Anthropic Messages (see the module's docstring)."""

    dialect = "anthropic"
    native_dialects = frozenset({"anthropic"})

    @staticmethod
    def auth_headers(api_key: str) -> dict[str, str]:
        return {"x-api-key": api_key, "anthropic-version": ANTHROPIC_VERSION}

    def encode(self, call: Call, model: str) -> WireRequest:
        if call.endpoint is not Endpoint.CHAT:
            raise Untranslatable(
                f"/v1/{call.endpoint.value} cannot be translated: Anthropic backends serve chat "
                "completions only (/v1/chat/completions)"
            )
        return WireRequest("/v1/messages", dumps(messages_request(call.body, model, call.stream)))

    def decode(self, call: Call, reply: UpstreamReply, model: str) -> bytes:
        message = json_object(reply.body)
        if message is None:
            raise UpstreamProtocolError(
                "invalid Anthropic response: expected a Message JSON object, got "
                f"{reply.body[:80]!r}"
            )
        blocks = message.get("content")
        if not isinstance(blocks, list):
            raise UpstreamProtocolError(
                f"invalid Anthropic response: no 'content' list in {reply.body[:80]!r}"
            )
        json_name = _json_tool_name(call.body)
        texts: list[str] = []
        calls: list[dict[str, Any]] = []
        for block in blocks:
            if not isinstance(block, dict):
                continue
            kind = block.get("type")
            if kind == "text":
                text = block.get("text")
                if isinstance(text, str):
                    texts.append(text)
            elif kind == "tool_use":
                arguments = dumps(block.get("input", {})).decode()
                if block.get("name") == json_name:
                    texts.append(arguments)
                else:
                    call_id = _str(block.get("id")) or f"call_{uuid.uuid4().hex[:24]}"
                    calls.append(tool_call(call_id, str(block.get("name")), arguments))
            # thinking, redacted_thinking, server tools' blocks: nothing for OpenAI's client
        text = "".join(texts)
        usage = message.get("usage")
        return completion(
            _str(message.get("id")) or f"chatcmpl-{uuid.uuid4().hex}",
            _str(message.get("model")) or model,
            int(time.time()),
            assistant_message(text if text or not calls else None, calls),
            finish_reason(message.get("stop_reason"), bool(calls)),
            token_usage(usage) if isinstance(usage, dict) else None,
        )

    def decode_error(self, call: Call, status: int, body: bytes, content_type: str) -> bytes:
        """Anthropic's ``{"type":"error","error":{"type","message"}}`` → OpenAI's envelope,
        Anthropic's error type as ``code``."""
        payload = json_object(body)
        error = payload.get("error") if payload is not None else None
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return openai_error(status, error["message"], _str(error.get("type")))
        snippet = body[:300].decode("utf-8", "replace").strip()
        message = f"Anthropic answered HTTP {status}" + (
            f": {snippet}" if snippet else " with an empty body"
        )
        return openai_error(status, message)

    def stream_decoder(self, call: Call, model: str) -> AnthropicStreamDecoder:
        return AnthropicStreamDecoder(call, model, self.max_event_bytes)


# --- the request -------------------------------------------------------------------------------


def messages_request(body: dict[str, Any], model: str, stream: bool) -> dict[str, Any]:
    """The OpenAI chat request ``body`` (left unchanged) as an Anthropic Messages request."""
    _refuse_unsupported(body)
    drop_unknown(body, _KNOWN, "anthropic")
    system, turns = _conversation(body.get("messages"))
    wire: dict[str, Any] = {"model": model, "max_tokens": _max_tokens(body)}
    if system:
        wire["system"] = system
    wire["messages"] = turns
    stop = _stop_sequences(body.get("stop"))
    if stop:
        wire["stop_sequences"] = stop
    temperature = _number(body, "temperature")
    if temperature is not None:
        wire["temperature"] = min(temperature, 1)
    top_p = _number(body, "top_p")
    if top_p is not None:
        if temperature is None:
            wire["top_p"] = top_p
        else:
            log.debug("anthropic: top_p dropped: recent Claude models refuse it with temperature")
    top_k = int_or_none(body.get("top_k"))
    if top_k is not None:
        wire["top_k"] = top_k
    user = body.get("user")
    if isinstance(user, str) and user:
        wire["metadata"] = {"user_id": user}
    _add_tools(body, wire)
    if stream:
        wire["stream"] = True
    return wire


def _refuse_unsupported(body: dict[str, Any]) -> None:
    n = body.get("n")
    if n is not None and n != 1:
        raise Untranslatable(
            f"n={n!r}: Anthropic returns one choice per request; send n=1 (or omit it) and "
            "repeat the request for more",
            param="n",
        )
    if body.get("logprobs") or body.get("top_logprobs"):
        param = "logprobs" if body.get("logprobs") else "top_logprobs"
        raise Untranslatable(f"{param}: Anthropic does not return log probabilities", param=param)
    if "functions" in body or "function_call" in body:
        raise Untranslatable(
            "the legacy 'functions' / 'function_call' fields are not translated; send 'tools' "
            "and 'tool_choice'",
            param="functions" if "functions" in body else "function_call",
        )


def _max_tokens(body: dict[str, Any]) -> int:
    for key in ("max_completion_tokens", "max_tokens"):
        value = body.get(key)
        if value is None:
            continue
        if int_or_none(value) is None or value < 1:
            raise Untranslatable(f"{key} must be a positive integer, got {value!r}", param=key)
        return value
    return DEFAULT_MAX_TOKENS


def _number(body: dict[str, Any], key: str) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Untranslatable(f"{key} must be a number, got {value!r}", param=key)
    return value


def _stop_sequences(stop: Any) -> list[str]:
    if stop is None:
        return []
    if isinstance(stop, str):
        return [stop] if stop else []
    if isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        return [s for s in stop if s]
    raise Untranslatable(f"stop must be a string or a list of strings, got {stop!r}", param="stop")


def _conversation(messages: Any) -> tuple[str | list[dict[str, Any]] | None, list[dict[str, Any]]]:
    """OpenAI's messages → Anthropic's ``system`` and alternating turns."""
    if not isinstance(messages, list) or not messages:
        raise Untranslatable("messages must be a non-empty list", param="messages")
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise Untranslatable(f"{where} is not an object", param="messages")
        role = message.get("role")
        content = message.get("content")
        if role in ("system", "developer"):
            system.extend(_system_blocks(content))
            continue
        if role == "user":
            blocks = _content_blocks(content, where)
        elif role == "assistant":
            blocks = _content_blocks(content, where) + _tool_uses(message, where)
        elif role == "tool":
            role, blocks = "user", [_tool_result(message, where)]
        else:
            raise Untranslatable(f"{where}: role {role!r} has no Anthropic equivalent", "messages")
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    for turn in turns:
        content = turn["content"]
        if turn["role"] == "user" and len(content) > 1:
            content.sort(key=lambda b: b["type"] != "tool_result")  # stable: results first
    if not turns or turns[0]["role"] != "user":
        turns.insert(0, {"role": "user", "content": [_text(CONVERSATION_START)]})
    last = turns[-1]
    if last["role"] == "assistant":
        _trim_prefill(last, turns)
    return _system(system), turns


def _system_blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, list) and any(
        isinstance(p, dict) and "cache_control" in p for p in content
    ):
        blocks = []
        for part in content:
            if isinstance(part, dict) and part.get("type") == "text" and part.get("text"):
                blocks.append(_with_cache_control(_text(str(part["text"])), part))
        return blocks
    text = text_of(content)
    return [_text(text)] if text else []


def _system(blocks: list[dict[str, Any]]) -> str | list[dict[str, Any]] | None:
    if not blocks:
        return None
    if any("cache_control" in b for b in blocks):
        return blocks
    return "\n\n".join(b["text"] for b in blocks)


def _content_blocks(content: Any, where: str) -> list[dict[str, Any]]:
    """A user or assistant message's content (string or parts) → Anthropic content blocks."""
    if isinstance(content, str):
        return [_text(content)] if content else []
    if content is None:
        return []
    if not isinstance(content, list):
        raise Untranslatable(f"{where}: content must be a string or a list", param="messages")
    blocks = []
    for part in content:
        if not isinstance(part, dict):
            raise Untranslatable(f"{where}: a content part is not an object", param="messages")
        kind = part.get("type")
        if kind in ("text", "refusal"):
            text = part.get(kind)
            if not isinstance(text, str):
                raise Untranslatable(f"{where}: a {kind} part without its text", "messages")
            if not text:
                continue
            block = _text(text)
        elif kind == "image_url":
            block = _image(part, where)
        elif kind == "file":
            block = _document(part, where)
        else:
            raise Untranslatable(
                f"{where}: {kind!r} content parts cannot be sent to Anthropic (text, image_url "
                "and PDF files can)",
                param="messages",
            )
        blocks.append(_with_cache_control(block, part))
    return blocks


def _image(part: dict[str, Any], where: str) -> dict[str, Any]:
    url = image_url_of(part)
    if url is None:
        raise Untranslatable(f"{where}: an image_url part without its url", param="messages")
    if url.startswith(("http://", "https://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    data = parse_data_url(url)
    if data is None:
        raise Untranslatable(
            f"{where}: the image is neither an http(s) URL nor a base64 data URL", "messages"
        )
    media_type, payload = data
    if media_type not in _IMAGE_TYPES:
        raise Untranslatable(
            f"{where}: Anthropic takes JPEG, PNG, GIF and WebP images, not {media_type}",
            param="messages",
        )
    return {
        "type": "image",
        "source": {"type": "base64", "media_type": media_type, "data": payload},
    }


def _document(part: dict[str, Any], where: str) -> dict[str, Any]:
    file = part.get("file")
    url = file.get("file_data") if isinstance(file, dict) else None
    data = parse_data_url(url) if isinstance(url, str) else None
    if data is None or data[0] != "application/pdf":
        raise Untranslatable(
            f"{where}: only PDF files sent inline (file_data as a base64 data URL) can go to "
            "Anthropic; file ids cannot",
            param="messages",
        )
    source = {"type": "base64", "media_type": data[0], "data": data[1]}
    return {"type": "document", "source": source}


def _tool_uses(message: dict[str, Any], where: str) -> list[dict[str, Any]]:
    calls = message.get("tool_calls")
    if not calls:
        return []
    if not isinstance(calls, list):
        raise Untranslatable(f"{where}: tool_calls must be a list", param="messages")
    blocks = []
    for call in calls:
        function = call.get("function") if isinstance(call, dict) else None
        if (
            not isinstance(function, dict)
            or not isinstance(call.get("id"), str)
            or not isinstance(function.get("name"), str)
        ):
            raise Untranslatable(
                f"{where}: a tool call needs an id and a function name", param="messages"
            )
        blocks.append(
            {
                "type": "tool_use",
                "id": call["id"],
                "name": function["name"],
                "input": arguments_object(function.get("arguments"), where),
            }
        )
    return blocks


def _tool_result(message: dict[str, Any], where: str) -> dict[str, Any]:
    call_id = message.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise Untranslatable(f"{where}: a tool message needs its tool_call_id", param="messages")
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": call_id}
    content = message.get("content")
    if isinstance(content, list) and any(
        isinstance(p, dict) and p.get("type") != "text" for p in content
    ):
        parts = _content_blocks(content, where)  # images among the result: keep the blocks
        if parts:
            block["content"] = parts
    else:
        text = text_of(content)
        if text:
            block["content"] = text
    return block


def _trim_prefill(last: dict[str, Any], turns: list[dict[str, Any]]) -> None:
    """Anthropic refuses a final assistant turn whose text ends with whitespace."""
    content = last["content"]
    block = content[-1]
    if block["type"] != "text":
        return
    block["text"] = block["text"].rstrip()
    if not block["text"]:
        content.pop()
        if not content:
            turns.pop()


def _text(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def _with_cache_control(block: dict[str, Any], part: dict[str, Any]) -> dict[str, Any]:
    """A part's ``cache_control`` (sent by clients that know Anthropic's caching) is kept."""
    cache_control = part.get("cache_control")
    if isinstance(cache_control, dict):
        block["cache_control"] = cache_control
    return block


# --- tools and JSON output ---------------------------------------------------------------------


def _add_tools(body: dict[str, Any], wire: dict[str, Any]) -> None:
    tools = _tools(body.get("tools"))
    choice = _tool_choice(body.get("tool_choice"))
    json_tool = _json_tool(body, {t["name"] for t in tools})
    if json_tool is not None:
        if choice is None or choice["type"] in ("auto", "none"):
            choice = (
                {"type": "any"}
                if tools and (choice is None or choice["type"] == "auto")
                else {"type": "tool", "name": json_tool["name"]}
            )
        tools.append(json_tool)
    if not tools:
        return  # no tool_choice without tools (OpenAI refuses it too)
    if body.get("parallel_tool_calls") is False:
        if choice is None:
            choice = {"type": "auto"}
        if choice["type"] != "none":
            choice["disable_parallel_tool_use"] = True
    wire["tools"] = tools
    if choice is not None:
        wire["tool_choice"] = choice


def _tools(tools: Any) -> list[dict[str, Any]]:
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise Untranslatable("tools must be a list", param="tools")
    out = []
    for i, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or tool.get("type", "function") != "function":
            raise Untranslatable(
                f"tools[{i}]: only function tools can be sent to Anthropic", param="tools"
            )
        name = function.get("name")
        if not isinstance(name, str) or not name:
            raise Untranslatable(f"tools[{i}]: a function tool needs its name", param="tools")
        spec: dict[str, Any] = {"name": name}
        description = function.get("description")
        if isinstance(description, str) and description:
            spec["description"] = description
        spec["input_schema"] = _object_schema(function.get("parameters"))
        out.append(spec)
    return out


def _object_schema(schema: Any) -> dict[str, Any]:
    """Anthropic's ``input_schema`` must be a JSON schema of ``"type": "object"``."""
    if not isinstance(schema, dict) or not schema:
        return {"type": "object", "properties": {}}
    return schema if "type" in schema else {"type": "object", **schema}


def _tool_choice(choice: Any) -> dict[str, Any] | None:
    if choice is None:
        return None
    if choice == "auto":
        return {"type": "auto"}
    if choice == "required":
        return {"type": "any"}
    if choice == "none":
        return {"type": "none"}
    function = choice.get("function") if isinstance(choice, dict) else None
    if (
        isinstance(function, dict)
        and choice.get("type") == "function"
        and isinstance(function.get("name"), str)
    ):
        return {"type": "tool", "name": function["name"]}
    raise Untranslatable(
        f"tool_choice {choice!r} cannot be translated (auto, required, none or one function can)",
        param="tool_choice",
    )


def _json_tool(body: dict[str, Any], taken: set[str]) -> dict[str, Any] | None:
    """The tool emulating ``response_format`` (None when plain text is asked for)."""
    fmt = body.get("response_format")
    if fmt is None:
        return None
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "text":
        return None
    name, description, schema = JSON_TOOL, _JSON_TOOL_DESCRIPTION, {"type": "object"}
    if kind == "json_schema":
        spec = fmt.get("json_schema")
        if not isinstance(spec, dict):
            raise Untranslatable("response_format: json_schema needs its object", "response_format")
        given = spec.get("schema")
        if given is not None:
            if not isinstance(given, dict) or given.get("type", "object") != "object":
                raise Untranslatable(
                    "response_format: the JSON schema's root must be an object",
                    param="response_format",
                )
            schema = _object_schema(given)
        if isinstance(spec.get("name"), str) and _TOOL_NAME.fullmatch(spec["name"]):
            name = spec["name"]
        if isinstance(spec.get("description"), str) and spec["description"]:
            description = f"{spec['description']}\n\n{description}"
    elif kind != "json_object":
        raise Untranslatable(
            f"response_format {fmt!r} cannot be translated (text, json_object and json_schema can)",
            param="response_format",
        )
    base, n = name, 2
    while name in taken:  # never shadow a tool of the client's
        name, n = f"{base[:58]}_{n}", n + 1
    return {"name": name, "description": description, "input_schema": schema}


def _json_tool_name(body: dict[str, Any]) -> str | None:
    """The JSON-emulation tool's name for this request, as ``encode`` chose it."""
    if body.get("response_format") is None:
        return None
    try:
        tool = _json_tool(body, {t["name"] for t in _tools(body.get("tools"))})
    except Untranslatable:
        return None
    return tool["name"] if tool is not None else None


# --- the answer --------------------------------------------------------------------------------


def finish_reason(stop_reason: Any, tool_calls: bool) -> str:
    """Anthropic's ``stop_reason`` → OpenAI's ``finish_reason``. A ``tool_use`` stop without a
    client tool call is the JSON-emulation tool's answer: ``stop``."""
    if stop_reason == "tool_use" and not tool_calls:
        return "stop"
    return _FINISH_REASONS.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"


def token_usage(usage: dict[str, Any]) -> TokenUsage:
    """Anthropic counts cache reads and writes apart from ``input_tokens``; OpenAI's
    ``prompt_tokens`` includes them."""
    read = int_or_none(usage.get("cache_read_input_tokens")) or 0
    written = int_or_none(usage.get("cache_creation_input_tokens")) or 0
    prompt = (int_or_none(usage.get("input_tokens")) or 0) + read + written
    return TokenUsage(prompt, int_or_none(usage.get("output_tokens")) or 0, read)


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


_TEXT_DELTA_HEAD = '{"type":"content_block_delta","index":'
_TEXT_EVENT = b"event: content_block_delta\ndata: " + _TEXT_DELTA_HEAD.encode()
_TEXT_DATA_AT = len(b"event: content_block_delta\ndata: ")
_TEXT_DELTA_MARK = ',"delta":{"type":"text_delta","text":"'


def _text_literal(data: str) -> str | None:
    """The JSON string literal of a text delta in Anthropic's exact compact shape
    (``{"type":"content_block_delta","index":N,"delta":{"type":"text_delta","text":"…"}}``),
    validated by the JSON scanner; None for any other shape, which takes the general path.
    A text delta is nearly every event of a stream: this skips building and re-encoding a
    dict per event."""
    mark = data.find(_TEXT_DELTA_MARK, len(_TEXT_DELTA_HEAD))
    if mark < 0 or not data[len(_TEXT_DELTA_HEAD) : mark].isdigit():
        return None
    start = mark + len(_TEXT_DELTA_MARK)
    try:
        _, end = scanstring(data, start)
    except ValueError:
        return None
    return data[start - 1 : end] if data[end:] == "}}" else None


class AnthropicStreamDecoder:
    """Anthropic's stream events → OpenAI ``chat.completion.chunk`` events, for any network
    chunking (``SSEFramer`` hands over whole events only).

    An error event read in the same feed as events before it is raised at the next ``feed``
    or ``flush``, so the client gets what came before the error, then the error.
    """

    __slots__ = (
        "_blocks",
        "_done",
        "_error",
        "_framer",
        "_include_usage",
        "_json_name",
        "_model",
        "_raw_usage",
        "_stop_reason",
        "_tools",
        "_writer",
        "usage",
    )

    def __init__(self, call: Call, model: str, max_event_bytes: int | None = None) -> None:
        self._framer = SSEFramer(max_event_bytes)
        self._model = model
        self._json_name = _json_tool_name(call.body)
        options = call.body.get("stream_options")
        self._include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
        self._writer: ChunkWriter | None = None
        #: content block index → OpenAI tool call index (``_JSON_BLOCK``: the JSON tool)
        self._blocks: dict[int, int] = {}
        self._tools = 0  # the client's tool calls so far
        self._stop_reason: Any = None
        self._raw_usage: dict[str, Any] = {}
        self._done = False
        self._error: UpstreamError | None = None
        self.usage: TokenUsage | None = None

    def feed(self, data: bytes) -> bytes:
        if self._error is not None:
            raise self._error
        block = self._framer.feed(data)
        if not block or self._done:  # nothing may follow message_stop's [DONE]
            return b""
        writer = self._writer
        if (
            writer is not None
            and block.startswith(_TEXT_EVENT)
            and block.find(b"\n\n") == len(block) - 2
        ):
            # one text delta, the read of nearly every event: no event objects, no dicts
            literal = _text_literal(block[_TEXT_DATA_AT:-2].decode("utf-8", "replace"))
            if literal is not None:
                return writer.content(literal) if literal != '""' else b""
        return self._translate(block)

    def flush(self) -> bytes:
        out = self._translate(self._framer.flush())
        if self._error is not None:
            raise self._error
        if not self._done:
            raise UpstreamStreamError(
                "the stream ended before message_stop: Anthropic's answer is incomplete"
            )
        return out

    def _translate(self, block: bytes) -> bytes:
        """Whole events, in order; text deltas by the fast path (several events per read
        is exactly what happens when the machine is busy)."""
        out: list[bytes] = []
        for raw in block.split(b"\n\n"):
            if self._done:
                break
            if not raw:
                continue
            writer = self._writer
            if writer is not None and raw.startswith(_TEXT_EVENT):
                literal = _text_literal(raw[_TEXT_DATA_AT:].decode("utf-8", "replace"))
                if literal is not None:
                    if literal != '""':
                        out.append(writer.content(literal))
                    continue
            for event in parse_events(raw):
                try:
                    piece = self._event(event)
                except UpstreamError as exc:
                    if not out:
                        raise
                    self._error = exc  # what came before it goes out first
                    return b"".join(out)
                if piece:
                    out.append(piece)
        return b"".join(out)

    def _event(self, event: SSEEvent) -> bytes:
        data = event.data
        if data.startswith(_TEXT_DELTA_HEAD) and self._writer is not None:
            literal = _text_literal(data)
            if literal is not None:  # a text delta: its string goes out as sent
                return self._writer.content(literal) if literal != '""' else b""
        payload = json_object(data)
        if payload is None:
            raise UpstreamProtocolError(
                f"Anthropic stream: an event that is not a JSON object: {event.data[:80]!r}"
            )
        kind = payload.get("type", event.event)
        if kind == "content_block_delta":
            delta = payload.get("delta")
            if not isinstance(delta, dict):
                return b""
            delta_type = delta.get("type")
            if delta_type == "text_delta":
                text = delta.get("text")
                return self._chunk({"content": text}) if text else b""
            if delta_type == "input_json_delta":
                partial = delta.get("partial_json")
                slot = self._blocks.get(int_or_none(payload.get("index")))
                if not partial or slot is None:
                    return b""
                if slot == _JSON_BLOCK:
                    return self._chunk({"content": partial})
                return self._chunk(
                    {"tool_calls": [{"index": slot, "function": {"arguments": partial}}]}
                )
            return b""  # thinking, signature, citations
        if kind == "content_block_start":
            return self._block_start(payload)
        if kind == "message_start":
            return self._message_start(payload)
        if kind == "message_delta":
            delta = payload.get("delta")
            if isinstance(delta, dict) and delta.get("stop_reason"):
                self._stop_reason = delta["stop_reason"]
            usage = payload.get("usage")
            if isinstance(usage, dict):
                self._raw_usage.update((k, v) for k, v in usage.items() if v is not None)
                self.usage = token_usage(self._raw_usage)
            return b""
        if kind == "message_stop":
            return self._message_stop()
        if kind == "error":
            error = payload.get("error")
            error = error if isinstance(error, dict) else {}
            type_ = _str(error.get("type")) or "error"
            raise UpstreamStreamError(
                f"Anthropic error ({type_}): {error.get('message') or 'no message'}",
                counts_against_backend=type_ in _BACKEND_FAULTS,
            )
        return b""  # ping, content_block_stop, event types added later

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        if self._writer is None:
            raise UpstreamProtocolError("Anthropic stream: content before message_start")
        return self._writer.chunk(delta, finish)

    def _message_start(self, payload: dict[str, Any]) -> bytes:
        message = payload.get("message")
        message = message if isinstance(message, dict) else {}
        self._writer = ChunkWriter(
            _str(message.get("id")) or f"chatcmpl-{uuid.uuid4().hex}",
            _str(message.get("model")) or self._model,
            int(time.time()),
        )
        usage = message.get("usage")
        if isinstance(usage, dict):
            self._raw_usage = dict(usage)
            self.usage = token_usage(usage)
        return self._writer.chunk({"role": "assistant", "content": ""})

    def _block_start(self, payload: dict[str, Any]) -> bytes:
        block = payload.get("content_block")
        if not isinstance(block, dict):
            return b""
        kind = block.get("type")
        if kind == "text":
            text = block.get("text")
            return self._chunk({"content": text}) if text else b""
        if kind != "tool_use":
            return b""  # thinking, server tools
        index = int_or_none(payload.get("index"))  # a hostile index must not be a key
        if block.get("name") == self._json_name:
            self._blocks[index] = _JSON_BLOCK
            return b""
        slot = self._tools
        self._tools += 1
        self._blocks[index] = slot
        function = {"name": block.get("name"), "arguments": ""}
        call = {"index": slot, "id": block.get("id"), "type": "function", "function": function}
        return self._chunk({"tool_calls": [call]})

    def _message_stop(self) -> bytes:
        writer = self._writer
        if writer is None:
            raise UpstreamProtocolError("Anthropic stream: message_stop before message_start")
        out = writer.chunk({}, finish_reason(self._stop_reason, self._tools > 0))
        self._done = True
        if self._include_usage:
            out += writer.usage_chunk(self.usage or TokenUsage(0, 0))
        return out + DONE
