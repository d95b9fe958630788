"""Server-sent events relayed as whole events, never split, never re-wrapped.

Upstream bytes are cut only at event boundaries (a blank line), so UTF-8 characters and
JSON payloads split across network reads arrive intact, and an error event can always be
appended cleanly if the upstream dies mid-stream. No payload is parsed on this path.

Framing is linear in the bytes received: pending bytes are kept as a list of chunks (joined
once, when their event completes) and each feed searches only its own bytes, plus one byte of
overlap, for a boundary. Pending bytes are bounded: more than ``max_event_bytes`` without an
event boundary is a backend fault.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from nexusd.backends.upstream import UpstreamProtocolError


class SSEFramer:
    """Upstream bytes in, whole events out; CRLF and bare CR line endings normalised to LF."""

    __slots__ = ("_cr", "_limit", "_nl", "_parts", "_size", "max_event_bytes")

    #: pass-through: the usage is in the bytes (the relay reads it there)
    usage = None

    def __init__(self, max_event_bytes: int | None = None) -> None:
        self.max_event_bytes = max_event_bytes
        self._limit = sys.maxsize if max_event_bytes is None else max_event_bytes
        self._parts: list[bytes] = []  # pending bytes (normalised), oldest first
        self._size = 0  # their total length
        self._nl = False  # the pending bytes end with LF (half of a boundary)
        self._cr = False  # a CR held back from the last feed until we know if LF follows

    def feed(self, data: bytes) -> bytes:
        """Add upstream bytes; return every complete event now available (maybe ``b""``).

        Raises ``UpstreamProtocolError`` when more than ``max_event_bytes`` are pending
        without an event boundary.
        """
        if not self._parts and data.endswith(b"\n\n") and not self._cr and b"\r" not in data:
            return data  # whole events and nothing pending: the usual read, passed as is
        if self._cr or b"\r" in data:
            # CRLF or CR line endings: normalise, keeping a trailing CR until its LF arrives
            if self._cr:
                data = b"\r" + data
            self._cr = data.endswith(b"\r")
            if self._cr:
                data = data[:-1]
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            if not data:
                return b""
        cut = data.rfind(b"\n\n")
        if cut >= 0:
            end = cut + 2
        elif self._nl and data[:1] == b"\n":  # the boundary straddles the previous feed
            end = 1
        else:  # no boundary yet: keep the bytes, unjoined
            if data:
                self._parts.append(data)
                self._size = size = self._size + len(data)
                self._nl = data[-1] == 10  # LF
                if size > self._limit:
                    self._too_large()
            return b""
        if self._parts:
            self._parts.append(data[:end])
            out = b"".join(self._parts)
            self._parts.clear()
        else:
            out = data[:end]  # the whole of ``data`` (no copy) in the common case
        rest = data[end:]
        self._size = len(rest)
        self._nl = False
        if rest:
            self._parts.append(rest)
            self._nl = rest[-1] == 10
            if self._size > self._limit:
                self._too_large()
        return out

    def _too_large(self) -> None:
        size = self._size
        self._parts.clear()
        self._size = 0
        raise UpstreamProtocolError(
            f"backend sent more than {self.max_event_bytes} bytes ({size}) without an event "
            "boundary (limit: server.max_event_bytes)"
        )

    def flush(self) -> bytes:
        """At a clean end of stream: the last event, terminated, if the upstream left it open."""
        rest = b"".join(self._parts).rstrip(b"\n")
        self._parts.clear()
        self._size = 0
        self._nl = self._cr = False
        return rest + b"\n\n" if rest.strip() else b""


def error_event(message: str, *, type_: str = "server_error", code: str = "bad_gateway") -> bytes:
    """The in-stream error the OpenAI SDKs understand (they raise on a ``data: {"error"…}``)."""
    payload: dict[str, Any] = {
        "error": {"message": message, "type": type_, "param": None, "code": code}
    }
    return b"data: " + json.dumps(payload).encode() + b"\n\n"
