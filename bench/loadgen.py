"""Closed-loop HTTP/1.1 load generator for the benchmark (its own process, uvloop, raw sockets).

``concurrency`` keep-alive connections each send one ``POST /v1/chat/completions`` at a time
and send the next one as soon as the previous response is complete (no think time). With
``--dialect anthropic`` the request is Anthropic's (a Messages API body with ``max_tokens``
for ``POST /v1/messages``, ``x-api-key`` and ``anthropic-version`` headers): the bench's
direct baseline for the translation workloads (the load generator talking to the fake in the
fake's own dialect), and the client of the ``an-*`` workloads (Anthropic in, to Nexus). With
``--dialect responses`` it is OpenAI's Responses API (a body with ``input`` and
``max_output_tokens`` for ``POST /v1/responses``): the client of the ``re-*`` workloads. All
work happens in protocol callbacks: no coroutine or future per request, so the client costs
a few tens of microseconds per request and per chunk.

Timing (``time.perf_counter``, per request):

- latency: request written → last byte of the body (``Content-Length`` reached or the
  terminating zero-size chunk of a chunked body);
- TTFB: request written → first body byte (for a stream: the chunk carrying the first
  ``data:`` event);
- chunks: SSE ``data:`` events in the body, ``[DONE]`` excluded; in the other dialects the
  content events only: Anthropic ``content_block_delta`` events (a stream is complete with
  exactly one ``message_stop``), Responses ``response.output_text.delta`` events (complete
  with exactly one ``response.completed``). A non-streamed answer must be a JSON object, in
  those dialects one of the dialect's shape (``"type":"message"``,
  ``"object":"response"``).

Only requests that *complete* inside the measuring window (after the warm-up) are counted,
as wrk does. Requests still in flight at the end are reported as ``unfinished`` and their
connections closed. Progress markers go to stdout as JSON lines
(``measure_start``, ``measure_end``) so the caller can sample the servers' CPU over exactly
the window; the result is the last line.

Run: ``python bench/loadgen.py --url http://127.0.0.1:9100/v1/chat/completions -c 64 -d 5``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import sys
import time
from urllib.parse import urlsplit

STATE_HEAD, STATE_LENGTH, STATE_CHUNK_SIZE, STATE_CHUNK_DATA, STATE_TRAILER = range(5)


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of an already sorted list (``q`` in 0–100)."""
    if not sorted_values:
        return None
    k = max(0, min(len(sorted_values) - 1, round(q / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[k]


def summarize_ms(values: list[float]) -> dict[str, float | None]:
    values = sorted(values)
    if not values:
        return {"n": 0, "mean": None, "p50": None, "p90": None, "p99": None, "max": None}
    scale = 1000.0
    return {
        "n": len(values),
        "mean": sum(values) / len(values) * scale,
        "p50": percentile(values, 50) * scale,  # type: ignore[operator]
        "p90": percentile(values, 90) * scale,  # type: ignore[operator]
        "p99": percentile(values, 99) * scale,  # type: ignore[operator]
        "max": values[-1] * scale,
    }


class Stats:
    def __init__(self) -> None:
        self.measuring = False
        self.stopped = False
        self.latencies: list[float] = []
        self.ttfbs: list[float] = []
        self.chunks = 0
        self.bytes = 0
        self.ok = 0
        self.errors: dict[str, int] = {}
        self.overhead_hdr: list[float] = []
        self.sent_total = 0

    def error(self, kind: str) -> None:
        if self.measuring:
            self.errors[kind] = self.errors.get(kind, 0) + 1


class Client(asyncio.Protocol):
    """One keep-alive connection, one request in flight at a time."""

    def __init__(self, gen: LoadGen) -> None:
        self.gen = gen
        self.stats = gen.stats
        self.transport: asyncio.Transport | None = None
        self.connected = gen.loop.create_future()
        self.lost = False
        self._reset()

    def _reset(self) -> None:
        self.state = STATE_HEAD
        self.buf = b""
        self.t0 = 0.0
        self.t_first = 0.0
        self.status = 0
        self.remaining = 0
        self.body: list[bytes] = []
        self.overhead: float | None = None
        self.close_after = False
        self.in_flight = False

    # --- asyncio callbacks ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if not self.connected.done():
            self.connected.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.in_flight and not self.stats.stopped:
            self.stats.error("connection_lost")
            self.in_flight = False
            self.gen.reconnect(self)

    def data_received(self, data: bytes) -> None:
        if not self.in_flight:
            return
        now = time.perf_counter()
        buf = self.buf + data if self.buf else data
        self.buf = b""
        while buf:
            state = self.state
            if state == STATE_HEAD:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    self.buf = buf
                    return
                head = buf[:end]
                buf = buf[end + 4 :]
                self._parse_head(head)
                if self.state == STATE_LENGTH and self.remaining == 0:
                    self._complete(now)
                    return
            elif state == STATE_LENGTH:
                if not self.t_first:
                    self.t_first = now
                take = buf[: self.remaining]
                self.body.append(take)
                self.remaining -= len(take)
                buf = buf[len(take) :]
                if self.remaining == 0:
                    self._complete(now)
                    return
            elif state == STATE_CHUNK_SIZE:
                end = buf.find(b"\r\n")
                if end < 0:
                    self.buf = buf
                    return
                size = int(buf[:end].split(b";", 1)[0], 16)
                buf = buf[end + 2 :]
                if size == 0:
                    self.state = STATE_TRAILER
                else:
                    self.remaining = size
                    self.state = STATE_CHUNK_DATA
            elif state == STATE_CHUNK_DATA:
                if not self.t_first:
                    self.t_first = now
                if self.remaining > 0:
                    take = buf[: self.remaining]
                    self.body.append(take)
                    self.remaining -= len(take)
                    buf = buf[len(take) :]
                    if self.remaining > 0:
                        return
                if len(buf) < 2:
                    self.buf = buf
                    return
                buf = buf[2:]  # CRLF after the chunk data
                self.state = STATE_CHUNK_SIZE
            else:  # STATE_TRAILER: lines until an empty one
                end = buf.find(b"\r\n")
                if end < 0:
                    self.buf = buf
                    return
                line = buf[:end]
                buf = buf[end + 2 :]
                if not line:
                    self._complete(now)
                    return

    # --- protocol ------------------------------------------------------------------------

    def _parse_head(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        try:
            self.status = int(lines[0].split(b" ", 2)[1])
        except (IndexError, ValueError):
            self.status = 0
        chunked = False
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            lname = name.strip().lower()
            if lname == b"content-length":
                length = int(value)
            elif lname == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
            elif lname == b"connection" and b"close" in value.lower():
                self.close_after = True  # e.g. Hypercorn's keep_alive_max_requests (1000)
            elif lname == b"x-nexus-overhead-ms":
                with contextlib.suppress(ValueError):
                    self.overhead = float(value)
        if chunked:
            self.state = STATE_CHUNK_SIZE
        else:
            self.state = STATE_LENGTH
            self.remaining = length

    def send(self) -> None:
        assert self.transport is not None
        self._reset()
        self.in_flight = True
        self.t0 = time.perf_counter()
        self.transport.write(self.gen.request_bytes)
        self.stats.sent_total += 1

    def _complete(self, now: float) -> None:
        stats = self.stats
        self.in_flight = False
        if stats.measuring:
            if self.status == 200:
                body = b"".join(self.body)
                gen = self.gen
                if gen.stream:
                    if gen.chunk_marker is None:
                        events = body.count(b"data:")
                        done = body.count(b"data: [DONE]")
                        events -= done
                    else:
                        events = body.count(gen.chunk_marker)
                        done = body.count(gen.done_marker)
                    if done != 1:
                        stats.error("stream_without_done")
                    else:
                        stats.ok += 1
                        stats.chunks += events
                        stats.latencies.append(now - self.t0)
                        stats.ttfbs.append((self.t_first or now) - self.t0)
                elif body[:1] == b"{" and (gen.body_marker is None or gen.body_marker in body):
                    stats.ok += 1
                    stats.latencies.append(now - self.t0)
                    stats.ttfbs.append((self.t_first or now) - self.t0)
                else:
                    stats.error("bad_body")
                stats.bytes += len(body)
                if self.overhead is not None:
                    stats.overhead_hdr.append(self.overhead / 1000.0)
            else:
                stats.error(f"http_{self.status}")
        if stats.stopped:
            return
        if self.lost or self.close_after:
            self.gen.reconnect(self)
        else:
            self.send()


class LoadGen:
    def __init__(self, args: argparse.Namespace) -> None:
        self.loop = asyncio.get_running_loop()
        url = urlsplit(args.url)
        self.host = url.hostname or "127.0.0.1"
        self.port = url.port or 80
        self.stream = args.stream
        #: a stream's content events and its one closing event (None: OpenAI chat's
        #: ``data:`` events and ``[DONE]``); a non-streamed answer's shape
        self.chunk_marker: bytes | None = None
        self.done_marker = b"data: [DONE]"
        self.body_marker: bytes | None = None
        prompt = "Say hello in one short sentence."
        if args.dialect == "anthropic":
            body = {
                "model": args.model,
                "max_tokens": 64,
                "messages": [{"role": "user", "content": prompt}],
                "stream": args.stream,
            }
            auth = "x-api-key: sk-ant-bench\r\nanthropic-version: 2023-06-01"
            self.chunk_marker = b"event: content_block_delta\n"
            self.done_marker = b"event: message_stop\n"
            self.body_marker = b'"type":"message"'
        elif args.dialect == "responses":
            body = {
                "model": args.model,
                "input": prompt,
                "max_output_tokens": 64,
                "stream": args.stream,
            }
            auth = "Authorization: Bearer sk-bench"
            self.chunk_marker = b"event: response.output_text.delta\n"
            self.done_marker = b"event: response.completed\n"
            self.body_marker = b'"object":"response"'
        else:
            body = {
                "model": args.model,
                "messages": [{"role": "user", "content": "Say hello in one short sentence."}],
                "max_tokens": 64,
                "stream": args.stream,
            }
            auth = "Authorization: Bearer sk-bench"
        payload = json.dumps(body).encode()
        self.request_bytes = (
            f"POST {url.path or '/'} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            "User-Agent: nexus-bench\r\nAccept: */*\r\nContent-Type: application/json\r\n"
            f"{auth}\r\nContent-Length: {len(payload)}\r\n\r\n"
        ).encode() + payload
        self.stats = Stats()
        self.clients: list[Client] = []
        self.reconnects = 0

    async def connect(self) -> Client:
        _, client = await self.loop.create_connection(lambda: Client(self), self.host, self.port)
        return client  # type: ignore[return-value]

    def reconnect(self, old: Client) -> None:
        self.reconnects += 1

        async def again() -> None:
            try:
                client = await self.connect()
            except OSError:
                self.stats.error("connect_failed")
                await asyncio.sleep(0.05)
                if not self.stats.stopped:
                    self.reconnect(old)
                return
            self.clients.append(client)
            if not self.stats.stopped:
                client.send()

        if old in self.clients:
            self.clients.remove(old)
        if old.transport is not None:
            old.transport.close()
        if not self.stats.stopped:
            self.loop.create_task(again())

    async def run(self, concurrency: int, warmup: float, duration: float) -> dict:
        self.clients = list(await asyncio.gather(*(self.connect() for _ in range(concurrency))))
        for c in self.clients:
            c.send()
        await asyncio.sleep(warmup)
        ru0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        self.stats.measuring = True
        print(json.dumps({"event": "measure_start"}), flush=True)
        await asyncio.sleep(duration)
        self.stats.measuring = False
        elapsed = time.perf_counter() - t0
        ru1 = resource.getrusage(resource.RUSAGE_SELF)
        print(json.dumps({"event": "measure_end"}), flush=True)
        self.stats.stopped = True
        unfinished = sum(1 for c in self.clients if c.in_flight)
        for c in self.clients:
            if c.transport is not None:
                c.transport.close()
        await asyncio.sleep(0)
        s = self.stats
        cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
        return {
            "event": "result",
            "concurrency": concurrency,
            "stream": self.stream,
            "elapsed_s": elapsed,
            "ok": s.ok,
            "rps": s.ok / elapsed,
            "errors": s.errors,
            "error_count": sum(s.errors.values()),
            "unfinished": unfinished,
            "reconnects": self.reconnects,
            "latency_ms": summarize_ms(s.latencies),
            "ttfb_ms": summarize_ms(s.ttfbs),
            "chunks": s.chunks,
            "chunks_per_s": s.chunks / elapsed,
            "body_bytes": s.bytes,
            "overhead_header_ms": summarize_ms(s.overhead_hdr) if s.overhead_hdr else None,
            "loadgen_cpu_s": cpu,
            "loadgen_cpu_util": cpu / elapsed,
        }


async def amain(args: argparse.Namespace) -> dict:
    gen = LoadGen(args)
    return await gen.run(args.concurrency, args.warmup, args.duration)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--url", required=True, help="full URL of the endpoint (the dialect's: see --dialect)"
    )
    parser.add_argument("-c", "--concurrency", type=int, default=1)
    parser.add_argument("-d", "--duration", type=float, default=5.0, help="measured seconds")
    parser.add_argument("-w", "--warmup", type=float, default=1.0, help="unmeasured seconds first")
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--model", default="bench-model")
    parser.add_argument(
        "--dialect",
        choices=("openai", "anthropic", "responses"),
        default="openai",
        help="request shape: openai (chat completions), anthropic (a Messages API body for "
        "POST /v1/messages), responses (a Responses API body for POST /v1/responses)",
    )
    args = parser.parse_args(argv)
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    try:
        with runner:
            result = runner.run(amain(args))
    except OSError as exc:
        print(json.dumps({"event": "result", "fatal": f"{type(exc).__name__}: {exc}"}), flush=True)
        return 1
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
