"""SSE relaying (F01): whole events only, UTF-8 safe, CRLF normalised, clean error events."""

from __future__ import annotations

import json

import pytest

from nexusd.sse import SSEFramer, error_event


def chunk(i: int, text: str) -> bytes:
    payload = {
        "id": f"c{i}",
        "object": "chat.completion.chunk",
        "choices": [{"delta": {"content": text}}],
    }
    return b"data: " + json.dumps(payload, ensure_ascii=False).encode() + b"\n\n"


STREAM = (
    chunk(0, "Hello")
    + chunk(1, " café 🙂")
    + b": keep-alive comment\n\n"
    + b'event: message\ndata: {"multi":\n'
    + b'data: "line"}\n\n'
    + chunk(2, "日本語")
    + b"data: [DONE]\n\n"
)


def feed_all(pieces: list[bytes]) -> tuple[bytes, list[bytes]]:
    framer = SSEFramer()
    outputs = [framer.feed(p) for p in pieces]
    outputs.append(framer.flush())
    return b"".join(outputs), outputs


def assert_whole_events(outputs: list[bytes]) -> None:
    for out in outputs:
        assert out == b"" or out.endswith(b"\n\n"), out


def test_complete_events_pass_through_unchanged() -> None:
    framer = SSEFramer()
    assert framer.feed(STREAM) == STREAM
    assert framer.flush() == b""


def test_partial_event_is_held_until_its_blank_line() -> None:
    framer = SSEFramer()
    assert framer.feed(b'data: {"a":') == b""
    assert framer.feed(b" 1}\n") == b""
    assert framer.feed(b'\ndata: {"b"') == b'data: {"a": 1}\n\n'
    assert framer.feed(b": 2}\n\n") == b'data: {"b": 2}\n\n'
    assert framer.flush() == b""


def test_every_single_split_point_reassembles_exactly() -> None:
    for cut in range(len(STREAM) + 1):
        joined, outputs = feed_all([STREAM[:cut], STREAM[cut:]])
        assert joined == STREAM, cut
        assert_whole_events(outputs)


def test_every_pair_of_split_points_reassembles_exactly() -> None:
    data = chunk(0, "ab") + chunk(1, "é🙂") + b"data: [DONE]\n\n"
    n = len(data)
    for i in range(n + 1):
        for j in range(i, n + 1):
            joined, outputs = feed_all([data[:i], data[i:j], data[j:]])
            assert joined == data, (i, j)
            assert_whole_events(outputs)


def test_byte_by_byte_feed_reassembles_exactly() -> None:
    joined, outputs = feed_all([bytes([b]) for b in STREAM])
    assert joined == STREAM
    assert_whole_events(outputs)
    # one output per event boundary, never more
    assert sum(1 for o in outputs if o) == STREAM.count(b"\n\n")


@pytest.mark.parametrize("char", ["é", "🙂", "日"])
def test_multibyte_character_split_between_chunks_arrives_intact(char: str) -> None:
    event = f'data: {{"content": "{char}"}}\n\n'.encode()
    start = event.index(char.encode())
    for cut in range(start + 1, start + len(char.encode())):  # every cut inside the character
        framer = SSEFramer()
        first = framer.feed(event[:cut])
        assert first == b""
        out = framer.feed(event[cut:])
        assert out == event
        assert json.loads(out.decode()[len("data: ") :])["content"] == char


def test_crlf_framing_is_normalised() -> None:
    crlf = STREAM.replace(b"\n", b"\r\n")
    joined, outputs = feed_all([crlf])
    assert joined == STREAM
    assert_whole_events(outputs)


def test_crlf_framing_at_every_split_point() -> None:
    crlf = STREAM.replace(b"\n", b"\r\n")
    for cut in range(len(crlf) + 1):
        joined, outputs = feed_all([crlf[:cut], crlf[cut:]])
        assert joined == STREAM, cut
        assert_whole_events(outputs)


def test_cr_lf_split_across_chunks() -> None:
    framer = SSEFramer()
    assert framer.feed(b"data: a\r\n\r") == b""
    assert framer.feed(b"\ndata: b\r") == b"data: a\n\n"
    assert framer.feed(b"\n\r\n") == b"data: b\n\n"
    assert framer.flush() == b""


def test_bare_cr_line_endings_are_normalised() -> None:
    data = b"data: a\r\rdata: b\r\r"
    joined, _ = feed_all([data])
    assert joined == b"data: a\n\ndata: b\n\n"
    for cut in range(len(data) + 1):
        assert feed_all([data[:cut], data[cut:]])[0] == b"data: a\n\ndata: b\n\n", cut


def test_flush_terminates_a_dangling_last_event() -> None:
    framer = SSEFramer()
    assert framer.feed(b"data: 1\n\ndata: [DONE]") == b"data: 1\n\n"
    assert framer.flush() == b"data: [DONE]\n\n"
    assert framer.flush() == b""


@pytest.mark.parametrize("tail", [b"data: x\n", b"data: x\r\n", b"data: x\r"])
def test_flush_with_a_half_terminated_event(tail: bytes) -> None:
    framer = SSEFramer()
    assert framer.feed(tail) == b""
    assert framer.flush() == b"data: x\n\n"


@pytest.mark.parametrize("pending", [b"", b"\n", b"\r\n", b"data: 1\n\n"])
def test_flush_returns_nothing_when_nothing_is_pending(pending: bytes) -> None:
    framer = SSEFramer()
    framer.feed(pending)
    assert framer.flush() == b""


def test_framer_is_reusable_after_flush() -> None:
    framer = SSEFramer()
    framer.feed(b"data: old")
    framer.flush()
    assert framer.feed(b"data: new\n\n") == b"data: new\n\n"


def test_error_event_is_a_parseable_openai_error() -> None:
    raw = error_event("backend died: «boom»")
    assert raw.startswith(b"data: ")
    assert raw.endswith(b"\n\n")
    assert raw.count(b"\n") == 2  # a single data line, then the blank line
    payload = json.loads(raw[len(b"data: ") :])
    assert payload == {
        "error": {
            "message": "backend died: «boom»",
            "type": "server_error",
            "param": None,
            "code": "bad_gateway",
        }
    }


def test_error_event_custom_type_and_code_and_newlines_escaped() -> None:
    raw = error_event("line1\nline2", type_="timeout_error", code="gateway_timeout")
    assert raw.count(b"\n") == 2
    error = json.loads(raw[len(b"data: ") :])["error"]
    assert error["message"] == "line1\nline2"
    assert (error["type"], error["code"]) == ("timeout_error", "gateway_timeout")
