"""Metrics, stats, history and logs match exactly what was sent."""

from __future__ import annotations

import io
import json
import logging
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import fields, replace

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from nexusd import history
from nexusd.config.schema import LogFormat, LoggingConfig
from nexusd.logs import log_completion, setup_logging
from nexusd.records import RequestRecord
from tests.fakes import FakeHost
from tests.harness import DaemonThread, ollama_backend
from tests.records import make_record

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


def requests_total(
    metrics: dict, model: str, backend: str, status: int, endpoint: str = "chat"
) -> float:
    labels = {"model": model, "backend": backend, "status": str(status), "endpoint": endpoint}
    return value(metrics, "nexus_requests_total", **labels)


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
    assert requests_total(m, "llama3_8b", "good", 200) == 3
    assert requests_total(m, "nope", "none", 404) == 1
    assert requests_total(m, "drop_model", "dropper", 200) == 1
    assert requests_total(m, "mistral_7b", "good", 200) == 1
    total = sum(v for (n, _), v in m.items() if n == "nexus_requests_total")
    assert total == 6
    # every failed attempt is attributed to the backend that failed (issue #12: numbers agree)
    errors = "nexus_errors_total"
    assert value(m, errors, error_type="backend_error", model="llama3_8b", backend="dead") == 3
    assert value(m, errors, error_type="model_not_found", model="nope", backend="none") == 1
    assert (
        value(m, errors, error_type="stream_interrupted", model="drop_model", backend="dropper")
        == 1
    )
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
    # the failing backend is visible: 3 attempts, 3 errors — the same on every surface
    assert (by_backend["dead"]["requests"], by_backend["dead"]["errors"]) == (3, 3)
    control = httpx.Client(transport=httpx.HTTPTransport(uds=str(d.control_path)))
    listed = {b["id"]: b for b in control.get("http://nexus/v1/backends").json()["backends"]}
    control_stats = control.get("http://nexus/v1/stats").json()
    for bid in ("dead", "good", "dropper"):
        same = (by_backend[bid]["requests"], by_backend[bid]["errors"])
        assert (listed[bid]["total_requests"], listed[bid]["errors"]) == same
        cstat = next(b for b in control_stats["backends"] if b["id"] == bid)
        assert (cstat["requests"], cstat["errors"]) == same
    page = httpx.get(d.url + "/").text
    for bid in ("dead", "dropper"):
        card = page[page.index(f'data-backend="{bid}"') :]
        shown = card[card.index('data-field="requests">') + 22 :].split("<", 1)[0]
        assert int(shown) == by_backend[bid]["requests"]
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
    assert requests_total(m, "none", "none", 400) == 1
    assert requests_total(m, "none", "none", 413) == 1
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


# --- the request kind (RequestRecord.endpoint) on every surface ------------------------------

#: the v1 history schema, as Nexus before `endpoint` created it
V1_SCHEMA = """
CREATE TABLE requests (
    request_id TEXT PRIMARY KEY, time REAL NOT NULL, requested_model TEXT NOT NULL,
    served_model TEXT, backend TEXT, backend_name TEXT, backend_type TEXT, status TEXT NOT NULL,
    status_code INTEGER NOT NULL, latency_ms REAL NOT NULL, ttft_ms REAL, overhead_ms REAL,
    prompt_tokens INTEGER, completion_tokens INTEGER, stream INTEGER NOT NULL,
    route_reason TEXT, retries INTEGER NOT NULL, fallback_model TEXT, outcome TEXT NOT NULL,
    error_type TEXT, error TEXT, failed_backends TEXT NOT NULL
);
CREATE INDEX requests_time ON requests(time);
CREATE INDEX requests_model_time ON requests(served_model, time);
PRAGMA user_version = 1;
"""


def feed(d: DaemonThread, *records: RequestRecord) -> None:
    """Hand records to the daemon exactly as the request path does, on its loop."""
    for rec in records:
        d.call(lambda rec=rec: d.core.record(rec))


def test_history_row_matches_columns() -> None:
    rec = make_record("r1", "embeddings", stream=True, failed_backends=("a", "b"))
    assert list(history.COLUMNS) == [f.name for f in fields(RequestRecord)]
    row = dict(zip(history.COLUMNS, history._row(rec), strict=True))
    assert row == {
        **rec.to_json(),
        "stream": 1,
        "translated": 0,
        "failed_backends": '["a", "b"]',
        "endpoint": "embeddings",
    }


def test_v1_history_is_migrated_and_keeps_each_kind(nexus, tmp_path) -> None:
    path = tmp_path / "history.sqlite3"
    conn = sqlite3.connect(path)
    conn.executescript(V1_SCHEMA)
    now = time.time()  # recent: older rows would be pruned (retention_days)
    old = [make_record(f"old-{i}", time=now - 60 + i) for i in range(2)]
    with conn:
        conn.executemany(
            f"INSERT INTO requests VALUES ({', '.join('?' * 22)})",
            [history._row(r)[:22] for r in old],  # the v1 columns: everything but endpoint
        )
    conn.close()

    d = nexus(state_dir=tmp_path)
    shown = httpx.get(d.url + "/v1/history").json()
    assert [(h["request_id"], h["endpoint"]) for h in shown] == [
        ("old-0", "chat"),
        ("old-1", "chat"),
    ]
    new = [
        make_record("new-embed", "embeddings", time=now),
        make_record("new-compl", "completions", time=now + 1, stream=True),
        make_record("new-chat", "chat", time=now + 2),
    ]
    feed(d, *new)
    kinds = [("old-0", "chat"), ("old-1", "chat")] + [(r.request_id, r.endpoint) for r in new]
    assert [(r.request_id, r.endpoint) for r in d.call(lambda: list(d.core.history.ring))] == kinds
    shown = httpx.get(d.url + "/v1/history").json()
    assert [(h["request_id"], h["endpoint"]) for h in shown] == kinds
    d.stop()

    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == history.SCHEMA_VERSION == 4
    columns = [c[1] for c in conn.execute("PRAGMA table_info(requests)")]
    assert columns == list(history.COLUMNS)
    rows = conn.execute("SELECT request_id, endpoint FROM requests ORDER BY time").fetchall()
    conn.close()
    assert rows == kinds

    again = nexus(state_dir=tmp_path)  # already current: opened as is, read back whole
    persisted = again.run(again.core.history.query(since=0))
    assert persisted == old + new
    shown = httpx.get(again.url + "/v1/history").json()
    assert [(h["request_id"], h["endpoint"]) for h in shown] == kinds


def test_history_from_a_newer_nexus_is_left_alone(nexus, tmp_path) -> None:
    path = tmp_path / "history.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {history.SCHEMA_VERSION + 1}")
    conn.close()
    d = nexus(state_dir=tmp_path)
    assert d.call(lambda: d.core.history.path) is None  # disabled, not migrated backwards
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == history.SCHEMA_VERSION + 1
    conn.close()


def test_each_kind_counted_exactly(nexus) -> None:
    d = nexus()
    feed(
        d,
        make_record("c1", "chat"),
        make_record("c2", "chat", stream=True),
        make_record(
            "c3",
            "chat",
            requested_model="nope",
            served_model=None,
            backend=None,
            backend_name=None,
            status="error",
            status_code=404,
            outcome="error",
            error_type="model_not_found",
            error="no such model",
            prompt_tokens=None,
            completion_tokens=None,
        ),
        make_record("p1", "completions"),  # same model, backend and status as c1, c2
        make_record("e1", "embeddings", latency_ms=20.0),
        make_record("e2", "embeddings", latency_ms=40.0),
        make_record("e3", "embeddings", latency_ms=60.0, prompt_tokens=30),
    )
    m = samples(d.url)
    assert requests_total(m, "llama3_8b", "box", 200, "chat") == 2
    assert requests_total(m, "nope", "none", 404, "chat") == 1
    assert requests_total(m, "llama3_8b", "box", 200, "completions") == 1
    assert requests_total(m, "nomic_embed_text", "box", 200, "embeddings") == 3
    series = [dict(labels) for (n, labels) in m if n == "nexus_requests_total"]
    assert len(series) == 4 and {s["endpoint"] for s in series} == {
        "chat",
        "completions",
        "embeddings",
    }
    assert sum(v for (n, _), v in m.items() if n == "nexus_requests_total") == 7
    # only nexus_requests_total has the label
    others = {n for (n, labels) in m if "endpoint" in dict(labels)}
    assert others == {"nexus_requests_total"}
    # embeddings: prompt tokens observed, no completion tokens
    tokens = {"model": "nomic_embed_text", "backend": "box"}
    assert value(m, "nexus_tokens_total_count", **tokens, type="prompt") == 3
    assert value(m, "nexus_tokens_total_sum", **tokens, type="prompt") == 12 + 12 + 30
    assert value(m, "nexus_tokens_total_count", **tokens, type="completion") == 0

    stats = httpx.get(d.url + "/v1/stats").json()
    assert stats["requests"] == {"total": 7, "success": 6, "errors": 1}
    assert stats["endpoints"] == {"chat": 3, "completions": 1, "embeddings": 3}
    assert stats["dialects"] == {"openai": 7, "anthropic": 0, "responses": 0}
    models = {m["name"]: m for m in stats["models"]}
    assert models["nomic-embed-text"] == {
        "name": "nomic-embed-text",
        "requests": 3,
        "errors": 0,
        "average_duration_ms": 40.0,
        "tokens": {"prompt": 54, "completion": 0},
        "cost_usd": 0.0,
    }
    assert models["llama3:8b"]["requests"] == 3
    assert models["llama3:8b"]["tokens"] == {"prompt": 24 + 24 + 8, "completion": 180 + 180 + 40}

    shown = httpx.get(d.url + "/v1/history").json()
    assert [h["endpoint"] for h in shown] == ["chat"] * 3 + ["completions"] + ["embeddings"] * 3


def test_metrics_children_are_cached_per_kind() -> None:
    from nexusd.events import EventBus
    from nexusd.metrics import Metrics
    from nexusd.registry import Registry

    metrics = Metrics(Registry(EventBus()))
    for kind in ("chat", "embeddings", "chat", "completions", "embeddings", "chat"):
        metrics.observe(make_record("x", kind, requested_model="m", served_model="m"))
    unknown = replace(make_record("y", requested_model="m", served_model="m"), endpoint="x")
    metrics.observe(unknown)
    children = metrics._bound[("m", "box")].requests
    assert set(children) == {(200, "chat"), (200, "completions"), (200, "embeddings"), (200, "x")}
    counts = {
        s.labels["endpoint"]: s.value
        for family in metrics.registry.collect()
        if family.name == "nexus_requests"
        for s in family.samples
    }
    # a kind outside the three never becomes its own series
    assert counts == {"chat": 3, "completions": 1, "embeddings": 2, "other": 1}


@pytest.mark.parametrize("fmt", [LogFormat.JSON, LogFormat.PRETTY])
def test_completion_log_line_names_the_kind(fmt: LogFormat) -> None:
    stream = io.StringIO()
    setup_logging(LoggingConfig(format=fmt), stream)
    try:
        log_completion(make_record("e1", "embeddings"))
        log_completion(make_record("p1", "completions", stream=True))
        log_completion(make_record("c1", "chat"))
    finally:
        logging.getLogger("nexus").handlers.clear()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3
    if fmt is LogFormat.JSON:
        records = [json.loads(line) for line in lines]
        assert [r["endpoint"] for r in records] == ["embeddings", "completions", "chat"]
        assert records[0]["tokens_prompt"] == 12 and records[0]["tokens_completion"] is None
        assert records[0]["tokens_total"] == 12
        messages = [r["message"] for r in records]
    else:
        messages = [line.split("nexus.requests: ", 1)[1] for line in lines]
    assert messages == [
        "embeddings nomic-embed-text → nomic-embed-text@box 200 120.0ms",
        "completions stream llama3:8b → llama3:8b@box 200 120.0ms",
        "chat llama3:8b → llama3:8b@box 200 120.0ms",
    ]


def test_route_reason_is_one_vocabulary_on_every_surface(fakes, nexus, captured_logs) -> None:
    dead = fakes("ollama", ["llama3:8b"])
    good = fakes("ollama", ["llama3:8b"])
    d = nexus(
        {
            "backends": [
                ollama_backend("dead", dead.url, priority=1),
                ollama_backend("good", good.url, priority=90),
            ],
            "health_check": {"interval_seconds": 3600, "failure_threshold": 10},
        }
    )
    d.wait_healthy("dead", "good")
    plain = post(d, "llama3:8b")
    dead.faults.fail_status = 500
    failover = post(d, "llama3:8b")
    d.wait_idle()
    control = httpx.Client(transport=httpx.HTTPTransport(uds=str(d.control_path)))
    recent = control.get("http://nexus/v1/requests").json()["requests"]
    history = {r["request_id"]: r for r in httpx.get(d.url + "/v1/history").json()}
    logged = {
        line["request_id"]: line
        for line in map(json.loads, captured_logs.getvalue().splitlines())
        if "request_id" in line
    }
    page = httpx.get(d.url + "/").text
    for r, expected in ((plain, "capability-match"), (failover, "failover")):
        rid = r.headers["x-nexus-request-id"]
        assert r.headers["x-nexus-route-reason"] == expected
        assert history[rid]["route_reason"] == expected
        assert next(x for x in recent if x["request_id"] == rid)["route_reason"] == expected
        assert logged[rid]["route_reason"] == expected
        row = page[page.index(f'data-request="{rid}"') :].split("</tr>")[0]
        assert f"<td>{expected}" in row
