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
    from nexusd.api.inbound import StreamEncoder
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
        #: canonical events → the client's dialect (set by the endpoint; None: as they are)
        self.encoder: StreamEncoder | None = None
        self._closed = False
        #: pieces of the answer sent so far (said in the error if the backend stops)
        self.relayed = 0

    async def events(self) -> AsyncIterator[bytes]:
        core, ex, decoder, encoder = self.core, self.exchange, self.decoder, self.encoder
        trace = ex.trace
        core.active_streams.add(self)
        try:
            out = decoder.feed(self.upstream.first)
            if out:
                if b'"usage"' in out:  # only the final event carries it: a cheap test
                    trace.prompt_tokens, trace.completion_tokens, trace.cached_tokens = (
                        stream_usage(out)
                    )
                if encoder is not None:
                    out = encoder.feed(out)
                if out:
                    self.relayed += 1
                    yield out
            async for chunk in self.upstream.chunks():
                out = decoder.feed(chunk)
                if out:
                    if b'"usage"' in out:
                        trace.prompt_tokens, trace.completion_tokens, trace.cached_tokens = (
                            stream_usage(out)
                        )
                    if encoder is not None:  # the client's dialect: one body per read
                        out = encoder.feed(out)
                        if not out:
                            continue
                    self.relayed += 1
                    yield out
            tail = decoder.flush()
            if tail and b'"usage"' in tail:
                trace.prompt_tokens, trace.completion_tokens, trace.cached_tokens = stream_usage(
                    tail
                )
            if encoder is not None:
                tail = encoder.feed(tail) + encoder.flush() if tail else encoder.flush()
            if tail:
                yield tail
            self._close()
            self._take_usage()
            # an error event the client already got: the provider's own (native), or the
            # client dialect's for a stream that ended short (translated)
            failed = getattr(decoder, "failed", None) or getattr(encoder, "failed", None)
            if failed is not None:
                self.backend.errors += 1
                message = f"Backend '{self.backend.name}' stream failed: {failed}"
                log.warning("stream %s ended with an error: %s", ex.request_id, message)
                ex.finish("error", 200, error=message, error_type="stream_interrupted")
            else:
                ex.finish("ok", 200)
        except UpstreamError as exc:
            yield self._failed(exc.message, exc.counts_against_backend)
        except Exception as exc:  # a decoder's bug or a body it choked on: still one end
            log.exception("stream %s: relaying the backend's events failed", ex.request_id)
            reason = f"Nexus could not relay its stream ({type(exc).__name__}: {exc})"
            yield self._failed(reason, False, "internal_error")
        finally:
            self._take_usage()  # also for a client that left: the provider billed what it sent
            self._close()  # cancellation or the client leaving: the endpoint finishes the exchange

    def _failed(
        self, reason: str, counts_against_backend: bool, error_type: str = "stream_interrupted"
    ) -> bytes:
        """Finish the exchange as failed; the last event, in the client's dialect."""
        core, ex = self.core, self.exchange
        self._take_usage()
        self.backend.errors += 1
        if core.shutting_down:
            message = "Nexus is shutting down; the stream was ended at the drain deadline"
        else:
            n = self.relayed
            message = (
                f"Backend '{self.backend.name}' failed mid-stream, after "
                f"{n} chunk{'' if n == 1 else 's'}: {reason}"
            )
            if counts_against_backend:
                core.health.note_passive_failure(self.backend, reason)
        log.warning("stream %s ended early: %s", ex.request_id, message)
        self._close()
        ex.finish("error", 200, error=message, error_type=error_type)
        if self.encoder is not None:  # translated like the events before it
            return self.encoder.feed(error_event(message)) + self.encoder.flush()
        # in the client's dialect when the stream is relayed natively
        return getattr(self.decoder, "error_event", error_event)(message)

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
