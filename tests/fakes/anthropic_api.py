"""Anthropic's API: `POST /v1/messages` (whole or streamed), `POST /v1/messages/count_tokens`,
`GET /v1/models` and `GET /v1/models/{id}`, with its auth, validation and error envelope.

Wire details kept as the real API has them:

- Auth: `x-api-key`, or when that header is absent the key as `Authorization: Bearer` (the
  anthropic SDK sends it that way since its 2.x releases): the configured key, or any
  non-empty one when none is configured; else 401 `authentication_error`. No
  `anthropic-version` header is a 400 `invalid_request_error` (as the real API answers;
  checked after the key).
- Errors: `{"type": "error", "error": {"type", "message"}, "request_id"}`, the `type` following
  the status (`ERROR_TYPES`), a `request-id` header, and `retry-after` while the
  `retry_after` fault is set.
- Validation (400 `invalid_request_error`, worded like the real one): unknown top-level
  fields, `max_tokens` missing or below 1, no messages, roles other than user/assistant
  (`system` is a top-level field), a first turn that is not the user's, two turns of one role
  in a row (the fake stays strict here even though the real API now merges them), unknown
  content block types, images that are not `base64`/`url`/`file` sources of a supported media
  type, a `tool_result` whose id no `tool_use` of the previous turn has, a `tool_use` whose
  result the next turn lacks, tools without `input_schema`, a `tool_choice` naming no tool.
- Streams: `event:` + `data:` pairs: `message_start` (empty content, input usage), `ping`,
  per block `content_block_start` / `content_block_delta` (`text_delta`, `input_json_delta`
  starting with an empty `partial_json` then the JSON in fragments, `thinking_delta` +
  `signature_delta`) / `content_block_stop`, then `message_delta` (stop reason, output usage)
  and `message_stop`. `stream_error_after` sends `event: error` (`overloaded_error`) after
  that many deltas and ends the body; `drop_after_chunks` counts deltas too.

What the fake answers (deterministic, see `plan`): a last user turn carrying `tool_result`s
gets a text naming what the tools said (`Tool said: ...`); else offered `tools` are called
unless `tool_choice` is `none`; else the text is the backend's `reply`, after an `[image] `
per image received, cut at a `stop_sequences` hit (`stop_sequence`) or after `max_tokens`
pieces (`max_tokens`). `thinking: {type: "enabled"}` adds a thinking block first.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web

from . import hostile
from .openai_api import reply_json
from .state import (
    FakeModel,
    apply_stops,
    cap_pieces,
    count_words,
    fragments,
    pick_tools,
    reply_text,
    split_pieces,
    tool_arguments,
    tool_said,
)
from .wire import body_of, random_id, sse_event

if TYPE_CHECKING:
    from .server import FakeBackend

ERROR_TYPES = {
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
KNOWN_FIELDS = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "system",
        "stop_sequences",
        "stream",
        "temperature",
        "top_p",
        "top_k",
        "metadata",
        "tools",
        "tool_choice",
        "thinking",
        "service_tier",
        "container",
        "mcp_servers",
        "context_management",
        "output_config",
        "output_format",
        "cache_control",
        "diagnostics",
        "inference_geo",
        "speed",
        "user_profile_id",
        "workspace_id",
    }
)
BLOCK_TYPES = frozenset(
    {
        "text",
        "image",
        "document",
        "search_result",
        "thinking",
        "redacted_thinking",
        "tool_use",
        "tool_result",
        "server_tool_use",
        "web_search_tool_result",
        "web_fetch_tool_result",
        "code_execution_tool_result",
        "bash_code_execution_tool_result",
        "text_editor_code_execution_tool_result",
        "tool_search_tool_result",
        "mcp_tool_use",
        "mcp_tool_result",
        "container_upload",
        "tool_reference",
    }
)
IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
STREAM_ERROR = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
THOUGHT = "Let me think about that."


# ------------------------------------------------------------------------------ envelope
def error(fb: FakeBackend, status: int, message: str, err_type: str | None = None) -> web.Response:
    """Anthropic's error envelope, typed by status (unknown ones by class: 4xx, 5xx)."""
    if err_type is None:
        err_type = ERROR_TYPES.get(status, "invalid_request_error" if status < 500 else "api_error")
    request_id = random_id("req_01", 22)
    headers = {"request-id": request_id}
    if fb.faults.retry_after is not None and status >= 400:
        headers["retry-after"] = str(fb.faults.retry_after)
    body = {
        "type": "error",
        "error": {"type": err_type, "message": message},
        "request_id": request_id,
    }
    return web.json_response(body, status=status, headers=headers)


def check_auth(fb: FakeBackend, request: web.Request) -> web.Response | None:
    """`x-api-key`, else an API key as `Authorization: Bearer` (what the Python SDK sends
    since its 2.x releases); then `anthropic-version`."""
    key = request.headers.get("x-api-key", "").strip()
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if not key and scheme.lower() == "bearer":
        key = token.strip()
    if not key:
        return error(fb, 401, "x-api-key header is required")
    if fb.api_key is not None and key != fb.api_key:
        return error(fb, 401, "invalid x-api-key")
    if not request.headers.get("anthropic-version", "").strip():
        return error(fb, 400, "anthropic-version: header is required")
    return None


# ------------------------------------------------------------------------------- models
def display_name(ident: str) -> str:
    return " ".join(w.capitalize() for w in ident.replace("_", "-").split("-") if w)


def model_info(fb: FakeBackend, m: FakeModel) -> dict[str, Any]:
    created = datetime.fromtimestamp(fb.created, UTC).isoformat().replace("+00:00", "Z")
    return {
        "type": "model",
        "id": m.id,
        "display_name": display_name(m.id),
        "created_at": created,
        "max_input_tokens": m.context_length,
    }


def page(fb: FakeBackend, query: Any) -> dict[str, Any] | str:
    """One page of `GET /v1/models`: `limit` (1-1000, default 20), `after_id`, `before_id`."""
    raw = query.get("limit", "20")
    try:
        limit = int(raw)
    except ValueError:
        return "limit: Input should be a valid integer, unable to parse string as an integer"
    if not 1 <= limit <= 1000:
        return "limit: Input should be greater than or equal to 1 and less than or equal to 1000"
    ids = [m.id for m in fb.models]
    after, before = query.get("after_id"), query.get("before_id")
    start, stop = 0, len(ids)
    if after is not None:
        if after not in ids:
            return f"after_id: no model with id {after}"
        start = ids.index(after) + 1
    if before is not None:
        if before not in ids:
            return f"before_id: no model with id {before}"
        stop = ids.index(before)
    if before is not None and after is None:  # the page ending right before `before_id`
        chosen = fb.models[max(start, stop - limit) : stop]
        more = max(start, stop - limit) > start
    else:
        chosen = fb.models[start : min(stop, start + limit)]
        more = start + limit < stop
    data = [model_info(fb, m) for m in chosen]
    return {
        "data": data,
        "has_more": more,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
    }


# ---------------------------------------------------------------------------- validation
def _blocks(content: Any) -> list[dict[str, Any]]:
    """A message's content as blocks (a string is one text block)."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return [b for b in content if isinstance(b, dict)] if isinstance(content, list) else []


def _tool_ids(message: dict[str, Any], kind: str, key: str) -> list[str]:
    return [b.get(key) for b in _blocks(message.get("content")) if b.get("type") == kind]


def _check_block(where: str, block: Any) -> str | None:
    if not isinstance(block, dict) or not isinstance(block.get("type"), str):
        return f"{where}: Input should be a valid dictionary with a `type`"
    kind = block["type"]
    if kind not in BLOCK_TYPES:
        expected = ", ".join(f"'{t}'" for t in sorted(BLOCK_TYPES))
        return (
            f"{where}: Input tag '{kind}' found using 'type' does not match any of the "
            f"expected tags: {expected}"
        )
    if kind == "text" and not isinstance(block.get("text"), str):
        return f"{where}.text.text: Field required"
    if kind == "tool_use" and not (
        isinstance(block.get("id"), str)
        and isinstance(block.get("name"), str)
        and isinstance(block.get("input"), dict)
    ):
        return f"{where}.tool_use: `id`, `name` and `input` (an object) are required"
    if kind == "tool_result" and not isinstance(block.get("tool_use_id"), str):
        return f"{where}.tool_result.tool_use_id: Field required"
    if kind == "image":
        return _check_image(f"{where}.image.source", block.get("source"))
    return None


def _check_image(where: str, source: Any) -> str | None:
    if not isinstance(source, dict) or source.get("type") not in {"base64", "url", "file"}:
        return f"{where}: Input tag found using 'type' does not match 'base64', 'url' or 'file'"
    if source["type"] == "base64":
        if source.get("media_type") not in IMAGE_TYPES:
            allowed = ", ".join(f"'{t}'" for t in IMAGE_TYPES)
            return f"{where}.base64.media_type: Input should be {allowed}"
        if not isinstance(source.get("data"), str) or not source["data"]:
            return f"{where}.base64.data: Field required"
        if source["data"].startswith("data:"):
            return f"{where}.base64.data: a data URL is not base64 data"
    if source["type"] == "url" and not isinstance(source.get("url"), str):
        return f"{where}.url.url: Field required"
    return None


def validate(body: dict[str, Any]) -> str | None:
    """The real API's 400 message for a malformed Messages request, or None."""
    for key in body:
        if key not in KNOWN_FIELDS:
            return f"{key}: Extra inputs are not permitted"
    if "max_tokens" not in body:
        return "max_tokens: Field required"
    limit = body["max_tokens"]
    if not isinstance(limit, int) or isinstance(limit, bool):
        return "max_tokens: Input should be a valid integer"
    if limit < 1:
        return "max_tokens: Input should be greater than or equal to 1"
    if not isinstance(body.get("stream", False), bool):
        return "stream: Input should be a valid boolean"
    system = body.get("system")
    if system is not None and not isinstance(system, str | list):
        return "system: Input should be a valid string or a list of text blocks"
    problem = _check_messages(body.get("messages"))
    if problem is None:
        problem = _check_tools(body.get("tools"), body.get("tool_choice"))
    return problem


def _check_messages(messages: Any) -> str | None:
    if messages is None:
        return "messages: Field required"
    if not isinstance(messages, list):
        return "messages: Input should be a valid list"
    if not messages:
        return "messages: at least one message is required"
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            return f"messages.{i}: Input should be a valid dictionary"
        role = m.get("role")
        if role == "system":
            return (
                'messages: Unexpected role "system". The Messages API accepts a top-level '
                '`system` parameter, not "system" as an input message role.'
            )
        if role not in {"user", "assistant"}:
            return f"messages.{i}.role: Input should be 'user' or 'assistant'"
        content = m.get("content")
        if not isinstance(content, str | list):
            return f"messages.{i}.content: Input should be a valid string or list"
        if isinstance(content, list):
            for j, block in enumerate(content):
                problem = _check_block(f"messages.{i}.content.{j}", block)
                if problem is not None:
                    return problem
        if i == 0 and role != "user":
            return 'messages: first message must use the "user" role'
        if i > 0 and messages[i - 1].get("role") == role:
            return (
                'messages: roles must alternate between "user" and "assistant", but found '
                f'multiple "{role}" roles in a row'
            )
    for i, m in enumerate(messages):
        asked = _tool_ids(messages[i - 1], "tool_use", "id") if i > 0 else []
        if m["role"] == "user":
            for j, block in enumerate(_blocks(m.get("content"))):
                if block.get("type") == "tool_result" and block.get("tool_use_id") not in asked:
                    return (
                        f"messages.{i}.content.{j}: unexpected `tool_use_id` found in "
                        f"`tool_result` blocks: {block.get('tool_use_id')}. Each `tool_result` "
                        "block must have a corresponding `tool_use` block in the previous message."
                    )
        if m["role"] == "assistant" and i + 1 < len(messages):
            answered = _tool_ids(messages[i + 1], "tool_result", "tool_use_id")
            missing = [t for t in _tool_ids(m, "tool_use", "id") if t not in answered]
            if missing:
                return (
                    f"messages.{i + 1}: `tool_use` ids were found without `tool_result` blocks "
                    f"immediately after: {', '.join(missing)}. Each `tool_use` block must have "
                    "a corresponding `tool_result` block in the next message."
                )
    return None


def _custom_tools(tools: Any) -> list[tuple[str, Any]]:
    """The client tools (`name`, `input_schema`) the model could call; server tools skipped."""
    if not isinstance(tools, list):
        return []
    return [
        (t["name"], t.get("input_schema"))
        for t in tools
        if isinstance(t, dict) and t.get("type", "custom") == "custom" and "name" in t
    ]


def _check_tools(tools: Any, choice: Any) -> str | None:
    if tools is not None:
        if not isinstance(tools, list):
            return "tools: Input should be a valid list"
        for k, tool in enumerate(tools):
            if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
                return f"tools.{k}.name: Field required"
            if tool.get("type", "custom") == "custom" and not isinstance(
                tool.get("input_schema"), dict
            ):
                return f"tools.{k}.custom.input_schema: Field required"
    if choice is None:
        return None
    if not isinstance(choice, dict) or choice.get("type") not in {"auto", "any", "tool", "none"}:
        return "tool_choice: Input tag found using 'type' does not match 'auto', 'any', 'tool'"
    if choice["type"] == "tool":
        name = choice.get("name")
        if name not in [n for n, _ in _custom_tools(tools)]:
            return f"tool_choice.name: tool '{name}' was not found in `tools`"
    return None


# ---------------------------------------------------------------------------- the answer
def _result_text(content: Any) -> str:
    """What a `tool_result` said: its string, or its text blocks (an image as `[image]`)."""
    parts = []
    for block in _blocks(content):
        if block.get("type") == "text":
            parts.append(str(block.get("text", "")))
        elif block.get("type") == "image":
            parts.append("[image]")
    return " ".join(parts)


def _count_images(messages: list[dict[str, Any]]) -> int:
    count = 0
    for m in messages:
        for block in _blocks(m.get("content")):
            if block.get("type") == "image":
                count += 1
            elif block.get("type") == "tool_result":
                count += sum(1 for b in _blocks(block.get("content")) if b.get("type") == "image")
    return count


def plan(fb: FakeBackend, body: dict[str, Any]) -> tuple[list[dict[str, Any]], str, str | None]:
    """The content blocks, stop reason and stop sequence of the answer (whole blocks; a
    stream cuts them into deltas)."""
    messages: list[dict[str, Any]] = body["messages"]
    blocks: list[dict[str, Any]] = []
    thinking = body.get("thinking")
    if isinstance(thinking, dict) and thinking.get("type") in {"enabled", "adaptive"}:
        blocks.append({"type": "thinking", "thinking": THOUGHT, "signature": random_id("Eq", 40)})
    last = messages[-1]
    results = [
        _result_text(b.get("content"))
        for b in _blocks(last.get("content"))
        if b.get("type") == "tool_result"
    ]
    choice = body.get("tool_choice") if isinstance(body.get("tool_choice"), dict) else {}
    tools = _custom_tools(body.get("tools"))
    if last["role"] == "user" and not results and tools and choice.get("type") != "none":
        forced = choice.get("name") if choice.get("type") == "tool" else None
        n = 1 if choice.get("disable_parallel_tool_use") else fb.faults.parallel_tools
        for name, schema in pick_tools(tools, forced, n):
            blocks.append(
                {
                    "type": "tool_use",
                    "id": random_id("toolu_01", 22),
                    "name": name,
                    "input": tool_arguments(schema),
                }
            )
        return blocks, "tool_use", None
    if results:
        text = tool_said(results)
    else:
        user = next((m for m in reversed(messages) if m["role"] == "user"), last)
        echo = None
        if fb.echo:
            echo = " ".join(str(b["text"]) for b in _blocks(user["content"]) if "text" in b)
        text = reply_text(fb.reply, images=_count_images(messages), echo=echo)
    text, stop = apply_stops(text, body.get("stop_sequences"))
    pieces, finish = cap_pieces(split_pieces(text, fb.chunks), body["max_tokens"])
    if finish == "length":
        text = "".join(pieces)
    blocks.append({"type": "text", "text": text, "_pieces": pieces})
    reason = "max_tokens" if finish == "length" else "stop_sequence" if stop else "end_turn"
    return blocks, reason, stop if reason == "stop_sequence" else None


def _deltas(block: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A block's `content_block_start` form and its deltas."""
    if block["type"] == "text":
        pieces = block["_pieces"]
        return {"type": "text", "text": ""}, [{"type": "text_delta", "text": p} for p in pieces]
    if block["type"] == "thinking":
        thought = [{"type": "thinking_delta", "thinking": p} for p in split_pieces(THOUGHT, None)]
        signature = {"type": "signature_delta", "signature": block["signature"]}
        return {"type": "thinking", "thinking": "", "signature": ""}, [*thought, signature]
    partial = json.dumps(block["input"], separators=(",", ":"))
    deltas = [{"type": "input_json_delta", "partial_json": p} for p in ["", *fragments(partial)]]
    start = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
    return start, deltas


def _usage(input_tokens: int, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


def input_tokens(body: dict[str, Any]) -> int:
    return max(count_words(body.get("messages")) + count_words(body.get("system")), 1)


def add_routes(app: web.Application, fb: FakeBackend) -> None:
    async def list_models(request: web.Request) -> web.Response:
        listing = page(fb, request.query)
        if isinstance(listing, str):
            return error(fb, 400, listing)
        return web.json_response(listing)

    async def get_model(request: web.Request) -> web.Response:
        ident = request.match_info["model"]
        found = next((m for m in fb.models if m.id == ident), None)
        if found is None:
            return error(fb, 404, f"model: {ident}")
        return web.json_response(model_info(fb, found))

    async def count_tokens(request: web.Request) -> web.Response:
        body = body_of(request)
        if not isinstance(body, dict):
            return error(fb, 400, "request body is not a valid JSON object")
        problem = validate({"max_tokens": 1, **body})
        if problem is not None:
            return error(fb, 400, problem)
        if fb.model(body.get("model") if isinstance(body.get("model"), str) else None) is None:
            return error(fb, 404, f"model: {body.get('model')}")
        return web.json_response({"input_tokens": input_tokens(body)})

    async def messages(request: web.Request) -> web.StreamResponse:
        sent = body_of(request)
        ident = sent.get("model") if isinstance(sent, dict) else None
        gated = await fb.gate(request, "chat", not_found=f"model: {ident}", validate=validate)
        if isinstance(gated, web.StreamResponse):
            return gated
        body, model = gated
        blocks, reason, stop = plan(fb, body)
        cut = [_deltas(b) for b in blocks]
        n_in, n_out = input_tokens(body), max(sum(len(d) for _, d in cut), 1)
        message: dict[str, Any] = {
            "id": random_id("msg_01", 22),
            "type": "message",
            "role": "assistant",
            "model": model.id,
            "content": [{k: v for k, v in b.items() if not k.startswith("_")} for b in blocks],
            "stop_reason": reason,
            "stop_sequence": stop,
            "usage": _usage(n_in, n_out),
        }
        if not body.get("stream"):
            resp = await reply_json(fb, request, message)
            if isinstance(resp, web.Response) and not resp.prepared:
                resp.headers["request-id"] = random_id("req_01", 22)
            return resp
        not_a_stream = await hostile.stream_body_reply(fb, request, fb.reply)
        if not_a_stream is not None:
            return not_a_stream
        start = {**message, "content": [], "stop_reason": None, "stop_sequence": None}
        start["usage"] = _usage(n_in, 1)
        head = [
            sse_event("message_start", {"type": "message_start", "message": start}),
            sse_event("ping", {"type": "ping"}),
        ]
        content: list[bytes] = []
        for index, (opening, deltas) in enumerate(cut):
            events = [
                sse_event(
                    "content_block_delta",
                    {"type": "content_block_delta", "index": index, "delta": d},
                )
                for d in deltas
            ] or [b""]
            events[0] = (
                sse_event(
                    "content_block_start",
                    {"type": "content_block_start", "index": index, "content_block": opening},
                )
                + events[0]
            )
            events[-1] += sse_event(
                "content_block_stop", {"type": "content_block_stop", "index": index}
            )
            content += events
        tail = [
            sse_event(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": reason, "stop_sequence": stop},
                    "usage": {"output_tokens": n_out},
                },
            ),
            sse_event("message_stop", {"type": "message_stop"}),
        ]
        content_type = fb.faults.stream_content_type
        if content_type is None:
            content_type = "text/event-stream; charset=utf-8"
        return await fb.stream(
            request,
            content_type,
            head=head,
            content=content,
            tail=tail,
            error=sse_event("error", STREAM_ERROR),
        )

    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/v1/models/{model}", get_model)
    app.router.add_post("/v1/messages", messages)
    app.router.add_post("/v1/messages/count_tokens", count_tokens)
