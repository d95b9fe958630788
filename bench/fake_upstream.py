"""A minimal, very fast upstream for the benchmark: OpenAI-compatible, and Anthropic's
Messages API on the same port.

Raw ``asyncio.Protocol`` on uvloop (plain asyncio when uvloop is missing), HTTP/1.1 with
keep-alive, no framework. It serves:

- ``POST /v1/chat/completions``: ``"stream": false`` → one ~400-byte JSON completion with
  ``usage``; ``"stream": true`` → ``chunks`` SSE ``data:`` events (each its own HTTP chunk and
  its own ``write``), ``delay_ms`` apart, then ``data: [DONE]``;
- ``POST /v1/messages`` (Anthropic; needs an ``x-api-key`` header, any value, else 401):
  ``"stream": false`` → one Message JSON (one text block, ``end_turn``, ``usage``) of the
  same text; ``"stream": true`` → SSE with ``event:`` lines: ``message_start``,
  ``content_block_start``, ``chunks`` × ``content_block_delta`` (``text_delta``, the same
  texts as the OpenAI chunks), ``content_block_stop``, ``message_delta`` (stop reason and
  output tokens), ``message_stop``. Each event is its own HTTP chunk; the events due at the
  same moment go out in one ``write`` (the prelude with the first delta, the closing events
  with the last one), so delayed streams put their first and last bytes on the wire at the
  same deadlines as the OpenAI ones;
- ``GET /v1/models``: OpenAI's list (model ``bench-model``), or, when the request carries an
  ``anthropic-version`` header (Nexus's Anthropic prober sends it), Anthropic's shape
  (``{"data":[{"type":"model","id":"claude-sonnet-4-bench",…}],"has_more":false,…}``);
- ``GET /health``;
- ``POST /_bench/mode`` with ``{"chunks": N, "delay_ms": D}``: changes the stream shape for
  the following requests, in both dialects (the bench switches workloads this way, so
  whatever a gateway does to the request body cannot change what the fake sends).

Responses are prebuilt bytes; the per-request work is one header scan and one small
``json.loads`` of the request body. Run: ``python bench/fake_upstream.py --port 9100``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import time

MODEL = "bench-model"
#: the model the Anthropic side lists and answers as: priced like ``claude-sonnet-4`` by Nexus
#: (its price table matches the longest entry prefixing the id at a ``-``), so the bench
#: exercises the cost path a real Claude answer takes
ANTHROPIC_MODEL = "claude-sonnet-4-bench"
STATE = {"chunks": 20, "delay_ms": 0.0}

_COMPLETION = {
    "id": "chatcmpl-bench0000000000000000000000000",
    "object": "chat.completion",
    "created": 1700000000,
    "model": MODEL,
    "system_fingerprint": "fp_bench",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "Hello! I am a fake model answering as fast as I can. "
                "This reply has a realistic size for a short answer.",
            },
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 12, "completion_tokens": 24, "total_tokens": 36},
}
COMPLETION_BODY = json.dumps(_COMPLETION, separators=(",", ":")).encode()
MODELS_BODY = json.dumps(
    {
        "object": "list",
        "data": [{"id": MODEL, "object": "model", "created": 1700000000, "owned_by": "bench"}],
    }
).encode()
HEALTH_BODY = b'{"status":"ok"}'
ANSWER_TEXT = _COMPLETION["choices"][0]["message"]["content"]  # type: ignore[index]
_MESSAGE = {
    "id": "msg_bench00000000000000000000",
    "type": "message",
    "role": "assistant",
    "model": ANTHROPIC_MODEL,
    "content": [{"type": "text", "text": ANSWER_TEXT}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {"input_tokens": 12, "output_tokens": 24},
}
MESSAGE_BODY = json.dumps(_MESSAGE, separators=(",", ":")).encode()
ANTHROPIC_MODELS_BODY = json.dumps(
    {
        "data": [
            {
                "type": "model",
                "id": ANTHROPIC_MODEL,
                "display_name": "Claude Sonnet 4 (bench)",
                "created_at": "2025-05-14T00:00:00Z",
            }
        ],
        "has_more": False,
        "first_id": ANTHROPIC_MODEL,
        "last_id": ANTHROPIC_MODEL,
    },
    separators=(",", ":"),
).encode()

STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: text/event-stream\r\n"
    b"Cache-Control: no-cache\r\n"
    b"Transfer-Encoding: chunked\r\n"
    b"\r\n"
)


def _response(status: bytes, body: bytes, ctype: bytes = b"application/json") -> bytes:
    return (
        b"HTTP/1.1 "
        + status
        + b"\r\nContent-Type: "
        + ctype
        + b"\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


COMPLETION_RESPONSE = _response(b"200 OK", COMPLETION_BODY)
MODELS_RESPONSE = _response(b"200 OK", MODELS_BODY)
MESSAGE_RESPONSE = _response(b"200 OK", MESSAGE_BODY)
ANTHROPIC_MODELS_RESPONSE = _response(b"200 OK", ANTHROPIC_MODELS_BODY)
UNAUTHORIZED = _response(
    b"401 Unauthorized",
    b'{"type":"error","error":{"type":"authentication_error","message":"x-api-key header is'
    b' required"}}',
)
HEALTH_RESPONSE = _response(b"200 OK", HEALTH_BODY)
NOT_FOUND = _response(b"404 Not Found", b'{"error":{"message":"not found"}}')
BAD_REQUEST = _response(b"400 Bad Request", b'{"error":{"message":"bad request"}}')
OK_EMPTY = _response(b"200 OK", b"{}")


def _chunk(payload: bytes) -> bytes:
    """One HTTP/1.1 chunk holding one SSE event."""
    event = b"data: " + payload + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(event), event)


def build_stream_chunks(n: int) -> list[bytes]:
    """``n`` content deltas (the first carries the role, the last the finish reason)."""
    base = {
        "id": "chatcmpl-bench0000000000000000000000000",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": MODEL,
        "system_fingerprint": "fp_bench",
    }
    out = []
    for i in range(n):
        delta: dict[str, str] = {"content": f" tok{i}"}
        if i == 0:
            delta = {"role": "assistant", "content": "tok0"}
        last = i == n - 1
        event = {
            **base,
            "choices": [
                {
                    "index": 0,
                    "delta": delta,
                    "logprobs": None,
                    "finish_reason": "stop" if last else None,
                }
            ],
        }
        out.append(_chunk(json.dumps(event, separators=(",", ":")).encode()))
    out.append(_chunk(b"[DONE]") + b"0\r\n\r\n")
    return out


def _event_chunk(name: str, payload: dict) -> bytes:
    """One HTTP/1.1 chunk holding one Anthropic SSE event (``event:`` and ``data:`` lines)."""
    data = json.dumps(payload, separators=(",", ":")).encode()
    event = b"event: " + name.encode() + b"\ndata: " + data + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(event), event)


def build_anthropic_stream(n: int) -> list[bytes]:
    """Anthropic's stream of one text block with ``n`` text deltas (the OpenAI chunks'
    texts), as ``n`` writes: write ``i`` is due at deadline ``i + 1`` like the OpenAI chunk
    ``i``; the first carries the prelude (``message_start``, ``content_block_start``), the
    last the closing events and the terminating zero-size chunk."""
    start = _event_chunk(
        "message_start",
        {
            "type": "message_start",
            "message": {
                **{k: v for k, v in _MESSAGE.items() if k not in ("content", "usage")},
                "content": [],
                "stop_reason": None,
                "usage": {"input_tokens": 12, "output_tokens": 1},
            },
        },
    ) + _event_chunk(
        "content_block_start",
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    )
    deltas = [
        _event_chunk(
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": "tok0" if i == 0 else f" tok{i}"},
            },
        )
        for i in range(n)
    ]
    end = (
        _event_chunk("content_block_stop", {"type": "content_block_stop", "index": 0})
        + _event_chunk(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": n},
            },
        )
        + _event_chunk("message_stop", {"type": "message_stop"})
        + b"0\r\n\r\n"
    )
    deltas[0] = start + deltas[0]
    deltas[-1] = deltas[-1] + end
    return deltas


_STREAM_CACHE: dict[tuple[bool, int], list[bytes]] = {}


def stream_chunks(n: int, anthropic: bool = False) -> list[bytes]:
    chunks = _STREAM_CACHE.get((anthropic, n))
    if chunks is None:
        build = build_anthropic_stream if anthropic else build_stream_chunks
        chunks = _STREAM_CACHE[(anthropic, n)] = build(n)
    return chunks


class FakeProtocol(asyncio.Protocol):
    __slots__ = ("_buf", "_closed", "_streaming", "transport")

    def __init__(self) -> None:
        self._buf = b""
        self._closed = False
        self._streaming = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True

    def data_received(self, data: bytes) -> None:
        buf = self._buf + data if self._buf else data
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                break
            head = buf[:end]
            length = 0
            idx = head.lower().find(b"\r\ncontent-length:")
            if idx >= 0:
                stop = head.find(b"\r\n", idx + 2)
                length = int(head[idx + 17 : stop if stop > 0 else len(head)])
            total = end + 4 + length
            if len(buf) < total:
                break
            body = buf[end + 4 : total]
            buf = buf[total:]
            self._handle(head, body)
        self._buf = buf

    def _handle(self, head: bytes, body: bytes) -> None:
        transport = self.transport
        assert transport is not None
        line = head[: head.find(b"\r\n")] if b"\r\n" in head else head
        parts = line.split(b" ")
        method, path = parts[0], parts[1] if len(parts) > 1 else b"/"
        anthropic = False
        if method == b"POST" and (
            path.startswith(b"/v1/chat/completions")
            or (anthropic := path.startswith(b"/v1/messages"))
        ):
            if anthropic and b"\r\nx-api-key:" not in head.lower():
                transport.write(UNAUTHORIZED)
                return
            try:
                req = json.loads(body)
            except ValueError:
                transport.write(BAD_REQUEST)
                return
            if isinstance(req, dict) and req.get("stream") is True:
                chunks = stream_chunks(int(STATE["chunks"]), anthropic)
                delay = STATE["delay_ms"] / 1000.0
                if delay > 0:
                    asyncio.get_running_loop().create_task(self._stream(chunks, delay, anthropic))
                else:
                    transport.write(STREAM_HEAD)
                    for c in chunks:
                        transport.write(c)
            else:
                transport.write(MESSAGE_RESPONSE if anthropic else COMPLETION_RESPONSE)
        elif method == b"GET" and path.startswith(b"/v1/models"):
            if b"\r\nanthropic-version:" in head.lower():
                transport.write(ANTHROPIC_MODELS_RESPONSE)
            else:
                transport.write(MODELS_RESPONSE)
        elif method == b"GET" and path.startswith(b"/health"):
            transport.write(HEALTH_RESPONSE)
        elif method == b"POST" and path.startswith(b"/_bench/mode"):
            try:
                mode = json.loads(body)
                STATE["chunks"] = max(1, int(mode.get("chunks", STATE["chunks"])))
                STATE["delay_ms"] = max(0.0, float(mode.get("delay_ms", STATE["delay_ms"])))
            except (ValueError, TypeError, AttributeError):
                transport.write(BAD_REQUEST)
                return
            transport.write(OK_EMPTY)
        else:
            transport.write(NOT_FOUND)

    async def _stream(self, chunks: list[bytes], delay: float, anthropic: bool = False) -> None:
        """Chunk i leaves at start + (i + 1) × delay: absolute deadlines, so timer jitter does
        not accumulate and every stream takes ``len × delay`` however loaded the loop is.
        OpenAI: ``[DONE]`` follows the last content chunk at once; Anthropic: the closing
        events are in the last write already."""
        transport = self.transport
        assert transport is not None
        loop = asyncio.get_running_loop()
        transport.write(STREAM_HEAD)
        start = loop.time()
        last = len(chunks) if anthropic else len(chunks) - 1
        for i, c in enumerate(chunks):
            if i < last:
                wait = start + (i + 1) * delay - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
            if self._closed:
                return
            transport.write(c)


async def serve(host: str, port: int, ready_line: bool) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(FakeProtocol, host, port, backlog=2048, reuse_address=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    if ready_line:
        bound = server.sockets[0].getsockname()[1]
        print(json.dumps({"event": "ready", "port": bound, "t": time.time()}), flush=True)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--chunks", type=int, default=20)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    parser.add_argument("--ready-line", action="store_true", help="print a JSON line when bound")
    args = parser.parse_args(argv)
    STATE["chunks"], STATE["delay_ms"] = args.chunks, args.delay_ms
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    with runner:
        runner.run(serve(args.host, args.port, args.ready_line))
    return 0


if __name__ == "__main__":
    sys.exit(main())
