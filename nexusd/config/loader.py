"""Load the configuration: defaults < TOML file < ``NEXUS_*`` environment < command-line flags.

The file is read with ``tomllib`` (fast, stdlib); edits are written elsewhere with tomlkit so
comments survive. Validation collects *every* problem, each naming the key, the offending
value and what is allowed, so a user fixes the file in one pass.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from nexusd import paths
from nexusd.config.schema import BackendConfig, NexusConfig
from nexusd.routing.aliases import AliasCycleError, check_aliases
from nexusd.types import BackendType, PrivacyZone

SUPPORTED_BACKEND_TYPES = frozenset(
    {
        BackendType.OLLAMA,
        BackendType.VLLM,
        BackendType.LLAMACPP,
        BackendType.EXO,
        BackendType.LMSTUDIO,
        BackendType.GENERIC,
        BackendType.OPENAI,
        BackendType.ANTHROPIC,
        BackendType.GOOGLE,
    }
)
VALID_LEVELS = ("trace", "debug", "info", "warn", "warning", "error", "critical")


class ConfigError(Exception):
    """Raised with every problem found; ``str()`` is ready to print to a user."""

    def __init__(self, problems: list[str], path: Path | None = None) -> None:
        self.problems = problems
        self.path = path
        where = f" in {path}" if path else ""
        super().__init__(
            f"invalid configuration{where}:\n" + "\n".join(f"  - {p}" for p in problems)
        )


@dataclass(slots=True)
class LoadedConfig:
    config: NexusConfig
    path: Path
    file_exists: bool
    warnings: list[str] = field(default_factory=list)
    #: dotted key -> "default" | "file" | "env" | "flag"
    sources: dict[str, str] = field(default_factory=dict)
    #: the command-line overrides, re-applied when the file is reloaded or edited
    flags: dict[str, Any] = field(default_factory=dict)

    def source_of(self, key: str) -> str:
        return self.sources.get(key, "default")


# --- where the file is ---------------------------------------------------------------------


def resolve_config_path(
    explicit: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None
) -> tuple[Path, bool]:
    """``--config`` > ``NEXUS_CONFIG`` > the user config dir. Returns (path, chosen explicitly)."""
    if explicit:
        return Path(explicit).expanduser(), True
    env = (os.environ if env is None else env).get("NEXUS_CONFIG")
    if env:
        return Path(env).expanduser(), True
    return paths.default_config_file(), False


# --- environment overrides -----------------------------------------------------------------

#: env var -> dotted key. Booleans accept true/false/1/0/yes/no/on/off (case-insensitive).
ENV_OVERRIDES: dict[str, str] = {
    "NEXUS_HOST": "server.host",
    "NEXUS_PORT": "server.port",
    "NEXUS_LOG_LEVEL": "logging.level",
    "NEXUS_LOG_FORMAT": "logging.format",
    "NEXUS_DISCOVERY": "discovery.enabled",
    "NEXUS_HEALTH_CHECK": "health_check.enabled",
    "NEXUS_ROUTING_STRATEGY": "routing.strategy",
    "NEXUS_ROUTING_MAX_RETRIES": "routing.max_retries",
    "NEXUS_PROBE": "discovery.probe",
    "NEXUS_PROBE_HOST": "discovery.probe_host",
    "NEXUS_PROBE_PORTS": "discovery.probe_ports",
}

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def _field_type(dotted: str) -> Any:
    cls: Any = NexusConfig
    hint: Any = None
    for part in dotted.split("."):
        hint = typing.get_type_hints(cls)[part]
        cls = hint
    return hint


def _parse_env_value(text: str, hint: Any) -> Any:
    origin = typing.get_origin(hint)
    if origin is list:
        (inner,) = typing.get_args(hint)
        return [_parse_env_value(part.strip(), inner) for part in text.split(",") if part.strip()]
    if hint is bool:
        low = text.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ValueError("expected true or false")
    if hint is int:
        return int(text)
    if hint is float:
        return float(text)
    if isinstance(hint, type) and issubclass(hint, Enum):
        allowed = [m.value for m in hint]
        if text.strip().lower() not in allowed:
            raise ValueError(f"expected one of {', '.join(allowed)}")
        return text.strip().lower()
    return text


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def _flatten_keys(data: Mapping[str, Any], prefix: str = "") -> list[str]:
    keys: list[str] = []
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        keys.append(dotted)
        if isinstance(value, Mapping):
            keys.extend(_flatten_keys(value, dotted + "."))
    return keys


# --- building the typed tree ---------------------------------------------------------------


class _Builder:
    """Turns plain TOML data into the dataclass tree, recording problems instead of raising."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.warnings: list[str] = []

    def build(self, cls: Any, data: Any, key: str) -> Any:
        if not isinstance(data, Mapping):
            self.errors.append(f"{key or 'top level'}: expected a table, got {_describe(data)}")
            return None
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        for unknown in sorted(set(data) - set(fields)):
            hint = difflib.get_close_matches(unknown, list(fields), n=1)
            suggestion = f"; did you mean '{hint[0]}'?" if hint else ""
            self.warnings.append(f"unknown key '{_join(key, unknown)}' ignored{suggestion}")
        kwargs: dict[str, Any] = {}
        for name, f in fields.items():
            sub = _join(key, name)
            if name in data:
                value = self.convert(hints[name], data[name], sub)
                if value is not _INVALID:
                    kwargs[name] = value
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                self.errors.append(f"{sub}: required key is missing")
        try:
            return cls(**kwargs)
        except TypeError:
            return None  # a required key was missing; already reported

    def convert(self, hint: Any, value: Any, key: str) -> Any:
        origin = typing.get_origin(hint)
        if origin in (types.UnionType, typing.Union):
            inner = [a for a in typing.get_args(hint) if a is not type(None)]
            return self.convert(inner[0], value, key)
        if origin is list:
            (inner,) = typing.get_args(hint)
            if not isinstance(value, list):
                return self._bad(key, value, "a list")
            items = [self.convert(inner, item, f"{key}[{i}]") for i, item in enumerate(value)]
            return [item for item in items if item is not _INVALID]
        if origin is dict:
            _, inner = typing.get_args(hint)
            if not isinstance(value, Mapping):
                return self._bad(key, value, "a table")
            out = {}
            for k, v in value.items():
                converted = self.convert(inner, v, f'{key}."{k}"')
                if converted is not _INVALID:
                    out[str(k)] = converted
            return out
        if dataclasses.is_dataclass(hint):
            built = self.build(hint, value, key)
            return _INVALID if built is None else built
        if isinstance(hint, type) and issubclass(hint, Enum):
            return self._enum(hint, value, key)
        if hint is bool:
            return value if isinstance(value, bool) else self._bad(key, value, "true or false")
        if hint is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
            return value if ok else self._bad(key, value, "a whole number")
        if hint is float:
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            return float(value) if ok else self._bad(key, value, "a number")
        if hint is str:
            return value if isinstance(value, str) else self._bad(key, value, "a string")
        raise TypeError(f"unsupported config type {hint!r} at {key}")  # programming error

    def _enum(self, enum: type[Enum], value: Any, key: str) -> Any:
        allowed = [m.value for m in enum]
        if isinstance(value, str):
            low = value.strip().lower()
            if enum is PrivacyZone and low == "open":
                low = PrivacyZone.PUBLIC.value
            for member in enum:
                if member.value == low:
                    return member
        self.errors.append(f"{key}: {value!r} is not one of {', '.join(allowed)}")
        return _INVALID

    def _bad(self, key: str, value: Any, expected: str) -> Any:
        self.errors.append(f"{key}: expected {expected}, got {_describe(value)}")
        return _INVALID


_INVALID: Any = object()


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _describe(value: Any) -> str:
    kind = {bool: "boolean", int: "integer", float: "number", str: "string", list: "list"}.get(
        type(value), "table" if isinstance(value, Mapping) else type(value).__name__
    )
    return f"{kind} {value!r}" if not isinstance(value, Mapping | list) else kind


# --- semantic checks -----------------------------------------------------------------------


#: a backend name ends up in log lines, response headers and tables: keep it one short line
MAX_BACKEND_NAME = 64


def backend_name_problem(name: object) -> str | None:
    """Why ``name`` cannot name a backend, or None: printable, no control characters, at most
    ``MAX_BACKEND_NAME`` characters, not blank. (A CR/LF in a name used to reach the
    response headers and turn every request to that backend into a 500.)"""
    if not isinstance(name, str):
        return f"must be a string, not {_describe(name)}"
    if not name.strip():
        return "must not be empty"
    if len(name) > MAX_BACKEND_NAME:
        return f"must be at most {MAX_BACKEND_NAME} characters (this one has {len(name)})"
    for i, ch in enumerate(name):
        if not ch.isprintable():
            return f"must be printable, without control characters ({ch!r} at position {i})"
    return None


def backend_id(name: str) -> str:
    """Stable id of a configured backend: a slug of its name (lower-case, [a-z0-9-])."""
    out: list[str] = []
    for ch in name.strip().lower():
        if ch.isascii() and ch.isalnum():
            out.append(ch)
        elif out and out[-1] != "-":
            out.append("-")
    return "".join(out).strip("-") or "backend"


def _check(cfg: NexusConfig, errors: list[str], warnings: list[str]) -> None:
    s = cfg.server
    if not 0 <= s.port <= 65535:
        errors.append(f"server.port: {s.port} is out of range; use 1-65535 (0 picks a free port)")
    for name in (
        "request_timeout_seconds",
        "connect_timeout_seconds",
        "first_byte_timeout_seconds",
        "stream_idle_timeout_seconds",
        "shutdown_timeout_seconds",
        "body_timeout_seconds",
    ):
        if getattr(s, name) <= 0:
            errors.append(f"server.{name}: {getattr(s, name)} must be greater than 0")
    for name in ("max_body_bytes", "max_response_bytes", "max_event_bytes"):
        if getattr(s, name) <= 0:
            errors.append(f"server.{name}: {getattr(s, name)} must be greater than 0")
    for origin in s.allowed_origins:
        if not origin.startswith(("http://", "https://")) or origin.count("/") != 2:
            errors.append(
                f"server.allowed_origins: {origin!r} is not an origin; "
                'use scheme://host[:port], e.g. "http://localhost:3000"'
            )

    h = cfg.health_check
    for name in ("interval_seconds", "timeout_seconds"):
        if getattr(h, name) <= 0:
            errors.append(f"health_check.{name}: {getattr(h, name)} must be greater than 0")
    for name in ("failure_threshold", "recovery_threshold"):
        if getattr(h, name) < 1:
            errors.append(f"health_check.{name}: {getattr(h, name)} must be at least 1")

    d = cfg.discovery
    d.service_types = [t if t.endswith(".") else t + "." for t in d.service_types]
    if d.grace_period_seconds < 0:
        errors.append(
            f"discovery.grace_period_seconds: {d.grace_period_seconds} must not be negative"
        )
    for i, net in enumerate(d.allowed_networks):
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError:
            errors.append(f"discovery.allowed_networks[{i}]: {net!r} is not a CIDR network")
    for i, port in enumerate(d.probe_ports):
        if not 1 <= port <= 65535:
            errors.append(f"discovery.probe_ports[{i}]: {port} is not a TCP port (1-65535)")

    r = cfg.routing
    if not 0 <= r.max_retries <= 10:
        errors.append(f"routing.max_retries: {r.max_retries} must be between 0 and 10")
    if r.decision_history < 1:
        errors.append(f"routing.decision_history: {r.decision_history} must be at least 1")
    w = r.weights
    negative = [
        (k, v)
        for k, v in (("priority", w.priority), ("load", w.load), ("latency", w.latency))
        if v < 0
    ]
    for key, value in negative:
        errors.append(f"routing.weights.{key}: {value} must not be negative")
    if not negative and w.priority + w.load + w.latency != 100:
        warnings.append(
            f"routing.weights add up to {w.priority + w.load + w.latency}, not 100; "
            "scores are still comparable but no longer 0-100"
        )
    for alias, target in list(r.aliases.items()):
        if not target.strip():
            warnings.append(f'routing.aliases."{alias}": empty target, alias ignored')
            del r.aliases[alias]
    try:
        for warning in check_aliases(r.aliases):
            warnings.append(f"routing.aliases: {warning}")
    except AliasCycleError as exc:
        errors.append(f"routing.aliases: {exc}")
    for model, chain in r.fallbacks.items():
        if model in chain:
            errors.append(f'routing.fallbacks."{model}": a model cannot fall back to itself')
        if any(not m.strip() for m in chain):
            errors.append(f'routing.fallbacks."{model}": fallback names must not be empty')

    seen: dict[str, str] = {}
    for i, b in enumerate(cfg.backends):
        _check_backend(i, b, seen, errors)

    for i, policy in enumerate(cfg.routing.policies):
        if not policy.model_pattern.strip():
            errors.append(
                f'routing.policies[{i}].model_pattern: must not be empty (a glob, e.g. "secret-*")'
            )
        if policy.min_tier is not None and not 1 <= policy.min_tier <= 5:
            errors.append(
                f"routing.policies[{i}].min_tier: {policy.min_tier} is not a valid tier (1-5)"
            )
        if policy.privacy is None and policy.min_tier is None:
            errors.append(
                f"routing.policies[{i}]: set privacy (local, restricted or public: the least "
                "trusted zone allowed to serve the matching models) or min_tier (1-5), or both"
            )
    if cfg.health_check.cloud_interval_seconds <= 0:
        errors.append(
            "health_check.cloud_interval_seconds: "
            f"{cfg.health_check.cloud_interval_seconds} must be greater than 0"
        )
    for model, price in cfg.pricing.items():
        for name in ("input", "output", "cached_input"):
            value = getattr(price, name)
            if value is not None and value < 0:
                errors.append(f'pricing."{model}".{name}: {value} must not be negative')
    if cfg.history.retention_days <= 0:
        errors.append(
            f"history.retention_days: {cfg.history.retention_days} must be greater than 0"
        )
    for component, level in cfg.logging.component_levels.items():
        if level.lower() not in VALID_LEVELS:
            errors.append(
                f'logging.component_levels."{component}": {level!r} is not one of '
                + ", ".join(VALID_LEVELS)
            )


def _check_backend(i: int, b: BackendConfig, seen: dict[str, str], errors: list[str]) -> None:
    key = f"backends[{i}]"
    problem = backend_name_problem(b.name)
    if problem:
        errors.append(f"{key}.name: {problem}")
    else:
        bid = backend_id(b.name)
        if bid in seen:
            errors.append(
                f"{key}.name: {b.name!r} has the same id {bid!r} as backend {seen[bid]!r}; "
                "backend names must be unique"
            )
        seen[bid] = b.name
    parts = urlsplit(b.url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        errors.append(f"{key}.url: {b.url!r} is not an http:// or https:// URL with a host")
    if b.type not in SUPPORTED_BACKEND_TYPES:
        allowed = ", ".join(sorted(t.value for t in SUPPORTED_BACKEND_TYPES))
        errors.append(f"{key}.type: {b.type.value!r} is not supported yet; use one of {allowed}")
    if b.tier is not None and not 1 <= b.tier <= 5:
        errors.append(f"{key}.tier: {b.tier} is not a valid tier (1-5)")
    for model, override in b.models.items():
        if override.tier is not None and not 1 <= override.tier <= 5:
            errors.append(f'{key}.models."{model}".tier: {override.tier} is not a valid tier (1-5)')
    if b.max_concurrent is not None and b.max_concurrent < 1:
        errors.append(f"{key}.max_concurrent: {b.max_concurrent} must be at least 1")
    if b.type.is_cloud and not b.api_key_env:
        errors.append(
            f"{key}.api_key_env: required for type {b.type.value!r} (the name of the environment "
            "variable holding the key; the key itself never goes in this file)"
        )
    if b.type.is_cloud and b.forward_client_auth:
        errors.append(
            f"{key}.forward_client_auth: not allowed for type {b.type.value!r}: a cloud provider "
            "only ever gets the configured key (api_key_env), never a client's credentials"
        )


# --- entry point ---------------------------------------------------------------------------


def parse_config(
    data: Mapping[str, Any],
    *,
    env: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
    path: Path | None = None,
) -> tuple[NexusConfig, list[str], dict[str, str]]:
    """Validate plain data (+ env and flag overrides) into a config; raise ConfigError."""
    raw: dict[str, Any] = _deep_copy(data)
    sources = {k: "file" for k in _flatten_keys(raw)}
    warnings: list[str] = []
    for var, dotted in ENV_OVERRIDES.items():
        text = (env or {}).get(var)
        if text is None or text == "":
            continue
        try:
            value = _parse_env_value(text, _field_type(dotted))
        except ValueError as exc:
            warnings.append(f"{var}={text!r} ignored: {exc}")
            continue
        _set_dotted(raw, dotted, value)
        sources[dotted] = "env"
    for dotted, value in (flags or {}).items():
        if value is None:
            continue
        _set_dotted(raw, dotted, value)
        sources[dotted] = "flag"

    builder = _Builder()
    cfg = builder.build(NexusConfig, raw, "")
    errors = builder.errors
    warnings.extend(builder.warnings)
    if cfg is not None:
        _check(cfg, errors, warnings)
    if errors or cfg is None:
        raise ConfigError(errors, path)
    return cfg, warnings, sources


def _deep_copy(data: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in data.items():
        if isinstance(v, Mapping):
            out[k] = _deep_copy(v)
        elif isinstance(v, list):
            out[k] = [_deep_copy(x) if isinstance(x, Mapping) else x for x in v]
        else:
            out[k] = v
    return out


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"not valid TOML: {exc}"], path) from exc
    except OSError as exc:
        raise ConfigError([f"cannot read the file: {exc.strerror}"], path) from exc


def load_config(
    explicit_path: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
) -> LoadedConfig:
    """Load and validate; a missing file means defaults (with a warning if it was named)."""
    env = os.environ if env is None else env
    path, explicit = resolve_config_path(explicit_path, env)
    warnings: list[str] = []
    if path.exists():
        data = read_toml(path)
        exists = True
    else:
        data = {}
        exists = False
        if explicit:
            warnings.append(f"config file {path} does not exist; using defaults")
    cfg, more, sources = parse_config(data, env=env, flags=flags, path=path if exists else None)
    kept = {k: v for k, v in (flags or {}).items() if v is not None}
    return LoadedConfig(cfg, path, exists, warnings + more, sources, kept)


def to_plain(value: Any) -> Any:
    """A config (or part of one) as plain TOML/JSON-ready data; ``None`` values dropped."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: to_plain(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if getattr(value, f.name) is not None
        }
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_plain(v) for v in value]
    return value


def flatten_config(cfg: NexusConfig) -> dict[str, Any]:
    """Dotted key -> value for every leaf (tables of aliases etc. stay whole)."""
    out: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        for f in dataclasses.fields(node):
            value = getattr(node, f.name)
            key = f"{prefix}{f.name}"
            if dataclasses.is_dataclass(value):
                walk(value, key + ".")
            else:
                out[key] = to_plain(value)

    walk(cfg, "")
    return out
