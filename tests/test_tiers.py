"""Capability tiers (issue #15, item 2): never below a policy's ``min_tier`` — strict (the
default) keeps to the requested model, flexible lets its fallbacks stand in at that tier or
above; a lower tier is never admitted, in either mode."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.harness import ollama_backend


def ask(d: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    return httpx.post(d.url + "/v1/chat/completions", json=body, headers=headers or {}, timeout=30)


@pytest.fixture
def fleet(fakes, nexus):
    def start(small_override: int | None = None):
        big, small, alt = fakes("ollama", ["m"]), fakes("ollama", ["m"]), fakes("ollama", ["m-alt"])
        small_cfg = ollama_backend("small", small.url, tier=2, priority=1)
        if small_override is not None:
            small_cfg["models"] = {"m": {"tier": small_override}}
        d = nexus(
            {
                "backends": [
                    ollama_backend("big", big.url, tier=4, priority=50),
                    small_cfg,
                    ollama_backend("alt", alt.url, tier=4, priority=50),
                ],
                "routing": {
                    "fallbacks": {"m": ["m-alt"]},
                    "policies": [{"model_pattern": "m", "min_tier": 3}],
                },
            }
        )
        d.wait_healthy("big", "small", "alt")
        return big, small, alt, d

    return start


def test_strict_never_uses_a_lower_tier_or_a_fallback(fleet) -> None:
    _big, small, alt, d = fleet()
    for _ in range(5):  # small has the better priority, and is never chosen
        r = ask(d)
        assert r.status_code == 200 and r.headers["x-nexus-backend"] == "big"
    d.call(lambda: setattr(d.core.registry.get("big"), "enabled", False))
    r = ask(d)
    assert r.status_code == 503
    assert r.json()["context"]["required_tier"] == 3
    assert "X-Nexus-Flexible" in r.json()["error"]["message"]
    assert small.chat_requests == [] and alt.chat_requests == []
    # both headers: strict wins
    r = ask(d, {"X-Nexus-Strict": "true", "X-Nexus-Flexible": "true"})
    assert r.status_code == 503 and alt.chat_requests == []


def test_flexible_lets_a_fallback_of_the_tier_stand_in_never_a_lower_tier(fleet) -> None:
    _big, small, _alt, d = fleet()
    d.call(lambda: setattr(d.core.registry.get("big"), "enabled", False))
    r = ask(d, {"X-Nexus-Flexible": "true"})
    assert r.status_code == 200 and r.headers["x-nexus-backend"] == "alt"
    assert r.headers["x-nexus-fallback-model"] == "m-alt"
    d.call(lambda: setattr(d.core.registry.get("alt"), "enabled", False))
    r = ask(d, {"X-Nexus-Flexible": "yes"})
    assert r.status_code == 503 and r.json()["context"]["required_tier"] == 3
    assert small.chat_requests == []
    bad = ask(d, {"X-Nexus-Flexible": "maybe"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "X-Nexus-Flexible"


def test_a_per_model_tier_overrides_the_backends(fleet) -> None:
    big, _small, _, d = fleet(small_override=5)
    r = ask(d)
    assert r.status_code == 200 and r.headers["x-nexus-backend"] == "small"
    assert big.chat_requests == []


def test_tier_values_are_validated() -> None:
    from nexusd.config.loader import ConfigError, parse_config

    with pytest.raises(ConfigError, match=r"policies\[0\].min_tier: 9"):
        parse_config({"routing": {"policies": [{"model_pattern": "m", "min_tier": 9}]}})
    backend = {"name": "b", "url": "http://x", "type": "ollama", "models": {"m": {"tier": 0}}}
    with pytest.raises(ConfigError, match=r'models."m".tier: 0'):
        parse_config({"backends": [backend]})
