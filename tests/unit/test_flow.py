"""The request flow end to end in-process: inference endpoint → gateway → fake transport.

No sockets: a never-started ``Nexus`` core, backends whose transport is scripted
(``flow_support.FakeTransport``) and a fake ASGI client. Every path must end with exactly one
record, every lease released exactly once, nothing left in flight (``Flow.assert_settled``).
Synchronisation is by events only; the disconnect watcher starts at once (``WATCH_AFTER = 0``)
so it is active in every test.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

import nexusd.api.inference as inference
from nexusd.backends.upstream import (
    UpstreamConnectError,
    UpstreamProtocolError,
    UpstreamTimeout,
)
from nexusd.records import RequestRecord
from nexusd.types import BackendStatus, ModelInfo
from tests.unit.flow_support import (
    CHAT,
    COMPLETIONS,
    EMBEDDINGS,
    Blocked,
    FakeClient,
    Flow,
    Reply,
    Stream,
    chat_body,
    make_flow,
    sse,
)

ANSWER = (
    b'{"id":"chatcmpl-1","object":"chat.completion","model":"m","choices":[{"index":0,'
    b'"message":{"role":"assistant","content":"hello"},"finish_reason":"stop"}],'
    b'"usage":{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12}}'
)
CHUNK = {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": "he"}}]}
USAGE_CHUNK = {
    "object": "chat.completion.chunk",
    "choices": [],
    "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
}
UPSTREAM_4XX = b'{"error":{"message":"temperature must be <= 2","type":"invalid_request_error"}}'

MakeFlow = Callable[..., Flow]
T = TypeVar("T")


@pytest.fixture(autouse=True)
def watch_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inference, "WATCH_AFTER", 0)


@pytest.fixture
def make(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> MakeFlow:
    def build(config: dict[str, Any] | None = None) -> Flow:
        return make_flow(monkeypatch, config, tmp_path)

    return build


@pytest.fixture
def flow(make: MakeFlow) -> Flow:
    return make()


async def within(aw: Awaitable[T], seconds: float = 10) -> T:
    """A guard, not a synchronisation: a broken flow fails the test instead of hanging it.
    (Not ``wait_for``: its timeout cancels the task, and a task that absorbs the
    cancellation would then look like it finished in time.)"""
    task = asyncio.ensure_future(aw)
    done, _ = await asyncio.wait({task}, timeout=seconds)
    if not done:
        task.cancel()
        await asyncio.wait({task}, timeout=seconds)
        raise AssertionError(f"not done within {seconds} s: {aw!r}")
    return task.result()


def envelope(client: FakeClient) -> dict[str, Any]:
    data = client.json()
    assert set(data["error"]) >= {"message", "type", "param", "code"}
    return data["error"]


def assert_error_answer(
    flow: Flow, client: FakeClient, status: int, error_type: str
) -> RequestRecord:
    """An error answered before any body: the envelope, the request id, one error record."""
    flow.assert_settled()
    rec = flow.record
    assert client.status == status
    assert client.headers["content-type"] == "application/json"
    assert client.headers["x-nexus-request-id"] == rec.request_id
    assert client.complete
    envelope(client)
    assert (rec.outcome, rec.status, rec.status_code) == ("error", "error", status)
    assert rec.error_type == error_type
    assert rec.error
    return rec


# --- success -------------------------------------------------------------------------------


async def test_success_non_stream(flow: Flow) -> None:
    a = flow.add_backend("a", script=[Reply(body=ANSWER)])
    client = FakeClient(CHAT, chat_body())
    await flow.serve(client)

    flow.assert_settled()
    assert client.status == 200
    assert client.body == ANSWER
    assert client.complete
    headers = client.headers
    assert headers["content-type"] == "application/json"
    assert headers["x-nexus-backend"] == "a"
    assert headers["x-nexus-backend-type"] == "local"
    assert headers["x-nexus-route-reason"] == "capability-match"
    assert "x-nexus-fallback-model" not in headers
    [call] = a.calls
    assert (call.kind, call.path, call.body) == ("send", CHAT, client.raw)  # bytes unchanged
    rec = flow.record
    assert headers["x-nexus-request-id"] == rec.request_id
    assert (rec.outcome, rec.status, rec.status_code) == ("ok", "success", 200)
    assert (rec.backend, rec.served_model, rec.requested_model) == ("a", "m", "m")
    assert (rec.retries, rec.failed_backends, rec.fallback_model) == (0, (), None)
    assert (rec.prompt_tokens, rec.completion_tokens) == (5, 7)
    assert rec.stream is False and rec.endpoint == "chat"
    assert flow.backends["a"].total_requests == 1


@pytest.mark.parametrize(
    ("path", "body", "model", "endpoint"),
    [
        (COMPLETIONS, {"model": "m", "prompt": "once upon"}, ModelInfo("m"), "completions"),
        (
            EMBEDDINGS,
            {"model": "e", "input": ["a", "b"]},
            ModelInfo("e", embeddings=True),
            "embeddings",
        ),
    ],
)
async def test_success_other_endpoints(
    flow: Flow, path: str, body: dict[str, Any], model: ModelInfo, endpoint: str
) -> None:
    answer = b'{"object":"list","data":[]}'
    a = flow.add_backend("a", [model], script=[Reply(body=answer)])
    client = FakeClient(path, body)
    await flow.serve(client)
    flow.assert_settled()
    assert (client.status, client.body) == (200, answer)
    assert [(c.path, c.body) for c in a.calls] == [(path, client.raw)]
    assert flow.record.endpoint == endpoint and flow.record.outcome == "ok"


async def test_success_stream(flow: Flow) -> None:
    gate = asyncio.Event()
    chunks = sse(CHUNK, CHUNK, USAGE_CHUNK)
    a = flow.add_backend("a", script=[Stream(chunks, gate=gate, gate_after=1)])
    client = FakeClient(CHAT, chat_body(stream=True))
    task = flow.spawn(client)

    # mid-stream: the lease is held by the exchange, the request is in flight, no record yet
    await within(a.parked.wait())
    backend = flow.backends["a"]
    assert backend.pending == 1 and flow.core.inflight == 1 and not flow.records
    assert flow.core.active_streams
    gate.set()
    await within(task)

    flow.assert_settled()
    assert client.status == 200
    assert client.headers["content-type"] == "text/event-stream"
    assert client.headers["x-nexus-backend"] == "a"
    assert client.body == b"".join(chunks)
    assert client.complete
    [call] = a.calls
    assert (call.kind, call.path) == ("open_stream", CHAT)
    assert a.streams[0].closed == 1
    rec = flow.record
    assert client.headers["x-nexus-request-id"] == rec.request_id
    assert (rec.outcome, rec.status_code, rec.stream) == ("ok", 200, True)
    assert (rec.prompt_tokens, rec.completion_tokens) == (3, 2)
    assert backend.total_requests == 1


async def test_watcher_not_needed_for_a_fast_answer(flow: Flow, monkeypatch) -> None:
    """With the real delay the watcher never starts for an answer faster than it."""
    monkeypatch.setattr(inference, "WATCH_AFTER", 3600)
    flow.add_backend("a", script=[Reply(body=ANSWER)])
    client = FakeClient(CHAT, chat_body())
    await flow.serve(client)
    flow.assert_settled()
    assert client.status == 200
    assert client.receives == 1  # only the body was read: no watcher ran


# --- 4xx passed through --------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize(
    ("status", "body", "ctype"),
    [
        (400, UPSTREAM_4XX, "application/json"),
        (404, b'{"error":"no such thing"}', "application/json"),
        (422, b"unprocessable: field x", "text/plain"),
    ],
)
async def test_4xx_passed_through(
    flow: Flow, stream: bool, status: int, body: bytes, ctype: str
) -> None:
    a = flow.add_backend("a", priority=10, script=[Reply(status, body, ctype)])
    b = flow.add_backend("b", priority=20)
    client = FakeClient(CHAT, chat_body(stream=stream))
    await flow.serve(client)

    flow.assert_settled()
    assert client.status == status
    assert client.body == body  # unchanged, byte for byte
    assert client.headers["content-type"] == ctype
    assert len(a.calls) == 1 and not b.calls  # a client error is not retried elsewhere
    rec = flow.record
    assert client.headers["x-nexus-request-id"] == rec.request_id
    assert (rec.outcome, rec.status, rec.status_code) == ("passed_through", "error", status)
    assert rec.error_type == "upstream_client_error"
    assert rec.retries == 0 and rec.failed_backends == ()
    assert flow.backends["a"].passive_failures == 0


# --- failover ------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize(
    ("failure", "counts"),
    [
        (UpstreamConnectError("cannot connect: refused"), True),
        (UpstreamTimeout("response", 30), True),
        (Reply(500, b'{"error":"oom"}'), True),
        (Reply(503, b"overloaded", "text/plain"), True),
        (Reply(501, b"not implemented"), False),
        (Reply(429, b'{"error":"slow down"}', retry_after="3"), False),
        (UpstreamProtocolError("backend closed the stream before sending any data"), True),
    ],
    ids=["connect", "timeout", "500", "503", "501", "429", "protocol"],
)
async def test_failover_then_success(flow: Flow, stream: bool, failure: Any, counts: bool) -> None:
    a = flow.add_backend("a", priority=10, script=[failure])
    ok = Stream(sse(CHUNK)) if stream else Reply(body=ANSWER)
    b = flow.add_backend("b", priority=20, script=[ok])
    client = FakeClient(CHAT, chat_body(stream=stream))
    await flow.serve(client)

    flow.assert_settled()
    assert client.status == 200
    assert client.body == (b"".join(sse(CHUNK)) if stream else ANSWER)
    assert client.headers["x-nexus-backend"] == "b"
    assert client.headers["x-nexus-route-reason"] == "failover"
    assert len(a.calls) == 1 and len(b.calls) == 1
    assert a.calls[0].body == b.calls[0].body == client.raw
    rec = flow.record
    assert (rec.outcome, rec.status_code, rec.backend) == ("ok", 200, "b")
    assert rec.retries == 1
    assert rec.failed_backends == ("a",)
    assert flow.backends["a"].errors == 1
    assert flow.backends["a"].passive_failures == (1 if counts else 0)
    assert flow.backends["b"].passive_failures == 0


async def test_non_json_200_fails_over(flow: Flow) -> None:
    """A 2xx that is not the JSON object promised is the backend's protocol error."""
    a = flow.add_backend("a", priority=10, script=[Reply(200, b"<html>proxy login</html>")])
    b = flow.add_backend("b", priority=20, script=[Reply(body=ANSWER)])
    client = FakeClient(CHAT, chat_body())
    await flow.serve(client)
    flow.assert_settled()
    assert (client.status, client.body) == (200, ANSWER)
    assert (len(a.calls), len(b.calls)) == (1, 1)
    assert flow.record.failed_backends == ("a",)


async def test_failover_then_4xx_passed_through(flow: Flow) -> None:
    flow.add_backend("a", priority=10, script=[UpstreamConnectError("refused")])
    flow.add_backend("b", priority=20, script=[Reply(400, UPSTREAM_4XX)])
    client = FakeClient(CHAT, chat_body())
    await flow.serve(client)
    flow.assert_settled()
    assert (client.status, client.body) == (400, UPSTREAM_4XX)
    rec = flow.record
    assert (rec.outcome, rec.retries, rec.failed_backends) == ("passed_through", 1, ("a",))


async def test_retries_are_bounded_by_max_retries(make: MakeFlow) -> None:
    flow = make({"routing": {"max_retries": 1}})
    transports = [
        flow.add_backend(n, priority=p, script=[UpstreamConnectError("refused")])
        for n, p in (("a", 10), ("b", 20), ("c", 30))
    ]
    client = FakeClient(CHAT, chat_body())
    await flow.serve(client)
    rec = assert_error_answer(flow, client, 502, "backend_error")
    assert [len(t.calls) for t in transports] == [1, 1, 0]
    assert (rec.retries, rec.failed_backends) == (1, ("a", "b"))


# --- fallback models -----------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("why", ["failed", "unhealthy"])
async def test_fallback_to_another_model(make: MakeFlow, stream: bool, why: str) -> None:
    flow = make({"routing": {"fallbacks": {"m": ["m2"]}}})
    if why == "failed":
        a = flow.add_backend("a", ["m"], script=[UpstreamConnectError("refused")])
    else:
        a = flow.add_backend("a", ["m"], health=BackendStatus.UNHEALTHY)
    ok = Stream(sse(CHUNK)) if stream else Reply(body=ANSWER)
    b = flow.add_backend("b", ["m2"], script=[ok])
    client = FakeClient(CHAT, chat_body("m", stream=stream, temperature=0.5))
    await flow.serve(client)

    flow.assert_settled()
    assert client.status == 200
    assert client.headers["x-nexus-fallback-model"] == "m2"
    assert client.headers["x-nexus-route-reason"] == "failover"
    assert client.headers["x-nexus-backend"] == "b"
    assert len(a.calls) == (1 if why == "failed" else 0)
    [call] = b.calls
    sent = call.json
    assert sent["model"] == "m2"  # the body is re-encoded with the fallback's name
    assert sent["messages"] == chat_body()["messages"] and sent["temperature"] == 0.5
    rec = flow.record
    assert (rec.requested_model, rec.served_model, rec.fallback_model) == ("m", "m2", "m2")
    assert rec.outcome == "ok"
    assert rec.failed_backends == (("a",) if why == "failed" else ())


async def test_alias_resolves_before_routing(make: MakeFlow) -> None:
    flow = make({"routing": {"aliases": {"fast": "m"}}})
    a = flow.add_backend("a", ["m"], script=[Reply(body=ANSWER)])
    client = FakeClient(CHAT, chat_body("fast"))
    await flow.serve(client)
    flow.assert_settled()
    assert client.status == 200
    assert a.calls[0].json["model"] == "m"
    assert "x-nexus-fallback-model" not in client.headers
    assert (flow.record.requested_model, flow.record.served_model) == ("fast", "m")


# --- the chain exhausted -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("failure", "status", "error_type", "retry_after"),
    [
        (UpstreamConnectError("cannot connect: refused"), 502, "backend_error", None),
        (Reply(500, b'{"error":"oom"}'), 502, "backend_error", None),
        (UpstreamTimeout("response", 30), 504, "timeout", None),
        (Reply(429, b"busy", "text/plain", retry_after="7"), 429, "rate_limited", "7"),
    ],
    ids=["connect", "500", "timeout", "429"],
)
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
async def test_exhausted_after_upstream_failures(
    flow: Flow, stream: bool, failure: Any, status: int, error_type: str, retry_after: str | None
) -> None:
    a = flow.add_backend("a", priority=10, script=[failure])
    b = flow.add_backend("b", priority=20, script=[failure])
    client = FakeClient(CHAT, chat_body(stream=stream))
    await flow.serve(client)

    rec = assert_error_answer(flow, client, status, error_type)
    assert client.headers.get("retry-after") == retry_after
    assert (len(a.calls), len(b.calls)) == (1, 1)
    assert (rec.retries, rec.failed_backends) == (1, ("a", "b"))
    assert rec.backend is None and rec.served_model is None


@pytest.mark.parametrize(
    ("setup", "status", "error_type", "retry_after"),
    [
        ("unhealthy", 503, "no_healthy_backend", "5"),
        ("at_capacity", 503, "capacity", "1"),
        ("unknown_model", 404, "model_not_found", None),
        ("fallback_unhealthy", 503, "fallback_exhausted", "5"),
    ],
)
async def test_exhausted_without_an_attempt(
    make: MakeFlow, setup: str, status: int, error_type: str, retry_after: str | None
) -> None:
    flow = make({"routing": {"fallbacks": {"m": ["m2"]}}} if setup.startswith("fallback") else {})
    if setup == "at_capacity":
        a = flow.add_backend("a", max_concurrent=0)
    elif setup == "unknown_model":
        a = flow.add_backend("a", ["other"])
    else:
        a = flow.add_backend("a", health=BackendStatus.UNHEALTHY)
        flow.add_backend("b", ["m2"], health=BackendStatus.UNHEALTHY)
    client = FakeClient(CHAT, chat_body("m"))
    await flow.serve(client)
    rec = assert_error_answer(flow, client, status, error_type)
    assert client.headers.get("retry-after") == retry_after
    assert not a.calls
    assert not flow.ledger.leases
    assert rec.retries == 0
    if status == 503:
        context = client.json()["context"]
        assert "rejections" in context and "available_backends" in context


# --- streams that fail after the head ------------------------------------------------------


@pytest.mark.parametrize(
    "error",
    [UpstreamConnectError("backend connection lost mid-stream: reset"), UpstreamTimeout("data", 5)],
    ids=["reset", "idle-timeout"],
)
async def test_mid_stream_drop(flow: Flow, error: Exception) -> None:
    chunks = sse(CHUNK, CHUNK, done=False)
    a = flow.add_backend("a", priority=10, script=[Stream(chunks, error=error)])
    b = flow.add_backend("b", priority=20)
    client = FakeClient(CHAT, chat_body(stream=True))
    await flow.serve(client)

    flow.assert_settled()
    assert client.status == 200  # the head went out before the failure
    events = client.events()
    assert events[:-1] == [c.rstrip(b"\n") for c in chunks]
    last = json.loads(events[-1].removeprefix(b"data: "))
    assert "failed mid-stream" in last["error"]["message"]
    assert last["error"]["code"] == "bad_gateway"
    assert client.complete
    assert not b.calls  # too late to fail over
    assert a.streams[0].closed == 1
    rec = flow.record
    assert (rec.outcome, rec.status, rec.status_code) == ("error", "error", 200)
    assert rec.error_type == "stream_interrupted"
    assert rec.backend == "a"
    assert flow.backends["a"].passive_failures == 1
    assert flow.backends["a"].errors == 1


async def test_non_upstream_error_mid_stream(flow: Flow) -> None:
    """A bug inside the stream (not an UpstreamError): the catch-all's last error event."""
    chunks = sse(CHUNK, done=False)
    a = flow.add_backend("a", script=[Stream(chunks, error=RuntimeError("decoder bug"))])
    client = FakeClient(CHAT, chat_body(stream=True))
    await flow.serve(client)

    flow.assert_settled()
    assert client.status == 200
    events = client.events()
    assert events[0] == chunks[0].rstrip(b"\n")
    last = json.loads(events[-1].removeprefix(b"data: "))
    assert "RuntimeError" in last["error"]["message"]
    assert client.complete
    assert a.streams[0].closed == 1
    rec = flow.record
    assert (rec.outcome, rec.status_code, rec.error_type) == ("error", 200, "internal_error")


# --- the client leaving --------------------------------------------------------------------


async def test_client_disconnect_before_the_answer(flow: Flow) -> None:
    release = asyncio.Event()
    a = flow.add_backend("a", priority=10, script=[Blocked(release)])
    b = flow.add_backend("b", priority=20)
    client = FakeClient(CHAT, chat_body())
    task = flow.spawn(client)
    await within(a.parked.wait())
    assert flow.backends["a"].pending == 1
    client.disconnect.set()
    await within(task)  # the endpoint absorbs the cancellation it caused itself

    flow.assert_settled()
    assert a.calls[0].cancelled  # the upstream call was abandoned
    assert not b.calls
    assert client.messages == []  # nobody to answer
    rec = flow.record
    assert (rec.outcome, rec.status_code) == ("client_disconnected", 499)
    assert rec.error_type == "client_disconnected"
    assert flow.backends["a"].passive_failures == 0


async def test_client_disconnect_during_a_stream(flow: Flow) -> None:
    gate = asyncio.Event()
    chunks = sse(CHUNK, CHUNK)
    a = flow.add_backend("a", script=[Stream(chunks, gate=gate, gate_after=0)])
    client = FakeClient(CHAT, chat_body(stream=True))
    task = flow.spawn(client)
    await within(a.parked.wait())
    await within(client.wait_for(lambda c: c.body == chunks[0]))
    client.disconnect.set()
    await within(task)

    flow.assert_settled()
    stream = a.streams[0]
    assert stream.cancelled and stream.closed == 1
    assert client.status == 200 and not client.complete
    rec = flow.record
    assert (rec.outcome, rec.status_code) == ("client_disconnected", 200)
    assert rec.error_type == "client_disconnected"
    # the attempt reached the backend: it is one of its requests (and not its error)
    assert (flow.backends["a"].total_requests, flow.backends["a"].errors) == (1, 0)


async def test_client_disconnect_while_sending_the_body(flow: Flow) -> None:
    a = flow.add_backend("a")
    client = FakeClient(CHAT, chat_body(), disconnect_at_once=True)
    await flow.serve(client)
    flow.assert_settled()
    assert not a.calls and client.messages == []
    rec = flow.record
    assert (rec.outcome, rec.status_code) == ("client_disconnected", 499)


async def test_disconnect_after_the_head_changes_nothing(flow: Flow) -> None:
    """Once the answer is going out, a client leaving does not cancel the request."""
    release = asyncio.Event()
    flow.add_backend("a", script=[Blocked(release, Reply(body=ANSWER))])
    client = FakeClient(CHAT, chat_body())

    async def leave_during_the_body(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            client.disconnect.set()
            await client.disconnect_delivered.wait()  # the watcher has seen it

    client.on_send = leave_during_the_body
    task = flow.spawn(client)
    await within(client.listening.wait())  # the watcher is running
    release.set()
    await within(task)
    flow.assert_settled()
    assert client.status == 200 and client.body == ANSWER
    assert flow.record.outcome == "ok"


# --- cancellation from outside (shutdown) --------------------------------------------------


async def test_cancelled_before_the_answer(flow: Flow) -> None:
    release = asyncio.Event()
    a = flow.add_backend("a", priority=10, script=[Blocked(release)])
    b = flow.add_backend("b", priority=20)
    client = FakeClient(CHAT, chat_body())
    task = flow.spawn(client)
    await within(a.parked.wait())
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await within(task)

    flow.assert_settled()
    assert a.calls[0].cancelled and not b.calls
    assert client.messages == []
    rec = flow.record
    assert (rec.outcome, rec.status_code, rec.error_type) == ("cancelled", 499, "cancelled")


async def test_cancelled_during_a_stream(flow: Flow) -> None:
    gate = asyncio.Event()
    chunks = sse(CHUNK, CHUNK)
    a = flow.add_backend("a", script=[Stream(chunks, gate=gate, gate_after=1)])
    client = FakeClient(CHAT, chat_body(stream=True))
    task = flow.spawn(client)
    await within(a.parked.wait())
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await within(task)

    flow.assert_settled()
    assert a.streams[0].cancelled and a.streams[0].closed == 1
    rec = flow.record
    assert (rec.outcome, rec.status_code, rec.error_type) == ("cancelled", 200, "cancelled")


async def test_cancelled_after_the_exchange_finished_still_propagates(flow: Flow) -> None:
    a = flow.add_backend("a", script=[Stream(sse(CHUNK))])
    client = FakeClient(CHAT, chat_body(stream=True))
    at_last_send = asyncio.Event()

    async def hold_the_last_send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body" and not message.get("more_body"):
            at_last_send.set()
            await asyncio.Event().wait()  # a slow client socket, until cancelled

    client.on_send = hold_the_last_send
    task = flow.spawn(client)
    await within(at_last_send.wait())
    assert flow.records and flow.records[0].outcome == "ok"  # the relay finished it
    task.cancel()
    try:
        with pytest.raises(asyncio.CancelledError):
            await within(task)
    finally:
        flow.assert_settled()
        assert a.streams[0].closed == 1


@pytest.mark.parametrize("how", ["cancelled", "disconnect", "send_raises"])
async def test_upstream_stream_closed_when_the_head_send_fails(flow: Flow, how: str) -> None:
    a = flow.add_backend("a", script=[Stream(sse(CHUNK))])
    client = FakeClient(CHAT, chat_body(stream=True))
    at_head = asyncio.Event()

    async def slow_head(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            if how == "send_raises":
                raise OSError("connection reset by peer")
            at_head.set()
            await asyncio.Event().wait()

    client.on_send = slow_head
    task = flow.spawn(client)
    if how == "send_raises":
        await within(task)
    else:
        await within(at_head.wait())
        if how == "cancelled":
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await within(task)
        else:
            client.disconnect.set()
            await within(task)
    flow.assert_settled()  # the exchange and the lease are settled either way …
    assert a.streams[0].closed == 1  # … but the upstream is left open


# --- bugs inside Nexus: the catch-all ------------------------------------------------------


def assert_internal_error(flow: Flow, client: FakeClient) -> RequestRecord:
    rec = assert_error_answer(flow, client, 500, "internal_error")
    err = envelope(client)
    assert (err["type"], err["code"]) == ("server_error", "internal_error")
    assert rec.request_id in err["message"]
    assert "RuntimeError" in err["message"] or "ValueError" in err["message"]
    return rec


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
async def test_unexpected_exception_in_the_pipeline(
    flow: Flow, monkeypatch: pytest.MonkeyPatch, stream: bool
) -> None:
    a = flow.add_backend("a")

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("pipeline bug")

    monkeypatch.setattr(flow.core.pipeline, "run", boom)
    client = FakeClient(CHAT, chat_body(stream=stream))
    await flow.serve(client)
    assert_internal_error(flow, client)
    assert not a.calls


@pytest.mark.parametrize("where", ["encode", "decode"])
async def test_unexpected_exception_in_the_codec(
    flow: Flow, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    a = flow.add_backend("a", priority=10, script=[Reply(body=ANSWER)])
    b = flow.add_backend("b", priority=20)
    codec = flow.backends["a"].agent.codec  # type: ignore[union-attr]

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"{where} bug")

    monkeypatch.setattr(codec, where, boom)
    client = FakeClient(CHAT, chat_body())
    await flow.serve(client)
    assert_internal_error(flow, client)
    assert len(a.calls) == (1 if where == "decode" else 0)
    assert not b.calls  # a bug is not a backend failure: no failover
    assert flow.ledger.taken_on(flow.backends["a"]) == 1


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
async def test_transport_raising_a_non_upstream_error(flow: Flow, stream: bool) -> None:
    a = flow.add_backend("a", priority=10, script=[ValueError("transport bug")])
    b = flow.add_backend("b", priority=20)
    client = FakeClient(CHAT, chat_body(stream=stream))
    await flow.serve(client)
    assert_internal_error(flow, client)
    assert len(a.calls) == 1 and not b.calls
    assert flow.ledger.taken_on(flow.backends["a"]) == 1
    assert flow.backends["a"].passive_failures == 0


async def test_upstream_stream_closed_when_the_decoder_cannot_be_built(
    flow: Flow, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = flow.add_backend("a", script=[Stream(sse(CHUNK))])

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("stream_decoder bug")

    monkeypatch.setattr(flow.backends["a"].agent.codec, "stream_decoder", boom)  # type: ignore[union-attr]
    client = FakeClient(CHAT, chat_body(stream=True))
    await flow.serve(client)
    assert_internal_error(flow, client)
    assert a.streams[0].closed == 1


# --- refusals before any upstream call -----------------------------------------------------


async def test_invalid_body(flow: Flow) -> None:
    a = flow.add_backend("a")
    client = FakeClient(CHAT, b"{not json")
    await flow.serve(client)
    assert_error_answer(flow, client, 400, "invalid_request_error")
    assert not a.calls


async def test_body_too_large(make: MakeFlow) -> None:
    flow = make({"server": {"max_body_bytes": 64}})
    a = flow.add_backend("a")
    client = FakeClient(CHAT, chat_body(padding="x" * 200))
    await flow.serve(client)
    assert_error_answer(flow, client, 413, "payload_too_large")
    assert not a.calls


async def test_shutting_down_refuses(flow: Flow) -> None:
    a = flow.add_backend("a")
    flow.core.shutting_down = True
    client = FakeClient(CHAT, chat_body())
    await flow.serve(client)
    assert_error_answer(flow, client, 503, "shutting_down")
    assert client.headers["retry-after"] == "5"
    assert not a.calls


# --- embeddings ----------------------------------------------------------------------------


EMBED_CONFIG = {"routing": {"fallbacks": {"e": ["e2"], "m": ["m2"]}}}


@pytest.mark.parametrize("why", ["failed", "unhealthy"])
async def test_embeddings_never_fall_back(make: MakeFlow, why: str) -> None:
    flow = make(EMBED_CONFIG)
    if why == "failed":
        a = flow.add_backend("a", [ModelInfo("e", embeddings=True)], script=[Reply(500, b"x")])
    else:
        a = flow.add_backend("a", [ModelInfo("e", embeddings=True)], health=BackendStatus.UNHEALTHY)
    b = flow.add_backend("b", [ModelInfo("e2", embeddings=True)], script=[Reply(body=b"{}")])
    client = FakeClient(EMBEDDINGS, {"model": "e", "input": "hello"})
    await flow.serve(client)

    status, error_type = (502, "backend_error") if why == "failed" else (503, "no_healthy_backend")
    rec = assert_error_answer(flow, client, status, error_type)
    assert not b.calls  # vectors of another model are not comparable
    assert len(a.calls) == (1 if why == "failed" else 0)
    assert rec.fallback_model is None and rec.endpoint == "embeddings"
    assert "x-nexus-fallback-model" not in client.headers


async def test_chat_with_the_same_config_does_fall_back(make: MakeFlow) -> None:
    """The control for the test above: only embeddings skip the chain."""
    flow = make(EMBED_CONFIG)
    flow.add_backend("a", ["m"], script=[Reply(500, b"x")])
    b = flow.add_backend("b", ["m2"], script=[Reply(body=ANSWER)])
    client = FakeClient(CHAT, chat_body("m"))
    await flow.serve(client)
    flow.assert_settled()
    assert client.status == 200 and len(b.calls) == 1
    assert flow.record.fallback_model == "m2"


# --- capabilities: hard refuses, soft serves -----------------------------------------------


def stated(model_id: str, **facts: Any) -> ModelInfo:
    info = ModelInfo(model_id)
    info.report(**facts)
    return info


@pytest.mark.parametrize(
    ("path", "body", "info"),
    [
        (CHAT, chat_body("x"), stated("x", embeddings=True)),
        (COMPLETIONS, {"model": "x", "prompt": "hi"}, stated("x", embeddings=True)),
        (EMBEDDINGS, {"model": "x", "input": "hi"}, stated("x", embeddings=False)),
    ],
    ids=["chat-to-embedder", "completions-to-embedder", "embeddings-to-generator"],
)
async def test_hard_mismatch_is_a_400(
    flow: Flow, path: str, body: dict[str, Any], info: ModelInfo
) -> None:
    a = flow.add_backend("a", [info])
    client = FakeClient(path, body)
    await flow.serve(client)

    rec = assert_error_answer(flow, client, 400, "wrong_endpoint")
    err = envelope(client)
    assert (err["code"], err["param"]) == ("wrong_endpoint", "model")
    assert not a.calls  # nothing was sent
    assert not flow.ledger.leases
    assert rec.retries == 0


async def test_soft_mismatch_is_still_served(flow: Flow) -> None:
    a = flow.add_backend("a", [stated("m", tools=False)], script=[Reply(body=ANSWER)])
    tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
    client = FakeClient(CHAT, chat_body(tools=tools, response_format={"type": "json_object"}))
    await flow.serve(client)
    flow.assert_settled()
    assert (client.status, client.body) == (200, ANSWER)
    assert a.calls[0].json["tools"] == tools
    assert flow.record.outcome == "ok"


async def test_soft_mismatch_prefers_a_capable_backend(flow: Flow) -> None:
    plain = flow.add_backend("plain", [ModelInfo("m", tools=False)], priority=10)
    capable = flow.add_backend(
        "capable", [ModelInfo("m", tools=True)], priority=90, script=[Reply(body=ANSWER)]
    )
    tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
    client = FakeClient(CHAT, chat_body(tools=tools))
    await flow.serve(client)
    flow.assert_settled()
    assert client.headers["x-nexus-backend"] == "capable"
    assert not plain.calls and len(capable.calls) == 1


async def test_guessed_wrong_endpoint_is_tried_and_not_held_against_the_backend(
    flow: Flow,
) -> None:
    """A guess (not stated) never refuses; when the backend then fails, the failure was
    predicted by the request and does not count against the backend's health."""
    a = flow.add_backend("a", [ModelInfo("x", embeddings=True)], script=[Reply(500, b"no chat")])
    client = FakeClient(CHAT, chat_body("x"))
    await flow.serve(client)
    assert_error_answer(flow, client, 502, "backend_error")
    assert len(a.calls) == 1
    assert flow.backends["a"].passive_failures == 0
