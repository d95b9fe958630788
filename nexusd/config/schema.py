"""The typed configuration tree. Every key has a default, so an absent file means "zero config".

Field docstrings live in ``docs/configuration.md``; the loader reads the types below to
validate, so adding a key here is all it takes to make it loadable from TOML.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from nexusd.types import BackendType, ModelOverride, PrivacyZone

MIB = 1024 * 1024

DEFAULT_PROBE_PORTS = [11434, 1234, 8080, 8000, 52415]
DEFAULT_ALLOWED_NETWORKS = [
    "127.0.0.0/8",
    "::1/128",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "169.254.0.0/16",
    "fe80::/10",
    "fc00::/7",
]


class RoutingStrategy(StrEnum):
    SMART = "smart"
    ROUND_ROBIN = "round_robin"
    PRIORITY_ONLY = "priority_only"
    RANDOM = "random"
    LEAST_BUSY = "least_busy"


class LogFormat(StrEnum):
    PRETTY = "pretty"
    JSON = "json"


class LogLevel(StrEnum):
    TRACE = "trace"
    DEBUG = "debug"
    INFO = "info"
    WARN = "warn"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"


@dataclass(slots=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    request_timeout_seconds: float = 300.0
    connect_timeout_seconds: float = 5.0
    first_byte_timeout_seconds: float = 300.0
    stream_idle_timeout_seconds: float = 120.0
    max_body_bytes: int = 10 * MIB
    shutdown_timeout_seconds: float = 30.0
    #: a request body must arrive within this long (slow-body / slowloris bound)
    body_timeout_seconds: float = 60.0
    #: an upstream answer (non-streaming body) larger than this is a backend fault
    max_response_bytes: int = 64 * MIB
    #: one upstream SSE event larger than this (or bytes that never form an event) is a fault
    max_event_bytes: int = 1 * MIB
    #: host names accepted in ``Host`` besides the loopback ones (and the bind address)
    allowed_hosts: list[str] = field(default_factory=list)
    #: browser origins allowed besides our own (``/ws``, cross-site requests to the API)
    allowed_origins: list[str] = field(default_factory=list)


@dataclass(slots=True)
class HealthCheckConfig:
    enabled: bool = True
    interval_seconds: float = 30.0
    timeout_seconds: float = 5.0
    failure_threshold: int = 3
    recovery_threshold: int = 2
    #: a healthy cloud backend's model list is asked for this often (a metadata call with
    #: the key: never inference, never billed); unhealthy ones follow ``interval_seconds``
    cloud_interval_seconds: float = 300.0


@dataclass(slots=True)
class DiscoveryConfig:
    enabled: bool = True
    service_types: list[str] = field(
        default_factory=lambda: ["_ollama._tcp.local.", "_llm._tcp.local."]
    )
    grace_period_seconds: float = 60.0
    allowed_networks: list[str] = field(default_factory=lambda: list(DEFAULT_ALLOWED_NETWORKS))
    probe: bool = True
    probe_host: str = "127.0.0.1"
    probe_ports: list[int] = field(default_factory=lambda: list(DEFAULT_PROBE_PORTS))
    probe_interval_seconds: float = 300.0
    probe_timeout_seconds: float = 1.0


@dataclass(slots=True)
class RoutingWeights:
    priority: int = 50
    load: int = 30
    latency: int = 20


@dataclass(slots=True)
class TrafficPolicy:
    """``[[routing.policies]]``: requests for models matching ``model_pattern`` (a glob on the
    requested, alias-resolved and fallback names) are served only in ``privacy`` or a more
    trusted zone."""

    model_pattern: str
    privacy: PrivacyZone | None = None
    #: the lowest capability tier (1–5) allowed to serve matching models
    min_tier: int | None = None


@dataclass(slots=True)
class RoutingConfig:
    strategy: RoutingStrategy = RoutingStrategy.SMART
    max_retries: int = 2
    weights: RoutingWeights = field(default_factory=RoutingWeights)
    aliases: dict[str, str] = field(default_factory=dict)
    fallbacks: dict[str, list[str]] = field(default_factory=dict)
    decision_history: int = 1000
    policies: list[TrafficPolicy] = field(default_factory=list)


@dataclass(slots=True)
class BackendConfig:
    name: str
    url: str
    type: BackendType
    priority: int = 50
    zone: PrivacyZone | None = None
    tier: int | None = None
    api_key_env: str | None = None
    forward_client_auth: bool = False
    enabled: bool = True
    max_concurrent: int | None = None
    models: dict[str, ModelOverride] = field(default_factory=dict)


@dataclass(slots=True)
class ModelPrice:
    """USD per 1M tokens; ``cached_input`` for prompt tokens read from the provider's cache
    (defaults to ``input``)."""

    input: float
    output: float
    cached_input: float | None = None


@dataclass(slots=True)
class HistoryConfig:
    enabled: bool = True
    retention_days: float = 30.0


@dataclass(slots=True)
class LoggingConfig:
    level: LogLevel = LogLevel.INFO
    format: LogFormat = LogFormat.PRETTY
    component_levels: dict[str, str] = field(default_factory=dict)
    enable_content_logging: bool = False


@dataclass(slots=True)
class TuiConfig:
    #: binding id -> key(s), e.g. ``drain = "D"`` (see docs/tui.md for the ids)
    keymap: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class NexusConfig:
    server: ServerConfig = field(default_factory=ServerConfig)
    health_check: HealthCheckConfig = field(default_factory=HealthCheckConfig)
    discovery: DiscoveryConfig = field(default_factory=DiscoveryConfig)
    routing: RoutingConfig = field(default_factory=RoutingConfig)
    backends: list[BackendConfig] = field(default_factory=list)
    history: HistoryConfig = field(default_factory=HistoryConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    tui: TuiConfig = field(default_factory=TuiConfig)
    #: ``[pricing."model-name"]``: overrides the built-in price table (nexusd/pricing.py)
    pricing: dict[str, ModelPrice] = field(default_factory=dict)
