"""What a hostile client or backend can throw at the translation layer: each case below once
crashed with a 500 or was recorded wrongly (found by review, issue #13/#14)."""

from __future__ import annotations

import json

import pytest

from nexusd.backends.anthropic import AnthropicCodec
from nexusd.backends.codec import Call, OpenAICodec
from nexusd.backends.google import GoogleCodec
from nexusd.backends.native import NativeStream
from nexusd.backends.translate import Untranslatable, UpstreamStreamError, json_object
from nexusd.pricing import PriceBook
from nexusd.routing.decisions import RequestTrace
from nexusd.routing.intent import Requirements
from nexusd.types import Endpoint

DEEP = "[" * 5000 + "]" * 5000


def chat(body: dict, stream: bool = False) -> Call:
    return Call(Endpoint.CHAT, body, json.dumps(body).encode(), stream)


def test_json_nested_beyond_the_recursion_limit_is_just_not_an_object() -> None:
    assert json_object('{"a":' + DEEP + "}") is None
    assert json_object(b"  " + b'{"ok": 1}') == {"ok": 1}


def test_tool_arguments_nested_too_deep_are_untranslatable_not_a_crash() -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": DEEP}}
    body = {
        "model": "m",
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "c1", "content": "x"},
        ],
    }
    with pytest.raises(Untranslatable):
        AnthropicCodec().encode(chat(body), "m")


def test_a_broken_image_url_is_untranslatable_for_google() -> None:
    part = {"type": "image_url", "image_url": {"url": "http://[oops/x.png"}}
    body = {"model": "m", "messages": [{"role": "user", "content": [part]}]}
    with pytest.raises(Untranslatable, match="not a valid URL"):
        GoogleCodec().encode(chat(body), "m")


def test_an_anthropic_stream_with_hostile_indexes_and_stop_reasons_keeps_going() -> None:
    decoder = AnthropicCodec().stream_decoder(chat({"model": "m", "messages": []}, True), "m")
    events = [
        {"type": "message_start", "message": {"id": "msg_1", "model": "m", "usage": {}}},
        {
            "type": "content_block_start",
            "index": [1],
            "content_block": {"type": "tool_use", "id": "t", "name": "f"},
        },
        {
            "type": "content_block_delta",
            "index": {"x": 1},
            "delta": {"type": "input_json_delta", "partial_json": "{}"},
        },
        {"type": "message_delta", "delta": {"stop_reason": ["end_turn"]}, "usage": {}},
        {"type": "message_stop"},
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": "late"},
        },
    ]
    raw = b"".join(
        b"event: " + e["type"].encode() + b"\ndata: " + json.dumps(e).encode() + b"\n\n"
        for e in events
    )
    out = decoder.feed(raw) + decoder.flush()
    assert out.rstrip().endswith(b"data: [DONE]")  # and nothing after it
    assert b"late" not in out


@pytest.mark.parametrize(
    ("dialect", "end"),
    [
        ("anthropic", b'event: message_stop\ndata: {"type":"message_stop"}\n\n'),
        ("responses", b'event: response.completed\ndata: {"type":"response.completed"}\n\n'),
    ],
)
def test_a_native_stream_cut_before_its_last_event_is_an_error(dialect: str, end: bytes) -> None:
    complete = NativeStream(dialect, None)
    complete.feed(b'event: ping\ndata: {"type":"ping"}\n\n' + end)
    assert complete.flush() == b"" and complete.failed is None
    cut = NativeStream(dialect, None)
    cut.feed(b'event: ping\ndata: {"type":"ping"}\n\n')
    with pytest.raises(UpstreamStreamError, match="ended before"):
        cut.flush()


def test_a_native_responses_request_is_never_stored_by_the_provider() -> None:
    native = {"model": "gpt-4o", "input": "hi"}
    call = Call(Endpoint.CHAT, {}, b"", False, "responses", native, json.dumps(native).encode())
    assert json.loads(OpenAICodec().encode_native(call, "gpt-4o").body)["store"] is False
    native["store"] = True  # a client that asks explicitly is passed as it asked
    raw = json.dumps(native).encode()
    call = Call(Endpoint.CHAT, {}, b"", False, "responses", native, raw)
    assert OpenAICodec().encode_native(call, "gpt-4o").body == raw


def test_a_providers_4xx_costs_nothing() -> None:
    trace = RequestTrace("r", "gpt-4o", "gpt-4o", [], Requirements(Endpoint.CHAT), False)
    trace.backend_type, trace.served_model, trace.outcome = "cloud", "gpt-4o", "passed_through"
    trace.requirements.prompt_tokens = 100_000
    PriceBook().settle(trace)
    assert (trace.cost_usd, trace.cost_status) == (0.0, "exact")
