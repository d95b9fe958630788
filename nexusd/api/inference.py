"""The inference endpoints (chat, legacy completions, embeddings) as plain ASGI in front of
the Quart app.

This is the hot path, so it skips the framework: Quart would build a Request object,
title-case every header, push contexts and run two tasks per request — measured, that was
as much time as the upstream call itself (docs/performance.md). Everything else (models,
health, metrics, dashboard) stays in Quart.

Per request: an ``Exchange`` is opened, the body read once and handed to the endpoint's
inbound adapter, the gateway does the rest. A catch-all around it guarantees an answer in the
adapter's envelope (a 500 with the request id for a bug) and a finished exchange on every
path. A watcher task turns a client disconnect into cancellation, so the upstream call is
abandoned; it starts only once a request has run for ``WATCH_AFTER`` (100 ms), because most
non-streaming answers are done before then.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from nexusd.api.asgi import ASGIApp, Receive, Scope, Send
from nexusd.api.errors import too_large
from nexusd.api.inbound import ADAPTERS, InboundAdapter, StreamEncoder
from nexusd.backends.upstream import UpstreamError
from nexusd.errors import (
    InternalError,
    MethodNotAllowed,
    NexusError,
    RequestTimeout,
    ServiceUnavailable,
    UpstreamFailed,
)
from nexusd.exchange import Exchange, Phase
from nexusd.gateway import StreamAnswer
from nexusd.sse import error_event

if TYPE_CHECKING:
    from nexusd.core import Nexus

log = logging.getLogger("nexus.api")


#: a client that left is noticed within this delay (its disconnect waits in the queue)
WATCH_AFTER = 0.1
JSON_TYPE = (b"content-type", b"application/json")
SSE = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
#: HTTP status recorded for a request whose client left before any answer (nginx's 499)
CLIENT_CLOSED = 499


class _Disconnected(Exception):
    pass


def _headers(extra: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode(), v.encode("latin-1", "replace")) for k, v in extra.items()]


class InferenceEndpoint:
    def __init__(
        self, core: Nexus, app: ASGIApp, adapters: tuple[InboundAdapter, ...] = ADAPTERS
    ) -> None:
        self.core = core
        self.app = app
        self.adapters = {a.path: a for a in adapters}
        self.max_body = core.config.server.max_body_bytes
        self.body_timeout = core.config.server.body_timeout_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        adapter = self.adapters.get(scope["path"]) if scope["type"] == "http" else None
        if adapter is None:
            await self.app(scope, receive, send)
        elif scope["method"] != "POST":
            err = MethodNotAllowed(
                f"Method {scope['method']} is not allowed on {adapter.path}; use POST"
            )
            await _send_error(send, err, adapter)
        else:
            await self.serve(adapter, scope, receive, send)

    async def serve(
        self, adapter: InboundAdapter, scope: Scope, receive: Receive, send: Send
    ) -> None:
        core = self.core
        ex = core.open_exchange(adapter.endpoint)
        ex.trace.dialect = adapter.dialect  # also on the record of a request refused unread
        auth = beta = privacy = strict = flexible = None
        length = 0
        for name, value in scope["headers"]:
            if name == b"authorization":
                auth = value.decode("latin-1")
            elif name == b"content-length" and value.isdigit():
                length = int(value)
            elif name == b"x-api-key" and auth is None:  # Anthropic clients' spelling
                auth = "Bearer " + value.decode("latin-1")
            elif name == b"anthropic-beta":  # features a native Anthropic backend needs
                beta = value.decode("latin-1")
            elif name == b"x-nexus-privacy":
                privacy = value.decode("latin-1")
            elif name == b"x-nexus-strict":
                strict = value.decode("latin-1")
            elif name == b"x-nexus-flexible":
                flexible = value.decode("latin-1")
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
            call = adapter.parse(raw)
            if beta is not None and call.dialect == "anthropic":
                call.native_headers = {"anthropic-beta": beta}
            call.privacy, call.strict, call.flexible = privacy, strict, flexible
            trace = ex.trace
            trace.requested_model = call.body["model"]
            trace.stream = call.stream
            task = asyncio.current_task()
            assert task is not None
            # most answers finish in milliseconds: only then is a watcher task worth its cost
            timer = asyncio.get_running_loop().call_later(
                WATCH_AFTER, state.start_watching, receive, task
            )
            try:
                answer = await core.gateway.handle(ex, call, auth, adapter.requirements(call))
                if isinstance(answer, StreamAnswer):
                    if not answer.native:
                        state.encoder = answer.relay.encoder = adapter.stream_encoder(call)
                    await self._stream(ex, answer, send, state)
                else:
                    try:
                        body = adapter.answer_body(answer, call)
                    except UpstreamError as exc:  # a 200 the dialect cannot be made from
                        raise UpstreamFailed(
                            f"Backend '{ex.trace.backend_name}' answered something that is not "
                            f"a chat completion: {exc.message}",
                            error_type="backend_error",
                        ) from exc
                    ex.advance(Phase.ANSWERED)
                    headers = [
                        (b"content-type", answer.content_type.encode()),
                        *_headers(answer.headers),
                    ]
                    await send(
                        {"type": "http.response.start", "status": answer.status, "headers": headers}
                    )
                    state.finished = True
                    await send({"type": "http.response.body", "body": body})
                    passed = answer.status >= 300
                    ex.finish("passed_through" if passed else "ok", answer.status)
            finally:
                timer.cancel()
                if state.watcher is not None:
                    state.watcher.cancel()
        except NexusError as err:
            await self._refuse(ex, adapter, send, state, err)
        except _Disconnected:
            pass  # the client left while sending its body: finished below
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if state.disconnected and task is not None and task.uncancel() == 0:
                pass  # only our watcher's cancel: the client left; finished below
            else:  # a real cancellation (shutdown), maybe on top of the client leaving
                if not ex.finished:
                    ex.finish("cancelled", self._status(ex), error_type="cancelled")
                raise
        except Exception as exc:  # the catch-all: a bug must still answer and finish
            log.exception("request %s failed inside Nexus", ex.request_id)
            err = InternalError(
                f"Internal error in Nexus ({type(exc).__name__}); request id {ex.request_id}. "
                "This is a bug: the daemon's log has the traceback"
            )
            await self._refuse(ex, adapter, send, state, err)
        finally:
            if not ex.finished:
                status = self._status(ex)
                ex.finish("client_disconnected", status, error_type="client_disconnected")

    @staticmethod
    def _status(ex: Exchange) -> int:
        return 200 if ex.phase is Phase.STREAMING else CLIENT_CLOSED

    async def _refuse(
        self,
        ex: Exchange,
        adapter: InboundAdapter,
        send: Send,
        state: _RequestState,
        err: NexusError,
    ) -> None:
        err.headers.setdefault("X-Nexus-Request-Id", ex.request_id)
        if ex.finished:  # e.g. the relay already ended it; nothing left to say
            return
        if ex.phase is Phase.STREAMING:
            # the head went out already: the error can only be a last event (translated
            # like the events before it, or in the dialect of a native stream)
            if not state.disconnected:
                if state.encoder is not None:
                    last = state.encoder.feed(error_event(err.message))
                else:
                    last = adapter.stream_error(err.message)
                await send({"type": "http.response.body", "body": last, "more_body": False})
            ex.finish("error", 200, error=err.message, error_type=err.error_type)
            return
        if ex.phase is not Phase.ANSWERED:
            ex.advance(Phase.ANSWERED)
            if not state.disconnected:
                await _send_error(send, err, adapter)
        ex.finish("error", err.status, error=err.message, error_type=err.error_type)

    async def _stream(
        self, ex: Exchange, answer: StreamAnswer, send: Send, state: _RequestState
    ) -> None:
        ex.advance(Phase.STREAMING)
        relay = answer.relay
        events = relay.events()
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [*SSE, *_headers(answer.headers)],
                }
            )
            # in the client's dialect already: the relay runs the encoder, so a stream that
            # ends short is recorded as failed
            async for chunk in events:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            state.finished = True
            await send({"type": "http.response.body", "body": b""})
        finally:
            await events.aclose()
            relay.close()  # the generator's cleanup never ran if it never started

    async def _read_body(self, receive: Receive) -> bytes:
        """The whole body, within ``max_body_bytes`` and ``body_timeout_seconds``.

        Most bodies arrive in one message; only a body in several pays for a deadline, so a
        client trickling bytes cannot hold the connection (and its file descriptor) open."""
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        first = message.get("body", b"")
        if len(first) > self.max_body:
            raise too_large(self.max_body)
        if not message.get("more_body"):
            return first
        try:
            async with asyncio.timeout(self.body_timeout):
                return await self._read_rest(receive, first)
        except TimeoutError:
            raise RequestTimeout(
                f"The request body did not arrive within {self.body_timeout:g} s "
                "(server.body_timeout_seconds); send it at once"
            ) from None

    async def _read_rest(self, receive: Receive, first: bytes) -> bytes:
        chunks = [first]
        size = len(first)
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
                return b"".join(chunks)


class _RequestState:
    __slots__ = ("disconnected", "encoder", "finished", "watcher")

    def __init__(self) -> None:
        self.disconnected = False
        self.finished = False
        self.watcher: asyncio.Task[None] | None = None
        #: a stream translated to the client's dialect (None: passed through)
        self.encoder: StreamEncoder | None = None

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


async def _send_error(send: Send, err: NexusError, adapter: InboundAdapter) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": err.status,
            "headers": [JSON_TYPE, *_headers(err.headers)],
        }
    )
    await send({"type": "http.response.body", "body": adapter.render_error(err)})
