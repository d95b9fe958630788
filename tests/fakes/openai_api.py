"""The OpenAI-compatible surface every kind serves (`/v1/models`, chat, completions, embeddings).

Per-kind quirks that real servers show on this surface are kept here on purpose (llama.cpp's
`meta`, `timings`, null first delta and alias-as-model; vLLM's `max_model_len`), so a gateway
test meets the same variation it will meet in the field. Legacy `/v1/completions` quirks, seen
on the real servers:

- llama.cpp answers with a `chatcmpl-` id and puts `usage` (and `timings`) on the final
  finish chunk of every stream, with no separate `choices: []` usage chunk even when
  `stream_options.include_usage` is set; `n_predict` overrides `max_tokens`.
- Ollama takes a string `prompt` only (a list is a 400 from its JSON decoder), omits
  `logprobs`, and with `include_usage` puts a zeroed `usage` on every chunk before the real
  usage chunk. An empty prompt only loads the model (`finish_reason: "load"`), as natively.
- exo has no `/v1/completions` at all (see `server.NO_COMPLETIONS`).

The `openai` kind also plays the hosted OpenAI API: with an `api_key` it wants
`Authorization: Bearer <key>` (401 `invalid_api_key` otherwise), and its chat answers follow
the request like a model would, deterministically (see `plan_chat`): tool calls when `tools`
are offered and no tool results came back yet (streamed as OpenAI does: the call's id and
name with empty arguments first, then argument fragments under the same `index`), a text
naming the tool results when they did, JSON for `response_format`, an `[image] ` marker per
image received.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from . import hostile
from .state import (
    FakeModel,
    cap_pieces,
    completion_prompts,
    count_words,
    embed,
    fragments,
    json_answer,
    pick_tools,
    prompt_tokens,
    reply_text,
    split_pieces,
    tool_arguments,
    tool_said,
)
from .wire import dumps, new_id, random_id, sse

if TYPE_CHECKING:
    from .server import FakeBackend

OWNED_BY = {
    "ollama": "library",
    "openai": "openai",
    "vllm": "vllm",
    "llamacpp": "llamacpp",
    "lmstudio": "organization_owner",
    "exo": "exo",
}


def model_entry(fb: FakeBackend, m: FakeModel) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "id": m.id,
        "object": "model",
        "created": fb.created,
        "owned_by": OWNED_BY[fb.kind],
    }
    if fb.kind == "vllm":
        entry.update(root=m.id, parent=None, max_model_len=m.context_length)
    elif fb.kind == "llamacpp":
        entry["meta"] = {
            "vocab_type": 2,
            "n_vocab": 49152,
            "n_ctx_train": m.context_length,
            "n_embd": 576,
            "n_params": 134515008,
            "size": 98362432,
        }
    return entry


def served_models(fb: FakeBackend) -> list[FakeModel]:
    """llama.cpp lists exactly one model, like the real single-model server."""
    return fb.models[:1] if fb.kind == "llamacpp" else list(fb.models)


def models_list(fb: FakeBackend) -> dict[str, Any]:
    listing: dict[str, Any] = {
        "object": "list",
        "data": [model_entry(fb, m) for m in served_models(fb)],
    }
    if fb.kind == "llamacpp":  # newer llama-server also answers in an Ollama-ish `models` key
        listing["models"] = [
            {"name": m.id, "model": m.id, "type": "model", "capabilities": ["completion"]}
            for m in served_models(fb)
        ]
    return listing


KEY_HELP = "You can find your API key at https://platform.openai.com/account/api-keys."
NO_KEY = (
    "You didn't provide an API key. You need to provide your API key in an Authorization "
    "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY). " + KEY_HELP
)
STREAM_ERROR = {
    "error": {
        "message": "The server had an error while processing your request. Sorry about that!",
        "type": "server_error",
        "param": None,
        "code": None,
    }
}


def check_auth(fb: FakeBackend, request: web.Request) -> web.Response | None:
    """OpenAI's 401 unless `Authorization: Bearer <fb.api_key>` came (called when a key is set)."""
    header = request.headers.get("Authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() == "bearer" and key.strip() == fb.api_key:
        return None
    if not key.strip():
        error: dict[str, Any] = {"message": NO_KEY, "code": None}
    else:
        key = key.strip()
        masked = key[:3] + "*" * max(len(key) - 7, 1) + key[-4:] if len(key) > 7 else "***"
        message = f"Incorrect API key provided: {masked}. {KEY_HELP}"
        error = {"message": message, "code": "invalid_api_key"}
    body = {
        "message": error["message"],
        "type": "invalid_request_error",
        "param": None,
        "code": error["code"],
    }
    return web.json_response({"error": body}, status=401)


def call_id() -> str:
    return random_id("call_")


def _text_of(content: Any) -> str:
    """The text of an OpenAI message `content` (a string or a list of parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)
        )
    return ""


def _images_in(messages: list[Any]) -> int:
    return sum(
        1
        for m in messages
        if isinstance(m, dict) and isinstance(m.get("content"), list)
        for p in m["content"]
        if isinstance(p, dict) and p.get("type") in {"image_url", "input_image"}
    )


def plan_chat(fb: FakeBackend, body: dict[str, Any]) -> dict[str, Any] | str:
    """What the `openai` kind answers: `{"text": str}` or `{"tool_calls": [...]}`, or a 400's
    message (str) for a request the real API refuses.

    Tool results (the `tool` messages that end the conversation) get a text naming them;
    else offered `tools` get called (unless `tool_choice` is "none"): the forced one, or the
    first, `faults.parallel_tools` times (once with `parallel_tool_calls: false`), with
    arguments built from `parameters` (`state.tool_arguments`).
    """
    raw = body.get("messages")
    messages = [m for m in raw if isinstance(m, dict)] if isinstance(raw, list) else []
    trailing = len(messages)
    while trailing > 0 and messages[trailing - 1].get("role") == "tool":
        trailing -= 1
    results = [_text_of(m.get("content")) for m in messages[trailing:]]
    if results:
        return {"text": _json_mode(body, tool_said(results))}
    tools = body.get("tools")
    choice = body.get("tool_choice")
    if tools is not None and choice != "none":
        if not isinstance(tools, list) or not all(
            isinstance(t, dict)
            and isinstance(t.get("function"), dict)
            and isinstance(t["function"].get("name"), str)
            for t in tools
        ):
            return "Invalid 'tools': each tool must be {type: 'function', function: {name, ...}}."
        declared = [(t["function"]["name"], t["function"].get("parameters")) for t in tools]
        forced = None
        if isinstance(choice, dict):
            function = choice.get("function")
            forced = function.get("name") if isinstance(function, dict) else None
            if not any(name == forced for name, _ in declared):
                return f"Invalid value for 'tool_choice': tool '{forced}' is not in 'tools'."
        n = 1 if body.get("parallel_tool_calls") is False else fb.faults.parallel_tools
        calls = [
            {
                "id": call_id(),
                "type": "function",
                "function": {
                    "name": name,
                    "arguments": json.dumps(tool_arguments(schema), separators=(",", ":")),
                },
            }
            for name, schema in pick_tools(declared, forced, n)
        ]
        if calls:
            return {"tool_calls": calls}
    last_user = next((m for m in reversed(messages) if m.get("role") == "user"), {})
    echo = _text_of(last_user.get("content")) if fb.echo else None
    return {"text": _json_mode(body, reply_text(fb.reply, images=_images_in(messages), echo=echo))}


def _json_mode(body: dict[str, Any], text: str) -> str:
    """`response_format`: json_object gives `{"reply": text}`, json_schema an example object."""
    fmt = body.get("response_format")
    if not isinstance(fmt, dict):
        return text
    if fmt.get("type") == "json_object":
        return json_answer(text)
    spec = fmt.get("json_schema")
    if fmt.get("type") == "json_schema" and isinstance(spec, dict):
        return json_answer(text, spec.get("schema") if isinstance(spec.get("schema"), dict) else {})
    return text


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def llamacpp_timings(prompt: int, completion: int) -> dict[str, Any]:
    return {"prompt_n": prompt, "prompt_ms": 1.0, "predicted_n": completion, "predicted_ms": 1.0}


def _extras(fb: FakeBackend, prompt: int, completion: int) -> dict[str, Any]:
    if fb.kind != "llamacpp":
        return {}
    return {"system_fingerprint": "b0-unknown", "timings": llamacpp_timings(prompt, completion)}


def wants_usage(body: dict[str, Any]) -> bool:
    """`stream_options.include_usage`, which asks for a final `choices: []` usage chunk."""
    options = body.get("stream_options")
    return isinstance(options, dict) and bool(options.get("include_usage"))


async def reply_json(fb: FakeBackend, request: web.Request, payload: Any) -> web.StreamResponse:
    """A non-streamed answer, or a broken body when the `malformed_json` fault is on, or a
    hostile one (too large, endless, truncated: see `hostile.non_stream_reply`)."""
    if fb.faults.malformed_json:
        return web.Response(text="not json{", content_type="application/json")
    bad = await hostile.non_stream_reply(fb, request, payload)
    if bad is not None:
        return bad
    return web.json_response(payload, dumps=dumps)


async def sse_stream(
    fb: FakeBackend,
    request: web.Request,
    *,
    head: list[bytes],
    content: list[bytes],
    finish: list[bytes],
    usage: dict[str, Any] | None,
) -> web.StreamResponse:
    """OpenAI SSE framing: head, content, finish chunk(s), optional usage chunk, `[DONE]`.

    `usage` is the whole usage chunk (`choices: []`); faults apply as in `FakeBackend.stream`,
    `stream_error_after` sending OpenAI's in-stream `data: {"error": ...}` (no `[DONE]`).
    """
    not_a_stream = await hostile.stream_body_reply(fb, request, fb.reply)
    if not_a_stream is not None:
        return not_a_stream
    content_type = fb.faults.stream_content_type
    if content_type is None:
        content_type = "text/event-stream"
    tail = [*finish, *([sse(usage)] if usage is not None else []), sse("[DONE]")]
    return await fb.stream(
        request, content_type, head=head, content=content, tail=tail, error=sse(STREAM_ERROR)
    )


async def _tool_call_answer(
    fb: FakeBackend, request: web.Request, body: dict[str, Any], calls: list[dict[str, Any]]
) -> web.StreamResponse:
    """A chat answer that calls tools (`finish_reason: "tool_calls"`), whole or streamed."""
    prompt = count_words(body.get("messages"))
    parts = [fragments(c["function"]["arguments"]) for c in calls]
    completion = sum(len(p) + 1 for p in parts)
    base = {"id": new_id("chatcmpl"), "created": int(time.time()), "model": str(body["model"])}
    if not body.get("stream"):
        message = {"role": "assistant", "content": None, "tool_calls": calls, "refusal": None}
        return await reply_json(
            fb,
            request,
            {
                **base,
                "object": "chat.completion",
                "choices": [
                    {
                        "index": 0,
                        "message": {**message, "annotations": []},
                        "logprobs": None,
                        "finish_reason": "tool_calls",
                    }
                ],
                "usage": _usage(prompt, completion),
            },
        )
    base["object"] = "chat.completion.chunk"

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return sse({**base, "choices": [choice]})

    content: list[bytes] = []
    for index, (call, pieces) in enumerate(zip(calls, parts, strict=True)):
        function = {"name": call["function"]["name"], "arguments": ""}
        opening = {"index": index, "id": call["id"], "type": "function", "function": function}
        content.append(chunk({"tool_calls": [opening]}))
        content += [
            chunk({"tool_calls": [{"index": index, "function": {"arguments": p}}]}) for p in pieces
        ]
    usage = {**base, "choices": [], "usage": _usage(prompt, completion)}
    return await sse_stream(
        fb,
        request,
        head=[chunk({"role": "assistant", "content": None, "refusal": None})],
        content=content,
        finish=[chunk({}, "tool_calls")],
        usage=usage if wants_usage(body) else None,
    )


def prompt_error(fb: FakeBackend, value: Any) -> str:
    """Why `prompt` is unusable, worded like the real server."""
    if fb.kind == "llamacpp":
        if value is None:
            return "[json.exception.out_of_range.403] key 'prompt' not found"
        if value == []:
            return '"prompt" must not be empty'
        return (
            '"prompt" elements must be a string, a list of tokens, a JSON object containing a '
            "prompt string, or a list of mixed strings & tokens."
        )
    if fb.kind == "ollama":  # Go's encoding/json, decoding into `Prompt string`
        kind = {list: "array", dict: "object", bool: "bool", int: "number", float: "number"}
        found = kind.get(type(value), "value")
        field = "Go struct field CompletionRequest.prompt of type string"
        return f"json: cannot unmarshal {found} into {field}"
    return "'prompt' must be a string, a list of strings, or token-id arrays"


def add_routes(app: web.Application, fb: FakeBackend) -> None:
    async def list_models(request: web.Request) -> web.Response:
        return web.json_response(models_list(fb))

    async def get_model(request: web.Request) -> web.Response:
        ident = request.match_info["model"]
        found = next((m for m in served_models(fb) if m.id == ident), None)
        if found is None:
            return fb.error(request, 404, f"model '{ident}' not found")
        return web.json_response(model_entry(fb, found))

    async def chat(request: web.Request) -> web.StreamResponse:
        gated = await fb.gate(request, "chat")
        if isinstance(gated, web.StreamResponse):
            return gated
        body, model = gated
        if fb.kind == "openai":
            plan = plan_chat(fb, body)
            if isinstance(plan, str):
                return fb.error(request, 400, plan)
            if "tool_calls" in plan:
                return await _tool_call_answer(fb, request, body, plan["tool_calls"])
            text = plan["text"]
        else:
            text = fb.reply
        name = model.id if fb.kind == "llamacpp" else str(body["model"])
        prompt = count_words(body.get("messages"))
        pieces = split_pieces(text, fb.chunks)
        base = {"id": new_id("chatcmpl"), "created": int(time.time()), "model": name}
        if not body.get("stream"):
            return await reply_json(
                fb,
                request,
                {
                    **base,
                    "object": "chat.completion",
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": text},
                            "logprobs": None,
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": _usage(prompt, len(pieces)),
                    **_extras(fb, prompt, len(pieces)),
                },
            )
        base["object"] = "chat.completion.chunk"

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            return sse({**base, "choices": [choice]})

        first = None if fb.kind == "llamacpp" else ""
        usage = {**base, "choices": [], "usage": _usage(prompt, len(pieces))}
        return await sse_stream(
            fb,
            request,
            head=[chunk({"role": "assistant", "content": first})],
            content=[chunk({"content": p}) for p in pieces],
            finish=[chunk({}, "stop")],
            usage=usage if wants_usage(body) else None,
        )

    async def completions(request: web.Request) -> web.StreamResponse:
        gated = await fb.gate(request, "completions")
        if isinstance(gated, web.StreamResponse):
            return gated
        body, model = gated
        raw = body.get("prompt")
        if fb.kind == "ollama":
            raw = "" if raw is None else raw  # Go leaves a missing string field empty
            prompts: list[str | list[int]] | None = [raw] if isinstance(raw, str) else None
        else:
            prompts = completion_prompts(raw)
        if prompts is None:
            return fb.error(request, 400, prompt_error(fb, raw))
        limit = body.get("max_tokens")
        if fb.kind == "llamacpp" and "n_predict" in body:
            limit = body["n_predict"]
        pieces, finish = cap_pieces(fb.pieces, limit)
        if fb.kind == "ollama" and raw == "":
            pieces, finish = [], "load"  # Ollama's generate only loads the model
        text = fb.reply if finish == "stop" else "".join(pieces)
        n_prompt, n_completion = prompt_tokens(prompts), len(pieces) * len(prompts)
        llama, ollama = fb.kind == "llamacpp", fb.kind == "ollama"
        base: dict[str, Any] = {
            "id": new_id("chatcmpl" if llama else "cmpl"),
            "object": "text_completion",
            "created": int(time.time()),
            "model": model.id if llama else str(body["model"]),
        }
        if llama or ollama:
            base["system_fingerprint"] = "b0-unknown" if llama else "fp_ollama"
        usage = _usage(n_prompt, n_completion)

        def choice(index: int, piece: str, reason: str | None) -> dict[str, Any]:
            out: dict[str, Any] = {"text": piece, "index": index}
            if not ollama:
                out["logprobs"] = None
            out["finish_reason"] = reason
            return out

        if not body.get("stream"):
            return await reply_json(
                fb,
                request,
                {
                    **base,
                    "choices": [choice(i, text, finish) for i in range(len(prompts))],
                    "usage": usage,
                    **_extras(fb, n_prompt, n_completion),
                },
            )
        include_usage = wants_usage(body)
        zeroed = {"usage": _usage(0, 0)} if ollama and include_usage else {}

        def chunk(index: int, piece: str, reason: str | None = None, **extra: Any) -> bytes:
            return sse({**base, "choices": [choice(index, piece, reason)], **zeroed, **extra})

        finishes = [chunk(i, "", finish) for i in range(len(prompts))]
        if llama:  # usage rides on the last finish chunk, whatever `include_usage` says
            last = len(prompts) - 1
            finishes[-1] = chunk(
                last, "", finish, usage=usage, timings=llamacpp_timings(n_prompt, n_completion)
            )
        return await sse_stream(
            fb,
            request,
            head=[],
            content=[chunk(i, p) for i in range(len(prompts)) for p in pieces],
            finish=finishes,
            usage={**base, "choices": [], "usage": usage} if include_usage and not llama else None,
        )

    async def embeddings(request: web.Request) -> web.Response:
        gated = await fb.gate(request, "embeddings")
        if isinstance(gated, web.StreamResponse):
            return gated
        body, model = gated
        if fb.kind == "llamacpp":
            checked = _llamacpp_embedding_inputs(body)
            if isinstance(checked, str):
                return fb.error(request, 400, checked)
            texts = checked
            name = body["model"] if isinstance(body.get("model"), str) else model.id  # echoed
        else:
            texts = embedding_inputs(body.get("input"))
            if texts is None:
                return fb.error(request, 400, "'input' must be a string or a list")
            name = str(body["model"])
        tokens = count_words(texts)
        return web.json_response(
            {
                "object": "list",
                "model": name,
                "data": [
                    {"object": "embedding", "index": i, "embedding": embed(t)}
                    for i, t in enumerate(texts)
                ],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
            dumps=dumps,
        )

    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/v1/models/{model:.+}", get_model)
    app.router.add_post("/v1/chat/completions", chat)
    if fb.serves_completions:
        app.router.add_post("/v1/completions", completions)
    app.router.add_post("/v1/embeddings", embeddings)
    if fb.kind == "llamacpp":  # llama-server also routes these without the /v1 prefix
        # (its unprefixed `/completion(s)` is the native API: see native_api)
        app.router.add_get("/models", list_models)
        app.router.add_post("/chat/completions", chat)
        app.router.add_post("/embeddings", embeddings)


def embedding_inputs(value: Any) -> list[str] | None:
    """Normalise OpenAI/Ollama `input` (str, list of str, token ids) to texts."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value:
        if all(isinstance(v, int) for v in value):
            return [" ".join(map(str, value))]
        return [v if isinstance(v, str) else dumps(v) for v in value]
    return None


def _llamacpp_embedding_inputs(body: dict[str, Any]) -> list[str] | str:
    """Texts to embed, or the 400 message llama-server (with `--embeddings`) gives instead."""
    if "input" in body:
        key = "input"
    elif "content" in body:
        key = "content"
    else:
        return '"input" or "content" must be provided'
    value = body[key]
    if value == []:
        return f'"{key}" must not be empty'
    texts = embedding_inputs(value)
    if texts is None:
        return (
            '"prompt" elements must be a string, a list of tokens, a JSON object containing a '
            "prompt string, or a list of mixed strings & tokens."
        )
    if any(t == "" for t in texts):
        return "Input content cannot be empty"
    return texts
