"""Validation of a chat request body: only what routing needs; the rest passes through."""

from __future__ import annotations

import json
from typing import Any

from nexusd.errors import InvalidRequest


def parse_chat_body(raw: bytes) -> dict[str, Any]:
    """Validate only what routing needs; everything else is forwarded untouched."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"Request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidRequest(f"Request body must be a JSON object, got {_json_kind(body)}")
    model = body.get("model")
    if model is None:
        raise InvalidRequest(
            "'model' is required: the model to use, e.g. \"llama3:8b\"", param="model"
        )
    if not isinstance(model, str) or not model.strip():
        raise InvalidRequest(
            f"'model' must be a non-empty string, got {_json_kind(model)}", param="model"
        )
    messages = body.get("messages")
    if messages is None:
        raise InvalidRequest("'messages' is required: a list of chat messages", param="messages")
    if not isinstance(messages, list):
        raise InvalidRequest(
            f"'messages' must be a list, got {_json_kind(messages)}", param="messages"
        )
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise InvalidRequest(
            f"'stream' must be true or false, got {_json_kind(stream)}", param="stream"
        )
    return body


def _json_kind(value: Any) -> str:
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
