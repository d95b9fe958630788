"""Privacy zones are structural (issue #15, item 1): a request's allowed zone holds at every
hop — first choice, retries, failover, each fallback model — whatever the local backends do.
"""

from __future__ import annotations

import itertools
from typing import Any

import httpx
import pytest

from tests.fakes import FakeBackend
from tests.harness import DaemonThread, ollama_backend

CLOUD_KEY = "sk-cloud-test"


def body(model: str = "secret-model", stream: bool = False) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": stream}


@pytest.fixture
def hybrid(fakes, nexus, monkeypatch: pytest.MonkeyPatch):
    """A local fake and a public cloud fake serving the same model; the cloud one also serves
    ``cloud-only``, the fallback of ``secret-model``."""
    monkeypatch.setenv("NEXUS_TEST_CLOUD_KEY", CLOUD_KEY)

    def start(
        policies: list[dict[str, Any]] | None = None, **config: Any
    ) -> tuple[FakeBackend, FakeBackend, DaemonThread]:
        local = fakes("ollama", ["secret-model", "open-model"])
        cloud = fakes("openai", ["secret-model", "open-model", "cloud-only"], api_key=CLOUD_KEY)
        d = nexus(
            {
                "backends": [
                    ollama_backend("box", local.url, priority=10),
                    {
                        "name": "cloud",
                        "url": cloud.url,
                        "type": "openai",
                        "api_key_env": "NEXUS_TEST_CLOUD_KEY",
                        "priority": 90,
                    },
                ],
                "routing": {
                    "fallbacks": {"secret-model": ["cloud-only"]},
                    "policies": policies or [],
                },
                "health_check": {"failure_threshold": 1000},  # keep the local one routable
                **config,
            }
        )
        d.wait_healthy("box", "cloud")
        return local, cloud, d

    return start


def test_a_local_policy_never_reaches_the_cloud_through_failures_retries_and_fallbacks(
    hybrid,
) -> None:
    local, cloud, d = hybrid([{"model_pattern": "secret-*", "privacy": "local"}])
    faults = itertools.cycle(
        [
            {},
            {"fail_status": 500, "fail_times": 1},
            {"fail_status": 503, "fail_times": 3},  # every retry fails too
            {"drop_after_chunks": 0},
            {"latency_s": 0.0},
        ]
    )
    statuses: dict[int, int] = {}
    with httpx.Client(base_url=d.url, timeout=30) as client:
        for i in range(200):
            local.faults.update(
                {"fail_status": None, "fail_times": None, "drop_after_chunks": None, **next(faults)}
            )
            r = client.post("/v1/chat/completions", json=body(stream=i % 2 == 1))
            statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
            if r.status_code == 200:
                assert r.headers["x-nexus-privacy-zone"] == "local"
            else:
                assert r.status_code == 503, r.text
                context = r.json()["context"]
                assert context["privacy_zone_required"] == "local"
                assert "secret-*" in context["privacy_reason"]
                assert {x["backend"] for x in context["rejections"] if x["stage"] == "privacy"} == {
                    "cloud"
                }
    assert statuses.get(200, 0) >= 100 and statuses.get(503, 0) >= 10, statuses
    assert cloud.chat_requests == []  # not one request, not even the cloud-only fallback

    # no local backend at all: 503 naming the zone, never the cloud
    local.faults.update({"fail_status": None, "fail_times": None, "drop_after_chunks": None})
    d.call(lambda: setattr(d.core.registry.get("box"), "enabled", False))
    r = httpx.post(d.url + "/v1/chat/completions", json=body(), timeout=30)
    assert r.status_code == 503
    assert r.json()["context"]["privacy_zone_required"] == "local"
    assert r.headers["retry-after"] == "5"
    assert cloud.chat_requests == []
    metrics = httpx.get(d.url + "/metrics").text
    assert 'nexus_privacy_blocks_total{zone="local"}' in metrics
    # other models are unaffected: public by default
    r = httpx.post(d.url + "/v1/chat/completions", json=body("open-model"), timeout=30)
    assert r.status_code == 200 and r.headers["x-nexus-backend"] == "cloud"
    assert r.headers["x-nexus-privacy-zone"] == "public"


def test_the_header_tightens_and_never_loosens(hybrid) -> None:
    _, cloud, d = hybrid([{"model_pattern": "secret-model", "privacy": "LOCAL"}])
    d.call(lambda: setattr(d.core.registry.get("box"), "enabled", False))
    # X-Nexus-Privacy: public cannot loosen the local policy
    r = httpx.post(
        d.url + "/v1/chat/completions", json=body(), headers={"X-Nexus-Privacy": "public"}
    )
    assert r.status_code == 503 and r.json()["context"]["privacy_zone_required"] == "local"
    # on a model without a policy, the header tightens: local only
    r = httpx.post(
        d.url + "/v1/chat/completions",
        json=body("open-model"),
        headers={"X-Nexus-Privacy": "local"},
    )
    assert r.status_code == 503 and r.json()["context"]["privacy_zone_required"] == "local"
    assert "X-Nexus-Privacy: local" in r.json()["context"]["privacy_reason"]
    assert cloud.chat_requests == []
    d.call(lambda: setattr(d.core.registry.get("box"), "enabled", True))
    r = httpx.post(
        d.url + "/v1/chat/completions",
        json=body("open-model"),
        headers={"X-Nexus-Privacy": "Restricted"},
    )
    assert r.status_code == 200 and r.headers["x-nexus-backend"] == "box"
    # "open" is public: no tightening
    r = httpx.post(
        d.url + "/v1/chat/completions", json=body("open-model"), headers={"X-Nexus-Privacy": "open"}
    )
    assert r.status_code == 200
    bad = httpx.post(
        d.url + "/v1/chat/completions", json=body("open-model"), headers={"X-Nexus-Privacy": "mars"}
    )
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "X-Nexus-Privacy"


def test_a_policy_on_the_alias_or_a_fallback_name_binds_the_whole_chain(hybrid) -> None:
    _, cloud, d = hybrid(
        [{"model_pattern": "cloud-only", "privacy": "restricted"}],
        routing={
            "aliases": {"my-assistant": "secret-model"},
            "fallbacks": {"secret-model": ["cloud-only"]},
            "policies": [{"model_pattern": "cloud-only", "privacy": "restricted"}],
        },
    )
    d.call(lambda: setattr(d.core.registry.get("box"), "enabled", False))
    r = httpx.post(d.url + "/v1/chat/completions", json=body("my-assistant"))
    # the fallback's policy binds the requested model too: the cloud is public
    assert r.status_code == 503 and r.json()["context"]["privacy_zone_required"] == "restricted"
    assert 'policy "cloud-only" on cloud-only' in r.json()["context"]["privacy_reason"]
    assert cloud.chat_requests == []


def test_a_policy_needs_a_zone() -> None:
    from nexusd.config.loader import ConfigError, parse_config

    with pytest.raises(ConfigError, match=r"routing.policies\[0\]: set privacy"):
        parse_config({"routing": {"policies": [{"model_pattern": "x"}]}})
    with pytest.raises(ConfigError, match=r"routing.policies\[0\].model_pattern"):
        parse_config({"routing": {"policies": [{"model_pattern": " ", "privacy": "local"}]}})


def test_the_route_dry_run_applies_the_same_zone(hybrid) -> None:
    import json as _json

    from tests.test_cli_usability import nexusctl

    _, _, d = hybrid([{"model_pattern": "secret-*", "privacy": "local"}])
    d.call(lambda: setattr(d.core.registry.get("box"), "enabled", False))
    plan = nexusctl(d, "route", "secret-model")
    assert plan.returncode == 1  # a refusal, as the real request would get
    shown = _json.loads(plan.stdout)
    assert shown["outcome"] == "reject" and shown["backend"] is None
    stages = {r["stage"] for step in shown["steps"] for r in step["rejections"]}
    assert "privacy" in stages
    plan = nexusctl(d, "route", "open-model", "--privacy", "local")
    assert plan.returncode == 1 and _json.loads(plan.stdout)["outcome"] == "reject"
    assert _json.loads(nexusctl(d, "route", "open-model").stdout)["backend"] == "cloud"
