"""A deterministic data source for snapshot and read-only tests: fixed JSON, no clock, no
socket. It speaks the same ``Source`` interface as ``DaemonSource``."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from nexus_tui.messages import Connected, DaemonEvent, SnapshotLoaded
from nexus_tui.source import Source
from nexusd.control.client import Refused

DATA = Path(__file__).parent / "data" / "fixed.json"


def fixed_data() -> dict[str, Any]:
    return json.loads(DATA.read_text())


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
