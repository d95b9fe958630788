"""Scoring, strategies and the routing pipeline (F06) over a real Registry."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest

from nexusd.config.schema import RoutingConfig, RoutingStrategy, RoutingWeights
from nexusd.events import EventBus
from nexusd.registry import Backend, Registry
from nexusd.routing.intent import Requirements, RoutingIntent, requirements_of
from nexusd.routing.pipeline import Outcome, Pipeline
from nexusd.routing.strategies import Strategies, score
from nexusd.types import BackendStatus, BackendType, Endpoint, ModelInfo

MODEL = "llama3:8b"


def make(
    name: str,
    *,
    priority: int = 50,
    pending: int = 0,
    latency: float | None = None,
    **kwargs: Any,
) -> Backend:
    return Backend(
        id=name,
        name=name,
        url=f"http://{name}.test:11434",
        type=BackendType.OLLAMA,
        priority=priority,
        pending=pending,
        latency_ema_ms=latency,
        **kwargs,
    )


# --- score ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("priority", "pending", "latency", "expected"),
    [
        (1, 0, 50.0, 98),  # (99*50 + 100*30 + 95*20) // 100
        (50, 0, None, 75),  # never measured: best latency score
        (50, 0, 0.0, 75),
        (150, 0, None, 50),  # priority clamped at 100
        (100, 0, None, 50),
        (-10, 0, None, 100),  # negative priority clamped at 0
        (0, 250, None, 70),  # pending clamped at 100
        (0, 100, None, 70),
        (0, 0, 1000.0, 80),  # latency >= 1000 ms scores 0
        (0, 0, 60_000.0, 80),
        (0, 0, 500.0, 90),
        (0, 0, 19.9, 99),  # one whole 10 ms step: (5000 + 3000 + 99*20) // 100
        (100, 100, 1000.0, 0),
        (0, 0, None, 100),
    ],
)
def test_score_formula_and_clamps(
    priority: int, pending: int, latency: float | None, expected: int
) -> None:
    b = make("b", priority=priority, pending=pending, latency=latency)
    result = score(b, RoutingWeights())
    assert result == expected
    assert isinstance(result, int)


def test_score_uses_the_weights() -> None:
    b = make("b", priority=30, pending=40, latency=200.0)
    assert score(b, RoutingWeights(priority=100, load=0, latency=0)) == 70
    assert score(b, RoutingWeights(priority=0, load=100, latency=0)) == 60
    assert score(b, RoutingWeights(priority=0, load=0, latency=100)) == 80


# --- strategies ----------------------------------------------------------------------------


def strategies(seed: int = 0) -> Strategies:
    return Strategies(RoutingWeights(), rng=random.Random(seed))


def test_smart_picks_the_highest_score() -> None:
    backends = [
        make("slow", priority=10, pending=5, latency=400.0),
        make("best", priority=1, pending=0, latency=50.0),
        make("busy", priority=1, pending=50, latency=50.0),
    ]
    index, reason = strategies().smart(backends)
    assert index == 1
    assert reason == "highest_score:best:98"


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ({"pending": 5}, {"pending": 0}),
        ({"latency": 300.0}, {"latency": 20.0}),
        ({"priority": 20}, {"priority": 10}),
    ],
    ids=["load", "latency", "priority"],
)
def test_smart_prefers_the_better_factor(a: dict[str, Any], b: dict[str, Any]) -> None:
    index, _ = strategies().smart([make("a", **a), make("b", **b)])
    assert index == 1


def test_smart_ties_go_to_the_first_candidate() -> None:
    backends = [make("first"), make("second"), make("third")]
    assert strategies().smart(backends) == (0, "highest_score:first:75")
    assert strategies().smart(backends[1:]) == (0, "highest_score:second:75")


def test_round_robin_cycles_evenly() -> None:
    s = strategies()
    backends = [make("a"), make("b"), make("c")]
    picks = [s.round_robin(backends) for _ in range(6)]
    assert [i for i, _ in picks] == [0, 1, 2, 0, 1, 2]
    assert [r for _, r in picks] == [f"round_robin:index_{i}" for i in (0, 1, 2, 0, 1, 2)]
    assert Counter(i for i, _ in picks) == {0: 2, 1: 2, 2: 2}


def test_round_robin_counter_is_per_strategies_instance() -> None:
    backends = [make("a"), make("b")]
    s1, s2 = strategies(), strategies()
    assert s1.round_robin(backends)[0] == 0
    assert s1.round_robin(backends)[0] == 1
    assert s2.round_robin(backends)[0] == 0


def test_priority_only_picks_lowest_and_first_on_ties() -> None:
    backends = [make("a", priority=5), make("b", priority=1), make("c", priority=1)]
    assert strategies().priority_only(backends) == (1, "priority:b:1")


def test_priority_only_ignores_load_and_latency() -> None:
    backends = [make("a", priority=2), make("b", priority=1, pending=99, latency=5000.0)]
    assert strategies().priority_only(backends)[0] == 1


def test_random_is_roughly_even_and_names_the_backend() -> None:
    s = strategies(seed=1234)
    backends = [make("a"), make("b"), make("c")]
    counts: Counter[int] = Counter()
    for _ in range(300):
        index, reason = s.random(backends)
        assert reason == f"random:{backends[index].name}"
        counts[index] += 1
    assert set(counts) == {0, 1, 2}
    assert all(60 <= n <= 140 for n in counts.values()), counts


def test_random_is_reproducible_with_a_seed() -> None:
    backends = [make(n) for n in "abcde"]
    s1, s2 = strategies(seed=7), strategies(seed=7)
    picks = [s1.random(backends) for _ in range(20)]
    assert picks == [s2.random(backends) for _ in range(20)]
    assert len({i for i, _ in picks}) > 1


def test_least_busy_picks_fewest_pending_then_lowest_priority() -> None:
    backends = [
        make("a", pending=3, priority=1),
        make("b", pending=1, priority=60),
        make("c", pending=1, priority=40),
    ]
    assert strategies().least_busy(backends) == (2, "least_busy:c:1")


def test_least_busy_first_on_full_ties() -> None:
    backends = [make("a", pending=2), make("b", pending=2)]
    assert strategies().least_busy(backends) == (0, "least_busy:a:2")


@pytest.mark.parametrize("strategy", list(RoutingStrategy))
def test_single_candidate_is_only_healthy_backend(strategy: RoutingStrategy) -> None:
    assert strategies().pick(strategy, [make("solo")]) == (0, "only_healthy_backend")


@pytest.mark.parametrize(
    ("strategy", "prefix"),
    [
        (RoutingStrategy.SMART, "highest_score:"),
        (RoutingStrategy.ROUND_ROBIN, "round_robin:index_"),
        (RoutingStrategy.PRIORITY_ONLY, "priority:"),
        (RoutingStrategy.RANDOM, "random:"),
        (RoutingStrategy.LEAST_BUSY, "least_busy:"),
    ],
)
def test_pick_dispatches_by_strategy(strategy: RoutingStrategy, prefix: str) -> None:
    _, reason = strategies().pick(strategy, [make("a"), make("b")])
    assert reason.startswith(prefix)


# --- pipeline ------------------------------------------------------------------------------


def model(model_id: str = MODEL, **caps: Any) -> ModelInfo:
    return ModelInfo(id=model_id, **caps)


def healthy(name: str, *models: ModelInfo, **kwargs: Any) -> Backend:
    b = make(name, health=BackendStatus.HEALTHY, **kwargs)
    b.models = {m.id: m for m in (models or (model(),))}
    return b


def setup(*backends: Backend, **config: Any) -> tuple[Registry, Pipeline]:
    registry = Registry(EventBus())
    for b in backends:
        registry.add(b)
    return registry, Pipeline(registry, RoutingConfig(**config))


def intent(body: dict[str, Any] | None = None, excluded: set[str] | None = None) -> RoutingIntent:
    body = body if body is not None else {"messages": [{"role": "user", "content": "hi"}]}
    return RoutingIntent("req-1", MODEL, requirements_of(body), excluded=excluded or set())


def test_routes_to_a_healthy_backend() -> None:
    _, pipeline = setup(healthy("a"))
    d = pipeline.run(intent(), MODEL)
    assert d.outcome is Outcome.ROUTE
    assert d.backend is not None and d.backend.id == "a"
    assert d.reason == "only_healthy_backend"
    assert d.candidates == ["a"]
    assert d.rejections == []
    assert d.model_known is True


def test_unknown_model_is_rejected_as_not_known() -> None:
    _, pipeline = setup(healthy("a"))
    d = pipeline.run(intent(), "no-such-model")
    assert d.outcome is Outcome.REJECT
    assert d.model_known is False
    assert d.backend is None
    assert d.candidates == []
    assert d.to_json()["model_known"] is False


@pytest.mark.parametrize(
    ("setup_backend", "reason"),
    [
        (
            lambda b: (
                setattr(b, "health", BackendStatus.UNHEALTHY),
                setattr(b, "last_error", "connection refused"),
            ),
            "backend is unhealthy (connection refused)",
        ),
        (lambda b: setattr(b, "health", BackendStatus.UNHEALTHY), "backend is unhealthy"),
        (lambda b: setattr(b, "health", BackendStatus.UNKNOWN), "backend is unknown"),
        (lambda b: setattr(b, "health", BackendStatus.LOADING), "backend is loading"),
        (lambda b: setattr(b, "draining", True), "backend is draining"),
        (lambda b: setattr(b, "enabled", False), "backend is disabled"),
    ],
    ids=["unhealthy-with-error", "unhealthy", "unknown", "loading", "draining", "disabled"],
)
def test_availability_rejects_with_reason(setup_backend: Any, reason: str) -> None:
    bad = healthy("bad")
    setup_backend(bad)
    _, pipeline = setup(bad, healthy("good"))
    d = pipeline.run(intent(), MODEL)
    assert d.outcome is Outcome.ROUTE
    assert d.backend is not None and d.backend.id == "good"
    assert [(r.stage, r.backend, r.reason) for r in d.rejections] == [
        ("availability", "bad", reason)
    ]
    assert d.candidates == ["bad", "good"]


def test_excluded_backend_is_rejected_at_availability() -> None:
    _, pipeline = setup(healthy("a"), healthy("b"))
    d = pipeline.run(intent(excluded={"a"}), MODEL)
    assert d.backend is not None and d.backend.id == "b"
    assert d.rejections[0].to_json() == {
        "stage": "availability",
        "backend": "a",
        "reason": "already failed during this request",
    }


def test_no_available_backend_is_a_reject_and_later_stages_do_not_run() -> None:
    a = healthy("a", model(vision=False))
    a.health = BackendStatus.UNHEALTHY
    _, pipeline = setup(a)
    body = {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}
    d = pipeline.run(intent(body), MODEL)
    assert d.outcome is Outcome.REJECT
    assert d.model_known is True
    assert d.reason == "no capable healthy backend"
    assert [r.stage for r in d.rejections] == ["availability"]


IMAGE = {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]}


def stated(**caps: Any) -> ModelInfo:
    """A model whose backend stated these capabilities (not guessed from the name)."""
    m = model()
    m.report(**caps)
    return m


@pytest.mark.parametrize(
    ("body_extra", "caps", "missing"),
    [
        (IMAGE, {"vision": True}, "lacks vision: it cannot take image input"),
        ({"tools": [{"type": "function"}]}, {"tools": True}, "may ignore tools"),
        ({"response_format": {"type": "json_object"}}, {"json_mode": True}, "may ignore JSON mode"),
    ],
    ids=["vision", "tools", "json_mode"],
)
def test_soft_requirements_rank_but_never_reject(
    body_extra: dict[str, Any], caps: dict[str, bool], missing: str
) -> None:
    """Guessed capabilities (and tools/JSON mode always) only rank: the capable one wins."""
    lacking = {"vision": False, "tools": False, "json_mode": False}
    _, pipeline = setup(
        healthy("plain", model(**lacking)),
        healthy("able", model(**{**lacking, **caps})),
    )
    body = {"messages": [{"role": "user", "content": "hi"}], **body_extra}
    d = pipeline.run(intent(body), MODEL)
    assert d.outcome is Outcome.ROUTE
    assert d.backend is not None and d.backend.id == "able"
    assert d.rejections == []
    assert [(r.stage, r.backend, r.reason) for r in d.demoted] == [
        ("preferences", "plain", f"model {MODEL} {missing}")
    ]
    # alone, the lacking backend still serves it: the backend would accept the request
    _, alone = setup(healthy("plain", model(**lacking)))
    d = alone.run(intent(body), MODEL)
    assert d.outcome is Outcome.ROUTE and d.backend is not None and d.backend.id == "plain"


def test_stated_missing_vision_is_a_permanent_rejection() -> None:
    _, pipeline = setup(healthy("plain", stated(vision=False)))
    d = pipeline.run(intent(IMAGE), MODEL)
    assert d.outcome is Outcome.REJECT
    assert d.permanent is True
    (rej,) = d.rejections
    assert (rej.stage, rej.code) == ("capabilities", "model_not_capable")
    assert rej.reason == f"model {MODEL} lacks vision: it cannot take image input"
    assert rej.fix is not None and f'models."{MODEL}".vision = true' in rej.fix


def test_hard_mismatch_is_judged_whatever_the_health() -> None:
    """An unhealthy backend that could serve makes the refusal transient, not permanent."""
    able = healthy("able", stated(vision=True))
    able.health = BackendStatus.UNHEALTHY
    _, pipeline = setup(healthy("plain", stated(vision=False)), able)
    d = pipeline.run(intent(IMAGE), MODEL)
    assert d.outcome is Outcome.REJECT
    assert d.permanent is False
    assert [r.stage for r in d.rejections] == ["capabilities", "availability"]


@pytest.mark.parametrize(
    ("endpoint", "embeddings", "hard"),
    [
        (Endpoint.CHAT, True, True),
        (Endpoint.COMPLETIONS, True, True),
        (Endpoint.EMBEDDINGS, False, True),
        (Endpoint.CHAT, False, False),
        (Endpoint.EMBEDDINGS, True, False),
    ],
)
def test_wrong_endpoint_for_a_stated_model_kind(
    endpoint: Endpoint, embeddings: bool, hard: bool
) -> None:
    _, pipeline = setup(healthy("a", stated(embeddings=embeddings)))
    i = RoutingIntent("r", MODEL, Requirements(endpoint=endpoint))
    d = pipeline.run(i, MODEL)
    if hard:
        assert d.outcome is Outcome.REJECT and d.permanent
        assert d.rejections[0].code == "wrong_endpoint"
    else:
        assert d.outcome is Outcome.ROUTE


def test_guessed_embedding_model_is_only_demoted_for_chat() -> None:
    _, pipeline = setup(healthy("emb", model(embeddings=True)), healthy("gen", model()))
    d = pipeline.run(intent(), MODEL)
    assert d.backend is not None and d.backend.id == "gen"
    assert [r.backend for r in d.demoted] == ["emb"]
    _, alone = setup(healthy("emb", model(embeddings=True)))
    assert alone.run(intent(), MODEL).outcome is Outcome.ROUTE


@pytest.mark.parametrize("max_tokens", [3096, 3097, 100_000])
def test_max_tokens_beyond_the_context_never_rejects(max_tokens: int) -> None:
    _, pipeline = setup(healthy("a", stated(context_length=4096)))
    body = {"messages": [{"role": "user", "content": "x" * 4000}], "max_tokens": max_tokens}
    d = pipeline.run(intent(body), MODEL)
    assert d.outcome is Outcome.ROUTE
    assert d.rejections == []


def test_context_prefers_the_larger_model() -> None:
    _, pipeline = setup(
        healthy("small", model(context_length=2048)), healthy("big", model(context_length=32768))
    )
    i = RoutingIntent("r", MODEL, Requirements(prompt_tokens=3000))
    d = pipeline.run(i, MODEL)
    assert d.backend is not None and d.backend.id == "big"
    assert d.rejections == []
    assert d.demoted[0].backend == "small"


@pytest.mark.parametrize(
    ("exact", "stated_ctx", "hard"),
    [
        (True, True, True),
        (False, True, False),
        (True, False, False),
    ],
)
def test_prompt_over_the_context_is_hard_only_when_counted_and_stated(
    exact: bool, stated_ctx: bool, hard: bool
) -> None:
    m = stated(context_length=2048) if stated_ctx else model(context_length=2048)
    _, pipeline = setup(healthy("a", m))
    req = Requirements(prompt_tokens=3000, prompt_exact=exact)
    d = pipeline.run(RoutingIntent("r", MODEL, req), MODEL)
    if hard:
        assert d.outcome is Outcome.REJECT and d.permanent
        assert d.rejections[0].code == "context_length_exceeded"
        assert "the prompt alone is 3000 tokens" in d.rejections[0].reason
    else:
        assert d.outcome is Outcome.ROUTE


def test_all_capable_backends_at_capacity_queue() -> None:
    _, pipeline = setup(
        healthy("a", max_concurrent=2, pending=2), healthy("b", max_concurrent=1, pending=3)
    )
    d = pipeline.run(intent(), MODEL)
    assert d.outcome is Outcome.QUEUE
    assert d.backend is None
    assert d.reason == "all capable backends are busy"
    assert [(r.stage, r.backend) for r in d.rejections] == [("capacity", "a"), ("capacity", "b")]
    assert d.rejections[0].reason == "at capacity (2/2 in flight)"


def test_capacity_keeps_backends_below_their_limit() -> None:
    _, pipeline = setup(
        healthy("full", max_concurrent=1, pending=1),
        healthy("free", max_concurrent=4, pending=3),
        healthy("unlimited", pending=500),
    )
    d = pipeline.run(intent(), MODEL)
    assert d.outcome is Outcome.ROUTE
    assert [r.backend for r in d.rejections] == ["full"]
    assert d.backend is not None and d.backend.id in ("free", "unlimited")


def test_queue_only_when_a_capable_backend_is_busy() -> None:
    sick = healthy("sick")
    sick.health = BackendStatus.UNHEALTHY
    _, pipeline = setup(sick, healthy("busy", max_concurrent=1, pending=1))
    assert pipeline.run(intent(), MODEL).outcome is Outcome.QUEUE

    _, pipeline = setup(sick_only := healthy("sick2"))
    sick_only.health = BackendStatus.UNHEALTHY
    assert pipeline.run(intent(), MODEL).outcome is Outcome.REJECT


def test_pipeline_uses_the_configured_strategy() -> None:
    _, pipeline = setup(
        healthy("a"), healthy("b"), healthy("c"), strategy=RoutingStrategy.ROUND_ROBIN
    )
    decisions = [pipeline.run(intent(), MODEL) for _ in range(3)]
    assert [d.backend.id for d in decisions if d.backend] == ["a", "b", "c"]
    assert [d.reason for d in decisions] == [f"round_robin:index_{i}" for i in range(3)]


def test_pipeline_smart_reason_names_backend_and_score() -> None:
    _, pipeline = setup(healthy("a", priority=10), healthy("b", priority=1, latency=50.0))
    d = pipeline.run(intent(), MODEL)
    assert d.backend is not None and d.backend.id == "b"
    assert d.reason == "highest_score:b:98"


def test_pipeline_only_considers_backends_serving_the_model() -> None:
    _, pipeline = setup(healthy("a", model("other")), healthy("b"))
    d = pipeline.run(intent(), MODEL)
    assert d.candidates == ["b"]
    assert d.reason == "only_healthy_backend"


def test_decision_to_json_shape() -> None:
    sick = healthy("sick")
    sick.health = BackendStatus.UNHEALTHY
    _, pipeline = setup(sick, healthy("ok"))
    data = pipeline.run(intent(), MODEL).to_json()
    assert data == {
        "model": MODEL,
        "outcome": "route",
        "candidates": ["sick", "ok"],
        "rejections": [
            {"stage": "availability", "backend": "sick", "reason": "backend is unhealthy"}
        ],
        "demoted": [],
        "backend": "ok",
        "reason": "only_healthy_backend",
        "model_known": True,
        "permanent": False,
    }


def test_alias_chain_is_the_one_walk() -> None:
    from nexusd.routing.aliases import alias_chain, is_cycle, resolve_alias

    aliases = {"a": "b", "b": "c", "c": "d", "d": "e", "x": "y", "y": "x"}
    assert alias_chain(aliases, "a") == ["a", "b", "c", "d", "e"]
    assert alias_chain(aliases, "m") == ["m"]
    cycle = alias_chain(aliases, "x")
    assert cycle == ["x", "y", "x"] and is_cycle(cycle)
    assert resolve_alias(aliases, "a") == ("d", ["b", "c", "d"])  # three hops at most
    assert resolve_alias(aliases, "m") == ("m", [])
