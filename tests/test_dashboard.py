"""The web dashboard in a real headless browser, and /ws under slow and stuck viewers."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import socket
from pathlib import Path

import aiohttp
import httpx
import pytest

from tests.fakes import FakeHost
from tests.harness import DaemonThread, ollama_backend

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
    assert missing.status_code == 404 and missing.text == "Asset not found"
    assert "cdn" not in html.lower() and "https://" not in html


def _chrome():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not (chromium and driver):
        if os.environ.get("CI"):
            pytest.fail("chromium / chromium-driver missing: .ci/run installs them")
        pytest.skip("chromium and chromium-driver are not installed")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,1000",
        "--disable-dev-shm-usage",
    ):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(executable_path=driver), options=options)


def test_dashboard_live_in_headless_chromium(fake_host: FakeHost, fakes, nexus) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

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
    browser = _chrome()
    try:
        browser.get(d.url + "/")
        wait = WebDriverWait(browser, 10)
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
            lambda b: b.find_elements(By.CSS_SELECTOR, f'tr[data-request="{request_id}"]')
        )
        assert "gpu" in row[0].text and "200" in row[0].text
        assert browser.find_element(By.CSS_SELECTOR, '[data-summary="requests"] .value').text == "1"

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

    async def scenario() -> tuple[list[int], float]:
        stuck = _stuck_viewer(d.url)
        async with aiohttp.ClientSession() as session:
            viewers = [await session.ws_connect(d.url + "/ws") for _ in range(49)]

            async def count(ws: aiohttp.ClientWebSocketResponse) -> int:
                seen = 0
                async for msg in ws:
                    if json.loads(msg.data)["update_type"] == "RequestComplete":
                        seen += 1
                        if seen == n_requests:
                            return seen
                return seen

            readers = [asyncio.ensure_future(count(ws)) for ws in viewers]
            # unknown, very long model names: cheap requests, big events (~60 KB each), so
            # the stuck viewer's socket buffers fill up within the test
            body = {"model": "m" * 30000, "messages": [{"role": "user", "content": "x"}]}
            loop = asyncio.get_running_loop()
            started = loop.time()
            for _ in range(n_requests):
                async with session.post(d.url + "/v1/chat/completions", json=body) as resp:
                    assert resp.status == 404
                    await resp.read()
            took = loop.time() - started
            counts = await asyncio.wait_for(asyncio.gather(*readers), 30)
            lost = d.call(lambda: [(sub._lost, len(sub._queue)) for sub in d.core.bus._subscribers])
            for ws in viewers:
                await ws.close()
        stuck.close()
        return counts, took, lost

    counts, took, lost = asyncio.run(scenario())
    print(f"{n_requests} requests with 49 live + 1 stuck viewer: {took:.2f} s")
    assert counts == [n_requests] * 49
    # the stuck viewer really was stuck: its queue overflowed and dropped old updates
    assert max(n for n, _ in lost) > 0, lost
    assert took < 30  # sanity only: a blocked daemon would hang here
