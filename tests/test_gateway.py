"""The OpenAI gateway end to end: real daemon, real sockets, fake backends, official SDK."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from tests.fakes import FakeHost
from tests.harness import ollama_backend


def chat(url: str, model: str = "llama3:8b", **extra) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], **extra}
    return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30)


def test_zero_config_probe_finds_fake_ollama_and_serves_sdk(fakes, nexus) -> None:
    fake = fakes("ollama", ["llama3:8b"], reply="Hello from the fake")
    d = nexus({"discovery": {"probe": True, "probe_ports": [fake.port]}})
    backend_id = f"ollama-{fake.port}"
    d.wait_healthy(backend_id)
    assert d.backend(backend_id).source.value == "probe"

    client = openai.OpenAI(base_url=d.url + "/v1", api_key="unused")
    reply = client.chat.completions.create(
        model="llama3:8b", messages=[{"role": "user", "content": "hi"}]
    )
    assert reply.choices[0].message.content == "Hello from the fake"
    stream = client.chat.completions.create(
        model="llama3:8b", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "Hello from the fake"


async def test_zero_config_async_sdk_stream_and_non_stream(fakes, nexus) -> None:
    fake = fakes("ollama", ["llama3:8b"], reply="async works fine")
    d = nexus({"discovery": {"probe": True, "probe_ports": [fake.port]}})
    d.wait_healthy(f"ollama-{fake.port}")
    client = openai.AsyncOpenAI(base_url=d.url + "/v1", api_key="unused")
    reply = await client.chat.completions.create(
        model="llama3:8b", messages=[{"role": "user", "content": "hi"}]
    )
    assert reply.choices[0].message.content == "async works fine"
    stream = await client.chat.completions.create(
        model="llama3:8b", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    parts = [c.choices[0].delta.content or "" async for c in stream if c.choices]
    assert "".join(parts) == "async works fine"
    await client.close()


def test_headers_and_body_pass_through(fakes, nexus) -> None:
    fake = fakes("ollama", [{"id": "llama3:8b", "tools": True}])
    d = nexus({"backends": [ollama_backend("box", fake.url)]})
    d.wait_healthy("box")
    extra = {
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
        "x_unknown": {"kept": True},
        "stop": "END",
    }
    r = chat(d.url, **extra)
    assert r.status_code == 200
    assert r.headers["x-nexus-backend"] == "box"
    assert r.headers["x-nexus-backend-type"] == "local"
    assert r.headers["x-nexus-privacy-zone"] == "local"
    assert r.headers["x-nexus-route-reason"] == "capability-match"
    assert float(r.headers["x-nexus-overhead-ms"]) >= 0
    assert "x-nexus-fallback-model" not in r.headers
    request_id = r.headers["x-nexus-request-id"]
    assert d.call(lambda: d.core.decisions.get(request_id)) is not None
    sent = fake.chat_requests[-1].json
    assert sent["tools"] == extra["tools"] and sent["x_unknown"] == {"kept": True}
    assert sent["stop"] == "END"


def test_client_authorization_not_forwarded_by_default(fakes, nexus) -> None:
    fake = fakes("ollama", ["llama3:8b"])
    other = fakes("openai", ["gpt-local"])
    d = nexus(
        {
            "backends": [
                ollama_backend("box", fake.url),
                {
                    "name": "trusted",
                    "url": other.url,
                    "type": "generic",
                    "forward_client_auth": True,
                },
            ]
        }
    )
    d.wait_healthy("box", "trusted")
    headers = {"Authorization": "Bearer sk-client-secret"}
    body = {"messages": [{"role": "user", "content": "hi"}]}
    for model in ("llama3:8b", "gpt-local"):
        r = httpx.post(
            f"{d.url}/v1/chat/completions", json={**body, "model": model}, headers=headers
        )
        assert r.status_code == 200
    assert "authorization" not in fake.chat_requests[-1].headers
    assert other.chat_requests[-1].headers["authorization"] == "Bearer sk-client-secret"


def test_alias_routes_with_sdk_and_forwards_resolved_name(fakes, nexus) -> None:
    fake = fakes("ollama", ["llama3:8b"])
    d = nexus(
        {
            "backends": [ollama_backend("box", fake.url)],
            "routing": {"aliases": {"gpt-4": "llama3:8b"}},
        }
    )
    d.wait_healthy("box")
    client = openai.OpenAI(base_url=d.url + "/v1", api_key="x")
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4", messages=[{"role": "user", "content": "hi"}]
    )
    assert raw.parse().choices[0].message.content
    assert "x-nexus-fallback-model" not in raw.headers
    assert fake.chat_requests[-1].json["model"] == "llama3:8b"


def test_alias_chain_stops_after_three_hops(fakes, nexus) -> None:
    fake = fakes("ollama", ["c", "d"])
    d = nexus(
        {
            "backends": [ollama_backend("box", fake.url)],
            "routing": {"aliases": {"a": "b", "b": "c", "c": "d", "d": "e"}},
        }
    )
    d.wait_healthy("box")
    r = chat(d.url, model="a")  # a→b→c→d stops at d (3 hops), never reaches e
    assert r.status_code == 200
    assert fake.chat_requests[-1].json["model"] == "d"


def test_fallback_serves_when_primary_down_then_exhausted_503(
    fake_host: FakeHost, fakes, nexus
) -> None:
    primary = fakes("ollama", ["llama3:70b"])
    secondary = fakes("ollama", ["mistral:7b"])
    d = nexus(
        {
            "backends": [
                ollama_backend("big", primary.url),
                ollama_backend("small", secondary.url),
            ],
            "routing": {"fallbacks": {"llama3:70b": ["mistral:7b"]}},
            "health_check": {"failure_threshold": 1},
        }
    )
    d.wait_healthy("big", "small")
    fake_host.stop(primary)
    assert d.wait_until(lambda: not d.core.registry.get("big").routable)

    r = chat(d.url, model="llama3:70b", stream=True)
    assert r.status_code == 200
    assert r.headers["x-nexus-fallback-model"] == "mistral:7b"
    assert r.headers["x-nexus-route-reason"] == "failover"
    r = chat(d.url, model="llama3:70b")
    assert r.status_code == 200 and r.headers["x-nexus-fallback-model"] == "mistral:7b"
    assert secondary.chat_requests[-1].json["model"] == "mistral:7b"

    fake_host.stop(secondary)
    assert d.wait_until(lambda: not d.core.registry.get("small").routable)
    r = chat(d.url, model="llama3:70b")
    assert r.status_code == 503
    body = r.json()
    assert body["error"]["code"] == "service_unavailable"
    assert "Fallback chain exhausted" in body["error"]["message"]
    assert body["context"]["available_backends"] == []


def test_failover_before_first_byte_counts_passive_failure(
    fake_host: FakeHost, fakes, nexus
) -> None:
    preferred = fakes("ollama", ["llama3:8b"], reply="from preferred")
    other = fakes("ollama", ["llama3:8b"], reply="from other")
    d = nexus(
        {
            "backends": [
                ollama_backend("preferred", preferred.url, priority=1),
                ollama_backend("other", other.url, priority=90),
            ],
            "health_check": {"interval_seconds": 3600},
        }
    )
    d.wait_healthy("preferred", "other")
    fake_host.stop(preferred)  # refuses connections; health checks won't notice for an hour

    for stream in (False, True):
        r = chat(d.url, stream=stream)
        assert r.status_code == 200, r.text
        assert r.headers["x-nexus-backend"] == "other"
        assert r.headers["x-nexus-route-reason"] == "failover"
        assert "from" in r.text
    assert d.backend("preferred").passive_failures == 2
    trace = d.call(lambda: d.core.decisions.get(r.headers["x-nexus-request-id"]))
    assert [a.backend for a in trace.attempts] == ["preferred", "other"]
    assert trace.attempts[0].outcome == "failed"
    d.wait_idle()


def preferred_pair(nexus, bad_url: str, good_url: str):
    """A daemon preferring backend "bad" (priority 1) over "good" (priority 90)."""
    d = nexus(
        {
            "backends": [
                ollama_backend("bad", bad_url, priority=1),
                ollama_backend("good", good_url, priority=90),
            ]
        }
    )
    d.wait_healthy("bad", "good")
    return d


@pytest.mark.parametrize("status", [429, 503, 500])
def test_retryable_upstream_status_fails_over(fakes, nexus, status: int) -> None:
    bad = fakes("ollama", ["llama3:8b"])
    good = fakes("ollama", ["llama3:8b"], reply="good one")
    bad.faults.fail_status = status
    d = preferred_pair(nexus, bad.url, good.url)
    r = chat(d.url)
    assert r.status_code == 200
    assert r.json()["choices"][0]["message"]["content"] == "good one"
    assert len(bad.chat_requests) == 1


def test_upstream_400_passed_through_unchanged(fakes, nexus) -> None:
    bad = fakes("ollama", ["llama3:8b"])
    good = fakes("ollama", ["llama3:8b"])
    bad.faults.fail_status = 400
    d = preferred_pair(nexus, bad.url, good.url)
    r = chat(d.url)
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "invalid_request_error"
    assert len(good.chat_requests) == 0
    assert d.backend("bad").passive_failures == 0


def test_all_backends_failing_gives_502_after_retries(fakes, nexus) -> None:
    bad = fakes("ollama", ["llama3:8b"])
    bad.faults.fail_status = 500
    d = nexus({"backends": [ollama_backend("bad", bad.url)]})
    d.wait_healthy("bad")
    r = chat(d.url)
    assert r.status_code == 502
    assert r.json()["error"]["code"] == "bad_gateway"
    assert "HTTP 500" in r.json()["error"]["message"]
    assert len(bad.chat_requests) == 1  # the failed backend is never tried twice


def test_mid_stream_drop_ends_with_error_event(fakes, nexus) -> None:
    fake = fakes("ollama", ["llama3:8b"], reply="one two three four five six")
    fake.faults.drop_after_chunks = 2
    d = nexus(
        {"backends": [ollama_backend("box", fake.url)], "health_check": {"failure_threshold": 5}}
    )
    d.wait_healthy("box")
    with httpx.stream(
        "POST",
        f"{d.url}/v1/chat/completions",
        json={
            "model": "llama3:8b",
            "stream": True,
            "messages": [{"role": "user", "content": "x"}],
        },
    ) as r:
        assert r.status_code == 200
        events = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    payloads = [json.loads(e) for e in events]
    content = "".join(
        p["choices"][0]["delta"].get("content") or "" for p in payloads if "choices" in p
    )
    assert content == "one two "
    assert "error" in payloads[-1] and "mid-stream" in payloads[-1]["error"]["message"]
    # in words, not aiohttp's repr (which reads like an HTTP 400 from the backend)
    message = payloads[-1]["error"]["message"]
    assert "closed the connection before its answer was complete" in message
    assert "after " in message and " chunk" in message
    assert "TransferEncodingError" not in message and "400" not in message
    d.wait_idle()

    client = openai.OpenAI(base_url=d.url + "/v1", api_key="x")
    with pytest.raises(openai.APIError):
        for _ in client.chat.completions.create(
            model="llama3:8b", messages=[{"role": "user", "content": "x"}], stream=True
        ):
            pass
    d.wait_idle()


def test_client_disconnect_closes_upstream(fake_host: FakeHost, fakes, nexus) -> None:
    fake = fakes("ollama", ["llama3:8b"], chunks=200)
    fake.faults.chunk_delay_s = 0.05
    d = nexus({"backends": [ollama_backend("box", fake.url)]})
    d.wait_healthy("box")
    with httpx.stream(
        "POST",
        f"{d.url}/v1/chat/completions",
        json={
            "model": "llama3:8b",
            "stream": True,
            "messages": [{"role": "user", "content": "x"}],
        },
    ) as r:
        for line in r.iter_lines():
            if "content" in line:
                break
    assert fake_host.call(fake.wait_stream_closed(timeout=1.0))
    d.wait_idle(timeout=2)


def test_stream_waits_for_upstream_success_before_committing(fakes, nexus) -> None:
    fake = fakes("ollama", ["llama3:8b"])
    fake.faults.fail_status = 503
    d = nexus({"backends": [ollama_backend("box", fake.url)]})
    d.wait_healthy("box")
    r = chat(d.url, stream=True)
    assert r.status_code == 502
    assert r.headers["content-type"].startswith("application/json")
    assert r.json()["error"]["code"] == "bad_gateway"


def test_models_endpoints(fakes, nexus) -> None:
    a = fakes("ollama", [{"id": "llava:7b", "vision": True, "context_length": 8192}, "llama3:8b"])
    b = fakes("vllm", [{"id": "llama3:8b", "context_length": 32768}])
    d = nexus(
        {
            "backends": [ollama_backend("a", a.url), {"name": "b", "url": b.url, "type": "vllm"}],
            "routing": {"aliases": {"fast": "llama3:8b"}},
        }
    )
    d.wait_healthy("a", "b")
    data = httpx.get(f"{d.url}/v1/models").json()
    assert data["object"] == "list"
    rows = [(m["id"], m["owned_by"], m["context_length"]) for m in data["data"]]
    assert rows == [("llama3:8b", "a", 4096), ("llama3:8b", "b", 32768), ("llava:7b", "a", 8192)]
    llava = data["data"][2]
    assert llava["capabilities"]["vision"] is True
    one = httpx.get(f"{d.url}/v1/models/fast").json()
    assert one["id"] == "fast" and one["nexus"]["resolved_model"] == "llama3:8b"
    missing = httpx.get(f"{d.url}/v1/models/nope")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"
    health = httpx.get(f"{d.url}/health").json()
    assert health["status"] == "healthy"
    assert health["backends"] == {"total": 2, "healthy": 2, "unhealthy": 0}
    assert health["models"] == 2


@pytest.mark.parametrize(
    ("content", "status", "param", "fragment"),
    [
        (b"not json", 400, None, "not valid JSON"),
        (b"[1, 2]", 400, None, "must be a JSON object"),
        (b'{"messages": []}', 400, "model", "'model' is required"),
        (b'{"model": 5, "messages": []}', 400, "model", "non-empty string"),
        (b'{"model": "llama3:8b"}', 400, "messages", "'messages' is required"),
        (b'{"model": "llama3:8b", "messages": "hi"}', 400, "messages", "must be a list"),
        (b'{"model": "nope", "messages": []}', 404, "model", "Available: llama3:8b"),
    ],
)
def test_bad_input_gets_openai_envelope(fakes, nexus, content, status, param, fragment) -> None:
    fake = fakes("ollama", ["llama3:8b"])
    d = nexus({"backends": [ollama_backend("box", fake.url)]})
    d.wait_healthy("box")
    r = httpx.post(
        f"{d.url}/v1/chat/completions",
        content=content,
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == status
    error = r.json()["error"]
    assert fragment in error["message"]
    assert error["param"] == param
    assert set(error) == {"message", "type", "param", "code"}


def test_framework_errors_are_enveloped(nexus) -> None:
    d = nexus({"server": {"max_body_bytes": 1024}})
    big = httpx.post(f"{d.url}/v1/chat/completions", content=b"x" * 4096)
    assert big.status_code == 413 and big.json()["error"]["code"] == "payload_too_large"
    wrong = httpx.get(f"{d.url}/v1/chat/completions")
    assert wrong.status_code == 405 and "use POST" in wrong.json()["error"]["message"]
    unknown = httpx.get(f"{d.url}/v2/nothing")
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"
    no_models = httpx.post(f"{d.url}/v1/chat/completions", json={"model": "x", "messages": []})
    assert no_models.status_code == 404
    message = no_models.json()["error"]["message"]
    assert "Nexus has no backends yet" in message and "nexus backends add URL" in message


def test_stated_capability_mismatch_is_400_with_the_fix(fakes, nexus) -> None:
    """Ollama's /api/show states the model has no vision: no backend can ever serve it."""
    fake = fakes("ollama", ["llama3:8b"])
    d = nexus({"backends": [ollama_backend("box", fake.url)]})
    d.wait_healthy("box")
    r = chat(
        d.url,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is this"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                ],
            }
        ],
    )
    assert r.status_code == 400
    assert "retry-after" not in r.headers
    body = r.json()
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["code"] == "model_not_capable"
    message = body["error"]["message"]
    assert "'llama3:8b' lacks vision: it cannot take image input" in message
    assert 'models."llama3:8b".vision = true' in message
    assert body["context"]["available_backends"] == ["box"]
    assert fake.chat_requests == []  # nothing was sent
    assert body["context"]["rejections"][0]["stage"] == "capabilities"


def test_first_byte_timeout_fails_over(fakes, nexus) -> None:
    slow = fakes("ollama", ["llama3:8b"])
    fast = fakes("ollama", ["llama3:8b"], reply="fast one")
    slow.faults.latency_s = 5
    d = nexus(
        {
            "backends": [
                ollama_backend("slow", slow.url, priority=1),
                ollama_backend("fast", fast.url, priority=90),
            ],
            "server": {"first_byte_timeout_seconds": 0.5, "request_timeout_seconds": 0.5},
        }
    )
    d.wait_healthy("slow", "fast")
    for stream in (True, False):
        r = chat(d.url, stream=stream)
        assert r.status_code == 200 and r.headers["x-nexus-backend"] == "fast"
        assert "fast" in r.text
    d.wait_idle()


def test_total_timeout_without_alternative_is_504(fakes, nexus) -> None:
    slow = fakes("ollama", ["llama3:8b"])
    slow.faults.latency_s = 5
    d = nexus(
        {"backends": [ollama_backend("slow", slow.url)], "server": {"request_timeout_seconds": 0.3}}
    )
    d.wait_healthy("slow")
    r = chat(d.url)
    assert r.status_code == 504
    assert r.json()["error"]["code"] == "gateway_timeout"
    assert "timed out" in r.json()["error"]["message"]


def test_stream_idle_timeout_ends_with_error_event(fakes, nexus) -> None:
    fake = fakes("ollama", ["llama3:8b"], chunks=5)
    fake.faults.chunk_delay_s = 3
    d = nexus(
        {
            "backends": [ollama_backend("box", fake.url)],
            "server": {"stream_idle_timeout_seconds": 0.5},
        }
    )
    d.wait_healthy("box")
    r = chat(d.url, stream=True)
    assert r.status_code == 200
    last = json.loads(r.text.strip().splitlines()[-1][6:])
    assert "no data within 0.5 s" in last["error"]["message"]
    d.wait_idle()


def test_loading_backend_is_not_routed_until_ready(fake_host: FakeHost, fakes, nexus) -> None:
    fake = fakes("llamacpp", ["smol"])
    fake.faults.loading = True
    d = nexus({"backends": [{"name": "llama", "url": fake.url, "type": "llamacpp"}]})
    assert d.wait_until(lambda: d.core.registry.get("llama").status.value == "loading")
    r = chat(d.url, model="smol")
    assert r.status_code == 404  # no models known yet: the server has not listed any
    fake.faults.loading = False
    d.wait_healthy("llama")
    assert chat(d.url, model="smol").status_code == 200


def test_health_events_and_recovery(fake_host: FakeHost, fakes, nexus) -> None:
    fake = fakes("ollama", ["llama3:8b"])
    d = nexus(
        {
            "backends": [ollama_backend("box", fake.url)],
            "health_check": {"failure_threshold": 2, "recovery_threshold": 2},
        }
    )
    d.wait_healthy("box")
    events = d.call(lambda: d.core.bus.subscribe())
    fake.faults.health_status = 500
    assert d.wait_until(lambda: d.core.registry.get("box").status.value == "unhealthy")
    assert "HTTP 500" in d.backend("box").last_error
    r = chat(d.url)
    assert r.status_code == 503 and "backend is unhealthy" in r.json()["error"]["message"]
    fake.faults.health_status = None
    d.wait_healthy("box")
    seen = d.call(lambda: [e for e in iter(events.get_nowait, None)])
    statuses = [
        (e.data["old_health"], e.data["health"]) for e in seen if e.type == "backend.status"
    ]
    assert statuses == [("healthy", "unhealthy"), ("unhealthy", "healthy")]


def test_model_list_changes_are_followed(fakes, nexus) -> None:
    fake = fakes("ollama", ["llama3:8b"])
    d = nexus({"backends": [ollama_backend("box", fake.url)]})
    d.wait_healthy("box")
    fake.models[:] = []
    from tests.fakes import FakeModel

    fake.models.append(FakeModel("qwen3:4b", tools=True))
    assert d.wait_until(
        lambda: d.core.registry.has_model("qwen3:4b") and not d.core.registry.has_model("llama3:8b")
    )
    assert chat(d.url, model="llama3:8b").status_code == 404
    assert chat(d.url, model="qwen3:4b").status_code == 200
