"""The inbound Anthropic Messages dialect: Anthropic requests → the canonical OpenAI chat
request (and every invalid one → a 400 ``InvalidRequest``), OpenAI answers, streams, errors and
model lists → Anthropic's shapes, checked with the anthropic SDK's own types and its stream
accumulation, for any network chunking."""

from __future__ import annotations

import contextlib
import copy
import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import pytest
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import Message, RawMessageStreamEvent
from anthropic.types.shared import ErrorResponse
from pydantic import TypeAdapter

from nexusd.api.dialects import anthropic_messages
from nexusd.api.dialects.anthropic_messages import (
    AnthropicOnly,
    MessagesStreamEncoder,
    count_tokens_request,
    error_body,
    error_from_openai,
    message_from_completion,
    models_list,
    parse_request,
)
from nexusd.backends.upstream import UpstreamProtocolError
from nexusd.errors import InvalidRequest, RateLimited, UpstreamFailed

FIXTURES = Path(__file__).parent / "fixtures" / "anthropic_in"
PNG = (  # a 1×1 PNG
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)
PDF = "JVBERi0xLjcKJeLjz9MKMSAwIG9iago8PD4+CmVuZG9iagp0cmFpbGVyCjw8Pj4KJSVFT0YK"
WEATHER = {
    "name": "get_weather",
    "description": "Current weather",
    "input_schema": {"type": "object", "properties": {"location": {"type": "string"}}},
}
EVENT = TypeAdapter(RawMessageStreamEvent)


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def fixture_json(name: str) -> Any:
    return json.loads(fixture_bytes(name))


def request(*messages: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """A Messages request; one user "Hi" when no messages are given."""
    body: dict[str, Any] = {"model": "claude-sonnet-4-5", "max_tokens": 256}
    body["messages"] = list(messages) or [{"role": "user", "content": "Hi"}]
    body.update(fields)
    return body


def canonical(body: dict[str, Any]) -> dict[str, Any]:
    anthropic_body, openai_body = parse_request(json.dumps(body).encode())
    assert anthropic_body == body
    return openai_body


def user(*blocks: dict[str, Any]) -> dict[str, Any]:
    return {"role": "user", "content": list(blocks)}


def assistant(*blocks: dict[str, Any]) -> dict[str, Any]:
    return {"role": "assistant", "content": list(blocks)}


def text(value: str, **extra: Any) -> dict[str, Any]:
    return {"type": "text", "text": value, **extra}


def tool_use(call_id: str, name: str = "get_weather", **arguments: Any) -> dict[str, Any]:
    return {"type": "tool_use", "id": call_id, "name": name, "input": arguments}


def tool_result(call_id: str, content: Any = "ok", **extra: Any) -> dict[str, Any]:
    return {"type": "tool_result", "tool_use_id": call_id, "content": content, **extra}


# --- requests: the mapping ---------------------------------------------------------------------


def test_an_agent_request_maps_to_the_canonical_chat_request() -> None:
    """A Claude-Code-shaped request (system blocks, tools, thinking, images, tool results with
    an error, cache_control everywhere): the whole canonical body, field by field."""
    raw = fixture_bytes("request_agent.json")
    body, openai_body = parse_request(raw)
    assert body == json.loads(raw)
    assert openai_body == fixture_json("request_agent.openai.json")


def test_the_fixture_request_is_a_valid_anthropic_request() -> None:
    """The request fixture is what the SDK would send: its own param types accept it."""
    params = TypeAdapter(anthropic.types.MessageCreateParams)
    params.validate_python(fixture_json("request_agent.json"))


def test_a_minimal_request() -> None:
    assert canonical(request()) == {
        "model": "claude-sonnet-4-5",
        "max_tokens": 256,
        "messages": [{"role": "user", "content": "Hi"}],
    }


@pytest.mark.parametrize(
    ("system", "expected"),
    [
        ("Be brief.", [{"role": "system", "content": "Be brief."}]),
        (
            [text("One.", cache_control={"type": "ephemeral"}), text(""), text("Two.")],
            [{"role": "system", "content": "One.\n\nTwo."}],
        ),
        ("", []),
        ([], []),
    ],
)
def test_system_becomes_one_system_message_first(system: Any, expected: list[Any]) -> None:
    assert canonical(request(system=system))["messages"][:-1] == expected


def test_a_system_role_message_stays_where_it_is() -> None:
    body = request(
        {"role": "user", "content": "a"},
        {"role": "system", "content": [text("Now be formal.")]},
        {"role": "user", "content": "b"},
    )
    assert [m["role"] for m in canonical(body)["messages"]] == ["user", "system", "user"]
    assert canonical(body)["messages"][1]["content"] == "Now be formal."


def test_text_only_turns_become_strings() -> None:
    body = request(
        user(text("first"), text("second", cache_control={"type": "ephemeral"})),
        assistant(text("Hel"), text("lo")),
        {"role": "user", "content": "plain"},
    )
    assert canonical(body)["messages"] == [
        {"role": "user", "content": "first\n\nsecond"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "plain"},
    ]


def test_consecutive_same_role_turns_are_merged() -> None:
    """Anthropic combines consecutive same-role turns; many chat templates refuse them."""
    image = {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}
    body = request(
        {"role": "user", "content": "one"},
        {"role": "user", "content": [text("two")]},
        {"role": "user", "content": [image]},
        {"role": "assistant", "content": "Let me look."},
        assistant(tool_use("toolu_1")),
        user(tool_result("toolu_1")),
        {"role": "user", "content": "and then?"},
    )
    assert canonical(body)["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "one\n\ntwo"},
                {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
            ],
        },
        {
            "role": "assistant",
            "content": "Let me look.",
            "tool_calls": [
                {
                    "id": "toolu_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": "{}"},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "ok"},
        {"role": "user", "content": "and then?"},
    ]


def test_images_become_image_url_parts() -> None:
    body = request(
        user(
            text("Compare:"),
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
            {"type": "image", "source": {"type": "url", "url": "https://example.com/a.jpg"}},
        )
    )
    assert canonical(body)["messages"][0]["content"] == [
        {"type": "text", "text": "Compare:"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.jpg"}},
    ]


def test_documents_become_file_parts_or_text() -> None:
    pdf = {"type": "base64", "media_type": "application/pdf", "data": PDF}
    body = request(
        user(
            {"type": "document", "source": pdf, "cache_control": {"type": "ephemeral"}},
            {
                "type": "document",
                "title": "Notes",
                "source": {"type": "text", "media_type": "text/plain", "data": "a note"},
            },
            {"type": "document", "source": {"type": "content", "content": [text("inner")]}},
            text("Summarise."),
        )
    )
    assert canonical(body)["messages"][0]["content"] == [
        {
            "type": "file",
            "file": {"filename": "document.pdf", "file_data": f"data:application/pdf;base64,{PDF}"},
        },
        {"type": "text", "text": "Notes\n\na note"},
        {"type": "text", "text": "inner"},
        {"type": "text", "text": "Summarise."},
    ]


def test_thinking_blocks_in_the_history_are_dropped() -> None:
    body = request(
        {"role": "user", "content": "2+2?"},
        assistant(
            {"type": "thinking", "thinking": "easy", "signature": "sig"},
            {"type": "redacted_thinking", "data": "opaque"},
            text("4"),
        ),
        {"role": "user", "content": "thanks"},
    )
    assert canonical(body)["messages"][1] == {"role": "assistant", "content": "4"}


def test_an_empty_final_assistant_turn_and_empty_user_content_pass() -> None:
    body = request({"role": "user", "content": []}, {"role": "assistant", "content": ""})
    assert canonical(body)["messages"] == [
        {"role": "user", "content": ""},
        {"role": "assistant", "content": ""},
    ]


def test_a_tool_use_round_trip_keeps_the_ids() -> None:
    """History with tool_use and tool_result → the assistant's tool_calls, then one tool
    message per result with the matching id, before the rest of the user turn."""
    body = request(
        {"role": "user", "content": "Weather in Oslo and Paris?"},
        assistant(
            text("Checking."),
            tool_use("toolu_1", location="Oslo"),
            tool_use("toolu_2", location="Paris"),
        ),
        user(
            text("Also: hurry."),
            tool_result("toolu_2", [text("18 °C")]),
            tool_result("toolu_1", "5 °C", cache_control={"type": "ephemeral"}),
        ),
        tools=[WEATHER],
    )
    messages = canonical(body)["messages"]
    assert messages[1] == {
        "role": "assistant",
        "content": "Checking.",
        "tool_calls": [
            {
                "id": "toolu_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"location":"Oslo"}'},
            },
            {
                "id": "toolu_2",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"location":"Paris"}'},
            },
        ],
    }
    assert messages[2:] == [
        {"role": "tool", "tool_call_id": "toolu_2", "content": "18 °C"},
        {"role": "tool", "tool_call_id": "toolu_1", "content": "5 °C"},
        {"role": "user", "content": "Also: hurry."},
    ]
    call_ids = {c["id"] for c in messages[1]["tool_calls"]}
    assert {m["tool_call_id"] for m in messages[2:4]} == call_ids


def test_a_turn_of_only_tool_calls_has_null_content() -> None:
    body = request(
        {"role": "user", "content": "Weather?"},
        assistant(tool_use("toolu_1", location="Oslo")),
        user(tool_result("toolu_1")),
    )
    messages = canonical(body)["messages"]
    assert messages[1]["content"] is None
    assert messages[2:] == [{"role": "tool", "tool_call_id": "toolu_1", "content": "ok"}]


@pytest.mark.parametrize(
    ("content", "is_error", "expected"),
    [
        ("disk full", True, "Error: disk full"),
        ([text("a"), text("b")], True, "Error: a\n\nb"),
        (None, True, "Error"),
        (None, None, ""),
        ([], False, ""),
    ],
)
def test_tool_result_content_and_errors(content: Any, is_error: Any, expected: str) -> None:
    result: dict[str, Any] = {"type": "tool_result", "tool_use_id": "toolu_1"}
    if content is not None:
        result["content"] = content
    if is_error is not None:
        result["is_error"] = is_error
    body = request({"role": "user", "content": "go"}, assistant(tool_use("toolu_1")), user(result))
    assert canonical(body)["messages"][2] == {
        "role": "tool",
        "tool_call_id": "toolu_1",
        "content": expected,
    }


def test_images_in_a_tool_result_follow_the_tool_messages() -> None:
    """A tool message holds only text: a screenshot returned by a tool goes in the user
    message right after the tool messages, ahead of that turn's own text."""
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}
    body = request(
        {"role": "user", "content": "Screenshot?"},
        assistant(tool_use("toolu_1", "screenshot")),
        user(tool_result("toolu_1", [text("taken"), image]), text("What is on it?")),
    )
    assert canonical(body)["messages"][2:] == [
        {"role": "tool", "tool_call_id": "toolu_1", "content": "taken"},
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                {"type": "text", "text": "What is on it?"},
            ],
        },
    ]


def test_tools_become_function_tools() -> None:
    schema = {"type": "object", "properties": {}, "additionalProperties": False}
    body = request(
        tools=[
            {**WEATHER, "cache_control": {"type": "ephemeral"}},
            {"type": "custom", "name": "noop", "input_schema": schema, "description": ""},
        ]
    )
    assert canonical(body)["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Current weather",
                "parameters": WEATHER["input_schema"],
            },
        },
        {"type": "function", "function": {"name": "noop", "parameters": schema}},
    ]


@pytest.mark.parametrize(
    ("choice", "expected", "parallel"),
    [
        ({"type": "auto"}, "auto", None),
        ({"type": "any"}, "required", None),
        ({"type": "none"}, "none", None),
        (
            {"type": "tool", "name": "get_weather"},
            {"type": "function", "function": {"name": "get_weather"}},
            None,
        ),
        ({"type": "auto", "disable_parallel_tool_use": True}, "auto", False),
        ({"type": "any", "disable_parallel_tool_use": True}, "required", False),
        ({"type": "any", "disable_parallel_tool_use": False}, "required", None),
        ({"type": "none", "disable_parallel_tool_use": True}, "none", None),
    ],
)
def test_tool_choice(choice: dict[str, Any], expected: Any, parallel: bool | None) -> None:
    body = canonical(request(tools=[WEATHER], tool_choice=choice))
    assert body["tool_choice"] == expected
    assert body.get("parallel_tool_calls") == parallel


@pytest.mark.parametrize("choice", [{"type": "auto"}, {"type": "none"}])
def test_tool_choice_without_tools_is_left_out(choice: dict[str, Any]) -> None:
    assert "tool_choice" not in canonical(request(tool_choice=choice))


def test_sampling_and_other_fields() -> None:
    body = canonical(
        request(
            stop_sequences=["\n\nHuman:", "", "END"],
            temperature=0,
            top_p=0.9,
            top_k=5,
            metadata={"user_id": "u-1"},
            thinking={"type": "enabled", "budget_tokens": 1024},
            service_tier="auto",
            cache_control={"type": "ephemeral"},
            some_future_field={"x": 1},
        )
    )
    assert body == {
        "model": "claude-sonnet-4-5",
        "max_tokens": 256,
        "messages": [{"role": "user", "content": "Hi"}],
        "stop": ["\n\nHuman:", "END"],
        "temperature": 0,
        "top_p": 0.9,
        "user": "u-1",
    }


@pytest.mark.parametrize(
    "fields",
    [
        {"thinking": {"type": "disabled"}},
        {"thinking": {"type": "adaptive"}},
        {"metadata": {"user_id": None}},
        {"metadata": {}},
        {"stop_sequences": []},
        {"stream": False},
        {"output_config": {"effort": "low"}},
    ],
)
def test_fields_that_leave_no_trace(fields: dict[str, Any]) -> None:
    assert canonical(request(**fields)) == canonical(request())


def test_stream_asks_for_usage() -> None:
    body = canonical(request(stream=True))
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}


def test_structured_output_becomes_a_json_schema_response_format() -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}}
    body = canonical(request(output_config={"format": {"type": "json_schema", "schema": schema}}))
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": schema},
    }


def test_unknown_fields_are_dropped_with_a_debug_line(
    translate_log: pytest.LogCaptureFixture,
) -> None:
    body = canonical(request(context_management={"edits": []}))
    assert "context_management" not in body
    assert "context_management" in translate_log.text


def test_count_tokens_does_not_need_max_tokens() -> None:
    body = request(system="s", tools=[WEATHER], stream=True)
    del body["max_tokens"]
    anthropic_body, openai_body = count_tokens_request(json.dumps(body).encode())
    assert anthropic_body == body
    assert openai_body == {
        "model": "claude-sonnet-4-5",
        "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "Hi"}],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "Current weather",
                    "parameters": WEATHER["input_schema"],
                },
            }
        ],
    }


def test_count_tokens_still_validates() -> None:
    with pytest.raises(InvalidRequest) as caught:
        count_tokens_request(json.dumps(request(max_tokens=0)).encode())
    assert caught.value.param == "max_tokens"
    with pytest.raises(InvalidRequest):
        count_tokens_request(json.dumps({"model": "m", "messages": []}).encode())


# --- requests: what is refused -----------------------------------------------------------------


def _with(**fields: Any) -> Callable[[], bytes]:
    return lambda: json.dumps(request(**fields)).encode()


def _messages(*messages: Any, **fields: Any) -> Callable[[], bytes]:
    return lambda: json.dumps({**request(**fields), "messages": list(messages)}).encode()


def _without(key: str) -> Callable[[], bytes]:
    def build() -> bytes:
        body = request()
        del body[key]
        return json.dumps(body).encode()

    return build


def _user_block(block: Any) -> Callable[[], bytes]:
    return _messages({"role": "user", "content": [block]})


IMAGE_NO_SOURCE = {"type": "image"}
TOOL_CALL_TURNS = [{"role": "user", "content": "go"}, assistant(tool_use("toolu_1"))]

INVALID: dict[str, tuple[Callable[[], bytes], str | None]] = {
    "not JSON": (lambda: b'{"model": "m", "max_tokens": ', None),
    "not UTF-8": (lambda: b'{"model": "\xff"}', None),
    "not an object": (lambda: b'[{"model": "m"}]', None),
    "no model": (_without("model"), "model"),
    "model not a string": (_with(model=7), "model"),
    "no max_tokens": (_without("max_tokens"), "max_tokens"),
    "max_tokens 0": (_with(max_tokens=0), "max_tokens"),
    "max_tokens negative": (_with(max_tokens=-5), "max_tokens"),
    "max_tokens a string": (_with(max_tokens="10"), "max_tokens"),
    "max_tokens a float": (_with(max_tokens=10.5), "max_tokens"),
    "max_tokens a boolean": (_with(max_tokens=True), "max_tokens"),
    "no messages": (_without("messages"), "messages"),
    "empty messages": (_messages(), "messages"),
    "messages an object": (_with(messages={"role": "user", "content": "x"}), "messages"),
    "message a string": (_messages("hello"), "messages.0"),
    "bad role": (_messages({"role": "bot", "content": "x"}), "messages.0.role"),
    "tool role": (_messages({"role": "tool", "content": "x"}), "messages.0.role"),
    "no content": (_messages({"role": "user"}), "messages.0.content"),
    "content a number": (_messages({"role": "user", "content": 5}), "messages.0.content"),
    "block not an object": (_user_block("text"), "messages.0.content.0"),
    "block without type": (_user_block({"text": "x"}), "messages.0.content.0.type"),
    "unknown block type": (_user_block({"type": "video", "url": "x"}), "messages.0.content.0.type"),
    "text not a string": (_user_block({"type": "text", "text": 5}), "messages.0.content.0.text"),
    "image without source": (_user_block(IMAGE_NO_SOURCE), "messages.0.content.0.source"),
    "image source type": (
        _user_block({"type": "image", "source": {"type": "ftp", "url": "x"}}),
        "messages.0.content.0.source.type",
    ),
    "image media type": (
        _user_block(
            {"type": "image", "source": {"type": "base64", "media_type": "image/bmp", "data": PNG}}
        ),
        "messages.0.content.0.source.media_type",
    ),
    "image without data": (
        _user_block({"type": "image", "source": {"type": "base64", "media_type": "image/png"}}),
        "messages.0.content.0.source.data",
    ),
    "image url not http": (
        _user_block({"type": "image", "source": {"type": "url", "url": "file:///etc/passwd"}}),
        "messages.0.content.0.source.url",
    ),
    "image by file id": (
        _user_block({"type": "image", "source": {"type": "file", "file_id": "file_1"}}),
        "messages.0.content.0.source",
    ),
    "document not a PDF": (
        _user_block(
            {
                "type": "document",
                "source": {"type": "base64", "media_type": "text/csv", "data": "YQ=="},
            }
        ),
        "messages.0.content.0.source.media_type",
    ),
    "document by URL": (
        _user_block({"type": "document", "source": {"type": "url", "url": "https://x/a.pdf"}}),
        "messages.0.content.0.source",
    ),
    "search result block": (
        _user_block({"type": "search_result", "source": "s", "title": "t", "content": [text("x")]}),
        "messages.0.content.0.type",
    ),
    "OpenAI-style tool": (
        _with(tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}]),
        "tools.0.type",
    ),
    "server tool block": (
        _messages(
            {"role": "user", "content": "search"},
            assistant(
                {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}}
            ),
        ),
        "messages.1.content.0.type",
    ),
    "tool_use in a user turn": (_user_block(tool_use("toolu_1")), "messages.0.content.0"),
    "tool_use without id": (
        _messages(
            {"role": "user", "content": "go"},
            assistant({"type": "tool_use", "name": "f", "input": {}}),
        ),
        "messages.1.content.0.id",
    ),
    "tool_use input not an object": (
        _messages(
            {"role": "user", "content": "go"},
            assistant({"type": "tool_use", "id": "t", "name": "f", "input": "{}"}),
        ),
        "messages.1.content.0.input",
    ),
    "tool_result in an assistant turn": (
        _messages({"role": "user", "content": "go"}, assistant(tool_result("toolu_1"))),
        "messages.1.content.0",
    ),
    "tool_result without tool_use_id": (
        _messages(*TOOL_CALL_TURNS, user({"type": "tool_result", "content": "x"})),
        "messages.2.content.0.tool_use_id",
    ),
    "tool_result for an unknown id": (
        _messages(*TOOL_CALL_TURNS, user(tool_result("toolu_9"))),
        "messages.2.content.0.tool_use_id",
    ),
    "tool_result is_error a string": (
        _messages(*TOOL_CALL_TURNS, user(tool_result("toolu_1", is_error="yes"))),
        "messages.2.content.0.is_error",
    ),
    "tool_result holding a tool_use": (
        _messages(*TOOL_CALL_TURNS, user(tool_result("toolu_1", [tool_use("toolu_2")]))),
        "messages.2.content.0.content.0.type",
    ),
    "assistant image": (
        _messages(
            {"role": "user", "content": "x"},
            assistant({"type": "image", "source": {"type": "url", "url": "https://x/a.png"}}),
        ),
        "messages.1.content.0.type",
    ),
    "system a number": (_with(system=3), "system"),
    "system block not text": (_with(system=[{"type": "image"}]), "system.0"),
    "tools an object": (_with(tools=WEATHER), "tools"),
    "tool not an object": (_with(tools=["get_weather"]), "tools.0"),
    "tool without input_schema": (_with(tools=[{"name": "f"}]), "tools.0.input_schema"),
    "tool schema not an object": (
        _with(tools=[{"name": "f", "input_schema": ["type", "object"]}]),
        "tools.0.input_schema",
    ),
    "tool schema not of type object": (
        _with(tools=[{"name": "f", "input_schema": {"type": "string"}}]),
        "tools.0.input_schema",
    ),
    "tool without name": (_with(tools=[{"input_schema": {"type": "object"}}]), "tools.0.name"),
    "tool name with spaces": (
        _with(tools=[{"name": "get weather", "input_schema": {"type": "object"}}]),
        "tools.0.name",
    ),
    "tool description a list": (
        _with(tools=[{**WEATHER, "description": ["a"]}]),
        "tools.0.description",
    ),
    "server tool": (
        _with(tools=[{"type": "web_search_20250305", "name": "web_search", "max_uses": 5}]),
        "tools.0.type",
    ),
    "built-in client tool": (
        _with(tools=[{"type": "bash_20250124", "name": "bash"}]),
        "tools.0.type",
    ),
    "tool_choice a string": (_with(tools=[WEATHER], tool_choice="auto"), "tool_choice"),
    "tool_choice unknown type": (
        _with(tools=[WEATHER], tool_choice={"type": "all"}),
        "tool_choice",
    ),
    "tool_choice tool without name": (
        _with(tools=[WEATHER], tool_choice={"type": "tool"}),
        "tool_choice.name",
    ),
    "tool_choice tool not in tools": (
        _with(tools=[WEATHER], tool_choice={"type": "tool", "name": "get_time"}),
        "tool_choice.name",
    ),
    "tool_choice any without tools": (_with(tool_choice={"type": "any"}), "tool_choice"),
    "disable_parallel_tool_use a string": (
        _with(tools=[WEATHER], tool_choice={"type": "auto", "disable_parallel_tool_use": "yes"}),
        "tool_choice.disable_parallel_tool_use",
    ),
    "stop_sequences a string": (_with(stop_sequences="END"), "stop_sequences"),
    "stop_sequences of numbers": (_with(stop_sequences=[1, 2]), "stop_sequences"),
    "temperature 1.5": (_with(temperature=1.5), "temperature"),
    "temperature negative": (_with(temperature=-0.1), "temperature"),
    "temperature a string": (_with(temperature="0.5"), "temperature"),
    "top_p 2": (_with(top_p=2), "top_p"),
    "top_k negative": (_with(top_k=-1), "top_k"),
    "top_k a float": (_with(top_k=1.5), "top_k"),
    "stream yes": (_with(stream="yes"), "stream"),
    "metadata a string": (_with(metadata="user-1"), "metadata"),
    "metadata user_id a number": (_with(metadata={"user_id": 7}), "metadata.user_id"),
    "thinking a boolean": (_with(thinking=True), "thinking"),
    "thinking unknown type": (_with(thinking={"type": "on"}), "thinking"),
    "thinking without budget": (_with(thinking={"type": "enabled"}), "thinking.budget_tokens"),
    "thinking budget too small": (
        _with(thinking={"type": "enabled", "budget_tokens": 100}),
        "thinking.budget_tokens",
    ),
    "output format not a schema": (
        _with(output_config={"format": {"type": "json_object"}}),
        "output_config.format",
    ),
    "output effort unknown": (_with(output_config={"effort": "extreme"}), "output_config.effort"),
    "MCP connector": (
        _with(mcp_servers=[{"type": "url", "url": "https://mcp.example.com", "name": "x"}]),
        "mcp_servers",
    ),
}


#: valid Anthropic requests that no other backend can serve
ANTHROPIC_ONLY = {
    "max_tokens 0",
    "image by file id",
    "document by URL",
    "search result block",
    "server tool block",
    "server tool",
    "built-in client tool",
    "MCP connector",
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_invalid_requests_are_a_400_saying_what_to_fix(case: str) -> None:
    build, param = INVALID[case]
    with pytest.raises(InvalidRequest) as caught:
        parse_request(build())
    error = caught.value
    assert type(error) is (AnthropicOnly if case in ANTHROPIC_ONLY else InvalidRequest)
    assert error.status == 400
    assert error.param == param
    assert len(error.message) > 20


def test_the_server_tool_refusal_says_why() -> None:
    build, _ = INVALID["server tool"]
    with pytest.raises(InvalidRequest, match="cannot run on other backends"):
        parse_request(build())


@pytest.mark.parametrize("case", sorted(ANTHROPIC_ONLY))
def test_what_only_anthropic_can_serve_carries_the_body(case: str) -> None:
    """Valid for Anthropic, untranslatable: an ``AnthropicOnly`` holding the parsed body, so
    the adapter can still send the request to a native Anthropic backend."""
    build, _ = INVALID[case]
    raw = build()
    with pytest.raises(AnthropicOnly) as caught:
        parse_request(raw)
    assert caught.value.body == json.loads(raw)
    assert "native Anthropic backend" in caught.value.message


_JUNK: list[Any] = [None, 0, -1, 1.5, True, "", "x", [], [None], {}, {"type": None}, {"type": 3}]


def _mutations(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path into a JSON value (dict keys and list indexes)."""
    paths = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            paths += _mutations(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            paths += _mutations(item, (*path, i))
    return paths


def _damaged(original: Any) -> list[Any]:
    """The value with each of its values in turn replaced by junk of every kind, or dropped."""
    out = []
    for path in _mutations(original)[1:]:
        for junk in [*_JUNK, "<drop>"]:
            body = copy.deepcopy(original)
            holder = body
            for step in path[:-1]:
                holder = holder[step]
            if junk == "<drop>":
                if isinstance(holder, list):
                    del holder[path[-1]]
                else:
                    holder.pop(path[-1])
            else:
                holder[path[-1]] = copy.deepcopy(junk)
            out.append(body)
    return out


def test_any_damaged_request_is_accepted_or_a_400_never_a_crash() -> None:
    """Every value of the agent request replaced by junk of every kind (and dropped), one at
    a time and three at once: a translation or an InvalidRequest, never another exception."""
    original = fixture_json("request_agent.json")
    damaged = _damaged(original)
    for body in damaged:
        raw = json.dumps(body).encode()
        with contextlib.suppress(InvalidRequest):
            count_tokens_request(raw)
        with contextlib.suppress(InvalidRequest):
            parse_request(raw)
    paths = _mutations(original)[1:]
    rng = random.Random(20250807)
    for _ in range(300):
        body = copy.deepcopy(original)
        for path in rng.sample(paths, 3):
            holder = body
            try:
                for step in path[:-1]:
                    holder = holder[step]
                holder[path[-1]] = copy.deepcopy(rng.choice(_JUNK))
            except (KeyError, IndexError, TypeError):
                continue  # an earlier mutation removed the way there
        with contextlib.suppress(InvalidRequest):
            parse_request(json.dumps(body).encode())
    assert len(damaged) > 1000


# --- whole answers -----------------------------------------------------------------------------


def answer(name_or_body: str | dict[str, Any], model: str = "claude-sonnet-4-5") -> dict[str, Any]:
    raw = (
        fixture_bytes(name_or_body)
        if isinstance(name_or_body, str)
        else json.dumps(name_or_body).encode()
    )
    out = message_from_completion(raw, model)
    Message.model_validate_json(out)  # the SDK's own type accepts it
    result: dict[str, Any] = json.loads(out)
    return result


def completion(message: dict[str, Any], finish: Any = "stop", **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1754000000,
        "model": "llama3:8b",
        "choices": [
            {"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish}
        ],
    }
    body.update(fields)
    return body


def test_a_text_answer() -> None:
    assert answer("completion_text.json") == {
        "id": "msg_chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
        "type": "message",
        "role": "assistant",
        "model": "qwen2.5:7b",
        "content": [{"type": "text", "text": "Hello! How can I help?"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 176,
            "output_tokens": 8,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 1024,
        },
    }


def test_a_tool_call_answer() -> None:
    """Tool calls become tool_use blocks with their ids; arguments that are not a JSON
    object (here cut short) become {} and the rest of the answer still comes back."""
    message = answer("completion_tools.json")
    assert message["content"] == [
        {
            "type": "tool_use",
            "id": "call_A1",
            "name": "get_weather",
            "input": {"location": "Oslo", "unit": "celsius"},
        },
        {"type": "tool_use", "id": "call_B2", "name": "get_time", "input": {}},
    ]
    assert message["stop_reason"] == "tool_use"
    assert message["usage"]["input_tokens"] == 88
    assert message["usage"]["cache_read_input_tokens"] == 0


def test_text_and_tool_calls_together() -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    message = answer(completion({"content": "Calling.", "tool_calls": [call]}, "tool_calls"))
    assert [b["type"] for b in message["content"]] == ["text", "tool_use"]


def test_reasoning_becomes_a_thinking_block_first() -> None:
    message = answer("completion_reasoning.json")
    assert message["content"] == [
        {"type": "thinking", "thinking": "The user wants 2+2. That is 4.", "signature": ""},
        {"type": "text", "text": "2 + 2 = 4"},
    ]


def test_reasoning_in_the_reasoning_field() -> None:
    message = answer(completion({"content": "4", "reasoning": "sum"}))
    assert message["content"][0] == {"type": "thinking", "thinking": "sum", "signature": ""}


@pytest.mark.parametrize(
    ("finish", "tool_calls", "stop_reason"),
    [
        ("stop", False, "end_turn"),
        ("length", False, "max_tokens"),
        ("tool_calls", True, "tool_use"),
        ("function_call", True, "tool_use"),
        ("content_filter", False, "refusal"),
        ("something_new", False, "end_turn"),
        (None, False, "end_turn"),
        ("stop", True, "tool_use"),  # backends that finish a tool call with "stop"
        ("tool_calls", False, "end_turn"),  # no call to run: the turn is over
        ("length", True, "max_tokens"),
    ],
)
def test_stop_reasons(finish: Any, tool_calls: bool, stop_reason: str) -> None:
    calls = [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
    message = {"content": "x", "tool_calls": calls if tool_calls else None}
    assert answer(completion(message, finish))["stop_reason"] == stop_reason


def test_an_empty_answer_has_one_empty_text_block() -> None:
    message = answer(completion({"content": None}))
    assert message["content"] == [{"type": "text", "text": ""}]
    assert message["usage"] == {
        "input_tokens": 0,
        "output_tokens": 0,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }


def test_a_refusal_is_text_with_the_refusal_stop_reason() -> None:
    message = answer(completion({"content": None, "refusal": "I can't help."}, None))
    assert message["content"] == [{"type": "text", "text": "I can't help."}]
    assert message["stop_reason"] == "refusal"


def test_content_as_parts() -> None:
    message = answer(
        completion({"content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]})
    )
    assert message["content"] == [{"type": "text", "text": "ab"}]


def test_ids_and_model() -> None:
    assert answer(completion({"content": "x"}, id="msg_01Abc"))["id"] == "msg_01Abc"
    generated = answer(completion({"content": "x"}, id=None))["id"]
    assert generated.startswith("msg_") and len(generated) > 10
    assert generated != answer(completion({"content": "x"}, id=None))["id"]
    assert answer(completion({"content": "x"}, model=None), "fallback")["model"] == "fallback"


def test_a_tool_call_without_id_gets_one() -> None:
    call = {"type": "function", "function": {"name": "f", "arguments": {"a": 1}}}
    block = answer(completion({"content": None, "tool_calls": [call]}))["content"][0]
    assert block["id"].startswith("toolu_")
    assert block["input"] == {"a": 1}


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"[1, 2]",
        b'"text"',
        b'{"id": "x"}',
        b'{"choices": []}',
        b'{"choices": [1]}',
    ],
)
def test_a_body_that_is_no_completion_is_a_protocol_error(body: bytes) -> None:
    with pytest.raises(UpstreamProtocolError):
        message_from_completion(body, "m")


@pytest.mark.parametrize(
    "name", ["completion_text.json", "completion_tools.json", "completion_reasoning.json"]
)
def test_any_damaged_completion_is_a_message_or_a_protocol_error(name: str) -> None:
    """Whatever a backend sends: a Message the SDK accepts, or UpstreamProtocolError."""
    for body in _damaged(fixture_json(name)):
        try:
            out = message_from_completion(json.dumps(body).encode(), "m")
        except UpstreamProtocolError:
            continue
        Message.model_validate_json(out)


def test_any_damaged_chunk_is_translated_or_an_error_event() -> None:
    """Junk anywhere in a stream's chunks: the encoder never raises, and what it sends is
    always well-formed Anthropic events."""
    lines = fixture_bytes("stream_tools_parallel.sse").split(b"\n\n")[:-1]
    chunks = [json.loads(line[6:]) for line in lines if line != b"data: [DONE]"]
    for k, original in enumerate(chunks):
        for damaged in _damaged(original):
            pieces = [b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks]
            pieces[k] = b"data: " + json.dumps(damaged).encode() + b"\n\n"
            out, _ = encode([*pieces, DONE])
            events(out)


# --- streams -----------------------------------------------------------------------------------

STREAMS = [
    "stream_text.sse",
    "stream_thinking.sse",
    "stream_tool.sse",
    "stream_tools_parallel.sse",
    "stream_no_done.sse",
    "stream_error.sse",
    "stream_truncated.sse",
]


def encode(pieces: list[bytes], model: str = "claude-x", **kwargs: Any) -> tuple[bytes, int]:
    """The encoder's whole output for these upstream reads, and how many feeds said something."""
    encoder = MessagesStreamEncoder(model, **kwargs)
    outputs = [encoder.feed(piece) for piece in pieces]
    outputs.append(encoder.flush())
    assert encoder.feed(b"data: [DONE]\n\n") == b""  # nothing once it ended
    assert encoder.flush() == b""
    return b"".join(outputs), sum(1 for o in outputs if o)


def events(out: bytes) -> list[tuple[str, dict[str, Any]]]:
    """The Anthropic events in ``out``, each checked to be exactly ``event:`` then ``data:``
    with a matching type, and (but ping and error) accepted by the SDK's event type."""
    parsed = []
    assert out.endswith(b"\n\n")
    for raw in out[:-2].split(b"\n\n"):
        head, data = raw.split(b"\n")
        assert head.startswith(b"event: ") and data.startswith(b"data: ")
        name, payload = head[7:].decode(), json.loads(data[6:])
        assert payload["type"] == name
        if name not in ("ping", "error"):
            EVENT.validate_python(payload)
        else:
            assert set(payload) == ({"type"} if name == "ping" else {"type", "error"})
        parsed.append((name, payload))
    return parsed


def accumulate(out: bytes) -> Message:
    """The final message as the SDK's stream accumulation builds it from our events."""
    snapshot = None
    buffers: dict[int, bytes] = {}
    for name, payload in events(out):
        if name in ("ping", "error"):
            continue
        snapshot = accumulate_event(
            event=EVENT.validate_python(payload), current_snapshot=snapshot, json_bufs=buffers
        )
    assert snapshot is not None
    return Message.model_validate(snapshot.model_dump())


def names(out: bytes) -> list[str]:
    return [name for name, _ in events(out)]


@pytest.mark.parametrize("name", STREAMS)
def test_streams_match_their_expected_anthropic_events(name: str) -> None:
    """Each OpenAI stream fixture → exactly the Anthropic events written next to it."""
    out, _ = encode([fixture_bytes(name)])
    assert out == fixture_bytes(name.replace(".sse", ".anthropic.sse"))
    first = names(out)
    assert first[:2] == ["message_start", "ping"]


def test_a_text_stream() -> None:
    out, feeds = encode([fixture_bytes("stream_text.sse")])
    assert feeds == 1  # everything of one read comes back as one bytes object
    assert names(out) == [
        "message_start",
        "ping",
        "content_block_start",
        *["content_block_delta"] * 5,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    message = accumulate(out)
    assert message.id == "msg_chatcmpl-9xTq2Lw7"
    assert message.model == "qwen2.5:7b"
    assert message.content[0].type == "text"
    assert message.content[0].text == 'Hello — café 😀, "quoted" \\ and\nnew line.'
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens == 9
    assert message.usage.input_tokens == 15  # 31 prompt tokens, 16 of them cached
    assert message.usage.cache_read_input_tokens == 16


def test_a_thinking_stream() -> None:
    message = accumulate(encode([fixture_bytes("stream_thinking.sse")])[0])
    assert [b.type for b in message.content] == ["thinking", "text"]
    assert message.content[0].thinking == "The user wants 2+2."  # type: ignore[union-attr]
    assert message.content[1].text == "2 + 2 = 4"  # type: ignore[union-attr]


def test_a_tool_call_stream() -> None:
    out, _ = encode([fixture_bytes("stream_tool.sse")])
    message = accumulate(out)
    assert [b.type for b in message.content] == ["text", "tool_use"]
    call = message.content[1]
    assert call.type == "tool_use"
    assert (call.id, call.name, call.input) == (
        "call_Wx4kP1",
        "get_weather",
        {"location": "Paris, FR"},
    )
    assert message.stop_reason == "tool_use"


def test_two_parallel_tool_calls_are_two_blocks_in_order() -> None:
    message = accumulate(encode([fixture_bytes("stream_tools_parallel.sse")])[0])
    calls = [(b.id, b.name, b.input) for b in message.content if b.type == "tool_use"]
    assert calls == [
        ("call_A1", "get_weather", {"location": "Oslo"}),
        ("call_B2", "get_time", {"zone": "Europe/Oslo"}),
    ]
    assert message.stop_reason == "tool_use"
    assert (message.usage.input_tokens, message.usage.cache_read_input_tokens) == (24, 64)


def test_a_stream_without_done_ends_at_flush() -> None:
    encoder = MessagesStreamEncoder("m")
    out = encoder.feed(fixture_bytes("stream_no_done.sse"))
    assert b"message_stop" not in out  # the usage chunk may still come
    out += encoder.flush()
    message = accumulate(out)
    assert message.stop_reason == "max_tokens"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (7, 2)


def test_an_error_mid_stream_is_the_last_event() -> None:
    out, _ = encode([fixture_bytes("stream_error.sse")])
    parsed = events(out)
    assert parsed[-1] == (
        "error",
        {
            "type": "error",
            "error": {
                "type": "api_error",
                "message": "backend 'gpu-box' failed mid-stream: connection reset",
            },
        },
    )
    assert b"never seen" not in out
    assert names(out).count("error") == 1


def test_a_stream_that_ends_early_says_so() -> None:
    out, _ = encode([fixture_bytes("stream_truncated.sse")])
    name, payload = events(out)[-1]
    assert name == "error"
    assert payload["error"]["type"] == "api_error"
    assert "ended before" in payload["error"]["message"]
    assert "message_stop" not in names(out)


def test_an_empty_stream_is_an_error() -> None:
    assert names(encode([])[0]) == ["error"]
    assert names(encode([b": keep-alive\n\n"])[0]) == ["error"]


def test_done_alone_is_an_empty_message() -> None:
    out, _ = encode([b"data: [DONE]\n\n"])
    assert names(out) == ["message_start", "ping", "message_delta", "message_stop"]
    message = accumulate(out)
    assert message.content == [] and message.stop_reason == "end_turn"


def chunk(delta: dict[str, Any], finish: str | None = None, **fields: Any) -> bytes:
    body = {
        "id": "chatcmpl-s",
        "object": "chat.completion.chunk",
        "model": "llama3:8b",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        **fields,
    }
    return b"data: " + json.dumps(body).encode() + b"\n\n"


DONE = b"data: [DONE]\n\n"


def test_message_start_comes_first_even_when_the_first_chunk_has_content() -> None:
    out, _ = encode([chunk({"role": "assistant", "content": "Hi"}, "stop"), DONE])
    assert names(out)[:4] == ["message_start", "ping", "content_block_start", "content_block_delta"]
    assert accumulate(out).content[0].text == "Hi"  # type: ignore[union-attr]


def test_the_known_input_tokens_go_in_message_start() -> None:
    out, _ = encode([chunk({"content": "Hi"}, "stop"), DONE], input_tokens=42)
    start = events(out)[0][1]
    assert start["message"]["usage"] == {"input_tokens": 42, "output_tokens": 0}
    assert accumulate(out).usage.input_tokens == 42  # no usage chunk: message_start's stays


def test_text_after_a_tool_call_opens_a_new_block() -> None:
    call = {
        "index": 0,
        "id": "call_1",
        "type": "function",
        "function": {"name": "f", "arguments": "{}"},
    }
    out, _ = encode(
        [chunk({"content": "a"}), chunk({"tool_calls": [call]}), chunk({"content": "b"}), DONE]
    )
    message = accumulate(out)
    assert [b.type for b in message.content] == ["text", "tool_use", "text"]


def test_a_late_fragment_for_a_closed_tool_call_is_ignored() -> None:
    first = {
        "index": 0,
        "id": "c0",
        "type": "function",
        "function": {"name": "f", "arguments": "{}"},
    }
    second = {
        "index": 1,
        "id": "c1",
        "type": "function",
        "function": {"name": "g", "arguments": "{"},
    }
    late = {"index": 0, "function": {"arguments": "garbage"}}
    more = {"index": 1, "function": {"arguments": "}"}}
    pieces = [chunk({"tool_calls": [first]}), chunk({"tool_calls": [second]})]
    pieces += [chunk({"tool_calls": [late]}), chunk({"tool_calls": [more]}, "tool_calls"), DONE]
    message = accumulate(encode(pieces)[0])
    assert [(b.id, b.input) for b in message.content] == [("c0", {}), ("c1", {})]  # type: ignore[union-attr]


def test_whole_tool_calls_in_one_chunk_without_indexes() -> None:
    """Some backends send each call whole, without ``index``: by position."""
    calls = [
        {"id": "a", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}},
        {"id": "b", "type": "function", "function": {"name": "g", "arguments": '{"y": 2}'}},
    ]
    message = accumulate(encode([chunk({"tool_calls": calls}, "stop"), DONE])[0])
    assert [(b.id, b.input) for b in message.content] == [("a", {"x": 1}), ("b", {"y": 2})]  # type: ignore[union-attr]
    assert message.stop_reason == "tool_use"


def test_usage_on_the_finish_chunk_and_other_choices() -> None:
    other = {"index": 1, "delta": {"content": "other choice"}, "finish_reason": None}
    usage = {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}
    first = json.loads(chunk({"content": "x"})[6:])
    first["choices"].insert(0, other)
    pieces = [b"data: " + json.dumps(first).encode() + b"\n\n", chunk({}, "stop", usage=usage)]
    message = accumulate(encode(pieces)[0])
    assert message.content[0].text == "x"  # type: ignore[union-attr]
    assert (message.usage.input_tokens, message.usage.output_tokens) == (3, 1)


def test_content_after_the_finish_is_ignored() -> None:
    out, _ = encode([chunk({"content": "a"}, "stop"), chunk({"content": "b"}), DONE])
    assert accumulate(out).content[0].text == "a"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("event", "type_", "message"),
    [
        (
            {"error": {"message": "Rate limit reached", "type": "rate_limit_error"}},
            "overloaded_error",
            "Rate limit reached",
        ),
        ({"error": {"message": "boom", "type": "server_error"}}, "api_error", "boom"),
        ({"error": "model is overloaded"}, "overloaded_error", "model is overloaded"),
        (
            {"object": "error", "message": "vLLM failed", "type": "BadRequestError"},
            "api_error",
            "vLLM failed",
        ),
        ({"error": {}}, "api_error", "the backend failed while streaming its answer"),
    ],
)
def test_in_stream_errors(event: dict[str, Any], type_: str, message: str) -> None:
    data = b"data: " + json.dumps(event).encode() + b"\n\n"
    out, _ = encode([chunk({"content": "a"}), data, chunk({"content": "b"}), DONE])
    assert events(out)[-1][1] == {"type": "error", "error": {"type": type_, "message": message}}


def test_an_error_before_anything_is_the_only_event() -> None:
    out, _ = encode([b'data: {"error": {"message": "no backend"}}\n\n'])
    assert names(out) == ["error"]


def test_an_event_that_is_not_json_is_an_error() -> None:
    out, _ = encode([chunk({"content": "a"}), b"data: {broken\n\n"])
    name, payload = events(out)[-1]
    assert name == "error" and "invalid stream event" in payload["error"]["message"]


# --- chunking fuzz -----------------------------------------------------------------------------


def cut(data: bytes, rng: random.Random) -> list[bytes]:
    k = rng.randint(1, min(40, len(data) - 1))
    points = sorted(rng.sample(range(1, len(data)), k))
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


@pytest.mark.parametrize("name", STREAMS)
@pytest.mark.parametrize("line_end", [b"\n", b"\r\n"])
def test_any_chunking_gives_the_same_events(name: str, line_end: bytes) -> None:
    """Whole, byte by byte, and 150 seeded random cuttings (LF and CRLF line endings): the
    same bytes out every time."""
    expected = fixture_bytes(name.replace(".sse", ".anthropic.sse"))
    data = fixture_bytes(name).replace(b"\n", line_end)
    rng = random.Random(f"{name}{line_end!r}")
    runs = [[data], [data[i : i + 1] for i in range(len(data))]]
    runs += [cut(data, rng) for _ in range(150)]
    for pieces in runs:
        assert encode(pieces)[0] == expected


def test_the_sdk_client_reads_our_stream() -> None:
    """End to end through the anthropic SDK (a mock transport, no network): its SSE decoder
    and ``messages.stream`` accumulation give the full message."""
    body = fixture_bytes("stream_tools_parallel.sse")

    def handler(_: httpx2.Request) -> httpx2.Response:
        out, _ = encode([body])
        return httpx2.Response(200, content=out, headers={"content-type": "text/event-stream"})

    client = sdk_client(handler)
    with client.messages.stream(
        model="m", max_tokens=10, messages=[{"role": "user", "content": "x"}]
    ) as stream:
        message = stream.get_final_message()
    assert [b.input for b in message.content if b.type == "tool_use"] == [
        {"location": "Oslo"},
        {"zone": "Europe/Oslo"},
    ]


def test_the_sdk_client_raises_on_our_error_event() -> None:
    body = fixture_bytes("stream_error.sse")

    def handler(_: httpx2.Request) -> httpx2.Response:
        out, _ = encode([body])
        return httpx2.Response(200, content=out, headers={"content-type": "text/event-stream"})

    client = sdk_client(handler)
    with (
        pytest.raises(anthropic.APIStatusError, match="connection reset"),
        client.messages.stream(
            model="m", max_tokens=10, messages=[{"role": "user", "content": "x"}]
        ) as stream,
    ):
        stream.get_final_message()


def sdk_client(handler: Callable[[httpx2.Request], httpx2.Response]) -> anthropic.Anthropic:
    transport = httpx2.MockTransport(handler)
    return anthropic.Anthropic(
        api_key="unused",
        base_url="http://nexus.test",
        http_client=httpx2.Client(transport=transport),
        max_retries=0,
    )


def test_text_deltas_are_rendered_as_json_would() -> None:
    """The pre-rendered text delta equals the compact JSON of the event, for any text."""
    for value in ["plain", "h\u00e9 \u2014 \U0001f600", 'q " \\ \n', "\u0000\t\u2028"]:
        out, _ = encode([chunk({"content": "x"}), chunk({"content": value}), DONE])
        raw = out.split(b"\n\n")[4]
        expected = {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": value},
        }
        assert (
            raw
            == b"event: content_block_delta\ndata: "
            + json.dumps(expected, ensure_ascii=False, separators=(",", ":")).encode()
        )


# --- errors and models -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "type_"),
    [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (402, "billing_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (405, "invalid_request_error"),
        (408, "invalid_request_error"),
        (413, "request_too_large"),
        (422, "invalid_request_error"),
        (429, "rate_limit_error"),
        (500, "api_error"),
        (502, "api_error"),
        (503, "api_error"),
        (504, "timeout_error"),
        (529, "overloaded_error"),
    ],
)
def test_error_bodies(status: int, type_: str) -> None:
    body = error_body(status, "what went wrong")
    assert json.loads(body) == {
        "type": "error",
        "error": {"type": type_, "message": "what went wrong"},
    }
    if type_ != "request_too_large":  # documented by Anthropic, not in the SDK's union
        ErrorResponse.model_validate_json(body)


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (
            429,
            RateLimited("all backends are rate limited").render(),
            "all backends are rate limited",
        ),
        (502, UpstreamFailed("backend down").render(), "backend down"),
        (400, InvalidRequest("bad field", param="x").render(), "bad field"),
        (404, b'{"error": "model \'x\' not found"}', "model 'x' not found"),
        (400, b'{"object": "error", "message": "vLLM says no", "code": 400}', "vLLM says no"),
        (422, b'{"detail": "unprocessable"}', "unprocessable"),
        (500, b'{"type":"error","error":{"type":"api_error","message":"native"}}', "native"),
        (
            502,
            b"<html>Bad Gateway</html>",
            "the backend answered HTTP 502: <html>Bad Gateway</html>",
        ),
        (503, b"", "the backend answered HTTP 503"),
        (
            500,
            b'{"error": {"message": ""}}',
            'the backend answered HTTP 500: {"error": {"message": ""}}',
        ),
    ],
)
def test_errors_from_openai_bodies(status: int, body: bytes, message: str) -> None:
    out = json.loads(error_from_openai(status, body))
    assert out == {
        "type": "error",
        "error": {"type": anthropic_messages.error_type(status), "message": message},
    }


def test_models_list() -> None:
    out = json.loads(
        models_list(
            [
                {
                    "id": "llama3:8b",
                    "object": "model",
                    "created": 1_754_000_000,
                    "owned_by": "ollama",
                },
                {"id": "claude-sonnet-4-5", "object": "model", "created": 0},
                {"id": "odd", "created": "yesterday"},
            ]
        )
    )
    assert out == {
        "data": [
            {
                "type": "model",
                "id": "llama3:8b",
                "display_name": "llama3:8b",
                "created_at": "2025-07-31T22:13:20Z",
            },
            {
                "type": "model",
                "id": "claude-sonnet-4-5",
                "display_name": "claude-sonnet-4-5",
                "created_at": "1970-01-01T00:00:00Z",
            },
            {
                "type": "model",
                "id": "odd",
                "display_name": "odd",
                "created_at": "1970-01-01T00:00:00Z",
            },
        ],
        "has_more": False,
        "first_id": "llama3:8b",
        "last_id": "odd",
    }


def test_an_empty_models_list() -> None:
    assert json.loads(models_list([])) == {
        "data": [],
        "has_more": False,
        "first_id": None,
        "last_id": None,
    }


def test_the_sdk_client_lists_our_models() -> None:
    def handler(_: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(
            200,
            content=models_list([{"id": "a", "created": 1_700_000_000}, {"id": "b", "created": 1}]),
            headers={"content-type": "application/json"},
        )

    models = list(sdk_client(handler).models.list())
    assert [(m.id, m.display_name, m.created_at.year) for m in models] == [
        ("a", "a", 2023),
        ("b", "b", 1970),
    ]
