"""The routing pipeline (design §2): stages only remove candidates and say why.

A run takes one model name and a request's requirements and ends in one of three outcomes:
Route (a backend), Queue (capable backends exist but all are at capacity) or Reject.
Stage order: ``capabilities`` (hard requirements, judged against every backend serving the
model whatever its health, so "nobody can ever serve this" is told apart from "nobody can
now") → ``privacy`` (the request's allowed zone) → ``availability`` → ``capacity`` →
``preferences`` (soft requirements rank) → the strategy. Later stages (lifecycle, budget,
tier, quality) slot in before ``preferences`` without touching the others.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from nexusd.config.schema import RoutingConfig
from nexusd.registry import Backend, Registry
from nexusd.routing.intent import Requirements, RoutingIntent
from nexusd.routing.strategies import Strategies
from nexusd.types import BackendStatus, ModelInfo, PrivacyZone


class Outcome(StrEnum):
    ROUTE = "route"
    QUEUE = "queue"
    REJECT = "reject"


@dataclass(slots=True)
class Rejection:
    stage: str
    backend: str
    reason: str
    #: for a hard mismatch: the error code the client gets if nothing else can serve
    code: str | None = None
    #: the config setting that changes the verdict when the backend's metadata is wrong
    fix: str | None = None

    def to_json(self) -> dict[str, str]:
        out = {"stage": self.stage, "backend": self.backend, "reason": self.reason}
        if self.code is not None:
            out["code"] = self.code
        if self.fix is not None:
            out["fix"] = self.fix
        return out


@dataclass(slots=True)
class Decision:
    """One pipeline run for one model name."""

    model: str
    outcome: Outcome
    candidates: list[str]
    rejections: list[Rejection] = field(default_factory=list)
    backend: Backend | None = None
    reason: str = ""
    model_known: bool = True
    #: every backend serving the model is refused by a hard requirement: no retry can help
    permanent: bool = False
    #: candidates ranked lower for a soft requirement (still eligible on retry)
    demoted: list[Rejection] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "outcome": self.outcome.value,
            "candidates": self.candidates,
            "rejections": [r.to_json() for r in self.rejections],
            "demoted": [r.to_json() for r in self.demoted],
            "backend": self.backend.id if self.backend else None,
            "reason": self.reason,
            "model_known": self.model_known,
            "permanent": self.permanent,
        }


@dataclass(slots=True)
class StageContext:
    intent: RoutingIntent
    model: str
    candidates: list[Backend]
    rejections: list[Rejection]
    at_capacity: int = 0
    demoted: list[Rejection] = field(default_factory=list)

    def info(self, backend: Backend) -> ModelInfo:
        return backend.models[self.model]

    def reject(self, stage: str, backend: Backend, reason: str) -> None:
        self.rejections.append(Rejection(stage, backend.id, reason))


Stage = Callable[[StageContext], None]

MODEL_NOT_CAPABLE = "model_not_capable"
CONTEXT_LENGTH_EXCEEDED = "context_length_exceeded"
WRONG_ENDPOINT = "wrong_endpoint"


def _override(backend: Backend, model: str, key: str, value: object) -> str:
    """The config line that overrides what the backend reports, ready to paste."""
    shown = str(value).lower() if isinstance(value, bool) else value
    return f'models."{model}".{key} = {shown} in the [[backends]] entry named "{backend.name}"'


def mismatches(req: Requirements, m: ModelInfo) -> list[tuple[bool, str, str, str, object]]:
    """Every requirement ``m`` does not meet, as ``(hard, code, what, override key, value)``.

    Hard only where the backend itself (or the config) stated the fact and, for the context,
    where the prompt was counted with the model family's own tokenizer; the same mismatch
    judged from a guess is soft.
    """
    out: list[tuple[bool, str, str, str, object]] = []
    endpoint = req.endpoint
    if endpoint.generates and m.embeddings:
        what = f"is an embedding model: it cannot serve {endpoint.value}; use POST /v1/embeddings"
        out.append((m.knows("embeddings"), WRONG_ENDPOINT, what, "embeddings", False))
    elif not endpoint.generates and not m.embeddings:
        what = "is not an embedding model: it cannot serve POST /v1/embeddings"
        out.append((m.knows("embeddings"), WRONG_ENDPOINT, what, "embeddings", True))
    if req.vision and not m.vision:
        what = "lacks vision: it cannot take image input"
        out.append((m.knows("vision"), MODEL_NOT_CAPABLE, what, "vision", True))
    ctx = m.context_length
    if req.prompt_tokens > ctx:
        hard = req.prompt_exact and m.knows("context_length")
        what = (
            f"has a context of {ctx} tokens; the prompt alone is "
            f"{'' if req.prompt_exact else '~'}{req.prompt_tokens} tokens"
        )
        out.append((hard, CONTEXT_LENGTH_EXCEEDED, what, "context_length", req.prompt_tokens))
    elif req.context_tokens > ctx:
        what = f"may stop early: prompt + max_tokens ~{req.context_tokens} > context {ctx}"
        out.append((False, CONTEXT_LENGTH_EXCEEDED, what, "context_length", req.context_tokens))
    if req.tools and not m.tools:
        out.append((False, MODEL_NOT_CAPABLE, "may ignore tools", "tools", True))
    if req.json_mode and not m.json_mode:
        out.append((False, MODEL_NOT_CAPABLE, "may ignore JSON mode", "json_mode", True))
    return out


def capabilities(ctx: StageContext) -> None:
    """Hard requirements remove a candidate; soft ones are remembered for ``preferences``."""
    req = ctx.intent.requirements
    keep = []
    for b in ctx.candidates:
        hard = None
        for is_hard, code, what, key, value in mismatches(req, ctx.info(b)):
            if is_hard:
                hard = Rejection(
                    "capabilities",
                    b.id,
                    f"model {ctx.model} {what}",
                    code,
                    _override(b, ctx.model, key, value),
                )
                break
        if hard is None:
            keep.append(b)
        else:
            ctx.rejections.append(hard)
    ctx.candidates = keep


def privacy(ctx: StageContext) -> None:
    """Structural privacy: a backend outside the request's allowed zone is never a candidate.
    Every hop (first choice, retries, failover, each fallback model) runs this stage with the
    same intent, so nothing later can re-admit it."""
    allowed = ctx.intent.allowed_zone
    if allowed is PrivacyZone.PUBLIC:
        return
    keep = []
    for b in ctx.candidates:
        if b.zone.rank > allowed.rank:
            why = f"zone {b.zone.value} is outside the allowed zone {allowed.value}"
            ctx.reject("privacy", b, f"{why} ({ctx.intent.zone_reason})")
        else:
            keep.append(b)
    ctx.candidates = keep


def tiers(ctx: StageContext) -> None:
    """Capability tiers: never below the request's ``min_tier`` — in strict and in flexible
    mode alike (flexible only lets other models of the chain stand in, at that tier or
    above). A model's tier is its config override, else its backend's, else 1."""
    need = ctx.intent.min_tier
    if need is None:
        return
    keep = []
    for b in ctx.candidates:
        tier = ctx.info(b).tier or b.tier or 1
        if tier < need:
            ctx.reject("tier", b, f"tier {tier} is below the required tier {need}")
        else:
            keep.append(b)
    ctx.candidates = keep


def availability(ctx: StageContext) -> None:
    """Only healthy, enabled, undrained backends not already failed in this request."""
    keep = []
    for b in ctx.candidates:
        if b.id in ctx.intent.excluded:
            ctx.reject("availability", b, "already failed during this request")
        elif not b.routable:
            status = b.status
            why = f"backend is {status.value}"
            if status is BackendStatus.UNHEALTHY and b.last_error:
                why += f" ({b.last_error})"
            ctx.reject("availability", b, why)
        else:
            keep.append(b)
    ctx.candidates = keep


def capacity(ctx: StageContext) -> None:
    """Backends with ``max_concurrent`` requests in flight cannot take another now."""
    keep = []
    for b in ctx.candidates:
        if b.max_concurrent is not None and b.pending >= b.max_concurrent:
            ctx.at_capacity += 1
            ctx.reject("capacity", b, f"at capacity ({b.pending}/{b.max_concurrent} in flight)")
        else:
            keep.append(b)
    ctx.candidates = keep


def preferences(ctx: StageContext) -> None:
    """Soft requirements rank: only the candidates missing the fewest stay for the strategy.

    The others are ``demoted``, not rejected: a retry (the preferred ones failed) or a
    fleet where nobody meets them still routes there, as the backend would serve it.
    """
    if len(ctx.candidates) < 2:
        return
    req = ctx.intent.requirements
    misses = [[what for _, _, what, _, _ in mismatches(req, ctx.info(b))] for b in ctx.candidates]
    fewest = min(len(m) for m in misses)
    if all(len(m) == fewest for m in misses):
        return
    keep = []
    for b, missed in zip(ctx.candidates, misses, strict=True):
        if len(missed) == fewest:
            keep.append(b)
        else:
            reason = f"model {ctx.model} {'; '.join(missed)}"
            ctx.demoted.append(Rejection("preferences", b.id, reason))
    ctx.candidates = keep


DEFAULT_STAGES: tuple[Stage, ...] = (
    capabilities,
    privacy,
    tiers,
    availability,
    capacity,
    preferences,
)


class Pipeline:
    def __init__(
        self, registry: Registry, config: RoutingConfig, stages: tuple[Stage, ...] = DEFAULT_STAGES
    ) -> None:
        self.registry = registry
        self.config = config
        self.stages = stages
        self.strategies = Strategies(config.weights)

    def run(self, intent: RoutingIntent, model: str) -> Decision:
        serving = self.registry.serving(model)
        candidate_ids = [b.id for b in serving]
        if not serving:
            return Decision(
                model,
                Outcome.REJECT,
                candidate_ids,
                model_known=False,
                reason="no backend serves this model",
            )
        ctx = StageContext(intent, model, list(serving), [])
        for stage in self.stages:
            stage(ctx)
            if not ctx.candidates:
                break
        if not ctx.candidates:
            permanent = all(r.code is not None for r in ctx.rejections)
            if ctx.at_capacity:
                outcome, reason = Outcome.QUEUE, "all capable backends are busy"
            elif permanent:
                outcome, reason = Outcome.REJECT, "no backend can serve this request"
            else:
                outcome, reason = Outcome.REJECT, "no capable healthy backend"
            return Decision(
                model,
                outcome,
                candidate_ids,
                ctx.rejections,
                reason=reason,
                permanent=permanent and not ctx.at_capacity,
                demoted=ctx.demoted,
            )
        index, reason = self.strategies.pick(self.config.strategy, ctx.candidates)
        return Decision(
            model,
            Outcome.ROUTE,
            candidate_ids,
            ctx.rejections,
            ctx.candidates[index],
            reason,
            demoted=ctx.demoted,
        )
