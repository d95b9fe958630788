"""The health state machine (F03), fed ProbeResults directly: no network, no timers."""

from __future__ import annotations

import pytest

from nexusd.backends.prober import ProbeResult
from nexusd.config.schema import HealthCheckConfig
from nexusd.events import EventBus
from nexusd.health import HealthChecker
from nexusd.registry import Backend, Registry
from nexusd.types import BackendStatus, BackendType, ModelInfo

HEALTHY = BackendStatus.HEALTHY
UNHEALTHY = BackendStatus.UNHEALTHY
UNKNOWN = BackendStatus.UNKNOWN
LOADING = BackendStatus.LOADING


def ok(*models: str, latency: float | None = 10.0) -> ProbeResult:
    return ProbeResult(HEALTHY, [ModelInfo(m) for m in models], latency)


def ok_no_listing() -> ProbeResult:
    return ProbeResult(HEALTHY, None, 5.0)


def fail(error: str = "connection refused") -> ProbeResult:
    return ProbeResult(UNHEALTHY, error=error)


def loading() -> ProbeResult:
    return ProbeResult(LOADING, error="model is loading")


@pytest.fixture
def registry() -> Registry:
    return Registry(EventBus())


@pytest.fixture
def backend(registry: Registry) -> Backend:
    return registry.add(Backend(id="b", name="b", url="http://b.test:8080", type=BackendType.VLLM))


def checker(registry: Registry, failure: int = 3, recovery: int = 2) -> HealthChecker:
    return HealthChecker(
        registry, HealthCheckConfig(failure_threshold=failure, recovery_threshold=recovery)
    )


def run(hc: HealthChecker, backend: Backend, *results: ProbeResult) -> list[BackendStatus]:
    statuses = []
    for result in results:
        hc.apply(backend, result)
        statuses.append(backend.health)
    return statuses


def test_unknown_to_healthy_on_one_success(registry: Registry, backend: Backend) -> None:
    assert run(checker(registry), backend, ok("m")) == [HEALTHY]
    assert backend.last_error is None
    assert backend.last_check is not None


def test_unknown_to_unhealthy_on_one_failure(registry: Registry, backend: Backend) -> None:
    assert run(checker(registry), backend, fail("refused")) == [UNHEALTHY]
    assert backend.last_error == "refused"


def test_healthy_stays_healthy_below_the_failure_threshold(
    registry: Registry, backend: Backend
) -> None:
    hc = checker(registry, failure=3)
    assert run(hc, backend, ok(), fail(), fail(), fail("third")) == [
        HEALTHY,
        HEALTHY,
        HEALTHY,
        UNHEALTHY,
    ]
    assert backend.last_error == "third"


def test_unhealthy_needs_recovery_threshold_successes(registry: Registry, backend: Backend) -> None:
    hc = checker(registry, recovery=2)
    assert run(hc, backend, fail(), ok(), ok()) == [UNHEALTHY, UNHEALTHY, HEALTHY]


@pytest.mark.parametrize(("failure", "recovery"), [(1, 1), (2, 3), (5, 4)])
def test_thresholds_come_from_config(
    registry: Registry, backend: Backend, failure: int, recovery: int
) -> None:
    hc = checker(registry, failure=failure, recovery=recovery)
    hc.apply(backend, ok())
    statuses = run(hc, backend, *[fail()] * failure)
    assert statuses == [HEALTHY] * (failure - 1) + [UNHEALTHY]
    statuses = run(hc, backend, *[ok()] * recovery)
    assert statuses == [UNHEALTHY] * (recovery - 1) + [HEALTHY]


def test_a_success_resets_the_failure_counter(registry: Registry, backend: Backend) -> None:
    hc = checker(registry, failure=3)
    statuses = run(hc, backend, ok(), fail(), fail(), ok(), fail(), fail())
    assert statuses == [HEALTHY] * 6
    assert backend.consecutive_failures == 2
    assert run(hc, backend, fail()) == [UNHEALTHY]


def test_a_failure_resets_the_success_counter(registry: Registry, backend: Backend) -> None:
    hc = checker(registry, recovery=2)
    statuses = run(hc, backend, fail(), ok(), fail(), ok())
    assert statuses == [UNHEALTHY] * 4
    assert backend.consecutive_successes == 1
    assert run(hc, backend, ok()) == [HEALTHY]


def test_unhealthy_extra_failures_keep_the_latest_error(
    registry: Registry, backend: Backend
) -> None:
    hc = checker(registry)
    run(hc, backend, fail("first"), fail("second"))
    assert backend.health is UNHEALTHY
    assert backend.last_error == "second"


def test_failure_without_message_gets_a_default(registry: Registry, backend: Backend) -> None:
    checker(registry).apply(backend, ProbeResult(UNHEALTHY))
    assert backend.last_error == "health check failed"


def test_loading_then_success_is_healthy(registry: Registry, backend: Backend) -> None:
    hc = checker(registry)
    assert run(hc, backend, loading(), ok("m")) == [LOADING, HEALTHY]


def test_loading_is_not_unhealthy_and_clears_failures(registry: Registry, backend: Backend) -> None:
    hc = checker(registry, failure=3)
    run(hc, backend, ok(), fail(), fail())
    assert backend.consecutive_failures == 2
    assert run(hc, backend, loading()) == [LOADING]
    assert backend.consecutive_failures == 0
    assert backend.last_error == "model is loading"
    assert backend.routable is False


def test_loading_then_failure_is_unhealthy(registry: Registry, backend: Backend) -> None:
    assert run(checker(registry), backend, loading(), fail()) == [LOADING, UNHEALTHY]


def test_unhealthy_backend_that_starts_loading_becomes_healthy_when_loaded(
    registry: Registry, backend: Backend
) -> None:
    hc = checker(registry, recovery=2)
    assert run(hc, backend, fail(), loading(), ok()) == [UNHEALTHY, LOADING, HEALTHY]


# --- models and latency --------------------------------------------------------------------


def test_models_replaced_on_success(registry: Registry, backend: Backend) -> None:
    hc = checker(registry)
    hc.apply(backend, ok("a", "b"))
    assert list(backend.models) == ["a", "b"]
    hc.apply(backend, ok("b", "c"))
    assert list(backend.models) == ["b", "c"]
    assert registry.model_names() == ["b", "c"]


def test_models_kept_on_failure(registry: Registry, backend: Backend) -> None:
    hc = checker(registry, failure=1)
    hc.apply(backend, ok("a"))
    hc.apply(backend, fail())
    assert backend.health is UNHEALTHY
    assert list(backend.models) == ["a"]
    assert registry.model_names() == ["a"]


def test_empty_listing_is_authoritative(registry: Registry, backend: Backend) -> None:
    hc = checker(registry)
    hc.apply(backend, ok("a"))
    hc.apply(backend, ok())  # the backend now lists no models
    assert backend.health is HEALTHY
    assert backend.models == {}
    assert registry.model_names() == []


def test_success_without_a_listing_keeps_models(registry: Registry, backend: Backend) -> None:
    hc = checker(registry)
    hc.apply(backend, ok("a"))
    hc.apply(backend, ok_no_listing())
    assert list(backend.models) == ["a"]


def test_models_updated_even_while_still_recovering(registry: Registry, backend: Backend) -> None:
    hc = checker(registry, recovery=2)
    hc.apply(backend, fail())
    hc.apply(backend, ok("new"))
    assert backend.health is UNHEALTHY
    assert list(backend.models) == ["new"]


def test_latency_recorded_only_on_success(registry: Registry, backend: Backend) -> None:
    hc = checker(registry)
    hc.apply(backend, ok(latency=100.0))
    hc.apply(backend, ProbeResult(UNHEALTHY, latency_ms=5000.0, error="x"))
    assert backend.latency_ema_ms == 100.0
    hc.apply(backend, ok(latency=200.0))
    assert backend.latency_ema_ms == pytest.approx(120.0)


# --- passive failures ----------------------------------------------------------------------


def test_passive_failures_count_toward_the_threshold(registry: Registry, backend: Backend) -> None:
    hc = checker(registry, failure=3)
    hc.apply(backend, ok())
    hc.note_passive_failure(backend, "HTTP 500")
    hc.note_passive_failure(backend, "HTTP 502")
    assert backend.health is HEALTHY
    assert backend.passive_failures == 2
    hc.apply(backend, fail("probe failed"))  # probes and traffic share the counter
    assert backend.health is UNHEALTHY
    assert backend.last_error == "probe failed"


def test_passive_failure_message(registry: Registry, backend: Backend) -> None:
    hc = checker(registry, failure=1)
    hc.apply(backend, ok())
    hc.note_passive_failure(backend, "connection reset")
    assert backend.health is UNHEALTHY
    assert backend.last_error == "request failed: connection reset"
    assert backend.passive_failures == 1


def test_passive_success_resets_failures_only(registry: Registry, backend: Backend) -> None:
    hc = checker(registry, failure=2)
    hc.apply(backend, ok())
    hc.note_passive_failure(backend, "x")
    HealthChecker.note_passive_success(backend)
    hc.note_passive_failure(backend, "y")
    assert backend.health is HEALTHY
    assert backend.passive_failures == 2


def test_result_for_a_removed_backend_is_ignored(registry: Registry, backend: Backend) -> None:
    hc = checker(registry)
    registry.remove(backend.id)
    hc.apply(backend, ok("a"))
    assert backend.health is UNKNOWN
    assert backend.models == {}
    assert registry.model_names() == []


def test_result_for_a_replaced_backend_is_ignored(registry: Registry, backend: Backend) -> None:
    hc = checker(registry)
    registry.remove(backend.id)
    replacement = registry.add(
        Backend(id="b", name="b", url="http://b.test:8080", type=BackendType.VLLM)
    )
    hc.apply(backend, ok("stale"))  # the old object's probe finishes late
    assert replacement.health is UNKNOWN
    assert not registry.has_model("stale")


def test_status_changes_are_published(registry: Registry, backend: Backend) -> None:
    hc = checker(registry, failure=1)
    with registry.bus.subscribe() as sub:
        hc.apply(backend, ok())
        hc.apply(backend, ok())
        hc.apply(backend, fail("down"))
        events = []
        while (e := sub.get_nowait()) is not None:
            events.append(e)
    statuses = [
        (e.data["old_health"], e.data["health"]) for e in events if e.type == "backend.status"
    ]
    assert statuses == [("unknown", "healthy"), ("healthy", "unhealthy")]


# --- check() with stand-in agents (no network) ---------------------------------------------


class ScriptedAgent:
    def __init__(self, result: ProbeResult | Exception) -> None:
        self.result = result
        self.calls: list[float] = []

    async def probe(self, timeout: float) -> ProbeResult:
        self.calls.append(timeout)
        if isinstance(self.result, Exception):
            raise self.result
        return self.result


async def test_check_applies_the_agent_result(registry: Registry, backend: Backend) -> None:
    agent = ScriptedAgent(ok("m"))
    backend.agent = agent  # type: ignore[assignment]
    hc = checker(registry)
    await hc.check(backend)
    assert agent.calls == [hc.config.timeout_seconds]
    assert backend.health is HEALTHY
    assert list(backend.models) == ["m"]


async def test_a_crashing_probe_counts_as_a_failure(registry: Registry, backend: Backend) -> None:
    backend.agent = ScriptedAgent(RuntimeError("kaboom"))  # type: ignore[assignment]
    await checker(registry).check(backend)
    assert backend.health is UNHEALTHY
    assert backend.last_error == "probe crashed: kaboom"


async def test_check_all_skips_disabled_and_agentless_backends(registry: Registry) -> None:
    def add(name: str, agent: ScriptedAgent | None, enabled: bool = True) -> Backend:
        b = Backend(id=name, name=name, url=f"http://{name}.test", type=BackendType.VLLM)
        b.enabled = enabled
        b.agent = agent  # type: ignore[assignment]
        return registry.add(b)

    on = add("on", ScriptedAgent(ok("m")))
    off_agent = ScriptedAgent(ok("m"))
    off = add("off", off_agent, enabled=False)
    bare = add("bare", None)
    hc = checker(registry)
    await hc.check_all()
    assert hc.cycles == 1
    assert on.health is HEALTHY
    assert off_agent.calls == [] and off.health is UNKNOWN
    assert bare.health is UNKNOWN
