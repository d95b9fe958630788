"""``POST /v1/chat/completions`` as a plain ASGI handler in front of the Quart app.

This is the hot path, so it skips the framework: Quart would build a Request object,
title-case every header, push contexts and run two tasks per request — measured, that was
as much time as the upstream call itself (docs/performance.md). Everything else (models,
health, metrics, dashboard) stays in Quart. A watcher task turns a client disconnect
into cancellation, so the upstream call is abandoned; it starts only once a request has run
for ``WATCH_AFTER`` (100 ms), because most non-streaming answers are done before then.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from nexusd.api.errors import too_large
from nexusd.api.validation import parse_chat_body
from nexusd.errors import MethodNotAllowed, NexusError, ServiceUnavailable
from nexusd.proxy import Streaming

if TYPE_CHECKING:
    from nexusd.core import Nexus

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PATH = "/v1/chat/completions"
#: a client that left is noticed within this delay (its disconnect waits in the queue)
WATCH_AFTER = 0.1
JSON_TYPE = (b"content-type", b"application/json")
SSE = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


class _Disconnected(Exception):
    pass


def _headers(extra: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode(), v.encode("latin-1", "replace")) for k, v in extra.items()]


class ChatEndpoint:
    def __init__(self, core: Nexus, app: ASGIApp) -> None:
        self.core = core
        self.app = app
        self.max_body = core.config.server.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH:
            await self.app(scope, receive, send)
        elif scope["method"] != "POST":
            err = MethodNotAllowed(f"Method {scope['method']} is not allowed on {PATH}; use POST")
            await _send_error(send, err)
        else:
            await self.chat(scope, receive, send)

    async def chat(self, scope: Scope, receive: Receive, send: Send) -> None:
        core = self.core
        started = time.perf_counter()
        request_id = str(uuid.uuid4())
        core.request_started()
        handed_over = False
        model: object = None
        failure: NexusError | None = None
        auth = None
        length = 0
        for name, value in scope["headers"]:
            if name == b"authorization":
                auth = value.decode("latin-1")
            elif name == b"content-length" and value.isdigit():
                length = int(value)
        state = _RequestState()
        try:
            if core.shutting_down:
                raise ServiceUnavailable(
                    "Nexus is shutting down; retry against the next instance",
                    headers={"Retry-After": "5"},
                    error_type="shutting_down",
                )
            if length > self.max_body:
                raise too_large(self.max_body)
            raw = await self._read_body(receive)
            body = parse_chat_body(raw)
            model = body["model"]
            task = asyncio.current_task()
            assert task is not None
            # most answers finish in milliseconds: only then is a watcher task worth its cost
            timer = asyncio.get_running_loop().call_later(
                WATCH_AFTER, state.start_watching, receive, task
            )
            try:
                result = await core.proxy.chat(body, raw, auth, request_id, started)
                if isinstance(result, Streaming):
                    handed_over = True  # the relay reports the end of the request
                    await _send_stream(send, result, state)
                else:
                    headers = [
                        (b"content-type", result.content_type.encode()),
                        *_headers(result.headers),
                    ]
                    await send(
                        {"type": "http.response.start", "status": result.status, "headers": headers}
                    )
                    state.finished = True
                    await send({"type": "http.response.body", "body": result.body})
            finally:
                timer.cancel()
                if state.watcher is not None:
                    state.watcher.cancel()
        except NexusError as err:
            failure = err
            err.headers.setdefault("X-Nexus-Request-Id", request_id)
            if not state.disconnected:
                await _send_error(send, err)
        except (_Disconnected, asyncio.CancelledError):
            if not state.disconnected:
                raise  # a real cancellation (shutdown), not the client leaving
        finally:
            if not handed_over:
                core.finish_request(request_id, started, model, failure)

    async def _read_body(self, receive: Receive) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected
            chunk = message.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > self.max_body:
                    raise too_large(self.max_body)
                chunks.append(chunk)
            if not message.get("more_body"):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class _RequestState:
    __slots__ = ("disconnected", "finished", "watcher")

    def __init__(self) -> None:
        self.disconnected = False
        self.finished = False
        self.watcher: asyncio.Task[None] | None = None

    def start_watching(self, receive: Receive, task: asyncio.Task[Any]) -> None:
        if not self.finished:
            self.watcher = asyncio.get_running_loop().create_task(_watch(receive, task, self))


async def _watch(receive: Receive, task: asyncio.Task[Any], state: _RequestState) -> None:
    """Cancel the request when its client goes away (but not after we finished answering)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            if not state.finished:
                state.disconnected = True
                task.cancel()
            return


async def _send_stream(send: Send, result: Streaming, state: _RequestState) -> None:
    relay = result.relay
    try:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [*SSE, *_headers(result.headers)],
            }
        )
        async for chunk in relay:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        state.finished = True
        await send({"type": "http.response.body", "body": b""})
    finally:
        await relay.aclose()


async def _send_error(send: Send, err: NexusError) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": err.status,
            "headers": [JSON_TYPE, *_headers(err.headers)],
        }
    )
    await send({"type": "http.response.body", "body": err.render()})
