"""The backend registry (F02) and the event bus it publishes on."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from nexusd.events import EventBus, Subscription
from nexusd.registry import Backend, Registry, RegistryError, normalise_url
from nexusd.types import BackendStatus, BackendType, ModelInfo, ModelOverride


def make(name: str, *models: str, url: str | None = None, **kwargs: Any) -> Backend:
    return Backend(
        id=name,
        name=name,
        url=url or f"http://{name}.test:8080",
        type=BackendType.VLLM,
        models={m: ModelInfo(m) for m in models},
        **kwargs,
    )


@pytest.fixture
def bus() -> EventBus:
    return EventBus()


@pytest.fixture
def registry(bus: EventBus) -> Registry:
    return Registry(bus)


def drain(sub: Subscription) -> list[tuple[str, dict[str, Any]]]:
    events = []
    while (event := sub.get_nowait()) is not None:
        events.append((event.type, event.data))
    return events


# --- add / remove / get --------------------------------------------------------------------


def test_add_get_and_len(registry: Registry) -> None:
    a = registry.add(make("a", "m1"))
    assert registry.get("a") is a
    assert registry.get("zzz") is None
    assert len(registry) == 1
    assert registry.all() == [a]


def test_add_duplicate_id_raises(registry: Registry) -> None:
    registry.add(make("a"))
    with pytest.raises(RegistryError, match="backend already exists: a"):
        registry.add(make("a", url="http://elsewhere"))
    assert len(registry) == 1


def test_remove_unknown_raises(registry: Registry) -> None:
    with pytest.raises(RegistryError, match="backend not found: ghost"):
        registry.remove("ghost")


def test_remove_returns_the_backend(registry: Registry) -> None:
    a = registry.add(make("a", "m1"))
    assert registry.remove("a") is a
    assert registry.get("a") is None
    assert len(registry) == 0


def test_registration_order_is_stable(registry: Registry) -> None:
    names = ["zeta", "alpha", "mid", "beta"]
    for n in names:
        registry.add(make(n, "shared"))
    assert [b.id for b in registry.all()] == names
    assert [b.id for b in registry.serving("shared")] == names
    # model updates do not move a backend to the end of the index
    registry.set_models(registry.get("zeta"), [ModelInfo("shared"), ModelInfo("new")])
    registry.set_models(registry.get("zeta"), [ModelInfo("shared")])
    assert [b.id for b in registry.serving("shared")] == names


# --- model index ---------------------------------------------------------------------------


def test_model_index_on_add(registry: Registry) -> None:
    a = registry.add(make("a", "m1", "m2"))
    b = registry.add(make("b", "m2"))
    assert registry.serving("m1") == [a]
    assert registry.serving("m2") == [a, b]
    assert registry.serving("nope") == []
    assert registry.has_model("m1") and not registry.has_model("nope")
    assert registry.model_names() == ["m1", "m2"]


def test_model_index_on_set_models(registry: Registry) -> None:
    a = registry.add(make("a", "A", "B"))
    other = registry.add(make("other", "B"))
    assert registry.set_models(a, [ModelInfo("B"), ModelInfo("C")]) is True
    assert not registry.has_model("A")
    assert registry.serving("B") == [a, other]
    assert registry.serving("C") == [a]
    assert registry.model_names() == ["B", "C"]
    assert list(a.models) == ["B", "C"]


def test_model_index_on_remove_drops_empty_entries(registry: Registry) -> None:
    registry.add(make("a", "A", "B"))
    b = registry.add(make("b", "B"))
    registry.remove("a")
    assert registry.model_names() == ["B"]
    assert registry.serving("B") == [b]
    registry.remove("b")
    assert registry.model_names() == []
    assert not registry.has_model("B")


def test_set_models_to_empty_clears_the_index(registry: Registry) -> None:
    a = registry.add(make("a", "A"))
    assert registry.set_models(a, []) is True
    assert a.models == {}
    assert registry.model_names() == []


def test_set_models_unchanged_returns_false_and_publishes_nothing(
    registry: Registry, bus: EventBus
) -> None:
    a = registry.add(make("a", "A"))
    with bus.subscribe() as sub:
        assert registry.set_models(a, [ModelInfo("A")]) is False
        assert drain(sub) == []


def test_set_models_on_unregistered_backend_does_not_index(registry: Registry) -> None:
    loose = make("loose")
    assert registry.set_models(loose, [ModelInfo("A")]) is True
    assert not registry.has_model("A")
    registry.add(loose)  # indexed once it is added
    assert registry.serving("A") == [loose]


def test_set_models_applies_config_overrides(registry: Registry) -> None:
    a = registry.add(
        make(
            "a",
            model_overrides={
                "x": ModelOverride(vision=True, context_length=65536),
                "absent": ModelOverride(tools=True),
            },
        )
    )
    registry.set_models(a, [ModelInfo("x", vision=False, tools=True), ModelInfo("y")])
    x = a.models["x"]
    assert (x.vision, x.context_length, x.tools) == (True, 65536, True)  # tools untouched
    assert a.models["y"] == ModelInfo("y")
    assert "absent" not in a.models


# --- urls ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://h:1", "http://h:1"),
        ("http://h:1/", "http://h:1"),
        ("http://h:1/v1", "http://h:1"),
        ("http://h:1/v1/", "http://h:1"),
        (" http://h:1/v1/ ", "http://h:1"),
        ("http://h:1/api/v1", "http://h:1/api"),
        ("http://h:1/v10", "http://h:1/v10"),
    ],
)
def test_normalise_url(url: str, expected: str) -> None:
    assert normalise_url(url) == expected


def test_add_stores_the_normalised_url(registry: Registry) -> None:
    a = registry.add(make("a", url="http://h:1234/v1/"))
    assert a.url == "http://h:1234"


@pytest.mark.parametrize(
    "query", ["http://h:1234", "http://h:1234/", "http://h:1234/v1", "http://h:1234/v1/"]
)
def test_find_by_url_ignores_trailing_slash_and_v1(registry: Registry, query: str) -> None:
    a = registry.add(make("a", url="http://h:1234/"))
    registry.add(make("b", url="http://h:9999"))
    assert registry.find_by_url(query) is a


def test_find_by_url_miss(registry: Registry) -> None:
    registry.add(make("a", url="http://h:1234"))
    assert registry.find_by_url("http://h:4321") is None


# --- backend state -------------------------------------------------------------------------


def test_latency_ema_first_sample_then_20_percent() -> None:
    b = make("a")
    assert b.latency_ema_ms is None
    b.note_latency(100)
    assert b.latency_ema_ms == 100
    b.note_latency(200)
    assert b.latency_ema_ms == pytest.approx(120)
    b.note_latency(150)
    assert b.latency_ema_ms == pytest.approx(126)


def test_latency_ema_zero_first_sample_is_a_sample() -> None:
    b = make("a")
    b.note_latency(0)
    assert b.latency_ema_ms == 0
    b.note_latency(100)
    assert b.latency_ema_ms == pytest.approx(20)


@pytest.mark.parametrize(
    ("enabled", "draining", "health", "status", "routable"),
    [
        (True, False, BackendStatus.HEALTHY, BackendStatus.HEALTHY, True),
        (True, False, BackendStatus.UNKNOWN, BackendStatus.UNKNOWN, False),
        (True, False, BackendStatus.UNHEALTHY, BackendStatus.UNHEALTHY, False),
        (True, False, BackendStatus.LOADING, BackendStatus.LOADING, False),
        (True, True, BackendStatus.HEALTHY, BackendStatus.DRAINING, False),
        (False, False, BackendStatus.HEALTHY, BackendStatus.DISABLED, False),
        (False, True, BackendStatus.UNHEALTHY, BackendStatus.DISABLED, False),
    ],
)
def test_status_admin_state_wins_over_health(
    enabled: bool,
    draining: bool,
    health: BackendStatus,
    status: BackendStatus,
    routable: bool,
) -> None:
    b = make("a", enabled=enabled, draining=draining, health=health)
    assert b.status is status
    assert b.routable is routable
    assert b.to_json()["status"] == status.value
    assert b.to_json()["health"] == health.value


def test_backend_defaults_and_kind() -> None:
    b = make("a")
    assert b.health is BackendStatus.UNKNOWN
    assert (b.pending, b.total_requests, b.errors, b.passive_failures) == (0, 0, 0, 0)
    assert b.kind == "local"
    cloud = Backend(id="c", name="c", url="https://api.openai.com", type=BackendType.OPENAI)
    assert cloud.kind == "cloud"


def test_backend_to_json_rounds_latency_and_lists_models() -> None:
    b = make("a", "m1")
    b.note_latency(12.3456)
    data = b.to_json()
    assert data["latency_ema_ms"] == 12.35
    assert [m["id"] for m in data["models"]] == ["m1"]
    assert data["models"][0]["capabilities"] == {
        "vision": False,
        "tools": False,
        "json_mode": False,
        "embeddings": False,
    }


# --- events --------------------------------------------------------------------------------


def test_registry_publishes_lifecycle_events(registry: Registry, bus: EventBus) -> None:
    with bus.subscribe() as sub:
        a = registry.add(make("a", "m1"))
        registry.set_health(a, BackendStatus.HEALTHY, None)
        registry.set_health(a, BackendStatus.HEALTHY, None)  # unchanged: no event
        registry.set_models(a, [ModelInfo("m2")])
        registry.set_health(a, BackendStatus.UNHEALTHY, "boom")
        registry.remove("a")
        events = drain(sub)
    assert [t for t, _ in events] == [
        "backend.added",
        "backend.status",
        "models.changed",
        "backend.status",
        "backend.removed",
    ]
    added, up, models, down, removed = (d for _, d in events)
    assert added["id"] == "a" and added["models"][0]["id"] == "m1"
    assert up["old_health"] == "unknown" and up["health"] == "healthy" and up["status"] == "healthy"
    assert models == {"backend": "a", "models": [ModelInfo("m2").to_json()]}
    assert down["health"] == "unhealthy" and down["error"] == "boom"
    assert removed == {"id": "a", "name": "a"}


def test_set_health_returns_whether_it_changed_and_records_error(registry: Registry) -> None:
    a = registry.add(make("a"))
    assert registry.set_health(a, BackendStatus.UNHEALTHY, "refused") is True
    assert a.last_error == "refused"
    assert registry.set_health(a, BackendStatus.UNHEALTHY, "timeout") is False
    assert a.last_error == "timeout"
    assert registry.set_health(a, BackendStatus.HEALTHY, None) is True
    assert a.last_error is None


def test_status_event_reports_admin_status(registry: Registry, bus: EventBus) -> None:
    a = registry.add(make("a", draining=True))
    with bus.subscribe() as sub:
        registry.set_health(a, BackendStatus.HEALTHY, None)
        ((kind, data),) = drain(sub)
    assert kind == "backend.status"
    assert data["status"] == "draining" and data["health"] == "healthy"


def test_no_events_for_backends_not_in_the_registry(registry: Registry, bus: EventBus) -> None:
    loose = make("loose")
    with bus.subscribe() as sub:
        registry.set_health(loose, BackendStatus.HEALTHY, None)
        registry.set_models(loose, [ModelInfo("x")])
        assert drain(sub) == []


def test_events_have_increasing_sequence_numbers(bus: EventBus) -> None:
    with bus.subscribe() as sub:
        for i in range(5):
            bus.publish("tick", {"i": i})
        seqs = []
        while (e := sub.get_nowait()) is not None:
            seqs.append(e.seq)
    assert seqs == sorted(seqs) and len(set(seqs)) == 5


def test_publish_without_subscribers_is_a_no_op(bus: EventBus) -> None:
    assert bus.has_subscribers is False
    bus.publish("x", {})
    with bus.subscribe():
        assert bus.has_subscribers is True
    assert bus.has_subscribers is False


def test_every_subscriber_gets_every_event(bus: EventBus) -> None:
    s1, s2 = bus.subscribe(), bus.subscribe()
    bus.publish("x", {"n": 1})
    assert drain(s1) == drain(s2) == [("x", {"n": 1})]


def test_closed_subscription_receives_nothing(bus: EventBus) -> None:
    sub = bus.subscribe()
    sub.close()
    assert sub.closed is True
    bus.publish("x", {})
    assert sub.get_nowait() is None


def test_slow_subscriber_gets_a_gap_then_the_newest_events(bus: EventBus) -> None:
    slow = bus.subscribe(maxsize=3)
    fast = bus.subscribe(maxsize=100)
    for i in range(8):
        bus.publish("tick", {"i": i})
    events = drain(slow)
    assert events[0] == ("gap", {"lost": 5})
    assert events[1:] == [("tick", {"i": i}) for i in (5, 6, 7)]
    assert len(drain(fast)) == 8  # the other subscriber lost nothing


def test_gap_is_reported_once_and_counting_restarts(bus: EventBus) -> None:
    sub = bus.subscribe(maxsize=2)
    for i in range(4):
        bus.publish("tick", {"i": i})
    assert sub.get_nowait().type == "gap"  # type: ignore[union-attr]
    assert [e for e in drain(sub)] == [("tick", {"i": 2}), ("tick", {"i": 3})]
    bus.publish("tick", {"i": 4})
    assert drain(sub) == [("tick", {"i": 4})]


async def test_async_get_reports_gap_then_waits_for_new_events(bus: EventBus) -> None:
    sub = bus.subscribe(maxsize=1)
    bus.publish("a", {})
    bus.publish("b", {})
    gap = await sub.get()
    assert (gap.type, gap.data) == ("gap", {"lost": 1})
    assert (await sub.get()).type == "b"

    waiter = asyncio.ensure_future(sub.get())
    await asyncio.sleep(0)
    assert not waiter.done()
    bus.publish("c", {"late": True})
    event = await asyncio.wait_for(waiter, 1)
    assert (event.type, event.data) == ("c", {"late": True})
    sub.close()
