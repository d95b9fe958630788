"""The cloud fakes (OpenAI, Anthropic, Google Gemini) must speak the providers' real protocols.

Each is driven over a real socket with httpx and, where the SDK is importable, with the
provider's own SDK (`openai` always; `anthropic` and `google-genai` are not dependencies of
the project, so their tests skip when the package is missing).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.fakes import ALL_KINDS, CLOUD_KINDS, FakeBackend, FakeModel, Faults
from tests.fakes.state import example_value

REPO = Path(__file__).resolve().parents[1]
Make = Callable[..., Awaitable[FakeBackend]]
ANT = {"x-api-key": "sk-ant-test", "anthropic-version": "2023-06-01"}
GOOG = {"x-goog-api-key": "g-test"}
WEATHER_SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "days": {"type": "integer"},
        "unit": {"type": "string", "enum": ["c", "f"]},
        "note": {"type": "string"},
    },
    "required": ["city", "days", "unit"],
}
WEATHER_ARGS = {"city": "x", "days": 1, "unit": "c"}
ANT_TOOLS = [
    {"name": "get_weather", "description": "weather", "input_schema": WEATHER_SCHEMA},
    {"name": "get_time", "input_schema": {"type": "object", "properties": {}}},
]
OAI_TOOLS = [
    {"type": "function", "function": {"name": t["name"], "parameters": t["input_schema"]}}
    for t in ANT_TOOLS
]
GOOG_TOOLS = [
    {
        "functionDeclarations": [
            {
                "name": "get_weather",
                "parameters": {
                    "type": "OBJECT",
                    "properties": {"city": {"type": "STRING"}, "days": {"type": "INTEGER"}},
                    "required": ["city", "days"],
                },
            },
            {"name": "get_time"},
        ]
    }
]
PNG = "iVBORw0KGgo="  # base64 of the PNG signature: enough for a fake


@pytest.fixture
async def make() -> AsyncIterator[Make]:
    started: list[FakeBackend] = []

    async def _make(kind: str, models: list[Any] | None = None, **kw: Any) -> FakeBackend:
        fb = FakeBackend(kind, models or ["m1"], **kw)
        await fb.start()
        started.append(fb)
        return fb

    yield _make
    for fb in started:
        await fb.stop()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as c:
        yield c


def named_events(raw: str) -> list[tuple[str, dict[str, Any]]]:
    """Anthropic's stream: `event: NAME` + `data: JSON` pairs, each ended by a blank line."""
    assert raw.endswith("\n\n")
    out = []
    for block in raw.split("\n\n")[:-1]:
        event, data = block.split("\n")
        assert event.startswith("event: ") and data.startswith("data: "), block
        payload = json.loads(data.removeprefix("data: "))
        assert payload["type"] == event.removeprefix("event: ")
        out.append((payload["type"], payload))
    return out


def google_events(raw: str, eol: str = "\r\n") -> list[dict[str, Any]]:
    end = eol * 2
    assert raw.endswith(end)
    events = raw.split(end)[:-1]
    assert all(e.startswith("data: ") and "\n" not in e for e in events)
    return [json.loads(e.removeprefix("data: ")) for e in events]


def ant_body(**kw: Any) -> dict[str, Any]:
    return {
        "model": "m1",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "say hello"}],
        **kw,
    }


def goog_body(text: str = "say hello", **kw: Any) -> dict[str, Any]:
    return {"contents": [{"role": "user", "parts": [{"text": text}]}], **kw}


@asynccontextmanager
async def cli_fake(*args: str) -> AsyncIterator[str]:
    """`python -m tests.fakes ARGS --port 0`: yield its URL once it says it listens."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "tests.fakes", *args, "--port", "0"),
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
        assert line.startswith(f"fake {args[0]} listening on http://127.0.0.1:"), line
        yield line.split()[4]
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        rc = await asyncio.wait_for(proc.wait(), 20)
    assert rc == 0


# ------------------------------------------------------------------------- shared bits
def test_kinds_and_example_values() -> None:
    assert set(CLOUD_KINDS) == {"openai", "anthropic", "google"} <= set(ALL_KINDS)
    assert example_value(WEATHER_SCHEMA) == WEATHER_ARGS
    assert example_value({"type": "OBJECT", "required": ["n"], "properties": {}}) == {"n": "x"}
    nested = {
        "type": "object",
        "required": ["p", "tags", "ok", "score"],
        "properties": {
            "p": {"type": "object", "required": ["q"], "properties": {"q": {"type": "number"}}},
            "tags": {"type": "array"},
            "ok": {"type": "boolean"},
            "score": {"type": ["number", "null"]},
        },
    }
    assert example_value(nested) == {"p": {"q": 1}, "tags": [], "ok": True, "score": 1}
    faults = Faults()
    faults.update({"stream_error_after": 2, "parallel_tools": 3, "sse_crlf": False})
    assert (faults.stream_error_after, faults.parallel_tools, faults.sse_crlf) == (2, 3, False)


# --------------------------------------------------------------------------- anthropic
async def test_anthropic_models_listing_and_paging(make: Make, client: httpx.AsyncClient) -> None:
    fb = await make("anthropic", [FakeModel("claude-a", context_length=200_000), "b", "c"])
    whole = (await client.get(f"{fb.url}/v1/models", headers=ANT)).json()
    assert whole["has_more"] is False and (whole["first_id"], whole["last_id"]) == ("claude-a", "c")
    first = whole["data"][0]
    assert first["type"] == "model" and first["display_name"] == "Claude A"
    assert first["created_at"].endswith("Z") and first["max_input_tokens"] == 200_000
    page1 = (await client.get(f"{fb.url}/v1/models?limit=2", headers=ANT)).json()
    assert [m["id"] for m in page1["data"]] == ["claude-a", "b"] and page1["has_more"] is True
    after = page1["last_id"]
    page2 = (await client.get(f"{fb.url}/v1/models?limit=2&after_id={after}", headers=ANT)).json()
    assert [m["id"] for m in page2["data"]] == ["c"] and page2["has_more"] is False
    before = (await client.get(f"{fb.url}/v1/models?limit=1&before_id=c", headers=ANT)).json()
    assert [m["id"] for m in before["data"]] == ["b"] and before["has_more"] is True
    bad = await client.get(f"{fb.url}/v1/models?limit=0", headers=ANT)
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"
    one = await client.get(f"{fb.url}/v1/models/b", headers=ANT)
    assert one.json()["id"] == "b"
    missing = await client.get(f"{fb.url}/v1/models/nope", headers=ANT)
    assert missing.status_code == 404
    assert missing.json()["error"] == {"type": "not_found_error", "message": "model: nope"}
    # no OpenAI surface on this kind
    assert (await client.post(f"{fb.url}/v1/chat/completions", headers=ANT)).status_code == 404


async def test_anthropic_auth(make: Make, client: httpx.AsyncClient) -> None:
    fb = await make("anthropic", api_key="sk-ant-test")
    url = f"{fb.url}/v1/messages"
    cases = [
        ({"anthropic-version": "2023-06-01"}, 401, "authentication_error"),
        ({**ANT, "x-api-key": "wrong"}, 401, "authentication_error"),
        ({"x-api-key": "sk-ant-test"}, 400, "invalid_request_error"),  # no anthropic-version
    ]
    for headers, status, err_type in cases:
        resp = await client.post(url, json=ant_body(), headers=headers)
        assert resp.status_code == status
        body = resp.json()
        assert body["type"] == "error" and body["error"]["type"] == err_type
        assert body["request_id"].startswith("req_") and resp.headers["request-id"]
    ok = await client.post(url, json=ant_body(), headers={**ANT, "Authorization": "Bearer sk-c"})
    assert ok.status_code == 200  # x-api-key decides; the bearer is only recorded
    assert fb.requests[-1].credentials == {
        "x-api-key": "sk-ant-test",
        "authorization": "Bearer sk-c",
    }
    # the anthropic SDK (2.x) sends the key as a bearer token: accepted when no x-api-key came
    bearer = {"Authorization": "Bearer sk-ant-test", "anthropic-version": "2023-06-01"}
    assert (await client.post(url, json=ant_body(), headers=bearer)).status_code == 200
    assert (await client.get(f"{fb.url}/v1/models")).status_code == 401  # listing too
    # without a configured key any non-empty key passes
    anyone = await make("anthropic")
    resp = await client.post(f"{anyone.url}/v1/messages", json=ant_body(), headers=ANT)
    assert resp.status_code == 200


async def test_anthropic_message(make: Make, client: httpx.AsyncClient) -> None:
    fb = await make("anthropic", reply="Hello from the fake")
    resp = await client.post(f"{fb.url}/v1/messages", json=ant_body(), headers=ANT)
    msg = resp.json()
    assert msg["id"].startswith("msg_01") and msg["type"] == "message"
    assert msg["role"] == "assistant" and msg["model"] == "m1"
    assert msg["content"] == [{"type": "text", "text": "Hello from the fake"}]
    assert (msg["stop_reason"], msg["stop_sequence"]) == ("end_turn", None)
    assert msg["usage"]["input_tokens"] == 2 and msg["usage"]["output_tokens"] == 4
    assert msg["usage"]["cache_read_input_tokens"] == 0
    assert msg["usage"]["cache_creation_input_tokens"] == 0
    assert fb.chat_requests[-1].json == ant_body()

    capped = await client.post(f"{fb.url}/v1/messages", json=ant_body(max_tokens=2), headers=ANT)
    assert capped.json()["stop_reason"] == "max_tokens"
    assert capped.json()["content"][0]["text"] == "Hello from "
    stopped = await client.post(
        f"{fb.url}/v1/messages", json=ant_body(stop_sequences=["the"]), headers=ANT
    )
    assert stopped.json()["stop_reason"] == "stop_sequence"
    assert stopped.json()["stop_sequence"] == "the"
    assert stopped.json()["content"][0]["text"] == "Hello from "
    # images arrive (one marker each), and `echo` repeats the last user text
    fb.echo = True
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}
    content = [{"type": "text", "text": "what is"}, image, {"type": "text", "text": "this"}]
    seen = await client.post(
        f"{fb.url}/v1/messages",
        json=ant_body(system="be brief", messages=[{"role": "user", "content": content}]),
        headers=ANT,
    )
    assert seen.json()["content"][0]["text"] == (
        "[image] Hello from the fake (you said: what is this)"
    )
    count = await client.post(
        f"{fb.url}/v1/messages/count_tokens",
        json={"model": "m1", "messages": [{"role": "user", "content": "a b c"}]},
        headers=ANT,
    )
    assert count.json() == {"input_tokens": 3}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"max_tokens": None}, "max_tokens: Field required"),
        ({"max_tokens": 0}, "max_tokens: Input should be greater than or equal to 1"),
        ({"messages": []}, "messages: at least one message is required"),
        ({"temperatur": 1}, "temperatur: Extra inputs are not permitted"),
        ({"messages": [{"role": "system", "content": "x"}]}, 'Unexpected role "system"'),
        ({"messages": [{"role": "tool", "content": "x"}]}, "Input should be 'user' or 'assistant'"),
        ({"messages": [{"role": "assistant", "content": "x"}]}, "first message must use the"),
        (
            {"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]},
            'roles must alternate between "user" and "assistant"',
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "tool_result", "tool_use_id": "toolu_x"}],
                    }
                ]
            },
            "unexpected `tool_use_id` found in `tool_result` blocks: toolu_x",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": "a"},
                    {
                        "role": "assistant",
                        "content": [
                            {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}
                        ],
                    },
                    {"role": "user", "content": "b"},
                ]
            },
            "`tool_use` ids were found without `tool_result` blocks immediately after: toolu_1",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "data:,"}}],
                    }
                ]
            },
            "Input tag 'image_url' found using 'type' does not match",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "image",
                                "source": {
                                    "type": "base64",
                                    "media_type": "image/bmp",
                                    "data": "x",
                                },
                            }
                        ],
                    }
                ]
            },
            "media_type: Input should be",
        ),
        ({"tools": [{"name": "f"}]}, "tools.0.custom.input_schema: Field required"),
        (
            {"tools": ANT_TOOLS, "tool_choice": {"type": "tool", "name": "nope"}},
            "tool_choice.name: tool 'nope' was not found",
        ),
    ],
)
async def test_anthropic_validation(
    make: Make, client: httpx.AsyncClient, change: dict[str, Any], message: str
) -> None:
    fb = await make("anthropic")
    body = {k: v for k, v in {**ant_body(), **change}.items() if v is not None}
    resp = await client.post(f"{fb.url}/v1/messages", json=body, headers=ANT)
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["type"] == "invalid_request_error" and message in error["message"]


async def test_anthropic_stream(make: Make, client: httpx.AsyncClient) -> None:
    fb = await make("anthropic", reply="Hi there friend")
    resp = await client.post(f"{fb.url}/v1/messages", json=ant_body(stream=True), headers=ANT)
    assert resp.headers["content-type"].startswith("text/event-stream")
    events = named_events(resp.text)
    names = [n for n, _ in events]
    assert names == [
        "message_start",
        "ping",
        "content_block_start",
        *["content_block_delta"] * 3,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start = events[0][1]["message"]
    assert start["content"] == [] and start["stop_reason"] is None
    assert start["usage"]["input_tokens"] == 2 and start["id"].startswith("msg_")
    assert events[2][1]["content_block"] == {"type": "text", "text": ""}
    deltas = [e["delta"] for n, e in events if n == "content_block_delta"]
    assert {d["type"] for d in deltas} == {"text_delta"}
    assert "".join(d["text"] for d in deltas) == "Hi there friend"
    final = events[-2][1]
    assert final["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert final["usage"] == {"output_tokens": 3}


async def test_anthropic_tool_use(make: Make, client: httpx.AsyncClient) -> None:
    fb = await make("anthropic")
    url = f"{fb.url}/v1/messages"
    msg = (await client.post(url, json=ant_body(tools=ANT_TOOLS), headers=ANT)).json()
    assert msg["stop_reason"] == "tool_use"
    [call] = msg["content"]
    assert call["type"] == "tool_use" and call["id"].startswith("toolu_01")
    assert (call["name"], call["input"]) == ("get_weather", WEATHER_ARGS)
    forced = ant_body(tools=ANT_TOOLS, tool_choice={"type": "tool", "name": "get_time"})
    msg = (await client.post(url, json=forced, headers=ANT)).json()
    assert [(b["name"], b["input"]) for b in msg["content"]] == [("get_time", {})]
    none = ant_body(tools=ANT_TOOLS, tool_choice={"type": "none"})
    assert (await client.post(url, json=none, headers=ANT)).json()["stop_reason"] == "end_turn"

    fb.faults.parallel_tools = 2
    any_tool = ant_body(tools=ANT_TOOLS, tool_choice={"type": "any"}, stream=True)
    events = named_events((await client.post(url, json=any_tool, headers=ANT)).text)
    starts = [e["content_block"] for n, e in events if n == "content_block_start"]
    assert [(s["type"], s["name"], s["input"]) for s in starts] == [
        ("tool_use", "get_weather", {}),
        ("tool_use", "get_time", {}),
    ]
    first = [e["delta"] for n, e in events if n == "content_block_delta" and e["index"] == 0]
    assert {d["type"] for d in first} == {"input_json_delta"} and len(first) >= 3
    assert first[0]["partial_json"] == ""  # as the real API opens a tool block
    assert json.loads("".join(d["partial_json"] for d in first)) == WEATHER_ARGS
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"

    # the results go back: the answer names them
    ids = [s["id"] for s in starts]
    results = [
        {"type": "tool_result", "tool_use_id": ids[0], "content": "sunny"},
        {"type": "tool_result", "tool_use_id": ids[1], "content": [{"type": "text", "text": "9"}]},
    ]
    turns = [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": starts},
        {"role": "user", "content": results},
    ]
    msg = (
        await client.post(url, json=ant_body(tools=ANT_TOOLS, messages=turns), headers=ANT)
    ).json()
    assert msg["content"] == [{"type": "text", "text": "Tool said: sunny | 9"}]
    assert msg["stop_reason"] == "end_turn"


async def test_anthropic_errors_by_status(make: Make, client: httpx.AsyncClient) -> None:
    fb = await make("anthropic")
    fb.faults.retry_after = 7
    expected = {
        400: "invalid_request_error",
        401: "authentication_error",
        403: "permission_error",
        404: "not_found_error",
        429: "rate_limit_error",
        500: "api_error",
        529: "overloaded_error",
    }
    for status, err_type in expected.items():
        fb.faults.fail_status = status
        resp = await client.post(f"{fb.url}/v1/messages", json=ant_body(), headers=ANT)
        assert resp.status_code == status
        assert resp.json()["error"]["type"] == err_type
        assert resp.headers["retry-after"] == "7"
    fb.faults.fail_status = None
    unknown = await client.post(f"{fb.url}/v1/messages", json=ant_body(model="x"), headers=ANT)
    assert unknown.status_code == 404 and unknown.json()["error"]["message"] == "model: x"
    # the body is checked before the model is looked up
    invalid = {**ant_body(model="x"), "max_tokens": "many"}
    refused = await client.post(f"{fb.url}/v1/messages", json=invalid, headers=ANT)
    assert refused.status_code == 400


async def test_anthropic_mid_stream_error_and_drop(make: Make, client: httpx.AsyncClient) -> None:
    fb = await make("anthropic", reply="a b c d e f")
    fb.faults.stream_error_after = 2
    resp = await client.post(f"{fb.url}/v1/messages", json=ant_body(stream=True), headers=ANT)
    events = named_events(resp.text)
    assert [n for n, _ in events][-1] == "error" and "message_stop" not in dict(events)
    assert sum(n == "content_block_delta" for n, _ in events) == 2
    assert events[-1][1] == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
    }
    fb.faults.stream_error_after, fb.faults.drop_after_chunks = None, 1
    with pytest.raises(httpx.RemoteProtocolError):
        await client.post(f"{fb.url}/v1/messages", json=ant_body(stream=True), headers=ANT)


async def test_anthropic_sdk(make: Make) -> None:
    anthropic = pytest.importorskip("anthropic")
    fb = await make("anthropic", ["claude-x", "claude-y"], api_key="sk-ant-test")
    sdk = anthropic.AsyncAnthropic(base_url=fb.url, api_key="sk-ant-test", max_retries=0)
    msg = await sdk.messages.create(
        model="claude-x", max_tokens=64, messages=[{"role": "user", "content": "hi"}]
    )
    assert msg.content[0].text == "Hello from the fake" and msg.stop_reason == "end_turn"
    async with sdk.messages.stream(
        model="claude-x", max_tokens=64, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        texts = [t async for t in stream.text_stream]
        final = await stream.get_final_message()
    assert "".join(texts) == "Hello from the fake" and final.usage.output_tokens == 4
    # a tool round trip through the stream helper, then the results
    weather = {"role": "user", "content": "weather?"}
    async with sdk.messages.stream(
        model="claude-x", max_tokens=64, tools=ANT_TOOLS, messages=[weather]
    ) as stream:
        called = await stream.get_final_message()
    [use] = called.content
    assert (use.type, use.name, use.input) == ("tool_use", "get_weather", WEATHER_ARGS)
    result = {"type": "tool_result", "tool_use_id": use.id, "content": "sunny 21C"}
    answer = await sdk.messages.create(
        model="claude-x",
        max_tokens=64,
        tools=ANT_TOOLS,
        messages=[weather, called.to_param(), {"role": "user", "content": [result]}],
    )
    assert answer.content[0].text == "Tool said: sunny 21C"
    assert [m.id async for m in await sdk.models.list(limit=1)] == ["claude-x", "claude-y"]
    # errors map onto the SDK's classes
    fb.faults.fail_status, fb.faults.fail_times, fb.faults.retry_after = 429, 1, 3
    with pytest.raises(anthropic.RateLimitError) as limited:
        await sdk.messages.create(
            model="claude-x", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
        )
    assert limited.value.response.headers["retry-after"] == "3"
    fb.faults.stream_error_after = 1
    with pytest.raises(anthropic.APIStatusError, match="overloaded_error"):
        async with sdk.messages.stream(
            model="claude-x", max_tokens=64, messages=[{"role": "user", "content": "hi"}]
        ) as stream:
            async for _ in stream.text_stream:
                pass
    wrong = anthropic.AsyncAnthropic(base_url=fb.url, api_key="nope", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        await wrong.models.list()


# ------------------------------------------------------------------------------ google
async def test_google_models_listing(make: Make, client: httpx.AsyncClient) -> None:
    models = [FakeModel("gemini-a", context_length=1_048_576), "gemini-b", "emb,embedding"]
    fb = await make("google", models)
    listing = (await client.get(f"{fb.url}/v1beta/models", headers=GOOG)).json()
    assert "nextPageToken" not in listing
    first = listing["models"][0]
    assert first["name"] == "models/gemini-a" and first["displayName"] == "Gemini A"
    assert first["inputTokenLimit"] == 1_048_576 and first["outputTokenLimit"] == 8192
    assert {"generateContent", "countTokens"} <= set(first["supportedGenerationMethods"])
    assert "embedContent" in listing["models"][2]["supportedGenerationMethods"]
    page = (await client.get(f"{fb.url}/v1beta/models?pageSize=2", headers=GOOG)).json()
    assert len(page["models"]) == 2 and page["nextPageToken"]
    token = page["nextPageToken"]
    rest = await client.get(f"{fb.url}/v1beta/models?pageSize=2&pageToken={token}", headers=GOOG)
    assert [m["name"] for m in rest.json()["models"]] == ["models/emb"]
    one = await client.get(f"{fb.url}/v1beta/models/gemini-b", headers=GOOG)
    assert one.json()["name"] == "models/gemini-b"
    missing = await client.get(f"{fb.url}/v1beta/models/nope", headers=GOOG)
    assert missing.status_code == 404 and missing.json()["error"]["status"] == "NOT_FOUND"


async def test_google_auth(make: Make, client: httpx.AsyncClient) -> None:
    fb = await make("google", ["gemini-a"], api_key="g-test")
    url = f"{fb.url}/v1beta/models/gemini-a:generateContent"
    missing = await client.post(url, json=goog_body())
    assert missing.status_code == 403
    assert missing.json()["error"]["status"] == "PERMISSION_DENIED"
    wrong = await client.post(url, json=goog_body(), headers={"x-goog-api-key": "nope"})
    assert wrong.status_code == 400
    error = wrong.json()["error"]
    assert error["code"] == 400 and error["status"] == "INVALID_ARGUMENT"
    assert error["details"][0]["reason"] == "API_KEY_INVALID"
    by_header = await client.post(
        url, json=goog_body(), headers={**GOOG, "Authorization": "Bearer sk-client"}
    )
    assert by_header.status_code == 200
    assert fb.requests[-1].credentials == {
        "x-goog-api-key": "g-test",
        "authorization": "Bearer sk-client",
    }
    by_query = await client.post(url + "?key=g-test", json=goog_body())
    assert by_query.status_code == 200 and fb.requests[-1].credentials == {"key": "g-test"}
    assert (await client.get(f"{fb.url}/v1beta/models")).status_code == 403


async def test_google_generate(make: Make, client: httpx.AsyncClient) -> None:
    fb = await make("google", ["gemini-a", "emb,embedding"], reply="Hello from the fake")
    url = f"{fb.url}/v1beta/models/gemini-a:generateContent"
    body = (await client.post(url, json=goog_body(), headers=GOOG)).json()
    [candidate] = body["candidates"]
    assert candidate["content"] == {"role": "model", "parts": [{"text": "Hello from the fake"}]}
    assert candidate["finishReason"] == "STOP" and candidate["index"] == 0
    usage = body["usageMetadata"]
    assert (usage["promptTokenCount"], usage["candidatesTokenCount"]) == (2, 4)
    assert usage["totalTokenCount"] == 6
    assert body["modelVersion"] == "gemini-a" and body["responseId"]
    assert fb.chat_requests[-1].json == goog_body()

    capped = goog_body(generationConfig={"maxOutputTokens": 2, "temperature": 0})
    body = (await client.post(url, json=capped, headers=GOOG)).json()
    assert body["candidates"][0]["finishReason"] == "MAX_TOKENS"
    assert body["candidates"][0]["content"]["parts"] == [{"text": "Hello from "}]
    as_json = goog_body(generationConfig={"responseMimeType": "application/json"})
    text = (await client.post(url, json=as_json, headers=GOOG)).json()
    assert json.loads(text["candidates"][0]["content"]["parts"][0]["text"]) == {
        "reply": "Hello from the fake"
    }
    schema = {"type": "OBJECT", "properties": {"n": {"type": "INTEGER"}}, "required": ["n"]}
    typed = goog_body(
        generation_config={"response_mime_type": "application/json", "response_schema": schema}
    )  # proto JSON takes snake_case names too
    text = (await client.post(url, json=typed, headers=GOOG)).json()
    assert json.loads(text["candidates"][0]["content"]["parts"][0]["text"]) == {"n": 1}
    # an image part arrives
    image = {"inlineData": {"mimeType": "image/png", "data": PNG}}
    seen = {
        "systemInstruction": {"parts": [{"text": "be brief"}]},
        "contents": [{"role": "user", "parts": [{"text": "what is this"}, image]}],
    }
    text = (await client.post(url, json=seen, headers=GOOG)).json()
    assert text["candidates"][0]["content"]["parts"][0]["text"] == "[image] Hello from the fake"
    fb.echo = True
    text = (await client.post(url, json=seen, headers=GOOG)).json()
    assert text["candidates"][0]["content"]["parts"][0]["text"] == (
        "[image] Hello from the fake (you said: what is this)"
    )
    fb.echo = False
    # the other methods
    count = await client.post(
        f"{fb.url}/v1beta/models/gemini-a:countTokens", json=goog_body("a b c"), headers=GOOG
    )
    assert count.json()["totalTokens"] == 3
    emb = await client.post(
        f"{fb.url}/v1beta/models/emb:embedContent",
        json={"content": {"parts": [{"text": "hi"}]}},
        headers=GOOG,
    )
    assert len(emb.json()["embedding"]["values"]) == 8
    assert len(fb.embedding_requests) == 1
    wrong_method = await client.post(
        f"{fb.url}/v1beta/models/emb:generateContent", json=goog_body(), headers=GOOG
    )
    assert wrong_method.status_code == 404
    assert "is not supported for generateContent" in wrong_method.json()["error"]["message"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"contents": []}, "contents is not specified"),
        ({**goog_body(), "temperature": 1}, 'Unknown name "temperature": Cannot find field.'),
        (
            goog_body(generationConfig={"max_tokens": 5}),
            "Unknown name \"max_tokens\" at 'generation_config': Cannot find field.",
        ),
        ({"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]}, "valid role: user"),
        ({"contents": [{"role": "user", "parts": []}]}, "contents.parts must not be empty"),
        (
            {"contents": [{"role": "user", "parts": [{"type": "text", "text": "x"}]}]},
            "Unknown name \"type\" at 'contents[0].parts[0]'",
        ),
        (
            {
                "contents": [
                    {
                        "role": "user",
                        "parts": [{"inlineData": {"mimeType": "image/png", "data": "data:x"}}],
                    }
                ]
            },
            "Base64 decoding failed",
        ),
        (
            {
                "contents": [
                    {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {}}}]}
                ]
            },
            "number of function response parts is equal to the number of function call parts",
        ),
    ],
)
async def test_google_validation(
    make: Make, client: httpx.AsyncClient, body: dict[str, Any], message: str
) -> None:
    fb = await make("google", ["gemini-a"])
    url = f"{fb.url}/v1beta/models/gemini-a:generateContent"
    resp = await client.post(url, json=body, headers=GOOG)
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT" and message in error["message"]


async def test_google_stream(make: Make, client: httpx.AsyncClient) -> None:
    fb = await make("google", ["gemini-a"], reply="Hi there friend")
    url = f"{fb.url}/v1beta/models/gemini-a:streamGenerateContent"
    resp = await client.post(url + "?alt=sse", json=goog_body(), headers=GOOG)
    assert resp.headers["content-type"].startswith("text/event-stream")
    chunks = google_events(resp.text)  # framed with CRLF, as Google's servers do
    assert [c["candidates"][0]["content"]["parts"][0]["text"] for c in chunks] == [
        "Hi ",
        "there ",
        "friend",
        "",
    ]
    assert [c["candidates"][0].get("finishReason") for c in chunks] == [None, None, None, "STOP"]
    assert all(c["candidates"][0]["content"]["role"] == "model" for c in chunks)
    assert [c["usageMetadata"]["candidatesTokenCount"] for c in chunks] == [1, 2, 3, 3]
    assert len({c["responseId"] for c in chunks}) == 1
    assert chunks[-1]["usageMetadata"]["totalTokenCount"] == 5
    fb.faults.sse_crlf = False
    resp = await client.post(url + "?alt=sse", json=goog_body(), headers=GOOG)
    assert len(google_events(resp.text, "\n")) == 4
    # without alt=sse: one JSON array
    resp = await client.post(url, json=goog_body(), headers=GOOG)
    assert resp.headers["content-type"].startswith("application/json")
    assert [c["candidates"][0]["content"]["parts"][0]["text"] for c in resp.json()] == [
        "Hi ",
        "there ",
        "friend",
        "",
    ]


async def test_google_function_calling(make: Make, client: httpx.AsyncClient) -> None:
    fb = await make("google", ["gemini-a"])
    url = f"{fb.url}/v1beta/models/gemini-a:generateContent"
    body = (await client.post(url, json=goog_body(tools=GOOG_TOOLS), headers=GOOG)).json()
    candidate = body["candidates"][0]
    assert candidate["finishReason"] == "STOP"
    assert candidate["content"]["parts"] == [
        {"functionCall": {"name": "get_weather", "args": {"city": "x", "days": 1}}}
    ]
    only = {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_time"]}}
    body = (
        await client.post(url, json=goog_body(tools=GOOG_TOOLS, toolConfig=only), headers=GOOG)
    ).json()
    assert body["candidates"][0]["content"]["parts"] == [
        {"functionCall": {"name": "get_time", "args": {}}}
    ]
    off = {"functionCallingConfig": {"mode": "NONE"}}
    body = (
        await client.post(url, json=goog_body(tools=GOOG_TOOLS, toolConfig=off), headers=GOOG)
    ).json()
    assert "text" in body["candidates"][0]["content"]["parts"][0]

    fb.faults.parallel_tools = 2
    stream = await client.post(
        f"{fb.url}/v1beta/models/gemini-a:streamGenerateContent?alt=sse",
        json=goog_body(tools=GOOG_TOOLS),
        headers=GOOG,
    )
    [chunk] = google_events(stream.text)
    calls = chunk["candidates"][0]["content"]["parts"]
    assert [c["functionCall"]["name"] for c in calls] == ["get_weather", "get_time"]
    assert chunk["candidates"][0]["finishReason"] == "STOP"
    answers = [
        {"functionResponse": {"name": "get_weather", "response": {"result": "sunny"}}},
        {"functionResponse": {"name": "get_time", "response": {"result": "noon"}}},
    ]
    turns = {
        "contents": [
            {"role": "user", "parts": [{"text": "weather?"}]},
            {"role": "model", "parts": calls},
            {"role": "user", "parts": answers},
        ],
        "tools": GOOG_TOOLS,
    }
    body = (await client.post(url, json=turns, headers=GOOG)).json()
    assert body["candidates"][0]["content"]["parts"] == [
        {"text": 'Tool said: {"result":"sunny"} | {"result":"noon"}'}
    ]


async def test_google_faults(make: Make, client: httpx.AsyncClient) -> None:
    fb = await make("google", ["gemini-a"], reply="a b c d e f")
    url = f"{fb.url}/v1beta/models/gemini-a"
    fb.faults.fail_status, fb.faults.fail_times, fb.faults.retry_after = 429, 1, 9
    limited = await client.post(url + ":generateContent", json=goog_body(), headers=GOOG)
    assert limited.status_code == 429 and limited.headers["retry-after"] == "9"
    error = limited.json()["error"]
    assert (error["code"], error["status"]) == (429, "RESOURCE_EXHAUSTED")
    assert error["details"] == [
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "9s"}
    ]
    fb.faults.retry_after = None
    for status, name in [(500, "INTERNAL"), (503, "UNAVAILABLE"), (404, "NOT_FOUND")]:
        fb.faults.fail_status, fb.faults.fail_times = status, 1
        resp = await client.post(url + ":generateContent", json=goog_body(), headers=GOOG)
        assert resp.status_code == status and resp.json()["error"]["status"] == name
    fb.faults.stream_error_after = 2
    resp = await client.post(url + ":streamGenerateContent?alt=sse", json=goog_body(), headers=GOOG)
    events = google_events(resp.text)
    assert len(events) == 3 and "candidates" in events[1]
    assert events[-1] == {
        "error": {
            "code": 503,
            "message": "The model is overloaded. Please try again later.",
            "status": "UNAVAILABLE",
        }
    }


async def test_google_sdk(make: Make) -> None:
    pytest.importorskip("google.genai")
    from google import genai
    from google.genai import errors, types

    fb = await make("google", ["gemini-a"], api_key="g-test")
    sdk = genai.Client(api_key="g-test", http_options={"base_url": fb.url})
    done = await sdk.aio.models.generate_content(model="gemini-a", contents="hi")
    assert done.text == "Hello from the fake"
    parts = [
        c.text
        async for c in await sdk.aio.models.generate_content_stream(model="gemini-a", contents="hi")
    ]
    assert "".join(p or "" for p in parts) == "Hello from the fake"
    config = types.GenerateContentConfig(
        tools=GOOG_TOOLS,
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
    )
    called = await sdk.aio.models.generate_content(model="gemini-a", contents="w?", config=config)
    assert [(c.name, c.args) for c in called.function_calls or []] == [
        ("get_weather", {"city": "x", "days": 1})
    ]
    assert fb.requests[-1].credentials == {"x-goog-api-key": "g-test"}
    fb.faults.stream_error_after = 1
    with pytest.raises(errors.ServerError):
        async for _ in await sdk.aio.models.generate_content_stream(model="gemini-a", contents="x"):
            pass
    wrong = genai.Client(api_key="nope", http_options={"base_url": fb.url})
    with pytest.raises(errors.ClientError, match="API_KEY_INVALID"):
        await wrong.aio.models.generate_content(model="gemini-a", contents="hi")


# ------------------------------------------------------------------------------ openai
async def test_openai_api_key(make: Make, client: httpx.AsyncClient) -> None:
    fb = await make("openai", api_key="sk-server")
    url = f"{fb.url}/v1/chat/completions"
    chat = {"model": "m1", "messages": [{"role": "user", "content": "hi"}]}
    missing = await client.post(url, json=chat)
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] is None  # as OpenAI: no key is not a wrong key
    wrong = await client.post(url, json=chat, headers={"Authorization": "Bearer sk-client-1234"})
    assert wrong.status_code == 401
    assert wrong.json() == {
        "error": {
            "message": wrong.json()["error"]["message"],
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_api_key",
        }
    }
    assert "sk-client-1234" not in wrong.json()["error"]["message"]  # masked like OpenAI
    assert (await client.get(f"{fb.url}/v1/models")).status_code == 401
    ok = await client.post(url, json=chat, headers={"Authorization": "Bearer sk-server"})
    assert ok.status_code == 200 and fb.requests[-1].credentials == {
        "authorization": "Bearer sk-server"
    }
    sdk = openai.AsyncOpenAI(base_url=fb.url + "/v1", api_key="sk-client", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        await sdk.chat.completions.create(**chat)


async def test_openai_tools_and_json(make: Make) -> None:
    fb = await make("openai", ["gpt-x"])
    sdk = openai.AsyncOpenAI(base_url=fb.url + "/v1", api_key="k", max_retries=0)
    ask = [{"role": "user", "content": "weather?"}]
    done = await sdk.chat.completions.create(model="gpt-x", messages=ask, tools=OAI_TOOLS)
    choice = done.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    [call] = choice.message.tool_calls or []
    assert call.id.startswith("call_") and call.type == "function"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == WEATHER_ARGS

    fb.faults.parallel_tools = 2
    stream = await sdk.chat.completions.create(
        model="gpt-x",
        messages=ask,
        tools=OAI_TOOLS,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [c async for c in stream]
    deltas = [d for c in chunks if c.choices for d in c.choices[0].delta.tool_calls or []]
    opening = [d for d in deltas if d.id]
    assert [(d.index, d.function.name, d.function.arguments) for d in opening] == [
        (0, "get_weather", ""),
        (1, "get_time", ""),
    ]
    joined = "".join(d.function.arguments or "" for d in deltas if d.index == 0)
    assert json.loads(joined) == WEATHER_ARGS and sum(d.index == 0 for d in deltas) >= 3
    assert chunks[-2].choices[0].finish_reason == "tool_calls"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None

    history = [
        *ask,
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
    ]
    answer = await sdk.chat.completions.create(model="gpt-x", messages=history, tools=OAI_TOOLS)
    assert answer.choices[0].message.content == "Tool said: sunny"
    assert answer.choices[0].finish_reason == "stop"
    forced = await sdk.chat.completions.create(
        model="gpt-x",
        messages=ask,
        tools=OAI_TOOLS,
        tool_choice={"type": "function", "function": {"name": "get_time"}},
        parallel_tool_calls=False,
    )
    assert [c.function.name for c in forced.choices[0].message.tool_calls or []] == ["get_time"]
    plain = await sdk.chat.completions.create(
        model="gpt-x", messages=ask, tools=OAI_TOOLS, tool_choice="none"
    )
    assert plain.choices[0].message.content == "Hello from the fake"

    as_json = await sdk.chat.completions.create(
        model="gpt-x", messages=ask, response_format={"type": "json_object"}
    )
    assert json.loads(as_json.choices[0].message.content or "") == {"reply": "Hello from the fake"}
    schema = {"name": "w", "schema": WEATHER_SCHEMA}
    typed = await sdk.chat.completions.create(
        model="gpt-x", messages=ask, response_format={"type": "json_schema", "json_schema": schema}
    )
    assert json.loads(typed.choices[0].message.content or "") == WEATHER_ARGS
    image = {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}
    seen = await sdk.chat.completions.create(
        model="gpt-x",
        messages=[{"role": "user", "content": [{"type": "text", "text": "?"}, image]}],
    )
    assert seen.choices[0].message.content == "[image] Hello from the fake"


async def test_openai_faults(make: Make) -> None:
    fb = await make("openai", ["gpt-x"], reply="a b c d e f")
    sdk = openai.AsyncOpenAI(base_url=fb.url + "/v1", api_key="k", max_retries=0)
    ask = [{"role": "user", "content": "hi"}]
    fb.faults.fail_status, fb.faults.fail_times, fb.faults.retry_after = 429, 1, 4
    with pytest.raises(openai.RateLimitError) as limited:
        await sdk.chat.completions.create(model="gpt-x", messages=ask)
    assert limited.value.response.headers["retry-after"] == "4"
    fb.faults.stream_error_after = 2
    stream = await sdk.chat.completions.create(model="gpt-x", messages=ask, stream=True)
    got = []
    with pytest.raises(openai.APIError, match="The server had an error"):
        async for chunk in stream:
            got.append(chunk.choices[0].delta.content)
    assert got == ["", "a ", "b "]  # the role chunk, then two content chunks


# ------------------------------------------------------------------- runtime + CLI
async def test_faults_endpoint_and_cli(client: httpx.AsyncClient) -> None:
    args = ("anthropic", "--api-key", "sk-ant-test", "--fault", "parallel_tools=2")
    async with cli_fake(*args) as url:
        state = (await client.get(url + "/_fake/state")).json()
        assert state["kind"] == "anthropic" and state["faults"]["parallel_tools"] == 2
        assert [m["id"] for m in state["models"]] == ["claude-sonnet-4-5"]
        body = ant_body(model="claude-sonnet-4-5", tools=ANT_TOOLS)
        msg = (await client.post(url + "/v1/messages", json=body, headers=ANT)).json()
        assert [b["name"] for b in msg["content"]] == ["get_weather", "get_time"]
        await client.post(url + "/_fake/faults", json={"stream_error_after": 0})
        stream = await client.post(
            url + "/v1/messages", json=ant_body(model="claude-sonnet-4-5", stream=True), headers=ANT
        )
        assert [n for n, _ in named_events(stream.text)] == ["message_start", "ping", "error"]
        bad = await client.post(url + "/v1/messages", json=body, headers={**ANT, "x-api-key": "x"})
        assert bad.status_code == 401
    async with cli_fake("google", "--model", "gemini-z", "--fault", "retry_after=2") as url:
        models = (await client.get(url + "/v1beta/models?key=anything")).json()
        assert [m["name"] for m in models["models"]] == ["models/gemini-z"]
        await client.post(url + "/_fake/faults", json={"fail_status": 429, "fail_times": 1})
        resp = await client.post(
            url + "/v1beta/models/gemini-z:generateContent?key=k", json=goog_body()
        )
        assert resp.status_code == 429 and resp.headers["retry-after"] == "2"
