"""The Anthropic codec: OpenAI chat requests → Messages requests, Messages answers, errors and
streams → OpenAI's shapes (checked with the openai SDK's own types), for any network chunking."""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from nexusd.backends import anthropic
from nexusd.backends.anthropic import (
    CONVERSATION_START,
    DEFAULT_MAX_TOKENS,
    JSON_TOOL,
    AnthropicCodec,
)
from nexusd.backends.codec import Call
from nexusd.backends.translate import Untranslatable, UpstreamStreamError
from nexusd.backends.upstream import UpstreamError, UpstreamProtocolError, UpstreamReply
from nexusd.types import Endpoint

FIXTURES = Path(__file__).parent / "fixtures" / "anthropic"
NOW = 1_754_000_000
PNG = (  # a 1×1 PNG
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)
CITY_SCHEMA = {
    "type": "json_schema",
    "json_schema": {
        "name": "city_info",
        "schema": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
            "required": ["city", "population"],
            "additionalProperties": False,
        },
        "strict": True,
    },
}
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}},
    },
}

codec = AnthropicCodec()


@pytest.fixture(autouse=True)
def fixed_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """``created`` is the time of translation: fixed, so outputs of several runs compare."""
    monkeypatch.setattr(anthropic, "time", SimpleNamespace(time=lambda: NOW + 0.75))


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def fixture_json(name: str) -> Any:
    return json.loads(fixture_bytes(name))


def make_call(
    body: dict[str, Any], stream: bool = False, endpoint: Endpoint = Endpoint.CHAT
) -> Call:
    return Call(endpoint, body, json.dumps(body).encode(), stream=stream)


def chat(*messages: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """A chat request; one user "Hi" when no messages are given."""
    return {
        "model": "claude",
        "messages": list(messages) or [{"role": "user", "content": "Hi"}],
        **fields,
    }


def user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


def assistant(content: Any = None, **fields: Any) -> dict[str, Any]:
    return {"role": "assistant", "content": content, **fields}


def wire(body: dict[str, Any], stream: bool = False, model: str = "claude-x") -> dict[str, Any]:
    request = codec.encode(make_call(body, stream), model)
    assert request.path == "/v1/messages"
    return json.loads(request.body)


def untranslatable(body: dict[str, Any], **kwargs: Any) -> Untranslatable:
    with pytest.raises(Untranslatable) as info:
        codec.encode(make_call(body, **kwargs), "claude-x")
    assert info.value.status == 400 and info.value.counts_against_backend is False
    return info.value


def decode(reply: dict[str, Any] | str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    raw = fixture_bytes(reply) if isinstance(reply, str) else json.dumps(reply).encode()
    out = codec.decode(make_call(body or chat()), UpstreamReply(200, raw, "application/json"), "m")
    completion = json.loads(out)
    ChatCompletion.model_validate(completion)
    return completion


def message_reply(content: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-haiku-4-5",
        "content": content,
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 3, "output_tokens": 4},
        **fields,
    }


# --- streams: helpers --------------------------------------------------------------------------


def sse(event: str, payload: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(payload)}\n\n".encode()


START = sse(
    "message_start",
    {
        "type": "message_start",
        "message": {
            "id": "msg_s",
            "type": "message",
            "role": "assistant",
            "content": [],
            "model": "claude-haiku-4-5",
            "stop_reason": None,
            "usage": {"input_tokens": 5, "output_tokens": 1},
        },
    },
)
STOP = sse("message_stop", {"type": "message_stop"})


def run_stream(
    pieces: list[bytes], body: dict[str, Any] | None = None
) -> tuple[bytes, UpstreamError | None, anthropic.AnthropicStreamDecoder]:
    """Every feed and the flush; the error raised, if any, with what came before it."""
    decoder = codec.stream_decoder(make_call(body or chat(), stream=True), "requested")
    out: list[bytes] = []
    try:
        for piece in pieces:
            out.append(decoder.feed(piece))
        out.append(decoder.flush())
    except UpstreamError as exc:
        return b"".join(out), exc, decoder
    return b"".join(out), None, decoder


def events(out: bytes) -> list[dict[str, Any] | str]:
    """The client's events: chunk objects (validated) and ``[DONE]``."""
    assert out.endswith(b"\n\n") or not out
    parsed: list[dict[str, Any] | str] = []
    for raw in out.decode().split("\n\n")[:-1]:
        assert raw.startswith("data: ") and "\n" not in raw
        data = raw[len("data: ") :]
        if data == "[DONE]":
            parsed.append(data)
            continue
        chunk = json.loads(data)
        ChatCompletionChunk.model_validate(chunk)
        parsed.append(chunk)
    return parsed


def accumulate(out: bytes, body: dict[str, Any] | None = None) -> Any:
    """The streamed answer put together by the openai SDK's own stream accumulator."""
    tools = (body or {}).get("tools")
    state = ChatCompletionStreamState(**({"input_tools": tools} if tools else {}))
    for event in events(out):
        if event != "[DONE]":
            state.handle_chunk(ChatCompletionChunk.model_validate(event))
    return state.get_final_completion()


def deltas(out: bytes) -> list[dict[str, Any]]:
    return [e["choices"][0]["delta"] for e in events(out) if e != "[DONE]" and e["choices"]]


# --- the request -------------------------------------------------------------------------------


def test_dialect_and_auth_headers() -> None:
    assert AnthropicCodec.dialect == "anthropic"
    assert codec.auth_headers("sk-ant-1") == {
        "x-api-key": "sk-ant-1",
        "anthropic-version": "2023-06-01",
    }


def test_an_agent_conversation_translates_whole_and_leaves_the_body_alone() -> None:
    body = fixture_json("request_agent.openai.json")
    before = copy.deepcopy(body)
    got = wire(body, stream=True, model="claude-sonnet-4-5-20250929")
    assert got == fixture_json("request_agent.anthropic.json")
    assert body == before


def test_the_model_sent_is_the_one_given() -> None:
    assert wire(chat(), model="claude-opus-4-1")["model"] == "claude-opus-4-1"


@pytest.mark.parametrize("stream", [False, True])
def test_stream_is_sent_only_for_a_streamed_call(stream: bool) -> None:
    got = wire(chat(stream=True), stream=stream)
    assert got.get("stream") is (True if stream else None)


def test_a_plain_request() -> None:
    assert wire(chat()) == {
        "model": "claude-x",
        "max_tokens": DEFAULT_MAX_TOKENS,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
    }


def test_system_and_developer_messages_become_the_system_field() -> None:
    got = wire(
        chat(
            {"role": "system", "content": "Be terse."},
            user("Hi"),
            {"role": "developer", "content": [{"type": "text", "text": "Use French."}]},
            {
                "role": "system",
                "content": [{"type": "text", "text": "A"}, {"type": "text", "text": "B"}],
            },
            assistant("Salut"),
            user("Ça va ?"),
        )
    )
    assert got["system"] == "Be terse.\n\nUse French.\n\nAB"
    assert [m["role"] for m in got["messages"]] == ["user", "assistant", "user"]


def test_no_system_message_no_system_field() -> None:
    assert "system" not in wire(chat())
    assert "system" not in wire(chat({"role": "system", "content": ""}, user("Hi")))


def test_a_system_part_with_cache_control_keeps_the_blocks() -> None:
    cached = {"type": "ephemeral"}
    got = wire(
        chat(
            {"role": "system", "content": "Intro."},
            {
                "role": "system",
                "content": [
                    {"type": "text", "text": "A long manual.", "cache_control": cached},
                    {"type": "text", "text": ""},
                ],
            },
            user("Hi"),
        )
    )
    assert got["system"] == [
        {"type": "text", "text": "Intro."},
        {"type": "text", "text": "A long manual.", "cache_control": cached},
    ]


def test_same_role_runs_are_merged_into_one_turn() -> None:
    got = wire(
        chat(user("One"), user([{"type": "text", "text": "Two"}]), assistant("A"), assistant("B"))
    )
    assert got["messages"] == [
        {
            "role": "user",
            "content": [{"type": "text", "text": "One"}, {"type": "text", "text": "Two"}],
        },
        {
            "role": "assistant",
            "content": [{"type": "text", "text": "A"}, {"type": "text", "text": "B"}],
        },
    ]


def test_a_conversation_opening_with_the_assistant_gets_a_user_turn_first() -> None:
    got = wire(chat({"role": "system", "content": "S"}, assistant("Hello! Ask me."), user("Why?")))
    assert got["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": CONVERSATION_START}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Hello! Ask me."}]},
        {"role": "user", "content": [{"type": "text", "text": "Why?"}]},
    ]


def test_a_system_prompt_alone_gets_a_user_turn() -> None:
    got = wire(chat({"role": "system", "content": "Write a haiku."}))
    assert got["system"] == "Write a haiku."
    assert got["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": CONVERSATION_START}]}
    ]


def test_empty_text_is_left_out() -> None:
    got = wire(chat(user("Hi"), assistant(""), user([{"type": "text", "text": ""}]), user("Again")))
    assert got["messages"] == [
        {
            "role": "user",
            "content": [{"type": "text", "text": "Hi"}, {"type": "text", "text": "Again"}],
        }
    ]


def test_a_final_assistant_prefill_loses_its_trailing_whitespace() -> None:
    got = wire(chat(user("Pick A or B"), assistant("The answer is ")))
    assert got["messages"][-1] == {
        "role": "assistant",
        "content": [{"type": "text", "text": "The answer is"}],
    }
    got = wire(chat(user("Hi"), assistant("  \n")))
    assert [m["role"] for m in got["messages"]] == ["user"]


def test_images_data_url_and_http_url() -> None:
    got = wire(
        chat(
            user(
                [
                    {"type": "text", "text": "Compare"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                    {"type": "image_url", "image_url": "https://example.com/cat.webp"},
                    {
                        "type": "image_url",
                        "image_url": {"url": "http://example.com/dog.gif", "detail": "low"},
                        "cache_control": {"type": "ephemeral"},
                    },
                ]
            )
        )
    )
    assert got["messages"][0]["content"] == [
        {"type": "text", "text": "Compare"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.webp"}},
        {
            "type": "image",
            "source": {"type": "url", "url": "http://example.com/dog.gif"},
            "cache_control": {"type": "ephemeral"},
        },
    ]


@pytest.mark.parametrize(
    "url",
    [
        f"data:image/bmp;base64,{PNG}",  # a type Anthropic does not take
        "data:image/png;base64,not base64!",
        "ftp://example.com/a.png",
    ],
)
def test_images_anthropic_cannot_take_are_refused(url: str) -> None:
    error = untranslatable(chat(user([{"type": "image_url", "image_url": {"url": url}}])))
    assert error.param == "messages" and "messages[0]" in error.message


def test_a_pdf_sent_inline_becomes_a_document() -> None:
    part = {
        "type": "file",
        "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBERi0xLjQK"},
    }
    got = wire(chat(user([part, {"type": "text", "text": "Summarise"}])))
    assert got["messages"][0]["content"][0] == {
        "type": "document",
        "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0xLjQK"},
    }


@pytest.mark.parametrize(
    "part",
    [
        {"type": "file", "file": {"file_id": "file-abc"}},
        {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
        {"type": "text"},
        "just a string",
    ],
)
def test_content_parts_without_an_equivalent_are_refused(part: Any) -> None:
    assert untranslatable(chat(user([part]))).param == "messages"


def test_tool_calls_and_results_across_turns_keep_their_ids() -> None:
    got = wire(
        chat(
            user("Weather in SF and Paris, then the time?"),
            assistant(
                None,
                tool_calls=[
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"location":"SF"}'},
                    },
                    {
                        "id": "call_2",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": {"location": "Paris"}},
                    },
                ],
            ),
            {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
            {"role": "tool", "tool_call_id": "call_2", "content": "22C"},
            assistant(
                "Now the time.",
                tool_calls=[
                    {
                        "id": "call_3",
                        "type": "function",
                        "function": {"name": "now", "arguments": ""},
                    }
                ],
            ),
            {
                "role": "tool",
                "tool_call_id": "call_3",
                "content": [{"type": "text", "text": "noon"}],
            },
            assistant("18C, 22C, noon."),
            user("Thanks"),
        )
    )
    assert got["messages"] == [
        {
            "role": "user",
            "content": [{"type": "text", "text": "Weather in SF and Paris, then the time?"}],
        },
        {
            "role": "assistant",
            "content": [
                {
                    "type": "tool_use",
                    "id": "call_1",
                    "name": "get_weather",
                    "input": {"location": "SF"},
                },
                {
                    "type": "tool_use",
                    "id": "call_2",
                    "name": "get_weather",
                    "input": {"location": "Paris"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": "18C"},
                {"type": "tool_result", "tool_use_id": "call_2", "content": "22C"},
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Now the time."},
                {"type": "tool_use", "id": "call_3", "name": "now", "input": {}},
            ],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "call_3", "content": "noon"}],
        },
        {"role": "assistant", "content": [{"type": "text", "text": "18C, 22C, noon."}]},
        {"role": "user", "content": [{"type": "text", "text": "Thanks"}]},
    ]


def test_tool_results_come_first_in_their_user_turn() -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    got = wire(
        chat(
            user("Go"),
            assistant(None, tool_calls=[call]),
            user("(while you work: hurry)"),
            {"role": "tool", "tool_call_id": "c1", "content": ""},
        )
    )
    assert got["messages"][-1]["content"] == [
        {"type": "tool_result", "tool_use_id": "c1"},
        {"type": "text", "text": "(while you work: hurry)"},
    ]


def test_a_tool_result_with_an_image_keeps_its_blocks() -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "screenshot", "arguments": "{}"}}
    content = [
        {"type": "text", "text": "Here:"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
    ]
    got = wire(
        chat(
            user("Look"),
            assistant(None, tool_calls=[call]),
            {"role": "tool", "tool_call_id": "c1", "content": content},
        )
    )
    assert got["messages"][-1]["content"] == [
        {
            "type": "tool_result",
            "tool_use_id": "c1",
            "content": [
                {"type": "text", "text": "Here:"},
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                },
            ],
        }
    ]


@pytest.mark.parametrize(
    "messages",
    [
        [user("Hi"), {"role": "tool", "content": "no id"}],
        [user("Hi"), assistant(None, tool_calls=[{"type": "function", "function": {"name": "f"}}])],
        [
            user("Hi"),
            assistant(
                None, tool_calls=[{"id": "c", "function": {"name": "f", "arguments": "not json"}}]
            ),
        ],
        [user("Hi"), {"role": "function", "name": "f", "content": "legacy"}],
        [user(42)],
        ["not an object"],
        [],
    ],
)
def test_malformed_conversations_are_refused(messages: list[Any]) -> None:
    assert untranslatable({"model": "m", "messages": messages}).param == "messages"


def test_tools_become_anthropic_tools() -> None:
    got = wire(
        chat(
            tools=[
                WEATHER_TOOL,
                {"type": "function", "function": {"name": "now"}},
                {
                    "type": "function",
                    "function": {
                        "name": "loose",
                        "parameters": {"properties": {"x": {}}},
                        "strict": True,
                    },
                },
            ]
        )
    )
    assert got["tools"] == [
        {
            "name": "get_weather",
            "description": "Current weather",
            "input_schema": {"type": "object", "properties": {"location": {"type": "string"}}},
        },
        {"name": "now", "input_schema": {"type": "object", "properties": {}}},
        {"name": "loose", "input_schema": {"type": "object", "properties": {"x": {}}}},
    ]
    assert "tool_choice" not in got


@pytest.mark.parametrize(
    "tools",
    [[{"type": "custom", "custom": {"name": "grammar"}}], [{"type": "function"}], "get_weather"],
)
def test_tools_without_an_equivalent_are_refused(tools: Any) -> None:
    assert untranslatable(chat(tools=tools)).param == "tools"


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", {"type": "auto"}),
        ("required", {"type": "any"}),
        ("none", {"type": "none"}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            {"type": "tool", "name": "get_weather"},
        ),
    ],
)
def test_tool_choice(choice: Any, expected: dict[str, Any]) -> None:
    assert wire(chat(tools=[WEATHER_TOOL], tool_choice=choice))["tool_choice"] == expected


@pytest.mark.parametrize("choice", ["sometimes", {"type": "allowed_tools", "allowed_tools": {}}])
def test_tool_choice_without_an_equivalent_is_refused(choice: Any) -> None:
    assert untranslatable(chat(tools=[WEATHER_TOOL], tool_choice=choice)).param == "tool_choice"


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        (None, {"type": "auto", "disable_parallel_tool_use": True}),
        ("auto", {"type": "auto", "disable_parallel_tool_use": True}),
        ("required", {"type": "any", "disable_parallel_tool_use": True}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
        ),
        ("none", {"type": "none"}),
    ],
)
def test_parallel_tool_calls_false(choice: Any, expected: dict[str, Any]) -> None:
    body = chat(tools=[WEATHER_TOOL], parallel_tool_calls=False)
    if choice is not None:
        body["tool_choice"] = choice
    assert wire(body)["tool_choice"] == expected


def test_parallel_tool_calls_true_or_without_tools_changes_nothing() -> None:
    assert "tool_choice" not in wire(chat(tools=[WEATHER_TOOL], parallel_tool_calls=True))
    got = wire(chat(parallel_tool_calls=False, tool_choice="auto"))
    assert "tool_choice" not in got and "tools" not in got


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, DEFAULT_MAX_TOKENS),
        ({"max_tokens": None}, DEFAULT_MAX_TOKENS),
        ({"max_tokens": 50}, 50),
        ({"max_completion_tokens": 70}, 70),
        ({"max_tokens": 50, "max_completion_tokens": 70}, 70),
    ],
)
def test_max_tokens(fields: dict[str, Any], expected: int) -> None:
    assert wire(chat(**fields))["max_tokens"] == expected


@pytest.mark.parametrize(
    "fields", [{"max_tokens": 0}, {"max_tokens": "100"}, {"max_completion_tokens": True}]
)
def test_max_tokens_must_be_a_positive_integer(fields: dict[str, Any]) -> None:
    assert untranslatable(chat(**fields)).param == next(iter(fields))


@pytest.mark.parametrize(
    ("stop", "expected"),
    [
        ("END", ["END"]),
        (["a", "\n\nHuman:"], ["a", "\n\nHuman:"]),
        ([], None),
        ("", None),
        (None, None),
    ],
)
def test_stop_becomes_stop_sequences(stop: Any, expected: list[str] | None) -> None:
    assert wire(chat(stop=stop)).get("stop_sequences") == expected


def test_stop_of_another_type_is_refused() -> None:
    assert untranslatable(chat(stop=[1, 2])).param == "stop"


@pytest.mark.parametrize(("given", "sent"), [(0, 0), (0.3, 0.3), (1, 1), (1.5, 1), (2, 1)])
def test_temperature_is_clamped_to_anthropics_range(given: float, sent: float) -> None:
    assert wire(chat(temperature=given))["temperature"] == sent


def test_top_p_and_top_k() -> None:
    got = wire(chat(top_p=0.9, top_k=40))
    assert (got["top_p"], got["top_k"]) == (0.9, 40)
    got = wire(chat(top_p=0.9, temperature=0.2))  # recent Claude models refuse both
    assert got["temperature"] == 0.2 and "top_p" not in got


@pytest.mark.parametrize("fields", [{"temperature": "hot"}, {"top_p": True}])
def test_sampling_values_must_be_numbers(fields: dict[str, Any]) -> None:
    assert untranslatable(chat(**fields)).param == next(iter(fields))


def test_user_becomes_metadata_user_id() -> None:
    assert wire(chat(user="u-42"))["metadata"] == {"user_id": "u-42"}


def test_fields_anthropic_cannot_take_are_dropped_with_a_debug_line(
    translate_log: pytest.LogCaptureFixture,
) -> None:
    extras = {
        "frequency_penalty": 0.5,
        "presence_penalty": 0.5,
        "seed": 1,
        "logit_bias": {"1": 2},
        "service_tier": "auto",
        "reasoning_effort": "high",
        "store": True,
        "metadata": {"k": "v"},
        "n": 1,
        "logprobs": False,
        "stream_options": {"include_usage": True},
    }
    got = wire(chat(**extras))
    assert set(got) == {"model", "max_tokens", "messages"}
    assert (
        "frequency_penalty, logit_bias, metadata, presence_penalty, reasoning_effort, seed"
        in translate_log.text
    )


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"n": 2}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"top_logprobs": 3}, "top_logprobs"),
        ({"functions": [{"name": "f"}]}, "functions"),
        ({"function_call": "auto"}, "function_call"),
    ],
)
def test_what_anthropic_cannot_do_is_refused(fields: dict[str, Any], param: str) -> None:
    assert untranslatable(chat(**fields)).param == param


@pytest.mark.parametrize("endpoint", [Endpoint.COMPLETIONS, Endpoint.EMBEDDINGS])
def test_only_chat_is_translated(endpoint: Endpoint) -> None:
    error = untranslatable({"model": "m", "prompt": "Hi", "input": "Hi"}, endpoint=endpoint)
    assert "Anthropic backends serve chat completions only" in error.message


def test_json_object_is_emulated_with_a_forced_tool() -> None:
    got = wire(chat(response_format={"type": "json_object"}))
    assert got["tools"] == [
        {
            "name": JSON_TOOL,
            "description": anthropic._JSON_TOOL_DESCRIPTION,
            "input_schema": {"type": "object"},
        }
    ]
    assert got["tool_choice"] == {"type": "tool", "name": JSON_TOOL}


def test_json_schema_is_emulated_with_a_tool_named_after_it() -> None:
    fmt = copy.deepcopy(CITY_SCHEMA)
    fmt["json_schema"]["description"] = "Facts about a city"
    got = wire(chat(response_format=fmt, parallel_tool_calls=False))
    (tool,) = got["tools"]
    assert tool["name"] == "city_info"
    assert tool["input_schema"] == CITY_SCHEMA["json_schema"]["schema"]
    assert tool["description"].startswith("Facts about a city\n\n")
    assert got["tool_choice"] == {
        "type": "tool",
        "name": "city_info",
        "disable_parallel_tool_use": True,
    }


def test_json_output_with_the_clients_tools() -> None:
    got = wire(chat(response_format={"type": "json_object"}, tools=[WEATHER_TOOL]))
    assert [t["name"] for t in got["tools"]] == ["get_weather", JSON_TOOL]
    assert got["tool_choice"] == {"type": "any"}  # a client tool, or the JSON answer
    got = wire(
        chat(response_format={"type": "json_object"}, tools=[WEATHER_TOOL], tool_choice="none")
    )
    assert got["tool_choice"] == {"type": "tool", "name": JSON_TOOL}
    choice = {"type": "function", "function": {"name": "get_weather"}}
    got = wire(
        chat(response_format={"type": "json_object"}, tools=[WEATHER_TOOL], tool_choice=choice)
    )
    assert got["tool_choice"] == {"type": "tool", "name": "get_weather"}


def test_the_json_tool_never_shadows_a_client_tool() -> None:
    same = {"type": "function", "function": {"name": "city_info"}}
    got = wire(chat(response_format=CITY_SCHEMA, tools=[same]))
    assert [t["name"] for t in got["tools"]] == ["city_info", "city_info_2"]


@pytest.mark.parametrize(
    ("json_schema", "name", "schema"),
    [
        (
            {"name": "has spaces!", "schema": {"properties": {}}},
            JSON_TOOL,
            {"type": "object", "properties": {}},
        ),
        ({"name": "bare"}, "bare", {"type": "object"}),
    ],
)
def test_json_schema_edge_cases(
    json_schema: dict[str, Any], name: str, schema: dict[str, Any]
) -> None:
    got = wire(chat(response_format={"type": "json_schema", "json_schema": json_schema}))
    assert (got["tools"][0]["name"], got["tools"][0]["input_schema"]) == (name, schema)


def test_text_response_format_is_plain() -> None:
    assert "tools" not in wire(chat(response_format={"type": "text"}))


@pytest.mark.parametrize(
    "fmt",
    [
        {"type": "json_schema", "json_schema": {"name": "list", "schema": {"type": "array"}}},
        {"type": "json_schema"},
        {"type": "grammar", "grammar": "root ::= x"},
        "json",
    ],
)
def test_response_formats_without_an_equivalent_are_refused(fmt: Any) -> None:
    assert untranslatable(chat(response_format=fmt)).param == "response_format"


# --- the answer --------------------------------------------------------------------------------


def test_a_text_answer() -> None:
    got = decode("message_text.json")
    assert got == {
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
        "object": "chat.completion",
        "created": NOW,
        "model": "claude-sonnet-4-5-20250929",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Hello! How can I help — café ☕?",
                    "refusal": None,
                },
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 2112,  # input + cache reads + cache writes
            "completion_tokens": 9,
            "total_tokens": 2121,
            "prompt_tokens_details": {"cached_tokens": 2000},
        },
    }


def test_parallel_tool_calls_in_an_answer() -> None:
    got = decode("message_tool_use.json", chat(tools=[WEATHER_TOOL]))
    choice = got["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "I'll check both cities."
    assert choice["message"]["tool_calls"] == [
        {
            "id": "toolu_01A09q90qw90lq917835lq9",
            "type": "function",
            "function": {
                "name": "get_weather",
                "arguments": '{"location":"San Francisco, CA","unit":"celsius"}',
            },
        },
        {
            "id": "toolu_01B77x5bb4c1pz",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"location":"Paris, France"}'},
        },
    ]
    assert got["usage"] == {"prompt_tokens": 472, "completion_tokens": 89, "total_tokens": 561}


def test_a_tool_call_alone_has_no_content() -> None:
    message = decode("message_tool_only.json")["choices"][0]["message"]
    assert message["content"] is None
    assert message["tool_calls"][0]["function"] == {"name": "get_time", "arguments": "{}"}


def test_the_json_tools_answer_is_the_content() -> None:
    got = decode("message_json.json", chat(response_format=CITY_SCHEMA))
    choice = got["choices"][0]
    assert choice["finish_reason"] == "stop"
    assert "tool_calls" not in choice["message"]
    assert json.loads(choice["message"]["content"]) == {"city": "Zürich", "population": 421878}
    # the same answer to a request that did not ask for JSON is a tool call
    choice = decode("message_json.json")["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["tool_calls"][0]["function"]["name"] == "city_info"


def test_json_object_answer() -> None:
    reply = message_reply(
        [{"type": "tool_use", "id": "t", "name": JSON_TOOL, "input": {"ok": True}}],
        stop_reason="tool_use",
    )
    got = decode(reply, chat(response_format={"type": "json_object"}))
    assert got["choices"][0]["message"]["content"] == '{"ok":true}'
    assert got["choices"][0]["finish_reason"] == "stop"


def test_thinking_is_skipped() -> None:
    got = decode("message_thinking.json")
    assert got["choices"][0]["message"]["content"] == "42"
    assert got["choices"][0]["finish_reason"] == "stop"
    assert got["usage"] == {"prompt_tokens": 30, "completion_tokens": 120, "total_tokens": 150}


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("pause_turn", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("refusal", "content_filter"),
        ("something_new", "stop"),
        (None, "stop"),
    ],
)
def test_finish_reasons(stop_reason: str | None, finish: str) -> None:
    got = decode(message_reply([{"type": "text", "text": "x"}], stop_reason=stop_reason))
    assert got["choices"][0]["finish_reason"] == finish


def test_an_answer_without_text_or_tools_has_empty_content() -> None:
    got = decode(message_reply([], id=None, model=None, usage=None))
    assert got["choices"][0]["message"]["content"] == ""
    assert got["id"].startswith("chatcmpl-") and got["model"] == "m" and "usage" not in got


@pytest.mark.parametrize(
    "body",
    [
        b"<html>Bad gateway</html>",
        b"[1, 2]",
        b'{"id": "msg_1", "type": "message"',
        b'{"type": "message"}',
    ],
)
def test_an_answer_that_is_not_a_message_is_a_protocol_error(body: bytes) -> None:
    with pytest.raises(UpstreamProtocolError, match="invalid Anthropic response"):
        codec.decode(make_call(chat()), UpstreamReply(200, body, "application/json"), "m")


# --- errors ------------------------------------------------------------------------------------

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    529: "server_error",
}


@pytest.mark.parametrize("status", sorted(ERROR_TYPES))
def test_anthropic_errors_become_openai_errors(status: int) -> None:
    anthropic_body = fixture_json("errors.json")[str(status)]
    out = codec.decode_error(
        make_call(chat()), status, json.dumps(anthropic_body).encode(), "application/json"
    )
    assert json.loads(out) == {
        "error": {
            "message": anthropic_body["error"]["message"],
            "type": ERROR_TYPES[status],
            "param": None,
            "code": anthropic_body["error"]["type"],
        }
    }


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            b"<html><body>502 Bad Gateway</body></html>",
            "Anthropic answered HTTP 502: <html><body>502 Bad Gateway",
        ),
        (b"", "Anthropic answered HTTP 502 with an empty body"),
        (b'{"error": "flat"}', 'Anthropic answered HTTP 502: {"error": "flat"}'),
    ],
)
def test_error_bodies_that_are_not_anthropics(body: bytes, message: str) -> None:
    error = json.loads(codec.decode_error(make_call(chat()), 502, body, "text/html"))["error"]
    assert error["message"].startswith(message)
    assert error["type"] == "server_error" and error["code"] is None


# --- streams -----------------------------------------------------------------------------------


def test_a_streamed_text_answer() -> None:
    out, error, decoder = run_stream([fixture_bytes("stream_text.sse")])
    assert error is None
    got = events(out)
    assert got[-1] == "[DONE]"
    first, *middle, last = got[:-1]
    assert first == {
        "id": "msg_01StreamText9",
        "object": "chat.completion.chunk",
        "created": NOW,
        "model": "claude-sonnet-4-5-20250929",
        "choices": [
            {
                "index": 0,
                "delta": {"role": "assistant", "content": ""},
                "logprobs": None,
                "finish_reason": None,
            }
        ],
    }
    assert [c["choices"][0]["delta"] for c in middle] == [
        {"content": "Hello"},
        {"content": ", café ☕ — 日本語"},
        {"content": "!\n\nLine two 🙂"},
    ]
    assert all(c["id"] == first["id"] and c["model"] == first["model"] for c in got[:-1])
    assert last["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "stop",
    }
    assert "usage" not in last  # not asked for
    assert decoder.usage == anthropic.TokenUsage(prompt=335, completion=15, cached=300)
    final = accumulate(out)
    assert final.choices[0].message.content == "Hello, café ☕ — 日本語!\n\nLine two 🙂"


def test_streamed_usage_when_asked() -> None:
    body = chat(stream_options={"include_usage": True})
    out, _, _ = run_stream([fixture_bytes("stream_text.sse")], body)
    *_, finish, usage, done = events(out)
    assert finish["choices"][0]["finish_reason"] == "stop"
    assert usage["choices"] == [] and done == "[DONE]"
    assert usage["usage"] == {
        "prompt_tokens": 335,
        "completion_tokens": 15,
        "total_tokens": 350,
        "prompt_tokens_details": {"cached_tokens": 300},
    }
    assert accumulate(out).usage.prompt_tokens == 335


def test_usage_is_known_from_message_start() -> None:
    decoder = codec.stream_decoder(make_call(chat(), stream=True), "m")
    assert decoder.usage is None
    decoder.feed(START)
    assert decoder.usage == anthropic.TokenUsage(prompt=5, completion=1, cached=0)
    delta = {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn"},
        "usage": {"output_tokens": 9, "input_tokens": 7, "cache_read_input_tokens": 3},
    }
    decoder.feed(sse("message_delta", delta))
    assert decoder.usage == anthropic.TokenUsage(prompt=10, completion=9, cached=3)


def test_streamed_parallel_tool_calls() -> None:
    body = chat(tools=[WEATHER_TOOL])
    out, error, _ = run_stream([fixture_bytes("stream_tools.sse")], body)
    assert error is None
    got = deltas(out)
    starts = [d["tool_calls"][0] for d in got if "tool_calls" in d and "id" in d["tool_calls"][0]]
    assert starts == [
        {
            "index": 0,
            "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
            "type": "function",
            "function": {"name": "get_weather", "arguments": ""},
        },
        {
            "index": 1,
            "id": "toolu_02Paris8x",
            "type": "function",
            "function": {"name": "get_weather", "arguments": ""},
        },
    ]
    pieces = [
        d["tool_calls"][0] for d in got if "tool_calls" in d and "id" not in d["tool_calls"][0]
    ]
    assert all(p["function"]["arguments"] for p in pieces)  # the empty partial_json is skipped
    assert [p["index"] for p in pieces] == [0, 0, 0, 1, 1]
    assert events(out)[-2]["choices"][0]["finish_reason"] == "tool_calls"
    final = accumulate(out, body).choices[0]
    assert final.message.content == "Checking both cities."
    calls = final.message.tool_calls
    assert [c.id for c in calls] == ["toolu_01T1x1fJ34qAmk2tNTrN7Up6", "toolu_02Paris8x"]
    # the streamed arguments say what the unstreamed answer says
    unstreamed = decode("message_tool_use.json", body)["choices"][0]["message"]["tool_calls"]
    assert [json.loads(c.function.arguments) for c in calls] == [
        json.loads(c["function"]["arguments"]) for c in unstreamed
    ]


def test_streamed_json_emulation() -> None:
    body = chat(response_format=CITY_SCHEMA)
    out, error, _ = run_stream([fixture_bytes("stream_json.sse")], body)
    assert error is None
    assert not any("tool_calls" in d for d in deltas(out))
    assert events(out)[-2]["choices"][0]["finish_reason"] == "stop"
    content = accumulate(out).choices[0].message.content
    assert json.loads(content) == {"city": "Zürich", "population": 421878}
    # without response_format, the same stream is a tool call
    out, _, _ = run_stream([fixture_bytes("stream_json.sse")])
    final = accumulate(out).choices[0]
    assert (
        final.finish_reason == "tool_calls"
        and final.message.tool_calls[0].function.name == "city_info"
    )


def test_streamed_thinking_is_skipped() -> None:
    out, _, _ = run_stream([fixture_bytes("stream_thinking.sse")])
    assert deltas(out) == [{"role": "assistant", "content": ""}, {"content": "42"}, {}]
    assert events(out)[-2]["choices"][0]["finish_reason"] == "length"


def test_a_text_block_may_start_with_text() -> None:
    block = {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "text", "text": "Hi"},
    }
    out, _, _ = run_stream([START, sse("content_block_start", block), STOP])
    assert deltas(out)[1] == {"content": "Hi"}


def test_an_error_event_mid_stream() -> None:
    out, error, _ = run_stream([fixture_bytes("stream_error.sse")])
    assert isinstance(error, UpstreamStreamError)
    assert error.message == "Anthropic error (overloaded_error): Overloaded"
    assert error.counts_against_backend is True
    # what came before the error went out first, in the same read
    assert [d.get("content") for d in deltas(out)] == ["", "Once upon", " a time"]


@pytest.mark.parametrize(
    ("type_", "counts"),
    [
        ("overloaded_error", True),
        ("api_error", True),
        ("rate_limit_error", False),
        ("invalid_request_error", False),
    ],
)
def test_an_error_event_says_whose_fault(type_: str, counts: bool) -> None:
    error_event = sse("error", {"type": "error", "error": {"type": type_, "message": "m"}})
    for pieces in ([START + error_event], [START, error_event], [error_event]):
        _, error, _ = run_stream(pieces)
        assert isinstance(error, UpstreamStreamError)
        assert error.message == f"Anthropic error ({type_}): m"
        assert error.counts_against_backend is counts


def test_a_stream_without_message_stop_fails_at_its_end() -> None:
    out, error, _ = run_stream([fixture_bytes("stream_truncated.sse")])
    assert isinstance(error, UpstreamStreamError)
    assert "ended before message_stop" in error.message
    assert [d.get("content") for d in deltas(out)] == ["", "Half an ans", "wer"]


def test_pings_and_unknown_events_say_nothing() -> None:
    decoder = codec.stream_decoder(make_call(chat(), stream=True), "m")
    assert decoder.feed(b'event: ping\ndata: {"type": "ping"}\n\n') == b""
    decoder.feed(START)
    assert decoder.feed(sse("future_event", {"type": "future_event", "x": 1})) == b""
    citations = {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "citations_delta", "citation": {}},
    }
    assert decoder.feed(sse("content_block_delta", citations)) == b""
    assert decoder.feed(b": a comment\n\n") == b""


def test_one_feed_gives_one_bytes_object_with_every_event() -> None:
    decoder = codec.stream_decoder(make_call(chat(), stream=True), "m")
    out = decoder.feed(fixture_bytes("stream_text.sse"))
    assert (
        isinstance(out, bytes) and out.count(b"data: ") == 6 and out.endswith(b"data: [DONE]\n\n")
    )
    assert decoder.flush() == b""


def test_the_last_event_may_come_without_its_blank_line() -> None:
    out, error, _ = run_stream([START, STOP.rstrip(b"\n")])
    assert error is None and events(out)[-1] == "[DONE]"


@pytest.mark.parametrize(
    ("pieces", "match"),
    [
        ([b"event: message_start\ndata: {not json\n\n"], "not a JSON object"),
        (
            [
                sse(
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": 0,
                        "delta": {"type": "text_delta", "text": "x"},
                    },
                )
            ],
            "before message_start",
        ),
        ([STOP], "before message_start"),
    ],
)
def test_a_stream_that_breaks_anthropics_protocol(pieces: list[bytes], match: str) -> None:
    _, error, _ = run_stream(pieces)
    assert isinstance(error, UpstreamProtocolError) and match in error.message


def test_events_are_bounded_by_max_event_bytes() -> None:
    decoder = AnthropicCodec(max_event_bytes=1000).stream_decoder(
        make_call(chat(), stream=True), "m"
    )
    with pytest.raises(UpstreamProtocolError, match="max_event_bytes"):
        decoder.feed(b"data: " + b"x" * 2000)


# --- chunking fuzz -----------------------------------------------------------------------------

STREAMS = {
    "stream_text.sse": chat(stream_options={"include_usage": True}),
    "stream_tools.sse": chat(tools=[WEATHER_TOOL]),
    "stream_json.sse": chat(response_format=CITY_SCHEMA),
    "stream_thinking.sse": chat(),
    "stream_error.sse": chat(),
    "stream_truncated.sse": chat(),
}


def cut(data: bytes, rng: random.Random) -> list[bytes]:
    k = rng.randint(1, min(40, len(data) - 1))
    points = sorted(rng.sample(range(1, len(data)), k))
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


@pytest.mark.parametrize("name", sorted(STREAMS))
@pytest.mark.parametrize("line_end", [b"\n", b"\r\n"])
def test_any_chunking_gives_the_same_answer(name: str, line_end: bytes) -> None:
    body = STREAMS[name]
    data = fixture_bytes(name).replace(b"\n", line_end)
    expected_out, expected_error, _ = run_stream([fixture_bytes(name)], body)
    expected = (expected_out, expected_error and expected_error.message)
    assert expected_out  # the fixture says something
    rng = random.Random(f"{name}{line_end!r}")
    runs = [[data], [data[i : i + 1] for i in range(len(data))]]
    runs += [cut(data, rng) for _ in range(150)]
    for pieces in runs:
        out, error, _ = run_stream(pieces, body)
        assert (out, error and error.message) == expected


@pytest.mark.parametrize(
    "text", ["plain", "h\u00e9 \u2014 \U0001f600", 'quote " and \\ and \n new line', "\u0000\t"]
)
def test_the_text_delta_fast_path_equals_the_general_one(text: str) -> None:
    """A compact text delta goes out as its JSON string literal; any other spelling of the
    same event takes the general path: the client reads the same text either way."""
    call = Call(Endpoint.CHAT, {"model": "m", "messages": []}, b"{}", stream=True)
    start = (
        b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1",'
        b'"model":"m","usage":{"input_tokens":1,"output_tokens":0}}}\n\n'
    )
    contents = []
    for escape in (True, False):
        for compact in (True, False):
            delta = {"type": "text_delta", "text": text}
            event = {"type": "content_block_delta", "index": 0, "delta": delta}
            data = json.dumps(
                event, ensure_ascii=escape, separators=(",", ":") if compact else (", ", ": ")
            )
            out = (
                AnthropicCodec()
                .stream_decoder(call, "m")
                .feed(start + b"event: content_block_delta\ndata: " + data.encode() + b"\n\n")
            )
            chunk = out.split(b"\n\n")[1]
            contents.append(json.loads(chunk[6:])["choices"][0]["delta"]["content"])
    assert contents == [text] * 4
