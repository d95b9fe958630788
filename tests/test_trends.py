"""Trends (nexusd/trends.py) with synthetic records and a fake clock."""

from __future__ import annotations

from nexusd import trends as trends_mod
from nexusd.trends import MINUTES, RESERVOIR, Trends
from tests.records import make_record

T0 = 1_800_000_000.0  # a minute boundary


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def rec(i: int, when: float, backend: str | None = "box", ok: bool = True, ms: float = 100.0):
    return make_record(
        f"r{i}",
        time=when,
        backend=backend,
        status="success" if ok else "error",
        latency_ms=ms,
    )


def test_series_shape_empty() -> None:
    t = Trends(clock=Clock(T0 + 30))
    s = t.series()
    assert set(s) == {"minutes", "rate", "p50_ms", "p95_ms", "error_rate"}
    assert all(len(v) == MINUTES for v in s.values())
    assert s["minutes"][-1] == T0 and s["minutes"][0] == T0 - 59 * 60
    assert s["rate"] == [0] * MINUTES and s["p95_ms"] == [None] * MINUTES
    assert t.series("nope")["rate"] == [0] * MINUTES


def test_rate_percentiles_and_errors_per_minute() -> None:
    clock = Clock(T0 + 10)
    t = Trends(clock=clock)
    for i in range(1, 101):  # 100 requests, latencies 1..100 ms, 10 errors
        t.observe(rec(i, T0 + 5, ok=i % 10 != 0, ms=float(i)))
    t.observe(rec(0, T0 + 6, backend="gpu", ms=500.0))
    s = t.series()
    assert s["rate"][-1] == 101 and s["rate"][-2] == 0
    box = t.series("box")
    assert box["rate"][-1] == 100
    assert box["p50_ms"][-1] == 50.0 and box["p95_ms"][-1] == 95.0
    assert box["error_rate"][-1] == 0.1
    gpu = t.series("gpu")
    assert gpu["rate"][-1] == 1 and gpu["p95_ms"][-1] == 500.0 and gpu["error_rate"][-1] == 0
    snap = t.snapshot()
    assert set(snap["backends"]) == {"box", "gpu"} and snap["overall"]["rate"][-1] == 101


def test_window_slides_and_old_buckets_drop() -> None:
    clock = Clock(T0)
    t = Trends(clock=clock)
    t.observe(rec(1, T0))
    clock.now = T0 + 60 * 10
    t.observe(rec(2, clock.now))
    s = t.series()
    assert s["rate"][-1] == 1 and s["rate"][-11] == 1 and sum(s["rate"]) == 2
    clock.now = T0 + 60 * 60  # the first minute is now out of the window
    assert sum(t.series()["rate"]) == 1
    # its ring slot is reused for the new minute, not added to
    t.observe(rec(3, clock.now))
    assert t.series()["rate"][-1] == 1 and sum(t.series()["rate"]) == 2
    clock.now = T0 + 60 * 200
    assert sum(t.series()["rate"]) == 0 and sum(t.series("box")["rate"]) == 0


def test_load_from_history_skips_old_and_clamps_future() -> None:
    clock = Clock(T0 + 30)
    t = Trends(clock=clock)
    records = [
        rec(1, T0 - 3 * 3600),  # too old
        rec(2, T0 - 30 * 60, ms=200.0),
        rec(3, T0 - 30 * 60, ok=False, ms=400.0),
        rec(4, T0 + 3600),  # from the future (clock step): counted now
        rec(5, T0, backend=None),  # no backend: overall only
    ]
    t.load(records)
    s = t.series()
    assert sum(s["rate"]) == 4 and s["rate"][-1] == 2 and s["rate"][-31] == 2
    assert s["error_rate"][-31] == 0.5 and s["p95_ms"][-31] == 400.0
    assert t.backends() == ["box"]


def test_bounded_reservoir_and_backends(monkeypatch) -> None:
    clock = Clock(T0)
    t = Trends(clock=clock)
    for i in range(RESERVOIR * 4):
        t.observe(rec(i, T0, ms=float(i)))
    bucket = t._backends["box"][int(T0 // 60) % MINUTES]
    assert bucket.count == RESERVOIR * 4 and len(bucket.latencies) == RESERVOIR
    monkeypatch.setattr(trends_mod, "MAX_KEYS", 3)
    for name in ("a", "b", "c", "d"):
        t.observe(rec(0, T0, backend=name))
    assert len(t.backends()) == 3 and "box" not in t.backends()
    assert t.series()["rate"][-1] == RESERVOIR * 4 + 4


# --- over real sockets: the dashboard, /ws and GET /v1/trends ----------------------------------


def _chat(d, n: int) -> None:
    import httpx

    for _ in range(n):
        r = httpx.post(
            d.url + "/v1/chat/completions",
            json={"model": "llama3:8b", "messages": [{"role": "user", "content": "x"}]},
            timeout=30,
        )
        assert r.status_code == 200


def _card(html: str, backend: str) -> str:
    return html.split(f'data-backend="{backend}"')[1].split('<div class="backend"')[0]


def test_dashboard_and_control_trends(fakes, nexus, tmp_path) -> None:
    import json

    import httpx
    import jsonschema

    from nexusd.api.dashboard import LiveFeed
    from nexusd.control.client import ControlClient
    from nexusd.control.schema import SCHEMAS
    from tests.harness import ollama_backend

    fake = fakes("ollama", ["llama3:8b"])
    state = tmp_path / "state"
    d = nexus({"backends": [ollama_backend("box", fake.url)]}, state_dir=state)
    d.wait_healthy("box")
    _chat(d, 3)
    html = httpx.get(d.url + "/").text
    overall = html.split('id="overall-trends"')[1].split("</section>")[0]
    for part in (overall, _card(html, "box")):
        for metric in ("rate", "p95_ms", "error_rate"):
            assert f'data-trend="{metric}"' in part
        assert part.count("<polyline points=") == 3
    assert "0.0%" in overall  # the hour's error rate
    initial = html.split('<script id="initial-data" type="application/json">')[1]
    data = json.loads(initial.split("</script>")[0])
    # the current minute (or, across a minute boundary, the last two)
    assert sum(data["trends"]["overall"]["rate"][-2:]) == 3
    assert sum(data["trends"]["backends"]["box"]["rate"][-2:]) == 3

    with ControlClient(d.control_path) as client:
        trends = client.trends()
    jsonschema.validate(trends, SCHEMAS["trends"])
    assert sum(trends["overall"]["rate"][-2:]) == 3
    assert sum(trends["backends"]["box"]["rate"][-2:]) == 3
    assert any(v is not None for v in trends["backends"]["box"]["p95_ms"][-2:])

    # the live feed sends the series as a Trends update
    message = json.loads(d.call(lambda: LiveFeed(d.core).render([], trends=True)))
    (update,) = message["data"]
    assert update["update_type"] == "Trends"
    assert sum(update["data"]["backends"]["box"]["rate"][-2:]) == 3
    d.stop()

    # a fresh daemon on the same state directory draws the last hour from history
    fresh = nexus({"backends": [ollama_backend("box", fake.url)]}, state_dir=state)
    page = httpx.get(fresh.url + "/").text
    first = page.split('<script id="initial-data" type="application/json">')[1]
    assert sum(json.loads(first.split("</script>")[0])["trends"]["overall"]["rate"]) == 3
    assert _card(page, "box").count("<polyline points=") == 3
    with ControlClient(fresh.control_path) as client:
        assert sum(client.trends()["backends"]["box"]["rate"]) == 3


def test_svg_points_identical_in_python_and_javascript() -> None:
    import json
    import random
    import shutil
    import subprocess
    from pathlib import Path

    import pytest

    from nexusd.api.dashboard import spark_points

    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    rng = random.Random(1)
    cases = [
        [
            rng.choice([None, 0, rng.random() * 1000, rng.randint(0, 50), rng.random()])
            for _ in range(60)
        ]
        for _ in range(100)
    ]
    cases += [[0] * 60, [None] * 60, [1e9] + [0] * 59, [float("nan"), -5, True, "x"] * 15]
    src = (Path(__file__).parents[1] / "nexusd/api/static/app.js").read_text()
    body = src[src.index("  const SPARK_W") : src.index("  function trendValue")]
    cases_js = json.dumps(cases)
    script = f"{body}\nconsole.log(JSON.stringify({cases_js}.map((c) => sparkPoints(c, 1))));"
    out = json.loads(
        subprocess.run([node, "-e", script], capture_output=True, text=True, check=True).stdout
    )
    assert out == [spark_points(c, 1.0) for c in cases]
