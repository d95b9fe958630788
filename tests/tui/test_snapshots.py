"""Snapshots of every view at 80×24 and 160×48, from a deterministic fake source (fixed
JSON, no clock, no socket). Regenerate after an intended change with
``python -m pytest tests/tui/test_snapshots.py --snapshot-update`` and look at the SVGs."""

from __future__ import annotations

from typing import Any

import pytest
from textual.widgets import Input

from nexus_tui.app import NexusApp
from nexus_tui.messages import Disconnected
from nexus_tui.widgets.live_table import LiveTable
from tests.tui.conftest import settle
from tests.tui.fake_source import FakeSource

SIZES = {"80x24": (80, 24), "160x48": (160, 48)}
VIEW_KEYS = {"backends": "1", "models": "2", "requests": "3", "aliases": "4", "route": "5"}


def still(app: Any) -> None:
    """No blinking cursors: a snapshot must not depend on when it was taken."""
    for widget in app.screen.query(Input):
        widget.cursor_blink = False


def go(*keys: str, select: tuple[str, str] | None = None, then: tuple[str, ...] = ()) -> Any:
    async def run_before(pilot: Any) -> None:
        await settle(pilot)
        await pilot.press(*keys)
        await settle(pilot)
        if select is not None:
            table = pilot.app.screen.query_one(select[0], LiveTable)
            table.move_cursor(row=table.get_row_index(select[1]))
            await pilot.pause()
        await pilot.press(*then)
        await settle(pilot)
        still(pilot.app)
        await pilot.pause()

    return run_before


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("view", VIEW_KEYS)
def test_view(snap_compare: Any, view: str, size: str) -> None:
    app = NexusApp(FakeSource())
    assert snap_compare(app, terminal_size=SIZES[size], run_before=go(VIEW_KEYS[view]))


def test_backend_details(snap_compare: Any) -> None:
    app = NexusApp(FakeSource())
    run_before = go("1", select=("#backends", "local-ollama"), then=("enter",))
    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_request_explanation(snap_compare: Any) -> None:
    app = NexusApp(FakeSource())
    run_before = go("3", select=("#requests", "req-0005"), then=("enter",))
    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_route_decision(snap_compare: Any) -> None:
    app = NexusApp(FakeSource())

    async def run_before(pilot: Any) -> None:
        await go("5")(pilot)
        pilot.app.screen.query_one("#route-vision").value = True
        await pilot.press(*"fast", "enter")
        await settle(pilot)
        still(pilot.app)

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_help_shows_the_keys_of_the_view(snap_compare: Any) -> None:
    app = NexusApp(FakeSource())
    assert snap_compare(app, terminal_size=(80, 24), run_before=go("1", "question_mark"))


def test_read_only(snap_compare: Any) -> None:
    app = NexusApp(FakeSource(), read_only=True)
    assert snap_compare(app, terminal_size=(80, 24), run_before=go("1"))


def test_disconnected_banner(snap_compare: Any) -> None:
    app = NexusApp(FakeSource())

    async def run_before(pilot: Any) -> None:
        await go("1")(pilot)
        where = FakeSource.where
        pilot.app.post_message(Disconnected(where, f"no Nexus daemon answers on {where}", 4))
        await pilot.pause()

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_no_color(snap_compare: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """NO_COLOR: no colours at all, and every status still reads as a word."""
    monkeypatch.setenv("NO_COLOR", "1")
    app = NexusApp(FakeSource())
    assert app.no_color
    assert snap_compare(app, terminal_size=(80, 24), run_before=go("1"))
