"""Conventions of the TUI with the fake source: read-only mode, remapped keys, help, filter,
sort, pause, the command bar and palette, esc, and tables that update rows in place."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from textual.command import CommandList
from textual.widgets import DataTable

from nexus_tui import build_parser
from nexus_tui.app import KEY_DISPLAY, NexusApp, ReadOnly
from nexus_tui.keymap import KEYS, MUTATING_IDS, resolve_keymap
from nexus_tui.screens.aliases import AliasesScreen
from nexus_tui.screens.backends import BackendDetailScreen, BackendsScreen
from nexus_tui.screens.dialogs import HelpScreen
from nexus_tui.screens.models import ModelsScreen
from nexus_tui.screens.requests import RequestExplainScreen, RequestsScreen
from nexus_tui.screens.route import RouteScreen
from nexus_tui.state import NexusState
from nexus_tui.widgets.bars import CommandBar
from nexus_tui.widgets.chrome import StatusLine
from nexus_tui.widgets.live_table import LiveTable
from tests.tui.conftest import settle, text_of, until
from tests.tui.fake_source import FakeSource, fixed_data

SIZE = (100, 30)


async def started(pilot: Any) -> None:
    await settle(pilot)
    await pilot.pause()


def table(app: NexusApp, selector: str) -> LiveTable:
    return app.screen.query_one(selector, LiveTable)


def binding_ids(app: NexusApp) -> set[str]:
    return {b.binding.id for b in app.screen.active_bindings.values() if b.binding.id}


# --- read-only -------------------------------------------------------------------------------


async def test_read_only_hides_and_refuses_every_mutating_verb() -> None:
    source = FakeSource()
    app = NexusApp(source, read_only=True)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        assert isinstance(app.screen, BackendsScreen)
        assert not binding_ids(app) & MUTATING_IDS
        await pilot.press("d", "e", "a", "x")
        assert isinstance(app.screen, BackendsScreen)  # no form, no confirmation
        await pilot.press("4")
        assert isinstance(app.screen, AliasesScreen)
        assert not binding_ids(app) & MUTATING_IDS
        await pilot.press("n", "e", "x", "enter")
        assert isinstance(app.screen, AliasesScreen)
        # even when asked directly, the app refuses and says so
        with pytest.raises(ReadOnly):
            await app.mutate(["nexusctl", "aliases", "rm", "fast"], "DELETE", "/v1/aliases/fast")
        await pilot.pause()
        assert "refused: read-only" in text_of(app.screen.query_one(StatusLine))
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        assert not {row[3] for row in app.screen.rows} & MUTATING_IDS
        # looking still works
        await pilot.press("escape", "5")
        assert isinstance(app.screen, RouteScreen)
        await pilot.press(*"fast", "enter")
        await settle(pilot)
    assert source.mutations == []


# --- keys ------------------------------------------------------------------------------------


def test_keymap_ids_are_unique_and_resolve_by_short_names() -> None:
    assert len({k.id for k in KEYS}) == len(KEYS)
    keymap, problems = resolve_keymap(
        {"drain": "D", "view.models": "m", "nexus.help": "h,f1", "nope": "z", "quit": 3}
    )
    assert keymap == {
        "nexus.backend.drain": "D",
        "nexus.view.models": "m",
        "nexus.help": "h,f1",
    }
    assert len(problems) == 2 and "nope" in problems[0] and "quit" in problems[1]


async def test_keymap_from_the_daemon_config_remaps_keys_and_help_shows_them() -> None:
    data = fixed_data()
    data["snapshot"]["keymap"] = {"drain": "D", "nexus.view.models": "m"}
    source = FakeSource(data)
    app = NexusApp(source)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        t = table(app, "#backends")
        t.move_cursor(row=t.get_row_index("gpu-box"))
        await pilot.press("d")  # no longer bound
        await settle(pilot)
        assert source.mutations == []
        await pilot.press("D")
        await settle(pilot)
        assert source.mutations == [("PATCH", "/v1/backends/gpu-box", {"drain": True})]
        await pilot.press("question_mark")
        help_rows = {row[3]: row[0] for row in app.screen.rows}
        assert help_rows["nexus.backend.drain"] == "D"
        assert help_rows["nexus.view.models"] == "m"
        await pilot.press("escape", "m")
        assert isinstance(app.screen, ModelsScreen)
        assert "m Models" in text_of(app.screen.query_one("#topbar"))


async def test_help_lists_the_effective_keys_of_the_current_view() -> None:
    app = NexusApp(FakeSource())
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("3", "f1")
        assert isinstance(app.screen, HelpScreen)
        ids = [row[3] for row in app.screen.rows]
        assert ids[0] == "nexus.requests.pause"  # this view's verbs first
        assert "nexus.table.filter" in ids and "nexus.view.backends" in ids
        assert "nexus.backend.drain" not in ids  # another view's verb
        await pilot.press("escape")
        assert isinstance(app.screen, RequestsScreen)


# --- tables ----------------------------------------------------------------------------------


async def test_filter_shows_in_the_border_and_esc_clears_it() -> None:
    app = NexusApp(FakeSource())
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        t = table(app, "#backends")
        assert len(t.visible_keys) == 4
        await pilot.press("slash", *"gpu")
        assert t.visible_keys == ["gpu-box"]
        await pilot.press("enter")
        assert app.focused is t
        assert "/gpu" in str(t.border_title) and "1/4" in str(t.border_title)
        await pilot.press("slash", "backspace", "backspace", "backspace", *"!lan", "enter")
        assert t.visible_keys == ["exo-cluster", "local-ollama"]
        await pilot.press("escape")  # clears the filter, stays in the view
        assert len(t.visible_keys) == 4 and isinstance(app.screen, BackendsScreen)
        await pilot.press("slash", *"re:^l", "enter")
        assert t.visible_keys == ["laptop", "local-ollama"]


async def test_sort_cycles_columns_and_reverses() -> None:
    app = NexusApp(FakeSource())
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        t = table(app, "#backends")
        assert t.visible_keys == ["exo-cluster", "gpu-box", "laptop", "local-ollama"]
        await pilot.press("S")
        assert t.visible_keys == ["local-ollama", "laptop", "gpu-box", "exo-cluster"]
        await pilot.press("S", "s")  # by type
        assert t.sort_column == "type"
        assert t.visible_keys == ["exo-cluster", "laptop", "local-ollama", "gpu-box"]
        assert "sort:type" in str(t.border_title)


async def test_rows_update_in_place_and_the_cursor_stays_on_its_row(monkeypatch) -> None:
    source = FakeSource()
    app = NexusApp(source)
    cleared: list[Any] = []
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("3")
        t = table(app, "#requests")
        monkeypatch.setattr(DataTable, "clear", lambda self, columns=False: cleared.append(self))
        t.move_cursor(row=t.get_row_index("req-0005"))
        await pilot.pause()
        record = dict(fixed_data()["snapshot"]["requests"][0], request_id="req-new", time=2e9)
        source.emit("request.completed", record)
        await pilot.pause()
        assert t.visible_keys[0] == "req-new"  # newest on top
        assert t.selected_key == "req-0005"  # the cursor stayed on its row
        # a status change rewrites one cell of one row, nothing else
        await pilot.press("1")
        t = table(app, "#backends")
        t.move_cursor(row=t.get_row_index("laptop"))
        await pilot.pause()
        source.emit(
            "backend.status",
            {"id": "laptop", "name": "laptop", "status": "healthy", "old_health": "unhealthy"},
        )
        await pilot.pause()
        assert t.get_cell("laptop", "status").plain == "healthy"
        assert t.selected_key == "laptop"
    assert cleared == []


async def test_space_pauses_the_live_tail_with_a_badge() -> None:
    source = FakeSource()
    app = NexusApp(source)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("3", "space")
        t = table(app, "#requests")
        assert "PAUSED" in str(t.border_title)
        record = dict(fixed_data()["snapshot"]["requests"][0], request_id="req-new", time=2e9)
        source.emit("request.completed", record)
        await pilot.pause()
        assert "req-new" not in t.visible_keys
        await pilot.press("space")
        assert "PAUSED" not in str(t.border_title)
        assert t.visible_keys[0] == "req-new"


async def test_requests_show_their_kind_and_older_records_read_as_chat() -> None:
    source = FakeSource()
    app = NexusApp(source)
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot)
        await pilot.press("3")
        t = table(app, "#requests")
        kinds = {k: t.get_cell(k, "kind").plain for k in ("req-0010", "req-0003", "req-0001")}
        assert kinds == {"req-0010": "chat", "req-0003": "compl", "req-0001": "embed"}
        assert t.get_cell("req-0001", "tokens").plain == "12/–"  # embeddings: prompt only
        # an event from a daemon that predates the field
        old = dict(fixed_data()["snapshot"]["requests"][0], request_id="req-old", time=2e9)
        del old["endpoint"]
        source.emit("request.completed", old)
        await pilot.pause()
        assert t.visible_keys[0] == "req-old"
        assert t.get_cell("req-old", "kind").plain == "chat"
        # 80 columns: every column but the route reason shows, and nothing scrolls sideways
        assert [c.key for c in t._shown] == [
            "time",
            "kind",
            "model",
            "backend",
            "status",
            "latency",
            "ttft",
            "tokens",
        ]
        assert t.virtual_size.width <= t.scrollable_content_region.width
        # the kind is filterable like every other cell
        t.set_filter("embed")
        assert t.visible_keys == ["req-0001"]


async def test_alias_events_update_the_view_at_once() -> None:
    source = FakeSource()
    app = NexusApp(source)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("4")
        source.emit("aliases.changed", {"aliases": {"fast": "llama3:70b"}})
        await pilot.pause()
        t = table(app, "#aliases")
        assert t.visible_keys == ["fast"]
        assert t.get_cell("fast", "target").plain == "llama3:70b"


# --- navigation ------------------------------------------------------------------------------


async def test_command_bar_completes_and_takes_arguments() -> None:
    app = NexusApp(FakeSource())
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("colon", *"mod", "tab", "enter")
        assert isinstance(app.screen, ModelsScreen)
        await pilot.press("colon", *"be /oll", "enter")
        await pilot.pause()
        assert isinstance(app.screen, BackendsScreen)
        assert table(app, "#backends").visible_keys == ["local-ollama"]
        await pilot.press("colon")
        app.screen.query_one(CommandBar).value = "route fast --vision"
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, RouteScreen)
        assert "lacks vision" in text_of(app.screen.query_one("#route-explain"))
        await pilot.press("escape", "colon", *"zz", "enter")
        assert "unknown command" in text_of(app.screen.query_one(StatusLine))


async def test_command_palette_switches_views() -> None:
    app = NexusApp(FakeSource())
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("ctrl+p", *"Requests view")
        commands = app.screen.query_one(CommandList)
        # the palette searches in a worker of its own
        await until(pilot, lambda: commands.option_count > 0, "palette matches")
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, RequestsScreen)


async def test_esc_backs_out_one_level() -> None:
    app = NexusApp(FakeSource())
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("enter")
        assert isinstance(app.screen, BackendDetailScreen)
        await pilot.press("escape")
        assert isinstance(app.screen, BackendsScreen)
        await pilot.press("3")
        t = table(app, "#requests")
        t.move_cursor(row=t.get_row_index("req-0005"))
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, RequestExplainScreen)
        assert "unhealthy: connection refused" in text_of(app.screen.query_one("#explain"))
        await pilot.press("escape")  # detail -> view
        assert isinstance(app.screen, RequestsScreen)
        await pilot.press("escape")  # view -> previous view
        assert isinstance(app.screen, BackendsScreen)


async def test_verbs_send_the_change_and_destructive_ones_confirm() -> None:
    source = FakeSource()
    app = NexusApp(source)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        t = table(app, "#backends")
        t.move_cursor(row=t.get_row_index("laptop"))
        await pilot.press("e")
        await settle(pilot)
        assert source.mutations == [("PATCH", "/v1/backends/laptop", {"enabled": False})]
        assert "$ nexusctl backends disable laptop" in text_of(app.screen.query_one(StatusLine))
        t.move_cursor(row=t.get_row_index("exo-cluster"))
        await pilot.press("d")  # it is draining: d undrains
        await settle(pilot)
        assert source.mutations[-1] == ("PATCH", "/v1/backends/exo-cluster", {"drain": False})
        await pilot.press("4", "x")
        await pilot.press("escape")  # cancel
        assert len(source.mutations) == 2
        await pilot.press("x", "y")
        await settle(pilot)
        assert source.mutations[2:] == [("DELETE", "/v1/aliases/fast", None)]
        assert "$ nexusctl aliases rm fast" in text_of(app.screen.query_one(StatusLine))


# --- state and entry point -------------------------------------------------------------------


def test_state_follows_events() -> None:
    state = NexusState()
    state.load(fixed_data()["snapshot"])
    assert [m.id for m in state.models()][:2] == ["llama3:70b", "llama3:8b"]
    assert state.resolve("gpt-4") == ("llama3:70b", ["smart", "llama3:70b"])
    state.apply_event({"type": "backend.removed", "data": {"id": "gpu-box"}})
    llama70 = next(m for m in state.models() if m.id == "llama3:70b")
    assert llama70.healthy == []  # only exo-cluster (draining) is left
    state.apply_event({"type": "models.changed", "data": {"backend": "laptop", "models": []}})
    assert "mistral:7b" not in state.model_names()
    state.apply_event({"type": "fallbacks.changed", "data": {"fallbacks": {}}})
    assert state.fallbacks == {}
    record = {"request_id": "r1", "backend": "laptop", "status": "error", "latency_ms": 5.0}
    topics = state.apply_event({"type": "request.completed", "data": record})
    assert "requests" in topics and state.backends["laptop"]["errors"] == 10
    # a second copy of the same request (snapshot + event overlap) is not counted twice
    state.apply_event({"type": "request.completed", "data": record})
    assert state.backends["laptop"]["errors"] == 10


def test_docs_list_every_binding_with_its_default_key() -> None:
    docs = (Path(__file__).parents[2] / "docs" / "tui.md").read_text()
    for k in KEYS:
        row = next((line for line in docs.splitlines() if line.startswith(f"| `{k.id}` |")), "")
        assert row, f"docs/tui.md does not list {k.id}"
        first = KEY_DISPLAY.get(k.key.split(",")[0], k.key.split(",")[0])
        assert f"`{first}`" in row, (k.id, row)


def test_entry_point_options() -> None:
    args = build_parser().parse_args(["--socket", "/tmp/x.sock", "--read-only"])
    assert args.socket == "/tmp/x.sock" and args.read_only
