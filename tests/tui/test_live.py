"""The TUI against a REAL daemon (tests/harness.py) with fake backends, over the real
control socket: what the user sees follows what the daemon does, and what the user does
reaches the daemon, its routing and its config file."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
from textual.widgets import Input

from nexus_tui.app import NexusApp
from nexus_tui.screens.aliases import AliasesScreen
from nexus_tui.screens.backends import BackendsScreen
from nexus_tui.screens.dialogs import AddBackendForm, AliasForm, ConfirmScreen
from nexus_tui.screens.requests import RequestsScreen
from nexus_tui.screens.route import RouteScreen
from nexus_tui.source import DaemonSource
from nexus_tui.widgets.chrome import Banner, StatusLine
from nexus_tui.widgets.live_table import LiveTable
from tests.harness import ollama_backend
from tests.tui.conftest import SocketDaemon, settle, text_of, until, write_config

SIZE = (120, 32)
HEALTH_INTERVAL = 0.5


def nexus_app(d: Any, **kwargs: Any) -> NexusApp:
    return NexusApp(DaemonSource(d.control_path, poll_interval=0.5), **kwargs)


def table(app: NexusApp, selector: str) -> LiveTable:
    return app.screen.query_one(selector, LiveTable)


def shown(app: NexusApp, selector: str, key: str, column: str) -> str:
    """The text a cell shows on screen right now ('' when the row is not there)."""
    t = table(app, selector)
    if key not in t.visible_keys:
        return ""
    return str(t.get_cell(key, column).plain)


def saved(d: Any) -> str:
    """The daemon's config file as it is on disk now."""
    return Path(d.config_path).read_text()


async def chat(d: Any, model: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as client:
        return await client.post(
            d.url + "/v1/chat/completions",
            json={"model": model, "messages": [{"role": "user", "content": "hi"}]},
        )


async def select_row(pilot: Any, t: LiveTable, key: str) -> None:
    t.focus()
    t.move_cursor(row=t.get_row_index(key))
    await pilot.pause()
    assert t.selected_key == key


async def test_backend_goes_unhealthy_within_one_health_interval(fakes, fake_host, daemon):
    fb = fakes("ollama", ["llama3:8b"])
    d = daemon(
        {
            "health_check": {"interval_seconds": HEALTH_INTERVAL, "failure_threshold": 1},
            "backends": [ollama_backend("local", fb.url)],
        }
    )
    d.wait_healthy("local")
    app = nexus_app(d)
    async with app.run_test(size=SIZE) as pilot:
        assert isinstance(app.screen, BackendsScreen)
        await until(
            pilot, lambda: shown(app, "#backends", "local", "status") == "healthy", "healthy"
        )
        await asyncio.to_thread(fake_host.stop, fb)
        waited = await until(
            pilot,
            lambda: shown(app, "#backends", "local", "status") == "unhealthy",
            "the backend to show as unhealthy",
        )
        # the next probe comes within one interval; allow as much again for the probe and
        # the event's trip to the screen on a loaded machine (measured: 0.1-0.25 s)
        assert waited < 2 * HEALTH_INTERVAL, waited


async def test_requests_view_shows_a_request_made_during_the_test(fakes, daemon):
    fb = fakes("ollama", ["llama3:8b"])
    d = daemon({"backends": [ollama_backend("local", fb.url)]})
    d.wait_healthy("local")
    app = nexus_app(d)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        assert isinstance(app.screen, RequestsScreen)
        await until(pilot, lambda: app.connection.state == "connected", "connected")
        response = await chat(d, "llama3:8b")
        assert response.status_code == 200
        rid = response.headers["x-nexus-request-id"]
        await until(pilot, lambda: rid in table(app, "#requests").visible_keys, "the request row")
        assert shown(app, "#requests", rid, "backend") == "local"
        assert shown(app, "#requests", rid, "status") == "200"
        assert shown(app, "#requests", rid, "model") == "llama3:8b"
        # newest on top
        assert table(app, "#requests").visible_keys[0] == rid
        # enter explains it (GET /v1/requests/{id})
        await select_row(pilot, table(app, "#requests"), rid)
        await pilot.press("enter")
        await settle(pilot)
        text = text_of(app.screen.query_one("#explain"))
        assert "ROUTE" in text or "OK" in text
        assert "local" in text and "Attempts" in text


async def test_alias_created_in_the_tui_is_routable_and_saved(fakes, daemon):
    fb = fakes("ollama", ["llama3:8b"])
    d = daemon({"backends": [ollama_backend("local", fb.url)]})
    d.wait_healthy("local")
    assert (await chat(d, "quick")).status_code == 404
    app = nexus_app(d)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.connection.state == "connected", "connected")
        await pilot.press("4")
        assert isinstance(app.screen, AliasesScreen)
        await pilot.press("n")
        assert isinstance(app.screen, AliasForm)
        await pilot.press(*"quick", "enter", *"llama3:8b", "enter")
        await until(pilot, lambda: isinstance(app.screen, AliasesScreen), "the form to close")
        # it came back as an aliases.changed event
        await until(
            pilot,
            lambda: shown(app, "#aliases", "quick", "target") == "llama3:8b",
            "the new alias row",
        )
        assert "nexusctl aliases set quick llama3:8b" in text_of(app.screen.query_one(StatusLine))
    response = await chat(d, "quick")
    assert response.status_code == 200, response.text
    assert fb.chat_requests[-1].json["model"] == "llama3:8b"
    assert 'quick = "llama3:8b"' in saved(d)


async def test_alias_cycle_is_refused_with_the_daemons_message(fakes, daemon):
    fb = fakes("ollama", ["llama3:8b"])
    d = daemon(
        {
            "backends": [ollama_backend("local", fb.url)],
            "routing": {"aliases": {"fast": "llama3:8b"}},
        }
    )
    d.wait_healthy("local")
    before = saved(d)
    app = nexus_app(d)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.connection.state == "connected", "connected")
        await pilot.press("4", "n", *"llama3:8b", "enter", *"fast", "enter")
        form = app.screen
        assert isinstance(form, AliasForm)
        error = form.query_one("#form-error")
        await until(pilot, lambda: "circular" in text_of(error), "the daemon's refusal")
        message = text_of(error)
        assert "'fast' → 'llama3:8b' → 'fast'" in message
        assert isinstance(app.screen, AliasForm)  # still open, to fix the input
        await pilot.press("escape")
        assert isinstance(app.screen, AliasesScreen)
        assert "llama3:8b" not in table(app, "#aliases").visible_keys
    assert saved(d) == before


async def test_drain_stops_new_requests_to_that_backend(fakes, daemon):
    first = fakes("ollama", ["llama3:8b"])
    second = fakes("ollama", ["llama3:8b"])
    d = daemon(
        {"backends": [ollama_backend("first", first.url), ollama_backend("second", second.url)]}
    )
    d.wait_healthy("first", "second")
    app = nexus_app(d)
    async with app.run_test(size=SIZE) as pilot:
        t = table(app, "#backends")
        await until(pilot, lambda: {"first", "second"} <= set(t.visible_keys), "both backends")
        await select_row(pilot, t, "first")
        await pilot.press("d")
        await until(
            pilot, lambda: shown(app, "#backends", "first", "status") == "draining", "draining"
        )
        assert "nexusctl backends drain first" in text_of(app.screen.query_one(StatusLine))
        served = [(await chat(d, "llama3:8b")).headers["x-nexus-backend"] for _ in range(6)]
        assert served == ["second"] * 6
        # and `d` again undrains
        await select_row(pilot, t, "first")
        await pilot.press("d")
        await until(
            pilot, lambda: shown(app, "#backends", "first", "status") == "healthy", "undrained"
        )
        assert "--undo" in text_of(app.screen.query_one(StatusLine))


async def test_route_view_explains_an_exclusion(fakes, daemon):
    fb = fakes("ollama", ["llama3:8b", "llava:7b,vision"])
    d = daemon({"backends": [ollama_backend("local", fb.url)]})
    d.wait_healthy("local")
    app = nexus_app(d)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.connection.state == "connected", "connected")
        await pilot.press("5")
        assert isinstance(app.screen, RouteScreen)
        await pilot.press(*"llama3:8b")
        app.screen.query_one("#route-vision").value = True
        await pilot.press("ctrl+r")
        await settle(pilot)
        text = text_of(app.screen.query_one("#route-explain"))
        assert "REJECT" in text
        assert "capabilities" in text and "lacks vision" in text and "local" in text
        assert "nexusctl route llama3:8b --vision" in text_of(app.screen.query_one(StatusLine))


async def test_add_a_backend_by_url_then_remove_it_after_confirming(fakes, daemon):
    fb = fakes("ollama", ["llama3:8b"])
    other = fakes("vllm", ["llama3:8b"])
    d = daemon({"backends": [ollama_backend("local", fb.url)]})
    d.wait_healthy("local")
    app = nexus_app(d)
    async with app.run_test(size=SIZE) as pilot:
        t = table(app, "#backends")
        await until(pilot, lambda: "local" in t.visible_keys, "the backend")
        await pilot.press("a")
        assert isinstance(app.screen, AddBackendForm)
        app.screen.query_one("#url", Input).value = other.url
        await pilot.press("enter")
        await until(pilot, lambda: len(t.visible_keys) == 2, "the new backend", 10)
        added = next(k for k in t.visible_keys if k != "local")
        assert shown(app, "#backends", added, "type") == "vllm"  # detected by the daemon
        assert other.url in saved(d)
        await select_row(pilot, t, added)
        await pilot.press("x")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")  # the default answer is no
        assert added in t.visible_keys
        await pilot.press("x", "y")
        await until(pilot, lambda: added not in t.visible_keys, "the row to go")
        assert f"nexusctl backends rm {added}" in text_of(app.screen.query_one(StatusLine))
    assert other.url not in saved(d)


async def test_daemon_killed_then_restarted_on_the_same_socket(fakes, tmp_path, socket_path):
    fb = fakes("ollama", ["llama3:8b"])
    config = write_config(tmp_path / "nexus.toml", {"backends": [ollama_backend("local", fb.url)]})

    def start() -> SocketDaemon:
        return SocketDaemon(config, tmp_path / "nexus.toml", socket_path).start()

    first = start()
    second = None
    try:
        first.wait_healthy("local")
        app = nexus_app(first)
        async with app.run_test(size=SIZE) as pilot:
            banner = app.screen.query_one(Banner)
            await until(pilot, lambda: "local" in table(app, "#backends").visible_keys, "data")
            await asyncio.to_thread(first.stop)
            # the stream's end is the first failed read: no waiting for the next poll
            waited = await until(pilot, lambda: banner.display, "the disconnected banner")
            assert waited < 1.0, waited
            assert "disconnected" in text_of(banner)
            assert "retrying in" in text_of(banner)
            assert app.is_running  # no crash
            # the rows are the last known state, and say so
            backends = table(app, "#backends")
            assert "STALE" in str(backends.border_title)
            assert backends.get_cell("local", "status").style == "dim"
            second = await asyncio.to_thread(start)
            await until(pilot, lambda: app.connection.state == "connected", "reconnect", 10)
            await until(pilot, lambda: not banner.display, "the banner to go away")
            assert "STALE" not in str(backends.border_title)
            # and it is live again: a new request shows up
            await pilot.press("3")
            rid = (await chat(second, "llama3:8b")).headers["x-nexus-request-id"]
            await until(pilot, lambda: rid in table(app, "#requests").visible_keys, "new request")
    finally:
        first.stop()
        if second is not None:
            second.stop()


async def test_rate_sparkline_follows_requests_through_the_trends_poll(fakes, daemon, monkeypatch):
    from nexus_tui import source
    from nexus_tui.widgets import cells

    monkeypatch.setattr(source, "TRENDS_EVERY", 0.5)  # GET /v1/trends at every other poll
    fb = fakes("ollama", ["llama3:8b"])
    d = daemon({"backends": [ollama_backend("local", fb.url)]})
    d.wait_healthy("local")
    app = nexus_app(d)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.connection.state == "connected", "connected")
        assert not set(shown(app, "#backends", "local", "spark")) - {" ", cells.BLOCKS[0]}
        for _ in range(3):
            assert (await chat(d, "llama3:8b")).status_code == 200

        def rate() -> int:
            trend = app.state.backend_trend("local") or {}
            return sum(trend.get("rate") or [])

        await until(pilot, lambda: rate() == 3, "three requests in the polled trends")
        await until(
            pilot,
            lambda: cells.BLOCKS[-1] in shown(app, "#backends", "local", "spark"),
            "the busy minute in the rate sparkline",
        )
