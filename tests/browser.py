"""Headless Chromium for the tests that need a real browser (Debian's chromium and
chromium-driver, which .ci/run installs as root): skipped with the reason when missing, a
failure under CI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest


def chrome(*flags: str) -> Any:
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
        *flags,
    ):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(executable_path=driver), options=options)


def page_wait(browser: Any, timeout: float) -> Any:
    """A WebDriverWait that keeps polling when the page redraws an element between finding
    and reading it (the live dashboard replaces its cards on every update)."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    ignored = (StaleElementReferenceException, NoSuchElementException)
    return WebDriverWait(browser, timeout, ignored_exceptions=ignored)


#: just enough DOM for app.js: the elements it looks up, a WebSocket that never connects
_APP_JS_HARNESS = """
const fs = require("fs");
const els = {};
const el = (id) => (els[id] = els[id] || { id, innerHTML: "", textContent: "", className: "" });
el("#initial-data").textContent = process.argv[2];
global.document = { querySelector: (sel) => el(sel) };
global.location = { protocol: "http:", host: "127.0.0.1:1" };
global.fetch = () => new Promise(() => {});
let socket = null;
global.WebSocket = function () { socket = this; };
global.setTimeout = () => 0;
eval(fs.readFileSync(process.argv[3], "utf8"));
const events = JSON.parse(process.argv[4]);
for (const event of events) socket.onmessage({ data: JSON.stringify(event) });
process.stdout.write(els["#history-body"].innerHTML);
"""


def run_app_js(tmp_path: Path, initial: Any, events: list[Any]) -> str:
    """The dashboard's app.js under node: the initial data, then ``/ws`` messages; returns
    the requests table it drew. Skipped without node (the Chromium tests cover app.js too)."""
    node = shutil.which("node") or shutil.which("nodejs")
    if node is None:
        pytest.skip("node is not installed (the headless-browser tests cover app.js too)")
    script = tmp_path / "harness.js"
    script.write_text(_APP_JS_HARNESS)
    app_js = Path(__file__).resolve().parents[1] / "nexusd" / "api" / "static" / "app.js"
    result = subprocess.run(
        [node, str(script), json.dumps(initial), str(app_js), json.dumps(events)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout
