"""The web dashboard in a real headless browser, and /ws under slow and stuck viewers."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest

from tests.browser import chrome, page_wait, run_app_js
from tests.fakes import FakeHost
from tests.harness import DaemonThread, ollama_backend
from tests.records import make_record

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "test-output"


def test_page_assets_and_no_js_fallback(fakes, nexus) -> None:
    fake = fakes("ollama", ["llama3:8b", {"id": "llava:7b", "vision": True}])
    d = nexus({"backends": [ollama_backend("box", fake.url)]})
    d.wait_healthy("box")
    httpx.post(
        d.url + "/v1/chat/completions",
        json={"model": "llama3:8b", "messages": [{"role": "user", "content": "x"}]},
    )
    page = httpx.get(d.url + "/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    # server-rendered: readable without JavaScript
    assert 'data-backend="box"' in html and "llava:7b" in html and "vision" in html
    assert 'http-equiv="refresh"' in html and "<noscript>" in html
    initial = html.split('<script id="initial-data" type="application/json">')[1].split(
        "</script>"
    )[0]
    data = json.loads(initial)
    assert data["backends"][0]["id"] == "box" and len(data["history"]) == 1
    css = httpx.get(d.url + "/assets/style.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert httpx.get(d.url + "/assets/app.js").headers["content-type"].startswith("text/javascript")
    missing = httpx.get(d.url + "/assets/nope.js")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert "cdn" not in html.lower() and "https://" not in html
    # the reference's asset names (its end-to-end script checks them) serve the same files
    assert (
        httpx.get(d.url + "/assets/dashboard.js").content
        == httpx.get(d.url + "/assets/app.js").content
    )
    assert httpx.get(d.url + "/assets/styles.css").content == css.content


def test_dashboard_live_in_headless_chromium(
    fake_host: FakeHost, fakes, nexus, monkeypatch: pytest.MonkeyPatch
) -> None:
    from selenium.webdriver.common.by import By

    from nexusd.api import dashboard

    monkeypatch.setattr(dashboard, "TRENDS_EVERY", 0.5)  # the trend charts follow quickly

    fake = fakes("ollama", ["llama3:8b", {"id": "llava:7b", "vision": True}])
    other = fakes("vllm", [{"id": "qwen2.5:7b", "context_length": 32768}])
    d = nexus(
        {
            "backends": [
                ollama_backend("box", fake.url),
                {"name": "gpu", "url": other.url, "type": "vllm"},
            ],
            "health_check": {"failure_threshold": 1},
        }
    )
    d.wait_healthy("box", "gpu")
    browser = chrome()
    try:
        browser.get(d.url + "/")
        wait = page_wait(browser, 10)
        wait.until(lambda b: b.find_element(By.ID, "connection").text == "Live")
        cards = browser.find_elements(By.CSS_SELECTOR, ".backend")
        assert {c.get_attribute("data-backend") for c in cards} == {"box", "gpu"}
        models = browser.find_element(By.ID, "models").text
        assert "llava:7b" in models and "qwen2.5:7b" in models and "32,768" in models

        r = httpx.post(
            d.url + "/v1/chat/completions",
            json={"model": "qwen2.5:7b", "messages": [{"role": "user", "content": "x"}]},
        )
        request_id = r.headers["x-nexus-request-id"]
        row = wait.until(
            lambda b: b.find_element(By.CSS_SELECTOR, f'tr[data-request="{request_id}"]').text
        )
        assert "gpu" in row and "200" in row
        summary = '[data-summary="requests"] .value'
        wait.until(lambda b: b.find_element(By.CSS_SELECTOR, summary).text == "1")
        # the trend charts are redrawn from the live Trends update: overall and the backend
        # (a flat line is y=23 everywhere; the request lifts one point, whichever minute it is)
        rate = '{} [data-trend="rate"] polyline'

        def lifted(b: Any, where: str) -> bool:
            points = b.find_element(By.CSS_SELECTOR, rate.format(where)).get_attribute("points")
            return any(p.split(",")[1] != "23" for p in points.split())

        for where in ("#overall-trends", '.backend[data-backend="gpu"]'):
            wait.until(lambda b, w=where: lifted(b, w))
            charts = browser.find_elements(By.CSS_SELECTOR, f"{where} .trend svg polyline")
            assert len(charts) == 3

        fake_host.stop(fake)
        badge = '.backend[data-backend="box"] .badge'
        wait.until(lambda b: b.find_element(By.CSS_SELECTOR, badge).text == "unhealthy")
        OUTPUT.mkdir(exist_ok=True)
        assert browser.save_screenshot(str(OUTPUT / "dashboard.png"))
    finally:
        browser.quit()
    assert (OUTPUT / "dashboard.png").stat().st_size > 10_000


def _stuck_viewer(url: str) -> socket.socket:
    """A WebSocket client that completes the handshake and then never reads a byte."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: tiny window
    sock.connect((host, int(port)))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET /ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    return sock


def test_fifty_viewers_one_stuck_do_not_slow_the_daemon(fakes, nexus) -> None:
    fake = fakes("ollama", ["llama3:8b"], reply="x " * 200)
    d: DaemonThread = nexus({"backends": [ollama_backend("box", fake.url)]})
    d.wait_healthy("box")
    n_requests = 400

    async def scenario() -> tuple[list[tuple[int, str | None]], float, int]:
        stuck = _stuck_viewer(d.url)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            viewers = [await session.ws_connect(d.url + "/ws") for _ in range(49)]

            async def follow(ws: aiohttp.ClientWebSocketResponse) -> tuple[int, str | None]:
                """The request count and the newest row a viewer ends up with."""
                total, last = 0, None
                async for msg in ws:
                    message = json.loads(msg.data)
                    if message["update_type"] != "Batch":
                        continue
                    for update in message["data"]:
                        if update["update_type"] == "RequestComplete":
                            last = update["data"]["requested_model"]
                        elif update["update_type"] == "Totals":
                            total = update["data"]["total"]
                    if total == n_requests:
                        return total, last
                return total, last

            readers = [asyncio.ensure_future(follow(ws)) for ws in viewers]
            # unknown model names at the length limit: cheap requests, long rows
            loop = asyncio.get_running_loop()
            started = loop.time()
            for i in range(n_requests):
                body = {
                    "model": f"{i:04}" + "m" * 250,
                    "messages": [{"role": "user", "content": "x"}],
                }
                async with session.post(d.url + "/v1/chat/completions", json=body) as resp:
                    assert resp.status == 404
                    await resp.read()
            took = loop.time() - started
            results = await asyncio.wait_for(asyncio.gather(*readers), 30)
            # one bus subscription feeds every viewer, the stuck one included
            subscriptions = d.call(lambda: len(d.core.bus._subscribers))
            for ws in viewers:
                await ws.close()
        stuck.close()
        return results, took, subscriptions

    results, took, subscriptions = asyncio.run(scenario())
    print(f"{n_requests} requests with 49 live + 1 stuck viewer: {took:.2f} s")
    assert results == [(n_requests, f"{n_requests - 1:04}" + "m" * 250)] * 49
    assert subscriptions == 1
    assert took < 30  # sanity only: a blocked daemon would hang here


def _initial_data(html: str) -> dict:
    text = html.split('<script id="initial-data" type="application/json">')[1]
    return json.loads(text.split("</script>")[0])


def _row(html: str, request_id: str) -> str:
    return html.split(f'<tr data-request="{request_id}"')[1].split("</tr>")[0]


def test_requests_show_their_kind_on_the_page_and_over_ws(nexus) -> None:
    d = nexus()
    for rec in (
        make_record("r-chat", "chat"),
        make_record("r-compl", "completions", stream=True),
        make_record("r-embed", "embeddings"),
    ):
        d.call(lambda rec=rec: d.core.record(rec))

    html = httpx.get(d.url + "/").text
    assert '<span class="kind' not in _row(html, "r-chat")  # chat, the common case: no badge
    assert '<span class="kind kind-completions" title="/v1/completions">compl</span>' in _row(
        html, "r-compl"
    )
    assert '<span class="kind kind-embeddings" title="/v1/embeddings">embed</span>' in _row(
        html, "r-embed"
    )
    # newest first
    assert html.index('data-request="r-embed"') < html.index('data-request="r-chat"')
    history = _initial_data(html)["history"]
    assert [(h["request_id"], h["endpoint"]) for h in history] == [
        ("r-chat", "chat"),
        ("r-compl", "completions"),
        ("r-embed", "embeddings"),
    ]

    async def live() -> tuple[dict, dict]:
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(d.url + "/ws") as ws,
        ):
            snapshot = json.loads((await ws.receive()).data)
            rec = make_record("r-live", "embeddings")
            d.call(lambda: d.core.record(rec))
            while True:
                message = json.loads((await asyncio.wait_for(ws.receive(), 10)).data)
                for update in message["data"] if message["update_type"] == "Batch" else []:
                    if update["update_type"] == "RequestComplete":
                        return snapshot, update

    snapshot, message = asyncio.run(live())
    assert snapshot["update_type"] == "Snapshot"
    assert [h["endpoint"] for h in snapshot["data"]["history"]] == [
        "chat",
        "completions",
        "embeddings",
    ]
    assert snapshot["data"]["stats"]["endpoints"] == {"chat": 1, "completions": 1, "embeddings": 1}
    assert message["data"]["request_id"] == "r-live"
    assert message["data"]["endpoint"] == "embeddings"


def test_app_js_renders_kinds_and_older_records_without_the_field(tmp_path) -> None:
    older = make_record("r-old", "chat").to_json()
    del older["endpoint"]  # a record from before the field existed
    initial = {
        "stats": {"uptime_seconds": 1, "requests": {"total": 1, "success": 1, "errors": 0}},
        "backends": [],
        "history": [older],
    }
    events = [
        {"update_type": "RequestComplete", "data": make_record("r-embed", "embeddings").to_json()},
        {"update_type": "RequestComplete", "data": make_record("r-chat", "chat").to_json()},
        {"update_type": "RequestComplete", "data": {**older, "request_id": "r-old2"}},
    ]
    stdout = run_app_js(tmp_path, initial, events)
    rows = {part.split('"', 1)[0]: part for part in stdout.split('<tr data-request="')[1:]}
    assert list(rows) == ["r-old2", "r-chat", "r-embed", "r-old"]  # newest first
    assert "undefined" not in stdout and "null" not in stdout
    assert (
        '<span class="kind kind-embeddings" title="/v1/embeddings">embed</span>' in rows["r-embed"]
    )
    for chat in ("r-old", "r-old2", "r-chat"):
        assert 'class="kind' not in rows[chat]


def test_failover_rows_say_so_and_uptime_reads_like_time(fakes, nexus) -> None:
    import re

    dead = fakes("ollama", ["llama3:8b"])
    good = fakes("ollama", ["llama3:8b"])
    d = nexus(
        {
            "backends": [
                {"name": "dead", "url": dead.url, "type": "ollama", "priority": 1},
                {"name": "good", "url": good.url, "type": "ollama", "priority": 90},
            ],
            "health_check": {"interval_seconds": 3600, "failure_threshold": 10},
        }
    )
    d.wait_healthy("dead", "good")
    dead.faults.fail_status = 500
    r = httpx.post(
        d.url + "/v1/chat/completions",
        json={"model": "llama3:8b", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert r.headers["x-nexus-backend"] == "good"
    d.wait_idle()
    page = httpx.get(d.url + "/").text
    row = page[page.index(f'data-request="{r.headers["x-nexus-request-id"]}"') :].split("</tr>")[0]
    assert "failover ×1" in row and "failed first: dead" in row
    uptime = page[page.index('data-summary="uptime"') :].split("</div></div>")[0]
    assert re.search(r">\d+(s|m \d\ds|h \d\dm|d \d+h)$", uptime), uptime


def test_duration_format() -> None:
    from nexusd.api.dashboard import _duration

    cases = {0: "0s", 42: "42s", 249: "4m 09s", 7500: "2h 05m", 273_600: "3d 4h"}
    assert {s: _duration(s) for s in cases} == cases
