"""``NexusApp``: one Textual mode per view, fed by a swappable data source.

Data flow: the source (a worker owned by the app) posts messages; the app applies them to
``NexusState`` and tells the screens of the current mode which topics changed (coalesced,
once per batch of messages). Screens diff the state into their tables. Mutations go
through ``mutate``, which refuses in read-only mode and records the equivalent ``nexusctl``
command for the status line; their effect comes back as daemon events.

Room for more views: Budget, Quality/Queue and Lifecycle each become one more entry in
``MODES`` (and a ``nexus.view.*`` key) when the daemon exposes them.
"""

from __future__ import annotations

import contextlib
import importlib
import shlex
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

from textual import events
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import Input

from nexus_tui.keymap import BY_ID, KEYS, bind, resolve_keymap
from nexus_tui.messages import (
    BackendRefreshed,
    Connected,
    DaemonEvent,
    Disconnected,
    Polled,
    SnapshotLoaded,
)
from nexus_tui.screens.base import NexusScreen
from nexus_tui.source import Source
from nexus_tui.state import NexusState
from nexus_tui.widgets.cells import set_monochrome
from nexus_tui.widgets.chrome import VIEWS

KEY_DISPLAY = {
    "colon": ":",
    "slash": "/",
    "question_mark": "?",
    "space": "space",
    "escape": "esc",
    "enter": "enter",
    "semicolon": ";",
}

#: `:` words (and short forms) for each view
VIEW_WORDS = {
    "backends": ("backends", "backend", "be", "b"),
    "models": ("models", "model", "mo", "m"),
    "requests": ("requests", "request", "rq", "req", "r"),
    "aliases": ("aliases", "alias", "al", "a", "fallbacks", "fallback", "fb"),
    "route": ("route", "rt"),
}


@dataclass(frozen=True, slots=True)
class Connection:
    state: str  # connecting | connected | disconnected
    where: str = ""
    reason: str = ""
    retry_in: int = 0


@dataclass(frozen=True, slots=True)
class CommandNote:
    command: str = ""
    ok: bool = True
    message: str = ""


class ReadOnly(Exception):
    pass


def _lazy_screen(view: str) -> Callable[[], Screen[Any]]:
    def make() -> Screen[Any]:
        module = importlib.import_module(f"nexus_tui.screens.{view}")
        return getattr(module, f"{view.capitalize()}Screen")()

    return make


class NexusApp(App[int]):
    TITLE = "Nexus"
    CSS_PATH = "nexus.tcss"
    # each view's module is imported when first shown (start-up time)
    MODES: ClassVar[dict[str, Any]] = {name: _lazy_screen(name) for name, _ in VIEWS}
    DEFAULT_MODE = "backends"
    BINDINGS: ClassVar[list[Any]] = [
        bind("nexus.view.backends", "view('backends')", show=False),
        bind("nexus.view.models", "view('models')", show=False),
        bind("nexus.view.requests", "view('requests')", show=False),
        bind("nexus.view.aliases", "view('aliases')", show=False),
        bind("nexus.view.route", "view('route')", show=False),
        bind("nexus.command", "command_bar"),
        bind("nexus.help", "help"),
        bind("nexus.quit", "quit"),
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True, system=True),
    ]

    connection: reactive[Connection] = reactive(Connection("connecting"), init=False)
    last_command: reactive[CommandNote] = reactive(CommandNote(), init=False)

    def __init__(
        self,
        source: Source,
        *,
        read_only: bool = False,
        keymap: dict[str, str] | None = None,
        initial_view: str | None = None,
    ) -> None:
        super().__init__()
        set_monochrome(self.no_color)
        self.source = source
        self.read_only = read_only
        self.state = NexusState()
        self._keymap_overrides = dict(keymap or {})
        self._effective_keys: dict[str, str] = {k.id: k.key for k in KEYS}
        self._keymap_problems: set[str] = set()
        self._view_history: list[str] = []
        self._dirty: set[str] = set()
        self._flush_pending = False
        self._initial_view = initial_view
        self.connection = Connection("connecting", source.where)
        if self._keymap_overrides:
            self._apply_keymap({})

    # --- life cycle ------------------------------------------------------------------------

    def on_mount(self) -> None:
        if self._initial_view and self._initial_view in self.MODES:
            self.switch_mode(self._initial_view)
        # paint first, then connect: the first frame does not wait for the connection
        self.call_after_refresh(self._start_source)

    def _start_source(self) -> None:
        self.run_worker(self.source.run(self), name="source", group="source", exit_on_error=False)

    async def on_unmount(self) -> None:
        await self.source.aclose()

    # --- messages from the source ----------------------------------------------------------

    def on_connected(self, message: Connected) -> None:
        self.connection = Connection("connected", message.where)

    def on_disconnected(self, message: Disconnected) -> None:
        self.connection = Connection(
            "disconnected", message.where, message.reason, message.retry_in
        )

    def on_snapshot_loaded(self, message: SnapshotLoaded) -> None:
        topics = self.state.load(message.snapshot)
        self._apply_keymap(self.state.keymap)
        self.changed(topics)

    def on_daemon_event(self, message: DaemonEvent) -> None:
        self.changed(self.state.apply_event(message.event))

    def on_backend_refreshed(self, message: BackendRefreshed) -> None:
        self.changed(self.state.apply_backend(message.backend))

    def on_polled(self, message: Polled) -> None:
        self.changed(self.state.apply_poll(message.status, message.backends))
        if message.trends is not None:
            self.changed(self.state.apply_trends(message.trends))

    def changed(self, topics: Iterable[str]) -> None:
        """Coalesce: many events in one burst cause one refresh of the visible screens."""
        self._dirty.update(topics)
        if self._dirty and not self._flush_pending:
            self._flush_pending = True
            self.call_later(self._flush)

    def _flush(self) -> None:
        topics, self._dirty, self._flush_pending = frozenset(self._dirty), set(), False
        for screen in self.screen_stack:
            if isinstance(screen, NexusScreen):
                screen.refresh_view(topics)

    # --- keys --------------------------------------------------------------------------------

    def _apply_keymap(self, from_config: dict[str, Any]) -> None:
        keymap, problems = resolve_keymap({**from_config, **self._keymap_overrides})
        self._effective_keys = {k.id: keymap.get(k.id, k.key) for k in KEYS}
        self.set_keymap(keymap)
        for problem in problems:
            if problem not in self._keymap_problems:  # once, not on every reconnect
                self.notify(problem, severity="warning", timeout=8)
        self._keymap_problems = set(problems)

    async def on_event(self, event: events.Event) -> None:
        if isinstance(event, events.Key) and not event.is_forwarded:
            # where Textual is about to send it: the widget that has the focus *now*
            event.nexus_sent_to = self.focused  # type: ignore[attr-defined]
        await super().on_event(event)

    def on_key(self, event: events.Key) -> None:
        """Type-ahead (a paste, tmux send-keys, a burst over ssh): the keys typed right after
        `:`, `/` or `n` were sent to the widget that had the focus when they arrived. When one
        comes back up unused and a text field has the focus by now, it was meant for that
        field: `:be /oll⏎` must not reach the table as `e` (disable a backend) and `⏎`."""
        field = self.focused
        if isinstance(field, Input) and getattr(event, "nexus_sent_to", field) is not field:
            event.prevent_default()  # none of the bindings of the old focus
            event.stop()
            again = events.Key(event.key, event.character)
            again.nexus_sent_to = field  # type: ignore[attr-defined]
            field._forward_event(again)

    def key_display(self, binding_id: str) -> str:
        first = self._effective_keys.get(binding_id, BY_ID[binding_id].key).split(",")[0]
        return KEY_DISPLAY.get(first, first)

    # --- views -------------------------------------------------------------------------------

    def action_view(self, name: str) -> None:
        if name != self.current_mode:
            self._view_history.append(self.current_mode)
            del self._view_history[:-20]
            self._switch(name)

    def back_view(self) -> None:
        if self._view_history:
            self._switch(self._view_history.pop())

    def _switch(self, name: str) -> None:
        self.switch_mode(name)
        self.call_after_refresh(self._arrived, name)

    def _arrived(self, name: str) -> None:
        screen = self.screen
        if self.current_mode == name and isinstance(screen, NexusScreen):
            screen.arrived()

    async def action_command_bar(self) -> None:
        if isinstance(self.screen, NexusScreen):
            await self.screen.open_command_bar()

    def action_help(self) -> None:
        screen = self.screen
        if not isinstance(screen, NexusScreen):
            return
        # one row per binding id (its keys joined), this view's verbs first, then the
        # table's keys, then the global ones
        by_id: dict[str, tuple[list[str], str, str]] = {}
        for key, active in screen.active_bindings.items():
            binding = active.binding
            if not binding.id and key not in ("ctrl+p", "ctrl+q"):
                continue
            ident = binding.id or key
            known = BY_ID.get(ident)
            text = known.help if known else (binding.tooltip or binding.description)
            if key == "ctrl+p":
                text = "command palette: views and commands by name"
            if ident == "nexus.row.open":
                text = f"{binding.description}: {text}"
            display = KEY_DISPLAY.get(key, self.get_key_display(binding))
            keys, _, _ = by_id.setdefault(ident, ([], binding.description, text))
            if display not in keys:
                keys.append(display)
        rank = {"global": 2, "table": 1}
        order = {k.id: (rank.get(k.scope, 0), i) for i, k in enumerate(KEYS)}
        rows = [
            (" ".join(keys), label, text, ident if ident in BY_ID else "")
            for ident, (keys, label, text) in sorted(
                by_id.items(), key=lambda item: order.get(item[0], (3, 0))
            )
        ]
        title = dict(VIEWS).get(screen.VIEW, "Nexus")
        if len(self.screen_stack) > 1:
            title += " (detail)"
        from nexus_tui.screens.dialogs import HelpScreen

        self.push_screen(HelpScreen(title, rows))

    def open_route(self, model: str) -> None:
        self.action_view("route")

        def fill() -> None:
            from nexus_tui.screens.route import RouteScreen

            screen = self.screen
            if isinstance(screen, RouteScreen):
                screen.fill(model)
                screen.action_run()

        self.call_after_refresh(fill)

    def run_command_line(self, text: str) -> None:
        words = text.strip().lstrip(":").split()
        if not words:
            return
        head, args = words[0].lower(), words[1:]
        if head in ("q", "quit", "exit"):
            self.exit(0)
            return
        if head in ("help", "h", "?"):
            self.action_help()
            return
        for view, names in VIEW_WORDS.items():
            if head in names:
                self.action_view(view)
                self.call_after_refresh(self._apply_args, view, args)
                return
        self.note(
            f"unknown command {head!r}; try :backends :models :requests :aliases :route :q",
            ok=False,
        )

    def _apply_args(self, view: str, args: list[str]) -> None:
        from nexus_tui.screens.route import RouteScreen

        screen = self.screen
        if view == "route" and args and isinstance(screen, RouteScreen):
            flags = {a.lstrip("-") for a in args if a.startswith("--")}
            model = next((a for a in args if not a.startswith("--")), "")
            screen.fill(
                model, vision="vision" in flags, tools="tools" in flags, json_mode="json" in flags
            )
            screen.action_run()
        elif isinstance(screen, NexusScreen):
            screen.apply_command(args)

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        for name, label in VIEWS:
            yield SystemCommand(
                f"{label} view", f"Go to the {label} view", lambda n=name: self.action_view(n)
            )
        yield SystemCommand("Help: keys of this view", "The keys that work here", self.action_help)
        from nexus_tui.screens.requests import RequestsScreen

        if isinstance(screen, RequestsScreen):
            yield SystemCommand(
                "Pause / resume", "Pause or resume the live request tail", screen.action_pause
            )
        # Textual's own commands, minus its key panel (`?` is the better one here)
        for command in super().get_system_commands(screen):
            if command.title != "Keys":
                yield command

    # --- changes -----------------------------------------------------------------------------

    def note(self, message: str, *, ok: bool = True) -> None:
        self.last_command = CommandNote("", ok, message)

    def note_command(self, argv: list[str], message: str = "", ok: bool = True) -> None:
        self.last_command = CommandNote(shlex.join(argv), ok, message)

    async def mutate(self, argv: list[str], method: str, path: str, body: Any = None) -> Any:
        """Run one change through the control API. Raises ``ReadOnly`` or the client's
        ``ControlError`` (``Refused`` carries the daemon's message)."""
        from nexusd.control.client import ControlError

        if self.read_only:
            self.note_command(argv, "refused: read-only mode", ok=False)
            raise ReadOnly(shlex.join(argv))
        try:
            result = await self.source.call(method, path, body)
        except ControlError as exc:
            self.note_command(argv, getattr(exc, "message", None) or str(exc), ok=False)
            raise
        self.note_command(argv, "ok")
        if isinstance(result, dict) and "id" in result and "url" in result:
            self.changed(self.state.apply_backend(result))
        return result

    def mutate_in_background(
        self, argv: list[str], method: str, path: str, body: Any = None
    ) -> None:
        async def run() -> None:
            from nexusd.control.client import ControlError

            with contextlib.suppress(ControlError, ReadOnly):  # already on the status line
                await self.mutate(argv, method, path, body)

        self.run_worker(run(), group="mutation", exit_on_error=False)

    def patch_backend(self, backend_id: str, fields: dict[str, Any], argv: list[str]) -> None:
        self.mutate_in_background(argv, "PATCH", f"/v1/backends/{backend_id}", fields)
