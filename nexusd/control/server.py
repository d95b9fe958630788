"""The control app (Unix socket only): status, backends, models, aliases, fallbacks,
requests and their routing stories, dry-run routing, config, and a live event stream.

Every mutation validates first, persists to the TOML file (comments kept), applies, then
emits its event — so a refused edit changes nothing anywhere. Errors are
``{"error": {"code", "message"}}``.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import tomlkit
from quart import Quart, Response, request
from werkzeug.exceptions import HTTPException

from nexusd import __version__
from nexusd.backends.fingerprint import detect_backend_type
from nexusd.config.loader import ConfigError, backend_id, backend_name_problem, load_config
from nexusd.config.store import (
    add_backend,
    remove_backend,
    remove_key,
    set_alias,
    set_fallbacks,
    update_backend,
)
from nexusd.errors import NexusError
from nexusd.registry import Backend, normalise_url
from nexusd.routing.aliases import MAX_ALIAS_HOPS, alias_chain, is_cycle
from nexusd.routing.intent import Requirements
from nexusd.types import DiscoverySource, Endpoint

if TYPE_CHECKING:
    from nexusd.core import Nexus

HEARTBEAT_SECONDS = 15.0


class ControlError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _json(payload: Any, status: int = 200) -> Response:
    response = Response(json.dumps(payload), status, content_type="application/json")
    response.timeout = None
    return response


def _error(status: int, code: str, message: str) -> Response:
    return _json({"error": {"code": code, "message": message}}, status)


async def _body() -> dict[str, Any]:
    raw = await request.get_data(cache=False)
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise ControlError(400, "invalid_json", f"request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ControlError(400, "invalid_json", "request body must be a JSON object")
    return data


def _flag(data: dict[str, Any], key: str) -> bool:
    value = data.get(key, False)
    if not isinstance(value, bool):
        raise ControlError(400, "invalid_request", f"'{key}' must be true or false")
    return value


def _count(data: dict[str, Any], key: str) -> int:
    value = data.get(key, 0)
    if value is None:
        return 0
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 10**9:
        raise ControlError(
            400, "invalid_request", f"'{key}' must be a whole number from 0 to 1000000000"
        )
    return value


def create_control_app(core: Nexus, api_url: Callable[[], str]) -> Quart:
    app = Quart("nexusd-control")
    app.config.update(
        RESPONSE_TIMEOUT=None, MAX_CONTENT_LENGTH=1024 * 1024, PROVIDE_AUTOMATIC_OPTIONS=False
    )

    @app.errorhandler(ControlError)
    async def control_error(err: ControlError) -> Response:
        return _error(err.status, err.code, err.message)

    @app.errorhandler(HTTPException)
    async def http_error(err: HTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed"}.get(err.code or 0, "bad_request")
        return _error(err.code or 400, code, f"{err.name}: {request.method} {request.path}")

    # --- persistence helper --------------------------------------------------------------

    # file I/O (read, hash, parse, fsync) runs in a worker thread, one edit at a time, so a
    # slow disk never stalls the event loop that serves every request
    config_lock = asyncio.Lock()

    async def persist(mutation: Callable[[tomlkit.TOMLDocument], None]) -> list[str]:
        """Validate + write the file, then apply it. An external edit is applied first."""
        async with config_lock:
            if await asyncio.to_thread(lambda: core.store.changed_on_disk):
                await _reload_locked()
            try:
                cfg = await asyncio.to_thread(core.store.edit, mutation, flags=core.loaded.flags)
            except ConfigError as exc:
                raise ControlError(409, "conflict", "; ".join(exc.problems)) from None
            except OSError as exc:
                raise ControlError(
                    500, "write_failed", f"could not write {core.store.path}: {exc.strerror}"
                ) from None
            return core.apply_config(cfg)

    async def reload_from_disk() -> list[str]:
        async with config_lock:
            return await _reload_locked()

    async def _reload_locked() -> list[str]:
        try:
            loaded = await asyncio.to_thread(load_config, core.loaded.path, flags=core.loaded.flags)
        except ConfigError as exc:
            raise ControlError(
                422,
                "invalid_config",
                f"{core.loaded.path} is invalid, the running config stays: "
                + "; ".join(exc.problems),
            ) from None
        await asyncio.to_thread(core.store.mark_loaded)
        core.loaded = loaded
        return core.apply_config(loaded.config)

    # --- status --------------------------------------------------------------------------

    @app.get("/v1/status")
    async def status() -> Response:
        backends = core.registry.all()
        return _json(
            {
                "version": __version__,
                "pid": os.getpid(),
                "uptime_seconds": round(core.uptime_seconds, 3),
                "started_at": core.started_wall,
                "listeners": {"api": api_url(), "control": core.control_socket},
                "config_path": str(core.loaded.path),
                "config_file_exists": core.loaded.path.exists(),
                "counts": {
                    "backends": len(backends),
                    "healthy": sum(1 for b in backends if b.routable),
                    "models": len(core.registry.model_names()),
                    "aliases": len(core.config.routing.aliases),
                    "fallbacks": len(core.config.routing.fallbacks),
                    "inflight": core.inflight,
                },
            }
        )

    # --- backends ------------------------------------------------------------------------

    def find(bid: str) -> Backend:
        backend = core.registry.get(bid)
        if backend is None:
            names = ", ".join(b.id for b in core.registry.all()) or "none"
            raise ControlError(404, "not_found", f"no backend {bid!r} (backends: {names})")
        return backend

    @app.get("/v1/backends")
    async def list_backends() -> Response:
        return _json({"backends": [b.to_json() for b in core.registry.all()]})

    @app.get("/v1/backends/<bid>")
    async def get_backend(bid: str) -> Response:
        return _json(find(bid).to_json())

    @app.post("/v1/backends/scan")
    async def scan_backends() -> Response:
        """Probe the local ports now (the periodic probe may be minutes away)."""
        added = await core.probe.scan_now(force=True)
        return _json({"added": [b.to_json() for b in added]})

    @app.post("/v1/backends")
    async def create_backend() -> Response:
        data = await _body()
        url = data.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ControlError(400, "invalid_request", "'url' must be an http:// or https:// URL")
        if data.get("name"):
            _check_name(data["name"])  # before any probing of the URL
        if core.registry.find_by_url(url) is not None:
            existing = core.registry.find_by_url(url)
            raise ControlError(409, "conflict", f"{url} is already backend {existing.id!r}")
        kind = data.get("type")
        if kind is None:
            detected = await detect_backend_type(core.http, normalise_url(url), 3.0)
            if detected is None:
                raise ControlError(
                    422,
                    "undetectable",
                    f"nothing answering like an inference server at {url}; is it running? "
                    "Pass 'type' to add it anyway",
                )
            kind = detected.value
        name = data.get("name") or _default_name(url, kind)
        _check_name(name)
        if core.registry.get(backend_id(name)) is not None:
            raise ControlError(409, "conflict", f"a backend named {name!r} already exists")
        entry = {"name": name, "url": url, "type": kind}
        for key in (
            "priority",
            "zone",
            "tier",
            "api_key_env",
            "max_concurrent",
            "forward_client_auth",
        ):
            if data.get(key) is not None:
                entry[key] = data[key]
        await persist(add_backend(entry))
        return _json(find(backend_id(name)).to_json(), 201)

    @app.delete("/v1/backends/<bid>")
    async def delete_backend(bid: str) -> Response:
        backend = find(bid)
        if backend.source is DiscoverySource.STATIC:
            await persist(remove_backend(backend.name))
        else:
            core.registry.remove(bid)
        return _json({"removed": bid})

    @app.patch("/v1/backends/<bid>")
    async def patch_backend(bid: str) -> Response:
        backend = find(bid)
        data = await _body()
        unknown = set(data) - {"priority", "enabled", "drain"}
        if unknown:
            raise ControlError(
                400,
                "invalid_request",
                f"cannot change {', '.join(sorted(unknown))}; patchable: priority, enabled, drain",
            )
        for key, kind in (("priority", int), ("enabled", bool), ("drain", bool)):
            if key in data and (
                not isinstance(data[key], kind) or (kind is int and isinstance(data[key], bool))
            ):
                raise ControlError(400, "invalid_request", f"'{key}' must be {kind.__name__}")
        persisted = {k: data[k] for k in ("priority", "enabled") if k in data}
        if persisted and backend.source is DiscoverySource.STATIC:
            await persist(update_backend(backend.name, persisted))
            backend = find(bid)
        old_health = backend.health
        if "priority" in data:
            backend.priority = data["priority"]
        if "enabled" in data:
            backend.enabled = data["enabled"]
        if "drain" in data:
            backend.draining = data["drain"]
        core.registry.publish_status(backend, old_health)
        return _json(backend.to_json())

    # --- models --------------------------------------------------------------------------

    @app.get("/v1/models")
    async def models() -> Response:
        aliases_by_target: dict[str, list[str]] = {}
        for alias, target in core.config.routing.aliases.items():
            aliases_by_target.setdefault(target, []).append(alias)
        out = []
        for model_id in core.registry.model_names():
            serving = core.registry.serving(model_id)
            out.append(
                {
                    "id": model_id,
                    "aliases": sorted(aliases_by_target.get(model_id, [])),
                    "backends": [
                        {
                            **b.models[model_id].to_json(),
                            "model": model_id,
                            "id": b.id,
                            "name": b.name,
                            "status": b.status.value,
                            "routable": b.routable,
                        }
                        for b in serving
                    ],
                    "healthy_backends": [b.id for b in serving if b.routable],
                }
            )
        return _json({"models": out})

    # --- aliases and fallbacks -----------------------------------------------------------

    @app.get("/v1/aliases")
    async def list_aliases() -> Response:
        return _json({"aliases": dict(core.config.routing.aliases)})

    @app.put("/v1/aliases/<path:name>")
    async def put_alias(name: str) -> Response:
        target = (await _body()).get("target")
        if not isinstance(target, str) or not target.strip():
            raise ControlError(400, "invalid_request", "'target' must be a non-empty model name")
        chain = alias_chain({**core.config.routing.aliases, name: target}, name)
        # a cycle is refused below, by the same validation as the config file, naming it
        if not is_cycle(chain) and len(chain) - 1 > MAX_ALIAS_HOPS:
            raise ControlError(
                409, "conflict", f"alias chain from {name!r} is longer than {MAX_ALIAS_HOPS} hops"
            )
        await persist(set_alias(name, target))
        return _json({"alias": name, "target": target})

    @app.delete("/v1/aliases/<path:name>")
    async def delete_alias(name: str) -> Response:
        if name not in core.config.routing.aliases:
            raise ControlError(404, "not_found", f"no alias {name!r}")
        await persist(remove_key(("routing", "aliases"), name))
        return _json({"removed": name})

    @app.get("/v1/fallbacks")
    async def list_fallbacks() -> Response:
        return _json({"fallbacks": dict(core.config.routing.fallbacks)})

    @app.put("/v1/fallbacks/<path:model>")
    async def put_fallbacks(model: str) -> Response:
        chain = (await _body()).get("chain")
        if (
            not isinstance(chain, list)
            or not chain
            or not all(isinstance(m, str) and m.strip() for m in chain)
        ):
            raise ControlError(
                400, "invalid_request", "'chain' must be a non-empty list of model names"
            )
        await persist(set_fallbacks(model, chain))
        return _json({"model": model, "chain": chain})

    @app.delete("/v1/fallbacks/<path:model>")
    async def delete_fallbacks(model: str) -> Response:
        if model not in core.config.routing.fallbacks:
            raise ControlError(404, "not_found", f"no fallback chain for {model!r}")
        await persist(remove_key(("routing", "fallbacks"), model))
        return _json({"removed": model})

    # --- requests and routing ------------------------------------------------------------

    @app.get("/v1/requests")
    async def list_requests() -> Response:
        args = request.args
        try:
            limit = max(1, min(int(args.get("limit", 100)), len(core.history.ring) or 1))
        except ValueError:
            raise ControlError(400, "invalid_request", "'limit' must be a number") from None
        wanted = {k: args[k] for k in ("model", "backend", "outcome") if k in args}
        out = []
        for rec in reversed(core.history.ring):
            if wanted.get("model") not in (None, rec.requested_model, rec.served_model):
                continue
            if wanted.get("backend") not in (None, rec.backend):
                continue
            if wanted.get("outcome") not in (None, rec.outcome):
                continue
            out.append(rec.to_json())
            if len(out) >= limit:
                break
        return _json({"requests": out})

    @app.get("/v1/requests/<request_id>")
    async def get_request(request_id: str) -> Response:
        trace = core.decisions.get(request_id)
        if trace is None:
            raise ControlError(
                404, "not_found", f"no request {request_id!r} among the last {core.decisions.size}"
            )
        return _json(trace.to_json())

    @app.post("/v1/route")
    async def route() -> Response:
        data = await _body()
        model = data.get("model")
        if not isinstance(model, str) or not model:
            raise ControlError(400, "invalid_request", "'model' is required: a non-empty string")
        endpoint = data.get("endpoint", "chat")
        if not isinstance(endpoint, str) or endpoint not in Endpoint._value2member_map_:
            raise ControlError(
                400,
                "invalid_request",
                f"'endpoint' must be one of {', '.join(e.value for e in Endpoint)}",
            )
        req = Requirements(
            vision=_flag(data, "vision"),
            tools=_flag(data, "tools"),
            json_mode=_flag(data, "json_mode"),
            prompt_tokens=_count(data, "tokens"),
            max_tokens=_count(data, "max_tokens"),
            endpoint=Endpoint(endpoint),
        )
        privacy = data.get("privacy")
        if privacy is not None and not isinstance(privacy, str):
            raise ControlError(
                400, "invalid_request", "'privacy' must be local, restricted or public"
            )
        try:
            return _json(core.gateway.dry_run(model, req, privacy))
        except NexusError as err:  # an unknown zone, as X-Nexus-Privacy would be
            raise ControlError(400, "invalid_request", err.message) from None

    @app.get("/v1/stats")
    async def stats() -> Response:
        return _json(core.stats_snapshot())

    @app.get("/v1/trends")
    async def trends() -> Response:
        ids = [b.id for b in core.registry.all()]
        return _json(core.trends.snapshot(dict.fromkeys([*ids, *core.trends.backends()])))

    @app.get("/v1/logging")
    async def get_logging() -> Response:
        cfg = core.config.logging
        return _json(
            {
                "level": cfg.level.value,
                "format": cfg.format.value,
                "component_levels": dict(cfg.component_levels),
            }
        )

    @app.put("/v1/logging")
    async def put_logging() -> Response:
        """Change levels at runtime (not persisted): {"level"?, "component_levels"?}."""
        from dataclasses import replace

        from nexusd.config.schema import LogLevel
        from nexusd.logs import apply_levels

        data = await _body()
        allowed = [lv.value for lv in LogLevel]
        level = data.get("level", core.config.logging.level.value)
        components = data.get("component_levels", core.config.logging.component_levels)
        if not isinstance(level, str) or level.lower() not in allowed:
            raise ControlError(
                400, "invalid_request", f"'level' must be one of {', '.join(allowed)}"
            )
        if not isinstance(components, dict) or not all(
            isinstance(v, str) and v.lower() in allowed for v in components.values()
        ):
            raise ControlError(
                400, "invalid_request", "'component_levels' must map components to levels"
            )
        previous = core.config.logging
        core.config.logging = replace(
            previous, level=LogLevel(level.lower()), component_levels=dict(components)
        )
        apply_levels(core.config.logging, previous)
        return await get_logging()

    # --- config --------------------------------------------------------------------------

    @app.get("/v1/config")
    async def show_config() -> Response:
        from nexusd.config.loader import flatten_config

        flat = flatten_config(core.config)
        return _json(
            {
                "path": str(core.loaded.path),
                "file_exists": core.loaded.path.exists(),
                "changed_on_disk": await asyncio.to_thread(lambda: core.store.changed_on_disk),
                "values": {
                    k: {"value": v, "source": core.loaded.source_of(k)} for k, v in flat.items()
                },
            }
        )

    @app.post("/v1/config/reload")
    async def reload_config() -> Response:
        return _json({"reloaded": str(core.loaded.path), "changes": await reload_from_disk()})

    # --- events --------------------------------------------------------------------------

    @app.get("/v1/events")
    async def events() -> Response:
        sub = core.bus.subscribe()

        async def stream() -> AsyncIterator[bytes]:
            try:
                yield b": connected\n\n"
                while not core.shutting_down:
                    try:
                        async with asyncio.timeout(HEARTBEAT_SECONDS):
                            event = await sub.get()
                    except TimeoutError:
                        yield b": ping\n\n"
                        continue
                    if event.type == "daemon.stopping":
                        break
                    payload = json.dumps(event.to_json())
                    yield f"event: {event.type}\ndata: {payload}\n\n".encode()
            finally:
                sub.close()

        response = Response(
            stream(), 200, content_type="text/event-stream", headers={"Cache-Control": "no-cache"}
        )
        response.timeout = None
        return response

    return app


def _check_name(name: object) -> None:
    """Backend names reach log lines and response headers: 400 naming the field if unfit."""
    problem = backend_name_problem(name)
    if problem:
        raise ControlError(400, "invalid_request", f"'name' {problem}")


def _default_name(url: str, kind: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{kind}-{parts.hostname}-{parts.port or (443 if parts.scheme == 'https' else 80)}"
