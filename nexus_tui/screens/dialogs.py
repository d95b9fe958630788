"""Modal dialogs: confirmation, help (the effective keys of the view) and edit forms.

Forms send their change through ``NexusApp.mutate`` and stay open showing the daemon's own
message when it refuses (a cycle, a chain too deep, an unreachable URL); the new state
arrives as events, so no view is refreshed by hand.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.suggester import SuggestFromList
from textual.widget import Widget
from textual.widgets import Button, Input, Label, Static

from nexus_tui.widgets.cells import tone

if TYPE_CHECKING:
    from nexus_tui.app import NexusApp


class ConfirmScreen(ModalScreen[bool]):
    """Destructive verbs ask first: `y` confirms, `n` / esc cancels (the default)."""

    BINDINGS: ClassVar[list[Any]] = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
    ]

    def __init__(self, question: str, command: str) -> None:
        super().__init__()
        self.question, self.command = question, command

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.question, classes="dialog-title")
            yield Static(Text(f"$ {self.command}", "dim"), classes="dialog-cli")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Yes (y)", variant="error", id="yes")
                yield Button("No (n)", id="no")

    def on_mount(self) -> None:
        self.query_one("#no").focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class HelpScreen(ModalScreen[None]):
    """`?` / F1: the keys that work here, after the user's `[tui.keymap]` remaps."""

    BINDINGS: ClassVar[list[Any]] = [
        Binding("escape,q,question_mark,f1", "close", "Close"),
    ]

    def __init__(self, title: str, rows: list[tuple[str, str, str, str]]) -> None:
        super().__init__()
        self.title_text, self.rows = title, rows

    def compose(self) -> ComposeResult:
        table = Table(box=None, expand=True, pad_edge=False, show_edge=False)
        table.add_column("key", style="bold", no_wrap=True)
        table.add_column("does", ratio=1)
        table.add_column("id", style="dim", no_wrap=True)
        for key, _label, text, ident in self.rows:
            table.add_row(key, text, ident)
        with Vertical(classes="dialog help"):
            yield Label(f"Keys — {self.title_text}", classes="dialog-title")
            with VerticalScroll(id="help-scroll"):
                yield Static(table, id="help-table")
            yield Static(
                Text("remap under [tui.keymap] in the config · esc closes", "dim"),
                classes="dialog-cli",
            )

    def action_close(self) -> None:
        self.dismiss(None)


class FormScreen(ModalScreen[bool]):
    """A small edit form; ``request()`` builds the call, the daemon validates it."""

    TITLE_TEXT: ClassVar[str] = ""
    BINDINGS: ClassVar[list[Any]] = [Binding("escape", "cancel", "Cancel")]

    @property
    def nexus(self) -> NexusApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.TITLE_TEXT, classes="dialog-title")
            yield from self.fields()
            yield Static("", id="form-error")
            yield Static("", classes="dialog-cli", id="form-cli")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Save (enter)", variant="primary", id="save")
                yield Button("Cancel (esc)", id="cancel")

    def fields(self) -> Iterable[Widget]:
        return ()

    def request(self) -> tuple[list[str], str, str, Any]:
        """(nexusctl argv, method, path, body); raise ValueError with a message to refuse."""
        raise NotImplementedError

    def on_mount(self) -> None:
        self._preview()

    def on_input_changed(self, event: Input.Changed) -> None:
        self._preview()

    def _preview(self) -> None:
        try:
            argv = self.request()[0]
        except ValueError:
            argv = []
        self.query_one("#form-cli", Static).update(
            Text(f"$ {shlex.join(argv)}", "dim") if argv else ""
        )

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        inputs = [w for w in self.query(Input) if not w.disabled]
        if event.input is not inputs[-1]:
            self.focus_next()
            return
        self.submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "save":
            self.submit()
        else:
            self.dismiss(False)

    def action_cancel(self) -> None:
        self.dismiss(False)

    def show_error(self, message: str) -> None:
        self.query_one("#form-error", Static).update(Text(message, tone("bad")))

    def submit(self) -> None:
        self.run_worker(self._submit(), group="form", exclusive=True, exit_on_error=False)

    async def _submit(self) -> None:
        from nexus_tui.app import ReadOnly
        from nexusd.control.client import ControlError

        try:
            argv, method, path, body = self.request()
        except ValueError as exc:
            self.show_error(str(exc))
            return
        try:
            await self.nexus.mutate(argv, method, path, body)
        except ReadOnly:
            self.show_error("read-only mode: changes are refused")
            return
        except ControlError as exc:
            self.show_error(getattr(exc, "message", None) or str(exc))
            return
        self.dismiss(True)


def _value(screen: FormScreen, selector: str) -> str:
    return screen.query_one(selector, Input).value.strip()


class AddBackendForm(FormScreen):
    TITLE_TEXT = "Add a backend (its type is detected by the daemon)"

    def fields(self) -> Iterable[Widget]:
        yield Label("URL")
        yield Input(placeholder="http://127.0.0.1:11434", id="url")

    def request(self) -> tuple[list[str], str, str, Any]:
        url = _value(self, "#url")
        if not url:
            raise ValueError("a URL is required, e.g. http://127.0.0.1:11434")
        return ["nexusctl", "backends", "add", url], "POST", "/v1/backends", {"url": url}


class AliasForm(FormScreen):
    TITLE_TEXT = "Alias: a name that routes to a model (or another alias)"

    def __init__(self, name: str = "", target: str = "", *, choices: list[str]) -> None:
        super().__init__()
        self.editing = bool(name)
        self.initial = (name, target)
        self.choices = choices

    def fields(self) -> Iterable[Widget]:
        name, target = self.initial
        yield Label("Alias")
        yield Input(name, placeholder="fast", id="name", disabled=self.editing)
        yield Label("Target model")
        yield Input(
            target,
            placeholder="llama3:8b",
            id="target",
            suggester=SuggestFromList(self.choices, case_sensitive=True),
        )

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#target" if self.editing else "#name", Input).focus()

    def request(self) -> tuple[list[str], str, str, Any]:
        name, target = _value(self, "#name"), _value(self, "#target")
        if not name:
            raise ValueError("the alias needs a name")
        if not target:
            raise ValueError("the alias needs a target model")
        return (
            ["nexusctl", "aliases", "set", name, target],
            "PUT",
            f"/v1/aliases/{quote(name, safe=':')}",
            {"target": target},
        )


class FallbackForm(FormScreen):
    TITLE_TEXT = "Fallback chain: models tried in order when MODEL cannot be served"

    def __init__(self, model: str = "", chain: list[str] | None = None, *, choices: list[str]):
        super().__init__()
        self.editing = bool(model)
        self.initial = (model, " ".join(chain or []))
        self.choices = choices

    def fields(self) -> Iterable[Widget]:
        model, chain = self.initial
        yield Label("Model")
        yield Input(
            model,
            placeholder="llama3:70b",
            id="model",
            disabled=self.editing,
            suggester=SuggestFromList(self.choices, case_sensitive=True),
        )
        yield Label("Fallbacks, in order (space or comma separated)")
        yield Input(chain, placeholder="llama3:8b mistral:7b", id="chain")

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#chain" if self.editing else "#model", Input).focus()

    def request(self) -> tuple[list[str], str, str, Any]:
        model = _value(self, "#model")
        chain = [p for p in _value(self, "#chain").replace(",", " ").split() if p]
        if not model:
            raise ValueError("which model is this chain for?")
        if not chain:
            raise ValueError("list at least one fallback model")
        return (
            ["nexusctl", "fallbacks", "set", model, *chain],
            "PUT",
            f"/v1/fallbacks/{quote(model, safe=':')}",
            {"chain": chain},
        )
