"""Anthropic's Messages API (``POST /v1/messages``) as a client dialect: an Anthropic request
becomes the canonical OpenAI chat request, and the canonical answer (a ``chat.completion``, or
its ``chat.completion.chunk`` stream) goes back as Anthropic's ``Message`` or its events. The
inverse of ``nexusd.backends.anthropic``. Used only when the chosen backend does not speak
Anthropic itself: a native Anthropic backend gets the client's bytes as sent.

Requests are validated as Anthropic validates them: a 400 ``InvalidRequest`` names the field
and the fix (``max_tokens`` a positive integer; ``temperature`` and ``top_p`` 0–1;
``thinking.budget_tokens`` at least 1024; tool names of letters, digits, ``_`` and ``-``;
each ``tool_result`` answering a ``tool_use`` of an earlier assistant turn). Then:

- ``system`` (a string, or text blocks joined with a blank line) → one ``system`` message
  first; ``system``-role messages stay system messages where they are.
- ``user`` / ``assistant`` turns → messages in order; consecutive same-role turns are merged
  (Anthropic combines them, and many chat templates refuse two in a row).
- Text blocks → text parts, or one string when a turn holds only text (a user turn's blocks
  joined with a blank line, an assistant's as they are). ``image`` (base64 or URL) →
  ``image_url`` parts. A PDF ``document`` (base64) → a ``file`` part; a plain-text or content
  ``document`` → its text (after its title).
- ``tool_use`` blocks → the assistant message's ``tool_calls`` (ids kept, ``input`` as compact
  JSON ``arguments``). Each ``tool_result`` → one ``tool`` message (``tool_call_id`` =
  ``tool_use_id``; its text; ``is_error`` → prefixed ``"Error: "``), put before the rest of
  its user turn, as OpenAI wants tool messages right after the assistant's calls. Images or
  PDFs in a tool result (a tool message holds only text) open the user message that follows.
- ``tools`` (custom tools) → function tools (``parameters`` = ``input_schema``).
  ``tool_choice`` auto / any / tool / none → ``"auto"`` / ``"required"`` / that function /
  ``"none"`` (auto and none are left out when there are no tools);
  ``disable_parallel_tool_use`` → ``parallel_tool_calls: false``.
- ``max_tokens``, ``temperature``, ``top_p`` → the same; ``stop_sequences`` → ``stop``;
  ``metadata.user_id`` → ``user``; ``output_config.format`` (a JSON schema) →
  ``response_format`` ``json_schema``; ``stream`` → ``stream`` with
  ``stream_options.include_usage`` (Anthropic clients always get usage).

Dropped: ``thinking``, ``output_config.effort`` and the thinking / redacted_thinking blocks of
the history (the translated path does not ask other backends for reasoning; a native
Anthropic backend gets them); ``top_k`` (OpenAI's API refuses it); ``cache_control``
everywhere; ``service_tier``, ``container``, ``speed``, ``inference_geo`` and any field
Anthropic adds later (a DEBUG line names them).

Valid for Anthropic but refused for other backends, which cannot run or resolve them:
Anthropic's server and built-in tools (web search, code execution, bash, text editor,
computer use…), the MCP connector (``mcp_servers``), server tools' blocks in the history,
search-result and tool-reference blocks, images and documents by Files-API id, PDFs by URL,
and ``max_tokens`` 0 (cache pre-warming). These raise ``AnthropicOnly``, an
``InvalidRequest`` (400) that carries the parsed body, so the adapter can still send the
request to a native Anthropic backend.

Answers: ``reasoning_content`` (llama.cpp, vLLM, DeepSeek) or ``reasoning`` → a ``thinking``
block first, with an empty ``signature`` (no other backend signs its reasoning); the text → a
``text`` block (left out when empty and there are tool calls); ``tool_calls`` → ``tool_use``
blocks, ids kept (``arguments`` that are not a JSON object → ``{}``). ``finish_reason`` stop
→ ``end_turn``, length → ``max_tokens``, tool_calls → ``tool_use``, content_filter →
``refusal``; an answer with tool calls always stops with ``tool_use`` (some backends say
``stop``; the client runs tools only on ``tool_use``). ``stop_sequence`` is always null:
OpenAI does not say which sequence matched. Usage: ``input_tokens`` excludes the cached
prompt tokens, which are ``cache_read_input_tokens``; ``cache_creation_input_tokens`` is 0.
Only choice 0 is used. The message id is the completion's, prefixed ``msg_``.

Streams are re-cut into Anthropic's events: ``message_start`` and one ``ping`` first, then a
content block per run of thinking, text or one tool call (``thinking_delta``,
``text_delta``, ``input_json_delta``), then ``message_delta`` (stop reason; usage from the
final usage chunk) and ``message_stop`` at ``[DONE]`` — or at the end of a stream that
stopped after its ``finish_reason`` without ``[DONE]``. A backend error inside the stream,
or a stream that ends before its answer, becomes an ``error`` event, the last one.

Errors: Anthropic's envelope ``{"type": "error", "error": {"type", "message"}}``, the type by
status: 400 (and 4xx not listed) ``invalid_request_error``, 401 ``authentication_error``, 402
``billing_error``, 403 ``permission_error``, 404 ``not_found_error``, 413
``request_too_large``, 429 ``rate_limit_error``, 504 ``timeout_error``, 529
``overloaded_error``, other 5xx ``api_error``.
"""

from __future__ import annotations

import logging
import re
import uuid
from datetime import UTC, datetime
from typing import Any

from nexusd.api.validation import check_stream, json_kind, parse_object
from nexusd.backends.translate import SSEEvents, dumps, int_or_none, json_object, text_of
from nexusd.backends.upstream import UpstreamProtocolError
from nexusd.errors import InvalidRequest

log = logging.getLogger("nexus.translate")

#: the image media types Anthropic accepts
IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
#: request fields read here; any other is dropped from the canonical body (DEBUG line)
_KNOWN = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "system",
        "stop_sequences",
        "temperature",
        "top_p",
        "top_k",
        "stream",
        "metadata",
        "tools",
        "tool_choice",
        "thinking",
        "output_config",
        "mcp_servers",
        # dropped on purpose: meaningless to other backends
        "cache_control",
        "service_tier",
        "container",
        "speed",
        "inference_geo",
    }
)
_THINKING_TYPES = frozenset({"enabled", "disabled", "adaptive", "between_tools"})
_EFFORTS = frozenset({"low", "medium", "high", "xhigh", "max"})
#: the smallest ``thinking.budget_tokens`` Anthropic accepts
MIN_THINKING_BUDGET = 1024
_DROPPED_BLOCKS = frozenset({"thinking", "redacted_thinking"})
#: blocks that only Anthropic's server tools produce or read
_SERVER_BLOCKS = frozenset(
    {
        "server_tool_use",
        "web_search_tool_result",
        "web_fetch_tool_result",
        "code_execution_tool_result",
        "bash_code_execution_tool_result",
        "text_editor_code_execution_tool_result",
        "tool_search_tool_result",
        "container_upload",
        "mcp_tool_use",
        "mcp_tool_result",
    }
)
_TOOL_CHOICES = {"auto": "auto", "any": "required", "none": "none"}
_STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_OVERLOADED = re.compile(r"overload|rate.?limit|too many requests|capacity", re.I)
#: Anthropic content blocks that other backends have no equivalent for
_UNTRANSLATABLE_BLOCKS = frozenset({"search_result", "tool_reference", "browser_state"})
_NATIVE = "; only a native Anthropic backend can serve it"


class AnthropicOnly(InvalidRequest):
    """A valid Anthropic request that cannot be translated for other backends (server tools,
    the MCP connector, Files-API ids…): a native Anthropic backend can still serve it as
    sent, so the adapter may route it there; otherwise it is the client's 400. ``body`` is
    the parsed Anthropic body."""

    def __init__(self, message: str, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.body: dict[str, Any] | None = None


# --- requests ----------------------------------------------------------------------------------


def parse_request(raw: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    """A ``POST /v1/messages`` body → (the Anthropic body, the canonical OpenAI chat body).

    Nested values (schemas, base64 data) are shared between the two, not copied: treat
    both as read-only."""
    body = parse_object(raw)
    try:
        return body, _canonical(body, count_only=False)
    except AnthropicOnly as exc:
        exc.body = body
        raise


def count_tokens_request(raw: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    """A ``POST /v1/messages/count_tokens`` body: as ``parse_request``, but ``max_tokens`` is
    not required (nothing is generated) and ``stream`` is ignored."""
    body = parse_object(raw)
    try:
        return body, _canonical(body, count_only=True)
    except AnthropicOnly as exc:
        exc.body = body
        raise


def _canonical(body: dict[str, Any], *, count_only: bool) -> dict[str, Any]:
    dropped = sorted(k for k in body if k not in _KNOWN)
    if dropped:
        log.debug("anthropic inbound: dropped fields it cannot translate: %s", ", ".join(dropped))
    out: dict[str, Any] = {"model": body["model"]}
    max_tokens = body.get("max_tokens")
    if max_tokens is not None or not count_only:
        out["max_tokens"] = _max_tokens(max_tokens)
    messages = _system_messages(body.get("system"))
    tool_ids: set[str] = set()
    raw_messages = body.get("messages")
    if raw_messages is None:
        raise InvalidRequest(
            "'messages' is required: a list of {role, content} turns, e.g. "
            '[{"role": "user", "content": "Hello"}]',
            param="messages",
        )
    if not isinstance(raw_messages, list) or not raw_messages:
        got = "an empty list" if raw_messages == [] else json_kind(raw_messages)
        raise InvalidRequest(
            f"'messages' must be a non-empty list of {{role, content}} turns, got {got}",
            param="messages",
        )
    for i, message in enumerate(raw_messages):
        _message(message, i, messages, tool_ids)
    out["messages"] = messages
    stop = body.get("stop_sequences")
    if stop is not None:
        if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
            raise InvalidRequest(
                f"'stop_sequences' must be a list of strings, got {json_kind(stop)}",
                param="stop_sequences",
            )
        stop = [s for s in stop if s]
        if stop:
            out["stop"] = stop
    for key in ("temperature", "top_p"):
        value = _unit_number(body, key)
        if value is not None:
            out[key] = value
    top_k = body.get("top_k")
    if top_k is not None and (int_or_none(top_k) is None or top_k < 0):
        raise InvalidRequest(
            f"'top_k' must be a non-negative integer, got {_shown(top_k)}", param="top_k"
        )
    user = _user_id(body.get("metadata"))
    if user:
        out["user"] = user
    _check_thinking(body.get("thinking"))
    response_format = _output_format(body.get("output_config"))
    if response_format is not None:
        out["response_format"] = response_format
    mcp = body.get("mcp_servers")
    if mcp:
        raise AnthropicOnly(
            "'mcp_servers' (Anthropic's MCP connector) runs on Anthropic's servers; Nexus cannot "
            "run it on other backends: drop it, or give the MCP tools as custom tools" + _NATIVE,
            param="mcp_servers",
        )
    _tools(body, out)
    if not count_only:
        check_stream(body)
        if body.get("stream"):
            out["stream"] = True
            out["stream_options"] = {"include_usage": True}
    return out


def _shown(value: Any) -> str:
    """A value in an error message: short JSON for scalars, its kind otherwise."""
    if isinstance(value, str | int | float | bool) or value is None:
        text = dumps(value).decode()
        return text if len(text) <= 40 else text[:37] + "…"
    return json_kind(value)


def _max_tokens(value: Any) -> int:
    if value is None:
        raise InvalidRequest(
            "'max_tokens' is required: the most tokens to generate, e.g. 1024",
            param="max_tokens",
        )
    if value == 0 and int_or_none(value) is not None:
        raise AnthropicOnly(
            "'max_tokens' 0 (pre-warming Anthropic's prompt cache) means nothing to other "
            "backends: send a positive integer" + _NATIVE,
            param="max_tokens",
        )
    if int_or_none(value) is None or value < 1:
        raise InvalidRequest(
            f"'max_tokens' must be a positive integer (e.g. 1024), got {_shown(value)}",
            param="max_tokens",
        )
    return value


def _unit_number(body: dict[str, Any], key: str) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise InvalidRequest(
            f"'{key}' must be a number from 0 to 1, got {_shown(value)}", param=key
        )
    return value


def _user_id(metadata: Any) -> str | None:
    if metadata is None:
        return None
    if not isinstance(metadata, dict):
        raise InvalidRequest(
            f'\'metadata\' must be an object such as {{"user_id": "…"}}, got {json_kind(metadata)}',
            param="metadata",
        )
    user = metadata.get("user_id")
    if user is not None and not isinstance(user, str):
        raise InvalidRequest(
            f"'metadata.user_id' must be a string, got {json_kind(user)}",
            param="metadata.user_id",
        )
    return user or None


def _check_thinking(thinking: Any) -> None:
    """Checked so a request fails the same way whichever backend serves it; then dropped."""
    if thinking is None:
        return
    kind = thinking.get("type") if isinstance(thinking, dict) else None
    if not isinstance(kind, str) or kind not in _THINKING_TYPES:
        raise InvalidRequest(
            '\'thinking\' must be {"type": "enabled", "budget_tokens": N}, '
            '{"type": "adaptive"} or {"type": "disabled"}, got '
            + (_shown(kind) if isinstance(thinking, dict) else json_kind(thinking)),
            param="thinking",
        )
    if kind == "enabled":
        budget = thinking.get("budget_tokens")
        if int_or_none(budget) is None or budget < MIN_THINKING_BUDGET:
            raise InvalidRequest(
                f"'thinking.budget_tokens' must be an integer of at least "
                f"{MIN_THINKING_BUDGET}, got {_shown(budget)}",
                param="thinking.budget_tokens",
            )


def _output_format(config: Any) -> dict[str, Any] | None:
    if config is None:
        return None
    if not isinstance(config, dict):
        raise InvalidRequest(
            f"'output_config' must be an object, got {json_kind(config)}", param="output_config"
        )
    effort = config.get("effort")
    if effort is not None and (not isinstance(effort, str) or effort not in _EFFORTS):
        raise InvalidRequest(
            f"'output_config.effort' must be one of {', '.join(sorted(_EFFORTS))}, got "
            f"{_shown(effort)}",
            param="output_config.effort",
        )
    fmt = config.get("format")
    if fmt is None:
        return None
    schema = fmt.get("schema") if isinstance(fmt, dict) else None
    if (
        not isinstance(fmt, dict)
        or fmt.get("type") != "json_schema"
        or not isinstance(schema, dict)
    ):
        raise InvalidRequest(
            '\'output_config.format\' must be {"type": "json_schema", "schema": {…}}',
            param="output_config.format",
        )
    return {"type": "json_schema", "json_schema": {"name": "output", "schema": schema}}


def _system_messages(system: Any) -> list[dict[str, Any]]:
    text = _system_text(system, "system")
    return [{"role": "system", "content": text}] if text else []


def _system_text(system: Any, where: str) -> str:
    if system is None:
        return ""
    if isinstance(system, str):
        return system
    if not isinstance(system, list):
        raise InvalidRequest(
            f"'{where}' must be a string or a list of text blocks, got {json_kind(system)}",
            param=where,
        )
    texts = []
    for j, block in enumerate(system):
        text = block.get("text") if isinstance(block, dict) else None
        if not isinstance(block, dict) or block.get("type") != "text" or not isinstance(text, str):
            raise InvalidRequest(
                f'\'{where}.{j}\' must be a text block {{"type": "text", "text": "…"}}',
                param=f"{where}.{j}",
            )
        if text:
            texts.append(text)
    return "\n\n".join(texts)


def _message(message: Any, i: int, out: list[dict[str, Any]], tool_ids: set[str]) -> None:
    """One Anthropic turn → its OpenAI messages, appended to ``out``."""
    where = f"messages.{i}"
    if not isinstance(message, dict):
        raise InvalidRequest(
            f"'{where}' must be an object {{role, content}}, got {json_kind(message)}",
            param=where,
        )
    role = message.get("role")
    if role not in ("user", "assistant", "system"):
        raise InvalidRequest(
            f'\'{where}.role\' must be "user" or "assistant", got {_shown(role)}',
            param=f"{where}.role",
        )
    if "content" not in message:
        raise InvalidRequest(
            f"'{where}.content' is required: a string or a list of content blocks",
            param=f"{where}.content",
        )
    content = message["content"]
    if not isinstance(content, str | list):
        raise InvalidRequest(
            f"'{where}.content' must be a string or a list of content blocks, got "
            f"{json_kind(content)}",
            param=f"{where}.content",
        )
    if role == "system":
        out.append({"role": "system", "content": _system_text(content, f"{where}.content")})
    elif role == "assistant":
        _push(out, _assistant(content, where, tool_ids))
    elif isinstance(content, str):
        _push(out, {"role": "user", "content": content})
    else:
        _user(content, where, out, tool_ids)


def _push(out: list[dict[str, Any]], message: dict[str, Any]) -> None:
    """Append a user or assistant message, merged into the one before when that has the same
    role: Anthropic combines consecutive same-role turns, and many chat templates refuse two
    user (or assistant) messages in a row."""
    last = out[-1] if out else None
    if last is None or last["role"] != message["role"]:
        out.append(message)
    elif message["role"] == "user":
        last["content"] = _joined_content(last["content"], message["content"])
    else:
        content = (last["content"] or "") + (message["content"] or "")
        calls = last.get("tool_calls", []) + message.get("tool_calls", [])
        last["content"] = content if content or not calls else None
        if calls:
            last["tool_calls"] = calls


def _joined_content(first: str | list[Any], second: str | list[Any]) -> str | list[Any]:
    if isinstance(first, str) and isinstance(second, str):
        return "\n\n".join(t for t in (first, second) if t)
    parts: list[Any] = []
    for content in (first, second):
        if isinstance(content, list):
            parts.extend(content)
        elif content:
            parts.append({"type": "text", "text": content})
    return parts


def _block_type(block: Any, where: str) -> str:
    if not isinstance(block, dict):
        raise InvalidRequest(
            f"'{where}' must be a content block object, got {json_kind(block)}", param=where
        )
    kind = block.get("type")
    if not isinstance(kind, str):
        raise InvalidRequest(
            f"'{where}.type' is required: text, image, document, tool_use, tool_result, thinking…",
            param=f"{where}.type",
        )
    return kind


def _user(content: list[Any], where: str, out: list[dict[str, Any]], tool_ids: set[str]) -> None:
    """A user turn's blocks: its tool results first, as tool messages, then the rest."""
    parts: list[dict[str, Any]] = []
    carried: list[dict[str, Any]] = []  # images / PDFs of tool results
    results = 0
    for j, block in enumerate(content):
        path = f"{where}.content.{j}"
        kind = _block_type(block, path)
        if kind == "tool_result":
            call_id = block.get("tool_use_id")
            if not isinstance(call_id, str) or not call_id:
                raise InvalidRequest(
                    f"'{path}.tool_use_id' is required: the id of the tool_use block it answers",
                    param=f"{path}.tool_use_id",
                )
            if call_id not in tool_ids:
                raise InvalidRequest(
                    f"'{path}': tool_result for {call_id!r}, but no earlier assistant turn has a "
                    "tool_use block with that id",
                    param=f"{path}.tool_use_id",
                )
            text, media = _tool_result_content(block, path)
            is_error = block.get("is_error")
            if is_error is not None and not isinstance(is_error, bool):
                raise InvalidRequest(
                    f"'{path}.is_error' must be true or false", param=f"{path}.is_error"
                )
            if is_error:
                text = f"Error: {text}" if text else "Error"
            out.append({"role": "tool", "tool_call_id": call_id, "content": text})
            results += 1
            carried.extend(media)
        elif kind == "tool_use":
            raise InvalidRequest(
                f"'{path}': tool_use blocks belong in assistant turns; a user turn answers them "
                "with tool_result blocks",
                param=path,
            )
        elif kind in _DROPPED_BLOCKS:
            continue
        else:
            part = _part(block, kind, path)
            if part is not None:
                parts.append(part)
    parts = carried + parts
    if not parts:
        if not results:
            _push(out, {"role": "user", "content": ""})
        return
    if all(p["type"] == "text" for p in parts):
        _push(out, {"role": "user", "content": "\n\n".join(p["text"] for p in parts)})
    else:
        _push(out, {"role": "user", "content": parts})


def _assistant(content: str | list[Any], where: str, tool_ids: set[str]) -> dict[str, Any]:
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for j, block in enumerate(content):
        path = f"{where}.content.{j}"
        kind = _block_type(block, path)
        if kind == "text":
            texts.append(_text(block, path))
        elif kind == "tool_use":
            calls.append(_tool_call(block, path))
            tool_ids.add(calls[-1]["id"])
        elif kind in _DROPPED_BLOCKS:
            continue
        elif kind == "tool_result":
            raise InvalidRequest(
                f"'{path}': tool_result blocks belong in the user turn after the assistant's "
                "tool_use; move it there",
                param=path,
            )
        elif kind in _SERVER_BLOCKS:
            raise _server_block(kind, path)
        else:
            raise InvalidRequest(
                f"'{path}': an assistant turn holds text, tool_use and thinking blocks, not "
                f"{_shown(kind)}",
                param=f"{path}.type",
            )
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts)}
    if calls:
        if not message["content"]:
            message["content"] = None
        message["tool_calls"] = calls
    return message


def _tool_call(block: dict[str, Any], path: str) -> dict[str, Any]:
    call_id, name, arguments = block.get("id"), block.get("name"), block.get("input")
    if not isinstance(call_id, str) or not call_id:
        raise InvalidRequest(f"'{path}.id' is required: the tool_use id", param=f"{path}.id")
    if not isinstance(name, str) or not name:
        raise InvalidRequest(
            f"'{path}.name' is required: the name of the tool called", param=f"{path}.name"
        )
    if not isinstance(arguments, dict):
        raise InvalidRequest(
            f"'{path}.input' must be an object (the tool's arguments), got {json_kind(arguments)}",
            param=f"{path}.input",
        )
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": dumps(arguments).decode()},
    }


def _text(block: dict[str, Any], path: str) -> str:
    text = block.get("text")
    if not isinstance(text, str):
        raise InvalidRequest(
            f"'{path}.text' must be a string, got {json_kind(text)}", param=f"{path}.text"
        )
    return text


def _part(block: dict[str, Any], kind: str, path: str) -> dict[str, Any] | None:
    """A user content block → an OpenAI content part (None: nothing to send)."""
    if kind == "text":
        text = _text(block, path)
        return {"type": "text", "text": text} if text else None
    if kind == "image":
        return _image(block, path)
    if kind == "document":
        return _document(block, path)
    if kind in _SERVER_BLOCKS:
        raise _server_block(kind, path)
    if kind in _UNTRANSLATABLE_BLOCKS:
        raise AnthropicOnly(
            f"'{path}': {kind} blocks have no equivalent on other backends; send their content "
            "as text" + _NATIVE,
            param=f"{path}.type",
        )
    raise InvalidRequest(
        f"'{path}': content blocks of type {_shown(kind)} cannot be translated for this "
        "backend (text, image, document, tool_use, tool_result and thinking can)",
        param=f"{path}.type",
    )


def _server_block(kind: str, path: str) -> AnthropicOnly:
    return AnthropicOnly(
        f"'{path}': {kind} blocks come from Anthropic's server tools, which Nexus cannot run "
        "on other backends: leave them out of the history" + _NATIVE,
        param=f"{path}.type",
    )


def _source(block: dict[str, Any], path: str) -> dict[str, Any]:
    source = block.get("source")
    if not isinstance(source, dict):
        raise InvalidRequest(
            f'\'{path}.source\' is required: {{"type": "base64", "media_type", "data"}} '
            'or {"type": "url", "url"}',
            param=f"{path}.source",
        )
    return source


def _base64(source: dict[str, Any], path: str) -> str:
    data = source.get("data")
    if not isinstance(data, str) or not data:
        raise InvalidRequest(
            f"'{path}.source.data' is required: the base64-encoded bytes",
            param=f"{path}.source.data",
        )
    return data


def _image(block: dict[str, Any], path: str) -> dict[str, Any]:
    source = _source(block, path)
    kind = source.get("type")
    if kind == "base64":
        media_type = source.get("media_type")
        if not isinstance(media_type, str) or media_type not in IMAGE_TYPES:
            raise InvalidRequest(
                f"'{path}.source.media_type' must be one of {', '.join(sorted(IMAGE_TYPES))}, "
                f"got {_shown(media_type)}",
                param=f"{path}.source.media_type",
            )
        url = f"data:{media_type};base64,{_base64(source, path)}"
    elif kind == "url":
        url = source.get("url")
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise InvalidRequest(
                f"'{path}.source.url' must be an http(s) URL, got {_shown(url)}",
                param=f"{path}.source.url",
            )
    elif kind == "file":
        raise AnthropicOnly(
            f"'{path}.source': images by Files-API id cannot be sent to other backends; send "
            "the image as base64 or by URL" + _NATIVE,
            param=f"{path}.source",
        )
    else:
        raise InvalidRequest(
            f'\'{path}.source.type\' must be "base64" or "url", got {_shown(kind)}',
            param=f"{path}.source.type",
        )
    return {"type": "image_url", "image_url": {"url": url}}


def _document(block: dict[str, Any], path: str) -> dict[str, Any] | None:
    source = _source(block, path)
    kind = source.get("type")
    if kind == "base64":
        if source.get("media_type") != "application/pdf":
            raise InvalidRequest(
                f"'{path}.source.media_type' must be \"application/pdf\" for a base64 "
                f"document, got {_shown(source.get('media_type'))}",
                param=f"{path}.source.media_type",
            )
        data = f"data:application/pdf;base64,{_base64(source, path)}"
        return {"type": "file", "file": {"filename": "document.pdf", "file_data": data}}
    if kind == "text":
        text = source.get("data")
        if not isinstance(text, str):
            raise InvalidRequest(
                f"'{path}.source.data' must be the document's text", param=f"{path}.source.data"
            )
    elif kind == "content":
        inner = source.get("content")
        if isinstance(inner, str):
            text = inner
        elif isinstance(inner, list):
            text = "\n\n".join(
                _text(b, f"{path}.source.content.{k}")
                for k, b in enumerate(inner)
                if _block_type(b, f"{path}.source.content.{k}") == "text"
            )
        else:
            raise InvalidRequest(
                f"'{path}.source.content' must be a string or a list of blocks",
                param=f"{path}.source.content",
            )
    elif kind in ("url", "file"):
        raise AnthropicOnly(
            f"'{path}.source': documents by {'URL' if kind == 'url' else 'Files-API id'} cannot "
            "be sent to other backends; send the PDF inline (base64) or the text" + _NATIVE,
            param=f"{path}.source",
        )
    else:
        raise InvalidRequest(
            f"'{path}.source.type' must be base64 (a PDF), text or content, got {_shown(kind)}",
            param=f"{path}.source.type",
        )
    title = block.get("title")
    if isinstance(title, str) and title:
        text = f"{title}\n\n{text}"
    return {"type": "text", "text": text} if text else None


def _tool_result_content(block: dict[str, Any], path: str) -> tuple[str, list[dict[str, Any]]]:
    """A tool result's text, and its images / PDFs (which a tool message cannot hold)."""
    content = block.get("content")
    if content is None:
        return "", []
    if isinstance(content, str):
        return content, []
    if not isinstance(content, list):
        raise InvalidRequest(
            f"'{path}.content' must be a string or a list of blocks, got {json_kind(content)}",
            param=f"{path}.content",
        )
    texts: list[str] = []
    media: list[dict[str, Any]] = []
    for k, inner in enumerate(content):
        inner_path = f"{path}.content.{k}"
        kind = _block_type(inner, inner_path)
        if kind not in ("text", "image", "document") and kind not in _UNTRANSLATABLE_BLOCKS:
            raise InvalidRequest(
                f"'{inner_path}': a tool result holds text, image and document blocks, not "
                f"{_shown(kind)}",
                param=f"{inner_path}.type",
            )
        part = _part(inner, kind, inner_path)
        if part is None:
            continue
        if part["type"] == "text":
            texts.append(part["text"])
        else:
            media.append(part)
    return "\n\n".join(texts), media


def _tools(body: dict[str, Any], out: dict[str, Any]) -> None:
    tools = body.get("tools")
    names: list[str] = []
    if tools is not None:
        if not isinstance(tools, list):
            raise InvalidRequest(
                f"'tools' must be a list of tools, got {json_kind(tools)}", param="tools"
            )
        functions = [_function(tool, f"tools.{i}") for i, tool in enumerate(tools)]
        names = [f["function"]["name"] for f in functions]
        if functions:
            out["tools"] = functions
    choice = body.get("tool_choice")
    if choice is None:
        return
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind not in ("auto", "any", "tool", "none"):
        raise InvalidRequest(
            '\'tool_choice\' must be {"type": "auto"}, {"type": "any"}, '
            '{"type": "tool", "name": "…"} or {"type": "none"}, got '
            + (_shown(kind) if isinstance(choice, dict) else json_kind(choice)),
            param="tool_choice",
        )
    parallel = choice.get("disable_parallel_tool_use")
    if parallel is not None and not isinstance(parallel, bool):
        raise InvalidRequest(
            "'tool_choice.disable_parallel_tool_use' must be true or false",
            param="tool_choice.disable_parallel_tool_use",
        )
    if kind == "tool":
        name = choice.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidRequest(
                '\'tool_choice.name\' is required with {"type": "tool"}: the tool to call',
                param="tool_choice.name",
            )
        if name not in names:
            raise InvalidRequest(
                f"'tool_choice.name' is {name!r}, but no tool in 'tools' has that name",
                param="tool_choice.name",
            )
        value: Any = {"type": "function", "function": {"name": name}}
    else:
        value = _TOOL_CHOICES[kind]
    if not names:
        if kind == "any":
            raise InvalidRequest(
                "'tool_choice' {\"type\": \"any\"} needs 'tools' to choose from",
                param="tool_choice",
            )
        return  # auto / none without tools: nothing to say (OpenAI refuses it bare)
    out["tool_choice"] = value
    if parallel and kind != "none":
        out["parallel_tool_calls"] = False


_TOOL_NAME = re.compile(r"[a-zA-Z0-9_-]{1,128}")


def _function(tool: Any, where: str) -> dict[str, Any]:
    if not isinstance(tool, dict):
        raise InvalidRequest(
            f"'{where}' must be a tool object {{name, description, input_schema}}, got "
            f"{json_kind(tool)}",
            param=where,
        )
    kind = tool.get("type")
    if kind == "function" or (kind is not None and not isinstance(kind, str)):
        raise InvalidRequest(
            f"'{where}.type' must be \"custom\" or left out, got {_shown(kind)}: an Anthropic "
            "tool is {name, description, input_schema}, not OpenAI's {type: function, function}",
            param=f"{where}.type",
        )
    if kind is not None and kind != "custom":
        raise AnthropicOnly(
            f"'{where}': {_shown(kind)} is one of Anthropic's server or built-in tools, which "
            "Nexus cannot run on other backends; define it as a custom tool (name, "
            "description, input_schema)" + _NATIVE,
            param=f"{where}.type",
        )
    name = tool.get("name")
    if not isinstance(name, str) or not _TOOL_NAME.fullmatch(name):
        raise InvalidRequest(
            f"'{where}.name' must be 1–128 letters, digits, '_' or '-', got {_shown(name)}",
            param=f"{where}.name",
        )
    schema = tool.get("input_schema")
    if schema is None:
        raise InvalidRequest(
            f"'{where}.input_schema' is required: a JSON schema of the tool's input, e.g. "
            '{"type": "object", "properties": {…}}',
            param=f"{where}.input_schema",
        )
    if not isinstance(schema, dict) or schema.get("type") != "object":
        got = _shown(schema.get("type")) if isinstance(schema, dict) else json_kind(schema)
        raise InvalidRequest(
            f'\'{where}.input_schema\' must be a JSON schema with "type": "object", got {got}',
            param=f"{where}.input_schema",
        )
    function: dict[str, Any] = {"name": name}
    description = tool.get("description")
    if description is not None:
        if not isinstance(description, str):
            raise InvalidRequest(
                f"'{where}.description' must be a string", param=f"{where}.description"
            )
        if description:
            function["description"] = description
    function["parameters"] = schema
    return {"type": "function", "function": function}


# --- answers -----------------------------------------------------------------------------------


def _message_id(completion_id: Any) -> str:
    if isinstance(completion_id, str) and completion_id:
        return completion_id if completion_id.startswith("msg_") else f"msg_{completion_id}"
    return f"msg_{uuid.uuid4().hex}"


def _stop_reason(finish: Any, tool_calls: bool) -> str:
    """OpenAI's ``finish_reason`` → Anthropic's ``stop_reason``. Some backends finish a
    tool-calling answer with ``stop``: the client must still see ``tool_use`` to run them."""
    reason = _STOP_REASONS.get(finish, "end_turn") if isinstance(finish, str) else "end_turn"
    if tool_calls and reason == "end_turn":
        return "tool_use"
    if reason == "tool_use" and not tool_calls:
        return "end_turn"
    return reason


def _usage(usage: Any) -> dict[str, int]:
    """OpenAI's usage → Anthropic's: cached prompt tokens are counted apart."""
    if not isinstance(usage, dict):
        usage = {}
    prompt = int_or_none(usage.get("prompt_tokens")) or 0
    details = usage.get("prompt_tokens_details")
    cached = int_or_none(details.get("cached_tokens")) if isinstance(details, dict) else None
    cached = min(cached or 0, prompt)
    return {
        "input_tokens": prompt - cached,
        "output_tokens": int_or_none(usage.get("completion_tokens")) or 0,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": cached,
    }


def _reasoning(holder: dict[str, Any]) -> str | None:
    """The reasoning text a message or delta carries, in either spelling backends use."""
    value = holder.get("reasoning_content")
    if value is None:
        value = holder.get("reasoning")
    return value if isinstance(value, str) else None


def _tool_input(arguments: Any) -> dict[str, Any]:
    if isinstance(arguments, dict):
        return arguments
    parsed = json_object(arguments) if isinstance(arguments, str) and arguments else None
    return parsed if parsed is not None else {}


def message_from_completion(body: bytes, model: str) -> bytes:
    """An OpenAI ``chat.completion`` → an Anthropic ``Message`` (choice 0 only)."""
    completion = json_object(body)
    if completion is None:
        raise UpstreamProtocolError(
            f"invalid chat completion: expected a JSON object, got {body[:80]!r}"
        )
    choices = completion.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices else None
    if not isinstance(choice, dict):
        raise UpstreamProtocolError(f"invalid chat completion: no choices in {body[:80]!r}")
    message = choice.get("message")
    message = message if isinstance(message, dict) else {}
    content: list[dict[str, Any]] = []
    reasoning = _reasoning(message)
    if reasoning:
        content.append({"type": "thinking", "thinking": reasoning, "signature": ""})
    text = text_of(message.get("content"))
    refusal = message.get("refusal")
    if not text and isinstance(refusal, str) and refusal:
        text = refusal
    calls = message.get("tool_calls")
    uses = []
    for call in calls if isinstance(calls, list) else ():
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict):
            continue
        call_id = call.get("id")
        uses.append(
            {
                "type": "tool_use",
                "id": call_id if isinstance(call_id, str) and call_id else _tool_id(),
                "name": str(function.get("name") or ""),
                "input": _tool_input(function.get("arguments")),
            }
        )
    if text or not uses:
        content.append({"type": "text", "text": text})
    content.extend(uses)
    finish = choice.get("finish_reason")
    if finish is None and isinstance(refusal, str) and refusal:
        finish = "content_filter"
    answer_model = completion.get("model")
    return dumps(
        {
            "id": _message_id(completion.get("id")),
            "type": "message",
            "role": "assistant",
            "model": answer_model if isinstance(answer_model, str) and answer_model else model,
            "content": content,
            "stop_reason": _stop_reason(finish, bool(uses)),
            "stop_sequence": None,
            "usage": _usage(completion.get("usage")),
        }
    )


def _tool_id() -> str:
    return f"toolu_{uuid.uuid4().hex[:24]}"


# --- streams -----------------------------------------------------------------------------------


def _event(name: str, payload: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + dumps(payload) + b"\n\n"


_PING = b'event: ping\ndata: {"type":"ping"}\n\n'
_MESSAGE_STOP = b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
_START = b'event: content_block_start\ndata: {"type":"content_block_start","index":'
_STOP = b'event: content_block_stop\ndata: {"type":"content_block_stop","index":'
_DELTA = b'event: content_block_delta\ndata: {"type":"content_block_delta","index":'
_TEXT_BLOCK = b',"content_block":{"type":"text","text":""}}\n\n'
_THINKING_BLOCK = b',"content_block":{"type":"thinking","thinking":"","signature":""}}\n\n'
_TEXT_DELTA = b',"delta":{"type":"text_delta","text":'
_THINKING_DELTA = b',"delta":{"type":"thinking_delta","thinking":'
_JSON_DELTA = b',"delta":{"type":"input_json_delta","partial_json":'
_DELTA_TAIL = b"}}\n\n"
#: what an open block is: text, thinking, or a tool call (by its OpenAI index)
_TEXT, _THINKING = -1, -2


class MessagesStreamEncoder:
    """OpenAI ``chat.completion.chunk`` SSE (any network chunking) → Anthropic's stream
    events. One ``feed`` per upstream read; all the events it makes come back as one bytes
    object. Blocks are opened lazily as content of a new kind arrives, so the client sees
    Anthropic's order: ``message_start`` and ``ping`` first, one block at a time, then
    ``message_delta`` and ``message_stop`` (or an ``error`` event, and nothing after it)."""

    __slots__ = (
        "_delta_head",
        "_done",
        "_events",
        "_finish",
        "_index",
        "_input_tokens",
        "_model",
        "_open",
        "_started",
        "_tools",
        "_usage",
        "failed",
    )

    def __init__(self, model: str, *, input_tokens: int | None = None) -> None:
        self._model = model
        self._input_tokens = input_tokens or 0
        self._events = SSEEvents()
        self._started = False  # message_start sent
        self._done = False  # message_stop or error sent: nothing more
        self._finish: str | None = None  # the OpenAI finish_reason, once seen
        self._usage: dict[str, Any] | None = None
        self._index = 0  # the next content block's index
        self._open: int | None = None  # the open block: _TEXT, _THINKING or a tool index
        self._delta_head = b""  # the open block's delta event up to its payload string
        self._tools: dict[int, int] = {}  # OpenAI tool call index → content block index
        #: why the stream ended with an error event (the request is recorded as failed)
        self.failed: str | None = None

    def feed(self, openai_sse: bytes) -> bytes:
        if self._done:
            return b""
        return self._translate(self._events.feed(openai_sse))

    def flush(self) -> bytes:
        """At the end of the upstream stream: the events still owed. A stream that stopped
        after its finish_reason (no ``[DONE]``) is complete; one that stopped before it is
        not, and the client is told so by an ``error`` event."""
        if self._done:
            return b""
        out = self._translate(self._events.flush())
        if self._done:
            return out
        if self._finish is not None:
            return out + self._end()
        self._done = True
        self.failed = "the backend's stream ended before its answer was complete"
        return out + _error_event("api_error", self.failed)

    def _translate(self, events: list[Any]) -> bytes:
        out: list[bytes] = []
        for event in events:
            if self._done:
                break
            data = event.data
            if data == "[DONE]":
                if not self._started:
                    out.append(self._message_start(None))
                out.append(self._end())
                break
            chunk = json_object(data)
            if chunk is None:
                self._done = True
                self.failed = f"the backend sent an invalid stream event: {data[:80]!r}"
                out.append(_error_event("api_error", self.failed))
                break
            if "error" in chunk or chunk.get("object") == "error":
                self._done = True
                self.failed = "the backend reported an error mid-stream"
                out.append(_stream_error(chunk))
                break
            if not self._started:
                out.append(self._message_start(chunk))
            self._chunk(chunk, out)
        return b"".join(out)

    def _message_start(self, chunk: dict[str, Any] | None) -> bytes:
        self._started = True
        chunk = chunk or {}
        model = chunk.get("model")
        message = {
            "id": _message_id(chunk.get("id")),
            "type": "message",
            "role": "assistant",
            "model": model if isinstance(model, str) and model else self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": self._input_tokens, "output_tokens": 0},
        }
        return _event("message_start", {"type": "message_start", "message": message}) + _PING

    def _chunk(self, chunk: dict[str, Any], out: list[bytes]) -> None:
        if "usage" in chunk and isinstance(chunk["usage"], dict):
            self._usage = chunk["usage"]
        choices = chunk.get("choices")
        if not choices or not isinstance(choices, list):
            return
        choice = choices[0]
        if not isinstance(choice, dict) or choice.get("index", 0) != 0:
            choice = next((c for c in choices if isinstance(c, dict) and c.get("index") == 0), None)
            if choice is None:
                return  # only choice 0 is translated
        delta = choice.get("delta")
        if self._finish is None and isinstance(delta, dict):
            text = delta.get("content")
            if (
                self._open == _TEXT
                and text.__class__ is str
                and text
                and "tool_calls" not in delta
                and _reasoning(delta) is None
            ):
                # the common chunk: more text for the open text block
                out.append(self._delta_head + dumps(text) + _DELTA_TAIL)
            else:
                self._delta(delta, text, out)
        finish = choice.get("finish_reason")
        if finish and self._finish is None:
            self._finish = str(finish)
            self._close(out)

    def _delta(self, delta: dict[str, Any], text: Any, out: list[bytes]) -> None:
        """Any delta, in the order a message holds its parts: reasoning, text, tool calls."""
        reasoning = _reasoning(delta)
        if reasoning:
            self._append(_THINKING, reasoning, out)
        if isinstance(text, str) and text:
            self._append(_TEXT, text, out)
        else:
            refusal = delta.get("refusal")
            if isinstance(refusal, str) and refusal:
                self._append(_TEXT, refusal, out)
        calls = delta.get("tool_calls")
        if calls and isinstance(calls, list):
            for position, call in enumerate(calls):
                if isinstance(call, dict):
                    self._tool_delta(call, position, out)

    def _append(self, kind: int, text: str, out: list[bytes]) -> None:
        """Text or thinking: into the open block of that kind, else a new one."""
        if self._open != kind:
            self._close(out)
            index = str(self._index).encode()
            self._index += 1
            self._open = kind
            if kind == _TEXT:
                out.append(_START + index + _TEXT_BLOCK)
                self._delta_head = _DELTA + index + _TEXT_DELTA
            else:
                out.append(_START + index + _THINKING_BLOCK)
                self._delta_head = _DELTA + index + _THINKING_DELTA
        out.append(self._delta_head + dumps(text) + _DELTA_TAIL)

    def _tool_delta(self, call: dict[str, Any], position: int, out: list[bytes]) -> None:
        slot = call.get("index")
        if int_or_none(slot) is None:
            slot = position  # some backends leave the index out of whole calls
        function = call.get("function")
        function = function if isinstance(function, dict) else {}
        arguments = function.get("arguments")
        if slot not in self._tools:
            self._close(out)
            index = self._index
            self._index += 1
            self._tools[slot] = index
            self._open = slot
            call_id = call.get("id")
            block = {
                "type": "tool_use",
                "id": call_id if isinstance(call_id, str) and call_id else _tool_id(),
                "name": str(function.get("name") or ""),
                "input": {},
            }
            out.append(
                _event(
                    "content_block_start",
                    {"type": "content_block_start", "index": index, "content_block": block},
                )
            )
            self._delta_head = _DELTA + str(index).encode() + _JSON_DELTA
        elif self._open != slot:
            return  # a block already closed: its late fragment cannot be placed
        if isinstance(arguments, dict):  # a backend that sends the arguments parsed
            arguments = dumps(arguments).decode()
        if isinstance(arguments, str) and arguments:
            out.append(self._delta_head + dumps(arguments) + _DELTA_TAIL)

    def _close(self, out: list[bytes]) -> None:
        if self._open is None:
            return
        out.append(_STOP + str(self._index - 1).encode() + b"}\n\n")
        self._open = None

    def _end(self) -> bytes:
        """``message_delta`` (stop reason, usage) and ``message_stop``."""
        out: list[bytes] = []
        self._close(out)
        self._done = True
        delta = {
            "stop_reason": _stop_reason(self._finish, bool(self._tools)),
            "stop_sequence": None,
        }
        usage: dict[str, int] = {"output_tokens": 0}
        if self._usage is not None:
            counted = _usage(self._usage)
            usage = {
                "output_tokens": counted["output_tokens"],
                "input_tokens": counted["input_tokens"],
            }
            if counted["cache_read_input_tokens"]:
                usage["cache_read_input_tokens"] = counted["cache_read_input_tokens"]
        out.append(
            _event("message_delta", {"type": "message_delta", "delta": delta, "usage": usage})
        )
        out.append(_MESSAGE_STOP)
        return b"".join(out)


def _error_event(type_: str, message: str) -> bytes:
    return _event("error", {"type": "error", "error": {"type": type_, "message": message}})


def _stream_error(chunk: dict[str, Any]) -> bytes:
    """An OpenAI in-stream error (how Nexus's relay reports a backend that failed mid-answer,
    or vLLM's ``{"object": "error"}``) → Anthropic's ``error`` event."""
    error = chunk.get("error")
    if isinstance(error, dict):
        message, kind = error.get("message"), error.get("type")
    else:
        message, kind = (error if error is not None else chunk.get("message")), chunk.get("type")
    if not isinstance(message, str) or not message:
        message = "the backend failed while streaming its answer"
    overloaded = _OVERLOADED.search(message) or (isinstance(kind, str) and "rate_limit" in kind)
    return _error_event("overloaded_error" if overloaded else "api_error", message)


# --- errors and models -------------------------------------------------------------------------


def error_type(status: int) -> str:
    """Anthropic's ``error.type`` for an HTTP status (other 4xx: ``invalid_request_error``,
    other 5xx: ``api_error``, as Anthropic documents)."""
    found = _ERROR_TYPES.get(status)
    if found is not None:
        return found
    return "api_error" if status >= 500 else "invalid_request_error"


def error_body(status: int, message: str) -> bytes:
    """Anthropic's error envelope for a status and message."""
    return dumps({"type": "error", "error": {"type": error_type(status), "message": message}})


def error_from_openai(status: int, body: bytes) -> bytes:
    """A backend's (or Nexus's) error body, usually OpenAI's envelope → Anthropic's, keeping
    the message; a body in no known shape becomes the message itself."""
    payload = json_object(body)
    message: Any = None
    if payload is not None:
        error = payload.get("error")
        if isinstance(error, dict):
            message = error.get("message")
        elif isinstance(error, str):
            message = error
        if not isinstance(message, str) or not message:
            message = payload.get("message") or payload.get("detail")
    if not isinstance(message, str) or not message:
        snippet = body[:300].decode("utf-8", "replace").strip()
        message = f"the backend answered HTTP {status}" + (f": {snippet}" if snippet else "")
    return error_body(status, message)


def _rfc3339(seconds: Any) -> str:
    value = int_or_none(seconds)
    if value is None or value < 0:
        value = 0  # Anthropic's "unknown release date": the epoch
    try:
        moment = datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        moment = datetime.fromtimestamp(0, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def models_list(models: list[dict[str, Any]]) -> bytes:
    """Nexus's model entries (OpenAI ``/v1/models`` data) → Anthropic's ``GET /v1/models``
    page: every model at once, so ``has_more`` is false."""
    data = [
        {
            "type": "model",
            "id": entry["id"],
            "display_name": entry["id"],
            "created_at": _rfc3339(entry.get("created")),
        }
        for entry in models
    ]
    return dumps(
        {
            "data": data,
            "has_more": False,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
        }
    )
