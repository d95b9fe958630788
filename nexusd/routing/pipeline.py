"""The routing pipeline (design §2): stages only remove candidates and say why.

A run takes one model name and a request's requirements and ends in one of three outcomes:
Route (a backend), Queue (capable backends exist but all are at capacity) or Reject.
Later stages (lifecycle, privacy, budget, tier, quality) slot in between ``capabilities``
and ``schedule`` without touching the others.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from nexusd.config.schema import RoutingConfig
from nexusd.registry import Backend, Registry
from nexusd.routing.intent import RoutingIntent
from nexusd.routing.strategies import Strategies
from nexusd.types import BackendStatus, ModelInfo


class Outcome(StrEnum):
    ROUTE = "route"
    QUEUE = "queue"
    REJECT = "reject"


@dataclass(slots=True)
class Rejection:
    stage: str
    backend: str
    reason: str

    def to_json(self) -> dict[str, str]:
        return {"stage": self.stage, "backend": self.backend, "reason": self.reason}


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

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "outcome": self.outcome.value,
            "candidates": self.candidates,
            "rejections": [r.to_json() for r in self.rejections],
            "backend": self.backend.id if self.backend else None,
            "reason": self.reason,
            "model_known": self.model_known,
        }


@dataclass(slots=True)
class StageContext:
    intent: RoutingIntent
    model: str
    candidates: list[Backend]
    rejections: list[Rejection]
    at_capacity: int = 0

    def info(self, backend: Backend) -> ModelInfo:
        return backend.models[self.model]

    def reject(self, stage: str, backend: Backend, reason: str) -> None:
        self.rejections.append(Rejection(stage, backend.id, reason))


Stage = Callable[[StageContext], None]


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


def capabilities(ctx: StageContext) -> None:
    """Hard filters: vision, tools, JSON mode, context window."""
    req = ctx.intent.requirements
    keep = []
    for b in ctx.candidates:
        m = ctx.info(b)
        missing = []
        if req.vision and not m.vision:
            missing.append("vision")
        if req.tools and not m.tools:
            missing.append("tools")
        if req.json_mode and not m.json_mode:
            missing.append("json_mode")
        if missing:
            ctx.reject("capabilities", b, f"model {ctx.model} lacks {', '.join(missing)}")
        elif req.context_tokens > m.context_length:
            ctx.reject(
                "capabilities",
                b,
                f"needs ~{req.context_tokens} tokens of context, model has {m.context_length}",
            )
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


DEFAULT_STAGES: tuple[Stage, ...] = (availability, capabilities, capacity)


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
            outcome = Outcome.QUEUE if ctx.at_capacity else Outcome.REJECT
            return Decision(
                model,
                outcome,
                candidate_ids,
                ctx.rejections,
                reason="all capable backends are busy"
                if ctx.at_capacity
                else "no capable healthy backend",
            )
        index, reason = self.strategies.pick(self.config.strategy, ctx.candidates)
        return Decision(
            model, Outcome.ROUTE, candidate_ids, ctx.rejections, ctx.candidates[index], reason
        )
