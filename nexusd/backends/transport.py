"""Moving bytes to and from one backend: the aiohttp transport (design §2).

The transport knows URLs, auth headers, timeouts and aiohttp's exceptions, and nothing of
dialects: it sends bytes and returns a status with bytes, or an open byte stream. Every
aiohttp error leaves here translated into the ``UpstreamError`` vocabulary, so the flow
above it (retries, failover, health) never sees a library type. One shared aiohttp session
serves all backends: measured ~2x httpx under concurrency, no pool leak on aborted streams.

A backend is not trusted to be well-behaved (docs/security.md, "Hostile or broken backends"):

- what it sends is bounded: a whole answer by ``max_response_bytes`` (read incrementally; a
  larger answer closes the connection, it is not drained), an SSE event by ``max_event_bytes``;
- a stream must be a stream: ``Content-Type: text/event-stream`` (a server may leave the type
  out) and first bytes that look like SSE; its 200 is committed only once its first whole
  event arrived, and its idle clock only restarts when an event completes;
- redirects are not followed for inference (a 3xx is a backend fault that names the
  ``Location``), and probes follow them only within the backend's own origin.

Each violation is an ``UpstreamProtocolError``: a backend fault that fails over before the
response head, and ends a stream with an error event after it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any, Protocol

import aiohttp
from aiohttp import hdrs
from yarl import URL

from nexusd.backends.upstream import (
    Timeouts,
    UpstreamConnectError,
    UpstreamError,
    UpstreamHTTPError,
    UpstreamProtocolError,
    UpstreamReply,
    UpstreamStream,
    UpstreamTimeout,
)

JSON = "application/json"
SSE = "text/event-stream"
#: Content-Types that say nothing: a stream answered with one is recognised by its bytes
UNDECLARED = frozenset({"", "application/octet-stream"})
#: how an SSE stream may begin (after a BOM and blank lines): a field name or a comment
SSE_FIELDS = (b"data", b"event", b"id", b"retry")
BOM = b"\xef\xbb\xbf"
LF, CR = 10, 13
#: redirects a probe follows within the backend's own origin
MAX_PROBE_REDIRECTS = 5
REDIRECTS = frozenset({301, 302, 303, 307, 308})


class Transport(Protocol):
    """What the gateway and the probers need from the wire; tests substitute a fake."""

    async def send(
        self, path: str, body: bytes, client_auth: str | None, headers: dict[str, str] | None = None
    ) -> UpstreamReply:
        """POST and read the whole answer; non-2xx raises ``UpstreamHTTPError``."""
        ...

    async def open_stream(
        self, path: str, body: bytes, client_auth: str | None, headers: dict[str, str] | None = None
    ) -> UpstreamStream:
        """POST and return once the first whole event arrived; non-2xx raises."""
        ...

    async def fetch(
        self, method: str, path: str, timeout: float, payload: Any = None
    ) -> tuple[int, bytes]:
        """A small metadata call for probers (no inference): status and body."""
        ...


class AiohttpTransport:
    def __init__(
        self,
        base_url: str,
        http: aiohttp.ClientSession,
        timeouts: Timeouts,
        *,
        auth_headers: dict[str, str] | None = None,
        forward_client_auth: bool = False,
    ) -> None:
        """``auth_headers`` carry the configured key in the backend's own scheme (the codec
        knows it); ``forward_client_auth`` passes the client's ``Authorization`` on instead,
        for local servers that check their own keys. Cloud backends never forward it (the
        loader refuses the setting): the provider must only ever see the configured key."""
        self.base_url = base_url
        self.http = http
        self.timeouts = timeouts
        self.forward_client_auth = forward_client_auth
        self.base_headers = {"Content-Type": JSON, "Accept-Encoding": "identity"}
        if auth_headers:
            self.base_headers.update(auth_headers)
        self._total_timeout = aiohttp.ClientTimeout(
            total=timeouts.total, sock_connect=timeouts.connect
        )
        self._stream_timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeouts.connect)

    def _headers(
        self, client_auth: str | None, extra: dict[str, str] | None = None
    ) -> dict[str, str]:
        headers = self.base_headers
        if extra:  # never one of ours: the client's cannot replace the configured key
            headers = {**extra, **headers}
        if client_auth and self.forward_client_auth:
            return {**headers, "Authorization": client_auth}
        return headers

    async def send(
        self, path: str, body: bytes, client_auth: str | None, headers: dict[str, str] | None = None
    ) -> UpstreamReply:
        limit = self.timeouts.max_response_bytes
        try:
            async with self.http.post(
                self.base_url + path,
                data=body,
                headers=self._headers(client_auth, headers),
                timeout=self._total_timeout,
                allow_redirects=False,
            ) as resp:
                if resp.status >= 300:
                    raise await http_error(resp, limit)
                length = resp.content_length
                if length is not None and length <= limit and _identity(resp):
                    payload = await resp.read()  # the usual case, inline: exactly ``length``
                else:
                    payload = await read_bounded(resp, limit)
                ctype = resp.content_type
        except UpstreamError:
            raise
        except Exception as exc:  # aiohttp's errors → our vocabulary
            raise translate(exc, "response", self.timeouts.total) from exc
        return UpstreamReply(resp.status, payload, ctype)

    async def open_stream(
        self, path: str, body: bytes, client_auth: str | None, headers: dict[str, str] | None = None
    ) -> AiohttpStream:
        """POST; return once the first whole SSE event arrived (the 200 is committed on it).

        The first byte must come within ``first_byte`` seconds; from there the first event
        must complete within ``idle`` seconds and ``max_event_bytes``. Every failure here is
        still before the response head, so the gateway can fail over.
        """
        t = self.timeouts
        resp: aiohttp.ClientResponse | None = None
        phase, seconds = "first byte", t.first_byte
        try:
            async with asyncio.timeout(t.first_byte) as deadline:
                resp = await self.http.post(
                    self.base_url + path,
                    data=body,
                    headers=self._headers(client_auth, headers),
                    timeout=self._stream_timeout,
                    allow_redirects=False,
                )
                if resp.status >= 300:
                    raise await http_error(resp, t.max_response_bytes)
                ctype = stream_type(resp)
                if ctype != SSE and ctype not in UNDECLARED:
                    raise not_a_stream(ctype, resp.content.read_nowait(200))
                content = resp.content
                first = await content.readany()
                if not first:
                    raise UpstreamProtocolError("backend closed the stream before sending any data")
                if not first.startswith(b"data:") and sse_start(first) is False:
                    # also when declared: e.g. a JSON error sent as text/event-stream
                    raise not_a_stream(ctype or "no Content-Type", first)
                if b"\n\n" not in first and not has_boundary(0, first):
                    # the first bytes arrived: now the first event must complete in time
                    phase, seconds = "complete event", t.idle
                    deadline.reschedule(asyncio.get_running_loop().time() + t.idle)
                    first = await self._first_event(content, first)
            if not first.startswith(b"data:"):
                # declared SSE must not look otherwise; undeclared must look like SSE
                verdict = sse_start(first)
                if verdict is False or (verdict is None and ctype != SSE):
                    raise not_a_stream(ctype or "no Content-Type", first)
        except UpstreamError:
            if resp is not None:
                resp.close()
            raise
        except BaseException as exc:
            if resp is not None:
                resp.close()
            if isinstance(exc, Exception):
                raise translate(exc, phase, seconds) from exc
            raise
        return AiohttpStream(resp, first, t.idle)

    async def _first_event(self, content: aiohttp.StreamReader, first: bytes) -> bytes:
        """Read on until an event boundary (or the end of the body): bounded in size."""
        limit = self.timeouts.max_event_bytes
        parts, size, last = [first], len(first), first[-1]
        while True:
            if size > limit:
                raise UpstreamProtocolError(
                    f"backend sent more than {limit} bytes without an event boundary before "
                    "its first event (limit: server.max_event_bytes)"
                )
            chunk = await content.readany()
            if not chunk:
                break  # a whole body without a blank line: the relay terminates it
            parts.append(chunk)
            size += len(chunk)
            if has_boundary(last, chunk):
                break
            last = chunk[-1]
        return b"".join(parts)

    async def fetch(
        self, method: str, path: str, timeout: float, payload: Any = None
    ) -> tuple[int, bytes]:
        """Redirects are followed (at most ``MAX_PROBE_REDIRECTS``) only within the backend's
        own origin: a probe must not be sent, with the backend's API key, anywhere else."""
        data = None if payload is None else json.dumps(payload).encode()
        url = URL(self.base_url + path)
        origin = _origin(url)
        limit = self.timeouts.max_response_bytes
        try:
            async with asyncio.timeout(timeout):
                for _ in range(MAX_PROBE_REDIRECTS + 1):
                    async with self.http.request(
                        method,
                        url,
                        data=data,
                        headers=self.base_headers,
                        timeout=aiohttp.ClientTimeout(total=timeout),
                        allow_redirects=False,
                    ) as resp:
                        location = resp.headers.get(hdrs.LOCATION)
                        if resp.status not in REDIRECTS or not location:
                            return resp.status, await read_bounded(resp, limit)
                        target = resp.url.join(URL(location))
                        if _origin(target) != origin:
                            raise UpstreamProtocolError(
                                f"HTTP {resp.status} redirect to another origin "
                                f"({_shown(location)}): not followed",
                                resp.status,
                            )
                        if resp.status == 303 or (resp.status in (301, 302) and method == "POST"):
                            method, data = "GET", None
                        url = target
                raise UpstreamProtocolError(f"more than {MAX_PROBE_REDIRECTS} redirects")
        except UpstreamError:
            raise
        except Exception as exc:
            raise translate(exc, "answer", timeout) from exc


def _origin(url: URL) -> tuple[str, str | None, int | None]:
    return url.scheme, url.host, url.port


def _shown(location: str) -> str:
    return repr(location[:200] + ("…" if len(location) > 200 else ""))


async def read_bounded(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    """The whole body, or ``UpstreamProtocolError`` as soon as it is known to exceed ``limit``.

    A declared length is checked before a byte is read; otherwise the body is read chunk by
    chunk and counted. Either way a too large answer closes the connection (not drained).
    """
    length = resp.content_length
    if length is not None and _identity(resp):
        if length > limit:
            resp.close()
            raise too_large(f"{length} bytes declared", limit)
        return await resp.read()  # exactly ``length`` bytes: aiohttp's own fast path
    content = resp.content
    first = await content.readany()
    chunk = await content.readany() if first else b""
    if not chunk:
        if len(first) > limit:
            resp.close()
            raise too_large(f"more than {limit} bytes", limit)
        return first  # one read: the common case of a small answer, no copy
    # one growing buffer rather than a list of chunks: the chunks are freed as they come,
    # and a large buffer is its own mapping, returned to the OS when dropped
    body = bytearray(first)
    while chunk:
        if len(body) + len(chunk) > limit:
            del body
            resp.close()
            raise too_large(f"more than {limit} bytes", limit)
        body += chunk
        chunk = await content.readany()
    return bytes(body)


def _identity(resp: aiohttp.ClientResponse) -> bool:
    """Not compressed (we ask for ``identity``): a declared length is then the body's size."""
    return resp.headers.get(hdrs.CONTENT_ENCODING, "identity") == "identity"


def too_large(what: str, limit: int) -> UpstreamProtocolError:
    return UpstreamProtocolError(
        f"backend answer too large ({what}; limit: server.max_response_bytes = {limit})"
    )


async def http_error(resp: aiohttp.ClientResponse, limit: int) -> UpstreamError:
    """A non-2xx answer: a redirect is a backend fault (never followed for inference); any
    other status becomes ``UpstreamHTTPError`` with its (bounded) body."""
    if resp.status < 400:
        location = resp.headers.get(hdrs.LOCATION)
        resp.close()
        where = f"to {_shown(location)}" if location else "without a Location"
        return UpstreamProtocolError(
            f"backend answered HTTP {resp.status}, a redirect {where}; Nexus does not follow "
            "redirects for inference (point the backend's url at the final address)",
            resp.status,
        )
    payload = await read_bounded(resp, limit)
    return UpstreamHTTPError(
        resp.status, payload, resp.content_type, resp.headers.get("Retry-After")
    )


def stream_type(resp: aiohttp.ClientResponse) -> str:
    """The media type of a stream answer, lower case, without parameters; ``""`` when the
    header is absent or empty. The usual exact ``text/event-stream`` is not parsed."""
    declared = resp.headers.get(hdrs.CONTENT_TYPE, "")
    if declared == SSE or declared.startswith("text/event-stream;"):
        return SSE
    return resp.content_type if declared.strip() else ""


def not_a_stream(ctype: str, head: bytes) -> UpstreamProtocolError:
    snippet = head[:120].decode("utf-8", "replace").strip()
    return UpstreamProtocolError(
        f"backend answered a stream request with {ctype}, not {SSE}"
        + (f": {snippet!r}" if snippet else "")
    )


def sse_start(head: bytes) -> bool | None:
    """Whether a body's first bytes are SSE: a field name (``data``, ``event``, ``id``,
    ``retry``) followed by ``:`` or a line end, or a ``:`` comment, after a BOM and blank
    lines. ``None`` while too few bytes arrived to tell."""
    head = head.removeprefix(BOM).lstrip(b"\r\n")
    if head[:1] == b":":
        return True
    for name in SSE_FIELDS:
        if head.startswith(name) and head[len(name) : len(name) + 1] in (b":", b"\n", b"\r"):
            return True
    return None if len(head) < 7 else False


def has_boundary(last: int, chunk: bytes) -> bool:
    """Whether ``chunk`` completes an SSE event (holds a blank line), given ``last``, the final
    byte of the stream before it (0 for none). Two line ends in a row make a blank line; a line
    end is LF, CR or CRLF, so in raw bytes that is LF LF, LF CR or CR CR (CR LF is one end)."""
    if b"\n\n" in chunk:
        return True
    first = chunk[0]
    if (last == LF and first in (LF, CR)) or (last == CR and first == CR):
        return True
    return b"\r" in chunk and (b"\n\r" in chunk or b"\r\r" in chunk)


def broken_connection(exc: BaseException) -> str:
    """What happened, in words: aiohttp's own text (``<TransferEncodingError: 400, …>``)
    reads like an HTTP 400 from the backend, which it is not."""
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "the backend closed the connection before its answer was complete"
    if isinstance(exc, OSError) and exc.strerror:
        return f"the connection to the backend broke ({exc.strerror.lower()})"
    return "the connection to the backend broke"


def translate(exc: Exception, phase: str, seconds: float) -> UpstreamError:
    """aiohttp's (and the OS's) failures in our vocabulary, with a message fit for people."""
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return UpstreamTimeout("connection", seconds)
    if isinstance(exc, TimeoutError):
        return UpstreamTimeout(phase, seconds)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return UpstreamConnectError(f"cannot connect: {exc.os_error.strerror or exc}")
    if isinstance(exc, aiohttp.ClientPayloadError):
        return UpstreamConnectError(broken_connection(exc))
    if isinstance(exc, aiohttp.ClientError | OSError):
        return UpstreamConnectError(f"connection failed: {exc or type(exc).__name__}")
    return UpstreamError(f"{type(exc).__name__}: {exc}")


class AiohttpStream:
    """Relays an upstream SSE body chunk by chunk, ending it after ``idle`` seconds without a
    completed event.

    The idle timeout is one watchdog timer per stream rather than a timeout context per
    chunk: per chunk it costs a clock read and a boundary test. Its clock restarts only when
    a chunk completes an event, so a backend trickling bytes that never form one times out
    like a silent one. Only time spent *waiting for the backend* counts; a slow client does
    not make the backend look idle (the clock is stopped while a completed event is out).
    """

    __slots__ = ("_idle", "_resp", "_since", "_timed_out", "_timer", "_trickled", "first")

    def __init__(self, resp: aiohttp.ClientResponse, first: bytes, idle: float) -> None:
        self._resp = resp
        self.first = first
        self._idle = idle
        self._since: float | None = None  # when the wait for the next event began
        self._trickled = 0  # bytes received since then, none completing an event
        self._timed_out = False
        self._timer: asyncio.TimerHandle | None = None

    def _watchdog(self) -> None:
        loop = asyncio.get_running_loop()
        since = self._since
        if since is not None and loop.time() - since >= self._idle:
            self._timed_out = True
            self._resp.close()  # wakes the pending read
            return
        wait = self._idle if since is None else self._idle - (loop.time() - since)
        self._timer = loop.call_later(wait, self._watchdog)

    def _timeout(self) -> UpstreamTimeout:
        if self._trickled:
            detail = f" ({self._trickled} bytes without an event boundary)"
            return UpstreamTimeout("complete event", self._idle, detail)
        return UpstreamTimeout("data", self._idle)

    async def chunks(self) -> AsyncIterator[bytes]:
        content = self._resp.content
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._idle, self._watchdog)
        prev = self.first or b"\0"  # the chunk before: a blank line may straddle two
        try:
            while True:
                if self._since is None:
                    self._since = loop.time()
                    self._trickled = 0
                try:
                    chunk = await content.readany()
                except (aiohttp.ClientError, OSError) as exc:
                    if self._timed_out:
                        raise self._timeout() from None
                    raise UpstreamConnectError(broken_connection(exc)) from exc
                if not chunk:
                    if self._timed_out:
                        raise self._timeout()
                    return
                if b"\n\n" in chunk or has_boundary(prev[-1], chunk):  # the common case inline
                    self._since = None  # an event is out: the client's pace is not ours
                else:
                    self._trickled += len(chunk)
                prev = chunk
                yield chunk
        finally:
            if self._timer is not None:
                self._timer.cancel()

    def close(self) -> None:
        """Close (not release): a half-read stream's connection cannot go back to the pool."""
        if self._resp.content.at_eof():
            self._resp.release()
        else:
            self._resp.close()
