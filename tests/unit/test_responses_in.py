"""The inbound Responses dialect: Responses requests → canonical chat requests, chat answers
(whole and streamed) → Response objects and Responses events, checked with the openai SDK's
own types, its stream accumulator and its client, for any network chunking."""

from __future__ import annotations

import copy
import json
import random
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import openai
import pytest
from openai.lib.streaming.responses._responses import ResponseStreamState
from openai.types.responses import Response, ResponseStreamEvent
from openai.types.responses.response_create_params import ResponseCreateParamsStreaming
from pydantic import TypeAdapter

from nexusd.api.dialects import responses
from nexusd.api.dialects.responses import (
    STATELESS_MESSAGE,
    ResponsesStreamEncoder,
    error_body,
    parse_request,
    response_from_completion,
)
from nexusd.backends.upstream import UpstreamProtocolError
from nexusd.errors import InvalidRequest

FIXTURES = Path(__file__).parent / "fixtures" / "responses_in"
NOW = 1_754_000_000
EVENT = TypeAdapter(ResponseStreamEvent)
REQUEST_PARAMS = TypeAdapter(ResponseCreateParamsStreaming)
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"location": {"type": "string"}}},
}
STREAMS = sorted(p.name for p in FIXTURES.glob("*.sse"))


class Ids:
    """Ids numbered per prefix from 1, restartable: runs of one stream compare byte for byte."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def __call__(self, prefix: str) -> str:
        self.counts[prefix] = self.counts.get(prefix, 0) + 1
        return f"{prefix}_{self.counts[prefix]:04d}"


@pytest.fixture(autouse=True)
def fixed_ids_and_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(responses, "time", SimpleNamespace(time=lambda: NOW + 0.25))
    monkeypatch.setattr(responses, "_new_id", Ids())


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def fixture_json(name: str) -> Any:
    return json.loads(fixture_bytes(name))


def request(**fields: Any) -> dict[str, Any]:
    """A Responses request; the input is "Hi" unless given."""
    return {"model": "llama3.1:8b", "input": "Hi", **fields}


def parse(**fields: Any) -> dict[str, Any]:
    """The canonical chat request for a Responses request."""
    return parse_request(json.dumps(request(**fields)).encode())[1]


def refusal(body: dict[str, Any]) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as info:
        parse_request(json.dumps(body).encode())
    return info.value


# --- requests ----------------------------------------------------------------------------------


def test_an_agent_request_maps_field_by_field() -> None:
    """Instructions, every part type, reasoning dropped, the assistant message carrying the
    calls after it, a list output joined, tools, format, settings, streaming."""
    raw = fixture_bytes("request_agent.json")
    REQUEST_PARAMS.validate_python(json.loads(raw))  # a real Responses request
    sent, chat = parse_request(raw)
    assert sent == json.loads(raw)
    assert chat == fixture_json("request_agent.chat.json")
    assert "metadata" not in chat and "store" not in chat and "include" not in chat


def test_a_string_input_is_one_user_message_after_the_instructions() -> None:
    assert parse(instructions="Be brief.")["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
    ]
    assert parse()["messages"] == [{"role": "user", "content": "Hi"}]
    assert parse(instructions="")["messages"] == [{"role": "user", "content": "Hi"}]


def test_messages_keep_their_roles_and_developer_becomes_system() -> None:
    chat = parse(
        input=[
            {"role": "system", "content": "S"},
            {"role": "developer", "content": [{"type": "input_text", "text": "D"}]},
            {"type": "message", "role": "user", "content": "U"},
            {"role": "assistant", "content": "A"},
        ]
    )
    assert chat["messages"] == [
        {"role": "system", "content": "S"},
        {"role": "system", "content": [{"type": "text", "text": "D"}]},
        {"role": "user", "content": "U"},
        {"role": "assistant", "content": "A"},
    ]


def test_assistant_history_becomes_one_string() -> None:
    chat = parse(
        input=[
            {
                "type": "message",
                "role": "assistant",
                "id": "msg_1",
                "status": "completed",
                "content": [
                    {"type": "output_text", "text": "Part one. ", "annotations": []},
                    {"type": "refusal", "refusal": "No more."},
                ],
            }
        ]
    )
    assert chat["messages"] == [{"role": "assistant", "content": "Part one. No more."}]


def test_image_audio_and_file_parts() -> None:
    chat = parse(
        input=[
            {
                "role": "user",
                "content": [
                    {"type": "input_image", "image_url": "https://example.com/a.png"},
                    {
                        "type": "input_image",
                        "image_url": "https://example.com/b.png",
                        "detail": "high",
                    },
                    {"type": "input_image", "image_url": "https://x/c.png", "detail": "original"},
                    {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
                    {"type": "input_file", "file_data": "data:application/pdf;base64,JVBE"},
                ],
            }
        ]
    )
    assert chat["messages"][0]["content"] == [
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/b.png", "detail": "high"}},
        {"type": "image_url", "image_url": {"url": "https://x/c.png"}},  # chat has no "original"
        {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
        {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBE"}},
    ]


def test_odd_json_values_in_known_places_are_no_crash() -> None:
    image = {"type": "input_image", "image_url": "u", "detail": ["high"]}
    assert parse(input=[{"role": "user", "content": [image]}])["messages"][0]["content"] == [
        {"type": "image_url", "image_url": {"url": "u"}}
    ]
    assert refusal(request(input=[{"role": ["user"], "content": "x"}])).param == "input[0].role"


def test_a_function_call_round_trip_keeps_the_call_ids() -> None:
    chat = parse(
        input=[
            {"role": "user", "content": "Weather in Paris?"},
            {
                "type": "function_call",
                "call_id": "call_7",
                "name": "get_weather",
                "arguments": '{"location":"Paris"}',
            },
            {"type": "function_call_output", "call_id": "call_7", "output": "21 C"},
        ],
        tools=[WEATHER],
    )
    assert chat["messages"][1:] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_7",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"location":"Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_7", "content": "21 C"},
    ]


def test_the_output_of_a_response_goes_back_as_input() -> None:
    """What an SDK client does: the Response's output items, then the function outputs, as
    the next request's input — the canonical conversation has the same ids throughout."""
    first = request(tools=[WEATHER])
    answer = json.loads(
        response_from_completion(fixture_bytes("completion_tool_calls.json"), first)
    )
    Response.model_validate(answer)
    outputs = [
        {"type": "function_call_output", "call_id": item["call_id"], "output": "cold"}
        for item in answer["output"]
        if item["type"] == "function_call"
    ]
    chat = parse(input=[{"role": "user", "content": "Hi"}, *answer["output"], *outputs])
    assistant = chat["messages"][1]
    assert assistant["content"] == "Checking both."
    assert [c["id"] for c in assistant["tool_calls"]] == ["call_a", "call_b"]
    assert [m["tool_call_id"] for m in chat["messages"][2:]] == ["call_a", "call_b"]
    assert len(chat["messages"]) == 4


def test_function_calls_after_a_tool_message_open_a_new_assistant_message() -> None:
    call = {"type": "function_call", "name": "f", "arguments": "{}"}
    chat = parse(
        input=[
            {**call, "call_id": "c1"},
            {"type": "function_call_output", "call_id": "c1", "output": "x"},
            {**call, "call_id": "c2", "arguments": {"a": 1}},  # an object, leniently
        ]
    )
    assert [m["role"] for m in chat["messages"]] == ["assistant", "tool", "assistant"]
    assert chat["messages"][2]["tool_calls"][0]["function"]["arguments"] == '{"a":1}'


def test_reasoning_items_are_dropped() -> None:
    chat = parse(
        input=[
            {"role": "user", "content": "Q"},
            {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "…"}]},
            {"role": "assistant", "content": "A"},
        ]
    )
    assert chat["messages"] == [
        {"role": "user", "content": "Q"},
        {"role": "assistant", "content": "A"},
    ]


def test_function_tools_map_and_strict_is_kept() -> None:
    tools = [{**WEATHER, "strict": False}, {"type": "function", "name": "now"}]
    assert parse(tools=tools)["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Current weather in a city",
                "parameters": WEATHER["parameters"],
                "strict": False,
            },
        },
        {"type": "function", "function": {"name": "now"}},
    ]
    assert "tools" not in parse(tools=[])


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", "auto"),
        ("none", "none"),
        ("required", "required"),
        (
            {"type": "function", "name": "get_weather"},
            {"type": "function", "function": {"name": "get_weather"}},
        ),
    ],
)
def test_tool_choice_maps(choice: Any, expected: Any) -> None:
    chat = parse(tools=[WEATHER], tool_choice=choice, parallel_tool_calls=False)
    assert chat["tool_choice"] == expected
    assert chat["parallel_tool_calls"] is False


def test_tool_settings_without_tools_are_left_out() -> None:
    chat = parse(tool_choice="auto", parallel_tool_calls=True)
    assert "tool_choice" not in chat and "parallel_tool_calls" not in chat
    error = refusal(request(tool_choice="required"))
    assert error.param == "tool_choice"


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        ({"type": "text"}, None),
        ({"type": "json_object"}, {"type": "json_object"}),
        (
            {"type": "json_schema", "name": "city", "schema": {"type": "object"}},
            {"type": "json_schema", "json_schema": {"name": "city", "schema": {"type": "object"}}},
        ),
        (
            {
                "type": "json_schema",
                "name": "city",
                "schema": {"type": "object"},
                "strict": True,
                "description": "A city",
            },
            {
                "type": "json_schema",
                "json_schema": {
                    "name": "city",
                    "schema": {"type": "object"},
                    "strict": True,
                    "description": "A city",
                },
            },
        ),
    ],
)
def test_text_format_maps_to_response_format(fmt: dict[str, Any], expected: Any) -> None:
    assert parse(text={"format": fmt}).get("response_format") == expected


def test_settings_map() -> None:
    chat = parse(
        max_output_tokens=100,
        temperature=0,
        top_p=1,
        user="u1",
        metadata={"k": "v"},
        store=True,
        reasoning={"effort": "minimal"},
        prompt_cache_key="pk",
        service_tier="flex",
        top_logprobs=3,
        truncation="auto",
    )
    assert chat == {
        "model": "llama3.1:8b",
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 100,
        "temperature": 0,
        "top_p": 1,
        "user": "u1",
        "prompt_cache_key": "pk",
        "service_tier": "flex",
        "reasoning_effort": "minimal",
    }
    assert parse(user="u1", safety_identifier="s1")["user"] == "s1"
    assert "reasoning_effort" not in parse(reasoning={"summary": "auto"})
    assert "reasoning_effort" not in parse(reasoning=None)


def test_streaming_asks_for_the_usage() -> None:
    assert parse(stream=True)["stream_options"] == {"include_usage": True}
    assert "stream" not in parse(stream=False)
    assert "stream_options" not in parse()


@pytest.mark.parametrize(
    ("fields", "what"),
    [
        ({"previous_response_id": "resp_123"}, "previous_response_id"),
        ({"conversation": "conv_1"}, "conversation"),
        ({"conversation": {"id": "conv_1"}}, "conversation"),
    ],
)
def test_stored_state_is_refused_with_the_stateless_message(
    fields: dict[str, Any], what: str
) -> None:
    error = refusal(request(**fields))
    assert error.param == what
    assert error.status == 400
    assert error.message.startswith("Nexus keeps no conversation state: `")
    assert "send the whole conversation in `input`" in error.message


def test_item_references_are_refused_as_state() -> None:
    for item in ({"type": "item_reference", "id": "msg_1"}, {"id": "msg_1"}):
        error = refusal(request(input=[item]))
        assert error.message.startswith("Nexus keeps no conversation state")
        assert error.param == "input[0]"


def test_store_is_accepted_and_null_state_fields_are_fine() -> None:
    chat = parse(store=True, previous_response_id=None, conversation=None, background=False)
    assert chat["messages"] == [{"role": "user", "content": "Hi"}]


def test_background_and_stored_prompts_are_refused() -> None:
    assert refusal(request(background=True)).param == "background"
    assert refusal(request(prompt={"id": "pmpt_1"})).param == "prompt"


def test_hosted_tools_are_refused_by_name() -> None:
    error = refusal(
        request(tools=[WEATHER, {"type": "web_search"}, {"type": "mcp"}, {"type": "web_search"}])
    )
    assert error.param == "tools"
    assert '"web_search", "mcp"' in error.message
    assert "hosted tools" in error.message


@pytest.mark.parametrize(
    ("fields", "param", "says"),
    [
        ({"input": None}, "input", "'input' is required"),
        ({"input": 5}, "input", "a string or a list"),
        ({"input": {"role": "user"}}, "input", "a string or a list"),
        ({"input": []}, "input", "nothing to answer"),
        ({"input": ["hi"]}, "input[0]", "an object"),
        ({"input": [{"type": "telepathy"}]}, "input[0].type", 'unknown type "telepathy"'),
        ({"input": [{"content": "x"}]}, "input[0].type", "no 'type'"),
        ({"input": [{"type": ["message"]}]}, "input[0].type", "unknown type an array"),
        ({"input": [{"type": "web_search_call", "id": "ws"}]}, "input[0].type", "hosted tools"),
        ({"input": [{"role": "robot", "content": "x"}]}, "input[0].role", '"robot"'),
        ({"input": [{"role": "user"}]}, "input[0].content", "got null"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_video"}]}]},
            "input[0].content[0].type",
            "unknown content part type",
        ),
        (
            {"input": [{"role": "user", "content": [{"type": "input_text", "text": 3}]}]},
            "input[0].content[0].text",
            "a string",
        ),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]},
            "input[0].content[0].file_id",
            "no file store",
        ),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image"}]}]},
            "input[0].content[0].image_url",
            "needs 'image_url'",
        ),
        (
            {"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]},
            "input[0].content[0].file_id",
            "no file store",
        ),
        (
            {"input": [{"role": "user", "content": [{"type": "input_file", "file_url": "u"}]}]},
            "input[0].content[0].file_url",
            "inline",
        ),
        (
            {
                "input": [
                    {"role": "assistant", "content": [{"type": "input_image", "image_url": "u"}]}
                ]
            },
            "input[0].content[0]",
            "text only",
        ),
        (
            {"input": [{"type": "function_call", "name": "f", "arguments": "{}"}]},
            "input[0].call_id",
            "'input[0].call_id' is required",
        ),
        (
            {"input": [{"type": "function_call", "call_id": "c", "arguments": "{}"}]},
            "input[0].name",
            "'input[0].name' is required",
        ),
        (
            {"input": [{"type": "function_call", "call_id": "c", "name": "f"}]},
            "input[0].arguments",
            "a string of JSON",
        ),
        (
            {"input": [{"type": "function_call_output", "output": "x"}]},
            "input[0].call_id",
            "is required",
        ),
        (
            {"input": [{"type": "function_call_output", "call_id": "c"}]},
            "input[0].output",
            "'input[0].output' is required",
        ),
        (
            {
                "input": [
                    {
                        "type": "function_call_output",
                        "call_id": "c",
                        "output": [{"type": "input_image", "image_url": "u"}],
                    }
                ]
            },
            "input[0].output[0]",
            "only text",
        ),
        ({"instructions": ["x"]}, "instructions", "a string"),
        ({"tools": {"type": "function"}}, "tools", "a list"),
        ({"tools": ["get_weather"]}, "tools[0]", "an object"),
        ({"tools": [{"type": "function"}]}, "tools[0].name", "the function's name"),
        (
            {"tools": [{"type": "function", "name": "f", "parameters": "{}"}]},
            "tools[0].parameters",
            "JSON Schema object",
        ),
        (
            {"tools": [{"type": "function", "name": "f", "strict": "yes"}]},
            "tools[0].strict",
            "true or false",
        ),
        ({"tools": [WEATHER], "tool_choice": "sometimes"}, "tool_choice", "not supported"),
        (
            {"tools": [WEATHER], "tool_choice": {"type": "file_search"}},
            "tool_choice",
            'type "file_search"',
        ),
        ({"tools": [WEATHER], "tool_choice": {"type": "function"}}, "tool_choice.name", "required"),
        ({"parallel_tool_calls": "yes"}, "parallel_tool_calls", "true or false"),
        ({"text": "json"}, "text", "an object"),
        ({"text": {"format": {"type": "xml"}}}, "text.format.type", '"xml"'),
        ({"text": {"format": "json"}}, "text.format.type", "a string"),
        (
            {"text": {"format": {"type": "json_schema", "schema": {}}}},
            "text.format.name",
            "required",
        ),
        ({"text": {"format": {"type": "json_schema", "name": "n"}}}, "text.format.schema", "null"),
        (
            {"text": {"format": {"type": "json_schema", "name": "n", "schema": {}, "strict": 1}}},
            "text.format.strict",
            "wrong type",
        ),
        ({"max_output_tokens": 0}, "max_output_tokens", "positive integer, got 0"),
        ({"max_output_tokens": -5}, "max_output_tokens", "positive integer"),
        ({"max_output_tokens": 10.5}, "max_output_tokens", "positive integer"),
        ({"max_output_tokens": "10"}, "max_output_tokens", "positive integer"),
        ({"max_output_tokens": True}, "max_output_tokens", "positive integer"),
        ({"temperature": 2.5}, "temperature", "from 0 to 2"),
        ({"temperature": -0.1}, "temperature", "from 0 to 2"),
        ({"temperature": "hot"}, "temperature", "from 0 to 2"),
        ({"top_p": 1.5}, "top_p", "from 0 to 1"),
        ({"stream": "yes"}, "stream", "true or false"),
        ({"user": 7}, "user", "a string"),
        ({"metadata": ["k"]}, "metadata", "an object"),
        ({"reasoning": "high"}, "reasoning", "an object"),
        ({"model": None}, "model", "'model' is required"),
    ],
)
def test_invalid_requests_are_refused_naming_the_field(
    fields: dict[str, Any], param: str, says: str
) -> None:
    error = refusal(request(**fields))
    assert error.param == param
    assert says in error.message
    assert error.status == 400


def test_a_body_that_is_not_json_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="not valid JSON"):
        parse_request(b"{model: 1")
    with pytest.raises(InvalidRequest, match="JSON object"):
        parse_request(b"[]")


# --- whole answers -----------------------------------------------------------------------------


def answer(name: str, req: dict[str, Any] | None = None) -> dict[str, Any]:
    """The Response for a completion fixture, checked by the SDK's type."""
    raw = response_from_completion(fixture_bytes(name), req or request())
    Response.model_validate_json(raw)
    return json.loads(raw)


def test_a_text_completion_becomes_a_response() -> None:
    req = request(
        instructions="Be brief.",
        metadata={"session": "s-1"},
        temperature=0.3,
        max_output_tokens=50,
        tools=[WEATHER],
        text={"format": {"type": "json_object"}},
        reasoning={"effort": "low"},
        user="u",
    )
    body = answer("completion_text.json", req)
    assert body["id"] == "resp_0001" and body["object"] == "response"
    assert body["created_at"] == NOW and body["completed_at"] == NOW
    assert body["status"] == "completed" and body["error"] is None
    assert body["incomplete_details"] is None
    assert body["model"] == "llama3.1:8b"
    assert body["output"] == [
        {
            "id": "msg_0001",
            "type": "message",
            "status": "completed",
            "role": "assistant",
            "content": [
                {
                    "type": "output_text",
                    "text": "Paris is the capital of France.",
                    "annotations": [],
                    "logprobs": [],
                }
            ],
        }
    ]
    assert body["usage"] == {
        "input_tokens": 24,
        "input_tokens_details": {"cached_tokens": 16, "cache_write_tokens": 0},
        "output_tokens": 8,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 32,
    }
    echoed = {k: body[k] for k in ("instructions", "metadata", "temperature", "max_output_tokens")}
    assert echoed == {
        "instructions": "Be brief.",
        "metadata": {"session": "s-1"},
        "temperature": 0.3,
        "max_output_tokens": 50,
    }
    assert body["tools"] == [WEATHER]
    assert body["text"] == {"format": {"type": "json_object"}}
    assert body["reasoning"] == {"effort": "low"}
    assert body["user"] == "u"
    assert body["store"] is False
    assert Response.model_validate(body).output_text == "Paris is the capital of France."


def test_a_response_echoes_the_api_defaults() -> None:
    body = answer("completion_text.json")
    assert body["tool_choice"] == "auto"
    assert body["parallel_tool_calls"] is True
    assert body["tools"] == []
    assert body["text"] == {"format": {"type": "text"}}
    assert body["metadata"] == {}
    assert body["instructions"] is None and body["temperature"] is None
    assert body["previous_response_id"] is None
    assert body["truncation"] == "disabled"


def test_tool_calls_become_function_call_items() -> None:
    body = answer("completion_tool_calls.json", request(tools=[WEATHER], tool_choice="required"))
    assert [item["type"] for item in body["output"]] == [
        "message",
        "function_call",
        "function_call",
    ]
    assert body["output"][1:] == [
        {
            "id": "fc_0001",
            "type": "function_call",
            "status": "completed",
            "call_id": "call_a",
            "name": "get_weather",
            "arguments": '{"location": "Paris"}',
        },
        {
            "id": "fc_0002",
            "type": "function_call",
            "status": "completed",
            "call_id": "call_b",
            "name": "get_weather",
            "arguments": '{"location": "Oslo"}',
        },
    ]
    assert body["tool_choice"] == "required"
    assert body["status"] == "completed"


def test_tool_calls_alone_give_no_message() -> None:
    completion = fixture_json("completion_tool_calls.json")
    completion["choices"][0]["message"]["content"] = None
    del completion["choices"][0]["message"]["tool_calls"][0]["id"]  # a backend that sent none
    raw = response_from_completion(json.dumps(completion).encode(), request())
    body = Response.model_validate_json(raw)
    assert [item.type for item in body.output] == ["function_call", "function_call"]
    assert body.output[0].call_id.startswith("call_")  # type: ignore[union-attr]
    assert body.output_text == ""


def test_reasoning_comes_first_as_reasoning_text() -> None:
    body = answer("completion_reasoning.json")
    assert body["output"][0] == {
        "id": "rs_0001",
        "type": "reasoning",
        "status": "completed",
        "summary": [],
        "content": [{"type": "reasoning_text", "text": "The user asks 2+2. That is 4."}],
    }
    assert body["output"][1]["content"][0]["text"] == "4"
    assert body["usage"]["output_tokens_details"] == {"reasoning_tokens": 24}
    assert body["model"] == "qwen3:8b"


def test_ollama_reasoning_field_is_read_too() -> None:
    completion = fixture_json("completion_text.json")
    completion["choices"][0]["message"]["reasoning"] = "Think."
    body = json.loads(response_from_completion(json.dumps(completion).encode(), request()))
    assert body["output"][0]["content"] == [{"type": "reasoning_text", "text": "Think."}]


@pytest.mark.parametrize(
    ("finish", "reason"), [("length", "max_output_tokens"), ("content_filter", "content_filter")]
)
def test_a_cut_answer_is_incomplete(finish: str, reason: str) -> None:
    completion = fixture_json("completion_length.json")
    completion["choices"][0]["finish_reason"] = finish
    raw = response_from_completion(json.dumps(completion).encode(), request())
    body = json.loads(raw)
    Response.model_validate(body)
    assert body["status"] == "incomplete"
    assert body["incomplete_details"] == {"reason": reason}
    assert body["completed_at"] is None
    assert body["output"][-1]["status"] == "incomplete"


def test_a_refusal_is_a_refusal_part() -> None:
    completion = fixture_json("completion_text.json")
    completion["choices"][0]["message"].update(content=None, refusal="I can't help with that.")
    body = json.loads(response_from_completion(json.dumps(completion).encode(), request()))
    assert body["output"][0]["content"] == [
        {"type": "refusal", "refusal": "I can't help with that."}
    ]


def test_an_empty_answer_is_an_empty_message() -> None:
    completion = fixture_json("completion_text.json")
    completion["choices"][0]["message"]["content"] = ""
    del completion["usage"]
    body = Response.model_validate_json(
        response_from_completion(json.dumps(completion).encode(), request())
    )
    assert body.output_text == "" and len(body.output) == 1 and body.output[0].type == "message"
    assert body.usage is None


@pytest.mark.parametrize(
    "raw", [b"not json", b"[1, 2]", b'{"error": {"message": "boom"}}', b'{"choices": []}']
)
def test_an_answer_that_is_not_a_completion_is_a_protocol_error(raw: bytes) -> None:
    with pytest.raises(UpstreamProtocolError):
        response_from_completion(raw, request())


# --- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "type_"),
    [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (413, "invalid_request_error"),
        (429, "rate_limit_error"),
        (500, "server_error"),
        (502, "server_error"),
        (503, "server_error"),
    ],
)
def test_error_bodies_are_the_openai_envelope(status: int, type_: str) -> None:
    body = json.loads(error_body(status, "Something failed", "input", "bad_input"))
    assert body == {
        "error": {
            "message": "Something failed",
            "type": type_,
            "param": "input",
            "code": "bad_input",
        }
    }
    assert json.loads(error_body(status, "x"))["error"]["param"] is None


def test_the_stateless_message_says_what_to_do() -> None:
    assert "stores no responses" in STATELESS_MESSAGE
    assert "`input`" in STATELESS_MESSAGE
    body = json.loads(error_body(404, STATELESS_MESSAGE))
    assert body["error"]["message"] == STATELESS_MESSAGE


# --- streams -----------------------------------------------------------------------------------


def run(pieces: list[bytes], req: dict[str, Any] | None = None, **kwargs: Any) -> bytes:
    """A stream fed in pieces, then flushed; each feed's output is one bytes object. Ids
    restart, so runs compare byte for byte."""
    responses._new_id = Ids()  # type: ignore[assignment]  # undone by the fixture
    encoder = ResponsesStreamEncoder(req or request(stream=True), **kwargs)
    outputs = [encoder.feed(piece) for piece in pieces]
    outputs.append(encoder.flush())
    assert all(type(out) is bytes for out in outputs)
    return b"".join(outputs)


def events(out: bytes) -> list[dict[str, Any]]:
    """The Responses events, each checked by the SDK's union type and its SSE framing."""
    parsed = []
    for block in out.split(b"\n\n")[:-1]:
        name, data = block.split(b"\n")
        assert name.startswith(b"event: ") and data.startswith(b"data: ")
        event = json.loads(data[6:])
        assert data[6:] == responses.dumps(event)  # pre-rendered parts render the same
        assert name[7:].decode() == event["type"]
        EVENT.validate_python(event)
        parsed.append(event)
    assert out.endswith(b"\n\n")
    assert [e["sequence_number"] for e in parsed] == list(range(len(parsed)))
    return parsed


def accumulate(parsed: list[dict[str, Any]]) -> Any:
    """The SDK's own stream accumulator over the events: the final parsed Response."""
    state: ResponseStreamState[Any] = ResponseStreamState(
        input_tools=openai.omit, text_format=openai.omit
    )
    final = None
    for event in parsed:
        for out in state.handle_event(EVENT.validate_python(event)):
            if out.type in ("response.completed", "response.incomplete", "response.failed"):
                final = out.response
    return final


def stream(name: str, req: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    return events(run([fixture_bytes(name)], req))


def types(parsed: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in parsed]


def test_a_text_stream() -> None:
    parsed = stream("stream_text.sse")
    assert types(parsed) == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * 4,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    created = parsed[0]["response"]
    assert created["status"] == "in_progress" and created["output"] == []
    assert created["id"] == "resp_0001" and created["model"] == "llama3.1:8b"
    assert parsed[2]["item"] == {
        "id": "msg_0001",
        "type": "message",
        "status": "in_progress",
        "role": "assistant",
        "content": [],
    }
    assert parsed[3]["part"] == {
        "type": "output_text",
        "text": "",
        "annotations": [],
        "logprobs": [],
    }
    deltas = [e["delta"] for e in parsed if e["type"] == "response.output_text.delta"]
    assert deltas == ["Bonjour", " — ", 'ça va? 😀 "quoted"\n', "Fine."]
    assert parsed[4] == {
        "type": "response.output_text.delta",
        "item_id": "msg_0001",
        "output_index": 0,
        "content_index": 0,
        "logprobs": [],
        "delta": "Bonjour",
        "sequence_number": 4,
    }
    text = "".join(deltas)
    assert parsed[8]["text"] == text
    assert parsed[9]["part"]["text"] == text
    assert parsed[10]["item"]["status"] == "completed"
    done = parsed[-1]["response"]
    assert done["status"] == "completed" and done["id"] == "resp_0001"
    assert done["output"] == [parsed[10]["item"]]
    assert done["usage"] == {
        "input_tokens": 21,
        "input_tokens_details": {"cached_tokens": 16, "cache_write_tokens": 0},
        "output_tokens": 9,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 30,
    }
    assert accumulate(parsed).output_text == text


def test_a_tool_call_stream() -> None:
    parsed = stream("stream_tool_call.sse", request(stream=True, tools=[WEATHER]))
    assert types(parsed) == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert parsed[2]["item"] == {
        "id": "fc_0001",
        "type": "function_call",
        "status": "in_progress",
        "call_id": "call_weather_1",
        "name": "get_weather",
        "arguments": "",
    }
    assert parsed[3] == {
        "type": "response.function_call_arguments.delta",
        "item_id": "fc_0001",
        "output_index": 0,
        "delta": '{"loca',
        "sequence_number": 3,
    }
    assert parsed[5]["arguments"] == '{"location": "Paris"}'
    done = parsed[-1]["response"]
    assert done["output"] == [parsed[6]["item"]]
    assert done["output"][0]["arguments"] == '{"location": "Paris"}'
    assert done["tools"] == [WEATHER]
    assert done["usage"]["total_tokens"] == 105
    final = accumulate(parsed)
    assert final.output[0].call_id == "call_weather_1"


def test_a_stream_of_text_and_two_tool_calls() -> None:
    parsed = stream("stream_two_tool_calls.sse")
    added = [e["item"] for e in parsed if e["type"] == "response.output_item.added"]
    assert [(i["type"], i["id"]) for i in added] == [
        ("message", "msg_0001"),
        ("function_call", "fc_0001"),
        ("function_call", "fc_0002"),
    ]
    # the message is done before the first call starts
    assert types(parsed).index("response.output_item.done") < types(parsed).index(
        "response.function_call_arguments.delta"
    )
    done = parsed[-1]["response"]
    assert [(i.get("call_id"), i.get("arguments")) for i in done["output"][1:]] == [
        ("call_a", '{"location": "Paris"}'),
        ("call_b", '{"location": "Oslo"}'),
    ]
    assert [e["output_index"] for e in parsed if e["type"] == "response.output_item.done"] == [
        0,
        1,
        2,
    ]
    final = accumulate(parsed)
    assert final.output_text == "Checking both."
    assert [o.type for o in final.output] == ["message", "function_call", "function_call"]


def test_a_reasoning_stream() -> None:
    parsed = stream("stream_reasoning.sse")
    assert types(parsed)[2:9] == [
        "response.output_item.added",
        "response.content_part.added",
        "response.reasoning_text.delta",
        "response.reasoning_text.delta",
        "response.reasoning_text.done",
        "response.content_part.done",
        "response.output_item.done",
    ]
    assert parsed[2]["item"]["id"] == "rs_0001" and parsed[2]["item"]["type"] == "reasoning"
    assert parsed[6]["text"] == "The user asks 2+2. That is 4."
    done = parsed[-1]["response"]
    assert done["model"] == "qwen3:8b"
    assert [i["type"] for i in done["output"]] == ["reasoning", "message"]
    assert done["usage"]["output_tokens_details"] == {"reasoning_tokens": 24}
    assert accumulate(parsed).output_text == "4"


def test_a_stream_cut_by_the_token_limit_is_incomplete() -> None:
    parsed = stream("stream_length.sse", request(stream=True, max_output_tokens=8))
    assert parsed[-1]["type"] == "response.incomplete"
    final = parsed[-1]["response"]
    assert final["status"] == "incomplete"
    assert final["incomplete_details"] == {"reason": "max_output_tokens"}
    assert final["max_output_tokens"] == 8
    assert final["output"][0]["status"] == "incomplete"
    assert final["output"][0]["content"][0]["text"] == "Once upon a time there was a"
    assert final["usage"]["output_tokens"] == 8


def test_an_error_in_the_stream_fails_the_response_and_ends_it() -> None:
    encoder = ResponsesStreamEncoder(request(stream=True))
    out = encoder.feed(fixture_bytes("stream_error.sse"))
    parsed = events(out)
    assert types(parsed)[-3:] == [
        "response.output_text.delta",
        "response.output_text.delta",
        "response.failed",
    ]
    failed = parsed[-1]["response"]
    assert failed["status"] == "failed"
    assert failed["error"] == {
        "code": "server_error",
        "message": "backend ollama-1 stopped mid-answer: connection reset",
    }
    assert failed["output"][0]["status"] == "incomplete"
    assert failed["output"][0]["content"][0]["text"] == "Once upon a time"
    assert encoder.feed(b'data: {"choices":[{"index":0,"delta":{"content":"x"}}]}\n\n') == b""
    assert encoder.feed(b"data: [DONE]\n\n") == b""
    assert encoder.flush() == b""
    assert accumulate(parsed).status == "failed"


def test_an_error_first_still_opens_the_response() -> None:
    out = run([b'data: {"error": {"message": "no backend", "type": "server_error"}}\n\n'])
    assert types(events(out)) == ["response.created", "response.in_progress", "response.failed"]


def test_a_stream_that_ends_early_fails() -> None:
    parsed = stream("stream_early_end.sse")
    assert parsed[-1]["type"] == "response.failed"
    failed = parsed[-1]["response"]
    assert "ended before the answer was finished" in failed["error"]["message"]
    assert [(i["type"], i["status"]) for i in failed["output"]] == [
        ("message", "completed"),  # done when the call started
        ("function_call", "incomplete"),
    ]
    assert failed["output"][1]["arguments"] == '{"loc'


def test_an_empty_stream_fails() -> None:
    assert types(events(run([]))) == [
        "response.created",
        "response.in_progress",
        "response.failed",
    ]


def test_a_finish_without_done_completes_at_the_end() -> None:
    data = fixture_bytes("stream_text.sse").replace(b"data: [DONE]\n\n", b"")
    parsed = events(run([data]))
    assert parsed[-1]["type"] == "response.completed"
    assert parsed[-1]["response"]["usage"]["total_tokens"] == 30


def test_done_without_a_finish_reason_completes() -> None:
    data = (
        b'data: {"model":"m","choices":[{"index":0,"delta":{"content":"Hi"}}]}\n\ndata: [DONE]\n\n'
    )
    parsed = events(run([data]))
    assert parsed[-1]["type"] == "response.completed"
    assert parsed[-1]["response"]["usage"] is None
    assert parsed[-1]["response"]["output"][0]["content"][0]["text"] == "Hi"


def test_an_empty_answer_streams_an_empty_message() -> None:
    data = (
        b'data: {"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}\n\n'
        b'data: {"model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
        b"data: [DONE]\n\n"
    )
    parsed = events(run([data]))
    assert accumulate(parsed).output_text == ""
    assert len(parsed[-1]["response"]["output"]) == 1


def test_calls_numbered_zero_with_new_ids_are_separate_calls() -> None:
    """Some backends number every streamed call 0: a new id is a new call."""
    chunks = [
        {"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "f", "arguments": "{}"}}]},
        {"tool_calls": [{"index": 0, "id": "c2", "function": {"name": "g", "arguments": "[]"}}]},
    ]
    data = b"".join(
        b'data: {"model":"m","choices":[{"index":0,"delta":' + json.dumps(d).encode() + b"}]}\n\n"
        for d in chunks
    )
    data += (
        b'data: {"model":"m","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}\n\n'
    )
    output = events(run([data]))[-1]["response"]["output"]
    assert [(o["call_id"], o["name"], o["arguments"]) for o in output] == [
        ("c1", "f", "{}"),
        ("c2", "g", "[]"),
    ]


def test_interleaved_call_arguments_all_land() -> None:
    pieces = [
        (0, "c1", "f", '{"a"'),
        (1, "c2", "g", '{"b"'),
        (0, None, None, ":1}"),
        (1, None, None, ":2}"),
    ]
    data = b""
    for index, id_, name, args in pieces:
        call: dict[str, Any] = {"index": index, "function": {"arguments": args}}
        if id_:
            call["id"] = id_
            call["function"]["name"] = name
        delta = {"tool_calls": [call]}
        data += b'data: {"choices":[{"index":0,"delta":' + json.dumps(delta).encode() + b"}]}\n\n"
    data += b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}\n\n'
    parsed = events(run([data]))
    final = accumulate(parsed)
    assert [(o.call_id, o.arguments) for o in final.output] == [
        ("c1", '{"a":1}'),
        ("c2", '{"b":2}'),
    ]


def test_other_choices_and_keep_alives_are_ignored() -> None:
    data = (
        b": keep-alive\n\n"
        b'data: {"choices":[{"index":1,"delta":{"content":"other"}}]}\n\n'
        b'data: {"choices":[{"index":0,"delta":{"content":"mine"}}]}\n\n'
        b"data: not json\n\n"
        b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
        b"data: [DONE]\n\n"
    )
    assert accumulate(events(run([data]))).output_text == "mine"


def test_an_oversized_event_fails_the_response() -> None:
    data = b'data: {"choices":[{"index":0,"delta":{"content":"' + b"x" * 200
    parsed = events(run([data], max_event_bytes=100))
    assert parsed[-1]["type"] == "response.failed"


@pytest.mark.parametrize(
    ("stream_name", "completion_name"),
    [
        ("stream_two_tool_calls.sse", "completion_tool_calls.json"),
        ("stream_reasoning.sse", "completion_reasoning.json"),
        ("stream_length.sse", "completion_length.json"),
    ],
)
def test_a_stream_ends_with_the_response_a_whole_answer_gives(
    stream_name: str, completion_name: str
) -> None:
    req = request(tools=[WEATHER], instructions="Be brief.")
    final = stream(stream_name, {**req, "stream": True})[-1]["response"]
    responses._new_id = Ids()  # type: ignore[assignment]
    whole = json.loads(response_from_completion(fixture_bytes(completion_name), req))
    assert final == whole


def cut(data: bytes, rng: random.Random) -> list[bytes]:
    points = sorted(rng.sample(range(1, len(data)), rng.randint(1, min(40, len(data) - 1))))
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


@pytest.mark.parametrize("name", STREAMS)
@pytest.mark.parametrize("line_end", [b"\n", b"\r\n"])
def test_any_chunking_gives_the_same_events(name: str, line_end: bytes) -> None:
    expected = run([fixture_bytes(name)])
    events(expected)
    data = fixture_bytes(name).replace(b"\n", line_end)
    rng = random.Random(f"{name}{line_end!r}")
    runs = [[data], [data[i : i + 1] for i in range(len(data))]]
    runs += [cut(data, rng) for _ in range(100)]
    for pieces in runs:
        assert run(pieces) == expected


def test_the_delta_fast_path_equals_a_plain_encoding() -> None:
    """Pre-rendered delta events are exactly the JSON of the event object."""
    text = 'é — 😀 "q" \\ \n \u0000'
    chunk = {"choices": [{"index": 0, "delta": {"content": text}}]}
    out = run([b"data: " + json.dumps(chunk).encode() + b"\n\n"])
    delta = next(e for e in events(out) if e["type"] == "response.output_text.delta")
    assert delta["delta"] == text
    line = next(b for b in out.split(b"\n\n") if b.startswith(b"event: response.output_text.delta"))
    assert line.split(b"\n")[1][6:] == responses.dumps(delta)


# --- the openai SDK client, end to end ---------------------------------------------------------


def sdk_client(completion: str, stream_fixture: str) -> openai.OpenAI:
    """An SDK client whose HTTP goes to this dialect over a fixture backend (no network)."""

    def handle(http_request: httpx.Request) -> httpx.Response:
        assert http_request.url.path == "/v1/responses"
        sent, chat = parse_request(http_request.content)
        if chat.get("stream"):
            encoder = ResponsesStreamEncoder(sent)
            body = encoder.feed(fixture_bytes(stream_fixture)) + encoder.flush()
            return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})
        body = response_from_completion(fixture_bytes(completion), sent)
        return httpx.Response(200, content=body, headers={"content-type": "application/json"})

    return openai.OpenAI(
        api_key="unused",
        base_url="http://nexus.test/v1",
        http_client=httpx.Client(transport=httpx.MockTransport(handle)),
    )


def test_the_sdk_reads_a_whole_response() -> None:
    client = sdk_client("completion_tool_calls.json", "stream_two_tool_calls.sse")
    result = client.responses.create(
        model="llama3.1:8b",
        input=[{"role": "user", "content": "Weather in Paris and Oslo?"}],
        tools=[WEATHER],  # type: ignore[list-item]
    )
    assert result.output_text == "Checking both."
    assert [o.call_id for o in result.output if o.type == "function_call"] == ["call_a", "call_b"]


def test_the_sdk_reads_a_stream() -> None:
    client = sdk_client("completion_tool_calls.json", "stream_two_tool_calls.sse")
    seen = [e.type for e in client.responses.create(model="llama3.1:8b", input="Hi", stream=True)]
    assert seen[0] == "response.created" and seen[-1] == "response.completed"
    with client.responses.stream(model="llama3.1:8b", input="Hi") as sdk_stream:
        deltas = [e.delta for e in sdk_stream if e.type == "response.output_text.delta"]
        final = sdk_stream.get_final_response()
    assert "".join(deltas) == final.output_text == "Checking both."
    assert [o.type for o in final.output] == ["message", "function_call", "function_call"]


def test_the_sdk_sees_a_failed_stream() -> None:
    client = sdk_client("completion_text.json", "stream_error.sse")
    with client.responses.stream(model="llama3.1:8b", input="Hi") as sdk_stream:
        last = [e for e in sdk_stream][-1]
    assert last.type == "response.failed"
    assert last.response.error is not None
    assert last.response.error.message.startswith("backend ollama-1 stopped")


def test_requests_are_not_changed_by_parsing() -> None:
    body = fixture_json("request_agent.json")
    before = copy.deepcopy(body)
    sent, _ = parse_request(json.dumps(body).encode())
    assert sent == before


def test_ids_look_like_openai_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.undo()
    body = json.loads(response_from_completion(fixture_bytes("completion_text.json"), request()))
    assert re.fullmatch(r"resp_[0-9a-f]{48}", body["id"])
    assert re.fullmatch(r"msg_[0-9a-f]{48}", body["output"][0]["id"])
