"""The one request flow every inbound adapter uses (design §2):

    intent → policy → for each model of the chain: pipeline → lease → codec ⇄ transport
    → answer, or failover / fallback → the exchange finishes with one record

1. resolve the alias (≤ 3 hops) and build the chain ``[model, *fallbacks]`` (embeddings get
   no fallbacks: vectors of another model are not comparable);
2. for each model run the routing pipeline; try the chosen backend under a lease; on a
   retryable failure (connect error, timeout, 5xx, 429) exclude that backend and re-run the
   pipeline, up to ``max_retries`` extra attempts per model; any other 4xx is passed through;
3. a stream commits its 200 only after the upstream's first bytes arrived, so every failure
   before that can still fail over; after it, a failure becomes an in-stream error event.

Refusals: permanent (every backend serving the model lacks a *stated* capability) → 400
with a specific code; transient (unhealthy, busy, drained) → 503 with ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

from nexusd.backends.codec import Call
from nexusd.backends.translate import Untranslatable, json_object
from nexusd.backends.upstream import (
    UpstreamError,
    UpstreamHTTPError,
    UpstreamTimeout,
)
from nexusd.config.schema import RoutingConfig
from nexusd.errors import (
    InvalidRequest,
    ModelNotFound,
    NexusError,
    NotCapable,
    ProviderRefused,
    RateLimited,
    ServiceUnavailable,
    UpstreamFailed,
    UpstreamTimedOut,
)
from nexusd.exchange import Exchange, Phase
from nexusd.logs import prompt_preview
from nexusd.pricing import format_cost
from nexusd.registry import Backend
from nexusd.relay import StreamRelay
from nexusd.routing.aliases import resolve_alias
from nexusd.routing.decisions import Attempt, RequestTrace
from nexusd.routing.intent import Requirements, RoutingIntent, requirements_of
from nexusd.routing.pipeline import (
    CONTEXT_LENGTH_EXCEEDED,
    MODEL_NOT_CAPABLE,
    WRONG_ENDPOINT,
    Outcome,
    mismatches,
)
from nexusd.tokens import TokenCount, counter
from nexusd.types import Endpoint, PrivacyZone
from nexusd.usage import tokens_of, usage_of

if TYPE_CHECKING:
    from nexusd.core import Nexus

log = logging.getLogger("nexus.proxy")

MAX_LISTED_MODELS = 20
#: prompts longer than this are tokenized in a worker thread, not on the event loop
THREAD_TOKENIZE_CHARS = 64_000

#: a per-request policy (auth, tenant, rate limit, budget): refuses by raising NexusError
Policy = Callable[[Exchange, RoutingIntent], Awaitable[None]]


@dataclass(slots=True)
class Answer:
    """A whole response: a backend's success, or its 4xx passed through."""

    status: int
    body: bytes
    content_type: str
    headers: dict[str, str]
    #: already in the client's dialect (a native backend): the adapter must not translate
    native: bool = False


@dataclass(slots=True)
class StreamAnswer:
    relay: StreamRelay
    headers: dict[str, str]
    native: bool = False


class Gateway:
    def __init__(self, core: Nexus) -> None:
        self.core = core
        self.registry = core.registry
        self.pipeline = core.pipeline
        #: run in order after the intent is known and before routing (none built yet)
        self.policies: list[Policy] = []
        self._loading: asyncio.Future[None] | None = None

    @property
    def config(self) -> RoutingConfig:
        """Read per request: a config reload swaps the whole routing section atomically."""
        return self.core.config.routing

    # --- the flow ------------------------------------------------------------------------------

    async def handle(
        self,
        ex: Exchange,
        call: Call,
        client_auth: str | None,
        requirements: Requirements | None = None,
    ) -> Answer | StreamAnswer:
        """``requirements`` come from the inbound adapter (each dialect finds them in its own
        body); OpenAI-shaped bodies are read here when none are given."""
        requested: str = call.body["model"]
        resolved, hops = resolve_alias(self.config.aliases, requested)
        if requirements is None:
            requirements = requirements_of(call.body, call.endpoint)
        intent = RoutingIntent(ex.request_id, requested, requirements, call.stream)
        trace = ex.trace
        trace.requested_model, trace.resolved_model, trace.alias_hops = requested, resolved, hops
        trace.requirements, trace.stream = requirements, call.stream
        if self.core.config.logging.enable_content_logging:
            trace.prompt_preview = prompt_preview(call.body)
        self.core.decisions.add(trace)
        for policy in self.policies:
            await policy(ex, intent)
        chain = self.chain(resolved, call.endpoint)
        if self.config.policies or call.privacy is not None:
            names = [requested, *hops, *chain]
            intent.allowed_zone, intent.zone_reason = self.allowed_zone(names, call.privacy)
            intent.min_tier = self.min_tier(names)
        if intent.min_tier is not None:
            intent.flexible = tier_mode(call.strict, call.flexible)
            if not intent.flexible:  # strict: only the requested model, at its tier
                chain = chain[:1]
        try:
            try:
                return await self._try_chain(ex, intent, call, client_auth, chain)
            except ModelNotFound:
                # a server started after our last probe? look now (rate-limited), not in 5 min
                await self.core.probe.scan_now()
                if not any(self.registry.has_model(m) for m in chain):
                    raise
                return await self._try_chain(ex, intent, call, client_auth, chain)
        except NexusError as exc:
            exc.headers.setdefault("X-Nexus-Request-Id", ex.request_id)
            raise

    def allowed_zone(self, names: list[str], header: str | None) -> tuple[PrivacyZone, str]:
        """The strictest of every policy matching any name of the request (requested,
        alias-resolved, each fallback) and the client's ``X-Nexus-Privacy``, which can only
        tighten; with the reasons, for the refusal and the routing story."""
        zone, reasons = PrivacyZone.PUBLIC, []
        for policy in self.config.policies:
            if policy.privacy is None:
                continue
            matched = next((n for n in names if fnmatchcase(n, policy.model_pattern)), None)
            if matched is not None:
                reasons.append(f'policy "{policy.model_pattern}" on {matched}: {policy.privacy}')
                if policy.privacy.rank < zone.rank:
                    zone = policy.privacy
        if header is not None:
            try:
                asked = PrivacyZone.parse(header)
            except ValueError:
                raise InvalidRequest(
                    f"X-Nexus-Privacy: {header[:40]!r} is not a zone; use local, restricted "
                    "or public",
                    param="X-Nexus-Privacy",
                ) from None
            reasons.append(f"X-Nexus-Privacy: {asked}")
            if asked.rank < zone.rank:
                zone = asked
        return zone, "; ".join(reasons)

    def min_tier(self, names: list[str]) -> int | None:
        """The highest ``min_tier`` of the policies matching any name of the request."""
        tiers = [
            p.min_tier
            for p in self.config.policies
            if p.min_tier is not None and any(fnmatchcase(n, p.model_pattern) for n in names)
        ]
        return max(tiers) if tiers else None

    def chain(self, resolved: str, endpoint: Endpoint) -> list[str]:
        if endpoint is Endpoint.EMBEDDINGS:
            return [resolved]
        return [resolved, *self.config.fallbacks.get(resolved, ())]

    async def _try_chain(
        self,
        ex: Exchange,
        intent: RoutingIntent,
        call: Call,
        client_auth: str | None,
        chain: list[str],
    ) -> Answer | StreamAnswer:
        trace = ex.trace
        last_error: tuple[Backend, UpstreamError] | None = None
        upstream_s = 0.0
        for model in chain:
            await self._measure(intent.requirements, call, model)
            for _ in range(self.config.max_retries + 1):
                decision = self.pipeline.run(intent, model)
                trace.steps.append(decision)
                backend = decision.backend
                if decision.outcome is not Outcome.ROUTE or backend is None:
                    break
                agent = backend.agent
                assert agent is not None
                codec = agent.codec
                # the client's own dialect, spoken by this backend: its bytes go as they are
                native = codec.speaks(call)
                lease = backend.lease()
                t0 = time.perf_counter()
                try:
                    if call.native_only and not native:
                        raise Untranslatable(call.native_only)
                    wire = codec.encode_native(call, model) if native else codec.encode(call, model)
                    if call.stream:
                        result: Any = await agent.transport.open_stream(
                            wire.path, wire.body, client_auth, wire.headers
                        )
                    else:
                        reply = await agent.transport.send(
                            wire.path, wire.body, client_auth, wire.headers
                        )
                        decode = codec.decode_native if native else codec.decode
                        result = (reply.status, decode(call, reply, model))
                except UpstreamError as exc:
                    lease.release()
                    took = time.perf_counter() - t0
                    upstream_s += took
                    if isinstance(exc, UpstreamHTTPError) and key_refused(backend, exc):
                        # the provider refused *our* key: the backend is misconfigured, not
                        # the request; another backend may serve it. Only a refused key
                        # (401) is the whole backend's fault: a 403 may concern one model
                        exc.retryable = True
                        exc.counts_against_backend = exc.status != 403
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
                        return self._passed_through(ex, call, backend, model, exc, native)
                    trace.attempts.append(
                        Attempt(
                            backend.id,
                            model,
                            "refused" if isinstance(exc, Untranslatable) else "failed",
                            exc.message,
                            getattr(exc, "status", None),
                            took * 1000,
                        )
                    )
                    self.core.metrics.observe_attempt_failure(
                        attempt_error_type(exc), intent.requested_model, backend.id
                    )
                    self._note_failure(backend, exc, model, intent.requirements)
                    intent.excluded.add(backend.id)
                    last_error = (backend, exc)
                    continue
                except BaseException:
                    lease.release()
                    raise
                took = time.perf_counter() - t0
                backend.note_latency(took * 1000)
                self.core.health.note_passive_success(backend)
                trace.attempts.append(Attempt(backend.id, model, "ok", None, 200, took * 1000))
                return self._answer(
                    ex, call, backend, model, lease, result, upstream_s + took, native
                )
        raise self._exhausted(intent, trace, chain, last_error)

    def _answer(
        self,
        ex: Exchange,
        call: Call,
        backend: Backend,
        model: str,
        lease: Any,
        result: Any,
        upstream_s: float,
        native: bool,
    ) -> Answer | StreamAnswer:
        ex.advance(Phase.ROUTED)
        trace = ex.trace
        trace.backend, trace.served_model = backend.id, model
        codec = backend.agent.codec  # type: ignore[union-attr]
        trace.translated = not native and call.dialect != codec.dialect
        trace.backend_name, trace.backend_type = backend.name, backend.kind
        fallback = model != trace.resolved_model
        if fallback:
            trace.fallback_model = model
        # one vocabulary on every surface (header, record, history, logs, dashboard): why this
        # backend, in the reference's words; the strategy's own detail stays in the decision
        trace.route_reason = route_reason(fallback, len(trace.attempts) > 1)
        elapsed = time.perf_counter() - ex.started_perf
        trace.ttft_ms = elapsed * 1000
        trace.overhead_ms = (elapsed - upstream_s) * 1000
        headers = self._headers(
            ex.request_id, backend, trace.route_reason, fallback, model, trace.overhead_ms
        )
        cloud = backend.kind == "cloud"
        if call.stream:
            if cloud:
                estimate = self.core.pricing.estimate(model, trace.requirements.prompt_tokens)
                headers["X-Nexus-Cost-Estimated"] = format_cost(estimate)
            ex.hold(lease)
            try:
                if native:
                    decoder = codec.native_decoder(call)
                else:
                    decoder = codec.stream_decoder(call, model)
            except BaseException:
                result.close()  # no relay owns the upstream stream yet
                raise
            relay = StreamRelay(self.core, ex, backend, result, decoder)
            return StreamAnswer(relay, headers, native)
        lease.release()
        status, body = result
        if native:  # the client's own dialect: its top-level usage (metadata may echo one)
            parsed = json_object(body)
            usage = tokens_of(parsed.get("usage")) if parsed else (None, None, None)
        else:
            usage = usage_of(body)
        trace.prompt_tokens, trace.completion_tokens, trace.cached_tokens = usage
        if cloud:
            self.core.pricing.settle(trace)
            headers["X-Nexus-Cost-Estimated"] = format_cost(trace.cost_usd)
        return Answer(status, body, "application/json", headers, native)

    def _passed_through(
        self,
        ex: Exchange,
        call: Call,
        backend: Backend,
        model: str,
        exc: UpstreamHTTPError,
        native: bool,
    ) -> Answer:
        """The backend's 4xx, to the client as the backend said it (in the client's dialect),
        attributed to that backend on every surface."""
        trace = ex.trace
        trace.error_type = "upstream_client_error"
        trace.error = exc.body[:300].decode("utf-8", "replace")
        trace.backend, trace.served_model = backend.id, model
        trace.backend_name, trace.backend_type = backend.name, backend.kind
        codec = backend.agent.codec  # type: ignore[union-attr]
        if native:  # already in the client's dialect
            body = exc.body
        else:
            body = codec.decode_error(call, exc.status, exc.body, exc.content_type)
        content_type = exc.content_type or "application/json"
        if body is not exc.body:
            content_type = "application/json"
        headers = {
            "X-Nexus-Request-Id": ex.request_id,
            "X-Nexus-Backend": backend.name,
            "X-Nexus-Backend-Type": backend.kind,
            "X-Nexus-Privacy-Zone": backend.zone.value,
        }
        return Answer(exc.status, body, content_type, headers, native)

    def _note_failure(
        self, backend: Backend, exc: UpstreamError, model: str, req: Requirements
    ) -> None:
        if isinstance(exc, Untranslatable):
            log.info("backend %s cannot take this request: %s", backend.name, exc.message)
            return  # the request's shape, not the backend's fault
        backend.errors += 1
        log.warning("backend %s failed for %s: %s", backend.name, model, exc.message)
        if exc.counts_against_backend and not _predicted(req, backend, model):
            self.core.health.note_passive_failure(backend, exc.message)

    async def _measure(self, req: Requirements, call: Call, model: str) -> None:
        """Count the prompt with a real tokenizer, but only when the count could change a
        verdict: the cheap upper bound exceeds some serving backend's context."""
        if req.prompt_method != "estimate" or req.prompt_chars == 0:
            return
        serving = self.registry.serving(model)
        if not serving:
            return
        bound = req.token_bound() + req.max_tokens
        if all(bound <= b.models[model].context_length for b in serving):
            return
        tokens = counter()
        if not tokens.ready(model):
            # loading an encoding takes ~0.3 s and ~50 MB: never on the request path, and only
            # once a request needs it. This request keeps the estimate (which only ranks).
            self._load_encoding_soon(model)
            return
        if req.prompt_chars > THREAD_TOKENIZE_CHARS:
            count = await asyncio.to_thread(count_prompt, call, model)
        else:
            count = count_prompt(call, model)
        req.prompt_tokens, req.prompt_exact, req.prompt_method = (
            count.tokens,
            count.exact,
            count.method,
        )

    def _load_encoding_soon(self, model: str) -> None:
        if self._loading is not None and not self._loading.done():
            return
        self._loading = asyncio.ensure_future(asyncio.to_thread(counter().prepare, model))

    # --- dry run -------------------------------------------------------------------------------

    def dry_run(
        self, requested: str, requirements: Requirements, privacy: str | None = None
    ) -> dict[str, Any]:
        """The decision a request would get now, without sending anything."""
        resolved, hops = resolve_alias(self.config.aliases, requested)
        chain = self.chain(resolved, requirements.endpoint)
        intent = RoutingIntent("dry-run", requested, requirements)
        if self.config.policies or privacy is not None:  # the same zone as a real request
            names = [requested, *hops, *chain]
            intent.allowed_zone, intent.zone_reason = self.allowed_zone(names, privacy)
            intent.min_tier = self.min_tier(names)
            if intent.min_tier is not None:
                chain = chain[:1]  # strict, the default
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
            "permanent": outcome == "reject" and all(step.permanent for step in steps),
            "backend": chosen.backend.id if chosen and chosen.backend else None,
            "model": chosen.model if chosen else None,
            "fallback_used": bool(chosen and chosen.model != resolved),
            "reason": chosen.reason if chosen else None,
            "steps": [step.to_json() for step in steps],
        }

    # --- errors --------------------------------------------------------------------------------

    def _exhausted(
        self,
        intent: RoutingIntent,
        trace: RequestTrace,
        chain: list[str],
        last_error: tuple[Backend, UpstreamError] | None,
    ) -> NexusError:
        refused = self._privacy_refusal(intent, trace, chain, last_error)
        if refused is not None:
            return refused
        if intent.min_tier is not None and any(
            r.stage == "tier" for step in trace.steps for r in step.rejections
        ):
            context = self._context(trace)
            context["required_tier"] = intent.min_tier
            mode = "flexible" if intent.flexible else "strict"
            failed = f"; the last one failed: {last_error[1].message}" if last_error else ""
            return ServiceUnavailable(
                f"No backend of tier {intent.min_tier} or above can serve '{chain[0]}' now "
                f"({mode} mode{failed}). Lower tiers are never used for it"
                + (
                    ""
                    if intent.flexible
                    else "; X-Nexus-Flexible: true lets its fallbacks stand in"
                ),
                context=context,
                headers={"Retry-After": "5"},
                error_type="tier",
            )
        if last_error is not None:
            backend, exc = last_error
            tried = len(trace.attempts)
            what = f"{tried} attempt{'s' if tried != 1 else ''} failed"
            if isinstance(exc, UpstreamTimeout):
                return UpstreamTimedOut(
                    f"Backend '{backend.name}' timed out ({exc.message}); {what}",
                    error_type="timeout",
                )
            if isinstance(exc, Untranslatable):
                return NotCapable(
                    f"Backend '{backend.name}' ({backend.type.value}) cannot take this request: "
                    f"{exc.message}",
                    code="unsupported_by_backend",
                    param=exc.param,
                    context=self._context(trace),
                    error_type="unsupported_by_backend",
                )
            if isinstance(exc, UpstreamHTTPError):
                said = provider_message(backend, exc)
                if exc.status == 429:
                    return RateLimited(
                        f"Every backend for '{chain[0]}' is rate limited ({what}); last: "
                        f"'{backend.name}' said {said}",
                        headers={"Retry-After": exc.retry_after or "5"},
                        error_type="rate_limited",
                    )
                if key_refused(backend, exc):
                    return ProviderRefused(
                        f"Backend '{backend.name}' refused Nexus's configured key (HTTP "
                        f"{exc.status}: {said}); check the key in the environment variable "
                        "named by its api_key_env",
                        status=exc.status,
                        error_type="provider_auth",
                    )
                return UpstreamFailed(
                    f"Backend '{backend.name}' failed: HTTP {exc.status}: {said} ({what})",
                    error_type="backend_error",
                )
            return UpstreamFailed(
                f"Backend '{backend.name}' failed: {exc.message} ({what})",
                error_type="backend_error",
            )
        steps = trace.steps
        if not any(step.model_known for step in steps):
            return self._not_found(intent.requested_model, chain)
        if any(step.outcome is Outcome.QUEUE for step in steps):
            return ServiceUnavailable(
                f"All capable backends for '{chain[0]}' are at capacity; retry shortly",
                context=self._context(trace),
                headers={"Retry-After": "1"},
                error_type="capacity",
            )
        if all(step.permanent for step in steps):
            return self._not_capable(intent, trace, chain)

        reasons = "; ".join(f"{r.backend}: {r.reason}" for step in steps for r in step.rejections)
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
        return ServiceUnavailable(
            message,
            context=self._context(trace),
            headers={"Retry-After": "5"},
            error_type=error_type,
        )

    def _privacy_refusal(
        self,
        intent: RoutingIntent,
        trace: RequestTrace,
        chain: list[str],
        last_error: tuple[Backend, UpstreamError] | None,
    ) -> ServiceUnavailable | None:
        """503 with ``context.privacy_zone_required`` when the zone kept out a backend that
        could otherwise have served: also after the allowed backends failed (the failure is
        in the message), so the client learns why nothing else was tried."""
        zone = intent.allowed_zone
        if zone is PrivacyZone.PUBLIC or not any(
            r.stage == "privacy" for step in trace.steps for r in step.rejections
        ):
            return None
        if not any(step.model_known for step in trace.steps):
            return None  # nothing serves the name at all: that is a 404
        self.core.metrics.privacy_blocks.labels(zone.value).inc()
        context = self._context(trace)
        context["privacy_zone_required"] = zone.value
        context["privacy_reason"] = intent.zone_reason
        failed = f"; the last one failed: {last_error[1].message}" if last_error else ""
        return ServiceUnavailable(
            f"No backend in zone '{zone}' (or a more trusted one) can serve '{chain[0]}' now "
            f"({intent.zone_reason}){failed}. Backends in less trusted zones are never used "
            "for it: start or fix a backend in that zone",
            context=context,
            headers={"Retry-After": "5"},
            error_type="privacy",
        )

    def _not_capable(
        self, intent: RoutingIntent, trace: RequestTrace, chain: list[str]
    ) -> NotCapable:
        first = trace.steps[0].rejections[0]
        code = first.code or "model_not_capable"
        via = f" (alias of '{chain[0]}')" if chain[0] != intent.requested_model else ""
        reason = first.reason.removeprefix(f"model {chain[0]} ")
        message = f"Model '{intent.requested_model}'{via} {reason}."
        if code in _HINTS:
            message += f" {_HINTS[code]}"
        if len(chain) > 1:
            message += f" Its fallbacks ({', '.join(chain[1:])}) cannot serve it either."
        if first.fix:
            message += f" If backend '{first.backend}' reports this wrongly, set {first.fix}."
        return NotCapable(
            message,
            code=code,
            param="model",
            context=self._context(trace),
            error_type=code,
        )

    def _context(self, trace: RequestTrace) -> dict[str, Any]:
        return {
            "available_backends": [b.id for b in self.registry.all() if b.routable],
            "rejections": [r.to_json() for step in trace.steps for r in step.rejections],
        }

    def _not_found(self, requested: str, chain: list[str]) -> ModelNotFound:
        names = self.registry.model_names()
        if not len(self.registry):
            listing = (
                "Nexus has no backends yet: start a local server (Ollama: `ollama serve`; "
                "llama.cpp: `llama-server -m MODEL.gguf`) and the local probe finds it on its "
                "usual port, or add one with `nexus backends add URL`"
            )
        elif not names:
            listing = "No models available (no backend lists any model yet)"
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
        reason: str,
        fallback: bool,
        model: str,
        overhead_ms: float,
    ) -> dict[str, str]:
        headers = {
            "X-Nexus-Request-Id": request_id,
            "X-Nexus-Backend": backend.name,
            "X-Nexus-Backend-Type": backend.kind,
            "X-Nexus-Route-Reason": reason,
            "X-Nexus-Privacy-Zone": backend.zone.value,
            "X-Nexus-Overhead-Ms": f"{max(overhead_ms, 0.0):.2f}",
        }
        if fallback:
            headers["X-Nexus-Fallback-Model"] = model
        return headers


#: what the client can do about a permanent refusal (wrong_endpoint names the endpoint itself)
_HINTS = {
    MODEL_NOT_CAPABLE: "Send text only, or pick a model that has vision.",
    CONTEXT_LENGTH_EXCEEDED: "Shorten the prompt, or pick a model with a longer context.",
}


def _predicted(req: Requirements, backend: Backend, model: str) -> bool:
    """The request itself predicted this failure (it went to a model we guessed could not
    serve its endpoint): a client mistake, not a sign that the backend is broken."""
    info = backend.models.get(model)
    if info is None:
        return False
    return any(code == WRONG_ENDPOINT for _, code, _, _, _ in mismatches(req, info))


def route_reason(fallback: bool, retried: bool) -> str:
    """``X-Nexus-Route-Reason`` and the record's ``route_reason``: ``failover`` when another
    backend or a fallback model had to step in, else ``capability-match``."""
    return "failover" if fallback or retried else "capability-match"


def count_prompt(call: Call, model: str) -> TokenCount:
    """The prompt of any endpoint, counted with the model family's tokenizer (or estimated)."""
    tokens, body = counter(), call.body
    if call.endpoint is Endpoint.CHAT:
        return tokens.count_chat(body.get("messages"), model)
    if call.endpoint is Endpoint.COMPLETIONS:
        return tokens.count_prompt(body.get("prompt"), model)
    return tokens.count_inputs(body.get("input"), model)


_TRUE, _FALSE = frozenset({"true", "1", "yes", "on"}), frozenset({"false", "0", "no", "off"})


def _header_flag(value: str | None, name: str) -> bool | None:
    if value is None:
        return None
    low = value.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise InvalidRequest(f"{name}: {value[:40]!r} is not true or false", param=name)


def tier_mode(strict: str | None, flexible: str | None) -> bool:
    """Flexible only when asked (``X-Nexus-Flexible: true``) and strict was not
    (``X-Nexus-Strict: true`` wins; ``false`` is honoured, unlike the reference)."""
    is_strict = _header_flag(strict, "X-Nexus-Strict")
    is_flexible = _header_flag(flexible, "X-Nexus-Flexible")
    if is_strict:
        return False
    return bool(is_flexible) or is_strict is False


def key_refused(backend: Backend, exc: UpstreamHTTPError) -> bool:
    """A cloud provider's 401/403 (Google: 400 ``API_KEY_INVALID``): its verdict on our
    configured key, not on the client."""
    if not backend.type.is_cloud:
        return False
    return exc.status in (401, 403) or (exc.status == 400 and b"API_KEY_INVALID" in exc.body)


def provider_message(backend: Backend, exc: UpstreamHTTPError) -> str:
    """The provider's own error message, read through its codec (bounded)."""
    agent = backend.agent
    body = exc.body
    if agent is not None:
        try:
            body = agent.codec.decode_error(_NO_CALL, exc.status, exc.body, exc.content_type)
        except Exception:  # a hostile error body must not break the error path
            body = exc.body
    try:
        message = json.loads(body)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = body[:300].decode("utf-8", "replace").strip()
    return str(message)[:500] or "(no message)"


#: error bodies do not depend on the request; codecs get a placeholder call
_NO_CALL = Call(Endpoint.CHAT, {}, b"")


def attempt_error_type(exc: UpstreamError) -> str:
    if isinstance(exc, Untranslatable):
        return "unsupported_by_backend"
    if isinstance(exc, UpstreamTimeout):
        return "timeout"
    if isinstance(exc, UpstreamHTTPError) and exc.status == 429:
        return "rate_limited"
    return "backend_error"
