"""The backend registry (F02): every backend, its models, counters and health, in one place.

All mutations happen on the event loop without awaiting in between, so no locks are needed.
A model index (model id -> backends serving it, in registration order) keeps routing O(1)
in the number of models; it is rebuilt only for models whose membership changed.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nexusd.events import EventBus
from nexusd.lease import CapacitySignal, Lease
from nexusd.types import (
    BackendStatus,
    BackendType,
    DiscoverySource,
    ModelInfo,
    ModelOverride,
    PrivacyZone,
)

if TYPE_CHECKING:
    from nexusd.backends.agent import BackendAgent

EMA_WEIGHT = 0.2


class RegistryError(Exception):
    pass


def normalise_url(url: str) -> str:
    """Base URL as stored: no trailing slash and no trailing ``/v1`` (or Google's ``/v1beta``):
    endpoints add their own."""
    url = url.strip().rstrip("/")
    for suffix in ("/v1", "/v1beta"):
        if url.endswith(suffix):
            return url[: -len(suffix)]
    return url


@dataclass(slots=True, eq=False)
class Backend:
    id: str
    name: str
    url: str
    type: BackendType
    source: DiscoverySource = DiscoverySource.STATIC
    priority: int = 50
    zone: PrivacyZone = PrivacyZone.LOCAL
    tier: int | None = None
    enabled: bool = True
    draining: bool = False
    max_concurrent: int | None = None
    forward_client_auth: bool = False
    api_key: str | None = None
    #: why the backend cannot be used at all (e.g. its key's env var is not set): shown as
    #: status ``disabled`` with this reason on every surface; never probed, never routed
    unusable: str | None = None
    model_overrides: dict[str, ModelOverride] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)
    # live state
    health: BackendStatus = BackendStatus.UNKNOWN
    models: dict[str, ModelInfo] = field(default_factory=dict)
    pending: int = 0
    total_requests: int = 0
    errors: int = 0
    passive_failures: int = 0
    latency_ema_ms: float | None = None
    last_error: str | None = None
    last_check: float | None = None
    consecutive_failures: int = 0
    consecutive_successes: int = 0
    added_at: float = field(default_factory=time.time)
    agent: BackendAgent | None = None
    #: notified at every lease release: what a request waiting for capacity waits on
    capacity_freed: CapacitySignal = field(default_factory=CapacitySignal)

    def lease(self) -> Lease:
        """Count one request in flight here until the lease is released (exactly once)."""
        return Lease(self)

    @property
    def status(self) -> BackendStatus:
        """What users see: admin state (disabled, draining) wins over health."""
        if not self.enabled or self.unusable:
            return BackendStatus.DISABLED
        if self.draining:
            return BackendStatus.DRAINING
        return self.health

    @property
    def routable(self) -> bool:
        return (
            self.enabled
            and not self.draining
            and self.health is BackendStatus.HEALTHY
            and not self.unusable
        )

    @property
    def kind(self) -> str:
        """``local`` or ``cloud``, as in ``X-Nexus-Backend-Type``."""
        return "cloud" if self.type.is_cloud else "local"

    def note_latency(self, ms: float) -> None:
        """Exponential moving average of probe round-trips and real time-to-first-byte."""
        prev = self.latency_ema_ms
        self.latency_ema_ms = ms if prev is None else prev + EMA_WEIGHT * (ms - prev)

    def to_json(self) -> dict[str, Any]:
        codec = getattr(self.agent, "codec", None)
        return {
            "id": self.id,
            "name": self.name,
            "url": self.url,
            "type": self.type.value,
            "source": self.source.value,
            "status": self.status.value,
            "health": self.health.value,
            "enabled": self.enabled,
            "draining": self.draining,
            "priority": self.priority,
            "zone": self.zone.value,
            "tier": self.tier,
            "max_concurrent": self.max_concurrent,
            "pending": self.pending,
            "total_requests": self.total_requests,
            "errors": self.errors,
            "passive_failures": self.passive_failures,
            "latency_ema_ms": None
            if self.latency_ema_ms is None
            else round(self.latency_ema_ms, 2),
            "last_error": self.unusable or self.last_error,
            "disabled_reason": self.unusable,
            # the client dialects this backend serves as bytes, without translation
            "native_dialects": codec.dialects_served() if codec is not None else [],
            "last_check": self.last_check,
            "metadata": dict(self.metadata),
            "models": [m.to_json() for m in self.models.values()],
        }


class Registry:
    def __init__(self, bus: EventBus) -> None:
        self.bus = bus
        self._backends: dict[str, Backend] = {}
        self._index: dict[str, list[Backend]] = {}

    # --- queries (hot path: no copies, no scans) ---------------------------------------------

    def get(self, backend_id: str) -> Backend | None:
        return self._backends.get(backend_id)

    def all(self) -> list[Backend]:
        return list(self._backends.values())

    def __len__(self) -> int:
        return len(self._backends)

    def serving(self, model: str) -> list[Backend]:
        """Backends listing ``model`` in any state, in registration order. Do not mutate."""
        return self._index.get(model, _EMPTY)

    def has_model(self, model: str) -> bool:
        return model in self._index

    def model_names(self) -> list[str]:
        return sorted(self._index)

    def find_by_url(self, url: str) -> Backend | None:
        wanted = normalise_url(url)
        for backend in self._backends.values():
            if backend.url == wanted:
                return backend
        return None

    # --- mutations ---------------------------------------------------------------------------

    def add(self, backend: Backend) -> Backend:
        if backend.id in self._backends:
            raise RegistryError(f"backend already exists: {backend.id}")
        backend.url = normalise_url(backend.url)
        self._backends[backend.id] = backend
        self._reindex(backend.models)
        self.bus.publish("backend.added", backend.to_json())
        return backend

    def remove(self, backend_id: str) -> Backend:
        backend = self._backends.pop(backend_id, None)
        if backend is None:
            raise RegistryError(f"backend not found: {backend_id}")
        self._reindex(backend.models)
        self.bus.publish("backend.removed", {"id": backend.id, "name": backend.name})
        return backend

    def set_models(self, backend: Backend, models: Iterable[ModelInfo]) -> bool:
        """Replace a backend's model list (config overrides applied); True if it changed."""
        new: dict[str, ModelInfo] = {}
        for model in models:
            override = backend.model_overrides.get(model.id)
            if override is not None:
                override.apply(model)
            new[model.id] = model
        if new == backend.models:
            return False
        old = backend.models
        backend.models = new
        if backend.id in self._backends:
            self._reindex(old.keys() ^ new.keys())
            self.bus.publish(
                "models.changed",
                {"backend": backend.id, "models": [m.to_json() for m in new.values()]},
            )
        return True

    def set_health(self, backend: Backend, health: BackendStatus, error: str | None) -> bool:
        """Record a health verdict; publish ``backend.status`` when it changed."""
        before = backend.health
        backend.health = health
        backend.last_error = error
        if health is before:
            return False
        if backend.id in self._backends:
            self.publish_status(backend, before)
        return True

    def publish_status(self, backend: Backend, old_health: BackendStatus) -> None:
        self.bus.publish(
            "backend.status",
            {
                "id": backend.id,
                "name": backend.name,
                "status": backend.status.value,
                "old_health": old_health.value,
                "health": backend.health.value,
                "error": backend.unusable or backend.last_error,
            },
        )

    def _reindex(self, model_ids: Iterable[str]) -> None:
        for model_id in model_ids:
            serving = [b for b in self._backends.values() if model_id in b.models]
            if serving:
                self._index[model_id] = serving
            else:
                self._index.pop(model_id, None)


_EMPTY: list[Backend] = []
