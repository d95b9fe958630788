"""The daemon's core: one object owning the registry, routing, health and background tasks.

Both HTTP apps (public and, later, control) are thin shells over this object; tests drive
it directly or through real sockets.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import TYPE_CHECKING

import aiohttp

from nexusd.backends.factory import create_agent
from nexusd.backends.upstream import Timeouts
from nexusd.config.loader import LoadedConfig, backend_id
from nexusd.config.schema import BackendConfig
from nexusd.discovery.probe import LocalProbe
from nexusd.events import EventBus
from nexusd.health import HealthChecker
from nexusd.proxy import Proxy
from nexusd.registry import Backend, Registry
from nexusd.routing.decisions import DecisionLog
from nexusd.routing.pipeline import Pipeline
from nexusd.tasks import supervise
from nexusd.types import DiscoverySource, PrivacyZone

if TYPE_CHECKING:
    from nexusd.proxy import StreamRelay

log = logging.getLogger("nexus.core")


class Nexus:
    def __init__(self, loaded: LoadedConfig) -> None:
        self.loaded = loaded
        self.config = cfg = loaded.config
        self.bus = EventBus()
        self.registry = Registry(self.bus)
        self.pipeline = Pipeline(self.registry, cfg.routing)
        self.decisions = DecisionLog(cfg.routing.decision_history)
        self.health = HealthChecker(self.registry, cfg.health_check)
        self.probe = LocalProbe(self)
        self.proxy = Proxy(self)
        s = cfg.server
        self.timeouts = Timeouts(
            connect=s.connect_timeout_seconds,
            total=s.request_timeout_seconds,
            first_byte=s.first_byte_timeout_seconds,
            idle=s.stream_idle_timeout_seconds,
        )
        self.port: int = s.port
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

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self._http is not None:
            await self._http.close()

    def add_backend(self, backend: Backend, *, check: bool = True) -> Backend:
        backend.agent = create_agent(backend, self.http, self.timeouts)
        self.registry.add(backend)
        if check:
            self.health.check_soon(backend)
        return backend

    # --- in-flight accounting and draining -----------------------------------------------------

    def request_started(self) -> None:
        self.inflight += 1

    def request_finished(self, request_id: str | None = None) -> None:
        self.inflight -= 1
        if request_id is not None and self.bus.has_subscribers:
            trace = self.decisions.get(request_id)
            if trace is not None:
                self.bus.publish("request.completed", trace.summary())
        if self.inflight <= 0 and self.shutting_down:
            self._idle.set()

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


def backend_from_config(bc: BackendConfig) -> Backend:
    api_key = None
    if bc.api_key_env:
        api_key = os.environ.get(bc.api_key_env)
        if api_key is None:
            log.warning(
                "backend %s: env var %s is not set; requests will likely fail (401)",
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
        model_overrides=dict(bc.models),
    )
