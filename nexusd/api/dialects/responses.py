"""OpenAI's Responses API (``POST /v1/responses``) in front of the canonical OpenAI chat form,
statelessly: a request becomes a chat request for any backend, and the chat answer (whole or
streamed) becomes a Response object or the Responses event stream.

Nexus stores nothing, so the parts of the API that live on stored state are refused with a
400 that says to send the whole conversation in ``input`` (``STATELESS_MESSAGE``):
``previous_response_id``, ``conversation``, ``item_reference`` input items, ``background``
runs, stored ``prompt`` templates, and (at the adapter) ``GET``/``DELETE``/``cancel`` of
``/v1/responses/{id}``. ``store: true`` is accepted and ignored: nothing is kept, and the
Response says ``"store": false``.

Request, translated:

- ``instructions`` → a system message, first; ``input`` as a string → one user message.
- ``message`` items (``type`` may be left out) keep their role, except ``developer`` → system
  (the same meaning in chat; local chat templates often know no ``developer`` role). Parts:
  ``input_text``/``output_text`` → ``text``; ``input_image`` (``image_url``: a URL or a data
  URL; ``detail`` kept when chat knows it) → ``image_url``; ``input_file`` with ``file_data``
  → chat's ``file`` part; ``input_audio`` → ``input_audio``. Assistant messages become one
  string (``output_text`` and ``refusal`` text joined): every chat backend takes that.
- ``function_call`` items → ``tool_calls`` of an assistant message: consecutive calls share
  one, and an assistant message just before them carries them. ``function_call_output`` items
  → ``tool`` messages (text parts of a list output joined).
- ``tools``: function tools → chat function tools (``strict`` kept). ``tool_choice`` "auto",
  "none", "required" and ``{"type": "function", "name"}`` → their chat forms;
  ``parallel_tool_calls`` as is. Both are left out when there are no tools (chat refuses them
  alone).
- ``text.format`` ``json_object`` / ``json_schema`` → ``response_format``; ``text.verbosity``
  → ``verbosity``.
- ``max_output_tokens`` → ``max_tokens``; ``temperature``, ``top_p``, ``prompt_cache_key``,
  ``service_tier`` as is; ``safety_identifier`` (else ``user``) → ``user``;
  ``reasoning.effort`` → ``reasoning_effort``, passed through whatever its value (a backend
  that has no such setting decides; Nexus is never stricter than the backend).
- ``stream: true`` → ``stream`` with ``stream_options.include_usage`` (the Response carries
  the usage).

Request, not translated:

- ``reasoning`` input items are dropped: chat has no standard field to carry them back.
- ``metadata`` is not sent; it is echoed in the Response. ``include``, ``truncation``,
  ``top_logprobs``, ``max_tool_calls``, ``stream_options`` and other fields are ignored.
- Refused with a 400 naming them: hosted tools (web search, file search, computer use, code
  interpreter, MCP, image generation, shell, custom tools …) and their items — Nexus runs no
  tools; ``file_id`` images and files (there is no file store); ``file_url`` files (chat takes
  files inline); non-text parts in a ``function_call_output``; other ``tool_choice`` forms.

Answers: one ``reasoning`` item when the backend returns ``reasoning_content`` (or
``reasoning``), as ``reasoning_text`` content (raw reasoning, not a summary), then a
``message`` item with the text (``output_text``) and any ``refusal``, then one
``function_call`` item per tool call (``call_id`` is the chat tool call's id). ``finish_reason``
"length" → status "incomplete" (``max_output_tokens``), "content_filter" → "incomplete"
(``content_filter``); the last item is then "incomplete". Usage maps to Responses' names. The
Response echoes the request's settings (``tools`` as sent, ``tool_choice`` "auto" and
``parallel_tool_calls`` true by default). Streams: ``response.created``, ``in_progress``, the
item, part and delta events, then ``response.completed`` (or ``incomplete``); an error event
from the relay, or an end without a ``finish_reason`` or ``[DONE]``, gives ``response.failed``
and nothing after. Log probabilities are not translated (always ``[]``).
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from nexusd.api.validation import check_stream, json_kind, parse_object
from nexusd.backends.translate import SSEEvents, dumps, int_or_none, json_object
from nexusd.backends.upstream import UpstreamError, UpstreamProtocolError
from nexusd.errors import InvalidRequest

STATELESS_MESSAGE = (
    "Nexus keeps no conversation state: it stores no responses, so none can be retrieved, "
    "continued, cancelled or deleted. Send the whole conversation in `input` with every request "
    "(the earlier input items and the output items of earlier responses) and keep the "
    "answers yourself"
)

_ROLES = {"user": "user", "assistant": "assistant", "system": "system", "developer": "system"}
#: input item types of the hosted tools Nexus does not run (named in the refusal)
_HOSTED_ITEMS = frozenset(
    {
        "file_search_call",
        "computer_call",
        "computer_call_output",
        "web_search_call",
        "tool_search_call",
        "tool_search_output",
        "image_generation_call",
        "code_interpreter_call",
        "local_shell_call",
        "local_shell_call_output",
        "shell_call",
        "shell_call_output",
        "apply_patch_call",
        "apply_patch_call_output",
        "mcp_list_tools",
        "mcp_approval_request",
        "mcp_approval_response",
        "mcp_call",
        "custom_tool_call",
        "custom_tool_call_output",
        "program",
        "program_output",
    }
)
_IMAGE_DETAIL = ("auto", "low", "high")
#: chat ``finish_reason`` → Responses ``incomplete_details.reason``
_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
}


def _new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(24)}"


# --- errors ------------------------------------------------------------------------------------


def error_body(
    status: int, message: str, param: str | None = None, code: str | None = None
) -> bytes:
    """The error envelope Responses shares with the rest of OpenAI's API."""
    type_ = _ERROR_TYPES.get(status) or (
        "server_error" if status >= 500 else "invalid_request_error"
    )
    return dumps({"error": {"message": message, "type": type_, "param": param, "code": code}})


def _stateless(param: str, what: str) -> InvalidRequest:
    return InvalidRequest(
        f"Nexus keeps no conversation state: {what} is not supported; send the whole "
        "conversation in `input` on every request (the earlier input items and the output "
        "items of the earlier responses)",
        param=param,
    )


# --- request -----------------------------------------------------------------------------------


def parse_request(raw: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    """A Responses request → (the request as sent, the canonical chat request).

    Raises ``InvalidRequest`` naming the field for anything no backend could be sent."""
    body = parse_object(raw)
    _refuse_state(body)
    check_stream(body)
    messages: list[dict[str, Any]] = []
    instructions = body.get("instructions")
    if instructions is not None:
        if not isinstance(instructions, str):
            raise InvalidRequest(
                f"'instructions' must be a string, got {json_kind(instructions)}",
                param="instructions",
            )
        if instructions:
            messages.append({"role": "system", "content": instructions})
    messages.extend(_messages(body.get("input")))
    if not messages:
        raise InvalidRequest(
            "'input' is empty and there are no 'instructions': nothing to answer", param="input"
        )
    chat: dict[str, Any] = {"model": body["model"], "messages": messages}
    _tools(body, chat)
    _text_format(body, chat)
    _settings(body, chat)
    if body.get("stream"):
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}
    return body, chat


def _refuse_state(body: dict[str, Any]) -> None:
    if body.get("previous_response_id") is not None:
        raise _stateless("previous_response_id", "`previous_response_id`")
    if body.get("conversation") is not None:
        raise _stateless("conversation", "`conversation`")
    if body.get("background") is True:
        raise InvalidRequest(
            "'background' responses are not supported: Nexus stores no responses to poll; "
            "send the request without 'background' (stream it for a long answer)",
            param="background",
        )
    if body.get("prompt") is not None:
        raise InvalidRequest(
            "'prompt' (a stored prompt template) is not supported: Nexus stores no prompts; "
            "send the text in 'instructions' and 'input'",
            param="prompt",
        )


def _messages(value: Any) -> list[dict[str, Any]]:
    if value is None:
        raise InvalidRequest(
            "'input' is required: a string, or a list of input items (messages, function calls "
            "and their outputs)",
            param="input",
        )
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if not isinstance(value, list):
        raise InvalidRequest(
            f"'input' must be a string or a list of input items, got {json_kind(value)}",
            param="input",
        )
    messages: list[dict[str, Any]] = []
    for i, item in enumerate(value):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            raise InvalidRequest(
                f"'{where}' must be an input item (an object), got {json_kind(item)}", param=where
            )
        kind = item.get("type")
        if kind is None:  # an easy message has no type; an item reference may have none
            kind = "message" if "role" in item else "item_reference" if "id" in item else None
        if kind is not None and not isinstance(kind, str):
            kind = "?"  # any other JSON value: named as unknown below
        if kind == "message":
            messages.append(_message(item, where))
        elif kind == "function_call":
            call = _function_call(item, where)
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant":
                last.setdefault("tool_calls", []).append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            messages.append(_tool_message(item, where))
        elif kind == "reasoning":
            continue
        elif kind == "item_reference":
            raise _stateless(where, "an `item_reference` input item")
        elif kind in _HOSTED_ITEMS:
            raise InvalidRequest(
                f"'{where}' is a {kind} item: Nexus runs no hosted tools, so it takes only "
                "message, function_call, function_call_output and reasoning items",
                param=f"{where}.type",
            )
        elif kind is None:
            raise InvalidRequest(
                f"'{where}' has no 'type': say what the item is (message, function_call, "
                "function_call_output, reasoning)",
                param=f"{where}.type",
            )
        else:
            raise InvalidRequest(
                f"'{where}' has an unknown type {_show(item.get('type'))}; Nexus takes message, "
                "function_call, function_call_output and reasoning items",
                param=f"{where}.type",
            )
    return messages


def _message(item: dict[str, Any], where: str) -> dict[str, Any]:
    role = _ROLES.get(item.get("role")) if isinstance(item.get("role"), str) else None
    if role is None:
        raise InvalidRequest(
            f"'{where}.role' must be one of user, assistant, system, developer, got "
            f"{_show(item.get('role'))}",
            param=f"{where}.role",
        )
    content = item.get("content")
    if isinstance(content, str):
        return {"role": role, "content": content}
    if not isinstance(content, list):
        raise InvalidRequest(
            f"'{where}.content' must be a string or a list of content parts, got "
            f"{json_kind(content)}",
            param=f"{where}.content",
        )
    parts = [_part(part, f"{where}.content[{j}]") for j, part in enumerate(content)]
    if role == "assistant":
        texts = []
        for j, part in enumerate(parts):
            if part["type"] != "text":
                raise InvalidRequest(
                    f"'{where}.content[{j}]': an assistant message carries text only",
                    param=f"{where}.content[{j}]",
                )
            texts.append(part["text"])
        return {"role": role, "content": "".join(texts)}
    return {"role": role, "content": parts}


def _part(part: Any, where: str) -> dict[str, Any]:
    """One content part → chat's (a ``refusal`` is kept as text for the assistant join)."""
    if not isinstance(part, dict):
        raise InvalidRequest(
            f"'{where}' must be a content part (an object), got {json_kind(part)}", param=where
        )
    kind = part.get("type")
    if kind in ("input_text", "output_text", "refusal"):
        key = "refusal" if kind == "refusal" else "text"
        text = part.get(key)
        if not isinstance(text, str):
            raise InvalidRequest(
                f"'{where}.{key}' must be a string, got {json_kind(text)}", param=f"{where}.{key}"
            )
        return {"type": "text", "text": text}
    if kind == "input_image":
        url = part.get("image_url")
        if isinstance(url, str) and url:
            image: dict[str, Any] = {"url": url}
            if part.get("detail") in _IMAGE_DETAIL:
                image["detail"] = part["detail"]
            return {"type": "image_url", "image_url": image}
        if part.get("file_id") is not None:
            raise _no_file_store(where, "image", "'image_url' (a URL or a data: URL)")
        raise InvalidRequest(
            f"'{where}' needs 'image_url': a URL or a data: URL of the image",
            param=f"{where}.image_url",
        )
    if kind == "input_file":
        data = part.get("file_data")
        if isinstance(data, str) and data:
            file = {"file_data": data}
            if isinstance(part.get("filename"), str):
                file["filename"] = part["filename"]
            return {"type": "file", "file": file}
        if part.get("file_id") is not None:
            raise _no_file_store(where, "file", "'file_data' (a data: URL)")
        if part.get("file_url") is not None:
            raise InvalidRequest(
                f"'{where}.file_url' is not supported: chat backends take files inline; send "
                "the file as 'file_data' (a data: URL) with a 'filename'",
                param=f"{where}.file_url",
            )
        raise InvalidRequest(
            f"'{where}' needs 'file_data': the file as a data: URL", param=f"{where}.file_data"
        )
    if kind == "input_audio":
        audio = part.get("input_audio")
        if not isinstance(audio, dict) or not isinstance(audio.get("data"), str):
            raise InvalidRequest(
                f"'{where}.input_audio' must be an object with 'data' (base64) and 'format'",
                param=f"{where}.input_audio",
            )
        return {"type": "input_audio", "input_audio": audio}
    raise InvalidRequest(
        f"'{where}' has an unknown content part type {_show(kind)}; Nexus takes input_text, "
        "output_text, refusal, input_image, input_file and input_audio",
        param=f"{where}.type",
    )


def _no_file_store(where: str, what: str, instead: str) -> InvalidRequest:
    return InvalidRequest(
        f"'{where}.file_id' is not supported: Nexus has no file store; send the {what} as "
        f"{instead}",
        param=f"{where}.file_id",
    )


def _function_call(item: dict[str, Any], where: str) -> dict[str, Any]:
    call_id = _required_str(item, "call_id", where, "the id the function_call_output will name")
    name = _required_str(item, "name", where, "the function's name")
    arguments = item.get("arguments")
    if isinstance(arguments, dict):  # lenient: an object where a JSON string belongs
        arguments = dumps(arguments).decode()
    elif not isinstance(arguments, str):
        raise InvalidRequest(
            f"'{where}.arguments' must be a string of JSON, got {json_kind(arguments)}",
            param=f"{where}.arguments",
        )
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def _tool_message(item: dict[str, Any], where: str) -> dict[str, Any]:
    call_id = _required_str(item, "call_id", where, "the call_id of the function_call answered")
    output = item.get("output")
    if isinstance(output, list):
        texts = []
        for j, part in enumerate(output):
            text = part.get("text") if isinstance(part, dict) else None
            if _part_type(part) not in ("input_text", "output_text") or not isinstance(text, str):
                raise InvalidRequest(
                    f"'{where}.output[{j}]': a function_call_output can carry only text to a "
                    "chat backend (input_text parts)",
                    param=f"{where}.output[{j}]",
                )
            texts.append(text)
        output = "".join(texts)
    elif not isinstance(output, str):
        raise InvalidRequest(
            f"'{where}.output' is required: the function's result as a string, got "
            f"{json_kind(output)}",
            param=f"{where}.output",
        )
    return {"role": "tool", "tool_call_id": call_id, "content": output}


def _part_type(part: Any) -> Any:
    return part.get("type") if isinstance(part, dict) else None


def _required_str(item: dict[str, Any], key: str, where: str, meaning: str) -> str:
    value = item.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidRequest(
            f"'{where}.{key}' is required: {meaning} (a non-empty string), got {json_kind(value)}",
            param=f"{where}.{key}",
        )
    return value


def _tools(body: dict[str, Any], chat: dict[str, Any]) -> None:
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise InvalidRequest(
                f"'tools' must be a list of tools, got {json_kind(tools)}", param="tools"
            )
        functions, hosted = [], []
        for i, tool in enumerate(tools):
            where = f"tools[{i}]"
            if not isinstance(tool, dict):
                raise InvalidRequest(
                    f"'{where}' must be a tool (an object), got {json_kind(tool)}", param=where
                )
            if tool.get("type") == "function":
                functions.append(_function_tool(tool, where))
            else:
                hosted.append(_show(tool.get("type")))
        if hosted:
            raise InvalidRequest(
                f"'tools' has tools of type {', '.join(dict.fromkeys(hosted))}: Nexus runs no "
                "hosted tools (web search, file search, computer use, code interpreter, MCP, "
                "image generation …); declare function tools and run them in your code",
                param="tools",
            )
        if functions:
            chat["tools"] = functions
    choice = body.get("tool_choice")
    if choice is not None:
        chat_choice = _tool_choice(choice)
        if "tools" in chat:
            chat["tool_choice"] = chat_choice
        elif chat_choice not in ("auto", "none"):
            raise InvalidRequest(
                "'tool_choice' asks for a tool call but 'tools' declares no function",
                param="tool_choice",
            )
    parallel = body.get("parallel_tool_calls")
    if parallel is not None:
        if not isinstance(parallel, bool):
            raise InvalidRequest(
                f"'parallel_tool_calls' must be true or false, got {json_kind(parallel)}",
                param="parallel_tool_calls",
            )
        if "tools" in chat:
            chat["parallel_tool_calls"] = parallel


def _function_tool(tool: dict[str, Any], where: str) -> dict[str, Any]:
    function: dict[str, Any] = {"name": _required_str(tool, "name", where, "the function's name")}
    for key, kind, what in (
        ("description", str, "a string"),
        ("parameters", dict, "a JSON Schema object"),
        ("strict", bool, "true or false"),
    ):
        value = tool.get(key)
        if value is None:
            continue
        if not isinstance(value, kind):
            raise InvalidRequest(
                f"'{where}.{key}' must be {what}, got {json_kind(value)}", param=f"{where}.{key}"
            )
        function[key] = value
    return {"type": "function", "function": function}


def _tool_choice(choice: Any) -> Any:
    if choice in ("auto", "none", "required"):
        return choice
    if isinstance(choice, dict) and choice.get("type") == "function":
        name = choice.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidRequest(
                "'tool_choice.name' is required: the function to call", param="tool_choice.name"
            )
        return {"type": "function", "function": {"name": name}}
    what = f"type {_show(choice.get('type'))}" if isinstance(choice, dict) else _show(choice)
    raise InvalidRequest(
        f'\'tool_choice\' {what} is not supported: use "auto", "none", "required" or '
        '{"type": "function", "name": …}',
        param="tool_choice",
    )


def _text_format(body: dict[str, Any], chat: dict[str, Any]) -> None:
    text = body.get("text")
    if text is None:
        return
    if not isinstance(text, dict):
        raise InvalidRequest(f"'text' must be an object, got {json_kind(text)}", param="text")
    fmt = text.get("format")
    if fmt is not None:
        kind = fmt.get("type") if isinstance(fmt, dict) else None
        if kind == "json_object":
            chat["response_format"] = {"type": "json_object"}
        elif kind == "json_schema":
            chat["response_format"] = {"type": "json_schema", "json_schema": _json_schema(fmt)}
        elif kind != "text":
            raise InvalidRequest(
                f"'text.format.type' must be text, json_object or json_schema, got "
                f"{_show(kind) if isinstance(fmt, dict) else json_kind(fmt)}",
                param="text.format.type",
            )
    verbosity = text.get("verbosity")
    if isinstance(verbosity, str):
        chat["verbosity"] = verbosity


def _json_schema(fmt: dict[str, Any]) -> dict[str, Any]:
    name = fmt.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidRequest(
            "'text.format.name' is required for json_schema: the schema's name",
            param="text.format.name",
        )
    schema = fmt.get("schema")
    if not isinstance(schema, dict):
        raise InvalidRequest(
            f"'text.format.schema' is required for json_schema: a JSON Schema object, got "
            f"{json_kind(schema)}",
            param="text.format.schema",
        )
    out: dict[str, Any] = {"name": name, "schema": schema}
    for key, kind in (("strict", bool), ("description", str)):
        value = fmt.get(key)
        if value is not None:
            if not isinstance(value, kind):
                raise InvalidRequest(
                    f"'text.format.{key}' has the wrong type ({json_kind(value)})",
                    param=f"text.format.{key}",
                )
            out[key] = value
    return out


def _settings(body: dict[str, Any], chat: dict[str, Any]) -> None:
    limit = body.get("max_output_tokens")
    if limit is not None:
        if int_or_none(limit) is None or limit < 1:
            raise InvalidRequest(
                f"'max_output_tokens' must be a positive integer, got {_show(limit)}",
                param="max_output_tokens",
            )
        chat["max_tokens"] = limit
    for key, top in (("temperature", 2), ("top_p", 1)):
        value = body.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= top:
            raise InvalidRequest(
                f"'{key}' must be a number from 0 to {top}, got {_show(value)}", param=key
            )
        chat[key] = value
    for key in ("safety_identifier", "user", "prompt_cache_key", "service_tier"):
        value = body.get(key)
        if value is not None and not isinstance(value, str):
            raise InvalidRequest(f"'{key}' must be a string, got {json_kind(value)}", param=key)
    user = body.get("safety_identifier") or body.get("user")
    if user:
        chat["user"] = user
    for key in ("prompt_cache_key", "service_tier"):
        if body.get(key):
            chat[key] = body[key]
    metadata = body.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise InvalidRequest(
            f"'metadata' must be an object of strings, got {json_kind(metadata)}", param="metadata"
        )
    reasoning = body.get("reasoning")
    if reasoning is not None:
        if not isinstance(reasoning, dict):
            raise InvalidRequest(
                f"'reasoning' must be an object, got {json_kind(reasoning)}", param="reasoning"
            )
        if isinstance(reasoning.get("effort"), str):
            chat["reasoning_effort"] = reasoning["effort"]


def _show(value: Any) -> str:
    """A value for an error message, short."""
    text = dumps(value).decode() if isinstance(value, str | int | float | bool) else None
    return text[:80] if text is not None else json_kind(value)


# --- answers -----------------------------------------------------------------------------------


def _echo(request: dict[str, Any]) -> dict[str, Any]:
    """The request's settings a Response repeats, with the API's defaults."""

    def given(key: str, kinds: tuple[type, ...], default: Any = None) -> Any:
        value = request.get(key)
        if isinstance(value, bool) and bool not in kinds:
            return default
        return value if isinstance(value, kinds) else default

    return {
        "background": False,
        "instructions": given("instructions", (str,)),
        "max_output_tokens": given("max_output_tokens", (int,)),
        "metadata": given("metadata", (dict,), {}),
        "parallel_tool_calls": given("parallel_tool_calls", (bool,), True),
        "previous_response_id": None,
        "reasoning": given("reasoning", (dict,)),
        "safety_identifier": given("safety_identifier", (str,)),
        "service_tier": given("service_tier", (str,)),
        "store": False,
        "temperature": given("temperature", (int, float)),
        "text": given("text", (dict,), {"format": {"type": "text"}}),
        "tool_choice": given("tool_choice", (str, dict), "auto"),
        "tools": given("tools", (list,), []),
        "top_p": given("top_p", (int, float)),
        "truncation": "disabled",
        "user": given("user", (str,)),
    }


def _response(
    echo: dict[str, Any],
    id_: str,
    created_at: int,
    model: str,
    status: str,
    output: list[dict[str, Any]],
    usage: dict[str, Any] | None,
    incomplete: str | None = None,
    error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    body = {
        "id": id_,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "completed_at": int(time.time()) if status == "completed" else None,
        "error": error,
        "incomplete_details": {"reason": incomplete} if incomplete else None,
        "model": model,
        "output": output,
        "usage": usage,
    }
    body.update(echo)
    return body


def _usage(usage: Any) -> dict[str, Any] | None:
    """Chat usage → Responses usage (None when the backend counted nothing)."""
    if not isinstance(usage, dict):
        return None
    prompt = int_or_none(usage.get("prompt_tokens")) or 0
    completion = int_or_none(usage.get("completion_tokens")) or 0
    prompt_details = usage.get("prompt_tokens_details")
    completion_details = usage.get("completion_tokens_details")
    cached = prompt_details.get("cached_tokens") if isinstance(prompt_details, dict) else None
    reasoning = (
        completion_details.get("reasoning_tokens") if isinstance(completion_details, dict) else None
    )
    total = int_or_none(usage.get("total_tokens"))
    return {
        "input_tokens": prompt,
        "input_tokens_details": {
            "cached_tokens": int_or_none(cached) or 0,
            "cache_write_tokens": 0,
        },
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": int_or_none(reasoning) or 0},
        "total_tokens": total if total is not None else prompt + completion,
    }


def _part_object(kind: str, text: str) -> dict[str, Any]:
    if kind == "output_text":
        return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
    if kind == "refusal":
        return {"type": "refusal", "refusal": text}
    return {"type": "reasoning_text", "text": text}


def _message_item(id_: str, parts: list[dict[str, Any]], status: str) -> dict[str, Any]:
    return {"id": id_, "type": "message", "status": status, "role": "assistant", "content": parts}


def _reasoning_item(id_: str, parts: list[dict[str, Any]], status: str) -> dict[str, Any]:
    return {"id": id_, "type": "reasoning", "status": status, "summary": [], "content": parts}


def _call_item(id_: str, call_id: str, name: str, arguments: str, status: str) -> dict[str, Any]:
    return {
        "id": id_,
        "type": "function_call",
        "status": status,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
    }


def _reasoning_of(message: dict[str, Any]) -> str | None:
    """The reasoning text, by either name backends give it (vLLM/DeepSeek, Ollama/OpenRouter)."""
    for key in ("reasoning_content", "reasoning"):
        value = message.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def _status(finish: Any) -> tuple[str, str | None]:
    reason = _INCOMPLETE.get(finish) if isinstance(finish, str) else None
    return ("incomplete" if reason else "completed"), reason


def response_from_completion(body: bytes, request: dict[str, Any]) -> bytes:
    """A ``chat.completion`` → the Response object for the request (the client's, as sent).

    Raises ``UpstreamProtocolError`` when the answer is not a completion."""
    completion = json_object(body)
    if completion is None:
        raise UpstreamProtocolError("the backend's answer is not a JSON object")
    choices = completion.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise UpstreamProtocolError("the backend's answer has no choices: not a chat completion")
    choice = choices[0]
    message = choice.get("message")
    message = message if isinstance(message, dict) else {}
    status, incomplete = _status(choice.get("finish_reason"))
    output: list[dict[str, Any]] = []
    reasoning = _reasoning_of(message)
    if reasoning:
        output.append(
            _reasoning_item(_new_id("rs"), [_part_object("reasoning_text", reasoning)], "completed")
        )
    content = message.get("content")
    if isinstance(content, list):  # a backend answering in parts
        content = "".join(
            p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)
        )
    parts = [_part_object("output_text", content)] if isinstance(content, str) and content else []
    refusal = message.get("refusal")
    if isinstance(refusal, str) and refusal:
        parts.append(_part_object("refusal", refusal))
    calls = [c for c in message.get("tool_calls") or () if isinstance(c, dict)]
    if parts or not calls:  # an empty answer is still a message, as a stream gives it
        output.append(
            _message_item(_new_id("msg"), parts or [_part_object("output_text", "")], "completed")
        )
    for call in calls:
        function = call.get("function")
        function = function if isinstance(function, dict) else {}
        call_id = call.get("id")
        arguments = function.get("arguments")
        output.append(
            _call_item(
                _new_id("fc"),
                call_id if isinstance(call_id, str) and call_id else _new_id("call"),
                function.get("name") if isinstance(function.get("name"), str) else "",
                arguments if isinstance(arguments, str) else dumps(arguments or {}).decode(),
                "completed",
            )
        )
    if incomplete:
        output[-1]["status"] = "incomplete"  # the item the stop cut short
    model = completion.get("model")
    response = _response(
        _echo(request),
        _new_id("resp"),
        int(time.time()),
        model if isinstance(model, str) and model else str(request.get("model")),
        status,
        output,
        _usage(completion.get("usage")),
        incomplete,
    )
    return dumps(response)


# --- streams -----------------------------------------------------------------------------------


class _TextItem:
    """A message or reasoning item being streamed: its finished parts and the open one."""

    __slots__ = ("final", "head", "id", "index", "kind", "part", "parts", "texts")

    def __init__(self, kind: str, id_: str, index: int) -> None:
        self.kind, self.id, self.index = kind, id_, index
        self.parts: list[dict[str, Any]] = []
        self.part: str | None = None  # the open part's kind
        self.texts: list[str] = []  # the open part's deltas
        self.head = b""  # its delta event, rendered up to the delta
        self.final: dict[str, Any] | None = None

    def item(self, status: str) -> dict[str, Any]:
        parts = self.parts
        if self.part is not None:
            parts = [*parts, _part_object(self.part, "".join(self.texts))]
        build = _message_item if self.kind == "message" else _reasoning_item
        return build(self.id, parts, status)


class _CallItem:
    __slots__ = ("args", "call_id", "chat_id", "final", "head", "id", "index", "name")

    def __init__(self, id_: str, index: int, call_id: str, chat_id: str | None, name: str):
        self.id, self.index, self.call_id, self.chat_id, self.name = (
            id_,
            index,
            call_id,
            chat_id,
            name,
        )
        self.args: list[str] = []
        self.head = b""
        self.final: dict[str, Any] | None = None

    def item(self, status: str) -> dict[str, Any]:
        return _call_item(self.id, self.call_id, self.name, "".join(self.args), status)


#: per part kind: the delta event and the done event with the key of its text
_PART_EVENTS = {
    "output_text": ("response.output_text.delta", "response.output_text.done", "text"),
    "refusal": ("response.refusal.delta", "response.refusal.done", "refusal"),
    "reasoning_text": ("response.reasoning_text.delta", "response.reasoning_text.done", "text"),
}


#: the most chat-stream bytes one streamed Response may hold (it repeats the whole answer in
#: its closing events); the default ``server.max_response_bytes``
MAX_ANSWER_BYTES = 64 * 1024 * 1024


class ResponsesStreamEncoder:
    """The chat chunks of one answer (as Nexus relays them, in any network chunking) → the
    Responses event stream for the request.

    Events come out as the chat chunks allow: ``response.created`` when the first chunk is
    read (it names the model), each item's ``done`` events when another item starts or the
    answer finishes. Tool calls stay open until the finish, so interleaved argument pieces of
    several calls all land; text or reasoning closes when something else starts. After
    ``response.completed``, ``incomplete`` or ``failed`` nothing more is sent."""

    __slots__ = (
        "_bytes",
        "_calls",
        "_created_at",
        "_current",
        "_done",
        "_echo",
        "_events",
        "_finish",
        "_id",
        "_model",
        "_out",
        "_output",
        "_seq",
        "_started",
        "_usage",
        "failed",
    )

    def __init__(self, request: dict[str, Any], max_event_bytes: int | None = None) -> None:
        self._echo = _echo(request)
        self._events = SSEEvents(max_event_bytes)
        self._id = _new_id("resp")
        self._created_at = int(time.time())
        self._model = str(request.get("model"))
        self._seq = 0
        self._started = self._done = False
        self._output: list[_TextItem | _CallItem] = []
        self._current: _TextItem | None = None  # the open message or reasoning item
        self._calls: dict[int, _CallItem] = {}  # open tool calls by their chat index
        self._finish: str | None = None
        self._usage: Any = None
        self._out: list[bytes] = []
        self._bytes = 0  # chat bytes read: the answer is kept until response.completed
        #: why the stream ended with ``response.failed`` (the request is recorded as failed)
        self.failed: str | None = None

    def feed(self, data: bytes) -> bytes:
        if self._done:
            return b""
        self._bytes += len(data)
        if self._bytes > MAX_ANSWER_BYTES:  # a backend streaming without end: bounded
            self._fail(f"the answer is larger than {MAX_ANSWER_BYTES} bytes")
            return self._take()
        try:
            events = self._events.feed(data)
        except UpstreamError as exc:  # an event over the size limit: the stream is broken
            self._fail(f"the backend's stream broke: {exc.message}")
            return self._take()
        for event in events:
            self._event(event.data)
            if self._done:
                break
        return self._take()

    def flush(self) -> bytes:
        """At the end of the chat stream: the closing events (``failed`` if it stopped short)."""
        if not self._done:
            for event in self._events.flush():
                self._event(event.data)
                if self._done:
                    return self._take()
            if self._finish is not None:
                self._end()
            else:
                self._fail("the backend's stream ended before the answer was finished")
        return self._take()

    def _take(self) -> bytes:
        out = b"".join(self._out)
        self._out.clear()
        return out

    # --- reading chat chunks

    def _event(self, data: str) -> None:
        if data == "[DONE]":
            self._end()
            return
        chunk = json_object(data)
        if chunk is None:
            return  # not a chunk (a keep-alive of some kind): nothing to translate
        error = chunk.get("error")
        if error is not None and "choices" not in chunk:
            message = error.get("message") if isinstance(error, dict) else error
            self._fail(message if isinstance(message, str) and message else "the backend failed")
            return
        if not self._started:
            self._start(chunk.get("model"))
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self._usage = usage
        choices = chunk.get("choices")
        if not isinstance(choices, list):
            return
        for choice in choices:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue  # Responses has one answer: the first choice's
            delta = choice.get("delta")
            if isinstance(delta, dict):
                self._delta(delta)
            finish = choice.get("finish_reason")
            if isinstance(finish, str) and finish:
                self._finish = finish
                self._close_all(_status(finish)[0])

    def _delta(self, delta: dict[str, Any]) -> None:
        reasoning = _reasoning_of(delta)
        if reasoning:
            self._text("reasoning", "reasoning_text", reasoning)
        content = delta.get("content")
        if isinstance(content, str) and content:
            self._text("message", "output_text", content)
        refusal = delta.get("refusal")
        if isinstance(refusal, str) and refusal:
            self._text("message", "refusal", refusal)
        calls = delta.get("tool_calls")
        if isinstance(calls, list):
            for position, call in enumerate(calls):
                if isinstance(call, dict):
                    self._tool_delta(position, call)

    def _text(self, kind: str, part: str, text: str) -> None:
        item = self._current
        if item is None or item.kind != kind:
            if item is not None:
                self._close_text(item, "completed")
            item = self._current = self._open_text(kind)
        if item.part != part:
            if item.part is not None:
                self._close_part(item)
            self._open_part(item, part)
        item.texts.append(text)
        self._raw_delta(item.head, text)

    def _tool_delta(self, position: int, call: dict[str, Any]) -> None:
        index = int_or_none(call.get("index"))
        index = position if index is None else index
        function = call.get("function")
        function = function if isinstance(function, dict) else {}
        chat_id = call.get("id") if isinstance(call.get("id"), str) and call["id"] else None
        name = function.get("name") if isinstance(function.get("name"), str) else ""
        item = self._calls.get(index)
        # a new id at a known index is a new call (some backends number every call 0)
        if item is None or (chat_id and item.chat_id and chat_id != item.chat_id):
            if self._current is not None:
                self._close_text(self._current, "completed")
                self._current = None
            if item is not None:  # the call it replaces is whole
                self._close_call(item, "completed")
            item = _CallItem(
                _new_id("fc"), len(self._output), chat_id or _new_id("call"), chat_id, name
            )
            self._calls[index] = item
            self._output.append(item)
            self._emit(
                "response.output_item.added",
                {"output_index": item.index, "item": item.item("in_progress")},
            )
            item.head = self._head(
                "response.function_call_arguments.delta", item.id, item.index, None
            )
        elif name and not item.name:
            item.name = name
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            item.args.append(arguments)
            self._raw_delta(item.head, arguments)

    # --- writing Responses events

    def _emit(self, type_: str, fields: dict[str, Any]) -> None:
        payload = {"type": type_, **fields, "sequence_number": self._seq}
        self._seq += 1
        self._out.append(b"event: " + type_.encode() + b"\ndata: " + dumps(payload) + b"\n\n")

    def _emit_rendered(self, type_: str, fields: bytes) -> None:
        """An event from its fields' JSON (``"key":value,…``): what ``_emit`` would give."""
        name = type_.encode()
        seq = str(self._seq).encode()
        self._seq += 1
        head = (b"event: ", name, b'\ndata: {"type":"', name, b'",', fields)
        self._out.append(b"".join((*head, b',"sequence_number":', seq, b"}\n\n")))

    @staticmethod
    def _head(type_: str, item_id: str, index: int, content_index: int | None) -> bytes:
        """A delta event up to its delta: the same for every delta of one part."""
        fields = b'","item_id":' + dumps(item_id) + b',"output_index":' + str(index).encode()
        if content_index is not None:
            fields += b',"content_index":' + str(content_index).encode()
            if type_ == "response.output_text.delta":
                fields += b',"logprobs":[]'
        name = type_.encode()
        return b"event: " + name + b'\ndata: {"type":"' + name + fields + b',"delta":'

    def _raw_delta(self, head: bytes, delta: str) -> None:
        seq = str(self._seq).encode()
        self._seq += 1
        self._out.append(b"".join((head, dumps(delta), b',"sequence_number":', seq, b"}\n\n")))

    def _start(self, model: Any) -> None:
        self._started = True
        if isinstance(model, str) and model:
            self._model = model
        snapshot = b'"response":' + dumps(self._response("in_progress", [], None))
        self._emit_rendered("response.created", snapshot)  # one snapshot, rendered once
        self._emit_rendered("response.in_progress", snapshot)

    def _response(
        self,
        status: str,
        output: list[dict[str, Any]],
        incomplete: str | None,
        error: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        usage = _usage(self._usage) if status != "in_progress" else None
        return _response(
            self._echo,
            self._id,
            self._created_at,
            self._model,
            status,
            output,
            usage,
            incomplete,
            error,
        )

    def _open_text(self, kind: str) -> _TextItem:
        item = _TextItem(kind, _new_id("msg" if kind == "message" else "rs"), len(self._output))
        self._output.append(item)
        self._emit(
            "response.output_item.added",
            {"output_index": item.index, "item": item.item("in_progress")},
        )
        return item

    def _open_part(self, item: _TextItem, kind: str) -> None:
        item.part = kind
        content_index = len(item.parts)
        self._emit(
            "response.content_part.added",
            {
                "item_id": item.id,
                "output_index": item.index,
                "content_index": content_index,
                "part": _part_object(kind, ""),
            },
        )
        item.head = self._head(_PART_EVENTS[kind][0], item.id, item.index, content_index)

    def _close_part(self, item: _TextItem) -> None:
        kind = item.part
        assert kind is not None
        text = "".join(item.texts)
        part = _part_object(kind, text)
        where = {"item_id": item.id, "output_index": item.index, "content_index": len(item.parts)}
        _, done, key = _PART_EVENTS[kind]
        fields = {**where, key: text}
        if kind == "output_text":
            fields["logprobs"] = []
        self._emit(done, fields)
        self._emit("response.content_part.done", {**where, "part": part})
        item.parts.append(part)
        item.part, item.texts = None, []

    def _close_text(self, item: _TextItem, status: str) -> None:
        if item.part is not None:
            self._close_part(item)
        item.final = item.item(status)
        self._emit("response.output_item.done", {"output_index": item.index, "item": item.final})

    def _close_call(self, item: _CallItem, status: str) -> None:
        arguments = "".join(item.args)
        self._emit(
            "response.function_call_arguments.done",
            {"item_id": item.id, "output_index": item.index, "arguments": arguments},
        )
        item.final = item.item(status)
        self._emit("response.output_item.done", {"output_index": item.index, "item": item.final})

    def _close_all(self, status: str) -> None:
        """Every open item done, in output order (the finish decides their status)."""
        open_items: list[_TextItem | _CallItem] = list(self._calls.values())
        if self._current is not None:
            open_items.append(self._current)
        for item in sorted(open_items, key=lambda it: it.index):
            if isinstance(item, _CallItem):
                self._close_call(item, status)
            else:
                self._close_text(item, status)
        self._calls.clear()
        self._current = None

    def _end(self) -> None:
        if not self._started:
            self._start(None)
        status, incomplete = _status(self._finish)
        self._close_all(status)
        if not self._output:  # an empty answer is still a message, as a whole one gives it
            item = self._open_text("message")
            self._open_part(item, "output_text")
            self._close_text(item, status)
        output = [item.final for item in self._output if item.final is not None]
        self._emit(f"response.{status}", {"response": self._response(status, output, incomplete)})
        self._done = True

    def _fail(self, message: str) -> None:
        self.failed = message
        if not self._started:
            self._start(None)
        output = [item.final or item.item("incomplete") for item in self._output]
        error = {"code": "server_error", "message": message}
        self._emit("response.failed", {"response": self._response("failed", output, None, error)})
        self._done = True
