"""Forwarding a chat completion: route, try, fail over, fall back, relay (F01, F06–F08).

The order of things for one request:

1. resolve the alias (≤ 3 hops) and build the chain ``[model, *fallbacks]``;
2. for each model in the chain run the routing pipeline; try the chosen backend; on a
   retryable failure (connect error, timeout, 5xx, 429) exclude that backend and re-run the
   pipeline, up to ``max_retries`` extra attempts per model; a non-retryable 4xx is passed
   through unchanged;
3. streaming responses commit their 200 only after the upstream sent its first bytes, so
   every failure before that can still fail over; after it, a failure becomes an in-stream
   error event.

The client's body is forwarded byte-for-byte when the model name does not change; otherwise
it is serialised once per model. Responses are never parsed beyond a sanity check.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nexusd.backends.upstream import (
    UpstreamError,
    UpstreamHTTPError,
    UpstreamStream,
    UpstreamTimeout,
)
from nexusd.config.schema import RoutingConfig
from nexusd.errors import (
    ModelNotFound,
    NexusError,
    ServiceUnavailable,
    UpstreamFailed,
    UpstreamTimedOut,
)
from nexusd.logs import prompt_preview
from nexusd.registry import Backend
from nexusd.routing.aliases import resolve_alias
from nexusd.routing.decisions import Attempt, RequestTrace
from nexusd.routing.intent import Requirements, RoutingIntent, requirements_of
from nexusd.routing.pipeline import Outcome
from nexusd.sse import SSEFramer, error_event

if TYPE_CHECKING:
    from nexusd.core import Nexus

log = logging.getLogger("nexus.proxy")

MAX_LISTED_MODELS = 20


@dataclass(slots=True)
class Completed:
    """A whole response: a backend's success, or its 4xx passed through unchanged."""

    status: int
    body: bytes
    content_type: str
    headers: dict[str, str]


@dataclass(slots=True)
class Streaming:
    relay: StreamRelay
    headers: dict[str, str]


@dataclass(slots=True)
class _Success:
    backend: Backend
    model: str
    attempt_index: int
    upstream_s: float
    result: Any


class Proxy:
    def __init__(self, core: Nexus) -> None:
        self.core = core
        self.registry = core.registry
        self.pipeline = core.pipeline

    @property
    def config(self) -> RoutingConfig:
        """Read per request: a config reload swaps the whole routing section atomically."""
        return self.core.config.routing

    # --- entry point ---------------------------------------------------------------------------

    async def chat(
        self,
        body: dict[str, Any],
        raw: bytes,
        client_auth: str | None,
        request_id: str,
        started: float,
    ) -> Completed | Streaming:
        requested: str = body["model"]
        stream = body.get("stream") is True
        resolved, hops = resolve_alias(self.config.aliases, requested)
        intent = RoutingIntent(request_id, requested, requirements_of(body), stream)
        trace = RequestTrace(
            request_id, requested, resolved, hops, intent.requirements, stream, started_perf=started
        )
        if self.core.config.logging.enable_content_logging:
            trace.prompt_preview = prompt_preview(body)
        self.core.decisions.add(trace)
        try:
            success = await self._try_chain(intent, trace, body, raw, client_auth, resolved)
        except NexusError as exc:
            trace.status, trace.error, trace.outcome = exc.status, exc.message, "error"
            trace.error_type = exc.error_type
            exc.headers.setdefault("X-Nexus-Request-Id", request_id)
            raise
        if isinstance(success, Completed):  # a 4xx passed through
            trace.status, trace.outcome = success.status, "passed_through"
            trace.error_type = "upstream_client_error"
            trace.error = success.body[:300].decode("utf-8", "replace")
            success.headers["X-Nexus-Request-Id"] = request_id
            return success
        backend, model = success.backend, success.model
        trace.backend, trace.served_model = backend.id, model
        trace.backend_name, trace.backend_type = backend.name, backend.kind
        if model != resolved:
            trace.fallback_model = model
        elapsed = time.perf_counter() - started
        trace.ttft_ms = elapsed * 1000
        trace.overhead_ms = (elapsed - success.upstream_s) * 1000
        headers = self._headers(
            request_id, backend, model != resolved, success.attempt_index, model, trace.overhead_ms
        )
        if stream:
            relay = StreamRelay(self.core, backend, success.result, trace)
            return Streaming(relay, headers)
        backend.total_requests += 1
        trace.status, trace.outcome = 200, "ok"
        reply = success.result
        trace.prompt_tokens, trace.completion_tokens = usage_of(reply.body)
        return Completed(reply.status, reply.body, reply.content_type, headers)

    def dry_run(self, requested: str, requirements: Requirements) -> dict[str, Any]:
        """The decision a request would get now, without sending anything."""
        resolved, hops = resolve_alias(self.config.aliases, requested)
        chain = [resolved, *self.config.fallbacks.get(resolved, ())]
        intent = RoutingIntent("dry-run", requested, requirements)
        steps = []
        chosen = None
        for model in chain:
            decision = self.pipeline.run(intent, model)
            steps.append(decision)
            if decision.outcome is Outcome.ROUTE:
                chosen = decision
                break
        if chosen is not None:
            outcome = "route"
        elif not any(step.model_known for step in steps):
            outcome = "not_found"
        elif any(step.outcome is Outcome.QUEUE for step in steps):
            outcome = "queue"
        else:
            outcome = "reject"
        return {
            "requested_model": requested,
            "resolved_model": resolved,
            "alias_hops": hops,
            "chain": chain,
            "requirements": requirements.to_json(),
            "outcome": outcome,
            "backend": chosen.backend.id if chosen and chosen.backend else None,
            "model": chosen.model if chosen else None,
            "fallback_used": bool(chosen and chosen.model != resolved),
            "reason": chosen.reason if chosen else None,
            "steps": [step.to_json() for step in steps],
        }

    # --- attempts across backends and fallback models ------------------------------------------

    async def _try_chain(
        self,
        intent: RoutingIntent,
        trace: RequestTrace,
        body: dict[str, Any],
        raw: bytes,
        client_auth: str | None,
        resolved: str,
    ) -> _Success | Completed:
        chain = [resolved, *self.config.fallbacks.get(resolved, ())]
        last_error: tuple[Backend, UpstreamError] | None = None
        upstream_s = 0.0
        attempt_index = 0
        for model in chain:
            payload = raw if body["model"] == model else _with_model(body, model)
            for _ in range(self.config.max_retries + 1):
                decision = self.pipeline.run(intent, model)
                trace.steps.append(decision)
                backend = decision.backend
                if decision.outcome is not Outcome.ROUTE or backend is None:
                    break
                agent = backend.agent
                assert agent is not None
                backend.pending += 1
                t0 = time.perf_counter()
                try:
                    if intent.stream:
                        result: Any = await agent.open_chat_stream(payload, client_auth)
                    else:
                        result = await agent.chat(payload, client_auth)
                except UpstreamError as exc:
                    took = time.perf_counter() - t0
                    upstream_s += took
                    backend.pending -= 1
                    attempt_index += 1
                    if not exc.retryable and isinstance(exc, UpstreamHTTPError):
                        trace.attempts.append(
                            Attempt(
                                backend.id,
                                model,
                                "passed_through",
                                exc.message,
                                exc.status,
                                took * 1000,
                            )
                        )
                        self.core.health.note_passive_success(backend)
                        return Completed(
                            exc.status, exc.body, exc.content_type or "application/json", {}
                        )
                    trace.attempts.append(
                        Attempt(
                            backend.id,
                            model,
                            "failed",
                            exc.message,
                            getattr(exc, "status", None),
                            took * 1000,
                        )
                    )
                    self.core.metrics.observe_attempt_failure(
                        attempt_error_type(exc), intent.requested_model
                    )
                    self._note_failure(backend, exc, model)
                    intent.excluded.add(backend.id)
                    last_error = (backend, exc)
                    continue
                except BaseException:
                    backend.pending -= 1
                    raise
                took = time.perf_counter() - t0
                if not intent.stream:
                    backend.pending -= 1
                backend.note_latency(took * 1000)
                self.core.health.note_passive_success(backend)
                trace.attempts.append(Attempt(backend.id, model, "ok", None, 200, took * 1000))
                trace.route_reason = decision.reason
                return _Success(backend, model, attempt_index, upstream_s + took, result)
        raise self._exhausted(intent, trace, chain, last_error)

    def _note_failure(self, backend: Backend, exc: UpstreamError, model: str) -> None:
        backend.errors += 1
        log.warning("backend %s failed for %s: %s", backend.name, model, exc.message)
        if exc.counts_against_backend:
            self.core.health.note_passive_failure(backend, exc.message)

    # --- errors --------------------------------------------------------------------------------

    def _exhausted(
        self,
        intent: RoutingIntent,
        trace: RequestTrace,
        chain: list[str],
        last_error: tuple[Backend, UpstreamError] | None,
    ) -> NexusError:
        if last_error is not None:
            backend, exc = last_error
            tried = len(trace.attempts)
            what = f"{tried} attempt{'s' if tried != 1 else ''} failed"
            if isinstance(exc, UpstreamTimeout):
                return UpstreamTimedOut(
                    f"Backend '{backend.name}' timed out ({exc.message}); {what}",
                    error_type="timeout",
                )
            if isinstance(exc, UpstreamHTTPError) and exc.status == 429:
                headers = {"Retry-After": exc.retry_after} if exc.retry_after else {}
                err = ServiceUnavailable(
                    f"Every backend for '{chain[0]}' is rate limited ({what}); retry later",
                    context=self._context(trace),
                    headers=headers,
                    error_type="rate_limited",
                )
                return err
            return UpstreamFailed(
                f"Backend '{backend.name}' failed: {exc.message} ({what})",
                error_type="backend_error",
            )
        if not any(step.model_known for step in trace.steps):
            return self._not_found(intent.requested_model, chain)
        if any(step.outcome is Outcome.QUEUE for step in trace.steps):
            return ServiceUnavailable(
                f"All capable backends for '{chain[0]}' are at capacity; retry shortly",
                context=self._context(trace),
                headers={"Retry-After": "1"},
                error_type="capacity",
            )
        reasons = "; ".join(
            f"{r.backend}: {r.reason}" for step in trace.steps for r in step.rejections
        )
        error_type = "fallback_exhausted" if len(chain) > 1 else "no_healthy_backend"
        if len(chain) > 1:
            message = (
                f"Fallback chain exhausted for model '{chain[0]}' "
                f"(tried {', '.join(repr(m) for m in chain)})"
            )
        else:
            message = f"No healthy backend available for model '{chain[0]}'"
        if reasons:
            message += f": {reasons}"
        return ServiceUnavailable(message, context=self._context(trace), error_type=error_type)

    def _context(self, trace: RequestTrace) -> dict[str, Any]:
        return {
            "available_backends": [b.id for b in self.registry.all() if b.routable],
            "rejections": [r.to_json() for step in trace.steps for r in step.rejections],
        }

    def _not_found(self, requested: str, chain: list[str]) -> ModelNotFound:
        names = self.registry.model_names()
        if not names:
            listing = "No models available"
        else:
            shown = ", ".join(names[:MAX_LISTED_MODELS])
            more = len(names) - MAX_LISTED_MODELS
            listing = f"Available: {shown}" + (f" (and {more} more)" if more > 0 else "")
        via = f" (alias of '{chain[0]}')" if chain[0] != requested else ""
        return ModelNotFound(f"Model '{requested}'{via} not found. {listing}", param="model")

    @staticmethod
    def _headers(
        request_id: str,
        backend: Backend,
        fallback: bool,
        attempt_index: int,
        model: str,
        overhead_ms: float,
    ) -> dict[str, str]:
        headers = {
            "X-Nexus-Request-Id": request_id,
            "X-Nexus-Backend": backend.name,
            "X-Nexus-Backend-Type": backend.kind,
            "X-Nexus-Route-Reason": "failover" if fallback or attempt_index else "capability-match",
            "X-Nexus-Privacy-Zone": backend.zone.value,
            "X-Nexus-Overhead-Ms": f"{max(overhead_ms, 0.0):.2f}",
        }
        if fallback:
            headers["X-Nexus-Fallback-Model"] = model
        return headers


_DECODER = json.JSONDecoder()


def attempt_error_type(exc: UpstreamError) -> str:
    if isinstance(exc, UpstreamTimeout):
        return "timeout"
    if isinstance(exc, UpstreamHTTPError) and exc.status == 429:
        return "rate_limited"
    return "backend_error"


def _tokens(usage: Any) -> tuple[int | None, int | None]:
    if not isinstance(usage, dict):
        return None, None
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    return (
        prompt if isinstance(prompt, int) else None,
        completion if isinstance(completion, int) else None,
    )


def usage_of(body: bytes) -> tuple[int | None, int | None]:
    """Token counts from a non-streaming answer: only the ``usage`` object is parsed."""
    at = body.rfind(b'"usage"')
    if at < 0:
        return None, None
    start = body.find(b"{", at)
    if start < 0:
        return None, None
    try:
        usage, _ = _DECODER.raw_decode(body[start:].decode("utf-8", "replace"))
    except ValueError:
        return None, None
    return _tokens(usage)


def stream_usage(events: bytes) -> tuple[int | None, int | None]:
    """Token counts from the stream event that carries ``usage`` (include_usage)."""
    for line in events.split(b"\n"):
        if line.startswith(b"data:") and b'"usage"' in line:
            try:
                found = _tokens(json.loads(line[5:]).get("usage"))
            except (ValueError, AttributeError):
                continue
            if found != (None, None):
                return found
    return None, None


def _with_model(body: dict[str, Any], model: str) -> bytes:
    body["model"] = model
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


class StreamRelay:
    """The body of a streamed response: upstream events out, errors as a final event.

    Cleanup (pending counter, upstream connection, request bookkeeping) runs exactly once,
    whether the stream ends, fails, or the client goes away — even if the client vanished
    before the first chunk was requested.
    """

    def __init__(
        self, core: Nexus, backend: Backend, upstream: UpstreamStream, trace: RequestTrace
    ) -> None:
        self.core = core
        self.backend = backend
        self.upstream = upstream
        self.trace = trace
        self._gen = self._events()
        self._closed = False
        core.active_streams.add(self)

    def __aiter__(self) -> StreamRelay:
        return self

    def __anext__(self) -> Any:
        return self._gen.__anext__()

    async def aclose(self) -> None:
        try:
            await self._gen.aclose()
        finally:
            self.close("client_disconnected")

    async def _events(self) -> AsyncIterator[bytes]:
        framer = SSEFramer()
        trace = self.trace
        try:
            out = framer.feed(self.upstream.first)
            if out:
                if b'"usage"' in out:  # only the final event carries it: a cheap test
                    trace.prompt_tokens, trace.completion_tokens = stream_usage(out)
                yield out
            async for chunk in self.upstream.chunks():
                out = framer.feed(chunk)
                if out:
                    if b'"usage"' in out:
                        trace.prompt_tokens, trace.completion_tokens = stream_usage(out)
                    yield out
            tail = framer.flush()
            if tail:
                if b'"usage"' in tail:
                    trace.prompt_tokens, trace.completion_tokens = stream_usage(tail)
                yield tail
            self.close("ok")
        except UpstreamError as exc:
            self.backend.errors += 1
            if self.core.shutting_down:
                message = "Nexus is shutting down; the stream was ended at the drain deadline"
            else:
                message = f"Backend '{self.backend.name}' failed mid-stream: {exc.message}"
                if exc.counts_against_backend:
                    self.core.health.note_passive_failure(self.backend, exc.message)
            log.warning("stream %s ended early: %s", self.trace.request_id, message)
            self.close("error", message, "stream_interrupted")
            yield error_event(message)
            return
        finally:
            # normal ends closed already; this catches cancellation and generator close
            self.close("client_disconnected")

    def close(self, outcome: str, error: str | None = None, error_type: str | None = None) -> None:
        """Idempotent; synchronous so it can also run from ``__del__``."""
        if self._closed:
            return
        self._closed = True
        self.core.active_streams.discard(self)
        self.upstream.close()
        self.backend.pending -= 1
        trace = self.trace
        trace.outcome = outcome
        trace.error = error
        trace.status = 200
        if outcome == "ok":
            self.backend.total_requests += 1
        elif outcome == "client_disconnected":
            trace.error_type = "client_disconnected"
        else:
            trace.error_type = error_type
        self.core.request_finished(trace)

    def __del__(self) -> None:
        if not self._closed:
            self.close("client_disconnected")
