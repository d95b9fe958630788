"""The request core over real sockets: one record per request whatever happens, the 400/503
split, and the embeddings and legacy completions endpoints (fake backends, official SDK).
"""

from __future__ import annotations

import asyncio
import base64
import struct
import threading

import httpx
import openai
import pytest

from nexusd.config.loader import parse_config
from nexusd.records import RequestRecord
from nexusd.tokens import counter
from tests.fakes.state import embed
from tests.harness import TEST_DEFAULTS, DaemonThread, merge, ollama_backend


def chat(url: str, model: str = "llama3:8b", **extra) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], **extra}
    return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30)


def records(d: DaemonThread) -> dict[str, RequestRecord]:
    return {r.request_id: r for r in d.call(lambda: d.core.history.recent(1000))}


# --- accounting ------------------------------------------------------------------------------


def test_slow_request_evicted_from_the_decision_log_is_accounted(fakes, nexus) -> None:
    """The decision log holds 2 traces; a slow request outlives 3 fast ones and is still
    recorded as what the client got: 200, its backend, its tokens."""
    slow = fakes("ollama", ["slow:1b"])
    fast = fakes("ollama", ["llama3:8b"])
    slow.faults.latency_s = 1.0
    d = nexus(
        {
            "routing": {"decision_history": 2},
            "backends": [ollama_backend("slow", slow.url), ollama_backend("fast", fast.url)],
        }
    )
    d.wait_healthy("slow", "fast")
    answer: dict[str, httpx.Response] = {}
    worker = threading.Thread(target=lambda: answer.setdefault("r", chat(d.url, "slow:1b")))
    worker.start()
    assert d.wait_until(lambda: d.core.inflight == 1)
    fast_ids = [chat(d.url).headers["x-nexus-request-id"] for _ in range(3)]
    worker.join(10)
    r = answer["r"]
    assert r.status_code == 200
    slow_id = r.headers["x-nexus-request-id"]
    assert d.call(lambda: d.core.decisions.get(slow_id)) is None  # evicted, really
    d.wait_idle()
    rec = records(d)[slow_id]
    assert (rec.status_code, rec.outcome, rec.backend, rec.served_model) == (
        200,
        "ok",
        "slow",
        "slow:1b",
    )
    assert rec.prompt_tokens is not None and rec.completion_tokens is not None
    assert all(records(d)[i].status_code == 200 for i in fast_ids)


def test_exception_inside_routing_is_a_500_envelope_and_a_finished_record(fakes, nexus) -> None:
    fake = fakes("ollama", ["llama3:8b"])
    d = nexus({"backends": [ollama_backend("box", fake.url)]})
    d.wait_healthy("box")
    original = d.core.pipeline.run

    def broken(*args, **kwargs):
        raise RuntimeError("injected")

    d.call(lambda: setattr(d.core.pipeline, "run", broken))
    for stream in (False, True):
        r = chat(d.url, stream=stream)
        assert r.status_code == 500
        assert r.headers["content-type"] == "application/json"
        request_id = r.headers["x-nexus-request-id"]
        error = r.json()["error"]
        assert error["type"] == "server_error" and error["code"] == "internal_error"
        assert request_id in error["message"] and "RuntimeError" in error["message"]
        d.wait_idle()
        rec = records(d)[request_id]
        assert (rec.status_code, rec.outcome, rec.error_type) == (500, "error", "internal_error")
    d.call(lambda: setattr(d.core.pipeline, "run", original))
    assert chat(d.url).status_code == 200
    d.wait_idle()  # inflight back to 0, every pending counter 0


# --- 400 (never servable) vs 503 (maybe later) ------------------------------------------------


def test_chat_to_an_embedding_model_is_400_and_never_hurts_the_backend(fakes, nexus) -> None:
    fake = fakes("ollama", [{"id": "nomic-embed-text", "embedding": True}])
    d = nexus({"backends": [ollama_backend("box", fake.url)]})
    d.wait_healthy("box")
    for _ in range(10):
        r = chat(d.url, "nomic-embed-text")
        assert r.status_code == 400
        error = r.json()["error"]
        assert error["code"] == "wrong_endpoint"
        assert "embedding model" in error["message"] and "/v1/embeddings" in error["message"]
    assert fake.chat_requests == []
    backend = d.backend("box")
    assert backend.routable and backend.passive_failures == 0 and backend.errors == 0


def test_no_healthy_backend_is_503_with_retry_after(fakes, nexus) -> None:
    fake = fakes("ollama", ["llama3:8b"])
    d = nexus({"backends": [ollama_backend("box", fake.url)]})
    d.wait_healthy("box")
    backend = d.backend("box")
    d.call(lambda: setattr(backend, "draining", True))
    r = chat(d.url)
    assert r.status_code == 503
    assert r.headers["retry-after"] == "5"
    assert r.json()["error"]["type"] == "service_unavailable"


# --- embeddings ------------------------------------------------------------------------------


def _floats(b64: str) -> list[float]:
    raw = base64.b64decode(b64)
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


def test_embeddings_through_ollama_one_native_call_for_the_batch(fakes, nexus) -> None:
    fake = fakes("ollama", [{"id": "nomic-embed-text", "embedding": True}])
    d = nexus({"backends": [ollama_backend("box", fake.url)]})
    d.wait_healthy("box")
    client = openai.OpenAI(base_url=d.url + "/v1", api_key="unused")
    texts = [f"sentence number {i}" for i in range(8)]
    reply = client.embeddings.create(model="nomic-embed-text", input=texts)
    assert [e.index for e in reply.data] == list(range(8))
    # the SDK asks for base64 (float32) by default: equal to float32 precision
    for got, text in zip(reply.data, texts, strict=True):
        assert got.embedding == pytest.approx(embed(text), abs=1e-6)
    assert reply.usage.prompt_tokens > 0
    (call,) = fake.embedding_requests
    assert call.path == "/api/embed" and call.json["input"] == texts

    single = client.embeddings.create(model="nomic-embed-text", input="just one")
    assert single.data[0].embedding == pytest.approx(embed("just one"), abs=1e-6)
    raw = httpx.post(
        d.url + "/v1/embeddings",
        json={"model": "nomic-embed-text", "input": ["abc"], "encoding_format": "base64"},
    ).json()
    assert _floats(raw["data"][0]["embedding"]) == pytest.approx(embed("abc"), abs=1e-6)
    plain = httpx.post(
        d.url + "/v1/embeddings",
        json={"model": "nomic-embed-text", "input": "abc", "encoding_format": "float"},
    ).json()
    assert plain["data"][0]["embedding"] == embed("abc")  # exact: floats pass as JSON
    d.wait_idle()
    kinds = {r.endpoint for r in records(d).values()}
    assert kinds == {"embeddings"}


def test_embeddings_fail_over_to_the_same_model_only(fakes, nexus) -> None:
    first = fakes("ollama", [{"id": "embed-a", "embedding": True}])
    second = fakes("ollama", [{"id": "embed-a", "embedding": True}])
    other = fakes("ollama", [{"id": "embed-b", "embedding": True}])
    d = nexus(
        {
            "backends": [
                ollama_backend("first", first.url, priority=1),
                ollama_backend("second", second.url, priority=90),
                ollama_backend("other", other.url),
            ],
            "routing": {"fallbacks": {"embed-a": ["embed-b"]}},
        }
    )
    d.wait_healthy("first", "second", "other")
    first.faults.fail_status = 500
    r = httpx.post(d.url + "/v1/embeddings", json={"model": "embed-a", "input": "x"})
    assert r.status_code == 200 and r.headers["x-nexus-backend"] == "second"
    second.faults.fail_status = 500
    r = httpx.post(d.url + "/v1/embeddings", json={"model": "embed-a", "input": "x"})
    assert r.status_code == 502  # never embed-b: its vectors are not comparable
    assert other.embedding_requests == []


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "m"}, "input"),
        ({"model": "m", "input": []}, "input"),
        ({"model": "m", "input": 5}, "input"),
        ({"model": "m", "input": ["x"] * 2049}, "input"),
        ({"model": "m", "input": "x", "encoding_format": "int8"}, "encoding_format"),
        ({"model": "m", "input": "x", "dimensions": 0}, "dimensions"),
        ({"input": "x"}, "model"),
    ],
)
def test_embeddings_bad_input_is_400_naming_the_field(nexus, body, param) -> None:
    d = nexus()
    r = httpx.post(d.url + "/v1/embeddings", json=body)
    assert r.status_code == 400
    assert r.json()["error"]["param"] == param


# --- legacy completions ----------------------------------------------------------------------


def test_completions_stream_and_not_through_the_same_flow(fakes, nexus) -> None:
    dead = fakes("vllm", ["coder"])
    alive = fakes("vllm", ["coder"], reply="def add(a, b): return a + b")
    d = nexus(
        {
            "backends": [
                {"name": "dead", "url": dead.url, "type": "vllm", "priority": 1},
                {"name": "alive", "url": alive.url, "type": "vllm", "priority": 90},
            ]
        }
    )
    d.wait_healthy("dead", "alive")
    dead.faults.fail_status = 503
    client = openai.OpenAI(base_url=d.url + "/v1", api_key="unused")
    reply = client.completions.create(model="coder", prompt="def add(", max_tokens=64)
    assert reply.choices[0].text == "def add(a, b): return a + b"
    stream = client.completions.create(
        model="coder",
        prompt="def add(",
        max_tokens=64,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == "def add(a, b): return a + b"
    assert chunks[-1].usage is not None
    d.wait_idle()
    recs = [r for r in records(d).values() if r.endpoint == "completions"]
    assert len(recs) == 2
    assert all(r.backend == "alive" and r.retries == 1 for r in recs)
    assert any(r.stream and r.completion_tokens for r in recs)
    assert alive.completion_requests[0].path == "/v1/completions"


# --- token counts: exact where the family has a public encoding, and only then a veto --------


def test_prompt_over_the_context_by_a_real_count_is_400(fakes, nexus) -> None:
    """gpt-4o's prompt counted with o200k_base exceeds the 2048 tokens vLLM reports: 400.
    The same prompt to a llama model is only estimated, so it is sent (the backend decides)."""
    fake = fakes(
        "vllm",
        [{"id": "gpt-4o", "context_length": 2048}, {"id": "llama3:8b", "context_length": 2048}],
    )
    d = nexus({"backends": [{"name": "box", "url": fake.url, "type": "vllm"}]})
    d.wait_healthy("box")
    d.run(asyncio.to_thread(counter().prepare, "gpt-4o"))  # loading happens off the hot path
    d.run(asyncio.to_thread(counter().prepare, "llama3:8b"))
    prompt = "hello " * 3000  # 3,000 o200k tokens + framing; chars/4 would say 4,500
    expected = counter().count_chat([{"role": "user", "content": prompt}], "gpt-4o")
    assert expected.exact and 3000 < expected.tokens < 3020
    r = httpx.post(
        d.url + "/v1/chat/completions",
        json={"model": "gpt-4o", "messages": [{"role": "user", "content": prompt}]},
        timeout=30,
    )
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["code"] == "context_length_exceeded"
    assert f"the prompt alone is {expected.tokens} tokens" in error["message"]
    assert "context of 2048 tokens" in error["message"]
    assert fake.chat_requests == []
    trace = d.call(lambda: d.core.decisions.get(r.headers["x-nexus-request-id"]))
    assert trace.requirements.prompt_method == "o200k_base"

    r = httpx.post(
        d.url + "/v1/chat/completions",
        json={"model": "llama3:8b", "messages": [{"role": "user", "content": prompt}]},
        timeout=30,
    )
    assert r.status_code == 200  # an estimate never vetoes
    trace = d.call(lambda: d.core.decisions.get(r.headers["x-nexus-request-id"]))
    assert trace.requirements.prompt_method == "estimate"
    assert trace.requirements.prompt_tokens < 4500  # a cl100k count, not characters / 4


def test_short_prompts_are_never_tokenized(fakes, nexus, monkeypatch) -> None:
    """The hot path: a prompt whose upper bound fits every context costs no tokenizer call."""
    fake = fakes("ollama", ["llama3:8b"])
    d = nexus({"backends": [ollama_backend("box", fake.url)]})
    d.wait_healthy("box")
    calls = []
    monkeypatch.setattr(
        "nexusd.gateway.count_prompt", lambda *a: calls.append(a) or pytest.fail("counted")
    )
    assert chat(d.url).status_code == 200
    assert calls == []


# --- first run: a server started after the daemon is found at the first request -------------


def test_a_model_nobody_serves_triggers_a_probe_before_404(fakes, nexus) -> None:
    """README order: the daemon starts first, then the fake Ollama; the first request for its
    model finds it at once (not after probe_interval_seconds = 300)."""
    d = nexus({"discovery": {"probe": True, "probe_ports": [], "probe_interval_seconds": 300}})
    fake = fakes("ollama", ["llama3:8b"], reply="found you")
    # a reload (as `nexusctl config reload` does) must reach the probe: it read a snapshot
    reloaded, _, _ = parse_config(
        merge(TEST_DEFAULTS, {"discovery": {"probe": True, "probe_ports": [fake.port]}}), env={}
    )
    d.call(lambda: d.core.apply_config(reloaded))
    r = chat(d.url)
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == "found you"
    assert r.headers["x-nexus-backend"] == f"ollama-{fake.port}"
    # and a model that really is nowhere is still a quick 404
    assert chat(d.url, "nowhere:1b").status_code == 404


def test_inflight_is_one_number_on_every_stats_surface(fakes, nexus) -> None:
    slow = fakes("ollama", ["llama3:8b"])
    slow.faults.latency_s = 1.0
    d = nexus({"backends": [ollama_backend("box", slow.url)]})
    d.wait_healthy("box")
    worker = threading.Thread(target=lambda: chat(d.url))
    worker.start()
    assert d.wait_until(lambda: d.core.inflight == 1)
    api = httpx.get(d.url + "/v1/stats").json()
    control = httpx.Client(transport=httpx.HTTPTransport(uds=str(d.control_path))).get(
        "http://nexus/v1/stats"
    )
    assert api["inflight"] == control.json()["inflight"] == 1
    worker.join(10)
    d.wait_idle()
    assert httpx.get(d.url + "/v1/stats").json()["inflight"] == 0


def test_models_listing_finds_a_server_started_after_the_daemon(fakes, nexus) -> None:
    """README order: `nexus serve` (step 1), then the fake Ollama, then `curl /v1/models`."""
    fake = fakes("ollama", ["llama3:8b"])
    d = nexus({"discovery": {"probe": True, "probe_ports": [fake.port]}})
    # the start-up scan ran before this test could know; forget what it found to mimic a
    # server that starts later
    for backend in list(d.core.registry.all()):
        d.call(lambda b=backend: d.core.registry.remove(b.id))
    d.call(lambda: setattr(d.core.probe, "_last_scan", float("-inf")))
    listing = httpx.get(d.url + "/v1/models").json()["data"]
    assert [m["id"] for m in listing] == ["llama3:8b"]
