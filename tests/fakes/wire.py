"""Tiny encoding helpers shared by the protocol modules (no imports from them: avoids cycles)."""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

BODY_KEY = web.RequestKey("fake_body", object)  # parsed JSON body, set by the recording middleware


def body_of(request: web.Request) -> Any:
    return request.get(BODY_KEY)


def dumps(obj: Any) -> str:
    # Compact separators like llama.cpp/vLLM emit; clients must not depend on spacing anyway.
    return json.dumps(obj, separators=(",", ":"))


def sse(obj: Any) -> bytes:
    return f"data: {obj if isinstance(obj, str) else dumps(obj)}\n\n".encode()


def ndjson(obj: Any) -> bytes:
    return (dumps(obj) + "\n").encode()


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(12)}"


def iso_now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")
