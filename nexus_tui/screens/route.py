"""Route: a dry run (``POST /v1/route``) — where would a request for MODEL with these needs
go right now, and why every other backend was excluded. Nothing is sent to a backend.

Focus (the one view with text fields, so digits must be typeable: ``llama3:8b``): a focused
field takes every printable key; ``esc`` leaves it (the footer says so) and then ``1``–``5``
switch views. Arriving with an empty form focuses the model field; otherwise — and after
every run — the decision has the focus, where ``enter`` edits the model again.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

from rich.text import Text
from textual.containers import Horizontal, VerticalScroll
from textual.suggester import SuggestFromList
from textual.widget import Widget
from textual.widgets import Button, Checkbox, Input, Static

from nexus_tui.keymap import bind
from nexus_tui.screens.base import NexusScreen
from nexus_tui.state import ALIASES, MODELS
from nexus_tui.widgets.cells import tone
from nexus_tui.widgets.explain import explain

#: on every control of the form: the footer shows how to get out of it
LEAVE = bind("nexus.back", "screen.back", label="Leave field")


class Field(Input):
    """A text field of the form: `esc` leaves it; focusing it never selects its text."""

    BINDINGS: ClassVar[list[Any]] = [LEAVE]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(select_on_focus=False, **kwargs)


class Tick(Checkbox):
    """A checkbox whose state is readable without colour (`[x]` / `[ ]`, for NO_COLOR)."""

    BUTTON_LEFT, BUTTON_RIGHT = "[", "]"
    BINDINGS: ClassVar[list[Any]] = [LEAVE]

    def __init__(self, label: str, *, id: str) -> None:
        super().__init__(label, id=id, compact=True)
        self.BUTTON_INNER = " "

    def watch_value(self) -> None:
        self.BUTTON_INNER = "x" if self.value else " "
        super().watch_value()


class RunButton(Button):
    BINDINGS: ClassVar[list[Any]] = [LEAVE]


class RouteScreen(NexusScreen):
    VIEW = "route"
    AUTO_FOCUS = "#route-model"
    BINDINGS: ClassVar[list[Any]] = [
        bind("nexus.route.edit_model", "edit"),
        bind("nexus.route.run", "run"),
    ]

    def compose_body(self) -> Iterable[Widget]:
        with Horizontal(id="route-form"):
            yield Field(placeholder="model or alias", id="route-model")
            yield Tick("vision", id="route-vision")
            yield Tick("tools", id="route-tools")
            yield Tick("JSON", id="route-json")
            yield Field(placeholder="tokens", id="route-tokens", type="integer")
            yield RunButton("Route", id="route-run", variant="primary", compact=True)
        with VerticalScroll(id="route-result") as scroll:
            scroll.border_title = "Decision"
            yield Static(
                Text(
                    "Type a model, tick what the request needs, press enter: the daemon "
                    "answers where it would go now and why the other backends were excluded.",
                    "dim",
                ),
                id="route-explain",
            )

    def update_view(self, topics: frozenset[str]) -> None:
        if topics & {MODELS, ALIASES}:
            names = sorted({*self.state.model_names(), *self.state.aliases})
            self.query_one("#route-model", Input).suggester = SuggestFromList(
                names, case_sensitive=True
            )

    @property
    def model_field(self) -> Input:
        return self.query_one("#route-model", Input)

    def arrived(self) -> None:
        # an empty form waits for a model; a filled one shows its decision (1–5 work)
        if not self.model_field.value.strip():
            self.model_field.focus()
        elif isinstance(self.focused, Input):
            self.query_one("#route-result").focus()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "edit" and isinstance(self.focused, Input | Checkbox | Button):
            return False  # already in the form (and `enter` belongs to that control)
        return super().check_action(action, parameters)

    def action_edit(self) -> None:
        field = self.model_field
        field.focus()
        field.cursor_position = len(field.value)

    def action_back(self) -> None:
        # esc first leaves the form (so 1–5, ? and : work again), then goes back
        if isinstance(self.focused, Input | Checkbox | Button):
            self.query_one("#route-result").focus()
        else:
            super().action_back()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_run()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.action_run()

    def fill(self, model: str, **needs: bool) -> None:
        self.query_one("#route-model", Input).value = model
        for name, widget_id in (("vision", "#route-vision"), ("tools", "#route-tools")):
            self.query_one(widget_id, Checkbox).value = bool(needs.get(name))
        self.query_one("#route-json", Checkbox).value = bool(needs.get("json_mode"))

    def action_run(self) -> None:
        model = self.query_one("#route-model", Input).value.strip()
        target = self.query_one("#route-explain", Static)
        if not model:
            target.update(Text("which model? type a model or alias name first", tone("bad")))
            self.query_one("#route-model", Input).focus()
            return
        body: dict[str, Any] = {"model": model}
        argv = ["nexusctl", "route", model]
        for name, flag, widget_id in (
            ("vision", "--vision", "#route-vision"),
            ("tools", "--tools", "#route-tools"),
            ("json_mode", "--json", "#route-json"),
        ):
            if self.query_one(widget_id, Checkbox).value:
                body[name] = True
                argv.append(flag)
        tokens = self.query_one("#route-tokens", Input).value.strip()
        if tokens.isdigit() and int(tokens) > 0:
            body["tokens"] = int(tokens)
            argv += ["--tokens", tokens]
        if isinstance(self.focused, Input) or self.focused is None:
            # the answer is what matters now, and the next digit should switch views, not
            # land in the field (`llama3:8b3`); enter edits the model again
            self.query_one("#route-result").focus()
        self.run_worker(self._route(body, argv), group="route", exclusive=True, exit_on_error=False)

    async def _route(self, body: dict[str, Any], argv: list[str]) -> None:
        from nexusd.control.client import ControlError

        target = self.query_one("#route-explain", Static)
        self.nexus.note_command(argv)
        try:
            data = await self.nexus.source.call("POST", "/v1/route", body)
        except ControlError as exc:
            target.update(Text(getattr(exc, "message", None) or str(exc), tone("bad")))
            return
        target.update(explain(data))
