"""Tiny encoding helpers shared by the protocol modules (no imports from them: avoids cycles)."""

from __future__ import annotations

import json
import secrets
import string
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

_BASE62 = string.ascii_letters + string.digits
BODY_KEY = web.RequestKey("fake_body", object)  # parsed JSON body, set by the recording middleware


def body_of(request: web.Request) -> Any:
    return request.get(BODY_KEY)


def dumps(obj: Any) -> str:
    # Compact separators like llama.cpp/vLLM emit; clients must not depend on spacing anyway.
    return json.dumps(obj, separators=(",", ":"))


def sse(obj: Any, eol: str = "\n") -> bytes:
    """One `data:` event; `eol` "\r\n" frames it as Google's servers do."""
    return f"data: {obj if isinstance(obj, str) else dumps(obj)}{eol}{eol}".encode()


def sse_event(name: str, obj: Any) -> bytes:
    """One named event (`event:` line, then `data:`), as Anthropic streams."""
    return f"event: {name}\ndata: {dumps(obj)}\n\n".encode()


def random_id(prefix: str, length: int = 24) -> str:
    """`prefix` + base62 characters: Anthropic's `msg_01...`, OpenAI's `call_...` ids."""
    return prefix + "".join(secrets.choice(_BASE62) for _ in range(length))


def ndjson(obj: Any) -> bytes:
    return (dumps(obj) + "\n").encode()


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(12)}"


def iso_now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")
