"""Choosing one backend among the capable, healthy ones (F06 strategies).

``smart`` is the reference's score, in integer maths so it is cheap and reproducible:
priority (lower is better), load (pending requests) and latency (EMA of probe round-trips
and real time-to-first-byte), weighted 50/30/20 by default. Ties go to the first candidate
in registration order, so equal backends are picked deterministically.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from nexusd.config.schema import RoutingStrategy, RoutingWeights

if TYPE_CHECKING:
    from nexusd.registry import Backend

Pick = tuple[int, str]  # (index into candidates, route reason)


def score(backend: Backend, weights: RoutingWeights) -> int:
    priority = 100 - min(max(backend.priority, 0), 100)
    load = 100 - min(backend.pending, 100)
    latency_ms = backend.latency_ema_ms or 0.0
    latency = 100 - min(int(latency_ms) // 10, 100)
    return (priority * weights.priority + load * weights.load + latency * weights.latency) // 100


class Strategies:
    """Holds the little state strategies need (the round-robin counter)."""

    def __init__(self, weights: RoutingWeights, rng: random.Random | None = None) -> None:
        self.weights = weights
        self._counter = itertools.count()
        self._rng = rng or random.Random()
        self._by_name: dict[RoutingStrategy, Callable[[Sequence[Backend]], Pick]] = {
            RoutingStrategy.SMART: self.smart,
            RoutingStrategy.ROUND_ROBIN: self.round_robin,
            RoutingStrategy.PRIORITY_ONLY: self.priority_only,
            RoutingStrategy.RANDOM: self.random,
            RoutingStrategy.LEAST_BUSY: self.least_busy,
        }

    def pick(self, strategy: RoutingStrategy, backends: Sequence[Backend]) -> Pick:
        if len(backends) == 1:
            return 0, "only_healthy_backend"
        return self._by_name[strategy](backends)

    def smart(self, backends: Sequence[Backend]) -> Pick:
        best, best_score = 0, -1
        for i, backend in enumerate(backends):
            s = score(backend, self.weights)
            if s > best_score:
                best, best_score = i, s
        return best, f"highest_score:{backends[best].name}:{best_score}"

    def round_robin(self, backends: Sequence[Backend]) -> Pick:
        index = next(self._counter) % len(backends)
        return index, f"round_robin:index_{index}"

    def priority_only(self, backends: Sequence[Backend]) -> Pick:
        best = min(range(len(backends)), key=lambda i: backends[i].priority)
        return best, f"priority:{backends[best].name}:{backends[best].priority}"

    def random(self, backends: Sequence[Backend]) -> Pick:
        index = self._rng.randrange(len(backends))
        return index, f"random:{backends[index].name}"

    def least_busy(self, backends: Sequence[Backend]) -> Pick:
        best = min(range(len(backends)), key=lambda i: (backends[i].pending, backends[i].priority))
        return best, f"least_busy:{backends[best].name}:{backends[best].pending}"
