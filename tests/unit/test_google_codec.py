"""Google Gemini codec: OpenAI chat ⇄ generateContent / streamGenerateContent, both directions.

Fixtures under ``fixtures/google`` follow the Gemini API reference's request, response,
stream and error shapes; client-side outputs are checked against the openai SDK's types.
"""

from __future__ import annotations

import copy
import json
import logging
import random
import re
from pathlib import Path
from typing import Any

import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from nexusd.backends.codec import Call
from nexusd.backends.google import SKIP_SIGNATURE, GoogleCodec, GoogleStreamDecoder
from nexusd.backends.translate import Untranslatable, UpstreamStreamError
from nexusd.backends.upstream import UpstreamProtocolError, UpstreamReply
from nexusd.types import Endpoint

FIXTURES = Path(__file__).parent / "fixtures" / "google"
MODEL = "gemini-2.5-flash"
PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9"
    "awAAAABJRU5ErkJggg=="
)
STREAMS = sorted(p.name for p in FIXTURES.glob("stream_*.sse"))

codec = GoogleCodec()


def fixture_json(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def chat(body: dict[str, Any], *, stream: bool = False) -> Call:
    return Call(Endpoint.CHAT, body, json.dumps(body).encode(), stream=stream)


def user(text: str = "Hi") -> dict[str, Any]:
    return {"role": "user", "content": text}


def body_of(**fields: Any) -> dict[str, Any]:
    return {"model": "alias", "messages": [user()], **fields}


def encode(body: dict[str, Any], model: str = MODEL, *, stream: bool = False) -> dict[str, Any]:
    return json.loads(codec.encode(chat(body, stream=stream), model).body)


def untranslatable(body: dict[str, Any]) -> Untranslatable:
    with pytest.raises(Untranslatable) as caught:
        codec.encode(chat(body), MODEL)
    assert caught.value.counts_against_backend is False and caught.value.status == 400
    return caught.value


def decode(native: Any, body: dict[str, Any] | None = None, model: str = "asked") -> dict[str, Any]:
    raw = native if isinstance(native, bytes) else json.dumps(native).encode()
    out = codec.decode(chat(body or body_of()), UpstreamReply(200, raw, "application/json"), model)
    ChatCompletion.model_validate_json(out)
    return json.loads(out)


def events_of(stream: bytes) -> list[Any]:
    """Client SSE bytes → payloads ("[DONE]" as is), each chunk checked by the SDK's type."""
    assert stream.endswith(b"\n\n")
    events: list[Any] = []
    for raw in stream[:-2].split(b"\n\n"):
        assert raw.startswith(b"data: ") and b"\n" not in raw
        data = raw[6:]
        if data == b"[DONE]":
            events.append("[DONE]")
            continue
        ChatCompletionChunk.model_validate_json(data)
        events.append(json.loads(data))
    return events


def run_stream(
    data: bytes | list[bytes], body: dict[str, Any] | None = None, model: str = "asked"
) -> tuple[bytes, GoogleStreamDecoder]:
    decoder = codec.stream_decoder(chat(body or body_of(stream=True), stream=True), model)
    pieces = [data] if isinstance(data, bytes) else data
    out = b"".join(decoder.feed(p) for p in pieces) + decoder.flush()
    return out, decoder


def deltas(events: list[Any]) -> list[tuple[int, dict[str, Any], str | None]]:
    return [
        (c["index"], c["delta"], c["finish_reason"])
        for e in events
        if e != "[DONE]"
        for c in e["choices"]
    ]


def content_of(events: list[Any], index: int = 0) -> str:
    return "".join(d.get("content") or "" for i, d, _ in deltas(events) if i == index)


# --- contract basics ---------------------------------------------------------------------------


def test_dialect_and_key_header() -> None:
    assert codec.dialect == "google"
    assert GoogleCodec.auth_headers("sekret") == {"x-goog-api-key": "sekret"}


def test_paths_and_no_key_in_the_url() -> None:
    plain = codec.encode(chat(body_of()), MODEL)
    streamed = codec.encode(chat(body_of(stream=True), stream=True), MODEL)
    assert plain.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert streamed.path == "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    for path in (plain.path, streamed.path):
        assert "key" not in path
    assert b"sekret" not in plain.body and "model" not in json.loads(plain.body)


@pytest.mark.parametrize("stream", [False, True])
def test_hostile_model_name_is_quoted(stream: bool) -> None:
    path = codec.encode(chat(body_of(), stream=stream), "x/../y?key=1#f").path
    assert path.startswith("/v1beta/models/x%2F..%2Fy%3Fkey%3D1%23f:")
    assert path.count("/") == 3 and "#" not in path
    assert path.count("?") == (1 if stream else 0) and "key=" not in path
    assert codec.encode(chat(body_of()), "models/gemini-2.0-flash").path == (
        "/v1beta/models/gemini-2.0-flash:generateContent"
    )


@pytest.mark.parametrize("endpoint", [Endpoint.EMBEDDINGS, Endpoint.COMPLETIONS])
def test_only_chat_is_translated(endpoint: Endpoint) -> None:
    body = {"model": "m", "input": "hello", "prompt": "hello"}
    with pytest.raises(Untranslatable, match="chat completions only"):
        codec.encode(Call(endpoint, body, json.dumps(body).encode()), MODEL)


# --- requests ----------------------------------------------------------------------------------


def test_conversation_fixture_translates_every_field() -> None:
    body = fixture_json("request_conversation.openai.json")
    before = copy.deepcopy(body)
    assert encode(body) == fixture_json("request_conversation.google.json")
    assert body == before  # the client's dict is never modified


def test_system_messages() -> None:
    assert "systemInstruction" not in encode(body_of())
    several = encode(
        {
            "messages": [
                {"role": "system", "content": "One."},
                user(),
                {"role": "developer", "content": [{"type": "text", "text": "Two."}]},
                {"role": "system", "content": ""},
            ]
        }
    )
    assert several["systemInstruction"] == {"parts": [{"text": "One.\n\nTwo."}]}
    assert several["contents"] == [{"role": "user", "parts": [{"text": "Hi"}]}]
    image = {"type": "image_url", "image_url": {"url": "https://x/y.png"}}
    err = untranslatable({"messages": [{"role": "system", "content": [image]}, user()]})
    assert err.param == "messages"


def test_roles_map_and_same_role_turns_merge() -> None:
    wire = encode(
        {
            "messages": [
                user("a"),
                {"role": "user", "content": [{"type": "text", "text": "b"}]},
                {"role": "assistant", "content": "c"},
                {"role": "assistant", "content": [{"type": "text", "text": "d"}]},
                {"role": "assistant", "content": None},
                user(""),
                user("e"),
            ]
        }
    )
    assert wire["contents"] == [
        {"role": "user", "parts": [{"text": "a"}, {"text": "b"}]},
        {"role": "model", "parts": [{"text": "c"}, {"text": "d"}]},
        {"role": "user", "parts": [{"text": "e"}]},
    ]


@pytest.mark.parametrize(
    ("url", "part"),
    [
        (f"data:image/png;base64,{PNG}", {"inlineData": {"mimeType": "image/png", "data": PNG}}),
        (
            "https://cdn.example.com/a/photo.PNG?size=2",
            {
                "fileData": {
                    "mimeType": "image/png",
                    "fileUri": "https://cdn.example.com/a/photo.PNG?size=2",
                }
            },
        ),
        (
            "http://example.com/render?id=7",
            {"fileData": {"mimeType": "image/jpeg", "fileUri": "http://example.com/render?id=7"}},
        ),
        (
            "https://example.com/page.html",
            {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.com/page.html"}},
        ),
        (
            "gs://bucket/cat.gif",
            {"fileData": {"mimeType": "image/gif", "fileUri": "gs://bucket/cat.gif"}},
        ),
    ],
)
def test_images(url: str, part: dict[str, Any]) -> None:
    content = [{"type": "text", "text": "What is it?"}, {"type": "image_url", "image_url": url}]
    wire = encode({"messages": [{"role": "user", "content": content}]})
    assert wire["contents"][0]["parts"] == [{"text": "What is it?"}, part]


@pytest.mark.parametrize(
    "url", ["data:image/png;base64,not base64!", "ftp://example.com/a.png", "file:///etc/passwd"]
)
def test_images_that_cannot_go(url: str) -> None:
    content = [{"type": "image_url", "image_url": {"url": url}}]
    assert untranslatable({"messages": [{"role": "user", "content": content}]}).param == (
        "messages"
    )


def test_audio_and_inline_files() -> None:
    content = [
        {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
        {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0="}},
        {"type": "file", "file": {"file_data": "JVBERi0=", "filename": "report.pdf"}},
    ]
    assert encode({"messages": [{"role": "user", "content": content}]})["contents"][0]["parts"] == [
        {"inlineData": {"mimeType": "audio/wav", "data": "UklGRg=="}},
        {"inlineData": {"mimeType": "application/pdf", "data": "JVBERi0="}},
        {"inlineData": {"mimeType": "application/pdf", "data": "JVBERi0="}},
    ]
    file_id = [{"type": "file", "file": {"file_id": "file-abc"}}]
    assert untranslatable({"messages": [{"role": "user", "content": file_id}]}).param == (
        "messages"
    )


WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather now",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "when": {"$ref": "#/$defs/day"}},
            "$defs": {"day": {"type": "string", "format": "date"}},
            "additionalProperties": False,
        },
    },
}


def test_tools_go_as_json_schema() -> None:
    bare = {"type": "function", "function": {"name": "ping"}}
    wire = encode(body_of(tools=[WEATHER, bare]))
    assert wire["tools"] == [
        {
            "functionDeclarations": [
                {
                    "name": "get_weather",
                    "description": "Weather now",
                    "parametersJsonSchema": WEATHER["function"]["parameters"],
                },
                {"name": "ping"},
            ]
        }
    ]
    assert "toolConfig" not in wire
    # tool_choice without tools has nothing to configure
    assert "toolConfig" not in encode(body_of(tool_choice="required"))


@pytest.mark.parametrize(
    ("choice", "config"),
    [
        ("auto", {"mode": "AUTO"}),
        ("none", {"mode": "NONE"}),
        ("required", {"mode": "ANY"}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            {"mode": "ANY", "allowedFunctionNames": ["get_weather"]},
        ),
    ],
)
def test_tool_choice(choice: Any, config: dict[str, Any]) -> None:
    wire = encode(body_of(tools=[WEATHER], tool_choice=choice))
    assert wire["toolConfig"] == {"functionCallingConfig": config}


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"tools": [WEATHER], "tool_choice": {"type": "allowed_tools"}}, "tool_choice"),
        ({"tools": [WEATHER], "tool_choice": "sometimes"}, "tool_choice"),
        ({"tools": [{"type": "custom", "custom": {"name": "x"}}]}, "tools"),
        ({"tools": [{"type": "function", "function": {}}]}, "tools"),
        ({"logprobs": True, "top_logprobs": 3}, "logprobs"),
        ({"functions": [{"name": "f"}]}, "functions"),
        ({"response_format": {"type": "xml"}}, "response_format"),
        ({"n": 0}, "n"),
    ],
)
def test_untranslatable_fields(fields: dict[str, Any], param: str) -> None:
    assert untranslatable(body_of(**fields)).param == param


@pytest.mark.parametrize(
    "messages",
    [
        [{"role": "system", "content": "Only a system prompt."}],
        [{"role": "function", "name": "f", "content": "{}"}],
        [{"role": "user", "content": [{"type": "refusal", "refusal": "no"}]}],
        [{"role": "assistant", "function_call": {"name": "f", "arguments": "{}"}}],
        [
            {
                "role": "assistant",
                "tool_calls": [{"id": "c", "type": "custom", "custom": {"name": "x"}}],
            }
        ],
        [
            {
                "role": "assistant",
                "tool_calls": [
                    {"id": "c", "type": "function", "function": {"name": "f", "arguments": "[1]"}}
                ],
            }
        ],
        [user(), {"role": "tool", "tool_call_id": "call_never_made", "content": "42"}],
    ],
)
def test_untranslatable_messages(messages: list[dict[str, Any]]) -> None:
    assert untranslatable({"messages": messages}).param == "messages"


def test_logprobs_false_is_fine() -> None:
    assert "generationConfig" not in encode(body_of(logprobs=False))


def tool_turn(*calls: dict[str, Any]) -> dict[str, Any]:
    return {"role": "assistant", "content": None, "tool_calls": list(calls)}


def call_of(call_id: str, name: str, arguments: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": arguments},
        **extra,
    }


def test_tool_results_across_turns() -> None:
    signed = {"extra_content": {"google": {"thought_signature": "U0lH"}}}
    wire = encode(
        {
            "messages": [
                user("Weather?"),
                tool_turn(call_of("call_a", "get_weather", '{"city":"Rome"}', **signed)),
                {
                    "role": "tool",
                    "tool_call_id": "call_a",
                    "content": [{"type": "text", "text": "[1, 2]"}],
                },
                tool_turn(
                    call_of("call_b", "get_time", ""),
                    call_of("call_c", "get_weather", '{"city":"Oslo"}'),
                ),
                {"role": "tool", "tool_call_id": "call_c", "content": ' {"temp": -3}'},
                {"role": "tool", "tool_call_id": "call_b", "content": "12:00"},
                user("Thanks"),
            ]
        }
    )
    assert wire["contents"] == [
        {"role": "user", "parts": [{"text": "Weather?"}]},
        {
            "role": "model",
            "parts": [
                {
                    "functionCall": {
                        "name": "get_weather",
                        "args": {"city": "Rome"},
                        "id": "call_a",
                    },
                    "thoughtSignature": "U0lH",
                }
            ],
        },
        {
            "role": "user",
            "parts": [
                {
                    "functionResponse": {
                        "name": "get_weather",
                        "id": "call_a",
                        "response": {"content": "[1, 2]"},
                    }
                }
            ],
        },
        {
            "role": "model",
            "parts": [
                # a history without a signature gets Google's sentinel on the step's first call
                {
                    "functionCall": {"name": "get_time", "args": {}, "id": "call_b"},
                    "thoughtSignature": SKIP_SIGNATURE,
                },
                {"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}, "id": "call_c"}},
            ],
        },
        {
            "role": "user",
            "parts": [
                {
                    "functionResponse": {
                        "name": "get_weather",
                        "id": "call_c",
                        "response": {"temp": -3},
                    }
                },
                {
                    "functionResponse": {
                        "name": "get_time",
                        "id": "call_b",
                        "response": {"content": "12:00"},
                    }
                },
                {"text": "Thanks"},
            ],
        },
    ]


def test_generation_config() -> None:
    assert "generationConfig" not in encode(body_of())
    assert encode(body_of(max_tokens=64, stop="END", temperature=0, top_p=1))[
        "generationConfig"
    ] == {"temperature": 0, "topP": 1, "maxOutputTokens": 64, "stopSequences": ["END"]}
    assert encode(body_of(max_tokens=64, max_completion_tokens=128, stop=[]))[
        "generationConfig"
    ] == {"maxOutputTokens": 128}
    assert encode(body_of(n=1)).get("generationConfig") is None
    assert encode(body_of(n=3))["generationConfig"] == {"candidateCount": 3}


@pytest.mark.parametrize(
    ("response_format", "config"),
    [
        ({"type": "text"}, None),
        ({"type": "json_object"}, {"responseMimeType": "application/json"}),
        (
            {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "array"}}},
            {"responseMimeType": "application/json", "responseJsonSchema": {"type": "array"}},
        ),
        (
            {"type": "json_schema", "json_schema": {"name": "x"}},
            {"responseMimeType": "application/json"},
        ),
    ],
)
def test_json_mode(response_format: dict[str, Any], config: dict[str, Any] | None) -> None:
    assert encode(body_of(response_format=response_format)).get("generationConfig") == config


def test_unknown_fields_are_dropped(translate_log: pytest.LogCaptureFixture) -> None:
    extra = {
        "logit_bias": {"1": 2},
        "user": "u-1",
        "service_tier": "flex",
        "parallel_tool_calls": False,
        "reasoning_effort": "high",
        "top_logprobs": 2,
    }
    raw = codec.encode(chat(body_of(stream_options={"include_usage": True}, **extra)), MODEL)
    for value in (b"u-1", b"flex", b"high", b"logit", b"parallel", b"stream_options"):
        assert value not in raw.body
    assert json.loads(raw.body) == {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}
    messages = [r.getMessage() for r in translate_log.records if r.levelno == logging.DEBUG]
    assert any("google" in m and all(k in m for k in extra) for m in messages)


# --- answers -----------------------------------------------------------------------------------


def test_text_answer() -> None:
    out = decode(fixture_json("response_text.json"), model="my-alias")
    assert out["id"] == "chatcmpl-rX2aZ4uLKpqbmtkP1"
    assert out["object"] == "chat.completion" and out["model"] == "my-alias"
    assert isinstance(out["created"], int) and out["created"] > 1_600_000_000
    (choice,) = out["choices"]
    assert choice["index"] == 0 and choice["finish_reason"] == "stop"
    assert choice["message"] == {
        "role": "assistant",
        "content": "Bonjour, le café est prêt.",
        "refusal": None,
    }
    assert out["usage"] == {
        "prompt_tokens": 120,
        "completion_tokens": 9,
        "total_tokens": 129,
        "prompt_tokens_details": {"cached_tokens": 100},
    }


def test_parallel_function_calls() -> None:
    out = decode(fixture_json("response_tool_calls.json"))
    (choice,) = out["choices"]
    assert choice["finish_reason"] == "tool_calls"
    message = choice["message"]
    assert message["content"] is None
    first, second = message["tool_calls"]
    assert first == {
        "id": "fc-weather-paris",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city":"Paris","unit":"celsius"}'},
        "extra_content": {"google": {"thought_signature": "CiQBVKhc7sigPARIS0="}},
    }
    assert re.fullmatch(r"call_[0-9a-f]{24}", second["id"])
    assert second["function"] == {"name": "get_weather", "arguments": '{"city":"Tōkyō"}'}
    assert "extra_content" not in second
    # thinking tokens are billed as output
    assert out["usage"]["completion_tokens"] == 42 and out["usage"]["total_tokens"] == 122


def test_signature_round_trip() -> None:
    """A tool call decoded from Gemini, sent back by the client, carries its signature."""
    message = decode(fixture_json("response_tool_calls.json"))["choices"][0]["message"]
    calls = message["tool_calls"]
    history = [
        user(),
        message,
        *({"role": "tool", "tool_call_id": c["id"], "content": "sunny"} for c in calls),
    ]
    parts = encode({"messages": history})["contents"][1]["parts"]
    assert parts[0]["thoughtSignature"] == "CiQBVKhc7sigPARIS0="
    assert "thoughtSignature" not in parts[1]
    assert [p["functionCall"]["id"] for p in parts] == [c["id"] for c in calls]


def test_text_with_a_call_and_no_usage() -> None:
    out = decode(fixture_json("response_text_and_tool.json"))
    assert re.fullmatch(r"chatcmpl-[0-9a-f]{32}", out["id"])
    assert "usage" not in out
    (choice,) = out["choices"]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "Let me look that up."
    assert choice["message"]["tool_calls"][0]["function"] == {"name": "search", "arguments": "{}"}
    assert decode(fixture_json("response_text_and_tool.json"))["id"] != out["id"]


def test_thoughts_are_skipped() -> None:
    out = decode(fixture_json("response_thoughts.json"))
    assert out["choices"][0]["message"]["content"] == "4"
    assert out["usage"] == {"prompt_tokens": 10, "completion_tokens": 41, "total_tokens": 51}


@pytest.mark.parametrize(
    ("reason", "finish"),
    [
        ("STOP", "stop"),
        ("MAX_TOKENS", "length"),
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
        ("BLOCKLIST", "content_filter"),
        ("PROHIBITED_CONTENT", "content_filter"),
        ("SPII", "content_filter"),
        ("OTHER", "stop"),
        ("MALFORMED_FUNCTION_CALL", "stop"),
        ("A_REASON_FROM_THE_FUTURE", "stop"),
        (None, "stop"),
    ],
)
def test_finish_reasons(reason: str | None, finish: str) -> None:
    candidate: dict[str, Any] = {"content": {"parts": [{"text": "x"}], "role": "model"}}
    if reason:
        candidate["finishReason"] = reason
    assert decode({"candidates": [candidate]})["choices"][0]["finish_reason"] == finish


def test_filtered_answers() -> None:
    safety = decode(fixture_json("response_safety.json"))
    assert safety["choices"][0]["message"]["content"] == ""
    assert safety["choices"][0]["finish_reason"] == "content_filter"
    assert safety["usage"] == {"prompt_tokens": 14, "completion_tokens": 0, "total_tokens": 14}
    blocked = decode(fixture_json("response_blocked.json"))
    assert blocked["id"] == "chatcmpl-blocked-1"
    assert blocked["choices"][0]["message"]["content"] == ""
    assert blocked["choices"][0]["finish_reason"] == "content_filter"
    empty = decode({"candidates": []})
    assert empty["choices"][0]["finish_reason"] == "stop"


def test_several_candidates_are_several_choices() -> None:
    out = decode(fixture_json("response_candidates.json"), body_of(n=2))
    assert [(c["index"], c["message"]["content"], c["finish_reason"]) for c in out["choices"]] == [
        (0, "Blue, then", "length"),
        (1, "Red.", "stop"),
    ]
    assert out["usage"]["total_tokens"] == 11


@pytest.mark.parametrize(
    ("metadata", "usage"),
    [
        ({"promptTokenCount": 5}, {"prompt_tokens": 5, "completion_tokens": 0, "total_tokens": 5}),
        (
            {"promptTokenCount": 5, "toolUsePromptTokenCount": 2, "candidatesTokenCount": 1},
            {"prompt_tokens": 7, "completion_tokens": 1, "total_tokens": 8},
        ),
        (
            {"promptTokenCount": 9, "cachedContentTokenCount": 8, "candidatesTokenCount": 1},
            {
                "prompt_tokens": 9,
                "completion_tokens": 1,
                "total_tokens": 10,
                "prompt_tokens_details": {"cached_tokens": 8},
            },
        ),
        (None, None),
    ],
)
def test_usage(metadata: dict[str, Any] | None, usage: dict[str, Any] | None) -> None:
    native: dict[str, Any] = {"candidates": [{"content": {"parts": [{"text": "x"}]}}]}
    if metadata is not None:
        native["usageMetadata"] = metadata
    assert decode(native).get("usage") == usage


@pytest.mark.parametrize("raw", [b"<html>oops</html>", b"[1, 2]", b'{"candidates": [', b""])
def test_an_answer_that_is_not_a_json_object(raw: bytes) -> None:
    with pytest.raises(UpstreamProtocolError):
        codec.decode(chat(body_of()), UpstreamReply(200, raw, "application/json"), MODEL)


# --- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "status", "type_", "code"),
    [
        ("error_400.json", 400, "invalid_request_error", "INVALID_ARGUMENT"),
        ("error_403.json", 403, "permission_error", "PERMISSION_DENIED"),
        ("error_404.json", 404, "not_found_error", "NOT_FOUND"),
        ("error_429.json", 429, "rate_limit_error", "RESOURCE_EXHAUSTED"),
        ("error_500.json", 500, "server_error", "INTERNAL"),
        ("error_503_list.json", 503, "server_error", "UNAVAILABLE"),
    ],
)
def test_error_bodies(name: str, status: int, type_: str, code: str) -> None:
    native = fixture_json(name)
    raw = (FIXTURES / name).read_bytes()
    out = json.loads(codec.decode_error(chat(body_of()), status, raw, "application/json"))
    message = (native[0] if isinstance(native, list) else native)["error"]["message"]
    assert out == {"error": {"message": message, "type": type_, "param": None, "code": code}}


def test_error_bodies_that_are_not_googles() -> None:
    html = b"<html><body>502 Bad Gateway</body></html>"
    out = json.loads(codec.decode_error(chat(body_of()), 502, html, "text/html"))["error"]
    assert "HTTP 502" in out["message"] and "Bad Gateway" in out["message"]
    assert out["type"] == "server_error" and out["code"] is None
    empty = json.loads(codec.decode_error(chat(body_of()), 404, b"", "text/plain"))["error"]
    assert empty["message"] == "the Gemini API answered HTTP 404"
    assert empty["type"] == "not_found_error"
    odd = json.loads(codec.decode_error(chat(body_of()), 400, b'{"error": "x"}', "")).get("error")
    assert "HTTP 400" in odd["message"]


# --- streams -----------------------------------------------------------------------------------


def stream_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def test_text_stream() -> None:
    out, decoder = run_stream(stream_bytes("stream_text.sse"), model="my-alias")
    events = events_of(out)
    assert events[-1] == "[DONE]"
    assert {e["id"] for e in events[:-1]} == {"chatcmpl-stream-1"}
    assert {e["model"] for e in events[:-1]} == {"my-alias"}
    assert deltas(events) == [
        (0, {"role": "assistant", "content": ""}, None),
        (0, {"content": "Hello"}, None),
        (0, {"content": ", wörld — café 🙂"}, None),
        (0, {"content": "!"}, None),
        (0, {}, "stop"),
    ]
    assert all("usage" not in e for e in events[:-1])
    assert (decoder.usage.prompt, decoder.usage.completion, decoder.usage.cached) == (7, 6, 4)


def test_finish_sharing_an_event_with_text_is_not_lost() -> None:
    """The last event carries text and finishReason: the text is sent when the event comes,
    the finish chunk after it, when the stream ends."""
    decoder = codec.stream_decoder(chat(body_of(), stream=True), "m")
    fed = decoder.feed(stream_bytes("stream_text.sse"))
    assert deltas(events_of(fed))[-1] == (0, {"content": "!"}, None)
    assert deltas(events_of(decoder.flush())) == [(0, {}, "stop")]


def test_usage_is_known_as_soon_as_sent_and_the_last_one_wins() -> None:
    decoder = codec.stream_decoder(chat(body_of(), stream=True), "m")
    first, _, _ = stream_bytes("stream_text.sse").partition(b"\r\n\r\n")
    decoder.feed(first + b"\r\n\r\n")
    assert decoder.usage is not None and decoder.usage.prompt == 7
    assert decoder.usage.completion is None
    decoder.feed(stream_bytes("stream_text.sse")[len(first) + 4 :])
    assert (decoder.usage.prompt, decoder.usage.completion) == (7, 6)


def test_usage_chunk_when_asked() -> None:
    body = body_of(stream=True, stream_options={"include_usage": True})
    events = events_of(run_stream(stream_bytes("stream_text.sse"), body)[0])
    assert events[-1] == "[DONE]"
    assert events[-2]["choices"] == [] and events[-2]["usage"] == {
        "prompt_tokens": 7,
        "completion_tokens": 6,
        "total_tokens": 13,
        "prompt_tokens_details": {"cached_tokens": 4},
    }
    assert deltas(events)[-1] == (0, {}, "stop")


def test_streamed_parallel_function_calls() -> None:
    body = body_of(stream=True, stream_options={"include_usage": True})
    out, decoder = run_stream(stream_bytes("stream_tools.sse"), body)
    events = events_of(out)
    assert deltas(events) == [
        (0, {"role": "assistant", "content": ""}, None),
        (0, {"content": "Checking both cities."}, None),
        (
            0,
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "fc-1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                        "extra_content": {"google": {"thought_signature": "U0lHTkFUVVJF"}},
                    }
                ]
            },
            None,
        ),
        (
            0,
            {
                "tool_calls": [
                    {
                        "index": 1,
                        "id": "fc-2",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                    }
                ]
            },
            None,
        ),
        (0, {}, "tool_calls"),
    ]
    assert events[-2]["usage"]["completion_tokens"] == 25
    assert decoder.usage is not None and decoder.usage.completion == 25


def test_streamed_thoughts_are_skipped() -> None:
    events = events_of(run_stream(stream_bytes("stream_thoughts.sse"))[0])
    assert content_of(events) == "2, 3, 5, 7"
    assert deltas(events)[-1] == (0, {}, "stop")


@pytest.mark.parametrize(
    ("name", "text", "finish"),
    [
        ("stream_safety.sse", "Here is how", "content_filter"),
        ("stream_max_tokens.sse", "Once upon a", "length"),
    ],
)
def test_streamed_finish_reasons(name: str, text: str, finish: str) -> None:
    events = events_of(run_stream(stream_bytes(name))[0])
    assert content_of(events) == text
    assert deltas(events)[-1] == (0, {}, finish) and events[-1] == "[DONE]"


def test_blocked_prompt_stream() -> None:
    out, decoder = run_stream(stream_bytes("stream_blocked.sse"))
    events = events_of(out)
    assert deltas(events) == [
        (0, {"role": "assistant", "content": ""}, None),
        (0, {}, "content_filter"),
    ]
    assert events[-1] == "[DONE]" and decoder.usage is not None and decoder.usage.prompt == 5


def test_streamed_candidates() -> None:
    events = events_of(run_stream(stream_bytes("stream_candidates.sse"), body_of(n=2))[0])
    assert content_of(events, 0) == "Red." and content_of(events, 1) == "Blue"
    per_index = {i: [(d, f) for j, d, f in deltas(events) if j == i] for i in (0, 1)}
    for index in (0, 1):
        assert per_index[index][0] == ({"role": "assistant", "content": ""}, None)
    calls = [d["tool_calls"] for d, _ in per_index[1] if "tool_calls" in d]
    assert [c[0]["index"] for c in calls] == [0]
    assert calls[0][0]["function"] == {"name": "paint", "arguments": '{"color":"blue"}'}
    assert per_index[0][-1] == ({}, "stop") and per_index[1][-1] == ({}, "tool_calls")


def test_parts_keep_their_order_and_ids_hold_without_a_response_id() -> None:
    parts = [
        {"text": "a"},
        {"functionCall": {"name": "f", "args": {"x": [1, "é"]}}},
        {"text": "b"},
        {"text": "c"},
    ]
    event = {"candidates": [{"content": {"parts": parts, "role": "model"}}]}
    data = b"data: " + json.dumps(event).encode() + b"\n\n"
    event["candidates"][0]["finishReason"] = "STOP"  # Google ends every answer with one
    last = b"data: " + json.dumps(event).encode() + b"\n\n"
    events = events_of(run_stream([data, last])[0])
    assert len({e["id"] for e in events[:-1]}) == 1
    assert re.fullmatch(r"chatcmpl-[0-9a-f]{32}", events[0]["id"])
    shapes = [
        d.get("content", d.get("tool_calls", [{}])[0].get("index")) for _, d, _ in deltas(events)
    ]
    assert shapes == ["", "a", 0, "bc", "a", 1, "bc", None]
    args = [
        d["tool_calls"][0]["function"]["arguments"]
        for _, d, _ in deltas(events)
        if "tool_calls" in d
    ]
    assert args == ['{"x":[1,"é"]}'] * 2
    assert deltas(events)[-1] == (0, {}, "tool_calls")


def test_a_stream_cut_before_its_finish_reason_is_an_error() -> None:
    event = {"candidates": [{"content": {"parts": [{"text": "Hel"}], "role": "model"}}]}
    decoder = codec.stream_decoder(chat(body_of(), stream=True), "m")
    assert b"Hel" in decoder.feed(b"data: " + json.dumps(event).encode() + b"\n\n")
    with pytest.raises(UpstreamStreamError, match="finishReason"):
        decoder.flush()


def test_one_feed_gives_one_bytes_with_every_event() -> None:
    decoder = codec.stream_decoder(chat(body_of(), stream=True), "m")
    fed = decoder.feed(stream_bytes("stream_text.sse"))
    assert isinstance(fed, bytes) and content_of(events_of(fed)) == "Hello, wörld — café 🙂!"


def test_mid_stream_error() -> None:
    decoder = codec.stream_decoder(chat(body_of(), stream=True), "m")
    fed = decoder.feed(stream_bytes("stream_error.sse"))
    # the text before the error still reaches the client; the error comes with the next call
    assert content_of(events_of(fed)) == "Partial answer"
    with pytest.raises(UpstreamStreamError, match="overloaded") as caught:
        decoder.flush()
    assert caught.value.counts_against_backend is True


@pytest.mark.parametrize(
    ("status", "code", "fault"),
    [
        ("UNAVAILABLE", 503, True),
        ("INTERNAL", 500, True),
        ("RESOURCE_EXHAUSTED", 429, False),
        ("INVALID_ARGUMENT", 400, False),
    ],
)
def test_stream_error_verdicts(status: str, code: int, fault: bool) -> None:
    decoder = codec.stream_decoder(chat(body_of(), stream=True), "m")
    event = {"error": {"code": code, "message": "went wrong", "status": status}}
    with pytest.raises(UpstreamStreamError, match="went wrong") as caught:
        decoder.feed(b"data: " + json.dumps(event).encode() + b"\r\n\r\n")
    assert caught.value.counts_against_backend is fault


@pytest.mark.parametrize("data", [b"", b": keep-alive\n\n", b"\r\n"])
def test_a_stream_without_an_answer(data: bytes) -> None:
    decoder = codec.stream_decoder(chat(body_of(), stream=True), "m")
    assert decoder.feed(data) == b""
    with pytest.raises(UpstreamStreamError, match="ended without an answer"):
        decoder.flush()


def test_a_stream_event_that_is_not_json() -> None:
    decoder = codec.stream_decoder(chat(body_of(), stream=True), "m")
    with pytest.raises(UpstreamProtocolError):
        decoder.feed(b"data: <html>\n\n")


def test_stream_events_are_bounded() -> None:
    decoder = GoogleCodec(max_event_bytes=64).stream_decoder(chat(body_of(), stream=True), "m")
    with pytest.raises(UpstreamProtocolError, match="max_event_bytes"):
        decoder.feed(b'data: {"candidates": [' + b" " * 100)


def test_last_event_without_its_blank_line() -> None:
    data = stream_bytes("stream_max_tokens.sse").rstrip(b"\n")
    events = events_of(run_stream(data)[0])
    assert content_of(events) == "Once upon a" and events[-1] == "[DONE]"


# --- chunking fuzz -----------------------------------------------------------------------------

_VOLATILE = [
    (re.compile(rb'"created":\d+'), b'"created":0'),
    (re.compile(rb"call_[0-9a-f]{24}"), b"call_x"),
    (re.compile(rb"chatcmpl-[0-9a-f]{32}"), b"chatcmpl-x"),
]


def normalised(out: bytes) -> bytes:
    for pattern, value in _VOLATILE:
        out = pattern.sub(value, out)
    return out


def outcome(pieces: list[bytes], body: dict[str, Any]) -> tuple[bytes, str | None]:
    """The client bytes for one chunking, and the in-stream error if any."""
    decoder = codec.stream_decoder(chat(body, stream=True), "m")
    out: list[bytes] = []
    try:
        for piece in pieces:
            out.append(decoder.feed(piece))
        out.append(decoder.flush())
    except UpstreamStreamError as exc:
        return normalised(b"".join(out)), exc.message
    return normalised(b"".join(out)), None


def cut(data: bytes, rng: random.Random) -> list[bytes]:
    points = sorted(rng.sample(range(1, len(data)), rng.randint(1, min(12, len(data) - 1))))
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


@pytest.mark.parametrize("name", STREAMS)
def test_chunking_never_changes_the_output(name: str) -> None:
    body = body_of(stream=True, n=2, stream_options={"include_usage": True})
    lf = stream_bytes(name).replace(b"\r\n", b"\n")
    crlf = lf.replace(b"\n", b"\r\n")
    expected = outcome([lf], body)
    assert expected[0] or expected[1]
    if expected[1] is None:
        events_of(expected[0])
    rng = random.Random(f"google-{name}")
    for data in (lf, crlf):
        assert outcome([data], body) == expected
        assert outcome([data[i : i + 1] for i in range(len(data))], body) == expected
        for _ in range(150):
            assert outcome(cut(data, rng), body) == expected


def test_chunking_fuzz_covers_every_stream_fixture() -> None:
    assert len(STREAMS) >= 8 and "stream_error.sse" in STREAMS
