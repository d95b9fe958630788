"""One-line input bars mounted on demand (never hidden in the DOM, so they cannot steal
focus): `/` filter and `:` command."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from textual.binding import Binding
from textual.suggester import SuggestFromList
from textual.widgets import Input

if TYPE_CHECKING:
    from nexus_tui.app import NexusApp


class FilterBar(Input):
    """`/` — filters the table live; enter keeps the filter, esc clears it."""

    # shown: while a bar has the focus it takes every printable key (digits too)
    BINDINGS = [Binding("escape", "cancel", "Clear filter")]

    def __init__(self, table: Any) -> None:
        super().__init__(value=table.filter_text, placeholder="filter (!x inverts, re:x regex)")
        self.table = table
        self.add_class("bar")

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.table.set_filter(event.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.close()

    def action_cancel(self) -> None:
        self.table.set_filter("")
        self.close()

    def close(self) -> None:
        self.table.focus()
        self.remove()


COMMANDS: tuple[str, ...] = (
    "backends",
    "models",
    "requests",
    "aliases",
    "fallbacks",
    "route",
    "help",
    "quit",
)


class CommandBar(Input):
    """`:` — `:backends`, `:be /ollama`, `:route llama3:8b --vision`, `:q`; tab completes."""

    BINDINGS = [
        Binding("escape", "cancel", "Close"),
        Binding("tab", "complete", "Complete"),
    ]

    def __init__(self) -> None:
        super().__init__(
            placeholder=":backends :models :requests :aliases :route MODEL :help :q",
            suggester=SuggestFromList(COMMANDS, case_sensitive=False),
        )
        self.add_class("bar")
        self.previous_focus: Any = None

    def action_complete(self) -> None:
        self.cursor_position = len(self.value)
        self.action_cursor_right()  # at the end, this accepts the suggestion

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        app: NexusApp = self.app  # type: ignore[assignment]
        text = event.value
        self.close()
        app.run_command_line(text)

    def action_cancel(self) -> None:
        self.close()

    def close(self) -> None:
        if self.previous_focus is not None and self.previous_focus.is_attached:
            self.previous_focus.focus()
        self.remove()
