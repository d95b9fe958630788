"""The daemon's core: one object owning the registry, routing, health and background tasks.

Both HTTP apps (public and, later, control) are thin shells over this object; tests drive
it directly or through real sockets.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp

from nexusd import paths
from nexusd.backends.factory import create_agent
from nexusd.backends.upstream import Timeouts
from nexusd.config.loader import LoadedConfig, backend_id
from nexusd.config.schema import BackendConfig, NexusConfig
from nexusd.config.store import ConfigStore
from nexusd.discovery.mdns import MdnsDiscovery
from nexusd.discovery.probe import LocalProbe
from nexusd.events import EventBus
from nexusd.exchange import Exchange
from nexusd.gateway import Gateway
from nexusd.health import HealthChecker
from nexusd.history import History
from nexusd.logs import log_completion
from nexusd.metrics import Metrics
from nexusd.pricing import PriceBook
from nexusd.records import RequestRecord
from nexusd.registry import Backend, Registry, normalise_url
from nexusd.routing.decisions import DecisionLog
from nexusd.routing.pipeline import Pipeline
from nexusd.stats import Stats
from nexusd.tasks import supervise
from nexusd.trends import Trends
from nexusd.types import DiscoverySource, Endpoint, PrivacyZone

if TYPE_CHECKING:
    from nexusd.relay import StreamRelay

log = logging.getLogger("nexus.core")

#: most records read from history at start to draw the last hour's trends
TRENDS_LOAD = 20_000


class Nexus:
    def __init__(self, loaded: LoadedConfig, state_dir: Path | None = None) -> None:
        self.loaded = loaded
        self.state_dir = state_dir or paths.state_dir()
        self.config = cfg = loaded.config
        self.bus = EventBus()
        self.registry = Registry(self.bus)
        self.pipeline = Pipeline(self.registry, cfg.routing)
        self.decisions = DecisionLog(cfg.routing.decision_history)
        self.metrics = Metrics(self.registry)
        self.stats = Stats()
        self.history = History(
            self.state_dir / "history.sqlite3" if cfg.history.enabled else None,
            cfg.history.retention_days,
        )
        self.trends = Trends()
        self.health = HealthChecker(
            self.registry, cfg.health_check, on_probe=self.metrics.observe_probe
        )
        self.probe = LocalProbe(self)
        self.mdns = MdnsDiscovery(self)
        self.gateway = Gateway(self)
        self.pricing = PriceBook(cfg.pricing)
        s = cfg.server
        self.timeouts = Timeouts(
            connect=s.connect_timeout_seconds,
            total=s.request_timeout_seconds,
            first_byte=s.first_byte_timeout_seconds,
            idle=s.stream_idle_timeout_seconds,
            max_response_bytes=s.max_response_bytes,
            max_event_bytes=s.max_event_bytes,
        )
        self.port: int = s.port
        self.store = ConfigStore(loaded.path)
        self.control_socket: str | None = None
        self.started_wall = time.time()
        self._started = time.monotonic()
        self.inflight = 0
        self.shutting_down = False
        self.active_streams: set[StreamRelay] = set()
        self._idle = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._http: aiohttp.ClientSession | None = None

    @property
    def http(self) -> aiohttp.ClientSession:
        if self._http is None:
            raise RuntimeError("Nexus.start() has not run yet")
        return self._http

    @property
    def uptime_seconds(self) -> float:
        return time.monotonic() - self._started

    # --- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        # no per-host limit: local servers queue themselves; limits belong to routing
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=30, ttl_dns_cache=300)
        self._http = aiohttp.ClientSession(connector=connector)
        await self.history.start()
        # a first view from the previous run: the last hour's records (read off the loop)
        self.trends.load(await self.history.query(since=time.time() - 3600, limit=TRENDS_LOAD))
        for bc in self.config.backends:
            self.add_backend(backend_from_config(bc), check=False)
        if self.config.health_check.enabled:
            self._tasks.append(supervise("health", self.health.run))
        else:
            # still learn each backend's models once; traffic failures still count
            await self.health.check_all()
        if self.config.discovery.probe:
            if self.config.health_check.enabled:
                self._tasks.append(supervise("probe", self.probe.run))
            else:
                await self.probe.scan()
        # returns at once (one INFO line) when [discovery] enabled = false
        self._tasks.append(supervise("mdns", self.mdns.run))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self._http is not None:
            await self._http.close()
        await self.history.stop()

    def add_backend(self, backend: Backend, *, check: bool = True) -> Backend:
        # the transport must get the normalised base URL too (a configured ".../v1" would
        # otherwise become ".../v1/v1/models")
        backend.url = normalise_url(backend.url)
        backend.agent = create_agent(backend, self.http, self.timeouts)
        self.registry.add(backend)
        if check:
            self.health.check_soon(backend)
        return backend

    def apply_config(self, cfg: NexusConfig) -> list[str]:
        """Switch to a new, already validated config at runtime; returns what changed.

        Routing, health, logging levels and configured backends take effect at once;
        listener settings (host, port) need a restart and are reported as such.
        """
        old = self.config
        changes: list[str] = []
        if (old.server.host, old.server.port) != (cfg.server.host, cfg.server.port):
            changes.append("server.host/port changed: takes effect after a restart")
        self.config = cfg
        if old.pricing != cfg.pricing:
            self.pricing = PriceBook(cfg.pricing)
            changes.append("pricing")
        self.pipeline.config = cfg.routing
        self.pipeline.strategies.weights = cfg.routing.weights
        self.health.config = cfg.health_check
        self.decisions.size = cfg.routing.decision_history
        if old.routing.aliases != cfg.routing.aliases:
            changes.append("aliases")
            self.bus.publish("aliases.changed", {"aliases": dict(cfg.routing.aliases)})
        if old.routing.fallbacks != cfg.routing.fallbacks:
            changes.append("fallbacks")
            self.bus.publish("fallbacks.changed", {"fallbacks": dict(cfg.routing.fallbacks)})
        o, n = old.routing, cfg.routing
        if (o.strategy, o.weights, o.max_retries) != (n.strategy, n.weights, n.max_retries):
            changes.append("routing")
        od, nd = old.discovery, cfg.discovery
        if (od.enabled, od.service_types) != (nd.enabled, nd.service_types):
            changes.append("discovery.enabled/service_types changed: takes effect after a restart")
        changes.extend(self._apply_backends(cfg.backends))
        if old.logging != cfg.logging:
            from nexusd.logs import apply_levels

            apply_levels(cfg.logging)
            changes.append("logging")
        self.bus.publish("config.reloaded", {"changes": changes})
        return changes

    def _apply_backends(self, configured: list[BackendConfig]) -> list[str]:
        changes: list[str] = []
        current = {b.id: b for b in self.registry.all() if b.source is DiscoverySource.STATIC}
        wanted = {backend_id(bc.name): bc for bc in configured}
        for bid in current.keys() - wanted.keys():
            self.registry.remove(bid)
            changes.append(f"backend {bid} removed")
        for bid, bc in wanted.items():
            fresh = backend_from_config(bc)
            existing = current.get(bid)
            if existing is None:
                self.add_backend(fresh)
                changes.append(f"backend {bid} added")
            elif (existing.url, existing.type, existing.api_key) != (
                normalise_url(fresh.url),
                fresh.type,
                fresh.api_key,
            ):
                self.registry.remove(bid)
                self.add_backend(fresh)
                changes.append(f"backend {bid} replaced")
            else:
                changed = [f for f in _TUNABLE if getattr(existing, f) != getattr(fresh, f)]
                if changed:
                    for name in changed:
                        setattr(existing, name, getattr(fresh, name))
                    if existing.agent is not None:
                        transport = existing.agent.transport
                        transport.forward_client_auth = existing.forward_client_auth
                    self.registry.publish_status(existing, existing.health)
                    changes.append(f"backend {bid} updated")
        return changes

    # --- in-flight accounting and draining -----------------------------------------------------

    def open_exchange(self, endpoint: Endpoint) -> Exchange:
        """Every request starts here; its ``finish()`` is the only way it ends (design §2)."""
        self.inflight += 1
        return Exchange(
            endpoint, self.record, on_finish=self._exchange_finished, pricing=self.pricing
        )

    def _exchange_finished(self, exchange: Exchange) -> None:
        self.inflight -= 1
        if self.inflight <= 0 and self.shutting_down:
            self._idle.set()

    def stats_snapshot(self) -> dict[str, Any]:
        """``/v1/stats`` — the same document on the API, the control socket and the dashboard."""
        snapshot = self.stats.snapshot(self.registry, self.uptime_seconds)
        snapshot["inflight"] = self.inflight
        return snapshot

    def record(self, record: RequestRecord, prompt_preview: str | None = None) -> None:
        """The single hand-off of a finished request to every consumer."""
        self.metrics.observe(record)
        self.stats.observe(record)
        self.history.add(record)
        self.trends.observe(record)
        log_completion(record, prompt_preview)
        if self.bus.has_subscribers:
            self.bus.publish("request.completed", record.to_json())

    async def drain(self, timeout: float) -> bool:
        """Refuse new requests, let in-flight ones finish; past ``timeout`` end open streams.

        Returns True when everything finished by itself.
        """
        self.shutting_down = True
        if self.inflight <= 0:
            return True
        log.info("draining %d in-flight request(s), up to %gs", self.inflight, timeout)
        try:
            async with asyncio.timeout(timeout):
                await self._idle.wait()
            return True
        except TimeoutError:
            log.warning("drain deadline reached; ending %d stream(s)", len(self.active_streams))
            for relay in list(self.active_streams):
                relay.upstream.close()
            try:
                async with asyncio.timeout(5):
                    await self._idle.wait()
            except TimeoutError:
                pass
            return False


#: backend settings a reload changes in place (url, type or key changes replace the backend)
_TUNABLE = (
    "priority",
    "zone",
    "tier",
    "enabled",
    "max_concurrent",
    "forward_client_auth",
    "model_overrides",
)


def backend_from_config(bc: BackendConfig) -> Backend:
    api_key, unusable = None, None
    if bc.api_key_env:
        api_key = os.environ.get(bc.api_key_env) or None
        if api_key is None and bc.type.is_cloud:
            # never a request without a key: the backend stays listed, disabled, with the fix
            unusable = (
                f"no API key: environment variable {bc.api_key_env} is not set (or empty); "
                "set it in the daemon's environment and restart the daemon (docs/cloud.md)"
            )
            log.warning("backend %s disabled: %s", bc.name, unusable)
        elif api_key is None:
            log.warning(
                "backend %s: env var %s is not set; requests go without a key",
                bc.name,
                bc.api_key_env,
            )
    default_zone = PrivacyZone.PUBLIC if bc.type.is_cloud else PrivacyZone.LOCAL
    return Backend(
        id=backend_id(bc.name),
        name=bc.name,
        url=bc.url,
        type=bc.type,
        source=DiscoverySource.STATIC,
        priority=bc.priority,
        zone=bc.zone or default_zone,
        tier=bc.tier,
        enabled=bc.enabled,
        max_concurrent=bc.max_concurrent,
        forward_client_auth=bc.forward_client_auth,
        api_key=api_key,
        unusable=unusable,
        model_overrides=dict(bc.models),
    )
