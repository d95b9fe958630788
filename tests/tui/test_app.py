"""Conventions of the TUI with the fake source: read-only mode, remapped keys, help, filter,
sort, pause, the command bar and palette, esc, and tables that update rows in place."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from textual import events
from textual.command import CommandList
from textual.widgets import DataTable, Input
from textual.widgets._footer import FooterKey

from nexus_tui import build_parser
from nexus_tui.app import KEY_DISPLAY, NexusApp, ReadOnly
from nexus_tui.keymap import BY_ID, KEYS, MUTATING_IDS, resolve_keymap
from nexus_tui.messages import Connected, Disconnected, SnapshotLoaded
from nexus_tui.screens.aliases import AliasesScreen
from nexus_tui.screens.backends import BackendDetailScreen, BackendsScreen, backend_row
from nexus_tui.screens.dialogs import HelpScreen
from nexus_tui.screens.models import ModelsScreen
from nexus_tui.screens.requests import RequestExplainScreen, RequestsScreen
from nexus_tui.screens.route import RouteScreen
from nexus_tui.state import NexusState
from nexus_tui.widgets import cells
from nexus_tui.widgets.bars import CommandBar
from nexus_tui.widgets.chrome import Banner, StatusLine
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


def footer(app: NexusApp) -> list[str]:
    """What the footer shows right now: `key description` per entry."""
    return [f"{k.key_display} {k.description}" for k in app.screen.query(FooterKey)]


#: the footer words of every verb that changes the daemon
MUTATING_LABELS = {BY_ID[i].label for i in MUTATING_IDS}


def drawn(t: LiveTable, key: str) -> str:
    """The row as the table draws it now (no waiting for the next idle)."""
    return "".join(segment.text for segment in t.render_line(t.get_row_index(key) + 1))


# --- read-only -------------------------------------------------------------------------------


async def test_read_only_hides_and_refuses_every_mutating_verb() -> None:
    source = FakeSource()
    app = NexusApp(source, read_only=True)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        assert isinstance(app.screen, BackendsScreen)
        assert not binding_ids(app) & MUTATING_IDS
        assert footer(app) and not {f.split(" ", 1)[1] for f in footer(app)} & MUTATING_LABELS
        await pilot.press("d", "e", "a", "x")
        assert isinstance(app.screen, BackendsScreen)  # no form, no confirmation
        await pilot.press("4")
        assert isinstance(app.screen, AliasesScreen)
        assert not binding_ids(app) & MUTATING_IDS
        # `enter` on an alias or a chain opens the edit form: not advertised either (issue 12)
        for _ in ("aliases", "fallbacks"):
            await pilot.pause()
            shown = footer(app)
            assert shown and not {f.split(" ", 1)[1] for f in shown} & MUTATING_LABELS, shown
            assert not any("Edit" in f for f in shown), shown
            await pilot.press("question_mark")
            assert isinstance(app.screen, HelpScreen)
            assert not any(
                "Edit" in label or "edit" in text for _, label, text, _ in app.screen.rows
            )
            await pilot.press("escape", "tab")
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
    # a new binding must not make an existing short name ambiguous
    assert resolve_keymap({"edit": "E"}) == ({"nexus.alias.edit": "E"}, [])


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


async def test_without_read_only_the_footer_offers_the_verbs() -> None:
    """The counterpart of the read-only test: the same footer with the verbs in it."""
    app = NexusApp(FakeSource())
    async with app.run_test(size=(120, 30)) as pilot:
        await started(pilot)
        assert {"d Drain", "e Enable", "a Add", "x Remove"} <= set(footer(app))
        await pilot.press("4")
        await pilot.pause()
        assert {"⏎ Edit", "n New", "e Edit", "x Delete"} <= set(footer(app))


# --- the Route view's focus (issue 12, item 10) ----------------------------------------------


async def test_route_view_never_traps_the_number_keys() -> None:
    app = NexusApp(FakeSource())
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        # enter on a model: the route runs and the decision has the focus, so the next
        # number key switches views instead of landing in the field (`llama3:8b3`)
        await pilot.press("2")
        t = table(app, "#models")
        t.move_cursor(row=t.get_row_index("llama3:8b"))
        await pilot.press("enter")
        await settle(pilot)
        route = app.screen
        assert isinstance(route, RouteScreen)
        model = route.query_one("#route-model", Input)
        assert model.value == "llama3:8b"
        assert app.focused is route.query_one("#route-result")
        assert "Outcome" in text_of(route.query_one("#route-explain"))
        await pilot.press("3")
        assert isinstance(app.screen, RequestsScreen)
        assert model.value == "llama3:8b"
        # back with 5: keys do something at once — the footer says enter edits the model
        await pilot.press("5")
        await pilot.pause()
        assert app.screen is route and app.focused is route.query_one("#route-result")
        assert "⏎ Edit model" in footer(app)
        await pilot.press("enter")
        await pilot.pause()
        assert app.focused is model
        assert model.selected_text == "" and model.cursor_position == len("llama3:8b")
        # in the field, digits are typed (model names have them) and the footer says how
        # to leave it
        await pilot.press("backspace", "backspace", *"70b")
        assert model.value == "llama3:70b"
        assert footer(app)[0] == "esc Leave field"
        await pilot.press("escape")
        assert app.focused is route.query_one("#route-result")
        assert isinstance(app.screen, RouteScreen)  # esc left the field, not the view
        await pilot.press("1")
        assert isinstance(app.screen, BackendsScreen)
        # running from the field hands the focus to the decision as well
        await pilot.press("5")
        await pilot.pause()
        await pilot.press("enter", "backspace", "enter")
        await settle(pilot)
        assert model.value == "llama3:70"
        assert app.focused is route.query_one("#route-result")
        await pilot.press("4")
        assert isinstance(app.screen, AliasesScreen)


async def test_route_view_with_an_empty_form_waits_for_a_model() -> None:
    app = NexusApp(FakeSource())
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("5")
        await pilot.pause()
        route = app.screen
        model = route.query_one("#route-model", Input)
        assert app.focused is model
        assert footer(app)[0] == "esc Leave field"
        await pilot.press(*"llama3:8b")
        assert model.value == "llama3:8b"
        # esc, esc: out of the field, then back to the previous view
        await pilot.press("escape", "escape")
        assert isinstance(app.screen, BackendsScreen)
        # checkboxes do not take digits; the footer still says how to leave the form
        await pilot.press("5")
        await pilot.pause()
        assert app.focused is route.query_one("#route-result")  # the form is filled now
        await pilot.press("tab")  # from the decision, tab wraps to the model field
        assert app.focused is model and model.selected_text == ""
        await pilot.press("tab")
        assert app.focused is route.query_one("#route-vision")
        assert "esc Leave field" in footer(app)
        await pilot.press("2")
        assert isinstance(app.screen, ModelsScreen)


async def test_filter_and_command_bars_show_how_to_leave_them() -> None:
    app = NexusApp(FakeSource())
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("slash")
        await pilot.pause()
        assert "esc Clear filter" in footer(app)
        await pilot.press("8", "b")  # digits are typed into the filter
        assert table(app, "#backends").filter_text == "8b"
        await pilot.press("escape", "colon")
        await pilot.pause()
        assert "esc Close" in footer(app)
        await pilot.press("escape", "2")
        assert isinstance(app.screen, ModelsScreen)


async def type_ahead(pilot: Any, text: str) -> None:
    """Keys that arrive in one burst (a paste, tmux send-keys, ssh), not one per frame."""
    names = {":": "colon", "/": "slash", " ": "space", "\r": "enter"}
    for char in text:
        pilot.app.post_message(events.Key(names.get(char, char), None if char == "\r" else char))
    await pilot.pause()
    await settle(pilot)


async def test_keys_typed_ahead_of_a_bar_land_in_it_not_on_the_table() -> None:
    """`:be /oll⏎` in one burst used to reach the table: `e` disabled the selected backend
    and `⏎` opened its details (found while testing item 11 in tmux)."""
    source = FakeSource()
    app = NexusApp(source)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await type_ahead(pilot, ":be /oll\r")
        assert isinstance(app.screen, BackendsScreen)
        assert table(app, "#backends").visible_keys == ["local-ollama"]
        await type_ahead(pilot, "/gpu\r")
        assert table(app, "#backends").visible_keys == ["gpu-box"]
        assert app.focused is table(app, "#backends")
        await type_ahead(pilot, "4nquick")
        form = app.screen
        assert form.query_one("#name", Input).value == "quick"  # `q` did not quit
        await pilot.press("escape")
        assert source.mutations == []


# --- details follow the filter (item 11) -----------------------------------------------------


async def test_the_backend_preview_follows_the_filtered_row() -> None:
    app = NexusApp(FakeSource())
    async with app.run_test(size=(120, 40)) as pilot:  # tall enough for the preview
        await started(pilot)
        t = table(app, "#backends")
        preview = app.screen.query_one("#backend-preview")
        assert t.selected_key == "exo-cluster" and preview.display
        assert "exo-cluster" in str(preview.border_title)
        await pilot.press("colon", *"be /ollama", "enter")
        await pilot.pause()
        assert t.visible_keys == ["local-ollama"]
        assert "local-ollama" in str(preview.border_title)
        assert "http://127.0.0.1:11434" in text_of(preview)
        # enter opens the one under the cursor, too
        await pilot.press("enter")
        assert isinstance(app.screen, BackendDetailScreen)
        assert app.screen.backend_id == "local-ollama"
        await pilot.press("escape")
        # a filter that matches nothing leaves nothing to preview
        await pilot.press("slash", *"nothing-like-this", "enter")
        await pilot.pause()
        assert t.visible_keys == [] and not preview.display
        await pilot.press("escape")  # clears the filter: the cursor's row is previewed again
        await pilot.pause()
        assert preview.display and t.selected_key in str(preview.border_title)


# --- column widths (item 12) -----------------------------------------------------------------


async def test_columns_widen_before_a_longer_value_is_drawn() -> None:
    data = fixed_data()
    for backend in data["snapshot"]["backends"]:
        backend["status"] = "healthy"
    app = NexusApp(FakeSource(data))
    async with app.run_test(size=(120, 30)) as pilot:
        await started(pilot)
        t = table(app, "#backends")
        # every status word fits before any shows up
        status = next(c for k, c in t.columns.items() if k.value == "status")
        assert status.content_width >= len("unhealthy") == cells.STATUS_WIDTH
        state = app.state
        rows = {b: backend_row(v, state.backend_trend(b)) for b, v in state.backends.items()}
        rows["gpu-box"]["status"] = cells.status("draining")
        rows["gpu-box"]["requests"] = cells.num(123456789)
        t.set_rows(rows)
        # drawn at once (a terminal may paint before Textual re-measures when idle) and
        # after: whole words, no `draini…` / `123…`
        for _ in range(2):
            line = drawn(t, "gpu-box")
            assert "draining " in line and "123456789" in line, line
            await pilot.pause()
        # the Models matrix shows whole status words too (no `unhea`)
        await pilot.press("2")
        models = table(app, "#models")
        app.state.backends["laptop"]["status"] = "unhealthy"
        app.changed({"backends", "models"})
        await pilot.pause()
        assert models.get_cell("mistral:7b", "b:laptop").plain == "unhealthy"
        assert "unhealthy" in drawn(models, "mistral:7b")


# --- disconnected (item 13) ------------------------------------------------------------------


async def test_rows_show_as_stale_while_disconnected() -> None:
    source = FakeSource()
    app = NexusApp(source)
    async with app.run_test(size=(120, 40)) as pilot:
        await started(pilot)
        t = table(app, "#backends")
        assert t.get_cell("gpu-box", "status").plain == "healthy"
        assert t.get_cell("gpu-box", "status").style == cells.tone("good")
        app.post_message(Disconnected(source.where, "no Nexus daemon answers", 1))
        await pilot.pause()
        assert app.screen.query_one(Banner).display
        assert "STALE" in str(t.border_title)
        status = t.get_cell("gpu-box", "status")
        assert status.plain == "healthy" and status.style == "dim"  # last known, not green
        assert "healthy" in drawn(t, "gpu-box")
        assert app.screen.has_class("-stale")  # the preview is dimmed by the stylesheet
        # other views are stale too when shown
        await pilot.press("2")
        assert "STALE" in str(table(app, "#models").border_title)
        # back: live again
        app.post_message(Connected(source.where))
        app.post_message(SnapshotLoaded(fixed_data()["snapshot"]))
        await pilot.pause()
        assert "STALE" not in str(table(app, "#models").border_title)
        await pilot.press("1")
        assert "STALE" not in str(t.border_title)
        assert t.get_cell("gpu-box", "status").style == cells.tone("good")


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
    # counted like the daemon counts: an attempt per backend; errors are a backend's faults
    laptop = state.backends["laptop"]
    before = (laptop["total_requests"], laptop["errors"])
    record = {
        "request_id": "r1",
        "backend": "laptop",
        "status": "error",
        "error_type": "stream_interrupted",
        "failed_backends": ["gone-box"],  # unknown here: ignored
        "latency_ms": 5.0,
    }
    topics = state.apply_event({"type": "request.completed", "data": record})
    assert "requests" in topics and "backends" in topics
    assert (laptop["total_requests"], laptop["errors"]) == (before[0] + 1, before[1] + 1)
    # a second copy of the same request (snapshot + event overlap) is not counted twice
    state.apply_event({"type": "request.completed", "data": record})
    assert (laptop["total_requests"], laptop["errors"]) == (before[0] + 1, before[1] + 1)
    # a 4xx passed through is the backend's request, not its error
    passed = {
        "request_id": "r2",
        "backend": "laptop",
        "status": "error",
        "outcome": "passed_through",
    }
    state.apply_event({"type": "request.completed", "data": passed})
    assert (laptop["total_requests"], laptop["errors"]) == (before[0] + 2, before[1] + 1)


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


# --- trends ----------------------------------------------------------------------------------


async def test_trends_sparklines_in_the_table_and_details_follow_polls() -> None:
    from nexus_tui.messages import Polled

    app = NexusApp(FakeSource())
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        t = table(app, "#backends")
        # the first view comes with the snapshot: gpu-box has a rate line, laptop none
        assert set(drawn(t, "gpu-box")) & set(cells.BLOCKS)
        assert not set(drawn(t, "laptop")) & set(cells.BLOCKS)
        # a poll brings fresh series: laptop now shows one busy minute at the right end
        trends = copy.deepcopy(app.state.trends)
        laptop = copy.deepcopy(trends["backends"]["gpu-box"])
        laptop["rate"] = [0] * 59 + [30]
        laptop["p95_ms"] = [None] * 59 + [950.0]
        laptop["error_rate"] = [0.0] * 59 + [0.5]
        trends["backends"]["laptop"] = laptop
        app.post_message(Polled(app.state.status, list(app.state.backends.values()), trends))
        await settle(pilot)
        line = drawn(t, "laptop")
        assert "▁▁▁▁▁▁▁▁▁█" in line, line
        # the details panel: rate, p95 and error rate with their latest values
        t.move_cursor(row=t.get_row_index("laptop"))
        await pilot.press("enter")
        await settle(pilot)
        facts = text_of(app.screen.query_one("#backend-info"))
        assert "req/min" in facts and "▁▁▁▁▁▁▁▁▁▁▁█ 30" in facts, facts
        assert "950ms" in facts and "50%" in facts, facts
