"""The body of a streamed answer: upstream events out (decoded by the backend's codec), a
final error event if the backend fails after the response head went out.

The relay ends its exchange when the stream ends or fails; the endpoint's catch-all ends it
when the client leaves or the task is cancelled, so the lease and the record are settled
exactly once on every path.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from nexusd.backends.codec import StreamDecoder
from nexusd.backends.upstream import UpstreamError, UpstreamStream
from nexusd.sse import error_event
from nexusd.usage import stream_usage

if TYPE_CHECKING:
    from nexusd.core import Nexus
    from nexusd.exchange import Exchange
    from nexusd.registry import Backend

log = logging.getLogger("nexus.proxy")


class StreamRelay:
    def __init__(
        self,
        core: Nexus,
        exchange: Exchange,
        backend: Backend,
        upstream: UpstreamStream,
        decoder: StreamDecoder,
    ) -> None:
        self.core = core
        self.exchange = exchange
        self.backend = backend
        self.upstream = upstream
        self.decoder = decoder
        self._closed = False
        #: pieces of the answer sent so far (said in the error if the backend stops)
        self.relayed = 0

    async def events(self) -> AsyncIterator[bytes]:
        core, ex, decoder = self.core, self.exchange, self.decoder
        trace = ex.trace
        core.active_streams.add(self)
        try:
            out = decoder.feed(self.upstream.first)
            if out:
                if b'"usage"' in out:  # only the final event carries it: a cheap test
                    trace.prompt_tokens, trace.completion_tokens, trace.cached_tokens = (
                        stream_usage(out)
                    )
                self.relayed += 1
                yield out
            async for chunk in self.upstream.chunks():
                out = decoder.feed(chunk)
                if out:
                    if b'"usage"' in out:
                        trace.prompt_tokens, trace.completion_tokens, trace.cached_tokens = (
                            stream_usage(out)
                        )
                    self.relayed += 1
                    yield out
            tail = decoder.flush()
            if tail:
                if b'"usage"' in tail:
                    trace.prompt_tokens, trace.completion_tokens, trace.cached_tokens = (
                        stream_usage(tail)
                    )
                yield tail
            self._close()
            self._take_usage()
            failed = getattr(decoder, "failed", None)
            if failed is not None:  # a native stream's own error event, relayed as it was
                self.backend.errors += 1
                message = f"Backend '{self.backend.name}' reported an error mid-stream: {failed}"
                log.warning("stream %s ended with an error: %s", ex.request_id, message)
                ex.finish("error", 200, error=message, error_type="stream_interrupted")
            else:
                ex.finish("ok", 200)
        except UpstreamError as exc:
            self._take_usage()
            self.backend.errors += 1
            if core.shutting_down:
                message = "Nexus is shutting down; the stream was ended at the drain deadline"
            else:
                n = self.relayed
                message = (
                    f"Backend '{self.backend.name}' failed mid-stream, after "
                    f"{n} chunk{'' if n == 1 else 's'}: {exc.message}"
                )
                if exc.counts_against_backend:
                    core.health.note_passive_failure(self.backend, exc.message)
            log.warning("stream %s ended early: %s", ex.request_id, message)
            self._close()
            ex.finish("error", 200, error=message, error_type="stream_interrupted")
            # in the client's dialect when the stream is relayed natively
            yield getattr(self.decoder, "error_event", error_event)(message)
        finally:
            self._close()  # cancellation or the client leaving: the endpoint finishes the exchange

    def _take_usage(self) -> None:
        """A translating decoder counts usage itself (also when the client did not ask for
        a usage chunk): the provider's count, for accounting and cost."""
        usage = self.decoder.usage
        if usage is not None:
            trace = self.exchange.trace
            trace.prompt_tokens, trace.completion_tokens = usage.prompt, usage.completion
            trace.cached_tokens = usage.cached

    def close(self) -> None:
        """Idempotent: also for a relay whose events were never iterated (the response head
        could not be sent), whose generator's own cleanup therefore never runs."""
        self._close()

    def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.core.active_streams.discard(self)
        self.upstream.close()
