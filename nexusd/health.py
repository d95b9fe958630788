"""Health checker (F03): concurrent probes, thresholds, ``loading``, and passive failures.

Probes never run inference: each agent asks its backend's own listing/status endpoints.
The state machine (per backend, stored on the backend itself so it can never drift from
what the registry shows):

    unknown/loading --success--> healthy        unknown/loading --failure--> unhealthy
    healthy --failure_threshold failures--> unhealthy
    unhealthy --recovery_threshold successes--> healthy

Failures of real traffic (connect errors, 5xx, timeouts) count like failed probes, so a
dead backend leaves the rotation before the next probe notices.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from nexusd.backends.prober import ProbeResult
from nexusd.config.schema import HealthCheckConfig
from nexusd.registry import Backend, Registry
from nexusd.types import BackendStatus

log = logging.getLogger("nexus.health")

_HEALTHY = BackendStatus.HEALTHY
_UNHEALTHY = BackendStatus.UNHEALTHY


class HealthChecker:
    def __init__(
        self,
        registry: Registry,
        config: HealthCheckConfig,
        on_probe: Callable[[str, float], None] | None = None,
    ) -> None:
        self.registry = registry
        self.config = config
        self.on_probe = on_probe
        self._wake = asyncio.Event()
        self._checks: dict[str, asyncio.Task[None]] = {}
        self.cycles = 0

    async def run(self) -> None:
        """Check everything now, then every ``interval_seconds`` (or sooner when woken)."""
        log.info("health checker started (every %gs)", self.config.interval_seconds)
        while True:
            await self.check_all()
            self._wake.clear()
            try:
                async with asyncio.timeout(self.config.interval_seconds):
                    await self._wake.wait()
            except TimeoutError:
                pass

    def wake(self) -> None:
        self._wake.set()

    async def check_all(self) -> None:
        now = time.time()
        backends = [b for b in self.registry.all() if self._due(b, now)]
        await asyncio.gather(*(self.check(b) for b in backends))
        self.cycles += 1
        log.debug("health cycle %d: %d backends checked", self.cycles, len(backends))

    def _due(self, backend: Backend, now: float) -> bool:
        """Enabled, usable backends with an agent; a healthy cloud backend only every
        ``cloud_interval_seconds`` (its listing is a keyed call to a provider)."""
        if not backend.enabled or backend.unusable or backend.agent is None:
            return False
        if backend.type.is_cloud and backend.health is _HEALTHY and backend.last_check:
            return now - backend.last_check >= self.config.cloud_interval_seconds
        return True

    def check_soon(self, backend: Backend) -> None:
        """Check one backend now (e.g. just added) without waiting for the next cycle."""
        if backend.id in self._checks:
            return
        task = asyncio.get_running_loop().create_task(self.check(backend))
        self._checks[backend.id] = task
        task.add_done_callback(lambda _t: self._checks.pop(backend.id, None))

    async def check(self, backend: Backend) -> None:
        agent = backend.agent
        if agent is None or backend.unusable:
            return
        timeout = self.config.timeout_seconds
        try:
            # the agent bounds each call; this bounds the whole probe (several calls)
            async with asyncio.timeout(timeout * 2):
                result = await agent.probe(timeout)
        except TimeoutError:
            result = ProbeResult(
                _UNHEALTHY, error=f"health check took longer than {timeout * 2:g} s"
            )
        except Exception as exc:  # a broken agent must not kill the checker
            log.exception("health probe of %s crashed", backend.name)
            result = ProbeResult(_UNHEALTHY, error=f"probe crashed: {exc}")
        self.apply(backend, result)

    def apply(self, backend: Backend, result: ProbeResult) -> None:
        backend.last_check = time.time()
        if self.registry.get(backend.id) is not backend:
            return  # removed while the probe was in flight
        if result.status is BackendStatus.LOADING:
            backend.consecutive_failures = 0
            self._transition(backend, BackendStatus.LOADING, result.error)
            return
        if result.status is _HEALTHY:
            if result.latency_ms is not None:
                backend.note_latency(result.latency_ms)
                if self.on_probe is not None:
                    self.on_probe(backend.id, result.latency_ms / 1000)
            if result.models is not None:
                self.registry.set_models(backend, result.models)
            if result.native_dialects is not None and backend.agent is not None:
                codec = backend.agent.codec
                codec.native_dialects = type(codec).native_dialects | result.native_dialects
            self._success(backend)
        else:
            self._failure(backend, result.error or "health check failed")

    def note_passive_failure(self, backend: Backend, reason: str) -> None:
        backend.passive_failures += 1
        self._failure(backend, f"request failed: {reason}")

    @staticmethod
    def note_passive_success(backend: Backend) -> None:
        backend.consecutive_failures = 0

    def _success(self, backend: Backend) -> None:
        backend.consecutive_failures = 0
        backend.consecutive_successes += 1
        current = backend.health
        if current is not _UNHEALTHY or (
            backend.consecutive_successes >= self.config.recovery_threshold
        ):
            self._transition(backend, _HEALTHY, None)

    def _failure(self, backend: Backend, error: str) -> None:
        backend.consecutive_successes = 0
        backend.consecutive_failures += 1
        current = backend.health
        if current is _HEALTHY and backend.consecutive_failures < self.config.failure_threshold:
            return
        self._transition(backend, _UNHEALTHY, error)

    def _transition(self, backend: Backend, new: BackendStatus, error: str | None) -> None:
        old = backend.health
        if self.registry.set_health(backend, new, error):
            log.info(
                "backend %s: %s -> %s%s",
                backend.name,
                old.value,
                new.value,
                f" ({error})" if error else "",
            )
