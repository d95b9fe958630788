"""Headless Chromium for the tests that need a real browser (Debian's chromium and
chromium-driver, which .ci/run installs as root): skipped with the reason when missing, a
failure under CI."""

from __future__ import annotations

import os
import shutil
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
