"""Fakes for driving the request flow in-process, without a single socket.

- ``FakeTransport``: the ``Transport`` protocol with a scripted queue of outcomes, one per
  call (a ``Reply``, an exception instance to raise, a ``Stream``, or a ``Blocked`` wrapper
  that parks the call on an event first), recording every call it receives.
- ``FakeClient``: one ASGI conversation — a scope, a ``receive`` that hands over the body and
  then delivers ``http.disconnect`` when told to, and a ``send`` that collects messages.
- ``Flow``: a ``Nexus`` core (never started) with fake-transport backends, the inference
  endpoint in front of it, every record captured at the ``core.record`` sink, and a
  ``LeaseLedger`` proving that every lease was released exactly once.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from nexusd.api.inference import InferenceEndpoint
from nexusd.backends.agent import BackendAgent
from nexusd.backends.codec import OpenAICodec
from nexusd.backends.prober import Prober
from nexusd.backends.upstream import (
    UpstreamHTTPError,
    UpstreamProtocolError,
    UpstreamReply,
)
from nexusd.config.loader import LoadedConfig, parse_config
from nexusd.core import Nexus
from nexusd.lease import CapacitySignal, Lease
from nexusd.records import RequestRecord
from nexusd.registry import Backend
from nexusd.types import BackendStatus, BackendType, ModelInfo

JSON_CT = "application/json"

# --- the scripted transport ------------------------------------------------------------------


@dataclass(slots=True)
class Reply:
    """A whole upstream answer. A status >= 300 is raised as ``UpstreamHTTPError``, as the
    real transport does."""

    status: int = 200
    body: bytes = b'{"id":"x","object":"chat.completion","choices":[]}'
    content_type: str = JSON_CT
    retry_after: str | None = None


@dataclass(slots=True)
class Stream:
    """An upstream SSE answer: ``chunks[0]`` is the first bytes (``open_stream`` returns once
    they arrived), the rest come from ``chunks()``. With ``gate``, the stream parks after
    yielding ``gate_after`` chunks of ``chunks()`` until the event is set; ``error`` is raised
    after the last chunk (a mid-stream failure)."""

    chunks: list[bytes]
    error: BaseException | None = None
    gate: asyncio.Event | None = None
    gate_after: int = 0


@dataclass(slots=True)
class Blocked:
    """Park the call until ``release`` is set, then play ``then`` (default: a 200 reply)."""

    release: asyncio.Event
    then: Any = None


@dataclass(slots=True)
class CallLog:
    kind: str  # "send" | "open_stream" | "fetch"
    path: str
    body: bytes
    client_auth: str | None
    cancelled: bool = False

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class FakeStream:
    """``UpstreamStream``: counts ``close()`` calls and notices a pending read's cancellation."""

    def __init__(self, script: Stream, parked: asyncio.Event) -> None:
        self.script = script
        self.first = script.chunks[0]
        self.closed = 0
        self.parked = parked  # set when the stream waits at its gate
        self.cancelled = False

    async def chunks(self):  # type: ignore[no-untyped-def]
        script = self.script
        rest = script.chunks[1:]
        for i, chunk in enumerate(rest):
            if script.gate is not None and i == script.gate_after:
                await self._park(script.gate)
            yield chunk
        if script.gate is not None and script.gate_after >= len(rest):
            await self._park(script.gate)
        if script.error is not None:
            raise script.error

    async def _park(self, gate: asyncio.Event) -> None:
        self.parked.set()
        try:
            await gate.wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise

    def close(self) -> None:
        self.closed += 1


class FakeTransport:
    def __init__(self, name: str, script: Iterable[Any] = ()) -> None:
        self.name = name
        self.script: list[Any] = list(script)
        self.calls: list[CallLog] = []
        self.streams: list[FakeStream] = []
        #: set whenever a call arrives (clear it to wait for the next one)
        self.called = asyncio.Event()
        #: set whenever a call parks on a ``Blocked`` or a stream gate
        self.parked = asyncio.Event()

    def push(self, *outcomes: Any) -> FakeTransport:
        self.script.extend(outcomes)
        return self

    async def _play(self, log: CallLog) -> Any:
        self.calls.append(log)
        self.called.set()
        if not self.script:
            raise AssertionError(f"transport {self.name}: unexpected {log.kind} {log.path}")
        outcome = self.script.pop(0)
        while isinstance(outcome, Blocked):
            self.parked.set()
            try:
                await outcome.release.wait()
            except asyncio.CancelledError:
                log.cancelled = True
                raise
            outcome = outcome.then if outcome.then is not None else Reply()
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    async def send(
        self, path: str, body: bytes, client_auth: str | None, headers: Any = None
    ) -> UpstreamReply:
        outcome = await self._play(CallLog("send", path, bytes(body), client_auth))
        if isinstance(outcome, Stream):
            raise AssertionError(f"transport {self.name}: a Stream scripted for send()")
        return _reply(outcome)

    async def open_stream(
        self, path: str, body: bytes, client_auth: str | None, headers: Any = None
    ) -> FakeStream:
        outcome = await self._play(CallLog("open_stream", path, bytes(body), client_auth))
        if isinstance(outcome, Reply):
            if outcome.status < 300:
                raise AssertionError(f"transport {self.name}: a 2xx Reply scripted for a stream")
            _reply(outcome)  # raises UpstreamHTTPError
        if not outcome.chunks:
            raise UpstreamProtocolError("backend closed the stream before sending any data")
        stream = FakeStream(outcome, self.parked)
        self.streams.append(stream)
        return stream

    async def fetch(
        self, method: str, path: str, timeout: float, payload: Any = None
    ) -> tuple[int, bytes]:
        body = b"" if payload is None else json.dumps(payload).encode()
        self.calls.append(CallLog("fetch", path, body, None))
        return 200, b'{"object":"list","data":[]}'


def _reply(outcome: Reply) -> UpstreamReply:
    if outcome.status >= 300:
        raise UpstreamHTTPError(
            outcome.status, outcome.body, outcome.content_type, outcome.retry_after
        )
    return UpstreamReply(outcome.status, outcome.body, outcome.content_type)


def sse(*payloads: Any, done: bool = True) -> list[bytes]:
    """One SSE event per payload (dicts are JSON-encoded), plus ``[DONE]``."""
    events = [
        b"data: " + (json.dumps(p).encode() if not isinstance(p, bytes) else p) + b"\n\n"
        for p in payloads
    ]
    if done:
        events.append(b"data: [DONE]\n\n")
    return events


# --- the fake ASGI client --------------------------------------------------------------------


class FakeClient:
    def __init__(
        self,
        path: str,
        body: bytes | dict[str, Any],
        *,
        method: str = "POST",
        headers: list[tuple[bytes, bytes]] | None = None,
        disconnect_at_once: bool = False,
    ) -> None:
        raw = json.dumps(body).encode() if isinstance(body, dict) else body
        self.raw = raw
        self.scope: dict[str, Any] = {
            "type": "http",
            "method": method,
            "path": path,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(raw)).encode()),
                *(headers or []),
            ],
        }
        self.messages: list[dict[str, Any]] = []
        #: set it and the next ``receive()`` (the watcher's) returns ``http.disconnect``
        self.disconnect = asyncio.Event()
        #: set when someone (the disconnect watcher) waits in ``receive()`` after the body
        self.listening = asyncio.Event()
        #: set when ``receive()`` has handed out the ``http.disconnect``
        self.disconnect_delivered = asyncio.Event()
        if disconnect_at_once:
            self.disconnect.set()
        self._body_sent = False
        self.receives = 0
        self._changed = asyncio.Condition()
        #: called with each message before it is recorded (may raise, or await something)
        self.on_send: Callable[[dict[str, Any]], Any] | None = None

    async def receive(self) -> dict[str, Any]:
        self.receives += 1
        if not self._body_sent and not self.disconnect.is_set():
            self._body_sent = True
            return {"type": "http.request", "body": self.raw, "more_body": False}
        self.listening.set()
        await self.disconnect.wait()
        self.disconnect_delivered.set()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        if self.on_send is not None:
            result = self.on_send(message)
            if asyncio.iscoroutine(result):
                await result
        self.messages.append(dict(message))
        async with self._changed:
            self._changed.notify_all()

    async def wait_for(self, predicate: Callable[[FakeClient], bool]) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: predicate(self))

    # --- what the client saw ---------------------------------------------------------------

    @property
    def start(self) -> dict[str, Any] | None:
        for m in self.messages:
            if m["type"] == "http.response.start":
                return m
        return None

    @property
    def status(self) -> int | None:
        start = self.start
        return None if start is None else start["status"]

    @property
    def headers(self) -> dict[str, str]:
        start = self.start
        if start is None:
            return {}
        return {k.decode().lower(): v.decode("latin-1") for k, v in start["headers"]}

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.messages if m["type"].endswith("body"))

    @property
    def body_chunks(self) -> list[bytes]:
        return [m.get("body", b"") for m in self.messages if m["type"] == "http.response.body"]

    @property
    def complete(self) -> bool:
        """The last body message said no more is coming."""
        bodies = [m for m in self.messages if m["type"] == "http.response.body"]
        return bool(bodies) and not bodies[-1].get("more_body", False)

    def json(self) -> Any:
        return json.loads(self.body)

    def events(self) -> list[bytes]:
        """The SSE events of the body, each without its blank-line terminator."""
        return [e for e in self.body.split(b"\n\n") if e.strip()]


# --- leases ----------------------------------------------------------------------------------


class LeaseLedger:
    """Every lease taken during a test, how often ``release`` ran on it and how often it
    really freed capacity (decremented ``pending`` and notified ``capacity_freed``)."""

    def __init__(self) -> None:
        self.leases: list[Lease] = []
        self.calls: dict[int, int] = {}
        self.effective: dict[int, int] = {}

    def install(self, monkeypatch: pytest.MonkeyPatch) -> LeaseLedger:
        ledger = self
        original_init = Lease.__init__
        original_release = Lease.release

        def init(lease: Lease, backend: Backend) -> None:
            original_init(lease, backend)
            ledger.leases.append(lease)
            ledger.calls[id(lease)] = 0
            ledger.effective[id(lease)] = 0

        def release(lease: Lease) -> None:
            before = lease.backend.pending
            was_released = lease.released
            original_release(lease)
            ledger.calls[id(lease)] = ledger.calls.get(id(lease), 0) + 1
            if not was_released and lease.backend.pending == before - 1:
                ledger.effective[id(lease)] = ledger.effective.get(id(lease), 0) + 1

        monkeypatch.setattr(Lease, "__init__", init)
        monkeypatch.setattr(Lease, "release", release)
        return self

    def taken_on(self, backend: Backend) -> int:
        return sum(1 for lease in self.leases if lease.backend is backend)

    def assert_all_released_once(self) -> None:
        for lease in self.leases:
            assert lease.released, f"a lease on {lease.backend.id} was never released"
            assert self.effective[id(lease)] == 1, (
                f"a lease on {lease.backend.id} freed capacity "
                f"{self.effective[id(lease)]} times (release called {self.calls[id(lease)]}x)"
            )


class CountingSignal(CapacitySignal):
    """A ``CapacitySignal`` that counts its notifications."""

    __slots__ = ("notified",)

    def __init__(self) -> None:
        super().__init__()
        self.notified = 0

    def notify(self) -> None:
        self.notified += 1
        super().notify()


# --- the core with fake backends -------------------------------------------------------------


def make_config(extra: dict[str, Any] | None = None, tmp: Path | None = None) -> LoadedConfig:
    data: dict[str, Any] = {
        "server": {"host": "127.0.0.1", "port": 0},
        "discovery": {"enabled": False, "probe": False},
        "history": {"enabled": False},
    }
    for key, value in (extra or {}).items():
        data[key] = {**data.get(key, {}), **value}
    cfg, warnings, sources = parse_config(data, env={})
    path = (tmp or Path("/nonexistent-nexus-test")) / "nexus.toml"
    return LoadedConfig(cfg, path=path, file_exists=False, warnings=warnings, sources=sources)


@dataclass
class Flow:
    core: Nexus
    endpoint: InferenceEndpoint
    ledger: LeaseLedger
    records: list[RequestRecord] = field(default_factory=list)
    backends: dict[str, Backend] = field(default_factory=dict)
    transports: dict[str, FakeTransport] = field(default_factory=dict)

    def add_backend(
        self,
        name: str,
        models: Iterable[str | ModelInfo] = ("m",),
        *,
        script: Iterable[Any] = (),
        priority: int = 50,
        health: BackendStatus = BackendStatus.HEALTHY,
        **kwargs: Any,
    ) -> FakeTransport:
        backend = Backend(
            id=name,
            name=name,
            url=f"http://{name}.test:8000",
            type=BackendType.GENERIC,
            priority=priority,
            **kwargs,
        )
        transport = FakeTransport(name, script)
        backend.agent = BackendAgent(transport, OpenAICodec(), Prober(backend, transport))
        backend.health = health
        backend.capacity_freed = CountingSignal()
        infos = [m if isinstance(m, ModelInfo) else ModelInfo(m) for m in models]
        self.core.registry.set_models(backend, infos)
        self.core.registry.add(backend)
        self.backends[name] = backend
        self.transports[name] = transport
        return transport

    async def serve(self, client: FakeClient) -> None:
        await self.endpoint(client.scope, client.receive, client.send)

    def spawn(self, client: FakeClient) -> asyncio.Task[None]:
        """Serve in a task of its own, as the ASGI server does (cancellation targets it)."""
        return asyncio.get_running_loop().create_task(self.serve(client))

    @property
    def record(self) -> RequestRecord:
        assert len(self.records) == 1, f"expected exactly one record, got {self.records}"
        return self.records[0]

    def assert_settled(self) -> None:
        """The invariants of every path: one record, every lease released exactly once,
        nothing in flight, no stream left registered."""
        assert len(self.records) == 1, f"expected exactly one record, got {self.records}"
        self.ledger.assert_all_released_once()
        for backend in self.backends.values():
            assert backend.pending == 0, f"{backend.id}: pending={backend.pending}"
            signal = backend.capacity_freed
            assert isinstance(signal, CountingSignal)
            assert signal.notified == self.ledger.taken_on(backend), (
                f"{backend.id}: capacity_freed notified {signal.notified}x "
                f"for {self.ledger.taken_on(backend)} lease(s)"
            )
        assert self.core.inflight == 0, f"inflight={self.core.inflight}"
        assert not self.core.active_streams


async def _not_found_app(scope: Any, receive: Any, send: Any) -> None:
    raise AssertionError(f"request fell through to the Quart app: {scope.get('path')}")


def make_flow(
    monkeypatch: pytest.MonkeyPatch,
    config: dict[str, Any] | None = None,
    tmp: Path | None = None,
) -> Flow:
    """A never-started core (no sockets, no tasks) whose ``record`` sink is wrapped."""
    core = Nexus(make_config(config, tmp), tmp or Path("/nonexistent-nexus-state"))
    ledger = LeaseLedger().install(monkeypatch)
    flow = Flow(core, InferenceEndpoint(core, _not_found_app), ledger)
    original = core.record

    def record(rec: RequestRecord, preview: str | None = None) -> None:
        flow.records.append(rec)
        original(rec, preview)

    # the instance attribute shadows the method: open_exchange hands it to each Exchange
    monkeypatch.setattr(core, "record", record)
    return flow


def chat_body(model: str = "m", *, stream: bool = False, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    if stream:
        body["stream"] = True
    body.update(extra)
    return body


CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
EMBEDDINGS = "/v1/embeddings"
