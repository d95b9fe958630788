"""Metrics, stats, history and logs match exactly what was sent."""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from nexusd.config.schema import LogFormat, LoggingConfig
from nexusd.logs import setup_logging
from tests.fakes import FakeHost
from tests.harness import DaemonThread, ollama_backend

DOCUMENTED = {
    "nexus_requests_total",
    "nexus_request_duration_seconds",
    "nexus_errors_total",
    "nexus_fallbacks_total",
    "nexus_tokens_total",
    "nexus_backend_latency_seconds",
    "nexus_backends_total",
    "nexus_backends_healthy",
    "nexus_models_available",
    "nexus_time_to_first_token_seconds",
    "nexus_overhead_seconds",
    "nexus_pending_requests",
}


def samples(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = httpx.get(url + "/metrics").text
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(metrics: dict, name: str, **labels: str) -> float:
    return metrics.get((name, frozenset(labels.items())), 0.0)


def post(d: DaemonThread, model: str, **extra) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hello there"}], **extra}
    return httpx.post(d.url + "/v1/chat/completions", json=body, timeout=30)


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    setup_logging(LoggingConfig(format=LogFormat.JSON), stream)
    yield stream
    logging.getLogger("nexus").handlers.clear()


def test_mixed_traffic_counted_exactly(fake_host: FakeHost, fakes, nexus) -> None:
    good = fakes("ollama", ["llama3:8b", "mistral:7b"], reply="one two three")
    dead = fakes("ollama", ["llama3:8b"])
    dropper = fakes("openai", ["drop-model"], reply="a b c d e f")
    dropper.faults.drop_after_chunks = 2
    d = nexus(
        {
            "backends": [
                ollama_backend("dead", dead.url, priority=1),
                ollama_backend("good", good.url, priority=90),
                {"name": "dropper", "url": dropper.url, "type": "generic"},
            ],
            "routing": {"fallbacks": {"gone:1b": ["mistral:7b"]}},
            "health_check": {"interval_seconds": 3600, "failure_threshold": 10},
        }
    )
    d.wait_healthy("dead", "good", "dropper")
    fake_host.stop(dead)

    assert post(d, "llama3:8b").status_code == 200  # failover: dead → good
    assert post(d, "llama3:8b").status_code == 200  # failover again
    assert post(d, "nope").status_code == 404
    r = post(d, "llama3:8b", stream=True, stream_options={"include_usage": True})
    assert r.status_code == 200 and "[DONE]" in r.text  # failover, streamed
    r = post(d, "drop-model", stream=True)
    assert r.status_code == 200 and '"error"' in r.text  # mid-stream drop
    assert post(d, "gone:1b").status_code == 200  # fallback (gone:1b is on no backend)
    d.wait_idle()

    m = samples(d.url)
    assert value(m, "nexus_requests_total", model="llama3_8b", backend="good", status="200") == 3
    assert value(m, "nexus_requests_total", model="nope", backend="none", status="404") == 1
    assert (
        value(m, "nexus_requests_total", model="drop_model", backend="dropper", status="200") == 1
    )
    assert value(m, "nexus_requests_total", model="mistral_7b", backend="good", status="200") == 1
    total = sum(v for (n, _), v in m.items() if n == "nexus_requests_total")
    assert total == 6
    assert value(m, "nexus_errors_total", error_type="backend_error", model="llama3_8b") == 3
    assert value(m, "nexus_errors_total", error_type="model_not_found", model="nope") == 1
    assert value(m, "nexus_errors_total", error_type="stream_interrupted", model="drop_model") == 1
    assert value(m, "nexus_fallbacks_total", from_model="gone_1b", to_model="mistral_7b") == 1
    assert value(m, "nexus_request_duration_seconds_count", model="llama3_8b", backend="good") == 3
    assert (
        value(m, "nexus_time_to_first_token_seconds_count", model="llama3_8b", backend="good") == 3
    )
    # usage: two non-stream answers + the include_usage stream
    assert (
        value(m, "nexus_tokens_total_count", model="llama3_8b", backend="good", type="completion")
        == 3
    )
    assert value(m, "nexus_overhead_seconds_count") == 5  # every request that reached a backend
    assert value(m, "nexus_backends_total") == 3
    assert value(m, "nexus_pending_requests", backend="good") == 0
    names = {n.removesuffix("_bucket").removesuffix("_count").removesuffix("_sum") for n, _ in m}
    assert names >= DOCUMENTED

    stats = httpx.get(d.url + "/v1/stats").json()
    assert stats["requests"] == {"total": 6, "success": 4, "errors": 2}
    by_backend = {b["id"]: b for b in stats["backends"]}
    assert by_backend["good"]["requests"] == 4 and by_backend["good"]["errors"] == 0
    assert by_backend["dropper"]["requests"] == 1 and by_backend["dropper"]["errors"] == 1
    assert by_backend["dead"]["requests"] == 0
    assert by_backend["good"]["p95_latency_ms"] > 0 and by_backend["good"]["pending"] == 0
    models = {m["name"]: m for m in stats["models"]}
    assert models["llama3:8b"]["requests"] == 3
    assert models["llama3:8b"]["tokens"]["completion"] == 3 * 3  # "one two three" ×3
    assert stats["models"][0]["name"] == "llama3:8b"  # sorted by requests

    history = httpx.get(d.url + "/v1/history").json()
    assert [h["status_code"] for h in history] == [200, 200, 404, 200, 200, 200]
    assert history[0]["failed_backends"] == ["dead"] and history[0]["retries"] == 1
    assert history[4]["outcome"] == "error" and history[4]["error_type"] == "stream_interrupted"
    assert history[5]["fallback_model"] == "mistral:7b"


def test_bad_input_counted(nexus) -> None:
    d = nexus({"server": {"max_body_bytes": 100}})
    httpx.post(d.url + "/v1/chat/completions", content=b"{nope")
    httpx.post(d.url + "/v1/chat/completions", content=b"x" * 500)
    m = samples(d.url)
    assert value(m, "nexus_requests_total", model="none", backend="none", status="400") == 1
    assert value(m, "nexus_requests_total", model="none", backend="none", status="413") == 1
    assert httpx.get(d.url + "/v1/stats").json()["requests"]["errors"] == 2


def test_label_cardinality_is_capped(nexus, monkeypatch) -> None:
    import nexusd.metrics

    monkeypatch.setattr(nexusd.metrics, "MAX_MODEL_LABELS", 3)
    d = nexus()
    for i in range(6):
        post(d, f"made-up-{i}")
    m = samples(d.url)
    models = {dict(labels)["model"] for (n, labels) in m if n == "nexus_requests_total"}
    assert models == {"made_up_0", "made_up_1", "made_up_2", "other"}


def test_history_survives_restart_and_burst_does_not_block(
    fakes, nexus, tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("NEXUS_STATE_DIR", str(tmp_path))
    fake = fakes("ollama", ["llama3:8b"])
    d = nexus({"backends": [ollama_backend("box", fake.url)]}, state_dir=tmp_path)
    d.wait_healthy("box")
    ids = [post(d, "llama3:8b").headers["x-nexus-request-id"] for _ in range(3)]

    # 10,000 records in one burst, written by the history thread while requests flow
    from nexusd.records import RequestRecord

    template = d.call(lambda: d.core.history.ring[-1])

    def burst() -> None:
        for i in range(10_000):
            d.core.history.add(
                RequestRecord(
                    **{**template.to_json(), "request_id": f"burst-{i}", "failed_backends": ()}
                )
            )

    body = {"model": "llama3:8b", "messages": [{"role": "user", "content": "hi"}]}

    def timed(client: httpx.Client, n: int) -> list[float]:
        out = []
        for _ in range(n):
            started = time.perf_counter()
            assert client.post(d.url + "/v1/chat/completions", json=body).status_code == 200
            out.append((time.perf_counter() - started) * 1000)
        return sorted(out)

    with httpx.Client() as client:
        before = timed(client, 50)
        d.call(burst, timeout=60)
        during = timed(client, 50)
    print(
        f"request latency p50/p99: {before[25]:.2f}/{before[-1]:.2f} ms before, "
        f"{during[25]:.2f}/{during[-1]:.2f} ms during the 10k-record burst"
    )
    d.stop()
    history = d.core.history
    assert history.write_errors == 0
    assert history.written == 3 + 10_000 + 100

    again = nexus({"backends": [ollama_backend("box", fake.url)]}, state_dir=tmp_path)
    recent = httpx.get(again.url + "/v1/history").json()
    assert len(recent) == 100
    assert recent[-1]["request_id"] != ids[0]  # newest last
    persisted = again.run(again.core.history.query(since=0, limit=20_000))
    assert len(persisted) == 3 + 10_000 + 100
    assert set(ids) <= {r.request_id for r in persisted}


def test_json_logs_typed_and_secret_free(fakes, nexus, captured_logs) -> None:
    fake = fakes("ollama", ["llama3:8b"])
    d = nexus({"backends": [ollama_backend("box", fake.url)]})
    d.wait_healthy("box")
    headers = {"Authorization": "Bearer sk-secret-123456789"}
    httpx.post(
        d.url + "/v1/chat/completions",
        headers=headers,
        json={"model": "llama3:8b", "messages": [{"role": "user", "content": "my secret prompt"}]},
    )
    httpx.post(
        d.url + "/v1/chat/completions", headers=headers, json={"model": "nope", "messages": []}
    )
    d.wait_idle()
    d.stop()
    lines = captured_logs.getvalue().splitlines()
    records = [json.loads(line) for line in lines]  # every line is JSON
    assert "sk-secret" not in captured_logs.getvalue()
    assert "my secret prompt" not in captured_logs.getvalue()
    done = [r for r in records if r["target"] == "nexus.requests"]
    assert len(done) == 2
    ok, failed = done
    assert ok["level"] == "INFO" and failed["level"] == "WARNING"
    for key, kind in (
        ("latency_ms", float),
        ("status_code", int),
        ("retry_count", int),
        ("stream", bool),
        ("tokens_total", int),
        ("request_id", str),
    ):
        assert isinstance(ok[key], kind), key
    assert ok["timestamp"].endswith("Z") and "T" in ok["timestamp"]
    assert ok["backend"] == "box" and ok["status"] == "success"
    assert failed["backend"] == "none" and failed["status_code"] == 404
    assert "prompt_preview" not in ok


def test_prompt_preview_only_with_content_logging(fakes, nexus) -> None:
    stream = io.StringIO()
    setup_logging(LoggingConfig(format=LogFormat.JSON, enable_content_logging=True), stream)
    try:
        fake = fakes("ollama", ["llama3:8b"])
        d = nexus(
            {
                "backends": [ollama_backend("box", fake.url)],
                "logging": {"enable_content_logging": True},
            }
        )
        d.wait_healthy("box")
        post(d, "llama3:8b", messages=[{"role": "user", "content": "x" * 300}])
        d.wait_idle()
        d.stop()
    finally:
        logging.getLogger("nexus").handlers.clear()
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    done = next(r for r in records if r["target"] == "nexus.requests")
    assert done["prompt_preview"] == "x" * 100 + "..."
    assert any("content logging is enabled" in r["message"] for r in records)


def test_journald_lines_have_priority_prefix(monkeypatch, tmp_path) -> None:
    import os

    path = tmp_path / "journal"
    with path.open("w") as fh:
        st = os.fstat(fh.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        setup_logging(LoggingConfig(), fh)
        try:
            logging.getLogger("nexus.health").warning("backend x down")
            logging.getLogger("nexus.health").info("fine")
        finally:
            logging.getLogger("nexus").handlers.clear()
    assert path.read_text().splitlines() == [
        "<4>nexus.health: backend x down",
        "<6>nexus.health: fine",
    ]
