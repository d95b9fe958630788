#!/usr/bin/env python3
"""Translation's CPU per streamed answer, in process: no sockets, no event loop.

Feeds the exact bytes ``bench/fake_upstream.py`` sends (its Anthropic stream: ``chunks`` text
deltas plus the prelude and closing events; its OpenAI stream for the pass-through
reference) to the decoders Nexus uses — ``AnthropicCodec.stream_decoder`` and, for
pass-through, ``SSEFramer`` — read by read as the fake writes them, and reports the time per
answer and per content chunk. The end-to-end ``tr-*`` workloads of ``bench/run.py`` say what a
client sees; this says how much of it the decoder is, and ``--profile`` says which functions.

Usage::

    python bench/translate_micro.py                 # 20 chunks, 20 reads per answer
    python bench/translate_micro.py --one-read      # the whole answer in one read (under load)
    python bench/translate_micro.py --profile 25    # + cProfile's top functions (self time)
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import sys
import time
from collections.abc import Callable
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))

import fake_upstream  # noqa: E402  (bench/fake_upstream.py)

from nexusd.backends.anthropic import AnthropicCodec  # noqa: E402
from nexusd.backends.codec import Call  # noqa: E402
from nexusd.sse import SSEFramer  # noqa: E402
from nexusd.types import Endpoint  # noqa: E402


def reads_of(writes: list[bytes]) -> list[bytes]:
    """The fake's writes without their HTTP/1.1 chunk framing: what aiohttp hands over."""
    out = []
    for write in writes:
        events, rest = [], write
        while rest:
            eol = rest.find(b"\r\n")
            size = int(rest[:eol], 16)
            if size == 0:
                break
            events.append(rest[eol + 2 : eol + 2 + size])
            rest = rest[eol + 2 + size + 2 :]
        if events:
            out.append(b"".join(events))
    return out


def per_answer_us(fn: Callable[[], object], n: int) -> float:
    for _ in range(min(300, n)):
        fn()
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - start) / n)
    return best * 1e6


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--chunks", type=int, default=20, help="text deltas per answer (20)")
    p.add_argument("--one-read", action="store_true", help="each answer arrives in one read")
    p.add_argument("-n", type=int, default=3000, help="answers per timing (3000)")
    p.add_argument("--profile", type=int, metavar="TOP", help="cProfile, print the top functions")
    args = p.parse_args(argv)

    anthropic = reads_of(fake_upstream.build_anthropic_stream(args.chunks))
    openai = reads_of(fake_upstream.build_stream_chunks(args.chunks))
    if args.one_read:
        anthropic, openai = [b"".join(anthropic)], [b"".join(openai)]
    body = {
        "model": fake_upstream.ANTHROPIC_MODEL,
        "messages": [{"role": "user", "content": "Say hello in one short sentence."}],
        "max_tokens": 64,
        "stream": True,
    }
    call = Call(Endpoint.CHAT, body, json.dumps(body).encode(), True)
    codec = AnthropicCodec(None)

    def translated() -> None:
        decoder = codec.stream_decoder(call, fake_upstream.ANTHROPIC_MODEL)
        for read in anthropic:
            decoder.feed(read)
        decoder.flush()

    def passed_through() -> None:
        framer = SSEFramer(None)
        for read in openai:
            framer.feed(read)
        framer.flush()

    def encode() -> None:
        codec.encode(call, fake_upstream.ANTHROPIC_MODEL)

    n, c = args.n, args.chunks
    tr = per_answer_us(translated, n)
    pt = per_answer_us(passed_through, n)
    enc = per_answer_us(encode, n * 5)
    print(
        f"{c} content chunks per answer; reads per answer: Anthropic {len(anthropic)}, "
        f"OpenAI {len(openai)}"
    )
    print(f"  AnthropicStreamDecoder  {tr:8.1f} us/answer  {tr / c:6.2f} us/content chunk")
    print(f"  SSEFramer (pass-through){pt:8.1f} us/answer  {pt / c:6.2f} us/content chunk")
    print(f"  AnthropicCodec.encode   {enc:8.1f} us/request")
    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(n):
            translated()
        prof.disable()
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(args.profile)
        print(out.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main())
