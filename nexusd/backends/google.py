"""Google's Gemini API (``generateContent``, ``streamGenerateContent?alt=sse``) ⇄ OpenAI chat
completions, both directions, whole answers and streams.

Choices made against the current Gemini API reference, so OpenAI clients work unchanged:

* Tools go out as ``parametersJsonSchema`` (JSON Schema as-is), not ``parameters`` (an OpenAPI
  subset that rejects ``additionalProperties``, ``$ref``, ``anyOf``… which OpenAI clients
  send); structured output likewise as ``responseJsonSchema``, not ``responseSchema``.
* ``n`` > 1 becomes ``candidateCount``; every candidate is a choice with its own index.
* ``image_url`` data URLs go inline (``inlineData``); http(s) and ``gs://`` URLs go as
  ``fileData`` with the MIME type guessed from the extension: the Gemini API fetches public
  and signed URLs and File API URIs itself.
* Thought signatures (Gemini 3 rejects a function-call turn sent back without one) travel
  the way Google's own OpenAI endpoint carries them: ``extra_content.google.thought_signature``
  on the tool call. A history without them (a client that drops the field, or turns another
  backend produced before a failover) gets Google's documented sentinel on the first call of
  each assistant turn, so the conversation still validates.
* ``logprobs``, legacy ``functions`` and OpenAI file ids are refused (``Untranslatable``), so
  another backend can serve the request; embeddings (Gemini's ``embedContent``) and legacy
  completions are not translated at all.

The API key goes in the ``x-goog-api-key`` header, never in the URL (logs, proxies).
"""

from __future__ import annotations

import json
import mimetypes
import time
import uuid
from typing import Any
from urllib.parse import quote, urlsplit

from nexusd.backends.codec import Call, OpenAICodec, WireRequest, not_json_object
from nexusd.backends.translate import (
    DONE,
    ChunkWriter,
    SSEEvent,
    SSEEvents,
    TokenUsage,
    Untranslatable,
    UpstreamStreamError,
    arguments_object,
    assistant_message,
    completion,
    completion_of,
    drop_unknown,
    dumps,
    image_url_of,
    int_or_none,
    json_object,
    openai_error,
    parse_data_url,
    tool_call,
)
from nexusd.backends.upstream import UpstreamError, UpstreamProtocolError, UpstreamReply
from nexusd.types import Endpoint

#: request fields this codec translates (or refuses knowingly); the rest are dropped
_KNOWN = frozenset(
    {
        "model",
        "messages",
        "stream",
        "stream_options",
        "temperature",
        "top_p",
        "max_tokens",
        "max_completion_tokens",
        "stop",
        "n",
        "seed",
        "presence_penalty",
        "frequency_penalty",
        "response_format",
        "tools",
        "tool_choice",
        "logprobs",
        "functions",
        "function_call",
    }
)

#: OpenAI sampling fields copied as they are into ``generationConfig``
_SAMPLING = (
    ("temperature", "temperature"),
    ("top_p", "topP"),
    ("seed", "seed"),
    ("presence_penalty", "presencePenalty"),
    ("frequency_penalty", "frequencyPenalty"),
)

#: Gemini ``finishReason`` → OpenAI ``finish_reason``; anything else is "stop"
_FINISH = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "IMAGE_PROHIBITED_CONTENT": "content_filter",
    "IMAGE_RECITATION": "content_filter",
}

_TOOL_CHOICE = {"auto": "AUTO", "none": "NONE", "required": "ANY"}

#: Google's documented stand-in for a thought signature the history does not have
SKIP_SIGNATURE = "skip_thought_signature_validator"

#: in-stream error statuses that are the provider's fault (overloaded, broken)
_BACKEND_FAULTS = frozenset({"INTERNAL", "UNAVAILABLE"})

_URL_SCHEMES = ("http", "https", "gs")


class GoogleCodec(OpenAICodec):
    """Chat completions through the Gemini API's native ``generateContent``."""

    dialect = "google"

    @staticmethod
    def auth_headers(api_key: str) -> dict[str, str]:
        """The key in a header: a ``?key=`` URL ends up in access logs and proxies."""
        return {"x-goog-api-key": api_key}

    def encode(self, call: Call, model: str) -> WireRequest:
        if call.endpoint is not Endpoint.CHAT:
            raise Untranslatable(
                f"Google Gemini backends serve chat completions only; {call.endpoint.value} is "
                "not translated (Gemini's embedContent is not supported): use another backend"
            )
        # quoted so that a model name can add neither path segments nor a query
        name = quote(model.removeprefix("models/"), safe="-._~")
        if call.stream:
            path = f"/v1beta/models/{name}:streamGenerateContent?alt=sse"
        else:
            path = f"/v1beta/models/{name}:generateContent"
        return WireRequest(path, dumps(request_body(call.body)))

    def decode(self, call: Call, reply: UpstreamReply, model: str) -> bytes:
        native = json_object(reply.body)
        if native is None:
            raise UpstreamProtocolError(not_json_object(reply.body))
        return answer(native, model)

    def decode_error(self, call: Call, status: int, body: bytes, content_type: str) -> bytes:
        """Google's ``{"error": {code, message, status}}`` (sometimes in a one-element list)
        → OpenAI's envelope, with Google's status word as the ``code``."""
        error = _google_error(body)
        if error is not None:
            message, code = error.get("message"), error.get("status")
            if isinstance(message, str) and message:
                return openai_error(status, message, code if isinstance(code, str) else None)
        snippet = body[:300].decode("utf-8", "replace").strip()
        detail = f": {snippet}" if snippet else ""
        return openai_error(status, f"the Gemini API answered HTTP {status}{detail}")

    def stream_decoder(self, call: Call, model: str) -> GoogleStreamDecoder:
        options = call.body.get("stream_options")
        include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
        return GoogleStreamDecoder(model, include_usage, self.max_event_bytes)


# --- request: OpenAI → Gemini ------------------------------------------------------------------


def request_body(body: dict[str, Any]) -> dict[str, Any]:
    """The client's OpenAI chat request (never modified) as a ``GenerateContentRequest``."""
    drop_unknown(body, _KNOWN, "google")
    if body.get("functions") is not None or body.get("function_call") is not None:
        raise Untranslatable(
            "the legacy 'functions'/'function_call' fields are not translated for Gemini; "
            "send 'tools' and 'tool_choice'",
            param="functions",
        )
    if body.get("logprobs"):
        raise Untranslatable("Gemini backends do not return logprobs", param="logprobs")
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise Untranslatable("'messages' must be a list", param="messages")
    system, contents = _contents(messages)
    if not contents:
        raise Untranslatable(
            "Gemini needs at least one user or assistant message with content", param="messages"
        )
    wire: dict[str, Any] = {"contents": contents}
    if system:
        wire["systemInstruction"] = {"parts": [{"text": "\n\n".join(system)}]}
    tools = _tools(body.get("tools"))
    if tools:
        wire["tools"] = tools
        config = _tool_config(body.get("tool_choice"))
        if config is not None:
            wire["toolConfig"] = config
    generation = _generation_config(body)
    if generation:
        wire["generationConfig"] = generation
    return wire


def _contents(messages: list[Any]) -> tuple[list[str], list[dict[str, Any]]]:
    """System texts, and the turns with roles mapped and same-role runs merged (Gemini wants
    user and model to alternate; tool results are user turns)."""
    system: list[str] = []
    contents: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # tool call id → function name, from earlier assistant turns
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise Untranslatable(f"{where} is not an object", param="messages")
        role = message.get("role")
        if role in ("system", "developer"):
            text = _plain_text(message.get("content"), where)
            if text:
                system.append(text)
            continue
        if role == "user":
            g_role, parts = "user", _user_parts(message.get("content"), where)
        elif role == "assistant":
            g_role, parts = "model", _assistant_parts(message, where, names)
        elif role == "tool":
            g_role, parts = "user", [_function_response(message, where, names)]
        else:
            raise Untranslatable(
                f"{where}: role {role!r} cannot be translated for Gemini", param="messages"
            )
        if not parts:
            continue  # Gemini refuses empty turns and empty text parts
        if contents and contents[-1]["role"] == g_role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": g_role, "parts": parts})
    return system, contents


def _plain_text(content: Any, where: str) -> str:
    """A system or tool message's text; other parts have nowhere to go, so they are refused
    rather than lost."""
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text":
                raise Untranslatable(
                    f"{where}: only text parts can be translated in this message for Gemini",
                    param="messages",
                )
            text = part.get("text")
            if isinstance(text, str):
                texts.append(text)
        return "".join(texts)
    raise Untranslatable(f"{where}: content must be a string or a list", param="messages")


def _user_parts(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"text": content}] if content else []
    if not isinstance(content, list):
        raise Untranslatable(f"{where}: content must be a string or a list", param="messages")
    parts: list[dict[str, Any]] = []
    for k, part in enumerate(content):
        at = f"{where}.content[{k}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            text = part.get("text")
            if isinstance(text, str) and text:
                parts.append({"text": text})
        elif kind == "image_url":
            parts.append(_image_part(image_url_of(part), at))
        elif kind == "input_audio":
            parts.append(_audio_part(part.get("input_audio"), at))
        elif kind == "file":
            parts.append(_file_part(part.get("file"), at))
        else:
            raise Untranslatable(
                f"{at}: content part type {kind!r} cannot be translated for Gemini",
                param="messages",
            )
    return parts


def _image_part(url: str | None, where: str) -> dict[str, Any]:
    if url is None:
        raise Untranslatable(f"{where}: the image_url part has no URL", param="messages")
    if url[:5].lower() == "data:":
        parsed = parse_data_url(url)
        if parsed is None:
            raise Untranslatable(
                f"{where}: the image is not a valid base64 data URL", param="messages"
            )
        return {"inlineData": {"mimeType": parsed[0], "data": parsed[1]}}
    try:
        split = urlsplit(url)
    except ValueError:
        raise Untranslatable(
            f"{where}: the image URL is not a valid URL", param="messages"
        ) from None
    if split.scheme.lower() not in _URL_SCHEMES:
        raise Untranslatable(
            f"{where}: Gemini takes images as base64 data URLs or http(s)/gs URLs",
            param="messages",
        )
    mime = mimetypes.guess_type(split.path)[0]
    if mime is None or not mime.startswith("image/"):
        mime = "image/jpeg"
    return {"fileData": {"mimeType": mime, "fileUri": url}}


def _audio_part(audio: Any, where: str) -> dict[str, Any]:
    data = audio.get("data") if isinstance(audio, dict) else None
    fmt = audio.get("format") if isinstance(audio, dict) else None
    if not isinstance(data, str) or not data or not isinstance(fmt, str) or not fmt:
        raise Untranslatable(f"{where}: input_audio needs 'data' and 'format'", param="messages")
    return {"inlineData": {"mimeType": f"audio/{fmt.lower()}", "data": data}}


def _file_part(file: Any, where: str) -> dict[str, Any]:
    """An inline file (a data URL, or base64 with a filename to tell its type); an OpenAI
    ``file_id`` means nothing to Google."""
    data = file.get("file_data") if isinstance(file, dict) else None
    if isinstance(data, str) and data:
        parsed = parse_data_url(data) if data[:5].lower() == "data:" else None
        if parsed is not None:
            return {"inlineData": {"mimeType": parsed[0], "data": parsed[1]}}
        filename = file.get("filename")
        mime = mimetypes.guess_type(filename)[0] if isinstance(filename, str) else None
        if mime is not None and data[:5].lower() != "data:":
            return {"inlineData": {"mimeType": mime, "data": data}}
    raise Untranslatable(
        f"{where}: Gemini takes files as inline base64 data (a data URL, or a filename with "
        "a known extension); OpenAI file ids cannot be sent",
        param="messages",
    )


def _assistant_parts(
    message: dict[str, Any], where: str, names: dict[str, str]
) -> list[dict[str, Any]]:
    if message.get("function_call") is not None:
        raise Untranslatable(
            f"{where}: the legacy 'function_call' is not translated for Gemini; use tool_calls",
            param="messages",
        )
    parts: list[dict[str, Any]] = []
    text = _assistant_text(message.get("content"), where)
    if text:
        parts.append({"text": text})
    calls = message.get("tool_calls")
    if calls is None:
        return parts
    if not isinstance(calls, list):
        raise Untranslatable(f"{where}: tool_calls must be a list", param="messages")
    for j, call in enumerate(calls):
        at = f"{where}.tool_calls[{j}]"
        if not isinstance(call, dict) or call.get("type", "function") != "function":
            raise Untranslatable(f"{at}: Gemini takes function tool calls only", param="messages")
        function = call.get("function")
        name = function.get("name") if isinstance(function, dict) else None
        if not isinstance(function, dict) or not isinstance(name, str) or not name:
            raise Untranslatable(f"{at}: not a function call with a name", param="messages")
        function_call: dict[str, Any] = {
            "name": name,
            "args": arguments_object(function.get("arguments"), at),
        }
        call_id = call.get("id")
        if isinstance(call_id, str) and call_id:
            function_call["id"] = call_id
            names[call_id] = name
        part: dict[str, Any] = {"functionCall": function_call}
        signature = _signature_of(call)
        if signature is not None:
            part["thoughtSignature"] = signature
        elif j == 0:
            # Gemini 3 validates the first call of each step; a history that lost the
            # signature (or never had one) passes with the sentinel instead of a 400
            part["thoughtSignature"] = SKIP_SIGNATURE
        parts.append(part)
    return parts


def _assistant_text(content: Any, where: str) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list):
        texts = []
        for part in content:
            kind = part.get("type") if isinstance(part, dict) else None
            value = part.get(kind) if kind in ("text", "refusal") else None
            if not isinstance(value, str):
                raise Untranslatable(
                    f"{where}: only text parts can be translated in an assistant message",
                    param="messages",
                )
            texts.append(value)
        return "".join(texts)
    raise Untranslatable(f"{where}: content must be a string or a list", param="messages")


def _signature_of(call: dict[str, Any]) -> str | None:
    """The thought signature a client echoed back where Google's OpenAI endpoint puts it."""
    extra = call.get("extra_content")
    google = extra.get("google") if isinstance(extra, dict) else None
    signature = google.get("thought_signature") if isinstance(google, dict) else None
    return signature if isinstance(signature, str) and signature else None


def _function_response(
    message: dict[str, Any], where: str, names: dict[str, str]
) -> dict[str, Any]:
    call_id = message.get("tool_call_id")
    name = names.get(call_id) if isinstance(call_id, str) else None
    if name is None:
        raise Untranslatable(
            f"{where}: no earlier assistant tool call has the id {call_id!r}; Gemini needs the "
            "function's name with its result",
            param="messages",
        )
    text = _plain_text(message.get("content"), where)
    # a JSON object goes as it is; anything else is wrapped, since Gemini wants an object
    result = json_object(text) if text.lstrip()[:1] == "{" else None
    return {
        "functionResponse": {
            "name": name,
            "id": call_id,
            "response": result if result is not None else {"content": text},
        }
    }


def _tools(tools: Any) -> list[dict[str, Any]] | None:
    if tools is None:
        return None
    if not isinstance(tools, list):
        raise Untranslatable("'tools' must be a list", param="tools")
    declarations = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict) or tool.get("type") != "function":
            raise Untranslatable(
                f"tools[{i}]: Gemini backends take function tools only", param="tools"
            )
        function = tool.get("function")
        name = function.get("name") if isinstance(function, dict) else None
        if not isinstance(name, str) or not name:
            raise Untranslatable(f"tools[{i}]: the function has no name", param="tools")
        declaration: dict[str, Any] = {"name": name}
        description = function.get("description")
        if isinstance(description, str) and description:
            declaration["description"] = description
        parameters = function.get("parameters")
        if parameters is not None:
            declaration["parametersJsonSchema"] = parameters
        declarations.append(declaration)
    return [{"functionDeclarations": declarations}] if declarations else None


def _tool_config(choice: Any) -> dict[str, Any] | None:
    if choice is None:
        return None
    if isinstance(choice, str) and choice in _TOOL_CHOICE:
        return {"functionCallingConfig": {"mode": _TOOL_CHOICE[choice]}}
    if isinstance(choice, dict) and choice.get("type") == "function":
        function = choice.get("function")
        name = function.get("name") if isinstance(function, dict) else None
        if isinstance(name, str) and name:
            return {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [name]}}
    raise Untranslatable(
        "tool_choice must be 'auto', 'none', 'required' or a named function for Gemini",
        param="tool_choice",
    )


def _generation_config(body: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for source, target in _SAMPLING:
        value = body.get(source)
        if value is not None:
            config[target] = value
    max_tokens = body.get("max_completion_tokens")
    if max_tokens is None:
        max_tokens = body.get("max_tokens")
    if max_tokens is not None:
        config["maxOutputTokens"] = max_tokens
    stop = body.get("stop")
    if isinstance(stop, str):
        config["stopSequences"] = [stop]
    elif isinstance(stop, list) and stop:
        config["stopSequences"] = stop
    n = body.get("n")
    if n is not None and n != 1:
        if int_or_none(n) is None or n < 1:
            raise Untranslatable("'n' must be a positive integer", param="n")
        config["candidateCount"] = n
    _response_format(body.get("response_format"), config)
    return config


def _response_format(spec: Any, config: dict[str, Any]) -> None:
    kind = spec.get("type") if isinstance(spec, dict) else None
    if spec is None or kind == "text":
        return
    if kind == "json_object":
        config["responseMimeType"] = "application/json"
        return
    if kind == "json_schema":
        config["responseMimeType"] = "application/json"
        schema = spec.get("json_schema")
        schema = schema.get("schema") if isinstance(schema, dict) else None
        if schema is not None:
            config["responseJsonSchema"] = schema
        return
    raise Untranslatable(
        f"response_format {kind!r} cannot be translated for Gemini", param="response_format"
    )


# --- answers: Gemini → OpenAI ------------------------------------------------------------------


def answer(native: dict[str, Any], model: str) -> bytes:
    """A ``GenerateContentResponse`` as an OpenAI ``chat.completion``."""
    id_, created = _answer_id(native), int(time.time())
    usage = usage_of(native.get("usageMetadata"))
    candidates = native.get("candidates")
    if not isinstance(candidates, list) or not candidates:
        # the prompt itself was blocked: no candidate at all
        finish = "content_filter" if _blocked(native) else "stop"
        return completion(id_, model, created, assistant_message("", []), finish, usage)
    choices = []
    for candidate in candidates:
        if not isinstance(candidate, dict):
            continue
        text, calls = _candidate_output(candidate)
        message = assistant_message(None if calls and not text else text, calls)
        finish = finish_reason(candidate.get("finishReason"), bool(calls))
        choices.append((_index(candidate), message, finish))
    return completion_of(id_, model, created, sorted(choices, key=lambda c: c[0]), usage)


def _candidate_output(candidate: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """The answer's text (thoughts skipped) and its function calls as OpenAI tool calls."""
    content = candidate.get("content")
    parts = content.get("parts") if isinstance(content, dict) else None
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for part in parts if isinstance(parts, list) else ():
        if not isinstance(part, dict) or part.get("thought"):
            continue
        text = part.get("text")
        if isinstance(text, str):
            texts.append(text)
        function_call = part.get("functionCall")
        if isinstance(function_call, dict):
            calls.append(_tool_call(function_call, part.get("thoughtSignature")))
    return "".join(texts), calls


def _tool_call(function_call: dict[str, Any], signature: Any) -> dict[str, Any]:
    call_id = function_call.get("id")
    if not isinstance(call_id, str) or not call_id:
        call_id = f"call_{uuid.uuid4().hex[:24]}"
    name = function_call.get("name")
    args = function_call.get("args")
    arguments = json.dumps(
        args if args is not None else {}, ensure_ascii=False, separators=(",", ":")
    )
    result = tool_call(call_id, name if isinstance(name, str) else "", arguments)
    if isinstance(signature, str) and signature:
        result["extra_content"] = {"google": {"thought_signature": signature}}
    return result


def finish_reason(reason: Any, has_calls: bool) -> str:
    finish = _FINISH.get(reason, "stop") if isinstance(reason, str) else "stop"
    return "tool_calls" if finish == "stop" and has_calls else finish


def usage_of(metadata: Any) -> TokenUsage | None:
    """``usageMetadata`` in OpenAI's terms: thinking tokens are billed as output, the
    cached part is already inside ``promptTokenCount``."""
    if not isinstance(metadata, dict):
        return None
    prompt = int_or_none(metadata.get("promptTokenCount"))
    tool_prompt = int_or_none(metadata.get("toolUsePromptTokenCount"))
    if tool_prompt:
        prompt = (prompt or 0) + tool_prompt
    output = int_or_none(metadata.get("candidatesTokenCount"))
    thoughts = int_or_none(metadata.get("thoughtsTokenCount"))
    if thoughts:
        output = (output or 0) + thoughts
    return TokenUsage(prompt, output, int_or_none(metadata.get("cachedContentTokenCount")))


def _answer_id(native: dict[str, Any]) -> str:
    response_id = native.get("responseId")
    if isinstance(response_id, str) and response_id:
        return f"chatcmpl-{response_id}"
    return f"chatcmpl-{uuid.uuid4().hex}"


def _index(candidate: dict[str, Any]) -> int:
    """The candidate's index: absent means 0 (proto3 JSON leaves default values out)."""
    return int_or_none(candidate.get("index")) or 0


def _blocked(native: dict[str, Any]) -> bool:
    feedback = native.get("promptFeedback")
    return isinstance(feedback, dict) and bool(feedback.get("blockReason"))


def _google_error(body: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(body)
    except ValueError:
        return None
    if isinstance(value, list) and value:
        value = value[0]
    error = value.get("error") if isinstance(value, dict) else None
    return error if isinstance(error, dict) else None


def _stream_error(error: Any) -> UpstreamStreamError:
    if not isinstance(error, dict):
        return UpstreamStreamError(f"the Gemini API reported an error: {str(error)[:200]}")
    message = error.get("message")
    status = error.get("status")
    code = int_or_none(error.get("code"))
    text = message if isinstance(message, str) and message else "the Gemini API reported an error"
    if isinstance(status, str) and status:
        text = f"{text} ({status})"
        fault = status in _BACKEND_FAULTS
    else:
        fault = code is None or code >= 500
    return UpstreamStreamError(text, counts_against_backend=fault)


# --- streams -----------------------------------------------------------------------------------


class _Choice:
    """One candidate's progress through a stream."""

    __slots__ = ("finish", "tools")

    def __init__(self) -> None:
        self.tools = 0  # tool calls emitted so far: the next one's index
        self.finish: str | None = None  # Gemini's finishReason, once seen


class GoogleStreamDecoder:
    """Gemini's SSE (one ``GenerateContentResponse`` per event, no end event: the end of the
    body is the end) → OpenAI chunks. The finish chunk, the usage chunk and ``[DONE]`` come
    from ``flush``, since only the end of the stream says the answer is complete."""

    __slots__ = (
        "_blocked",
        "_choices",
        "_error",
        "_events",
        "_include_usage",
        "_model",
        "_writer",
        "usage",
    )

    def __init__(self, model: str, include_usage: bool, max_event_bytes: int | None) -> None:
        self._events = SSEEvents(max_event_bytes)
        self._model = model
        self._include_usage = include_usage
        self._writer: ChunkWriter | None = None  # made from the first event (its responseId)
        self._choices: dict[int, _Choice] = {}
        self._blocked = False
        self._error: UpstreamError | None = None  # raised on the next call, after the output
        self.usage: TokenUsage | None = None

    def feed(self, data: bytes) -> bytes:
        if self._error is not None:
            raise self._error
        out: list[bytes] = []
        try:
            self._translate(self._events.feed(data), out)
        except UpstreamError as exc:
            if not out:
                raise
            # the events before the error still reach the client; the error comes next call
            self._error = exc
        return b"".join(out)

    def flush(self) -> bytes:
        if self._error is not None:
            raise self._error
        out: list[bytes] = []
        self._translate(self._events.flush(), out)
        writer = self._writer
        if writer is None or not (self._choices or self._blocked):
            raise UpstreamStreamError("the stream ended without an answer")
        if any(choice.finish is None for choice in self._choices.values()):
            # Google ends every answer with a finishReason: without one it was cut short
            raise UpstreamStreamError("the stream ended before its finishReason")
        if self._choices:
            for index in sorted(self._choices):
                choice = self._choices[index]
                out.append(self._chunk(index, {}, finish_reason(choice.finish, choice.tools > 0)))
        else:  # the prompt was blocked: an empty answer, filtered
            out.append(writer.chunk({"role": "assistant", "content": ""}))
            out.append(writer.chunk({}, "content_filter"))
        if self._include_usage and self.usage is not None:
            out.append(writer.usage_chunk(self.usage))
        out.append(DONE)
        return b"".join(out)

    def _translate(self, events: list[SSEEvent], out: list[bytes]) -> None:
        for event in events:
            payload = json_object(event.data)
            if payload is None:
                raise UpstreamProtocolError(
                    f"invalid Gemini stream event: expected a JSON object, got {event.data[:80]!r}"
                )
            if "error" in payload:
                raise _stream_error(payload["error"])
            metadata = payload.get("usageMetadata")
            if metadata is not None:
                self.usage = usage_of(metadata)  # cumulative: the last one wins
            if self._writer is None:
                self._writer = ChunkWriter(_answer_id(payload), self._model, int(time.time()))
            candidates = payload.get("candidates")
            if not isinstance(candidates, list) or not candidates:
                self._blocked = self._blocked or _blocked(payload)
                continue
            for candidate in candidates:
                if isinstance(candidate, dict):
                    self._candidate(_index(candidate), candidate, out)

    def _candidate(self, index: int, candidate: dict[str, Any], out: list[bytes]) -> None:
        choice = self._choices.get(index)
        if choice is None:
            choice = self._choices[index] = _Choice()
            out.append(self._chunk(index, {"role": "assistant", "content": ""}))
        content = candidate.get("content")
        parts = content.get("parts") if isinstance(content, dict) else None
        texts: list[str] = []
        for part in parts if isinstance(parts, list) else ():
            if not isinstance(part, dict) or part.get("thought"):
                continue
            text = part.get("text")
            if isinstance(text, str):
                texts.append(text)
            function_call = part.get("functionCall")
            if isinstance(function_call, dict):
                if texts:
                    self._text(index, texts, out)
                call = _tool_call(function_call, part.get("thoughtSignature"))
                out.append(self._chunk(index, {"tool_calls": [{"index": choice.tools, **call}]}))
                choice.tools += 1
        if texts:
            self._text(index, texts, out)
        reason = candidate.get("finishReason")
        if isinstance(reason, str):
            choice.finish = reason

    def _text(self, index: int, texts: list[str], out: list[bytes]) -> None:
        text = "".join(texts)
        texts.clear()
        if text:
            out.append(self._chunk(index, {"content": text}))

    def _chunk(self, index: int, delta: dict[str, Any], finish: str | None = None) -> bytes:
        writer = self._writer
        assert writer is not None  # made before the first candidate
        return writer.chunk(delta, finish, index)
