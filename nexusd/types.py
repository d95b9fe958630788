"""Core vocabulary shared by config, registry, routing and the APIs.

Enums are ``StrEnum`` so their JSON spelling is simply their value.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class BackendType(StrEnum):
    OLLAMA = "ollama"
    VLLM = "vllm"
    LLAMACPP = "llamacpp"
    EXO = "exo"
    LMSTUDIO = "lmstudio"
    GENERIC = "generic"
    OPENAI = "openai"
    ANTHROPIC = "anthropic"
    GOOGLE = "google"

    @property
    def is_cloud(self) -> bool:
        return self in _CLOUD_TYPES


_CLOUD_TYPES = frozenset({BackendType.OPENAI, BackendType.ANTHROPIC, BackendType.GOOGLE})


class BackendStatus(StrEnum):
    UNKNOWN = "unknown"
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"
    LOADING = "loading"
    DRAINING = "draining"
    DISABLED = "disabled"


class DiscoverySource(StrEnum):
    STATIC = "static"
    MDNS = "mdns"
    PROBE = "probe"
    MANUAL = "manual"


class Endpoint(StrEnum):
    """Which inference API a request called; decides which models can serve it."""

    CHAT = "chat"
    COMPLETIONS = "completions"
    EMBEDDINGS = "embeddings"

    @property
    def generates(self) -> bool:
        """Chat and legacy completions need a generative model; embeddings need the other kind."""
        return self is not Endpoint.EMBEDDINGS


class PrivacyZone(StrEnum):
    """Most to least trusted. ``open`` is accepted in config as a synonym of ``public``."""

    LOCAL = "local"
    RESTRICTED = "restricted"
    PUBLIC = "public"

    @property
    def rank(self) -> int:
        """0 is the most trusted: a request allowed zone Z may be served in any zone ≤ Z."""
        return _ZONE_RANK[self]

    @classmethod
    def parse(cls, text: str) -> PrivacyZone:
        """A zone from a header or a flag: case-insensitive, ``open`` = ``public``."""
        low = text.strip().lower()
        return cls.PUBLIC if low == "open" else cls(low)


_ZONE_RANK = {PrivacyZone.LOCAL: 0, PrivacyZone.RESTRICTED: 1, PrivacyZone.PUBLIC: 2}


@dataclass(slots=True)
class ModelInfo:
    """One model as served by one backend, with what it can do."""

    id: str
    context_length: int = 4096
    vision: bool = False
    tools: bool = False
    json_mode: bool = False
    embeddings: bool = False
    loaded: bool | None = None
    max_output_tokens: int | None = None
    #: capability tier from config (``models."id".tier``); None: the backend's tier
    tier: int | None = None
    #: the capability fields the backend itself (or the config) stated; the rest are guesses
    #: from the name. Only stated facts may refuse a request (design §2: hard vs soft).
    reported: frozenset[str] = frozenset()

    def knows(self, capability: str) -> bool:
        return capability in self.reported

    def report(self, **facts: object) -> None:
        """Set capability fields from the backend's own metadata and mark them as stated."""
        for name, value in facts.items():
            setattr(self, name, value)
        self.reported = self.reported | facts.keys()

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "context_length": self.context_length,
            "capabilities": {
                "vision": self.vision,
                "tools": self.tools,
                "json_mode": self.json_mode,
                "embeddings": self.embeddings,
            },
            "loaded": self.loaded,
            "max_output_tokens": self.max_output_tokens,
            "reported": sorted(self.reported),
        }


@dataclass(slots=True)
class ModelOverride:
    """Per-model capability corrections from config; ``None`` keeps what the backend reported."""

    context_length: int | None = None
    vision: bool | None = None
    tools: bool | None = None
    json_mode: bool | None = None
    embeddings: bool | None = None
    #: this model's capability tier on this backend (1–5), over the backend's ``tier``
    tier: int | None = None

    def apply(self, model: ModelInfo) -> None:
        """A config override is a stated fact, like the backend's own metadata."""
        facts = {
            name: value
            for name in ("context_length", "vision", "tools", "json_mode", "embeddings")
            if (value := getattr(self, name)) is not None
        }
        model.report(**facts)
        if self.tier is not None:
            model.tier = self.tier
