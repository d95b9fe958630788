"""Client dialects end to end: the official ``anthropic`` and ``openai`` SDKs speaking
Anthropic Messages (``/v1/messages``) and OpenAI Responses (``/v1/responses``) → Nexus → fake
backends, over real sockets.

Translated paths (an OpenAI-compatible backend behind an Anthropic or Responses client) are
checked with the SDKs' own parsers and stream accumulators; the native path (an Anthropic
backend behind an Anthropic client) by the bytes the backend received and the answer the
client got. Bad input is checked for its status and the dialect's error envelope.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

from nexusd.api.dialects.responses import STATELESS_MESSAGE
from tests.fakes import FakeBackend, FakeHost
from tests.harness import DaemonThread
from tests.test_cli_usability import nexusctl

ANTHROPIC_KEY = "sk-ant-configured"
CLIENT_KEY = "sk-client-must-not-leak"
KEY_ENV = "NEXUS_TEST_DIALECTS_ANTHROPIC_KEY"
CLAUDE = "claude-sonnet-4-20250514"
VERSION = {"anthropic-version": "2023-06-01"}
REPLY = "Hello from the fake"
WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
    "required": ["city"],
}
#: Anthropic's custom tools
A_TOOLS = [
    {"name": "get_weather", "description": "Weather in a city", "input_schema": WEATHER_SCHEMA},
    {"name": "get_time", "input_schema": {"type": "object", "properties": {}}},
]
#: the Responses API's function tools
R_TOOLS = [
    {
        "type": "function",
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": WEATHER_SCHEMA,
    }
]
QUESTION = "What is the weather in Paris?"
WEB_SEARCH = {"type": "web_search_20250305", "name": "web_search", "max_uses": 2}


# --- helpers -----------------------------------------------------------------------------------


def local(kind: str, fake: FakeBackend, name: str | None = None, **extra: Any) -> dict:
    """An OpenAI-compatible local backend; the `openai` fake kind as a generic server (its
    tool-calling answers, without the cloud codec that serves Responses natively)."""
    kind_type = "generic" if kind == "openai" else kind
    return {"name": name or kind, "url": fake.url, "type": kind_type, **extra}


def claude_backend(fake: FakeBackend, name: str = "claude", **extra: Any) -> dict:
    return {
        "name": name,
        "url": fake.url + "/v1",
        "type": "anthropic",
        "api_key_env": KEY_ENV,
        **extra,
    }


def claude_client(d: DaemonThread) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=d.url, api_key=CLIENT_KEY, timeout=30, max_retries=0)


def openai_client(d: DaemonThread) -> openai.OpenAI:
    return openai.OpenAI(base_url=d.url + "/v1", api_key=CLIENT_KEY, timeout=30, max_retries=0)


def records(d: DaemonThread, n: int) -> list[Any]:
    """The last ``n`` request records, oldest first, once every request has finished."""
    d.wait_idle()
    return d.call(lambda: d.core.history.recent(n))


def sse(raw: bytes) -> list[tuple[str | None, Any]]:
    """Server-sent events as (event name, parsed data) pairs, in order."""
    out: list[tuple[str | None, Any]] = []
    for block in raw.decode().replace("\r\n", "\n").split("\n\n"):
        if not block.strip():
            continue
        name, data = None, []
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].removeprefix(" "))
        text = "\n".join(data)
        out.append((name, json.loads(text) if text.startswith(("{", "[")) else text))
    return out


def post_stream(url: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> bytes:
    """The whole raw body of a streamed answer (status 200 asserted); the request body is
    ``json.dumps(body)``, byte for byte."""
    headers = {"content-type": "application/json", **(headers or {})}
    with httpx.stream("POST", url, content=json.dumps(body), headers=headers, timeout=30) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        return r.read()


def without_ids(value: Any) -> Any:
    """An Anthropic message or event with what is random per answer blanked: the ids of the
    message and its tool_use blocks, thinking signatures (when not empty)."""
    if isinstance(value, dict):
        return {
            k: "<random>" if k in ("id", "signature") and v else without_ids(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [without_ids(v) for v in value]
    return value


@pytest.fixture
def one(fakes, nexus):
    """``one(kind, models)`` → (fake, daemon): one OpenAI-compatible fake behind a daemon."""

    def start(kind: str = "vllm", models: list[str] | None = None, **config: Any):
        fake = fakes(kind, models or ["qwen2.5-7b"])
        d = nexus({"backends": [local(kind, fake)], **config})
        d.wait_healthy(kind)
        return fake, d

    return start


@pytest.fixture
def claude(fakes, nexus, monkeypatch: pytest.MonkeyPatch):
    """``claude(**config)`` → (fake, daemon): the Anthropic fake as an `anthropic` backend."""
    monkeypatch.setenv(KEY_ENV, ANTHROPIC_KEY)

    def start(**config: Any) -> tuple[FakeBackend, DaemonThread]:
        fake = fakes("anthropic", [CLAUDE], api_key=ANTHROPIC_KEY)
        d = nexus({"backends": [claude_backend(fake)], **config})
        d.wait_healthy("claude")
        return fake, d

    return start


# --- 1. Anthropic SDK → an OpenAI-compatible backend (translated) -------------------------------


def test_anthropic_sdk_through_an_openai_compatible_backend(one) -> None:
    fake, d = one("vllm", ["qwen2.5-7b"])
    client = claude_client(d)

    message = client.messages.create(
        model="qwen2.5-7b",
        max_tokens=100,
        system="Be brief.",
        messages=[{"role": "user", "content": "Say hello"}],
    )
    assert message.type == "message" and message.role == "assistant"
    assert message.id.startswith("msg_") and message.model == "qwen2.5-7b"
    assert [b.type for b in message.content] == ["text"]
    assert message.content[0].text == REPLY  # type: ignore[union-attr]
    assert message.stop_reason == "end_turn" and message.stop_sequence is None
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    sent = fake.chat_requests[-1]
    assert sent.path == "/v1/chat/completions"
    assert sent.json["max_tokens"] == 100
    assert sent.json["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Say hello"},
    ]
    assert CLIENT_KEY not in json.dumps(sent.headers)

    with client.messages.stream(
        model="qwen2.5-7b", max_tokens=100, messages=[{"role": "user", "content": "Say hello"}]
    ) as stream:
        streamed_text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert streamed_text == REPLY
    assert final.content[0].text == REPLY  # type: ignore[union-attr]
    assert final.stop_reason == "end_turn"
    assert final.usage.input_tokens > 0 and final.usage.output_tokens > 0
    assert final.usage.output_tokens == message.usage.output_tokens
    # Anthropic clients always get usage: Nexus asked the backend for the usage chunk
    assert fake.chat_requests[-1].json["stream"] is True
    assert fake.chat_requests[-1].json["stream_options"] == {"include_usage": True}

    count = client.messages.count_tokens(
        model="qwen2.5-7b", messages=[{"role": "user", "content": "How many tokens is this?"}]
    )
    assert isinstance(count.input_tokens, int) and count.input_tokens > 0
    assert len(fake.chat_requests) == 2  # counted offline, never by a backend

    assert [m.id for m in client.models.list()] == ["qwen2.5-7b"]

    # the raw events, in Anthropic's order: one text block between start and stop
    body = {"model": "qwen2.5-7b", "max_tokens": 100, "stream": True}
    body["messages"] = [{"role": "user", "content": "Say hello"}]
    events = sse(post_stream(d.url + "/v1/messages", body, VERSION))
    names = [name for name, _ in events]
    deltas = len(REPLY.split())
    assert names == [
        "message_start",
        "ping",
        "content_block_start",
        *["content_block_delta"] * deltas,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert all(name == data["type"] for name, data in events)
    assert events[-2][1]["usage"]["output_tokens"] == final.usage.output_tokens

    recs = records(d, 3)
    assert [r.stream for r in recs] == [False, True, True]
    for rec in recs:
        assert rec.dialect == "anthropic" and rec.translated is True
        assert rec.status_code == 200 and rec.outcome == "ok" and rec.backend == "vllm"
        assert rec.prompt_tokens and rec.completion_tokens


def test_a_system_role_turn_is_accepted_and_stays_a_system_message(one) -> None:
    """Anthropic's API refuses a "system" role in ``messages``; Nexus's dialect keeps it (see
    anthropic_messages: ``system``-role messages stay system messages where they are)."""
    fake, d = one()
    body = {
        "model": "qwen2.5-7b",
        "max_tokens": 20,
        "messages": [
            {"role": "system", "content": "Rules"},
            {"role": "user", "content": "hi"},
        ],
    }
    r = httpx.post(d.url + "/v1/messages", json=body, headers=VERSION, timeout=30)
    assert r.status_code == 200, r.text
    assert fake.chat_requests[-1].json["messages"][0] == {"role": "system", "content": "Rules"}


# --- 2. tool_use round trips, translated --------------------------------------------------------


def _tool_history(first: Any, results: list[tuple[str, str]]) -> list[dict[str, Any]]:
    return [
        {"role": "user", "content": QUESTION},
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": tool_id, "content": text}
                for tool_id, text in results
            ],
        },
    ]


@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "streamed"])
def test_anthropic_tool_use_round_trip_through_an_openai_compatible_backend(
    one, streamed: bool
) -> None:
    fake, d = one("openai", ["gpt-local"])
    client = claude_client(d)

    def ask(**kwargs: Any) -> Any:
        if not streamed:
            return client.messages.create(model="gpt-local", max_tokens=200, **kwargs)
        with client.messages.stream(model="gpt-local", max_tokens=200, **kwargs) as stream:
            return stream.get_final_message()

    first = ask(tools=A_TOOLS[:1], messages=[{"role": "user", "content": QUESTION}])
    assert first.stop_reason == "tool_use"
    (use,) = [b for b in first.content if b.type == "tool_use"]
    assert use.id and use.name == "get_weather"
    assert use.input == {"city": "x"}  # the schema's required properties, filled by the fake
    offered = fake.chat_requests[-1].json["tools"]
    assert offered == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather in a city",
                "parameters": WEATHER_SCHEMA,
            },
        }
    ]

    final = ask(tools=A_TOOLS[:1], messages=_tool_history(first, [(use.id, "sunny, 21 C")]))
    assert final.stop_reason == "end_turn"
    text = "".join(b.text for b in final.content if b.type == "text")
    assert "Tool said: sunny, 21 C" in text
    # the backend got the call and its result with the same id, in OpenAI's shape
    sent = fake.chat_requests[-1].json["messages"]
    assert sent[1]["tool_calls"][0]["id"] == use.id
    assert json.loads(sent[1]["tool_calls"][0]["function"]["arguments"]) == {"city": "x"}
    assert sent[2] == {"role": "tool", "tool_call_id": use.id, "content": "sunny, 21 C"}

    recs = records(d, 2)
    assert all(r.dialect == "anthropic" and r.translated and r.stream is streamed for r in recs)


@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "streamed"])
def test_anthropic_parallel_tool_use_gives_two_blocks(one, streamed: bool) -> None:
    fake, d = one("openai", ["gpt-local"])
    fake.faults.parallel_tools = 2
    client = claude_client(d)
    kwargs: dict[str, Any] = {
        "model": "gpt-local",
        "max_tokens": 200,
        "tools": A_TOOLS,
        "messages": [{"role": "user", "content": QUESTION}],
    }
    if streamed:
        with client.messages.stream(**kwargs) as stream:
            first = stream.get_final_message()
    else:
        first = client.messages.create(**kwargs)
    assert first.stop_reason == "tool_use"
    uses = [b for b in first.content if b.type == "tool_use"]
    assert [u.name for u in uses] == ["get_weather", "get_time"]
    assert [u.input for u in uses] == [{"city": "x"}, {}]
    assert len({u.id for u in uses}) == 2 and all(u.id for u in uses)

    kwargs["messages"] = _tool_history(first, [(uses[0].id, "sunny"), (uses[1].id, "noon")])
    final = client.messages.create(**kwargs)
    text = "".join(b.text for b in final.content if b.type == "text")
    assert "sunny" in text and "noon" in text and final.stop_reason == "end_turn"


# --- 3. native pass-through to an Anthropic backend --------------------------------------------


def test_native_anthropic_bytes_pass_through_unchanged(claude) -> None:
    fake, d = claude()
    # odd spacing and key order on purpose: only an unchanged relay keeps them
    raw = (
        b'{ "messages" : [ {"role": "user", "content": "Say hello"} ],\n'
        b'  "max_tokens": 64, "model": "' + CLAUDE.encode() + b'", "metadata": {"user_id": "u1"} }'
    )
    headers = {**VERSION, "content-type": "application/json", "x-api-key": CLIENT_KEY}
    r = httpx.post(d.url + "/v1/messages", content=raw, headers=headers, timeout=30)
    assert r.status_code == 200, r.text
    assert r.headers["x-nexus-backend"] == "claude"
    (sent,) = fake.chat_requests
    assert sent.method == "POST" and sent.path == "/v1/messages"
    assert sent.body == raw
    # Nexus's configured key went out, never the client's
    assert sent.headers["x-api-key"] == ANTHROPIC_KEY
    assert CLIENT_KEY not in json.dumps(sent.headers)

    # the answer is the provider's Message as it sent it: the same as a direct call's
    direct = httpx.post(
        fake.url + "/v1/messages",
        content=raw,
        headers={**headers, "x-api-key": ANTHROPIC_KEY},
        timeout=30,
    )
    assert direct.status_code == 200
    answer = r.json()
    assert answer["id"].startswith("msg_01")  # the fake's id, not a translated one
    assert without_ids(answer) == without_ids(direct.json())
    assert answer["usage"]["service_tier"] == "standard"  # a field the translation has not

    (rec,) = records(d, 1)
    assert rec.dialect == "anthropic" and rec.translated is False and rec.stream is False
    assert rec.backend == "claude" and rec.status_code == 200
    assert rec.prompt_tokens == answer["usage"]["input_tokens"]
    assert rec.completion_tokens == answer["usage"]["output_tokens"]


def test_native_anthropic_body_only_changes_its_model_for_an_alias(claude) -> None:
    fake, d = claude(routing={"aliases": {"smart": CLAUDE}})
    body = {
        "model": "smart",
        "max_tokens": 64,
        "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": "Say hello"}],
        "thinking": {"type": "enabled", "budget_tokens": 2048},
        "top_k": 5,
    }
    r = httpx.post(d.url + "/v1/messages", json=body, headers=VERSION, timeout=30)
    assert r.status_code == 200, r.text
    (sent,) = fake.chat_requests
    assert sent.path == "/v1/messages"
    assert sent.json == {**body, "model": CLAUDE}
    # what the translation would drop reaches a native backend: its thinking, signed
    answer = r.json()
    assert [b["type"] for b in answer["content"]] == ["thinking", "text"]
    assert answer["content"][0]["signature"]
    assert answer["model"] == CLAUDE
    (rec,) = records(d, 1)
    assert rec.requested_model == "smart" and rec.served_model == CLAUDE
    assert rec.translated is False


def test_a_native_anthropic_stream_reaches_the_sdk_intact(claude) -> None:
    fake, d = claude()
    body = {
        "model": CLAUDE,
        "max_tokens": 64,
        "stream": True,
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "messages": [{"role": "user", "content": "Say hello"}],
    }
    through = sse(post_stream(d.url + "/v1/messages", body, VERSION))
    direct = sse(
        post_stream(fake.url + "/v1/messages", body, {**VERSION, "x-api-key": ANTHROPIC_KEY})
    )
    assert [name for name, _ in through] == [name for name, _ in direct]
    assert without_ids([data for _, data in through]) == without_ids([data for _, data in direct])
    # the thinking signature (Anthropic's own, random per answer) is passed, not dropped
    names = [name for name, _ in through]
    assert names[0] == "message_start" and names[-1] == "message_stop"
    assert any(
        data.get("delta", {}).get("type") == "signature_delta"
        for _, data in through
        if isinstance(data, dict)
    )
    assert fake.chat_requests[0].body == json.dumps(body).encode()

    with claude_client(d).messages.stream(
        model=CLAUDE,
        max_tokens=64,
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=[{"role": "user", "content": "Say hello"}],
    ) as stream:
        final = stream.get_final_message()
    assert [b.type for b in final.content] == ["thinking", "text"]
    assert final.content[0].signature  # type: ignore[union-attr]
    assert final.content[1].text == REPLY  # type: ignore[union-attr]
    assert final.id.startswith("msg_01") and final.stop_reason == "end_turn"
    assert final.usage.output_tokens > 0
    recs = records(d, 2)
    assert all(r.translated is False and r.stream and r.outcome == "ok" for r in recs)
    assert all(r.completion_tokens for r in recs)


def test_a_native_anthropic_tool_use_round_trip(claude) -> None:
    fake, d = claude()
    client = claude_client(d)
    first = client.messages.create(
        model=CLAUDE,
        max_tokens=100,
        tools=A_TOOLS[:1],
        messages=[{"role": "user", "content": QUESTION}],
    )
    (use,) = [b for b in first.content if b.type == "tool_use"]
    assert use.id.startswith("toolu_01") and use.input == {"city": "x"}
    final = client.messages.create(
        model=CLAUDE,
        max_tokens=100,
        tools=A_TOOLS[:1],
        messages=_tool_history(first, [(use.id, "rainy")]),
    )
    assert "Tool said: rainy" in final.content[0].text  # type: ignore[union-attr]
    assert all(r.path == "/v1/messages" for r in fake.chat_requests)


def test_a_native_stream_cut_by_the_backend_ends_with_an_anthropic_error_event(claude) -> None:
    fake, d = claude()
    fake.faults.drop_after_chunks = 2
    body = {
        "model": CLAUDE,
        "max_tokens": 64,
        "stream": True,
        "messages": [{"role": "user", "content": "Say hello"}],
    }
    events = sse(post_stream(d.url + "/v1/messages", body, VERSION))
    names = [name for name, _ in events]
    assert names[0] == "message_start" and "content_block_delta" in names
    assert names[-1] == "error" and "message_stop" not in names
    assert events[-1][1]["error"]["type"] == "api_error"
    assert "failed mid-stream" in events[-1][1]["error"]["message"]
    (rec,) = records(d, 1)
    assert rec.outcome == "error" and rec.error_type == "stream_interrupted"
    assert rec.translated is False


def test_a_providers_error_event_in_a_native_stream_is_recorded_as_an_error(claude) -> None:
    """Translated, a provider's in-stream ``error`` event ends the stream as
    ``stream_interrupted`` (tests/test_cloud.py); relayed natively it must count as a failure
    too, not as a success the client never got."""
    fake, d = claude()
    fake.faults.stream_error_after = 2
    client = claude_client(d)
    ask = {"model": CLAUDE, "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}
    with (
        pytest.raises(anthropic.APIStatusError, match="Overloaded"),
        client.messages.stream(**ask) as stream,
    ):
        for _ in stream:
            pass
    (rec,) = records(d, 1)
    assert rec.translated is False and rec.stream is True
    assert (rec.outcome, rec.status) == ("error", "error"), rec
    assert rec.error_type == "stream_interrupted"


def test_native_pass_through_keeps_the_clients_anthropic_beta_header(claude) -> None:
    """The MCP connector (``mcp_servers``) is sent to a native Anthropic backend as is
    (AnthropicOnly), but Anthropic's API takes it only with its beta header
    (``anthropic-beta: mcp-client-2025-04-04``): without the header the request cannot work."""
    fake, d = claude()
    body = {
        "model": CLAUDE,
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "What tools do you have?"}],
        "mcp_servers": [{"type": "url", "url": "https://mcp.example/sse", "name": "example"}],
    }
    beta = "mcp-client-2025-04-04"
    r = httpx.post(
        d.url + "/v1/messages",
        json=body,
        headers={**VERSION, "anthropic-beta": beta},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    (sent,) = fake.chat_requests
    assert sent.json == body
    assert sent.headers.get("anthropic-beta") == beta, sent.headers


# --- 4. requests only an Anthropic backend can serve ------------------------------------------


def test_a_server_tool_goes_to_the_anthropic_backend_even_when_another_is_preferred(
    fakes, nexus, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, ANTHROPIC_KEY)
    vllm = fakes("vllm", ["shared"])
    claude_fake = fakes("anthropic", ["shared"], api_key=ANTHROPIC_KEY)
    d = nexus(
        {
            "backends": [
                local("vllm", vllm, priority=1),
                {**claude_backend(claude_fake), "priority": 50},
            ]
        }
    )
    d.wait_healthy("vllm", "claude")
    plain = {"model": "shared", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}
    r = httpx.post(d.url + "/v1/messages", json=plain, headers=VERSION, timeout=30)
    assert r.status_code == 200 and r.headers["x-nexus-backend"] == "vllm"

    searching = {**plain, "tools": [WEB_SEARCH]}
    r = httpx.post(d.url + "/v1/messages", json=searching, headers=VERSION, timeout=30)
    assert r.status_code == 200, r.text
    assert r.headers["x-nexus-backend"] == "claude"
    assert r.json()["type"] == "message"
    (sent,) = claude_fake.chat_requests
    assert sent.json == searching  # as sent, server tool and all
    assert len(vllm.chat_requests) == 1  # only the plain request
    rec = records(d, 1)[0]
    assert rec.backend == "claude" and rec.translated is False and rec.status_code == 200

    # the same, streamed, through the SDK
    with claude_client(d).messages.stream(
        model="shared",
        max_tokens=50,
        tools=[WEB_SEARCH],  # type: ignore[list-item]
        messages=[{"role": "user", "content": "hi"}],
    ) as stream:
        final = stream.get_final_message()
    assert final.content[-1].text == REPLY  # type: ignore[union-attr]
    assert len(claude_fake.chat_requests) == 2 and len(vllm.chat_requests) == 1


def test_count_tokens_takes_a_request_that_messages_sends_natively(claude) -> None:
    """``/v1/messages`` serves a server-tool request through the Anthropic backend; counting the
    same request's tokens (offline: Nexus never asks a backend) must not refuse it as
    something "only a native Anthropic backend can serve" while one is configured."""
    _, d = claude()
    body = {"model": CLAUDE, "messages": [{"role": "user", "content": QUESTION}]}
    body["tools"] = [WEB_SEARCH]
    r = httpx.post(d.url + "/v1/messages", json={**body, "max_tokens": 50}, headers=VERSION)
    assert r.status_code == 200, r.text
    r = httpx.post(d.url + "/v1/messages/count_tokens", json=body, headers=VERSION, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["input_tokens"] > 0


@pytest.mark.parametrize(
    "extra",
    [
        {"tools": [WEB_SEARCH]},
        {"mcp_servers": [{"type": "url", "url": "https://mcp.example", "name": "x"}]},
        {"max_tokens": 0},
    ],
    ids=["server_tool", "mcp_servers", "max_tokens_0"],
)
def test_an_anthropic_only_request_without_an_anthropic_backend_is_a_400(
    one, extra: dict[str, Any]
) -> None:
    fake, d = one("vllm", ["shared"])
    body = {
        "model": "shared",
        "max_tokens": 50,
        "messages": [{"role": "user", "content": "hi"}],
        **extra,
    }
    for stream in (False, True):
        r = httpx.post(
            d.url + "/v1/messages", json={**body, "stream": stream}, headers=VERSION, timeout=30
        )
        assert r.status_code == 400, r.text
        assert r.headers["content-type"].startswith("application/json")
        payload = r.json()
        assert set(payload) == {"type", "error"} and payload["type"] == "error"
        assert payload["error"]["type"] == "invalid_request_error"
        assert "only a native Anthropic backend can serve it" in payload["error"]["message"]
    assert fake.chat_requests == []  # the backend never received it
    with pytest.raises(anthropic.BadRequestError, match="only a native Anthropic backend"):
        claude_client(d).messages.create(
            model="shared",
            max_tokens=50,
            messages=[{"role": "user", "content": "hi"}],
            extra_body=extra,
        )
    assert fake.chat_requests == []
    assert d.backend("vllm").routable  # the request's shape is not the backend's fault
    recs = records(d, 3)
    assert all(r.dialect == "anthropic" and r.status_code == 400 for r in recs)


# --- more translated paths: other providers, forwarded keys, backend errors ---------------------


def test_each_dialect_through_the_other_cloud_dialects(
    fakes, nexus, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Responses → Anthropic and Anthropic/Responses → Google: translated twice (into the
    canonical form, then into the provider's), tools included, streamed and not."""
    monkeypatch.setenv(KEY_ENV, ANTHROPIC_KEY)
    monkeypatch.setenv("NEXUS_TEST_DIALECTS_GOOGLE_KEY", "AIza-test")
    claude_fake = fakes("anthropic", [CLAUDE], api_key=ANTHROPIC_KEY)
    gemini = fakes("google", ["gemini-2.5-flash"])
    google = {
        "name": "gemini",
        "url": gemini.url + "/v1beta/",
        "type": "google",
        "api_key_env": "NEXUS_TEST_DIALECTS_GOOGLE_KEY",
    }
    d = nexus({"backends": [claude_backend(claude_fake), google]})
    d.wait_healthy("claude", "gemini")
    responses_api, messages_api = openai_client(d), claude_client(d)

    for model in (CLAUDE, "gemini-2.5-flash"):
        response = responses_api.responses.create(model=model, input="Say hello")
        assert response.output_text == REPLY and response.usage and response.usage.output_tokens
        events = list(responses_api.responses.create(model=model, input="Say hello", stream=True))
        assert events[-1].type == "response.completed"
        assert events[-1].response.output_text == REPLY  # type: ignore[union-attr]
        first = responses_api.responses.create(model=model, input=QUESTION, tools=R_TOOLS)
        (call,) = [o for o in first.output if o.type == "function_call"]
        assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "x"}
        history = [
            {"role": "user", "content": QUESTION},
            *[o.model_dump(exclude_none=True) for o in first.output],
            {"type": "function_call_output", "call_id": call.call_id, "output": "foggy"},
        ]
        final = responses_api.responses.create(model=model, input=history, tools=R_TOOLS)
        assert "foggy" in final.output_text

    with messages_api.messages.stream(
        model="gemini-2.5-flash",
        max_tokens=100,
        tools=A_TOOLS[:1],
        messages=[{"role": "user", "content": QUESTION}],
    ) as stream:
        first_message = stream.get_final_message()
    (use,) = [b for b in first_message.content if b.type == "tool_use"]
    assert use.input == {"city": "x"} and first_message.stop_reason == "tool_use"
    final_message = messages_api.messages.create(
        model="gemini-2.5-flash",
        max_tokens=100,
        tools=A_TOOLS[:1],
        messages=_tool_history(first_message, [(use.id, "windy")]),
    )
    assert "windy" in final_message.content[0].text  # type: ignore[union-attr]

    recs = records(d, 10)
    assert all(r.translated and r.outcome == "ok" for r in recs)
    assert [r.dialect for r in recs].count("responses") == 8
    assert {r.backend for r in recs} == {"claude", "gemini"}
    assert all(r.cost_status == "exact" for r in recs)


def test_an_anthropic_clients_x_api_key_is_forwarded_where_allowed(fakes, nexus) -> None:
    """A local backend with ``forward_client_auth`` gets the Anthropic client's key as the
    ``Authorization`` it understands."""
    fake = fakes("vllm", ["qwen2.5-7b"])
    d = nexus({"backends": [local("vllm", fake, forward_client_auth=True)]})
    d.wait_healthy("vllm")
    r = httpx.post(
        d.url + "/v1/messages",
        json={**GOOD_MESSAGES, "model": "qwen2.5-7b"},
        headers={**VERSION, "x-api-key": "sk-local-box"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    assert fake.chat_requests[-1].headers["authorization"] == "Bearer sk-local-box"
    anthropic.Anthropic(base_url=d.url, api_key="sk-sdk-key", max_retries=0).messages.create(
        model="qwen2.5-7b", max_tokens=20, messages=[{"role": "user", "content": "hi"}]
    )
    assert fake.chat_requests[-1].headers["authorization"] == "Bearer sk-sdk-key"


def test_backend_errors_reach_each_dialect_in_its_envelope(one) -> None:
    fake, d = one("vllm", ["qwen2.5-7b"])
    client_m, client_r = claude_client(d), openai_client(d)
    ask_m = {"model": "qwen2.5-7b", "max_tokens": 20}
    ask_m["messages"] = [{"role": "user", "content": "hi"}]
    fake.faults.fail_status, fake.faults.retry_after = 429, 7
    with pytest.raises(anthropic.RateLimitError) as limited:
        client_m.messages.create(**ask_m)
    assert limited.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    assert limited.value.response.headers["retry-after"] == "7"
    with pytest.raises(openai.RateLimitError):
        client_r.responses.create(model="qwen2.5-7b", input="hi")

    fake.faults.fail_status = 400  # the backend refuses the request: passed through
    for stream in (False, True):
        r = httpx.post(
            d.url + "/v1/messages", json={**ask_m, "stream": stream}, headers=VERSION, timeout=30
        )
        assert r.status_code == 400
        assert r.json() == {
            "type": "error",
            "error": {"type": "invalid_request_error", "message": "injected failure 400"},
        }
    r = httpx.post(d.url + "/v1/responses", json={"model": "qwen2.5-7b", "input": "hi"})
    assert r.status_code == 400 and r.json()["error"]["message"] == "injected failure 400"

    fake.faults.fail_status = 503
    with pytest.raises(anthropic.APIStatusError) as failed:
        client_m.messages.create(**ask_m)
    assert failed.value.status_code == 502
    assert failed.value.body["error"]["type"] == "api_error"  # type: ignore[index]
    fake.faults.fail_status = None

    with pytest.raises(anthropic.NotFoundError, match="not found"):
        client_m.messages.create(**{**ask_m, "model": "no-such-model"})
    with pytest.raises(openai.NotFoundError, match="not found"):
        client_r.responses.create(model="no-such-model", input="hi")


# --- 5. Responses → a chat-only backend (translated) -------------------------------------------


def test_responses_sdk_through_a_chat_only_backend(one) -> None:
    fake, d = one("ollama", ["llama3:8b"])
    client = openai_client(d)

    response = client.responses.create(
        model="llama3:8b", instructions="Be brief.", input="Say hello", max_output_tokens=80
    )
    assert response.object == "response" and response.id.startswith("resp_")
    assert response.status == "completed" and response.model == "llama3:8b"
    assert response.output_text == REPLY
    assert response.usage is not None
    assert response.usage.input_tokens > 0 and response.usage.output_tokens > 0
    assert response.usage.total_tokens == response.usage.input_tokens + (
        response.usage.output_tokens
    )
    sent = fake.chat_requests[-1]
    assert sent.path == "/v1/chat/completions"
    assert sent.json["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Say hello"},
    ]
    assert sent.json["max_tokens"] == 80

    events = list(client.responses.create(model="llama3:8b", input="Say hello", stream=True))
    types = [e.type for e in events]
    assert types[:2] == ["response.created", "response.in_progress"]
    assert types[-1] == "response.completed" and types.count("response.completed") == 1
    assert "response.output_item.added" in types and "response.output_text.done" in types
    assert types.index("response.output_text.delta") < types.index("response.output_text.done")
    numbers = [e.sequence_number for e in events]
    assert numbers == list(range(numbers[0], numbers[0] + len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == REPLY
    done = events[-1].response  # type: ignore[union-attr]
    assert done.output_text == REPLY and done.usage is not None and done.usage.output_tokens > 0
    assert fake.chat_requests[-1].json["stream_options"] == {"include_usage": True}

    with client.responses.stream(model="llama3:8b", input="Say hello") as stream:
        for _ in stream:
            pass
        final = stream.get_final_response()
    assert final.output_text == REPLY and final.status == "completed"

    recs = records(d, 3)
    assert [r.stream for r in recs] == [False, True, True]
    assert all(r.dialect == "responses" and r.translated and r.outcome == "ok" for r in recs)
    assert all(r.prompt_tokens and r.completion_tokens for r in recs)


def test_responses_text_format_reaches_the_backend_as_response_format(one) -> None:
    fake, d = one("vllm", ["qwen2.5-7b"])
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    }
    response = openai_client(d).responses.create(
        model="qwen2.5-7b",
        input="Where?",
        text={"format": {"type": "json_schema", "name": "place", "schema": schema, "strict": True}},
    )
    assert response.text.format.type == "json_schema"  # type: ignore[union-attr]
    assert fake.chat_requests[-1].json["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "place", "schema": schema, "strict": True},
    }
    openai_client(d).responses.create(
        model="qwen2.5-7b", input="Where?", text={"format": {"type": "json_object"}}
    )
    assert fake.chat_requests[-1].json["response_format"] == {"type": "json_object"}


@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "streamed"])
def test_responses_function_call_round_trip(one, streamed: bool) -> None:
    fake, d = one("openai", ["gpt-local"])
    client = openai_client(d)

    def ask(input_: Any) -> Any:
        if not streamed:
            return client.responses.create(model="gpt-local", input=input_, tools=R_TOOLS)
        with client.responses.stream(model="gpt-local", input=input_, tools=R_TOOLS) as stream:
            for _ in stream:
                pass
            return stream.get_final_response()

    question = [{"role": "user", "content": QUESTION}]
    first = ask(question)
    calls = [item for item in first.output if item.type == "function_call"]
    assert len(calls) == 1
    call = calls[0]
    assert call.name == "get_weather" and call.call_id
    assert json.loads(call.arguments) == {"city": "x"}
    assert first.status == "completed" and first.output_text == ""
    assert fake.chat_requests[-1].json["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather in a city",
                "parameters": WEATHER_SCHEMA,
            },
        }
    ]

    history = [
        *question,
        *[item.model_dump(exclude_none=True) for item in first.output],
        {"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 21 C"},
    ]
    final = ask(history)
    assert "Tool said: sunny, 21 C" in final.output_text
    sent = fake.chat_requests[-1].json["messages"]
    assert sent[1]["tool_calls"][0]["id"] == call.call_id
    assert sent[2] == {"role": "tool", "tool_call_id": call.call_id, "content": "sunny, 21 C"}


def test_responses_state_is_refused_with_the_stateless_message(one) -> None:
    fake, d = one()
    client = openai_client(d)
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(
            model="qwen2.5-7b", input="And then?", previous_response_id="resp_abc"
        )
    assert caught.value.status_code == 400
    assert "send the whole conversation in `input`" in caught.value.message.lower()
    assert caught.value.body["param"] == "previous_response_id"  # type: ignore[index]

    for method in ("GET", "DELETE"):
        r = httpx.request(method, d.url + "/v1/responses/resp_x", timeout=30)
        assert r.status_code == 400, (method, r.text)
        error = r.json()["error"]
        assert error["message"] == STATELESS_MESSAGE
        assert error["type"] == "invalid_request_error"
    r = httpx.post(d.url + "/v1/responses/resp_x/cancel", timeout=30)
    assert r.status_code == 400 and r.json()["error"]["message"] == STATELESS_MESSAGE
    with pytest.raises(openai.BadRequestError, match="Send the whole conversation"):
        client.responses.retrieve("resp_x")
    with pytest.raises(openai.BadRequestError, match="Send the whole conversation"):
        client.responses.delete("resp_x")
    assert fake.chat_requests == []
    (rec,) = records(d, 1)
    assert rec.dialect == "responses" and rec.status_code == 400


# --- 6. native Responses pass-through -----------------------------------------------------------
# Not covered: no fake serves POST /v1/responses (the `openai` kind has chat, completions and
# embeddings only), so a backend whose codec serves Responses natively cannot be faked here.


# --- 7. bad input --------------------------------------------------------------------------------

#: small, so an oversize body is cheap to send; good requests fit easily
MAX_BODY = 32 * 1024
BIG = "x" * (MAX_BODY + 1024)
GOOD_MESSAGES = {"model": "qwen", "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]}
GOOD_RESPONSES = {"model": "qwen", "input": "hi"}


@pytest.fixture(scope="module")
def strict(fake_host: FakeHost) -> Iterator[tuple[FakeBackend, DaemonThread]]:
    """One daemon with a small ``server.max_body_bytes`` for every bad-input case."""
    fake = fake_host.start(FakeBackend("vllm", ["qwen"]))
    d = DaemonThread(
        {"backends": [local("vllm", fake)], "server": {"max_body_bytes": MAX_BODY}}
    ).start()
    try:
        d.wait_healthy("vllm")
        yield fake, d
    finally:
        d.stop()
        fake_host.stop(fake)


def _body(case: Any) -> bytes:
    return case if isinstance(case, bytes) else json.dumps(case).encode()


def _send_bad(d: DaemonThread, path: str, case: Any, chunked: bool) -> httpx.Response:
    body = _body(case)
    headers = {**VERSION, "content-type": "application/json"}
    if chunked:  # no Content-Length: the limit must hold while the body is read

        def pieces() -> Iterator[bytes]:
            for i in range(0, len(body), 4096):
                yield body[i : i + 4096]

        return httpx.post(d.url + path, content=pieces(), headers=headers, timeout=30)
    return httpx.post(d.url + path, content=body, headers=headers, timeout=30)


def _still_serves(fake: FakeBackend, d: DaemonThread, path: str, good: dict[str, Any]) -> None:
    """The bad request never reached the backend, and a good one is served at once."""
    before = len(fake.chat_requests)
    r = httpx.post(d.url + path, json=good, headers=VERSION, timeout=30)
    assert r.status_code == 200, r.text
    assert len(fake.chat_requests) == before + 1
    assert r.json()["status" if path == "/v1/responses" else "stop_reason"] in (
        "completed",
        "end_turn",
    )


def _msg(**changes: Any) -> dict[str, Any]:
    body = {**GOOD_MESSAGES, **changes}
    return {k: v for k, v in body.items() if v is not None}


def _user(*blocks: Any) -> dict[str, Any]:
    return _msg(messages=[{"role": "user", "content": list(blocks)}])


MESSAGES_CASES = [
    pytest.param(b"{not json", 400, False, id="not_json"),
    pytest.param(b"\xff\xfe{}", 400, False, id="not_utf8"),
    pytest.param([GOOD_MESSAGES], 400, False, id="json_array"),
    pytest.param(_msg(model=None), 400, False, id="no_model"),
    pytest.param(_msg(max_tokens=None), 400, False, id="no_max_tokens"),
    pytest.param(_msg(max_tokens="10"), 400, False, id="max_tokens_string"),
    pytest.param(_msg(max_tokens=-1), 400, False, id="max_tokens_negative"),
    pytest.param(_msg(messages=[]), 400, False, id="empty_messages"),
    pytest.param(_msg(messages="hi"), 400, False, id="messages_string"),
    pytest.param(_msg(messages=[{"role": "bot", "content": "hi"}]), 400, False, id="bad_role"),
    pytest.param(_msg(messages=[{"role": "user"}]), 400, False, id="no_content"),
    pytest.param(_user({"type": "video", "url": "x"}), 400, False, id="unknown_block"),
    pytest.param(_user({"type": "image"}), 400, False, id="image_without_source"),
    pytest.param(
        _user(
            {"type": "image", "source": {"type": "base64", "media_type": "image/bmp", "data": "A"}}
        ),
        400,
        False,
        id="image_bad_media_type",
    ),
    pytest.param(
        _user({"type": "tool_result", "tool_use_id": "toolu_nowhere", "content": "x"}),
        400,
        False,
        id="orphan_tool_result",
    ),
    pytest.param(_msg(tools=[{"name": "f"}]), 400, False, id="tool_without_input_schema"),
    pytest.param(
        _msg(tools=[{"name": "bad name!", "input_schema": {"type": "object"}}]),
        400,
        False,
        id="bad_tool_name",
    ),
    pytest.param(
        _msg(tools=A_TOOLS, tool_choice={"type": "tool"}), 400, False, id="tool_choice_no_name"
    ),
    pytest.param(_msg(tool_choice={"type": "any"}), 400, False, id="tool_choice_any_no_tools"),
    pytest.param(_msg(temperature=1.5), 400, False, id="temperature_1_5"),
    pytest.param(_msg(top_p="high"), 400, False, id="top_p_string"),
    pytest.param(_msg(stream="yes"), 400, False, id="stream_yes"),
    pytest.param(_msg(stop_sequences="END"), 400, False, id="stop_sequences_string"),
    pytest.param(
        _msg(thinking={"type": "enabled", "budget_tokens": 10}), 400, False, id="thinking_budget"
    ),
    pytest.param(_msg(system=5), 400, False, id="system_number"),
    pytest.param(_msg(messages=[{"role": "user", "content": BIG}]), 413, False, id="oversize"),
    pytest.param(
        _msg(messages=[{"role": "user", "content": BIG}]), 413, True, id="oversize_chunked"
    ),
]


@pytest.mark.parametrize(("case", "status", "chunked"), MESSAGES_CASES)
def test_bad_messages_requests_get_anthropic_errors(strict, case, status, chunked) -> None:
    fake, d = strict
    r = _send_bad(d, "/v1/messages", case, chunked)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    payload = r.json()
    assert set(payload) == {"type", "error"} and payload["type"] == "error", payload
    kind = "request_too_large" if status == 413 else "invalid_request_error"
    assert payload["error"]["type"] == kind
    assert isinstance(payload["error"]["message"], str) and payload["error"]["message"]
    assert "Internal error" not in payload["error"]["message"]
    rec = records(d, 1)[0]
    assert rec.dialect == "anthropic" and rec.status_code == status
    _still_serves(fake, d, "/v1/messages", GOOD_MESSAGES)


def _resp(**changes: Any) -> dict[str, Any]:
    body = {**GOOD_RESPONSES, **changes}
    return {k: v for k, v in body.items() if v is not None}


RESPONSES_CASES = [
    pytest.param(b"{not json", 400, None, False, id="not_json"),
    pytest.param([GOOD_RESPONSES], 400, None, False, id="json_array"),
    pytest.param(_resp(model=None), 400, "model", False, id="no_model"),
    pytest.param(_resp(input=None), 400, "input", False, id="no_input"),
    pytest.param(_resp(input=5), 400, "input", False, id="input_number"),
    pytest.param(_resp(input=[]), 400, "input", False, id="input_empty"),
    pytest.param(_resp(input=[{"type": "bogus"}]), 400, "input[0].type", False, id="unknown_item"),
    pytest.param(
        _resp(input=[{"type": "message", "role": "robot", "content": "hi"}]),
        400,
        "input[0].role",
        False,
        id="bad_role",
    ),
    pytest.param(
        _resp(input=[{"type": "function_call", "name": "f", "arguments": "{}"}]),
        400,
        "input[0].call_id",
        False,
        id="function_call_without_call_id",
    ),
    pytest.param(
        _resp(input=[{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]),
        400,
        "input[0].content[0].file_id",
        False,
        id="image_file_id",
    ),
    pytest.param(_resp(tools="x"), 400, "tools", False, id="tools_string"),
    pytest.param(_resp(tools=[{"type": "web_search"}]), 400, "tools", False, id="web_search_tool"),
    pytest.param(
        _resp(tool_choice={"type": "function"}), 400, "tool_choice.name", False, id="choice_name"
    ),
    pytest.param(
        _resp(text={"format": {"type": "nope"}}), 400, "text.format.type", False, id="format_nope"
    ),
    pytest.param(
        _resp(text={"format": {"type": "json_schema", "schema": {}}}),
        400,
        "text.format.name",
        False,
        id="json_schema_no_name",
    ),
    pytest.param(_resp(max_output_tokens=0), 400, "max_output_tokens", False, id="max_out_0"),
    pytest.param(_resp(temperature=3), 400, "temperature", False, id="temperature_3"),
    pytest.param(_resp(stream="yes"), 400, "stream", False, id="stream_yes"),
    pytest.param(_resp(background=True), 400, "background", False, id="background"),
    pytest.param(_resp(conversation="conv_1"), 400, "conversation", False, id="conversation"),
    pytest.param(_resp(input=BIG), 413, None, False, id="oversize"),
    pytest.param(_resp(input=BIG), 413, None, True, id="oversize_chunked"),
]


@pytest.mark.parametrize(("case", "status", "param", "chunked"), RESPONSES_CASES)
def test_bad_responses_requests_get_openai_errors(strict, case, status, param, chunked) -> None:
    fake, d = strict
    r = _send_bad(d, "/v1/responses", case, chunked)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    payload = r.json()
    assert set(payload) == {"error"}, payload
    error = payload["error"]
    assert set(error) >= {"message", "type", "param", "code"}, error
    assert isinstance(error["message"], str) and error["message"]
    assert "Internal error" not in error["message"]
    assert error["type"] == "invalid_request_error"
    if status == 400:
        assert error["param"] == param
    rec = records(d, 1)[0]
    assert rec.dialect == "responses" and rec.status_code == status
    _still_serves(fake, d, "/v1/responses", GOOD_RESPONSES)


COUNT_CASES = [
    pytest.param("POST", b"{not json", 400, id="not_json"),
    pytest.param("POST", {"messages": [{"role": "user", "content": "hi"}]}, 400, id="no_model"),
    pytest.param("POST", {"model": "qwen"}, 400, id="no_messages"),
    pytest.param("POST", {"model": "qwen", "messages": [{"role": "x"}]}, 400, id="bad_turn"),
    pytest.param(
        "POST",
        {"model": "qwen", "messages": [{"role": "user", "content": BIG}]},
        413,
        id="oversize",
    ),
    pytest.param("GET", b"", 405, id="get"),
]


@pytest.mark.parametrize(("method", "case", "status"), COUNT_CASES)
def test_bad_count_tokens_requests_get_anthropic_errors(strict, method, case, status) -> None:
    _, d = strict
    r = httpx.request(
        method,
        d.url + "/v1/messages/count_tokens",
        content=_body(case),
        headers={**VERSION, "content-type": "application/json"},
        timeout=30,
    )
    assert r.status_code == status, r.text
    payload = r.json()
    assert set(payload) == {"type", "error"} and payload["type"] == "error", payload
    kind = {413: "request_too_large"}.get(status, "invalid_request_error")
    assert payload["error"]["type"] == kind and payload["error"]["message"]
    good = {"model": "qwen", "messages": [{"role": "user", "content": "hi"}]}
    r = httpx.post(d.url + "/v1/messages/count_tokens", json=good, headers=VERSION, timeout=30)
    assert r.status_code == 200 and r.json()["input_tokens"] > 0


@pytest.mark.parametrize("path", ["/v1/messages", "/v1/responses"])
def test_only_post_is_allowed_on_the_dialect_endpoints(strict, path: str) -> None:
    _, d = strict
    r = httpx.get(d.url + path, headers=VERSION, timeout=30)
    assert r.status_code == 405, r.text
    payload = r.json()
    if path == "/v1/messages":
        assert payload["type"] == "error" and "use POST" in payload["error"]["message"]
    else:
        assert "use POST" in payload["error"]["message"]


# --- 8. a backend that dies mid-stream -----------------------------------------------------------


def test_a_backend_killed_mid_stream_ends_each_dialect_with_its_error_event(one) -> None:
    fake, d = one("vllm", ["qwen2.5-7b"])
    fake.faults.drop_after_chunks = 2
    body = {"model": "qwen2.5-7b", "max_tokens": 50, "stream": True}
    messages = [{"role": "user", "content": "Say hello"}]

    events = sse(post_stream(d.url + "/v1/messages", {**body, "messages": messages}, VERSION))
    names = [name for name, _ in events]
    assert names[:2] == ["message_start", "ping"]
    assert "content_block_delta" in names
    assert names[-1] == "error" and "message_stop" not in names
    error = events[-1][1]
    assert error["type"] == "error" and error["error"]["type"] == "api_error"
    assert "failed mid-stream" in error["error"]["message"]

    client = claude_client(d)
    with (
        pytest.raises(anthropic.APIStatusError) as caught,
        client.messages.stream(model="qwen2.5-7b", max_tokens=50, messages=messages) as stream,
    ):
        for _ in stream:
            pass
    assert "failed mid-stream" in str(caught.value)

    raw = post_stream(d.url + "/v1/responses", {**body, "input": "Say hello"})
    r_events = sse(raw)
    types = [data["type"] for _, data in r_events]
    assert types[0] == "response.created" and "response.output_text.delta" in types
    assert types[-1] == "response.failed" and "response.completed" not in types
    assert r_events[-1][0] == "response.failed"
    failed = r_events[-1][1]["response"]
    assert failed["status"] == "failed"
    assert "failed mid-stream" in failed["error"]["message"]

    sdk_events = list(
        openai_client(d).responses.create(model="qwen2.5-7b", input="Say hello", stream=True)
    )
    assert sdk_events[-1].type == "response.failed"

    recs = records(d, 4)
    assert [r.dialect for r in recs] == ["anthropic", "anthropic", "responses", "responses"]
    for rec in recs:
        assert rec.outcome == "error" and rec.error_type == "stream_interrupted"
        assert rec.status_code == 200 and rec.stream and rec.translated


# --- 9. GET /v1/models in each dialect's shape --------------------------------------------------


def test_models_list_answers_in_the_shape_the_client_asked_for(one) -> None:
    _, d = one("vllm", ["qwen2.5-7b"])
    r = httpx.get(d.url + "/v1/models", headers=VERSION, timeout=30)
    assert r.status_code == 200
    page = r.json()
    assert page["has_more"] is False
    assert page["first_id"] == page["last_id"] == "qwen2.5-7b"
    (entry,) = page["data"]
    assert entry["type"] == "model" and entry["id"] == "qwen2.5-7b"
    assert entry["display_name"] and entry["created_at"].endswith("Z")
    assert "object" not in page

    r = httpx.get(d.url + "/v1/models", timeout=30)
    listing = r.json()
    assert listing["object"] == "list"
    assert [m["id"] for m in listing["data"]] == ["qwen2.5-7b"]
    assert listing["data"][0]["object"] == "model" and "type" not in listing["data"][0]
    # the SDKs agree
    assert [m.id for m in openai_client(d).models.list()] == ["qwen2.5-7b"]
    models = claude_client(d).models.list()
    assert [m.type for m in models.data] == ["model"] and models.has_more is False


# --- 10. stats per dialect, native dialects per backend -----------------------------------------


def test_stats_count_dialects_and_nexusctl_lists_native_dialects(
    fakes, nexus, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, ANTHROPIC_KEY)
    monkeypatch.setenv("NEXUS_TEST_DIALECTS_OPENAI_KEY", "sk-openai-test")
    vllm = fakes("vllm", ["qwen2.5-7b"])
    claude_fake = fakes("anthropic", [CLAUDE], api_key=ANTHROPIC_KEY)
    gpt = fakes("openai", ["gpt-4o-mini"], api_key="sk-openai-test")
    d = nexus(
        {
            "backends": [
                local("vllm", vllm),
                claude_backend(claude_fake),
                {
                    "name": "gpt",
                    "url": gpt.url + "/v1",
                    "type": "openai",
                    "api_key_env": "NEXUS_TEST_DIALECTS_OPENAI_KEY",
                },
            ]
        }
    )
    d.wait_healthy("vllm", "claude", "gpt")
    chat = {"model": "qwen2.5-7b", "messages": [{"role": "user", "content": "hi"}]}
    sent = {"openai": 0, "anthropic": 0, "responses": 0}
    for _ in range(2):
        assert httpx.post(d.url + "/v1/chat/completions", json=chat, timeout=30).is_success
        sent["openai"] += 1
    for model in ("qwen2.5-7b", CLAUDE, CLAUDE):
        claude_client(d).messages.create(
            model=model, max_tokens=20, messages=[{"role": "user", "content": "hi"}]
        )
        sent["anthropic"] += 1
    openai_client(d).responses.create(model="qwen2.5-7b", input="hi")
    sent["responses"] += 1
    bad = httpx.post(d.url + "/v1/responses", json={"model": "qwen2.5-7b"}, timeout=30)
    assert bad.status_code == 400
    sent["responses"] += 1  # a refused request is counted under its dialect too
    d.wait_idle()
    stats = httpx.get(d.url + "/v1/stats", timeout=30).json()
    assert stats["dialects"] == sent
    recs = records(d, 7)
    assert [(r.dialect, r.translated) for r in recs] == [
        ("openai", False),
        ("openai", False),
        ("anthropic", True),
        ("anthropic", False),
        ("anthropic", False),
        ("responses", True),
        ("responses", False),
    ]

    out = nexusctl(d, "backends")
    assert out.returncode == 0, out.stderr
    dialects = {b["id"]: b["native_dialects"] for b in json.loads(out.stdout)}
    assert dialects == {
        "vllm": ["openai"],
        "claude": ["anthropic"],
        "gpt": ["openai", "responses"],
    }


def test_each_dialect_shows_its_own_endpoint_on_the_dashboard_and_in_the_tui(one) -> None:
    from nexus_tui.screens.requests import kind_cell

    _, d = one()
    claude_client(d).messages.create(
        model="qwen2.5-7b", max_tokens=20, messages=[{"role": "user", "content": "hi"}]
    )
    openai_client(d).responses.create(model="qwen2.5-7b", input="hi")
    d.wait_idle()
    page = httpx.get(d.url + "/").text
    assert 'title="/v1/messages">msgs</span>' in page
    assert 'title="/v1/responses">resp</span>' in page
    shown = [kind_cell(r.endpoint, r.dialect).plain for r in records(d, 2)]
    assert shown == ["msgs", "resp"]
    assert kind_cell("chat", "openai").plain == "chat"


def test_a_translated_stream_that_ends_in_an_error_is_recorded_as_failed(one) -> None:
    fake, d = one()
    fake.faults.stream_error_after = 2
    raw = post_stream(
        d.url + "/v1/messages",
        {
            "model": "qwen2.5-7b",
            "max_tokens": 20,
            "stream": True,
            "messages": [{"role": "user", "content": "hi"}],
        },
        headers={"anthropic-version": "2023-06-01"},
    )
    assert b"event: error" in raw and b"message_stop" not in raw
    (rec,) = records(d, 1)
    assert (rec.outcome, rec.error_type, rec.dialect) == (
        "error",
        "stream_interrupted",
        "anthropic",
    )
