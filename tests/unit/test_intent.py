"""What a chat request needs from a backend: vision, tools, JSON mode, context (F06)."""

from __future__ import annotations

from typing import Any

import pytest

from nexusd.routing.intent import Requirements, requirements_of


def user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


def test_plain_text_request_needs_nothing_special() -> None:
    req = requirements_of({"model": "m", "messages": [user("hello world!")]})
    assert req == Requirements(prompt_tokens=3, prompt_chars=12, messages=1)  # 12 chars // 4
    assert req.context_tokens == 3


@pytest.mark.parametrize("kind", ["image_url", "input_image", "image"])
def test_vision_from_an_image_part(kind: str) -> None:
    parts = [{"type": "text", "text": "what is this?"}, {"type": kind, "image_url": {"url": "x"}}]
    assert requirements_of({"messages": [user(parts)]}).vision is True


def test_no_vision_for_text_parts_only() -> None:
    parts = [{"type": "text", "text": "image_url"}]
    assert requirements_of({"messages": [user(parts)]}).vision is False


def test_tokens_count_only_text_parts() -> None:
    data_url = "data:image/png;base64," + "A" * 10_000
    parts = [
        {"type": "text", "text": "a" * 20},
        {"type": "image_url", "image_url": {"url": data_url}},
        {"type": "text", "text": "b" * 20},
    ]
    req = requirements_of({"messages": [user(parts)]})
    assert req.vision is True
    assert req.prompt_tokens == 10  # 40 chars // 4; the image URL is not counted


def test_tokens_sum_string_and_part_contents_over_messages() -> None:
    body = {
        "messages": [
            {"role": "system", "content": "s" * 400},
            user([{"type": "text", "text": "u" * 400}]),
            {"role": "assistant", "content": "a" * 400},
        ]
    }
    assert requirements_of(body).prompt_tokens == 300


def test_tokens_count_characters_not_bytes() -> None:
    assert requirements_of({"messages": [user("é" * 8)]}).prompt_tokens == 2


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, True),
        ({"functions": [{"name": "f"}]}, True),
        ({"tools": []}, False),
        ({"functions": []}, False),
        ({"tools": None}, False),
        ({"tools": {"type": "function"}}, False),
        ({"tools": "yes"}, False),
        ({"tools": [], "functions": [{"name": "f"}]}, True),
        ({}, False),
    ],
    ids=[
        "tools",
        "functions",
        "empty-tools",
        "empty-functions",
        "null",
        "dict",
        "string",
        "empty-tools-but-functions",
        "absent",
    ],
)
def test_tools_need_a_non_empty_list(extra: dict[str, Any], expected: bool) -> None:
    assert requirements_of({"messages": [user("x")], **extra}).tools is expected


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        ({"type": "json_object"}, True),
        ({"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}, True),
        ({"type": "text"}, False),
        ("json_object", False),
        (None, False),
        ({}, False),
    ],
)
def test_json_mode(fmt: Any, expected: bool) -> None:
    assert requirements_of({"messages": [], "response_format": fmt}).json_mode is expected


@pytest.mark.parametrize(
    ("extra", "max_tokens"),
    [
        ({"max_tokens": 500}, 500),
        ({"max_completion_tokens": 700}, 700),
        ({"max_tokens": 500, "max_completion_tokens": 700}, 700),
        ({"max_tokens": 0}, 0),
        ({"max_tokens": -5}, 0),
        ({"max_tokens": True}, 0),
        ({"max_tokens": "500"}, 0),
        ({"max_tokens": 1.5}, 0),
        ({}, 0),
    ],
)
def test_max_tokens_feed_context_tokens(extra: dict[str, Any], max_tokens: int) -> None:
    req = requirements_of({"messages": [user("x" * 400)], **extra})
    assert req.max_tokens == max_tokens
    assert req.context_tokens == 100 + max_tokens


def test_null_max_completion_tokens_falls_back_to_max_tokens() -> None:
    req = requirements_of({"messages": [], "max_completion_tokens": None, "max_tokens": 500})
    assert req.max_tokens == 500


@pytest.mark.parametrize(
    "messages",
    [
        None,
        [],
        "hello",
        {"role": "user"},
        [None, 1, "text", ["nested"]],
        [{"role": "user", "content": None}],
        [{"role": "user"}],
        [{"role": "user", "content": 42}],
        [{"role": "user", "content": {"type": "text", "text": "hi"}}],
        [user([None, 1, "raw", {"type": "text", "text": None}, {"type": "text"}, {}])],
    ],
)
def test_malformed_messages_do_not_crash(messages: Any) -> None:
    req = requirements_of({"messages": messages})
    assert req.prompt_tokens == 0
    assert req.vision is False


def test_missing_messages_key() -> None:
    assert requirements_of({}) == Requirements()


def test_function_call_message_with_null_content_counts_other_messages() -> None:
    body = {
        "messages": [
            user("x" * 40),
            {"role": "assistant", "content": None, "tool_calls": [{"id": "1"}]},
            {"role": "tool", "content": "y" * 40, "tool_call_id": "1"},
        ]
    }
    assert requirements_of(body).prompt_tokens == 20


def test_requirements_to_json() -> None:
    req = requirements_of(
        {
            "messages": [user([{"type": "text", "text": "abcd"}, {"type": "image_url"}])],
            "tools": [{}],
            "response_format": {"type": "json_object"},
            "max_tokens": 9,
        }
    )
    assert req.to_json() == {
        "endpoint": "chat",
        "vision": True,
        "tools": True,
        "json_mode": True,
        "prompt_tokens": 1,
        "prompt_tokens_method": "estimate",
        "max_tokens": 9,
    }
    assert req.context_tokens == 10
