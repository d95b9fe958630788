"""Hostile or broken backends: answers that are too large, endless, truncated, of the wrong
type, never framed, or redirected (the `Faults` knobs of issue 11, see `state.Faults`).

Every writer here streams from one preallocated block, so a fake can send gigabytes without
holding them; each runs until its answer is done or the client hangs up (a write then fails,
which `FakeBackend` counts in `client_disconnects`, so a test can tell "closed" from "drained").
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from aiohttp import hdrs, web

from .wire import dumps

if TYPE_CHECKING:
    from .server import FakeBackend

MIB = 1024 * 1024
_BLOCK = b"x" * MIB
#: the query parameter a redirect adds, so a fake redirecting to itself serves the retry
REDIRECTED = "_redirected"
HTML_PAGE = (
    b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head>"
    b"<body><h1>502 Bad Gateway</h1><p>nginx</p></body></html>"
)


class UntypedStreamResponse(web.StreamResponse):
    """A response with no Content-Type header at all (aiohttp adds one by default)."""

    async def _prepare_headers(self) -> None:
        await super()._prepare_headers()
        self.headers.popall(hdrs.CONTENT_TYPE, None)


def stream_response(content_type: str, status: int = 200) -> web.StreamResponse:
    """A response with this Content-Type; ``""`` leaves the header out."""
    if content_type:
        return web.StreamResponse(status=status, headers={hdrs.CONTENT_TYPE: content_type})
    return UntypedStreamResponse(status=status)


async def write_repeated(
    resp: web.StreamResponse, total: int | None, block: bytes = _BLOCK
) -> None:
    """Write ``total`` bytes (``None``: forever) of ``block``, a block at a time."""
    view = memoryview(block)
    sent = 0
    while total is None or sent < total:
        n = len(block) if total is None else min(len(block), total - sent)
        await resp.write(view[:n])
        sent += n


async def non_stream_reply(
    fb: FakeBackend, request: web.Request, payload: Any
) -> web.StreamResponse | None:
    """A hostile answer to a non-streaming request, or None to answer normally."""
    faults = fb.faults
    if faults.truncate_json:  # well framed (Content-Length matches), but half an object
        raw = dumps(payload).encode()
        return web.Response(body=raw[: len(raw) // 2], content_type="application/json")
    if faults.endless_body:  # an open JSON array that never closes, sent flat out
        resp = stream_response("application/json")
        await resp.prepare(request)
        await resp.write(b'{"id":"endless","object":"chat.completion","choices":[')
        await write_repeated(resp, None, b'{"index":0},' * 4096)
        return resp
    if faults.response_bytes is not None:  # a valid JSON answer padded to exactly N bytes
        head = b'{"padding":"'
        if isinstance(payload, dict) and payload:
            tail = b'",' + dumps(payload).encode()[1:]
        else:
            tail = b'","answer":' + dumps(payload).encode() + b"}"
        padding = max(faults.response_bytes - len(head) - len(tail), 0)
        resp = stream_response("application/json")
        if not faults.response_chunked:
            resp.content_length = len(head) + padding + len(tail)
        await resp.prepare(request)
        await resp.write(head)
        await write_repeated(resp, padding)
        await resp.write(tail)
        await resp.write_eof()
        return resp
    return None


async def stream_body_reply(
    fb: FakeBackend, request: web.Request, reply: str
) -> web.StreamResponse | None:
    """A stream request answered with something that is not a stream (``stream_body``)."""
    kind = fb.faults.stream_body
    if kind is None:
        return None
    if kind == "json":
        body = dumps(
            {
                "id": "chatcmpl-not-a-stream",
                "object": "chat.completion",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": reply},
                        "finish_reason": "stop",
                    }
                ],
            }
        ).encode()
        content_type = "application/json"
    elif kind == "html":
        body, content_type = HTML_PAGE, "text/html"
    else:
        raise ValueError(f"stream_body: {kind!r} is not 'json' or 'html'")
    if fb.faults.stream_content_type is not None:
        content_type = fb.faults.stream_content_type
    resp = stream_response(content_type)
    resp.content_length = len(body)
    await resp.prepare(request)
    await resp.write(body)
    await resp.write_eof()
    return resp


async def write_unframed(fb: FakeBackend, resp: web.StreamResponse) -> None:
    """Bytes that never complete an event, until the client hangs up: flat out in 64 KiB
    writes, or (``unframed_delay_s`` > 0) a trickle of one byte per delay."""
    delay = fb.faults.unframed_delay_s
    await resp.write(b"data: ")
    if delay <= 0:
        await write_repeated(resp, None, _BLOCK[: 64 * 1024])
    while True:
        await asyncio.sleep(delay)
        await resp.write(b"x")


def redirect(fb: FakeBackend, request: web.Request, inference: bool) -> web.Response | None:
    """A 307 to ``redirect_to`` + the same path (inference; probes too with ``redirect_probes``),
    unless this request is itself the target of such a redirect."""
    target = fb.faults.redirect_to
    if target is None or REDIRECTED in request.query:
        return None
    if not (inference or fb.faults.redirect_probes):
        return None
    location = f"{target.rstrip('/')}{request.path}?{REDIRECTED}=1"
    return web.Response(status=307, headers={hdrs.LOCATION: location}, text="moved")
