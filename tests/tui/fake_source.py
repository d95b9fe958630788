"""A deterministic data source for snapshot and read-only tests: fixed JSON, no clock, no
socket. It speaks the same ``Source`` interface as ``DaemonSource``."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

from nexus_tui.messages import Connected, DaemonEvent, SnapshotLoaded
from nexus_tui.source import Source
from nexusd.control.client import Refused

DATA = Path(__file__).parent / "data" / "fixed.json"


def fixed_trends(end: float) -> dict[str, Any]:
    """``GET /v1/trends`` for the fixed backends: a deterministic wave per backend, no
    requests in the first ten minutes, 25% errors for two minutes on local-ollama."""
    end_minute = int(end // 60) * 60
    minutes = [end_minute - (59 - i) * 60 for i in range(60)]

    def series(scale: float, base_ms: float, errors_at: set[int]) -> dict[str, Any]:
        rate = [round(scale * (1 + math.sin(i / 6))) if i >= 10 else 0 for i in range(60)]
        p50 = [
            round(base_ms * (1 + 0.2 * math.cos(i / 5)), 1) if r else None
            for i, r in enumerate(rate)
        ]
        return {
            "minutes": minutes,
            "rate": rate,
            "p50_ms": p50,
            "p95_ms": [None if v is None else round(v * 1.8, 1) for v in p50],
            "error_rate": [0.25 if r and i in errors_at else 0.0 for i, r in enumerate(rate)],
        }

    backends = {"local-ollama": series(6, 420, {40, 41}), "gpu-box": series(3, 180, set())}
    overall = dict(backends["local-ollama"])
    overall["rate"] = [a + b for a, b in zip(*(s["rate"] for s in backends.values()), strict=True)]
    return {"overall": overall, "backends": backends}


def fixed_data() -> dict[str, Any]:
    data = json.loads(DATA.read_text())
    status = data["snapshot"]["status"]
    data["snapshot"]["trends"] = fixed_trends(status["started_at"] + status["uptime_seconds"])
    return data


class FakeSource(Source):
    where = "/run/user/1000/nexus/nexusd.sock"

    def __init__(self, data: dict[str, Any] | None = None) -> None:
        self.data = data or fixed_data()
        self.calls: list[tuple[str, str, Any]] = []
        self.app: Any = None

    async def run(self, app: Any) -> None:
        self.app = app
        app.post_message(Connected(self.where))
        app.post_message(SnapshotLoaded(copy.deepcopy(self.data["snapshot"])))

    def emit(self, event_type: str, data: dict[str, Any]) -> None:
        """Push one event as if the daemon had sent it."""
        self.app.post_message(DaemonEvent({"type": event_type, "seq": 0, "time": 0, "data": data}))

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        self.calls.append((method, path, body))
        if method == "GET" and path.startswith("/v1/requests/"):
            rid = path.rsplit("/", 1)[-1]
            found = self.data["explanations"].get(rid)
            if found is None:
                raise Refused(404, "not_found", f"no request {rid!r}")
            return found
        if method == "POST" and path == "/v1/route":
            return self.data["route"]
        return {"ok": True}

    @property
    def mutations(self) -> list[tuple[str, str, Any]]:
        return [
            c
            for c in self.calls
            if c[0] in ("POST", "PUT", "PATCH", "DELETE") and c[1] != "/v1/route"
        ]
