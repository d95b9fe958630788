"""``DaemonSource`` against a small fake control socket whose event stream stays open after
the "daemon" is gone (its listener closed, its socket file removed — as when some other
process still holds the stream). Then nothing ends the stream: only a failed read can tell,
and the first one must put up the banner (issue 12, item 13)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from pathlib import Path
from typing import Any

from textual.widgets import Input

from nexus_tui.app import NexusApp
from nexus_tui.screens.route import RouteScreen
from nexus_tui.source import DaemonSource
from nexus_tui.widgets.chrome import Banner
from nexus_tui.widgets.live_table import LiveTable
from tests.tui.conftest import text_of, until
from tests.tui.fake_source import fixed_data

SIZE = (120, 32)


class HeldStreamControl:
    """Answers the snapshot reads over HTTP/1.1 on a Unix socket; `GET /v1/events` opens a
    stream that never ends. ``stop()`` closes the listener and every other connection, and
    removes the socket file: reads fail, the stream stays open."""

    def __init__(self, path: Path) -> None:
        self.path = path
        snapshot = fixed_data()["snapshot"]
        self.answers: dict[str, Any] = {
            "/v1/status": snapshot["status"],
            "/v1/backends": {"backends": snapshot["backends"]},
            "/v1/aliases": {"aliases": snapshot["aliases"]},
            "/v1/fallbacks": {"fallbacks": snapshot["fallbacks"]},
            "/v1/requests": {"requests": []},
            "/v1/config": {"values": {}},
        }
        self.server: asyncio.AbstractServer | None = None
        self.writers: list[asyncio.StreamWriter] = []
        self.streams: list[asyncio.StreamWriter] = []
        self.held = asyncio.Event()

    async def start(self) -> None:
        self.server = await asyncio.start_unix_server(self._serve, str(self.path))

    def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        self.path.unlink()
        for writer in self.writers:
            if writer not in self.streams:
                writer.close()

    async def aclose(self) -> None:
        self.held.set()
        if self.server is not None:
            self.server.close()
        for writer in self.writers:
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError, ValueError):
            while True:
                request = await reader.readline()
                if not request:
                    return
                _method, target, _ = request.decode().split(" ", 2)
                length = 0
                while (header := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = header.decode().partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                if length:
                    await reader.readexactly(length)
                path = target.split("?", 1)[0]
                if path == "/v1/events":
                    self.streams.append(writer)
                    hello = b": connected\n\n"
                    writer.write(
                        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                        b"transfer-encoding: chunked\r\n\r\n"
                        + b"%x\r\n%s\r\n"
                        % (len(hello), hello)
                    )
                    await writer.drain()
                    await self.held.wait()  # never ends by itself
                    return
                body = json.dumps(self.answers.get(path, {})).encode()
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    b"content-length: %d\r\n\r\n%s" % (len(body), body)
                )
                await writer.drain()


async def connected_app(path: Path, poll_interval: float) -> NexusApp:
    return NexusApp(DaemonSource(path, poll_interval=poll_interval))


async def test_a_failed_request_of_the_ui_puts_up_the_banner_at_once(socket_path: Path):
    control = HeldStreamControl(socket_path)
    await control.start()
    try:
        # a poll that would only come after a minute: the UI's own failed read must do it
        app = await connected_app(socket_path, poll_interval=60)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.connection.state == "connected", "connected")
            table = app.screen.query_one("#backends", LiveTable)
            await until(pilot, lambda: len(table.visible_keys) == 4, "the backends")
            await pilot.press("5")
            assert isinstance(app.screen, RouteScreen)
            control.stop()
            await pilot.press(*"fast", "enter")  # POST /v1/route: the first failed read
            waited = await until(
                pilot, lambda: app.connection.state == "disconnected", "the banner", 3
            )
            assert waited < 1.0, waited
            banner = app.screen.query_one(Banner)
            assert banner.display and "disconnected" in text_of(banner)
            assert app.screen.query_one("#route-model", Input).value == "fast"
            # and the rows of the other views are shown as stale
            await pilot.press("escape", "1")
            assert "STALE" in str(table.border_title)
            assert table.get_cell("gpu-box", "status").style == "dim"
    finally:
        await control.aclose()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(socket_path)


async def test_a_failed_poll_puts_up_the_banner_although_the_stream_is_open(
    socket_path: Path,
):
    control = HeldStreamControl(socket_path)
    await control.start()
    try:
        app = await connected_app(socket_path, poll_interval=0.3)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.connection.state == "connected", "connected")
            control.stop()
            waited = await until(
                pilot, lambda: app.connection.state == "disconnected", "the banner", 3
            )
            # the next poll is the first read after the stop: at most one interval (+ slack)
            assert waited < 0.3 + 0.7, waited
            assert app.screen.query_one(Banner).display
    finally:
        await control.aclose()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(socket_path)
