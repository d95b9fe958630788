"""The base of every full screen: shared chrome, refresh plumbing, filter and command bars."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, ClassVar

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Footer

from nexus_tui.keymap import bind
from nexus_tui.state import ALL_TOPICS
from nexus_tui.widgets.chrome import Banner, StatusLine, TopBar
from nexus_tui.widgets.live_table import LiveTable

if TYPE_CHECKING:
    from nexus_tui.app import NexusApp
    from nexus_tui.state import NexusState


class NexusScreen(Screen[None]):
    #: which tab of the top bar is highlighted
    VIEW: ClassVar[str] = ""
    #: actions that change the daemon: hidden and refused in --read-only mode
    MUTATING_ACTIONS: ClassVar[frozenset[str]] = frozenset()
    BINDINGS: ClassVar[list[Any]] = [bind("nexus.back", "back", show=False)]

    @property
    def nexus(self) -> NexusApp:
        return self.app  # type: ignore[return-value]

    @property
    def state(self) -> NexusState:
        return self.nexus.state

    # --- layout --------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield TopBar(self.VIEW)
        yield Banner()
        with Vertical(id="body"):
            yield from self.compose_body()
        yield StatusLine()
        yield Footer(compact=True, show_command_palette=False)

    def compose_body(self) -> Iterable[Widget]:
        return ()

    def on_mount(self) -> None:
        self.watch(self.app, "connection", self._refresh_chrome, init=False)
        self.watch(self.app, "last_command", self._refresh_chrome, init=False)
        self.refresh_view(ALL_TOPICS)

    def on_screen_resume(self) -> None:
        self.refresh_view(ALL_TOPICS)

    def _refresh_chrome(self, *_: Any) -> None:
        if not self.is_mounted:
            return
        # while the daemon is unreachable what is shown is the last known state: dimmed,
        # STALE in the table borders (and no green `healthy` under the banner)
        stale = self.nexus.connection.state == "disconnected"
        self.set_class(stale, "-stale")
        for table in self.query(LiveTable):
            table.set_stale(stale)
        # some screens (e.g. an explanation pushed over a view) have no chrome of their own
        for bar in self.query(TopBar):
            bar.refresh_bar()
        for banner in self.query(Banner):
            banner.refresh_banner()
        for line in self.query(StatusLine):
            line.refresh_line()

    def refresh_view(self, topics: frozenset[str]) -> None:
        """Called by the app whenever state topics changed (and on resume with all)."""
        if not self.is_mounted:
            return
        self._refresh_chrome()
        self.update_view(topics)

    def update_view(self, topics: frozenset[str]) -> None:
        """Subclasses: push the state into the widgets (diffed, never clear-and-refill)."""

    def arrived(self) -> None:
        """Called by the app after a view switch made this screen current (not after a
        dialog closed over it): subclasses may choose what has the focus."""

    # --- verbs ---------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # in read-only mode a mutating verb is hidden from the footer and `?`, and its key
        # does nothing
        return not (action in self.MUTATING_ACTIONS and self.nexus.read_only)

    def action_back(self) -> None:
        if len(self.app.screen_stack) > 1:
            self.app.pop_screen()
        else:
            self.nexus.back_view()

    # --- bars ----------------------------------------------------------------------------

    # Keys typed right after `:` or `/` (type-ahead, a paste, tmux send-keys) are already
    # queued when the bar is created: the bar is mounted and focused *before* the next key is
    # dispatched (the action awaits it), or `:be /oll⏎` reaches the table as `e` (disable a
    # backend) and `enter`.

    async def on_live_table_filter_requested(self, message: LiveTable.FilterRequested) -> None:
        message.stop()
        await self.open_filter_bar(message.table)

    async def open_filter_bar(self, table: LiveTable) -> None:
        from nexus_tui.widgets.bars import FilterBar

        for old in self.query(FilterBar):
            await old.remove()
        bar = FilterBar(table)
        await self.query_one("#body").mount(bar)
        self.set_focus(bar)

    async def open_command_bar(self) -> None:
        from nexus_tui.widgets.bars import CommandBar

        for old in self.query(CommandBar):
            await old.remove()
        bar = CommandBar()
        bar.previous_focus = self.focused
        await self.query_one("#body").mount(bar)
        self.set_focus(bar)

    def main_table(self) -> LiveTable | None:
        """The table a `:view /filter` command filters (the focused one, else the first)."""
        if isinstance(self.focused, LiveTable):
            return self.focused
        tables = list(self.query(LiveTable))
        return tables[0] if tables else None

    def apply_command(self, args: list[str]) -> None:
        """Arguments of a `:view …` command: `/text` filters the main table."""
        for arg in args:
            if arg.startswith("/"):
                table = self.main_table()
                if table is not None:
                    table.set_filter(arg[1:])
