"""Cloud backends end to end (issue #13): the official ``openai`` SDK → Nexus → a fake of each
provider speaking its real wire protocol (tests/fakes), over real sockets.

Each answer is parsed by the SDK's own types, so a malformed translation fails here the way
it would fail for a user.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import jsonschema
import openai
import pytest

from nexusd.control.schema import SCHEMAS
from tests.fakes import FakeBackend
from tests.harness import DaemonThread, ollama_backend
from tests.test_cli_usability import nexus_cmd, nexusctl

KEYS = {"openai": "sk-openai-test", "anthropic": "sk-ant-test", "google": "AIza-test"}
MODELS = {
    "openai": "gpt-4o-mini",
    "anthropic": "claude-sonnet-4-20250514",
    "google": "gemini-2.5-flash",
}
#: where each provider expects the key (RecordedRequest.credentials keys)
KEY_HEADER = {"openai": "authorization", "anthropic": "x-api-key", "google": "x-goog-api-key"}
CLIENT_KEY = "sk-client-must-not-leak"
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather in a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]
QUESTION = [{"role": "user", "content": "What is the weather in Paris?"}]
#: a 1×1 PNG
PIXEL = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c63000100000500010d0a2db40000000049454e44ae426082"
    )
).decode()


def cloud_backend(kind: str, fake: FakeBackend, name: str | None = None, **extra: Any) -> dict:
    return {
        "name": name or kind,
        "url": fake.url + ("/v1" if kind != "google" else "/v1beta/"),  # normalised either way
        "type": kind,
        "api_key_env": f"NEXUS_TEST_{kind.upper()}_KEY",
        **extra,
    }


@pytest.fixture
def cloud(fakes, nexus, monkeypatch: pytest.MonkeyPatch):
    """``cloud(kind)`` → (fake, daemon): one fake provider behind a fresh daemon."""

    def start(kind: str, **config: Any) -> tuple[FakeBackend, DaemonThread]:
        monkeypatch.setenv(f"NEXUS_TEST_{kind.upper()}_KEY", KEYS[kind])
        fake = fakes(kind, [MODELS[kind]], api_key=KEYS[kind])
        d = nexus({"backends": [cloud_backend(kind, fake)], **config})
        backend = d.backend(kind)
        d.wait_until(lambda: backend.last_check is not None and backend.routable)
        assert backend.routable, backend.to_json()
        return fake, d

    return start


@pytest.fixture
def pair(fakes, nexus, monkeypatch: pytest.MonkeyPatch):
    """``pair(second)`` → (claude, other, daemon): the Anthropic fake preferred (priority 1)
    and a second provider (priority 50), both serving ``shared-model``. ``claude_key`` is
    what the daemon's environment holds for Anthropic (None: unset)."""

    def start(
        second: str = "openai", claude_key: str | None = KEYS["anthropic"], **config: Any
    ) -> tuple[FakeBackend, FakeBackend, DaemonThread]:
        if claude_key is None:
            monkeypatch.delenv("NEXUS_TEST_ANTHROPIC_KEY", raising=False)
        else:
            monkeypatch.setenv("NEXUS_TEST_ANTHROPIC_KEY", claude_key)
        monkeypatch.setenv(f"NEXUS_TEST_{second.upper()}_KEY", KEYS[second])
        claude = fakes("anthropic", ["shared-model"], api_key=KEYS["anthropic"])
        key = KEYS[second] if second == "openai" else None
        other = fakes(second, ["shared-model"], api_key=key)
        backends = [
            cloud_backend("anthropic", claude, priority=1),
            cloud_backend(second, other, priority=50),
        ]
        return claude, other, nexus({"backends": backends, **config})

    return start


def sdk(d: DaemonThread) -> openai.OpenAI:
    return openai.OpenAI(base_url=d.url + "/v1", api_key=CLIENT_KEY, timeout=30, max_retries=0)


def streamed_tool_calls(chunks: list[Any]) -> dict[int, dict[str, str]]:
    calls: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        for choice in chunk.choices:
            for delta in choice.delta.tool_calls or []:
                call = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
                call["id"] += delta.id or ""
                if delta.function is not None:
                    call["name"] += delta.function.name or ""
                    call["arguments"] += delta.function.arguments or ""
    return calls


def assert_only_our_key(kind: str, fake: FakeBackend) -> None:
    """Every request the provider saw carried the configured key, and never the client's."""
    assert fake.requests
    for req in fake.requests:
        if req.path.startswith("/_fake"):
            continue
        creds = req.credentials
        expected = f"Bearer {KEYS[kind]}" if kind == "openai" else KEYS[kind]
        assert creds.get(KEY_HEADER[kind]) == expected, (req.path, creds)
        assert CLIENT_KEY not in json.dumps(req.headers), req.path
        assert "key" not in req.query  # Google's key never in the URL


# --- the acceptance round trip, per provider ---------------------------------------------------


@pytest.mark.parametrize("kind", ["openai", "anthropic", "google"])
def test_chat_stream_tools_image_and_json_through_each_cloud(cloud, kind: str) -> None:
    fake, d = cloud(kind)
    client = sdk(d)
    model = MODELS[kind]

    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": "Say hello"}], max_tokens=50
    )
    reply = raw.parse()
    assert raw.headers["x-nexus-backend"] == kind
    assert raw.headers["x-nexus-backend-type"] == "cloud"
    assert reply.object == "chat.completion" and reply.choices[0].finish_reason == "stop"
    assert reply.choices[0].message.role == "assistant" and reply.choices[0].message.content
    assert reply.usage is not None and reply.usage.prompt_tokens > 0
    assert reply.usage.completion_tokens > 0
    assert float(raw.headers["x-nexus-cost-estimated"]) > 0

    # streamed, with the usage chunk
    chunks = list(
        client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": "Say hello"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == reply.choices[0].message.content
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop" and finishes.count("stop") == 1
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == reply.usage.completion_tokens

    # a tool call round trip, not streamed
    first = client.chat.completions.create(model=model, messages=QUESTION, tools=TOOLS)
    assert first.choices[0].finish_reason == "tool_calls"
    (call,) = first.choices[0].message.tool_calls or []
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "x"}
    history = [
        *QUESTION,
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21 C"},
    ]
    final = client.chat.completions.create(model=model, messages=history, tools=TOOLS)
    assert final.choices[0].finish_reason == "stop"
    assert "sunny, 21 C" in (final.choices[0].message.content or "")

    # the same round trip, streamed
    chunks = list(
        client.chat.completions.create(model=model, messages=QUESTION, tools=TOOLS, stream=True)
    )
    calls = streamed_tool_calls(chunks)
    assert list(calls) == [0] and calls[0]["name"] == "get_weather" and calls[0]["id"]
    assert json.loads(calls[0]["arguments"]) == {"city": "x"}
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    streamed_call = {
        "id": calls[0]["id"],
        "type": "function",
        "function": {"name": "get_weather", "arguments": calls[0]["arguments"]},
    }
    history = [
        *QUESTION,
        {"role": "assistant", "content": None, "tool_calls": [streamed_call]},
        {"role": "tool", "tool_call_id": calls[0]["id"], "content": "rainy"},
    ]
    chunks = list(
        client.chat.completions.create(model=model, messages=history, tools=TOOLS, stream=True)
    )
    assert "rainy" in "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)

    # image input (a data URL)
    image = client.chat.completions.create(
        model=model,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PIXEL}"}},
                ],
            }
        ],
    )
    assert "[image]" in (image.choices[0].message.content or "")

    # JSON mode
    js = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Give me JSON"}],
        response_format={"type": "json_object"},
    )
    assert isinstance(json.loads(js.choices[0].message.content or ""), dict)

    assert_only_our_key(kind, fake)
    d.wait_idle()
    records = d.call(lambda: d.core.history.recent(20))
    assert all(r.backend == kind and r.status_code == 200 for r in records)
    assert all(r.cost_status == "exact" and (r.cost_usd or 0) > 0 for r in records)


@pytest.mark.parametrize("kind", ["anthropic", "google"])
def test_parallel_tool_calls_keep_their_ids_and_indexes(cloud, kind: str) -> None:
    fake, d = cloud(kind)
    fake.faults.parallel_tools = 2
    tools = [
        *TOOLS,
        {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}},
    ]
    client = sdk(d)
    plain = client.chat.completions.create(model=MODELS[kind], messages=QUESTION, tools=tools)
    names = [c.function.name for c in plain.choices[0].message.tool_calls or []]
    assert names == ["get_weather", "get_time"]
    ids = [c.id for c in plain.choices[0].message.tool_calls or []]
    assert len(set(ids)) == 2 and all(ids)
    chunks = list(
        client.chat.completions.create(
            model=MODELS[kind], messages=QUESTION, tools=tools, stream=True
        )
    )
    calls = streamed_tool_calls(chunks)
    assert [calls[i]["name"] for i in sorted(calls)] == ["get_weather", "get_time"]
    # both results go back in one turn, each to its own call
    history = [
        *QUESTION,
        plain.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": ids[0], "content": "sunny"},
        {"role": "tool", "tool_call_id": ids[1], "content": "noon"},
    ]
    final = client.chat.completions.create(model=MODELS[kind], messages=history, tools=tools)
    content = final.choices[0].message.content or ""
    assert "sunny" in content and "noon" in content


# --- credentials ---------------------------------------------------------------------------------


def test_a_missing_key_disables_the_backend_and_requests_route_elsewhere(pair) -> None:
    claude, _, d = pair("openai", claude_key=None)
    d.wait_healthy("openai")
    r = sdk(d).chat.completions.with_raw_response.create(
        model="shared-model", messages=[{"role": "user", "content": "hi"}]
    )
    assert r.headers["x-nexus-backend"] == "openai"
    backend = d.backend("anthropic").to_json()
    assert backend["status"] == "disabled"
    assert "NEXUS_TEST_ANTHROPIC_KEY" in backend["disabled_reason"]
    assert backend["last_error"] == backend["disabled_reason"]
    assert claude.requests == []  # never probed, never sent a request without a key
    stats = httpx.get(d.url + "/v1/stats").json()
    assert {b["id"]: b["status"] for b in stats["backends"]}["anthropic"] == "disabled"
    # the reason on every surface: nexus backends, nexusctl, the dashboard
    human = nexus_cmd(d, "backends")
    assert (
        "anthropic: disabled — no API key: environment variable NEXUS_TEST_ANTHROPIC_KEY is not set"
        in human.stdout
    ), human.stdout
    listed = json.loads(nexusctl(d, "backends").stdout)
    entry = next(b for b in listed if b["id"] == "anthropic")
    assert entry["status"] == "disabled" and "NEXUS_TEST_ANTHROPIC_KEY" in entry["disabled_reason"]
    page = httpx.get(d.url + "/").text
    assert "NEXUS_TEST_ANTHROPIC_KEY is not set" in page


# --- rate limits ---------------------------------------------------------------------------------


def test_a_429_fails_over_and_with_none_left_the_client_gets_429(pair) -> None:
    claude, gemini, d = pair("google")
    d.wait_healthy("anthropic", "google")
    claude.faults.fail_status, claude.faults.retry_after = 429, 7
    body = {"model": "shared-model", "messages": [{"role": "user", "content": "hi"}]}
    r = httpx.post(d.url + "/v1/chat/completions", json=body, timeout=30)
    assert r.status_code == 200 and r.headers["x-nexus-backend"] == "google"
    assert r.headers["x-nexus-route-reason"] == "failover"
    assert len(claude.chat_requests) == 1

    gemini.faults.fail_status, gemini.faults.retry_after = 429, 7
    for stream in (False, True):
        r = httpx.post(d.url + "/v1/chat/completions", json={**body, "stream": stream}, timeout=30)
        assert r.status_code == 429, r.text
        assert r.headers["retry-after"] == "7"
        error = r.json()["error"]
        assert error["type"] == "rate_limit_error" and error["code"] == "rate_limit_exceeded"
        assert "rate limited" in error["message"]
    # the SDK sees its own RateLimitError
    with pytest.raises(openai.RateLimitError):
        sdk(d).chat.completions.create(**body)
    # a 429 is "busy", not "broken": neither backend lost its health
    assert d.backend("anthropic").status.value == d.backend("google").status.value == "healthy"


def test_a_refused_key_fails_over_then_answers_with_the_providers_status(pair) -> None:
    _, gpt, d = pair("openai", claude_key="sk-ant-wrong", health_check={"enabled": False})
    body = {"model": "shared-model", "messages": [{"role": "user", "content": "hi"}]}
    r = httpx.post(d.url + "/v1/chat/completions", json=body, timeout=30)
    assert r.status_code == 200 and r.headers["x-nexus-backend"] == "openai"
    gpt.faults.fail_status = 401
    r = httpx.post(d.url + "/v1/chat/completions", json=body, timeout=30)
    assert r.status_code == 401
    message = r.json()["error"]["message"]
    assert "refused Nexus's configured key" in message and "api_key_env" in message


# --- cost ----------------------------------------------------------------------------------------


def test_cost_is_exact_from_the_table_and_an_override_changes_it(cloud) -> None:
    _, d = cloud("anthropic")
    client = sdk(d)
    r = client.chat.completions.with_raw_response.create(
        model=MODELS["anthropic"], messages=[{"role": "user", "content": "hello there"}]
    )
    usage = r.parse().usage
    assert usage is not None
    # claude-sonnet-4-*: $3 in / $15 out per 1M tokens (docs/cloud.md)
    expected = (usage.prompt_tokens * 3.0 + usage.completion_tokens * 15.0) / 1_000_000
    assert float(r.headers["x-nexus-cost-estimated"]) == pytest.approx(expected, abs=1e-6)
    d.wait_idle()
    (rec,) = d.call(lambda: d.core.history.recent(1))
    assert rec.cost_status == "exact" and rec.cost_usd == pytest.approx(expected, rel=1e-9)
    stats = httpx.get(d.url + "/v1/stats").json()
    assert stats["cost"]["total_usd"] == pytest.approx(expected, abs=1e-6)
    assert stats["cost"]["priced_requests"] == 1
    shown = httpx.get(d.url + "/v1/history").json()[0]
    assert (shown["cost_status"], shown["cost_usd"]) == ("exact", rec.cost_usd)
    metrics = httpx.get(d.url + "/metrics").text
    assert 'nexus_cost_usd_total{backend="anthropic",model="claude_sonnet_4_20250514"}' in metrics

    # an override in TOML, applied by a reload
    d.call(lambda: d.core.apply_config(_with_price(d, "claude-sonnet-4", 10.0, 20.0)))
    r = client.chat.completions.with_raw_response.create(
        model=MODELS["anthropic"], messages=[{"role": "user", "content": "hello there"}]
    )
    usage = r.parse().usage
    assert usage is not None
    expected = (usage.prompt_tokens * 10.0 + usage.completion_tokens * 20.0) / 1_000_000
    assert float(r.headers["x-nexus-cost-estimated"]) == pytest.approx(expected, abs=1e-6)


def _with_price(d: DaemonThread, model: str, input_: float, output: float) -> Any:
    from dataclasses import replace

    from nexusd.config.schema import ModelPrice

    cfg = d.core.config
    return replace(cfg, pricing={**cfg.pricing, model: ModelPrice(input_, output)})


def test_an_unpriced_cloud_model_costs_unknown_and_a_local_one_is_free(
    fakes, nexus, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEXUS_TEST_GOOGLE_KEY", KEYS["google"])
    gemini = fakes("google", ["gemini-experimental-9"])
    local = fakes("ollama", ["gpt-4o"])  # a local model named like a priced one: still free
    d = nexus({"backends": [cloud_backend("google", gemini), ollama_backend("box", local.url)]})
    d.wait_healthy("google", "box")
    client = sdk(d)
    r = client.chat.completions.with_raw_response.create(
        model="gemini-experimental-9", messages=[{"role": "user", "content": "hi"}]
    )
    assert r.headers["x-nexus-cost-estimated"] == "unknown"
    r = client.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
    )
    assert "x-nexus-cost-estimated" not in r.headers
    d.wait_idle()
    recs = d.call(lambda: d.core.history.recent(2))
    assert [(r.served_model, r.cost_status, r.cost_usd) for r in recs] == [
        ("gemini-experimental-9", "unknown", None),
        ("gpt-4o", "free", 0.0),
    ]
    stats = httpx.get(d.url + "/v1/stats").json()
    assert stats["cost"] == {
        "total_usd": 0.0,
        "priced_requests": 0,
        "estimated_requests": 0,
        "unknown_requests": 1,
    }
    assert "nexus_unpriced_requests_total" in httpx.get(d.url + "/metrics").text


# --- streams: a provider's mid-stream error ------------------------------------------------------


@pytest.mark.parametrize("kind", ["anthropic", "google"])
def test_a_providers_mid_stream_error_reaches_the_sdk_as_an_error(cloud, kind: str) -> None:
    fake, d = cloud(kind)
    fake.faults.stream_error_after = 2
    stream = sdk(d).chat.completions.create(
        model=MODELS[kind], messages=[{"role": "user", "content": "Say hello"}], stream=True
    )
    with pytest.raises(openai.APIError) as caught:
        for _ in stream:
            pass
    assert kind.capitalize() in str(caught.value) or "failed mid-stream" in str(caught.value)
    d.wait_idle()
    (rec,) = d.call(lambda: d.core.history.recent(1))
    assert rec.outcome == "error" and rec.error_type == "stream_interrupted"


# --- probes and pass-through accounting ------------------------------------------------------


def test_a_healthy_cloud_backend_is_probed_at_the_cloud_interval_only(
    fakes, nexus, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEXUS_TEST_ANTHROPIC_KEY", KEYS["anthropic"])
    claude = fakes("anthropic", [MODELS["anthropic"]])
    local = fakes("ollama", ["llama3:8b"])
    d = nexus(
        {
            "backends": [cloud_backend("anthropic", claude), ollama_backend("box", local.url)],
            "health_check": {"interval_seconds": 0.2, "cloud_interval_seconds": 300},
        }
    )
    d.wait_healthy("anthropic", "box")
    cycles = d.call(lambda: d.core.health.cycles)
    assert d.wait_until(lambda: d.core.health.cycles >= cycles + 5)
    listings = [r for r in claude.requests if r.path == "/v1/models"]
    assert len(listings) == 1  # the first probe only; the local one was asked every cycle
    assert listings[0].query.get("limit") == "1000"
    assert not claude.chat_requests  # a probe never runs inference
    assert len([r for r in local.requests if r.path == "/api/tags"]) >= 5


def test_an_openai_stream_is_accounted_even_when_the_client_asks_no_usage(cloud) -> None:
    fake, d = cloud("openai")
    chunks = list(
        sdk(d).chat.completions.create(
            model=MODELS["openai"], messages=[{"role": "user", "content": "Say hello"}], stream=True
        )
    )
    # Nexus asked the provider for usage (billing needs it) but the client, who did not,
    # gets no usage chunk
    assert fake.chat_requests[-1].json["stream_options"] == {"include_usage": True}
    assert all(c.choices for c in chunks) and chunks[-1].choices[0].finish_reason == "stop"
    d.wait_idle()
    (rec,) = d.call(lambda: d.core.history.recent(1))
    assert rec.prompt_tokens and rec.completion_tokens
    expected = (rec.prompt_tokens * 0.15 + rec.completion_tokens * 0.60) / 1_000_000  # gpt-4o-mini
    assert rec.cost_status == "exact" and rec.cost_usd == pytest.approx(expected)
    jsonschema.validate(httpx.get(d.url + "/v1/stats").json(), SCHEMAS["stats"])
    jsonschema.validate(httpx.get(d.url + "/v1/history").json(), SCHEMAS["requests"])


def test_a_cloud_backend_added_from_the_cli(fakes, nexus, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEXUS_TEST_GOOGLE_KEY", KEYS["google"])
    monkeypatch.delenv("NEXUS_TEST_NOT_SET", raising=False)
    gemini = fakes("google", [MODELS["google"]])
    d = nexus()
    out = nexus_cmd(
        d,
        "backends",
        "add",
        gemini.url,
        "-t",
        "google",
        "-n",
        "Gemini",
        "--api-key-env",
        "NEXUS_TEST_GOOGLE_KEY",
    )
    assert out.returncode == 0, out.stderr
    assert "Added backend gemini (google)" in out.stdout and "disabled" not in out.stdout
    d.wait_healthy("gemini")
    r = sdk(d).chat.completions.create(
        model=MODELS["google"], messages=[{"role": "user", "content": "hi"}]
    )
    assert r.choices[0].message.content
    out = nexus_cmd(
        d,
        "backends",
        "add",
        "https://api.anthropic.com",
        "-t",
        "anthropic",
        "--api-key-env",
        "NEXUS_TEST_NOT_SET",
    )
    assert out.returncode == 0, out.stderr
    assert "It is disabled: no API key: environment variable NEXUS_TEST_NOT_SET" in out.stdout
    assert 'api_key_env = "NEXUS_TEST_NOT_SET"' in d.config_path.read_text()


def test_a_request_one_provider_cannot_take_goes_elsewhere_or_gets_a_400(pair) -> None:
    claude, _, d = pair("openai")
    d.wait_healthy("anthropic", "openai")
    body = {"model": "shared-model", "messages": [{"role": "user", "content": "hi"}], "n": 2}
    r = httpx.post(d.url + "/v1/chat/completions", json=body, timeout=30)
    assert r.status_code == 200 and r.headers["x-nexus-backend"] == "openai"
    assert claude.chat_requests == []  # never sent a request it cannot take

    d.call(lambda: d.core.registry.get("openai").__setattr__("enabled", False))
    r = httpx.post(d.url + "/v1/chat/completions", json=body, timeout=30)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "unsupported_by_backend" and error["param"] == "n"
    assert "'anthropic'" in error["message"] and "n" in error["message"]
    assert claude.chat_requests == []
    assert d.backend("anthropic").routable  # the request's shape is not the backend's fault
