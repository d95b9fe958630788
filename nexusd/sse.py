"""Server-sent events relayed as whole events, never split, never re-wrapped.

Upstream bytes are cut only at event boundaries (a blank line), so UTF-8 characters and
JSON payloads split across network reads arrive intact, and an error event can always be
appended cleanly if the upstream dies mid-stream. No payload is parsed on this path.
"""

from __future__ import annotations

import json
from typing import Any


class SSEFramer:
    __slots__ = ("_pending",)

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, data: bytes) -> bytes:
        """Add upstream bytes; return every complete event now available (maybe ``b""``)."""
        if self._pending:
            data = self._pending + data
        if b"\r" in data:
            # CRLF or CR line endings: normalise, but keep a trailing CR until its LF arrives
            held = b"\r" if data.endswith(b"\r") else b""
            if held:
                data = data[:-1]
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n") + held
        cut = data.rfind(b"\n\n")
        if cut < 0:
            self._pending = data
            return b""
        self._pending = data[cut + 2 :]
        return data[: cut + 2]

    def flush(self) -> bytes:
        """At a clean end of stream: the last event, terminated, if the upstream left it open."""
        rest = self._pending.rstrip(b"\r\n")
        self._pending = b""
        return rest + b"\n\n" if rest.strip() else b""


def error_event(message: str, *, type_: str = "server_error", code: str = "bad_gateway") -> bytes:
    """The in-stream error the OpenAI SDKs understand (they raise on a ``data: {"error"…}``)."""
    payload: dict[str, Any] = {
        "error": {"message": message, "type": type_, "param": None, "code": code}
    }
    return b"data: " + json.dumps(payload).encode() + b"\n\n"
