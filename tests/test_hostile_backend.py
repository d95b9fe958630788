"""Hostile or broken backends (issue 11): every attack performed by a fake over real sockets.

A backend is not trusted to be well-behaved. What it sends is bounded (a whole answer by
``server.max_response_bytes``, an SSE event by ``server.max_event_bytes``), a stream must be
SSE, a non-streaming answer one whole JSON object, and redirects are not followed for
inference (nor across origins for probes). Each violation is a backend fault: the gateway
fails over before the response head (502 when nothing else can serve), and a stream already
under way ends with an error event. On the old code every test here fails: it hangs until
the client gives up, answers 200 from the bad backend, or follows the redirect.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from nexusd.backends.transport import has_boundary, sse_start
from tests.fakes import FakeHost
from tests.harness import DaemonThread, ollama_backend

MIB = 1024 * 1024
#: long enough for every bounded failure here, far shorter than the old code's hangs
CLIENT_TIMEOUT = 20.0
BODY = {"model": "llama3:8b", "messages": [{"role": "user", "content": "hi"}]}


def chat(d: DaemonThread, stream: bool = False) -> httpx.Response:
    return httpx.post(
        f"{d.url}/v1/chat/completions", json={**BODY, "stream": stream}, timeout=CLIENT_TIMEOUT
    )


def stream_events(d: DaemonThread) -> tuple[httpx.Response, list[Any]]:
    """A streamed chat: the response and its ``data:`` payloads, parsed."""
    with httpx.stream(
        "POST",
        f"{d.url}/v1/chat/completions",
        json={**BODY, "stream": True},
        timeout=CLIENT_TIMEOUT,
    ) as r:
        lines = list(r.iter_lines())
    payloads = [json.loads(line[6:]) for line in lines if line.startswith("data: {")]
    return r, payloads


def content_of(payloads: list[Any]) -> str:
    return "".join(
        p["choices"][0]["delta"].get("content") or "" for p in payloads if p.get("choices")
    )


def single(nexus, fake, **server: Any) -> DaemonThread:
    d = nexus(
        {
            "backends": [ollama_backend("bad", fake.url)],
            "server": server,
            "health_check": {"failure_threshold": 100},
        }
    )
    d.wait_healthy("bad")
    return d


def pair(nexus, bad, good, **server: Any) -> DaemonThread:
    """A daemon preferring backend "bad" (priority 1) over "good" (priority 90)."""
    d = nexus(
        {
            "backends": [
                ollama_backend("bad", bad.url, priority=1),
                ollama_backend("good", good.url, priority=90),
            ],
            "server": server,
            "health_check": {"failure_threshold": 100},
        }
    )
    d.wait_healthy("bad", "good")
    return d


def assert_failed_over(d: DaemonThread, r: httpx.Response, fragment: str) -> None:
    assert r.status_code == 200, r.text
    assert r.headers["x-nexus-backend"] == "good"
    trace = d.call(lambda: d.core.decisions.get(r.headers["x-nexus-request-id"]))
    assert [a.backend for a in trace.attempts] == ["bad", "good"]
    assert trace.attempts[0].outcome == "failed"
    assert fragment in trace.attempts[0].error, trace.attempts[0].error
    assert d.backend("bad").passive_failures >= 1  # a backend fault counts against it


def assert_bad_gateway(r: httpx.Response, fragment: str) -> None:
    assert r.status_code == 502, r.text
    error = r.json()["error"]
    assert error["code"] == "bad_gateway"
    assert fragment in error["message"], error["message"]


# --- 1. non-streaming answers are bounded ---------------------------------------------------


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_oversized_answer_fails_over_and_closes_the_connection(
    fake_host: FakeHost, fakes, nexus, chunked: bool
) -> None:
    bad = fakes("ollama", ["llama3:8b"])
    good = fakes("ollama", ["llama3:8b"], reply="good one")
    bad.faults.response_bytes = 256 * MIB  # far more than the kernel's socket buffers
    bad.faults.response_chunked = chunked
    d = pair(nexus, bad, good, max_response_bytes=1 * MIB)
    started = time.monotonic()
    r = chat(d)
    assert time.monotonic() - started < 10
    assert_failed_over(d, r, "too large")
    assert r.json()["choices"][0]["message"]["content"] == "good one"
    # closed, not drained: the fake's write fails once Nexus hangs up
    assert fake_host.wait_until(bad, lambda: bad.client_disconnects >= 1)
    d.wait_idle()


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_oversized_answer_without_alternative_is_502(fakes, nexus, chunked: bool) -> None:
    bad = fakes("ollama", ["llama3:8b"])
    bad.faults.response_bytes = 3 * MIB
    bad.faults.response_chunked = chunked
    d = single(nexus, bad, max_response_bytes=2 * MIB)
    r = chat(d)
    assert_bad_gateway(r, "max_response_bytes")
    assert ("3145728 bytes declared" in r.text) is not chunked
    d.wait_idle()


def test_answer_within_the_limit_is_served(fakes, nexus) -> None:
    fake = fakes("ollama", ["llama3:8b"])
    fake.faults.response_bytes = 2 * MIB
    fake.faults.response_chunked = True
    d = single(nexus, fake, max_response_bytes=2 * MIB)
    r = chat(d)
    assert r.status_code == 200
    assert len(r.content) == 2 * MIB
    assert r.json()["choices"][0]["message"]["content"] == "Hello from the fake"


def test_endless_answer_is_cut_at_the_limit_not_the_request_timeout(fakes, nexus) -> None:
    bad = fakes("ollama", ["llama3:8b"])
    bad.faults.endless_body = True
    d = single(nexus, bad, max_response_bytes=1 * MIB)  # request_timeout stays 300 s
    started = time.monotonic()
    r = chat(d)
    assert time.monotonic() - started < 10
    assert_bad_gateway(r, "too large")
    d.wait_idle()


# --- 2. a non-streaming answer must be one whole JSON object --------------------------------


def test_truncated_json_answer_fails_over(fakes, nexus) -> None:
    bad = fakes("ollama", ["llama3:8b"])
    good = fakes("ollama", ["llama3:8b"], reply="good one")
    bad.faults.truncate_json = True
    d = pair(nexus, bad, good)
    r = chat(d)
    assert_failed_over(d, r, "incomplete")
    assert r.json()["choices"][0]["message"]["content"] == "good one"


def test_truncated_json_answer_without_alternative_is_502(fakes, nexus) -> None:
    bad = fakes("ollama", ["llama3:8b"])
    bad.faults.truncate_json = True
    d = single(nexus, bad)
    assert_bad_gateway(chat(d), "JSON object is incomplete")


# --- 2. a stream must be SSE ----------------------------------------------------------------

NOT_STREAMS = [
    pytest.param("json", None, "application/json", id="json"),
    pytest.param("html", None, "text/html", id="html"),
    pytest.param("json", "", "no Content-Type", id="json-untyped"),
    pytest.param("json", "text/event-stream", "text/event-stream", id="json-as-sse"),
]


@pytest.mark.parametrize(("body", "content_type", "named"), NOT_STREAMS)
def test_stream_answered_with_something_else_fails_over(
    fakes, nexus, body: str, content_type: str | None, named: str
) -> None:
    bad = fakes("ollama", ["llama3:8b"])
    good = fakes("ollama", ["llama3:8b"], reply="good one")
    bad.faults.stream_body = body
    bad.faults.stream_content_type = content_type
    d = pair(nexus, bad, good)
    r, payloads = stream_events(d)
    assert_failed_over(d, r, "not text/event-stream")
    assert r.headers["content-type"].startswith("text/event-stream")
    assert content_of(payloads) == "good one"
    trace = d.call(lambda: d.core.decisions.get(r.headers["x-nexus-request-id"]))
    assert named in trace.attempts[0].error
    d.wait_idle()


@pytest.mark.parametrize(("body", "content_type", "named"), NOT_STREAMS[:3])
def test_stream_answered_with_something_else_is_502(
    fakes, nexus, body: str, content_type: str | None, named: str
) -> None:
    bad = fakes("ollama", ["llama3:8b"])
    bad.faults.stream_body = body
    bad.faults.stream_content_type = content_type
    d = single(nexus, bad)
    r = chat(d, stream=True)
    assert r.headers["content-type"].startswith("application/json")
    assert_bad_gateway(r, f"a stream request with {named}, not text/event-stream")
    d.wait_idle()


@pytest.mark.parametrize(
    "content_type",
    ["", "Text/Event-Stream; charset=UTF-8", "text/event-stream;charset=utf-8"],
    ids=["omitted", "case-and-charset", "no-space"],
)
def test_tolerated_stream_content_types(fakes, nexus, content_type: str) -> None:
    fake = fakes("ollama", ["llama3:8b"], reply="one two three")
    fake.faults.stream_content_type = content_type
    d = single(nexus, fake)
    r, payloads = stream_events(d)
    assert r.status_code == 200
    assert content_of(payloads) == "one two three"
    d.wait_idle()


# --- 1. stream events are bounded in size and in time ---------------------------------------


def test_stream_without_event_boundaries_fails_over_before_the_head(fakes, nexus) -> None:
    bad = fakes("ollama", ["llama3:8b"])
    good = fakes("ollama", ["llama3:8b"], reply="good one")
    bad.faults.unframed_after = 0  # "data: xxxx…" flat out, never a blank line
    d = pair(nexus, bad, good, max_event_bytes=256 * 1024)
    started = time.monotonic()
    r, payloads = stream_events(d)
    assert time.monotonic() - started < 10
    assert_failed_over(d, r, "max_event_bytes")
    assert content_of(payloads) == "good one"
    d.wait_idle()


def test_stream_without_event_boundaries_and_no_alternative_is_502(fakes, nexus) -> None:
    bad = fakes("ollama", ["llama3:8b"])
    bad.faults.unframed_after = 0
    d = single(nexus, bad, max_event_bytes=256 * 1024)
    assert_bad_gateway(chat(d, stream=True), "without an event boundary")
    d.wait_idle()


def test_trickle_before_the_first_event_times_out_at_the_idle_timeout(fakes, nexus) -> None:
    bad = fakes("ollama", ["llama3:8b"])
    good = fakes("ollama", ["llama3:8b"], reply="good one")
    bad.faults.unframed_after = 0
    bad.faults.unframed_delay_s = 0.05  # a byte every 50 ms: never idle by the byte
    d = pair(nexus, bad, good, stream_idle_timeout_seconds=0.5, first_byte_timeout_seconds=30)
    started = time.monotonic()
    r, payloads = stream_events(d)
    assert time.monotonic() - started < 5
    assert_failed_over(d, r, "no complete event within 0.5 s")
    assert content_of(payloads) == "good one"
    d.wait_idle()


def test_event_too_large_mid_stream_ends_with_an_error_event(
    fake_host: FakeHost, fakes, nexus
) -> None:
    fake = fakes("ollama", ["llama3:8b"], reply="one two three")
    fake.faults.unframed_after = 2  # the role event and one content event, then no boundary
    d = single(nexus, fake, max_event_bytes=256 * 1024)
    started = time.monotonic()
    r, payloads = stream_events(d)
    assert time.monotonic() - started < 10
    assert r.status_code == 200
    assert content_of(payloads) == "one "
    message = payloads[-1]["error"]["message"]
    assert "failed mid-stream" in message and "max_event_bytes" in message
    assert fake_host.call(fake.wait_stream_closed(timeout=5))  # Nexus hung up
    d.wait_idle()


def test_trickle_mid_stream_ends_after_the_idle_timeout(fake_host: FakeHost, fakes, nexus) -> None:
    fake = fakes("ollama", ["llama3:8b"], reply="one two three")
    fake.faults.unframed_after = 2
    fake.faults.unframed_delay_s = 0.05
    d = single(nexus, fake, stream_idle_timeout_seconds=0.5)
    started = time.monotonic()
    r, payloads = stream_events(d)
    assert time.monotonic() - started < 5
    assert r.status_code == 200
    assert content_of(payloads) == "one "
    message = payloads[-1]["error"]["message"]
    assert "no complete event within 0.5 s" in message
    assert "bytes without an event boundary" in message
    assert fake_host.call(fake.wait_stream_closed(timeout=5))
    d.wait_idle()


def test_slow_but_whole_events_are_not_idle(fakes, nexus) -> None:
    fake = fakes("ollama", ["llama3:8b"], chunks=3)
    fake.faults.chunk_delay_s = 0.2  # each event well within the idle timeout, all beyond it
    d = single(nexus, fake, stream_idle_timeout_seconds=0.6)
    r, payloads = stream_events(d)
    assert r.status_code == 200
    assert "error" not in payloads[-1]
    assert content_of(payloads) == fake.reply
    d.wait_idle()


# --- 3. redirects ---------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["non-stream", "stream"])
def test_inference_redirect_to_another_origin_is_not_followed(fakes, nexus, stream: bool) -> None:
    target = fakes("ollama", ["llama3:8b"], reply="from the redirect target")
    bad = fakes("ollama", ["llama3:8b"])
    bad.faults.redirect_to = target.url
    d = single(nexus, bad)
    r = chat(d, stream=stream)
    assert_bad_gateway(r, f"HTTP 307, a redirect to '{target.url}/v1/chat/completions")
    assert target.request_count == 0  # nothing, let alone the prompt, went there
    d.wait_idle()


@pytest.mark.parametrize("stream", [False, True], ids=["non-stream", "stream"])
def test_inference_redirect_fails_over(fakes, nexus, stream: bool) -> None:
    target = fakes("ollama", ["llama3:8b"], reply="from the redirect target")
    bad = fakes("ollama", ["llama3:8b"])
    good = fakes("ollama", ["llama3:8b"], reply="good-one")
    bad.faults.redirect_to = target.url
    d = pair(nexus, bad, good)
    r = chat(d, stream=stream)
    assert_failed_over(d, r, "redirect")
    assert "good-one" in r.text
    assert target.request_count == 0
    trace = d.call(lambda: d.core.decisions.get(r.headers["x-nexus-request-id"]))
    assert trace.attempts[0].status == 307
    d.wait_idle()


def test_probe_redirect_to_another_origin_is_not_followed(fakes, nexus) -> None:
    target = fakes("ollama", ["llama3:8b"])
    bad = fakes("ollama", ["llama3:8b"])
    bad.faults.redirect_to = target.url
    bad.faults.redirect_probes = True
    d = nexus({"backends": [ollama_backend("bad", bad.url)]})
    assert d.wait_until(lambda: d.core.registry.get("bad").last_error is not None)
    backend = d.backend("bad")
    assert not backend.routable
    assert "redirect to another origin" in backend.last_error
    assert target.request_count == 0


def test_probe_redirect_within_the_origin_is_followed(fakes, nexus) -> None:
    fake = fakes("ollama", ["llama3:8b"])
    fake.faults.redirect_to = fake.url  # e.g. a path rewrite on the same server
    fake.faults.redirect_probes = True
    d = nexus({"backends": [ollama_backend("box", fake.url)]})
    d.wait_healthy("box")
    assert any(r.query.get("_redirected") for r in fake.requests)
    assert "llama3:8b" in d.backend("box").models


# --- the pure helpers -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("last", "chunk", "expected"),
    [
        (0, b"data: 1\n\n", True),
        (0, b"data: 1\r\n\r\n", True),
        (0, b"data: 1\r\r", True),
        (0, b"data: 1\n\r", True),
        (0, b"data: 1\r\n", False),
        (0, b"data: 1\n", False),
        (0, b"data: 1", False),
        (ord("\n"), b"\ndata: 2", True),
        (ord("\n"), b"\r\n", True),
        (ord("\r"), b"\r", True),
        (ord("\r"), b"\n", False),  # CR LF: one line end
        (ord("\r"), b"\ndata", False),
        (ord("1"), b"\n", False),
    ],
)
def test_has_boundary(last: int, chunk: bytes, expected: bool) -> None:
    assert has_boundary(last, chunk) is expected


def test_has_boundary_agrees_with_the_framer_at_every_split() -> None:
    """Whatever the cut, the chunks that ``has_boundary`` flags are exactly those after which
    the framer has (or, for a held CR, is about to have) emitted an event."""
    stream = b"data: a\r\n\r\ndata: b\n\n: c\r\rdata: d\n\r\n"

    def events(data: bytes) -> int:
        return data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").count(b"\n\n")

    for cut in range(1, len(stream)):
        a, b = stream[:cut], stream[cut:]
        assert has_boundary(0, a) is (events(a) > 0), cut
        assert has_boundary(a[-1], b) is (events(stream) > events(a)), cut


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"data: {}\n\n", True),
        (b"data:{}\n\n", True),
        (b"data\n\n", True),
        (b"event: ping\n\n", True),
        (b"id: 1\n\n", True),
        (b"retry: 100\n\n", True),
        (b": keep-alive\n\n", True),
        (b"\xef\xbb\xbfdata: x\n\n", True),
        (b"\r\n\r\ndata: x\n\n", True),
        (b'{"id":"x"}', False),
        (b"<!DOCTYPE html>", False),
        (b"identity\n\n", False),
        (b"database\n\n", False),
        (b"dat", None),  # too short to tell yet
        (b"\n\n{", None),
        (b"", None),
    ],
)
def test_sse_start(head: bytes, expected: bool | None) -> None:
    assert sse_start(head) is expected
