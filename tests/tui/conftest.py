"""Helpers for the TUI tests: a daemon started from a real config file, a daemon that can
be restarted on the same socket, and a bounded wait on a condition between UI ticks."""

from __future__ import annotations

import io
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import tomlkit
from rich.console import Console

os.environ.setdefault("TEXTUAL_ANIMATIONS", "none")

from tests.harness import TEST_DEFAULTS, DaemonThread, merge


@pytest.fixture(autouse=True)
def utc() -> Iterator[None]:
    """Times render in local time; pin it so snapshots are the same everywhere."""
    saved = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    yield
    if saved is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = saved
    time.tzset()


async def until(
    pilot: Any, predicate: Callable[[], bool], what: str, timeout: float = 10.0
) -> float:
    """Let the app process messages until ``predicate()`` holds; returns the seconds waited."""
    start = time.monotonic()
    while True:
        await pilot.pause()
        if predicate():
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await pilot.pause(0.02)


async def settle(pilot: Any) -> None:
    """Wait for the UI's own workers (explain, route, mutations) — not the source's stream,
    which runs for as long as the app does."""
    app = pilot.app
    pending = [w for w in app.workers if w.group != "source"]
    if pending:  # (an empty list would mean "all workers")
        await app.workers.wait_for_complete(pending)
    await pilot.pause()


def text_of(widget: Any) -> str:
    """What a Static shows, as plain text (Rich renderables rendered at width 200)."""
    console = Console(width=200, file=io.StringIO(), color_system=None, record=True)
    console.print(widget.content)
    return console.export_text()


def write_config(path: Path, config: dict[str, Any]) -> dict[str, Any]:
    """The daemon's edits go to this file, so it must hold the whole config (not only the
    edits): then what the test started with survives the first save."""
    full = merge(TEST_DEFAULTS, config)
    path.write_text(tomlkit.dumps(full))
    return full


@pytest.fixture
def daemon(nexus: Callable[..., DaemonThread], tmp_path: Path) -> Callable[..., DaemonThread]:
    def start(config: dict[str, Any]) -> DaemonThread:
        path = tmp_path / "nexus.toml"
        return nexus(write_config(path, config), config_path=path)

    return start


class SocketDaemon(DaemonThread):
    """A DaemonThread on a socket path we choose, so a second one can take the first's place."""

    def __init__(self, config: dict[str, Any], config_path: Path, socket: Path) -> None:
        super().__init__(config, config_path=config_path, state_dir=config_path.parent / "state")
        shutil.rmtree(self.control_path.parent, ignore_errors=True)  # the harness's own dir
        self.control_path = socket


@pytest.fixture
def socket_path() -> Iterator[Path]:
    # short: Unix socket paths are limited to ~104 bytes
    directory = Path(tempfile.mkdtemp(prefix="nxtui-", dir="/tmp"))
    yield directory / "nexusd.sock"
    shutil.rmtree(directory, ignore_errors=True)
