"""Moving bytes to and from one backend: the aiohttp transport (design §2).

The transport knows URLs, auth headers, timeouts and aiohttp's exceptions, and nothing of
dialects: it sends bytes and returns a status with bytes, or an open byte stream. Every
aiohttp error leaves here translated into the ``UpstreamError`` vocabulary, so the flow
above it (retries, failover, health) never sees a library type. One shared aiohttp session
serves all backends: measured ~2x httpx under concurrency, no pool leak on aborted streams.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any, Protocol

import aiohttp

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


class Transport(Protocol):
    """What the gateway and the probers need from the wire; tests substitute a fake."""

    async def send(self, path: str, body: bytes, client_auth: str | None) -> UpstreamReply:
        """POST and read the whole answer; non-2xx raises ``UpstreamHTTPError``."""
        ...

    async def open_stream(self, path: str, body: bytes, client_auth: str | None) -> UpstreamStream:
        """POST and return once the first body bytes arrived; non-2xx raises."""
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
        api_key: str | None = None,
        forward_client_auth: bool = False,
    ) -> None:
        self.base_url = base_url
        self.http = http
        self.timeouts = timeouts
        self.forward_client_auth = forward_client_auth
        self.base_headers = {"Content-Type": JSON, "Accept-Encoding": "identity"}
        if api_key:
            self.base_headers["Authorization"] = f"Bearer {api_key}"
        self._total_timeout = aiohttp.ClientTimeout(
            total=timeouts.total, sock_connect=timeouts.connect
        )
        self._stream_timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeouts.connect)

    def _headers(self, client_auth: str | None) -> dict[str, str]:
        if client_auth and self.forward_client_auth:
            return {**self.base_headers, "Authorization": client_auth}
        return self.base_headers

    async def send(self, path: str, body: bytes, client_auth: str | None) -> UpstreamReply:
        try:
            async with self.http.post(
                self.base_url + path,
                data=body,
                headers=self._headers(client_auth),
                timeout=self._total_timeout,
            ) as resp:
                payload = await resp.read()
                ctype = resp.content_type
                if resp.status >= 300:
                    raise UpstreamHTTPError(
                        resp.status, payload, ctype, resp.headers.get("Retry-After")
                    )
        except UpstreamError:
            raise
        except Exception as exc:  # aiohttp's errors → our vocabulary
            raise translate(exc, "response", self.timeouts.total) from exc
        return UpstreamReply(resp.status, payload, ctype)

    async def open_stream(self, path: str, body: bytes, client_auth: str | None) -> AiohttpStream:
        t = self.timeouts
        resp: aiohttp.ClientResponse | None = None
        try:
            async with asyncio.timeout(t.first_byte):
                resp = await self.http.post(
                    self.base_url + path,
                    data=body,
                    headers=self._headers(client_auth),
                    timeout=self._stream_timeout,
                )
                if resp.status >= 300:
                    payload = await resp.read()
                    resp.release()
                    raise UpstreamHTTPError(
                        resp.status, payload, resp.content_type, resp.headers.get("Retry-After")
                    )
                first = await resp.content.readany()
            if not first:
                resp.release()
                raise UpstreamProtocolError("backend closed the stream before sending any data")
        except UpstreamError:
            if resp is not None:
                resp.close()
            raise
        except BaseException as exc:
            if resp is not None:
                resp.close()
            if isinstance(exc, Exception):
                raise translate(exc, "first byte", t.first_byte) from exc
            raise
        return AiohttpStream(resp, first, t.idle)

    async def fetch(
        self, method: str, path: str, timeout: float, payload: Any = None
    ) -> tuple[int, bytes]:
        data = None if payload is None else json.dumps(payload).encode()
        try:
            async with self.http.request(
                method,
                self.base_url + path,
                data=data,
                headers=self.base_headers,
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as resp:
                return resp.status, await resp.read()
        except Exception as exc:
            raise translate(exc, "answer", timeout) from exc


def translate(exc: Exception, phase: str, seconds: float) -> UpstreamError:
    """aiohttp's (and the OS's) failures in our vocabulary, with a message fit for people."""
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return UpstreamTimeout("connection", seconds)
    if isinstance(exc, TimeoutError):
        return UpstreamTimeout(phase, seconds)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return UpstreamConnectError(f"cannot connect: {exc.os_error.strerror or exc}")
    if isinstance(exc, aiohttp.ClientPayloadError):
        return UpstreamConnectError(f"connection lost while reading the response: {exc}")
    if isinstance(exc, aiohttp.ClientError | OSError):
        return UpstreamConnectError(f"connection failed: {exc or type(exc).__name__}")
    return UpstreamError(f"{type(exc).__name__}: {exc}")


class AiohttpStream:
    """Relays an upstream SSE body chunk by chunk, ending it after ``idle`` seconds of silence.

    The idle timeout is one watchdog timer per stream rather than a timeout context per
    chunk: per chunk it costs two clock reads. Only time spent *waiting for the backend*
    counts; a slow client does not make the backend look idle.
    """

    __slots__ = ("_idle", "_read_since", "_resp", "_timed_out", "_timer", "first")

    def __init__(self, resp: aiohttp.ClientResponse, first: bytes, idle: float) -> None:
        self._resp = resp
        self.first = first
        self._idle = idle
        self._read_since: float | None = None  # when the pending read started
        self._timed_out = False
        self._timer: asyncio.TimerHandle | None = None

    def _watchdog(self) -> None:
        loop = asyncio.get_running_loop()
        since = self._read_since
        if since is not None and loop.time() - since >= self._idle:
            self._timed_out = True
            self._resp.close()  # wakes the pending read
            return
        wait = self._idle if since is None else self._idle - (loop.time() - since)
        self._timer = loop.call_later(wait, self._watchdog)

    async def chunks(self) -> AsyncIterator[bytes]:
        content = self._resp.content
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._idle, self._watchdog)
        try:
            while True:
                self._read_since = loop.time()
                try:
                    chunk = await content.readany()
                except (aiohttp.ClientError, OSError) as exc:
                    if self._timed_out:
                        raise UpstreamTimeout("data", self._idle) from None
                    raise UpstreamConnectError(
                        f"backend connection lost mid-stream: {exc}"
                    ) from exc
                self._read_since = None
                if not chunk:
                    if self._timed_out:
                        raise UpstreamTimeout("data", self._idle)
                    return
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
