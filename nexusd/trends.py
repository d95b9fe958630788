"""Trends for people: request rate, p50/p95 latency and error rate over the last hour.

Per-minute buckets for the last ``MINUTES`` minutes, overall and per backend. A bucket holds
a count, an error count and a bounded reservoir of latencies (``RESERVOIR``) for the
percentiles, so ``observe`` is O(1) and memory is bounded: 60 buckets per key, and at most
``MAX_KEYS`` backends (the least recently seen one is forgotten past that). Buckets are
reused in a ring: a bucket whose minute has passed out of the window is reset when its slot
comes round again, and ``series`` ignores stale ones.

``load`` fills the buckets from history at start (the records of the last hour), so a fresh
dashboard or TUI has a first view to draw.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterable
from typing import Any

from nexusd.records import RequestRecord

MINUTES = 60
#: latencies kept per bucket for p50/p95 (reservoir sampling past that)
RESERVOIR = 128
#: backends tracked; the least recently seen is dropped past this
MAX_KEYS = 64


class _Bucket:
    __slots__ = ("count", "errors", "latencies", "minute")

    def __init__(self) -> None:
        self.minute = -1
        self.count = 0
        self.errors = 0
        self.latencies: list[float] = []

    def reset(self, minute: int) -> None:
        self.minute = minute
        self.count = 0
        self.errors = 0
        self.latencies = []

    def add(self, ok: bool, latency_ms: float, rng: random.Random) -> None:
        self.count += 1
        if not ok:
            self.errors += 1
        if len(self.latencies) < RESERVOIR:
            self.latencies.append(latency_ms)
        else:
            j = rng.randrange(self.count)
            if j < RESERVOIR:
                self.latencies[j] = latency_ms


def _percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of a sorted, non-empty list."""
    rank = max(math.ceil(q * len(ordered)), 1)
    return ordered[rank - 1]


class Trends:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._overall = [_Bucket() for _ in range(MINUTES)]
        #: insertion order = least recently seen first (moved to the end on each observe)
        self._backends: dict[str, list[_Bucket]] = {}
        self._rng = random.Random(0)

    def observe(self, record: RequestRecord) -> None:
        """One finished request (from ``Nexus.record``): O(1)."""
        self._add(record, int(self.clock() // 60))

    def load(self, records: Iterable[RequestRecord]) -> None:
        """Fill from history (records of the last hour count; older ones are skipped)."""
        now = int(self.clock() // 60)
        for record in records:
            self._add(record, now)

    def _add(self, record: RequestRecord, now: int) -> None:
        minute = int(record.time // 60)
        if minute > now:  # a clock step: count it now
            minute = now
        if minute <= now - MINUTES:
            return
        ok = record.ok
        latency = float(record.latency_ms)
        self._bucket(self._overall, minute).add(ok, latency, self._rng)
        bid = record.backend
        if bid is None:
            return
        buckets = self._backends.pop(bid, None)
        if buckets is None:
            buckets = [_Bucket() for _ in range(MINUTES)]
            if len(self._backends) >= MAX_KEYS:
                del self._backends[next(iter(self._backends))]
        self._backends[bid] = buckets
        self._bucket(buckets, minute).add(ok, latency, self._rng)

    @staticmethod
    def _bucket(buckets: list[_Bucket], minute: int) -> _Bucket:
        bucket = buckets[minute % MINUTES]
        if bucket.minute != minute:
            bucket.reset(minute)
        return bucket

    def backends(self) -> list[str]:
        return list(self._backends)

    def series(self, backend_id: str | None = None) -> dict[str, Any]:
        """60 points, oldest first, the last one the current (partial) minute:
        ``minutes`` (unix seconds of each minute's start), ``rate`` (requests in that minute),
        ``p50_ms``/``p95_ms`` (None without requests), ``error_rate`` (0..1)."""
        now = int(self.clock() // 60)
        buckets = self._overall if backend_id is None else self._backends.get(backend_id)
        out: dict[str, Any] = {
            "minutes": [],
            "rate": [],
            "p50_ms": [],
            "p95_ms": [],
            "error_rate": [],
        }
        for minute in range(now - MINUTES + 1, now + 1):
            bucket = None if buckets is None else buckets[minute % MINUTES]
            out["minutes"].append(minute * 60)
            if bucket is None or bucket.minute != minute or not bucket.count:
                out["rate"].append(0)
                out["p50_ms"].append(None)
                out["p95_ms"].append(None)
                out["error_rate"].append(0.0)
                continue
            ordered = sorted(bucket.latencies)
            out["rate"].append(bucket.count)
            out["p50_ms"].append(round(_percentile(ordered, 0.50), 1))
            out["p95_ms"].append(round(_percentile(ordered, 0.95), 1))
            out["error_rate"].append(round(bucket.errors / bucket.count, 4))
        return out

    def snapshot(self, backend_ids: Iterable[str] | None = None) -> dict[str, Any]:
        """``{"overall": series, "backends": {id: series}}`` (``GET /v1/trends``, dashboard);
        ``backend_ids`` picks which backends (default: every one seen in the window)."""
        ids = self.backends() if backend_ids is None else list(backend_ids)
        return {"overall": self.series(None), "backends": {b: self.series(b) for b in ids}}
