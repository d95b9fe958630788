"""Zero-config local probe: look for inference servers on their well-known loopback ports.

Runs at start-up and every ``probe_interval_seconds``; ports already registered (by config
or an earlier probe) and our own port are skipped. Each hit is fingerprinted by its own
endpoints, so a llama.cpp server on vLLM's port is still registered as llama.cpp.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from typing import TYPE_CHECKING

from nexusd.backends.fingerprint import detect_backend_type
from nexusd.config.schema import DiscoveryConfig
from nexusd.registry import Backend
from nexusd.types import DiscoverySource, PrivacyZone

if TYPE_CHECKING:
    from nexusd.core import Nexus

log = logging.getLogger("nexus.discovery")


#: on-demand scans (a request for a model nobody serves) run at most this often
ON_DEMAND_INTERVAL = 2.0


class LocalProbe:
    def __init__(self, core: Nexus) -> None:
        self.core = core
        self._last_scan = float("-inf")
        self._scanning: asyncio.Future[list[Backend]] | None = None

    @property
    def config(self) -> DiscoveryConfig:
        """Read at each use, so a config reload reaches the probe too."""
        return self.core.config.discovery

    async def run(self) -> None:
        while True:
            await self.scan()
            await asyncio.sleep(self.config.probe_interval_seconds)

    async def scan_now(self, *, force: bool = False) -> list[Backend]:
        """An on-demand scan (a request named a model nobody serves, or ``nexus backends
        scan``, which forces it): shared by concurrent callers, at most every
        ``ON_DEMAND_INTERVAL`` seconds, and
        each backend found is health-checked before this returns, so it can serve at once."""
        if not (self.config.probe or force):
            return []
        if self._scanning is not None and not self._scanning.done():
            return await asyncio.shield(self._scanning)
        loop = asyncio.get_running_loop()
        if not force and loop.time() - self._last_scan < ON_DEMAND_INTERVAL:
            return []
        self._last_scan = loop.time()
        self._scanning = asyncio.ensure_future(self._scan_and_check())
        return await asyncio.shield(self._scanning)

    async def _scan_and_check(self) -> list[Backend]:
        added = await self.scan()
        await asyncio.gather(*(self.core.health.check(b) for b in added))
        return added

    def _targets(self) -> list[tuple[int, str]]:
        host = self.config.probe_host
        url_host = f"[{host}]" if ":" in host else host
        own = self.core.port if _is_local(host) else None
        return [
            (port, f"http://{url_host}:{port}") for port in self.config.probe_ports if port != own
        ]

    async def scan(self) -> list[Backend]:
        """Probe every target once; returns the backends it added."""
        http = self.core.http
        targets = [(p, u) for p, u in self._targets() if self.core.registry.find_by_url(u) is None]
        kinds = await asyncio.gather(
            *(
                detect_backend_type(http, url, self.config.probe_timeout_seconds)
                for _, url in targets
            )
        )
        added = []
        for (port, url), kind in zip(targets, kinds, strict=True):
            if kind is None or self.core.registry.find_by_url(url) is not None:
                continue
            backend_id = f"{kind.value}-{port}"
            if self.core.registry.get(backend_id) is not None:
                backend_id += "-probe"
            backend = Backend(
                id=backend_id,
                name=backend_id,
                url=url,
                type=kind,
                source=DiscoverySource.PROBE,
                zone=PrivacyZone.LOCAL,
                metadata={"probe_port": str(port)},
            )
            self.core.add_backend(backend)
            log.info("found %s at %s (local probe)", kind.value, url)
            added.append(backend)
        return added


def _is_local(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
