"""Aliases & fallbacks: both maps, with new / edit / delete. Changes come back as
``aliases.changed`` / ``fallbacks.changed`` events, so they appear at once everywhere."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar
from urllib.parse import quote

from textual.widget import Widget

from nexus_tui.keymap import bind
from nexus_tui.screens.base import NexusScreen
from nexus_tui.screens.dialogs import AliasForm, ConfirmScreen, FallbackForm
from nexus_tui.state import ALIASES, BACKENDS, FALLBACKS, MODELS
from nexus_tui.widgets.cells import Cell, tone
from nexus_tui.widgets.live_table import Column, LiveTable

ALIAS_COLUMNS = (
    Column("alias", "Alias"),
    Column("target", "Target"),
    Column("resolves", "Resolves to"),
    Column("healthy", "Healthy backends"),
)
FALLBACK_COLUMNS = (
    Column("model", "Model"),
    Column("chain", "Falls back to, in order"),
)


class AliasesScreen(NexusScreen):
    VIEW = "aliases"
    AUTO_FOCUS = "#aliases"
    MUTATING_ACTIONS = frozenset({"new", "edit", "delete"})
    BINDINGS: ClassVar[list[Any]] = [
        bind("nexus.alias.new", "new"),
        bind("nexus.alias.edit", "edit"),
        bind("nexus.alias.delete", "delete"),
    ]

    def compose_body(self) -> Iterable[Widget]:
        # `enter` edits: hidden from the footer and `?` in --read-only mode, like `e`
        yield LiveTable(
            "Aliases", ALIAS_COLUMNS, id="aliases", open_label="Edit", open_mutates=True
        )
        yield LiveTable(
            "Fallbacks", FALLBACK_COLUMNS, id="fallbacks", open_label="Edit", open_mutates=True
        )

    def update_view(self, topics: frozenset[str]) -> None:
        state = self.state
        if topics & {ALIASES, MODELS, BACKENDS}:
            healthy_by_model = {m.id: m.healthy for m in state.models()}
            rows = {}
            for alias, target in state.aliases.items():
                final, _hops = state.resolve(alias)
                healthy = healthy_by_model.get(final, [])
                rows[alias] = {
                    "alias": Cell(alias, "bold"),
                    "target": Cell(target),
                    "resolves": Cell(final, "" if final in healthy_by_model else tone("warn")),
                    "healthy": Cell(
                        ", ".join(state.backend_name(b) for b in healthy) or "none",
                        tone("good" if healthy else "bad"),
                        sort=len(healthy),
                    ),
                }
            self.query_one("#aliases", LiveTable).set_rows(rows)
        if FALLBACKS in topics:
            self.query_one("#fallbacks", LiveTable).set_rows(
                {
                    model: {"model": Cell(model, "bold"), "chain": Cell(" → ".join(chain))}
                    for model, chain in state.fallbacks.items()
                }
            )

    # --- verbs act on the focused table ----------------------------------------------------

    def _focused_table(self) -> LiveTable:
        if isinstance(self.focused, LiveTable):
            return self.focused
        return self.query_one("#aliases", LiveTable)

    def _choices(self) -> list[str]:
        return sorted({*self.state.model_names(), *self.state.aliases})

    def on_data_table_row_selected(self, event: LiveTable.RowSelected) -> None:
        event.stop()
        if not self.nexus.read_only:
            self.action_edit()

    def action_new(self) -> None:
        if self._focused_table().id == "fallbacks":
            self.app.push_screen(FallbackForm(choices=self._choices()))
        else:
            self.app.push_screen(AliasForm(choices=self._choices()))

    def action_edit(self) -> None:
        table = self._focused_table()
        key = table.selected_key
        if key is None:
            self.action_new()
        elif table.id == "fallbacks":
            chain = self.state.fallbacks.get(key, [])
            self.app.push_screen(FallbackForm(key, chain, choices=self._choices()))
        else:
            target = self.state.aliases.get(key, "")
            self.app.push_screen(AliasForm(key, target, choices=self._choices()))

    def action_delete(self) -> None:
        table = self._focused_table()
        key = table.selected_key
        if key is None:
            return
        if table.id == "fallbacks":
            argv = ["nexusctl", "fallbacks", "rm", key]
            path, question = (
                f"/v1/fallbacks/{quote(key, safe=':')}",
                f"Delete the fallback chain of {key}?",
            )
        else:
            argv = ["nexusctl", "aliases", "rm", key]
            path, question = f"/v1/aliases/{quote(key, safe=':')}", f"Delete alias {key}?"

        def answer(yes: bool | None) -> None:
            if yes:
                self.nexus.mutate_in_background(argv, "DELETE", path)

        self.app.push_screen(ConfirmScreen(question, " ".join(argv)), answer)
