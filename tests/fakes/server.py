"""FakeBackend: one aiohttp app that impersonates a real inference server over a real socket.

Protocol details live in `openai_api`, `ollama_api`, `native_api`, `anthropic_api` and
`google_api`; this module owns what they share: request recording, authentication, fault
gating, stream writing with drops and in-stream errors, disconnect detection and the
listen/stop lifecycle.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any

from aiohttp import web

from . import anthropic_api, google_api, hostile, native_api, ollama_api, openai_api
from .state import (
    FakeModel,
    Faults,
    RecordedRequest,
    endpoint_of,
    split_pieces,
)
from .wire import BODY_KEY

#: the kinds that serve the OpenAI-compatible surface (`/v1/models`, chat, completions, ...)
KINDS = ("ollama", "openai", "vllm", "llamacpp", "lmstudio", "exo")
#: the cloud APIs that speak only their own protocol (no OpenAI surface)
NATIVE_CLOUD_KINDS = ("anthropic", "google")
ALL_KINDS = KINDS + NATIVE_CLOUD_KINDS
#: the hosted APIs (`openai` is also the generic OpenAI-compatible server)
CLOUD_KINDS = ("openai", *NATIVE_CLOUD_KINDS)
# exo's API has chat completions but no legacy `/v1/completions` (checked up to mid-2026)
NO_COMPLETIONS = frozenset({"exo"})
LLAMACPP_NO_EMBEDDINGS = "This server does not support embeddings. Start it with `--embeddings`"
LLAMACPP_NO_LOGITS = "the current context does not support logits computation. skipping"
_STREAMING = web.RequestKey("fake_streaming", bool)
_DROPPED = web.RequestKey("fake_dropped", bool)
_ERROR_TYPES = {
    400: ("invalid_request_error", "bad_request"),
    401: ("authentication_error", "invalid_api_key"),
    403: ("permission_error", "forbidden"),
    404: ("not_found_error", "not_found"),
    408: ("timeout_error", "timeout"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
    500: ("server_error", "internal_error"),
    501: ("not_supported_error", "not_supported"),
    502: ("server_error", "bad_gateway"),
    503: ("unavailable_error", "service_unavailable"),
    504: ("timeout_error", "gateway_timeout"),
}


class FakeBackend:
    """A controllable stand-in for Ollama, vLLM, llama.cpp, LM Studio, exo, any OpenAI server,
    or the Anthropic and Google (Gemini) APIs.

    `api_key`: the key clients must send (Anthropic `x-api-key`, Google `x-goog-api-key` or
    `?key=`, otherwise `Authorization: Bearer`). None: Anthropic and Google accept any
    non-empty key (and refuse a missing one), the other kinds ask for none.
    `echo`: cloud kinds end their text answers with `(you said: <last user text>)`.
    """

    def __init__(
        self,
        kind: str,
        models: Sequence[FakeModel | str] | None = None,
        *,
        reply: str = "Hello from the fake",
        chunks: int | None = None,
        name: str | None = None,
        completions: bool | None = None,
        api_key: str | None = None,
        echo: bool = False,
    ) -> None:
        if kind not in ALL_KINDS:
            raise ValueError(f"unknown kind {kind!r}; expected one of {ALL_KINDS}")
        self.kind = kind
        self.name = name or kind
        self.models: list[FakeModel] = [FakeModel.coerce(m) for m in models or ["fake-model"]]
        self.reply = reply
        self.chunks = chunks
        self.api_key = api_key
        self.echo = echo
        self.faults = Faults()
        # serve `/v1/completions`? (None: what the real server does; read when the app is built)
        self.serves_completions = kind not in NO_COMPLETIONS if completions is None else completions
        self.requests: list[RecordedRequest] = []
        self.request_count = 0  # total ever received, even past `max_recorded`
        self.max_recorded: int | None = None  # cap memory in long benchmark runs
        self.streams_open = 0
        self.active_chats = 0  # in-flight generations (chat and completions): slots, metrics
        self.client_disconnects = 0
        self.stream_disconnects = 0
        self.created = int(time.time())
        self.host = "127.0.0.1"
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._stopping = False
        self._changed: asyncio.Event | None = None

    # ----------------------------------------------------------------- observation helpers
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._runner is not None

    def requests_to(self, endpoint: str) -> list[RecordedRequest]:
        """Recorded requests for `chat`, `completions` or `embeddings` (see `RecordedRequest`)."""
        return [r for r in self.requests if r.endpoint == endpoint]

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        return self.requests_to("chat")

    @property
    def completion_requests(self) -> list[RecordedRequest]:
        return self.requests_to("completions")

    @property
    def embedding_requests(self) -> list[RecordedRequest]:
        return self.requests_to("embeddings")

    @property
    def pieces(self) -> list[str]:
        """Content chunks a stream sends; their join is the streamed text."""
        return split_pieces(self.reply, self.chunks)

    def model(self, ident: str | None) -> FakeModel | None:
        """Resolve a requested model; llama.cpp serves its one model whatever the name."""
        if self.kind == "llamacpp":
            return self.models[0] if self.models else None
        return next((m for m in self.models if m.id == ident), None)

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        """Wait (without polling sleeps) until `predicate()` holds; False on timeout.

        Takes a timeout and returns a bool (rather than raising) so tests read as assertions.

        Re-checked whenever a request arrives, a stream opens/closes or a client disconnects.
        """
        deadline = asyncio.get_running_loop().time() + timeout
        while not predicate():
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return False
            if self._changed is None:
                self._changed = asyncio.Event()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                return predicate()
        return True

    async def wait_stream_closed(self, timeout: float = 5.0, *, count: int = 1) -> bool:
        """True once clients have hung up on `count` streams in total (e.g. Nexus aborted)."""
        return await self.wait_until(lambda: self.stream_disconnects >= count, timeout)

    async def wait_client_disconnects(self, count: int = 1, timeout: float = 5.0) -> bool:
        """True once `count` requests (stream or not) were abandoned by the client."""
        return await self.wait_until(lambda: self.client_disconnects >= count, timeout)

    async def wait_requests(self, count: int = 1, timeout: float = 5.0) -> bool:
        """True once `count` requests (any path, control calls excluded) were received."""
        return await self.wait_until(lambda: self.request_count >= count, timeout)

    def snapshot(self) -> dict[str, Any]:
        """State for `GET /_fake/state`, so subprocess fakes can be asserted on too."""
        return {
            "kind": self.kind,
            "name": self.name,
            "url": self.url,
            "faults": asdict(self.faults),
            "models": [asdict(m) for m in self.models],
            "requests": self.request_count,
            "chat_requests": len(self.chat_requests),
            "completion_requests": len(self.completion_requests),
            "embedding_requests": len(self.embedding_requests),
            "streams_open": self.streams_open,
            "client_disconnects": self.client_disconnects,
            "stream_disconnects": self.stream_disconnects,
        }

    # ----------------------------------------------------------------------- responses
    def error(self, request: web.Request, status: int, message: str | None = None) -> web.Response:
        """Error in the protocol's own shape.

        Ollama native is `{"error": str}`; llama.cpp always `{"error": {code: int, message, type}}`;
        the rest the OpenAI `{"error": {message, type, code: str}}`.
        """
        message = message or f"fake {self.kind} error {status}"
        if self.kind == "anthropic":
            return anthropic_api.error(self, status, message)
        if self.kind == "google":
            return google_api.error(self, status, message)
        headers: dict[str, str] = {}
        if self.faults.retry_after is not None and status >= 400:
            headers["Retry-After"] = str(self.faults.retry_after)
        if self.kind == "ollama" and request.path.startswith("/api/"):
            return web.json_response({"error": message}, status=status, headers=headers)
        err_type, code = _ERROR_TYPES.get(status, ("server_error", f"http_{status}"))
        if self.kind == "llamacpp":
            body: dict[str, Any] = {"code": status, "message": message, "type": err_type}
        else:
            body = {"message": message, "type": err_type, "code": code}
        return web.json_response({"error": body}, status=status, headers=headers)

    def check_auth(self, request: web.Request) -> web.Response | None:
        """The provider's refusal when the request lacks the configured key, else None."""
        if self.kind == "anthropic":
            return anthropic_api.check_auth(self, request)
        if self.kind == "google":
            return google_api.check_auth(self, request)
        if self.api_key is None:
            return None
        return openai_api.check_auth(self, request)

    async def gate(
        self,
        request: web.Request,
        endpoint: str = "chat",
        *,
        ident: str | None = None,
        not_found: str | None = None,
        validate: Callable[[dict[str, Any]], str | None] | None = None,
    ) -> tuple[dict[str, Any], FakeModel] | web.Response:
        """Shared front half of inference handlers: parse, faults, latency, model lookup.

        `endpoint` is `chat`, `completions` or `embeddings`; it decides which models qualify.
        A mismatch is refused like the real server: llama.cpp (whose one model's `embedding`
        flag stands for `--embeddings`) answers embeddings with 501 unless started for them,
        and generation with 500 when it was; Google with its 404; other kinds answer 400.
        `ident` names the model when the path does (Google), else the body's `model` does;
        `not_found` is the 404 message of a provider that words it its own way; `validate`
        returns the 400 message for a body the provider refuses before it looks the model up.
        """
        embedding = endpoint == "embeddings"
        if self.kind == "llamacpp" and embedding and not self._llamacpp_embeds():
            # checked before the body is even parsed, so `{}` or garbage gets the same answer
            return self.error(request, 501, LLAMACPP_NO_EMBEDDINGS)
        body = request.get(BODY_KEY)
        if not isinstance(body, dict):
            return self.error(request, 400, "request body is not a valid JSON object")
        failure = self.faults.take_failure()
        if self.faults.latency_s > 0:
            await asyncio.sleep(self.faults.latency_s)
        if failure is not None:
            return self.error(request, failure, f"injected failure {failure}")
        problem = validate(body) if validate is not None else None
        if problem is not None:
            return self.error(request, 400, problem)
        if ident is None:
            ident = body.get("model") if isinstance(body.get("model"), str) else None
        model = self.model(ident)
        if model is None and not_found is not None:
            return self.error(request, 404, not_found)
        if model is None:
            message = f"model '{ident}' not found"
            if self.kind == "llamacpp" or (
                self.kind == "ollama" and request.path.startswith("/api/")
            ):
                return self.error(request, 404, message)
            return web.json_response(
                {
                    "error": {
                        "message": message,
                        "type": "invalid_request_error",
                        "code": "model_not_found",
                    }
                },
                status=404,
            )
        if embedding != model.embedding and self.kind == "google" and not_found is not None:
            return self.error(request, 404, not_found)
        if embedding and not model.embedding:
            return self.error(request, 400, f"model '{model.id}' does not support embeddings")
        if not embedding and model.embedding:
            if self.kind == "llamacpp":  # an embedding model (e.g. BERT) has no logits
                return self.error(request, 500, LLAMACPP_NO_LOGITS)
            what = "chat" if endpoint == "chat" else "generate"
            return self.error(request, 400, f"model '{model.id}' does not support {what}")
        if self.kind in {"ollama", "lmstudio"}:
            model.loaded = True  # both load on demand (JIT), which /api/ps and state then show
        return body, model

    def _llamacpp_embeds(self) -> bool:
        """llama-server runs one model; `--embeddings` is modelled as that model's flag."""
        return bool(self.models) and self.models[0].embedding

    async def stream(
        self,
        request: web.Request,
        content_type: str,
        head: Sequence[bytes],
        content: Sequence[bytes],
        tail: Sequence[bytes],
        *,
        error: bytes | None = None,
    ) -> web.StreamResponse:
        """Write events one by one, honouring chunk delay and the mid-stream faults.

        `drop_after_chunks` counts `content` events only; the drop happens before `tail`, so the
        client never sees a clean end (no finish event, no chunked terminator).
        `stream_error_after` (when the protocol has an in-stream `error` event) also counts
        `content` events: after that many (or all of them, if fewer) the error event is sent
        and the body ends cleanly, without the `tail`.
        `unframed_after` counts every event: after that many, bytes that never end an event.
        An empty `content_type` leaves the header out.
        """
        resp = hostile.stream_response(content_type)
        resp.headers["Cache-Control"] = "no-cache"
        await resp.prepare(request)
        request[_STREAMING] = True
        self.streams_open += 1
        self._notify()
        fail_at: int | None = None
        if error is not None and self.faults.stream_error_after is not None:
            fail_at = len(head) + min(max(self.faults.stream_error_after, 0), len(content))
        try:
            first = True
            for index, event in enumerate([*head, *content, *tail, b""]):
                if index == fail_at and error is not None:
                    if not first and self.faults.chunk_delay_s > 0:
                        await asyncio.sleep(self.faults.chunk_delay_s)
                    await resp.write(error)
                    break
                if index == len(head) + len(content) + len(tail):
                    break  # the sentinel: every event was written
                if index == self.faults.unframed_after:
                    await hostile.write_unframed(self, resp)
                in_content = len(head) <= index
                drop = self.faults.drop_after_chunks
                if drop is not None and in_content and index - len(head) >= drop:
                    request[_DROPPED] = True
                    if request.transport is not None:
                        request.transport.abort()
                    return resp
                if not first and self.faults.chunk_delay_s > 0:
                    await asyncio.sleep(self.faults.chunk_delay_s)
                first = False
                await resp.write(event)
            await resp.write_eof()
            return resp
        finally:
            self.streams_open -= 1
            self._notify()

    # --------------------------------------------------------------------------- app
    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Any]
    ) -> web.StreamResponse:
        if not request.path.startswith("/_fake/"):
            raw = await request.read()
            parsed: Any = None
            if raw:
                with contextlib.suppress(ValueError):
                    parsed = json.loads(raw)
            request[BODY_KEY] = parsed
            self.requests.append(
                RecordedRequest(
                    method=request.method,
                    path=request.path,
                    headers={k.lower(): v for k, v in request.headers.items()},
                    json=parsed,
                    time=time.monotonic(),
                    query=dict(request.query),
                    body=raw,
                )
            )
            self.request_count += 1
            if self.max_recorded is not None and len(self.requests) > self.max_recorded:
                del self.requests[: len(self.requests) - self.max_recorded]
            self._notify()
            inference = endpoint_of(request.method, request.path) is not None
            moved = hostile.redirect(self, request, inference)
            if moved is not None:
                return moved
            refused = self.check_auth(request)
            if refused is not None:
                return refused
            if self.kind == "llamacpp" and self.faults.loading:
                return self.error(request, 503, "Loading model")  # llama-server gates every route
            status = self.faults.health_status
            if status is not None and request.method in {"GET", "HEAD"}:
                return self.error(request, status, f"forced health status {status}")
        generating = endpoint_of(request.method, request.path) in {"chat", "completions"}
        self.active_chats += generating
        try:
            return await handler(request)
        except (asyncio.CancelledError, ConnectionResetError):
            if not self._stopping and not request.get(_DROPPED):
                self.client_disconnects += 1
                self.stream_disconnects += bool(request.get(_STREAMING))
                self._notify()
            raise
        finally:
            self.active_chats -= generating

    def build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware], client_max_size=256 * 1024**2)
        if self.kind == "anthropic":
            anthropic_api.add_routes(app, self)
        elif self.kind == "google":
            google_api.add_routes(app, self)
        else:
            openai_api.add_routes(app, self)
            if self.kind == "ollama":
                ollama_api.add_routes(app, self)
            else:
                native_api.add_routes(app, self)
        app.router.add_get("/_fake/state", self._state)
        app.router.add_post("/_fake/faults", self._set_faults)
        app.router.add_post("/_fake/models", self._set_models)
        return app

    async def _state(self, request: web.Request) -> web.Response:
        return web.json_response(self.snapshot())

    async def _set_faults(self, request: web.Request) -> web.Response:
        try:
            changes = await request.json()
            self.faults.update(changes)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(self.snapshot())

    async def _set_models(self, request: web.Request) -> web.Response:
        try:
            self.models = [FakeModel.coerce(m) for m in await request.json()]
        except (ValueError, TypeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(self.snapshot())

    # --------------------------------------------------------------------- lifecycle
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen and return the base URL; port 0 picks a free port (kept for restarts)."""
        if self._runner is not None:
            raise RuntimeError(f"{self.name} already running at {self.url}")
        self._stopping = False
        self._changed = None  # an Event left from a previous loop must not be reused
        runner = web.AppRunner(
            self.build_app(), handler_cancellation=True, access_log=None, shutdown_timeout=0.5
        )
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port, reuse_address=True).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.host = host
        self.port = runner.addresses[0][1]
        return self.url

    async def stop(self) -> None:
        """Stop like a killed process: refuse new connects and cut every open connection."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        self._stopping = True
        for site in list(runner.sites):
            await site.stop()
        if runner.server is not None:
            for conn in list(runner.server.connections):
                if conn.transport is not None:
                    conn.transport.abort()
        await runner.cleanup()
        self._notify()

    async def __aenter__(self) -> FakeBackend:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def __repr__(self) -> str:
        state = self.url if self.running else "stopped"
        return f"<FakeBackend {self.name} {state} models={[m.id for m in self.models]}>"
