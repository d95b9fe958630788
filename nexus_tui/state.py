"""What the TUI knows about the daemon: a snapshot kept current by events.

Plain Python, no Textual: every ``apply_*`` returns the set of topics that changed so the
app refreshes only the views that show them. Models are derived from the backends (each
backend lists its models with capabilities), so they stay live with ``models.changed`` and
``backend.status`` events without another request.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from nexusd.routing.aliases import resolve_alias

BACKENDS, MODELS, REQUESTS, ALIASES, FALLBACKS, STATUS, KEYMAP = (
    "backends",
    "models",
    "requests",
    "aliases",
    "fallbacks",
    "status",
    "keymap",
)
ALL_TOPICS = frozenset({BACKENDS, MODELS, REQUESTS, ALIASES, FALLBACKS, STATUS, KEYMAP})

#: how many requests the live tail keeps
MAX_REQUESTS = 300


@dataclass(slots=True)
class ModelRow:
    """One model across the backends that serve it (derived, see ``NexusState.models``)."""

    id: str
    backends: list[dict[str, Any]] = field(default_factory=list)  # backend + model info
    aliases: list[str] = field(default_factory=list)

    @property
    def healthy(self) -> list[str]:
        return [b["backend_id"] for b in self.backends if b["routable"]]

    @property
    def context_lengths(self) -> list[int]:
        return sorted({int(b.get("context_length") or 0) for b in self.backends})

    @property
    def capabilities(self) -> dict[str, bool]:
        caps: dict[str, bool] = {"vision": False, "tools": False, "json_mode": False}
        caps["embeddings"] = False
        for b in self.backends:
            for name, value in (b.get("capabilities") or {}).items():
                caps[name] = caps.get(name, False) or bool(value)
        return caps


def routable(backend: dict[str, Any]) -> bool:
    return backend.get("status") == "healthy"


class NexusState:
    def __init__(self) -> None:
        self.status: dict[str, Any] = {}
        self.backends: dict[str, dict[str, Any]] = {}
        self.aliases: dict[str, str] = {}
        self.fallbacks: dict[str, list[str]] = {}
        self.requests: dict[str, dict[str, Any]] = {}  # request_id -> summary, oldest first
        self.keymap: dict[str, str] = {}
        #: ``GET /v1/trends``: the last hour per minute, overall and per backend
        self.trends: dict[str, Any] = {}

    # --- whole snapshots -------------------------------------------------------------------

    def load(self, snapshot: dict[str, Any]) -> frozenset[str]:
        """Replace everything with a snapshot (see ``Source.fetch_snapshot``)."""
        self.status = dict(snapshot.get("status") or {})
        self.backends = {b["id"]: dict(b) for b in snapshot.get("backends") or []}
        self.aliases = dict(snapshot.get("aliases") or {})
        self.fallbacks = {k: list(v) for k, v in (snapshot.get("fallbacks") or {}).items()}
        self.requests = {}
        # the API answers newest first; keep oldest first so sparklines read left to right
        for record in reversed(snapshot.get("requests") or []):
            self._add_request(record, count=False)
        self.keymap = dict(snapshot.get("keymap") or {})
        self.trends = dict(snapshot.get("trends") or {})
        return ALL_TOPICS

    def apply_poll(
        self, status: dict[str, Any] | None, backends: Iterable[dict[str, Any]] | None
    ) -> frozenset[str]:
        """Fresh counters (pending, latency EMA, totals) from a periodic poll."""
        changed: set[str] = set()
        if status is not None and status != self.status:
            self.status = dict(status)
            changed.add(STATUS)
        if backends is not None:
            fresh = {b["id"]: dict(b) for b in backends}
            if fresh != self.backends:
                models_before = self._model_signature()
                self.backends = fresh
                changed.add(BACKENDS)
                if self._model_signature() != models_before:
                    changed.add(MODELS)
        return frozenset(changed)

    def apply_trends(self, trends: dict[str, Any] | None) -> frozenset[str]:
        """Fresh trend series (polled every ``TRENDS_EVERY`` seconds)."""
        if not isinstance(trends, dict) or trends == self.trends:
            return frozenset()
        self.trends = dict(trends)
        return frozenset({BACKENDS})

    def backend_trend(self, backend_id: str) -> dict[str, Any] | None:
        found = (self.trends.get("backends") or {}).get(backend_id)
        return found if isinstance(found, dict) else None

    def apply_backend(self, backend: dict[str, Any]) -> frozenset[str]:
        """One backend's full, current JSON (a PATCH answer or a re-fetch after an event)."""
        if self.backends.get(backend["id"]) == backend:
            return frozenset()
        models_before = self._model_signature()
        self.backends[backend["id"]] = dict(backend)
        changed = {BACKENDS, STATUS}
        if self._model_signature() != models_before:
            changed.add(MODELS)
        return frozenset(changed)

    # --- events ----------------------------------------------------------------------------

    def apply_event(self, event: dict[str, Any]) -> frozenset[str]:
        kind = event.get("type")
        data = event.get("data") or {}
        if kind == "backend.added":
            self.backends[data["id"]] = dict(data)
            return frozenset({BACKENDS, MODELS, STATUS})
        if kind == "backend.removed":
            self.backends.pop(data.get("id"), None)
            return frozenset({BACKENDS, MODELS, STATUS})
        if kind == "backend.status":
            backend = self.backends.get(data.get("id"))
            if backend is None:
                return frozenset()
            backend["status"] = data.get("status", backend.get("status"))
            backend["health"] = data.get("health", backend.get("health"))
            if data.get("error"):
                backend["last_error"] = data["error"]
            backend["draining"] = backend["status"] == "draining" or (
                backend.get("draining", False) and backend["status"] == "disabled"
            )
            if backend["status"] == "disabled":
                backend["enabled"] = False
            elif backend["status"] in ("healthy", "unhealthy", "loading", "unknown", "draining"):
                backend["enabled"] = True
            return frozenset({BACKENDS, MODELS, STATUS})
        if kind == "models.changed":
            backend = self.backends.get(data.get("backend"))
            if backend is None:
                return frozenset()
            backend["models"] = list(data.get("models") or [])
            return frozenset({BACKENDS, MODELS})
        if kind == "request.completed":
            return self._add_request(data, count=True)
        if kind == "aliases.changed":
            aliases = data.get("aliases", data)
            self.aliases = {str(k): str(v) for k, v in aliases.items()}
            return frozenset({ALIASES, MODELS})
        if kind == "fallbacks.changed":
            fallbacks = data.get("fallbacks", data)
            self.fallbacks = {str(k): list(v) for k, v in fallbacks.items()}
            return frozenset({FALLBACKS})
        return frozenset()

    def _add_request(self, record: dict[str, Any], *, count: bool) -> frozenset[str]:
        rid = record.get("request_id")
        if not rid:
            return frozenset()
        known = rid in self.requests
        self.requests[rid] = dict(record)
        while len(self.requests) > MAX_REQUESTS:
            del self.requests[next(iter(self.requests))]
        if known:
            return frozenset({REQUESTS})
        changed = {REQUESTS}
        if count:
            # the daemon's own rule (a lease per attempt; errors are the backend's faults),
            # so the view is live between polls and the next poll agrees with it
            for bid in record.get("failed_backends") or ():
                changed |= self._bump(bid, errors=1)
            served = record.get("backend")
            if served:
                broken = record.get("error_type") == "stream_interrupted"
                changed |= self._bump(served, errors=int(broken))
        return frozenset(changed)

    def _bump(self, backend_id: str, *, errors: int) -> set[str]:
        backend = self.backends.get(backend_id)
        if backend is None:
            return set()
        backend["total_requests"] = int(backend.get("total_requests") or 0) + 1
        backend["errors"] = int(backend.get("errors") or 0) + errors
        return {BACKENDS}

    # --- derived views ---------------------------------------------------------------------

    def backend_name(self, backend_id: str | None) -> str:
        if not backend_id:
            return ""
        backend = self.backends.get(backend_id)
        return str(backend.get("name") or backend_id) if backend else backend_id

    def models(self) -> list[ModelRow]:
        rows: dict[str, ModelRow] = {}
        for backend in self.backends.values():
            for model in backend.get("models") or []:
                row = rows.setdefault(model["id"], ModelRow(model["id"]))
                row.backends.append(
                    {
                        **model,
                        "backend_id": backend["id"],
                        "backend_name": backend.get("name") or backend["id"],
                        "status": backend.get("status"),
                        "routable": routable(backend),
                    }
                )
        by_target: dict[str, list[str]] = {}
        for alias, target in self.aliases.items():
            by_target.setdefault(target, []).append(alias)
        for row in rows.values():
            row.aliases = sorted(by_target.get(row.id, []))
        return [rows[k] for k in sorted(rows)]

    def model_names(self) -> list[str]:
        names = {m["id"] for b in self.backends.values() for m in b.get("models") or []}
        return sorted(names)

    def resolve(self, name: str) -> tuple[str, list[str]]:
        """Follow aliases exactly as the daemon does (the one shared walk)."""
        return resolve_alias(self.aliases, name)

    def _model_signature(self) -> tuple[Any, ...]:
        return tuple(
            (
                b["id"],
                b.get("status"),
                tuple(
                    (m.get("id"), m.get("context_length"), str(m.get("capabilities")))
                    for m in b.get("models") or []
                ),
            )
            for b in self.backends.values()
        )
