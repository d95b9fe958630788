"""Google's Gemini API (`generativelanguage`, under `/v1beta` and `/v1`): `GET models`,
`GET models/{m}`, `POST models/{m}:generateContent`, `:streamGenerateContent` (`?alt=sse`: SSE;
without it a JSON array sent piecemeal, as the real API does), `:countTokens`, `:embedContent`
and `:batchEmbedContents`.

Wire details kept as the real API has them:

- Auth: `x-goog-api-key` header, or the `key` query parameter (the request log keeps which:
  `RecordedRequest.credentials`). Like Google: no key at all is 403 `PERMISSION_DENIED`
  ("unregistered callers"), a wrong one 400 `INVALID_ARGUMENT` with an `ErrorInfo` detail
  whose reason is `API_KEY_INVALID`. With no configured key any non-empty key passes.
- Errors: `{"error": {"code", "message", "status"[, "details"]}}`, `status` following the
  HTTP code (`STATUSES`); with the `retry_after` fault a `Retry-After` header and, on 429, a
  `RetryInfo` detail. An unknown model, or one that does not support the method (an
  embedding model asked to generate), is 404 `NOT_FOUND` worded like Google.
- Validation (400 `INVALID_ARGUMENT`): unknown fields at the top level, in
  `generationConfig` or in a part are refused ("Invalid JSON payload received. Unknown name
  ..."), as proto JSON parsing does (camelCase and snake_case names both pass); `contents`
  must be there and non-empty, roles `user`/`model` (or absent), parts non-empty,
  `inlineData.data` base64 (a `data:` URL is refused), and a turn of `functionResponse`
  parts must answer as many `functionCall` parts of the model turn before it.
- Streams: each SSE event one `GenerateContentResponse` (`candidates[0].content` with
  `role: "model"`, `usageMetadata` with the running counts, `modelVersion`, `responseId`),
  then a last one with an empty text part and the `finishReason`. Lines end with CRLF as
  Google's servers frame them (`sse_crlf` fault: False for LF). `stream_error_after` sends
  `data: {"error": {..., "status": "UNAVAILABLE"}}` after that many chunks and ends.

What the fake answers (deterministic, see `plan`): a last user turn of `functionResponse`
parts gets a text naming them (`Tool said: <response JSON>`); else declared
`functionDeclarations` are called (`functionCall` parts, `finishReason: "STOP"`) unless
`toolConfig.functionCallingConfig.mode` is `NONE` (`allowedFunctionNames` narrows the
choice); else the text is the backend's `reply`, after an `[image] ` per `inlineData` or
`fileData` part, cut at a `stopSequences` hit or after `maxOutputTokens` pieces
(`MAX_TOKENS`). `responseMimeType: "application/json"` answers JSON (an object fitting
`responseSchema`/`responseJsonSchema` when given, else `{"reply": text}`).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import TYPE_CHECKING, Any

from aiohttp import web

from . import hostile
from .openai_api import reply_json
from .state import (
    FakeModel,
    apply_stops,
    cap_pieces,
    embed,
    json_answer,
    pick_tools,
    reply_text,
    split_pieces,
    tool_arguments,
    tool_said,
)
from .wire import body_of, random_id, sse

if TYPE_CHECKING:
    from .server import FakeBackend

STATUSES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
NO_KEY = (
    "Method doesn't allow unregistered callers (callers without established identity). "
    "Please use API Key or other form of API consumer identity to call this API."
)
BAD_KEY = "API key not valid. Please pass a valid API key."
STREAM_ERROR = {
    "error": {
        "code": 503,
        "message": "The model is overloaded. Please try again later.",
        "status": "UNAVAILABLE",
    }
}
REQUEST_FIELDS = (
    "model",
    "contents",
    "tools",
    "toolConfig",
    "safetySettings",
    "systemInstruction",
    "generationConfig",
    "cachedContent",
    "serviceTier",
    "store",
)
GENERATION_FIELDS = (
    "stopSequences",
    "responseMimeType",
    "responseSchema",
    "responseJsonSchema",
    "_responseJsonSchema",
    "responseModalities",
    "candidateCount",
    "maxOutputTokens",
    "temperature",
    "topP",
    "topK",
    "seed",
    "presencePenalty",
    "frequencyPenalty",
    "responseLogprobs",
    "logprobs",
    "enableEnhancedCivicAnswers",
    "speechConfig",
    "thinkingConfig",
    "imageConfig",
    "mediaResolution",
)
PART_FIELDS = (
    "text",
    "inlineData",
    "fileData",
    "functionCall",
    "functionResponse",
    "executableCode",
    "codeExecutionResult",
    "thought",
    "thoughtSignature",
    "videoMetadata",
    "mediaResolution",
    "partMetadata",
)
CHAT_METHODS = ["generateContent", "countTokens", "createCachedContent", "batchGenerateContent"]
EMBED_METHODS = ["embedContent", "countTextTokens", "countTokens"]


def snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


def _names(fields: tuple[str, ...]) -> frozenset[str]:
    """Proto JSON takes a field by its JSON (camelCase) or its proto (snake_case) name."""
    return frozenset(fields) | frozenset(snake(f) for f in fields)


_REQUEST = _names(REQUEST_FIELDS)
_GENERATION = _names(GENERATION_FIELDS)
_PART = _names(PART_FIELDS)


def field(obj: Any, name: str) -> Any:
    """`obj[name]` by its camelCase or snake_case name (None when absent or not an object)."""
    if not isinstance(obj, dict):
        return None
    return obj[name] if name in obj else obj.get(snake(name))


# ------------------------------------------------------------------------------ envelope
def error(
    fb: FakeBackend,
    status: int,
    message: str,
    details: list[dict[str, Any]] | None = None,
) -> web.Response:
    """Google's error envelope; `status` names the code as `google.rpc.Code` does."""
    headers: dict[str, str] = {}
    details = list(details or [])
    if fb.faults.retry_after is not None and status >= 400:
        headers["Retry-After"] = str(fb.faults.retry_after)
        if status == 429:
            details.append(
                {
                    "@type": "type.googleapis.com/google.rpc.RetryInfo",
                    "retryDelay": f"{fb.faults.retry_after}s",
                }
            )
    name = STATUSES.get(status, "UNKNOWN" if status < 500 else "INTERNAL")
    body: dict[str, Any] = {"code": status, "message": message, "status": name}
    if details:
        body["details"] = details
    return web.json_response({"error": body}, status=status, headers=headers)


def check_auth(fb: FakeBackend, request: web.Request) -> web.Response | None:
    key = request.headers.get("x-goog-api-key", "").strip() or request.query.get("key", "")
    if not key:
        return error(fb, 403, NO_KEY)
    if fb.api_key is not None and key != fb.api_key:
        reason = {
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "API_KEY_INVALID",
            "domain": "googleapis.com",
            "metadata": {"service": "generativelanguage.googleapis.com"},
        }
        return error(fb, 400, BAD_KEY, [reason])
    return None


def unknown_name(name: str, at: str | None = None) -> str:
    where = f" at '{at}'" if at else ""
    return f'Invalid JSON payload received. Unknown name "{name}"{where}: Cannot find field.'


def not_found(ident: str, method: str, version: str) -> str:
    return (
        f"models/{ident} is not found for API version {version}, or is not supported for "
        f"{method}. Call ListModels to see the list of available models and their supported "
        "methods."
    )


# ------------------------------------------------------------------------------- models
def bare(ident: str) -> str:
    return ident.removeprefix("models/")


def model_entry(m: FakeModel) -> dict[str, Any]:
    ident = bare(m.id)
    entry: dict[str, Any] = {
        "name": f"models/{ident}",
        "version": "001",
        "displayName": " ".join(w.capitalize() for w in ident.split("-")),
        "description": f"Fake {ident}",
        "inputTokenLimit": m.context_length,
        "outputTokenLimit": 2048 if m.embedding else 8192,
        "supportedGenerationMethods": EMBED_METHODS if m.embedding else CHAT_METHODS,
    }
    if not m.embedding:
        entry.update(temperature=1, topP=0.95, topK=64, maxTemperature=2)
    return entry


def page(fb: FakeBackend, query: Any) -> dict[str, Any] | str:
    """One page of `GET models`: `pageSize` (default 50, at most 1000), `pageToken`."""
    try:
        size = int(query.get("pageSize", "50"))
        start = int(query.get("pageToken") or "0")
    except ValueError:
        return "Invalid pageSize or pageToken"
    size = 50 if size <= 0 else min(size, 1000)
    if not 0 <= start <= len(fb.models):
        return "Invalid page token"
    listing: dict[str, Any] = {"models": [model_entry(m) for m in fb.models[start : start + size]]}
    if start + size < len(fb.models):
        listing["nextPageToken"] = str(start + size)
    return listing


# ---------------------------------------------------------------------------- validation
def _check_parts(where: str, parts: Any) -> str | None:
    if not isinstance(parts, list) or not parts:
        return f"* GenerateContentRequest.{where}.parts: contents.parts must not be empty.\n"
    for j, part in enumerate(parts):
        at = f"{where}.parts[{j}]"
        if not isinstance(part, dict):
            return f"Invalid value at '{at}', expected an object."
        for key in part:
            if key not in _PART:
                return unknown_name(key, at)
        inline = field(part, "inlineData")
        if inline is not None:
            data = field(inline, "data")
            if not isinstance(field(inline, "mimeType"), str):
                return f"* GenerateContentRequest.{at}.inline_data.mime_type: required\n"
            try:
                base64.b64decode(data if isinstance(data, str) else "", validate=True)
            except (binascii.Error, ValueError):
                return (
                    f"Invalid value at '{snake(at)}.inline_data.data' (TYPE_BYTES), "
                    f'Base64 decoding failed for "{str(data)[:40]}"'
                )
    return None


def validate(body: dict[str, Any]) -> str | None:
    """The real API's 400 message for a malformed GenerateContentRequest, or None."""
    for key in body:
        if key not in _REQUEST:
            return unknown_name(key)
    config = field(body, "generationConfig")
    if config is not None:
        if not isinstance(config, dict):
            return "Invalid value at 'generation_config', expected an object."
        for key in config:
            if key not in _GENERATION:
                return unknown_name(key, "generation_config")
    system = field(body, "systemInstruction")
    if system is not None:
        if not isinstance(system, dict):
            return (
                "Invalid value at 'system_instruction' "
                f"(type.googleapis.com/google.ai.generativelanguage.v1beta.Content), {system!r}"
            )
        problem = _check_parts("system_instruction", field(system, "parts"))
        if problem is not None:
            return problem
    contents = field(body, "contents")
    if not isinstance(contents, list) or not contents:
        return "* GenerateContentRequest.contents: contents is not specified\n"
    for i, content in enumerate(contents):
        if not isinstance(content, dict):
            return f"Invalid value at 'contents[{i}]', expected an object."
        if content.get("role") not in {None, "", "user", "model"}:
            return "Please use a valid role: user, model."
        problem = _check_parts(f"contents[{i}]", field(content, "parts"))
        if problem is not None:
            return problem
        answers = _parts_with(content, "functionResponse")
        if answers:
            before = contents[i - 1] if i > 0 else {}
            calls = _parts_with(before, "functionCall") if isinstance(before, dict) else []
            if len(calls) != len(answers):
                return (
                    "Please ensure that the number of function response parts is equal to the "
                    "number of function call parts of the function call turn."
                )
    tools = field(body, "tools")
    if tools is not None and not isinstance(tools, list):
        return "Invalid value at 'tools', expected a list."
    return None


def _parts_with(content: dict[str, Any], kind: str) -> list[Any]:
    parts = field(content, "parts")
    if not isinstance(parts, list):
        return []
    found = [field(p, kind) for p in parts]
    return [f for f in found if f is not None]


# ---------------------------------------------------------------------------- the answer
def _declarations(body: dict[str, Any]) -> list[tuple[str, Any]]:
    found = []
    for tool in field(body, "tools") or []:
        for decl in field(tool, "functionDeclarations") or []:
            if isinstance(decl, dict) and isinstance(decl.get("name"), str):
                schema = field(decl, "parameters") or field(decl, "parametersJsonSchema")
                found.append((decl["name"], schema))
    return found


def plan(fb: FakeBackend, body: dict[str, Any]) -> tuple[list[dict[str, Any]], list[str], str]:
    """The answer's function calls (if any), its text pieces and its `finishReason`."""
    contents: list[dict[str, Any]] = field(body, "contents")
    last = contents[-1]
    answers = _parts_with(last, "functionResponse") if last.get("role") != "model" else []
    calling = field(field(body, "toolConfig"), "functionCallingConfig") or {}
    mode = str(field(calling, "mode") or "AUTO").upper()
    declared = _declarations(body)
    allowed = field(calling, "allowedFunctionNames")
    if isinstance(allowed, list) and allowed:
        declared = [d for d in declared if d[0] in allowed]
    if not answers and declared and mode != "NONE" and last.get("role") != "model":
        calls = [
            {"functionCall": {"name": name, "args": tool_arguments(schema)}}
            for name, schema in pick_tools(declared, None, fb.faults.parallel_tools)
        ]
        return calls, [], "STOP"
    if answers:
        said = [json.dumps(field(a, "response"), separators=(",", ":")) for a in answers]
        text = tool_said(said)
    else:
        images = sum(
            1
            for c in contents
            for p in field(c, "parts") or []
            if field(p, "inlineData") is not None or field(p, "fileData") is not None
        )
        user = next((c for c in reversed(contents) if c.get("role") != "model"), last)
        echo = None
        if fb.echo:
            echo = " ".join(str(p["text"]) for p in field(user, "parts") if "text" in p)
        text = reply_text(fb.reply, images=images, echo=echo)
    config = field(body, "generationConfig") or {}
    if field(config, "responseMimeType") == "application/json":
        schema = field(config, "responseSchema") or field(config, "responseJsonSchema")
        text = json_answer(text, schema)
    text, _stop = apply_stops(text, field(config, "stopSequences"))
    pieces, finish = cap_pieces(split_pieces(text, fb.chunks), field(config, "maxOutputTokens"))
    return [], pieces, "MAX_TOKENS" if finish == "length" else "STOP"


def prompt_tokens(body: dict[str, Any]) -> int:
    """Rough count: words of every text part of `contents` and `systemInstruction`."""
    contents = field(body, "contents")
    turns = [*(contents if isinstance(contents, list) else []), field(body, "systemInstruction")]
    words = sum(
        len(p["text"].split())
        for turn in turns
        for p in field(turn, "parts") or []
        if isinstance(p, dict) and isinstance(p.get("text"), str)
    )
    return max(words, 1)


def _usage(prompt: int, candidates: int | None) -> dict[str, Any]:
    usage: dict[str, Any] = {"promptTokenCount": prompt}
    if candidates is not None:
        usage["candidatesTokenCount"] = candidates
    usage["totalTokenCount"] = prompt + (candidates or 0)
    usage["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": prompt}]
    return usage


def add_routes(app: web.Application, fb: FakeBackend) -> None:
    async def list_models(request: web.Request) -> web.Response:
        listing = page(fb, request.query)
        if isinstance(listing, str):
            return error(fb, 400, listing)
        return web.json_response(listing)

    async def get_model(request: web.Request) -> web.Response:
        ident = request.match_info["target"]
        found = next((m for m in fb.models if bare(m.id) == ident), None)
        if found is None:
            version = _version(request)
            return error(fb, 404, f"models/{ident} is not found for API version {version}")
        return web.json_response(model_entry(found))

    async def call(request: web.Request) -> web.StreamResponse:
        ident, sep, method = request.match_info["target"].rpartition(":")
        if not sep:
            return error(fb, 404, f"Method not found: {request.path}")
        missing = not_found(ident, method, _version(request))
        if method in {"generateContent", "streamGenerateContent"}:
            return await generate(request, ident, method, missing)
        if method in {"embedContent", "batchEmbedContents"}:
            return await embed_content(request, ident, method, missing)
        if method == "countTokens":
            return await count_tokens(request, ident, missing)
        return error(fb, 404, f"Method not found: {method}")

    async def generate(
        request: web.Request, ident: str, method: str, missing: str
    ) -> web.StreamResponse:
        gated = await fb.gate(request, "chat", ident=_lookup(ident), not_found=missing)
        if isinstance(gated, web.StreamResponse):
            return gated
        body, model = gated
        problem = validate(body)
        if problem is not None:
            return error(fb, 400, problem)
        calls, pieces, finish = plan(fb, body)
        prompt = prompt_tokens(body)
        produced = len(calls) * 5 + len(pieces)
        common = {"modelVersion": bare(model.id), "responseId": random_id("", 22)}

        def response(parts: list[dict[str, Any]], done: bool, so_far: int) -> dict[str, Any]:
            candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}}
            if done:
                candidate["finishReason"] = finish
            candidate["index"] = 0
            return {"candidates": [candidate], "usageMetadata": _usage(prompt, so_far), **common}

        if method == "generateContent":
            parts = calls or [{"text": "".join(pieces)}]
            return await reply_json(fb, request, response(parts, True, produced))
        not_a_stream = await hostile.stream_body_reply(fb, request, fb.reply)
        if not_a_stream is not None:
            return not_a_stream
        if calls:
            chunks, tail = [response(calls, True, produced)], []
        else:
            chunks = [response([{"text": p}], False, i + 1) for i, p in enumerate(pieces)]
            tail = [response([{"text": ""}], True, produced)]
        content_type = fb.faults.stream_content_type
        if request.query.get("alt") == "sse":
            eol = "\n" if fb.faults.sse_crlf is False else "\r\n"
            return await fb.stream(
                request,
                "text/event-stream" if content_type is None else content_type,
                head=[],
                content=[sse(c, eol) for c in chunks],
                tail=[sse(c, eol) for c in tail],
                error=sse(STREAM_ERROR, eol),
            )
        # no `alt=sse`: one JSON array, its elements written as they come
        events = [json.dumps(c).encode() for c in [*chunks, *tail]]
        events = [b"[" + events[0], *(b",\r\n" + e for e in events[1:])]
        return await fb.stream(
            request,
            "application/json; charset=UTF-8" if content_type is None else content_type,
            head=[],
            content=events[: len(chunks)],
            tail=[*events[len(chunks) :], b"]"],
            error=b",\r\n" + json.dumps(STREAM_ERROR).encode() + b"]",
        )

    async def embed_content(
        request: web.Request, ident: str, method: str, missing: str
    ) -> web.Response:
        gated = await fb.gate(request, "embeddings", ident=_lookup(ident), not_found=missing)
        if isinstance(gated, web.StreamResponse):
            return gated
        body, _model = gated
        if method == "embedContent":
            requests = [body]
        else:
            requests = body.get("requests")
            if not isinstance(requests, list) or not requests:
                return error(fb, 400, "* BatchEmbedContentsRequest.requests: required\n")
        vectors = []
        for i, item in enumerate(requests):
            parts = field(field(item, "content"), "parts")
            problem = _check_parts(f"requests[{i}].content", parts)
            if problem is not None:
                return error(fb, 400, problem)
            text = " ".join(str(p.get("text", "")) for p in parts if isinstance(p, dict))
            vectors.append({"values": embed(text)})
        if method == "embedContent":
            return web.json_response({"embedding": vectors[0]})
        return web.json_response({"embeddings": vectors})

    async def count_tokens(request: web.Request, ident: str, missing: str) -> web.Response:
        body = body_of(request)
        if not isinstance(body, dict):
            return error(fb, 400, "Invalid JSON payload received.")
        if fb.model(_lookup(ident)) is None:
            return error(fb, 404, missing)
        inner = field(body, "generateContentRequest")
        request_body = inner if isinstance(inner, dict) else body
        problem = validate({k: v for k, v in request_body.items() if k != "model"})
        if problem is not None:
            return error(fb, 400, problem)
        total = prompt_tokens(request_body)
        details = [{"modality": "TEXT", "tokenCount": total}]
        return web.json_response({"totalTokens": total, "promptTokensDetails": details})

    def _lookup(ident: str) -> str:
        """The configured id that `ident` (a bare name) stands for, `models/` prefix or not."""
        found = next((m.id for m in fb.models if bare(m.id) == ident), None)
        return found if found is not None else ident

    for version in ("/v1beta", "/v1"):
        app.router.add_get(f"{version}/models", list_models)
        app.router.add_get(version + "/models/{target:[^/:]+}", get_model)
        app.router.add_post(version + "/models/{target:[^/]+}", call)


def _version(request: web.Request) -> str:
    return "v1" if request.path.startswith("/v1/") else "v1beta"
