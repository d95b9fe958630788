"""Validation of inference request bodies: only what routing needs; the rest passes through.

Each check rejects only what no backend could serve, with a message saying what to fix.
"""

from __future__ import annotations

import json
import re
from typing import Any

from nexusd.errors import InvalidRequest

#: OpenAI's limit on inputs in one embeddings request
MAX_EMBEDDING_INPUTS = 2048


#: longest model name accepted (real ones are far shorter; the bound keeps per-model state,
#: logs and history rows small whatever a client sends)
MAX_MODEL_NAME = 256
#: a lone UTF-16 surrogate escape (``\ud800``) in the raw body: only then are strings walked
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON (use null or a number)")


def _no_duplicate_model(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    if sum(1 for key, _ in pairs if key == "model") > 1:
        raise ValueError("the key 'model' appears more than once")
    return dict(pairs)


def parse_object(raw: bytes) -> dict[str, Any]:
    """RFC 8259 JSON, strictly: UTF-8 only, no NaN/Infinity, no lone surrogates, one
    ``model`` key. Each check costs nothing unless the raw bytes hint at the problem."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRequest(
            "Request body must be UTF-8 encoded JSON (RFC 8259); re-encode it as UTF-8"
        ) from None
    # the stdlib decoder would take the last of several "model" keys; backends might take the
    # first: refuse the ambiguity (checked only when the raw bytes contain it twice)
    pairs_hook = _no_duplicate_model if raw.count(b'"model"') > 1 else None
    try:
        body = json.loads(text, parse_constant=_reject_constant, object_pairs_hook=pairs_hook)
    except RecursionError:
        raise InvalidRequest("Request body is nested too deeply to be a real request") from None
    except ValueError as exc:
        raise InvalidRequest(f"Request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidRequest(f"Request body must be a JSON object, got {json_kind(body)}")
    if _SURROGATE_ESCAPE.search(raw) and _has_lone_surrogate(body):
        raise InvalidRequest(
            "Request body contains a lone UTF-16 surrogate escape (e.g. \\ud800), which is not "
            "text; send valid Unicode"
        )
    model = body.get("model")
    if model is None:
        raise InvalidRequest(
            "'model' is required: the model to use, e.g. \"llama3:8b\"", param="model"
        )
    if not isinstance(model, str) or not model.strip():
        raise InvalidRequest(
            f"'model' must be a non-empty string, got {json_kind(model)}", param="model"
        )
    if len(model) > MAX_MODEL_NAME:
        raise InvalidRequest(
            f"'model' is {len(model):,} characters long; model names are at most {MAX_MODEL_NAME}",
            param="model",
        )
    if _CONTROL.search(model):
        raise InvalidRequest(
            "'model' contains control characters (e.g. a line break); no model is named so",
            param="model",
        )
    return body


def _has_lone_surrogate(value: Any) -> bool:
    """Walk the parsed body (only when a surrogate escape was seen) for unencodable text."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def check_stream(body: dict[str, Any]) -> None:
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise InvalidRequest(
            f"'stream' must be true or false, got {json_kind(stream)}", param="stream"
        )


def parse_chat_body(raw: bytes) -> dict[str, Any]:
    body = parse_object(raw)
    messages = body.get("messages")
    if messages is None:
        raise InvalidRequest("'messages' is required: a list of chat messages", param="messages")
    if not isinstance(messages, list):
        raise InvalidRequest(
            f"'messages' must be a list, got {json_kind(messages)}", param="messages"
        )
    check_stream(body)
    return body


def parse_completions_body(raw: bytes) -> dict[str, Any]:
    """Legacy text completions: ``prompt`` is a string, strings, or token-id arrays."""
    body = parse_object(raw)
    prompt = body.get("prompt")
    if prompt is None:
        raise InvalidRequest(
            "'prompt' is required: the text to complete (a string or a list of strings)",
            param="prompt",
        )
    if not isinstance(prompt, str | list):
        raise InvalidRequest(
            f"'prompt' must be a string or a list, got {json_kind(prompt)}", param="prompt"
        )
    check_stream(body)
    return body


def parse_embeddings_body(raw: bytes) -> dict[str, Any]:
    """``input`` is a string or a non-empty list (strings or token-id arrays)."""
    body = parse_object(raw)
    inputs = body.get("input")
    if inputs is None:
        raise InvalidRequest(
            "'input' is required: a string or a list of strings to embed", param="input"
        )
    if isinstance(inputs, list):
        if not inputs:
            raise InvalidRequest("'input' must not be an empty list", param="input")
        if len(inputs) > MAX_EMBEDDING_INPUTS:
            raise InvalidRequest(
                f"'input' has {len(inputs)} items; at most {MAX_EMBEDDING_INPUTS} are allowed "
                "per request: split the batch",
                param="input",
            )
    elif not isinstance(inputs, str):
        raise InvalidRequest(
            f"'input' must be a string or a list, got {json_kind(inputs)}", param="input"
        )
    fmt = body.get("encoding_format")
    if fmt is not None and fmt not in ("float", "base64"):
        raise InvalidRequest(
            f'\'encoding_format\' must be "float" or "base64", got {json.dumps(fmt)}',
            param="encoding_format",
        )
    dims = body.get("dimensions")
    if dims is not None and (not isinstance(dims, int) or isinstance(dims, bool) or dims < 1):
        raise InvalidRequest(
            f"'dimensions' must be a positive integer, got {json.dumps(dims)}", param="dimensions"
        )
    if body.get("stream"):
        raise InvalidRequest("embeddings cannot be streamed: drop 'stream'", param="stream")
    return body


def json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    return {
        dict: "an object",
        list: "an array",
        str: "a string",
        int: "a number",
        float: "a number",
        type(None): "null",
    }.get(type(value), type(value).__name__)
