"""The frame every screen shares: view tabs + connection (top), the disconnected banner and
the status line with the last ``nexusctl`` equivalent."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual.widgets import Static

from nexus_tui.widgets.cells import tone

if TYPE_CHECKING:
    from nexus_tui.app import NexusApp

VIEWS: tuple[tuple[str, str], ...] = (
    ("backends", "Backends"),
    ("models", "Models"),
    ("requests", "Requests"),
    ("aliases", "Aliases"),
    ("route", "Route"),
)


class TopBar(Static):
    """`Nexus  1 Backends  2 Models …            ● 2/3 healthy`"""

    def __init__(self, view: str) -> None:
        super().__init__(id="topbar")
        self.view = view

    def refresh_bar(self) -> None:
        app: NexusApp = self.app  # type: ignore[assignment]
        left = Text.assemble((" Nexus ", "bold reverse"))
        for name, label in VIEWS:
            key = app.key_display(f"nexus.view.{name}")
            style = "bold reverse" if name == self.view else ""
            left.append(" ")
            left.append(f"{key} {label}", style=style)
        conn = app.connection
        backends = app.state.backends.values()
        if conn.state == "connected":
            healthy = sum(1 for b in backends if b.get("status") == "healthy")
            right = Text(f"● {healthy}/{len(app.state.backends)} healthy", style=tone("good"))
        elif conn.state == "connecting":
            right = Text("… connecting", style=tone("warn"))
        else:
            right = Text("○ disconnected", style=tone("bad"))
        if app.read_only:
            right = Text.assemble(("READ-ONLY", "bold reverse"), " ", right)
        width = self.size.width or app.size.width
        pad = max(1, width - left.cell_len - right.cell_len - 1)
        if left.cell_len + right.cell_len + 1 > width:
            # narrow: shorten the tab labels to their keys + first letters
            left = Text.assemble((" Nexus ", "bold reverse"))
            for name, label in VIEWS:
                style = "bold reverse" if name == self.view else ""
                left.append(" ")
                left.append(f"{app.key_display(f'nexus.view.{name}')}{label[:3]}", style=style)
            pad = max(1, width - left.cell_len - right.cell_len - 1)
        self.update(Text.assemble(left, " " * pad, right))

    def on_resize(self) -> None:
        self.refresh_bar()


class Banner(Static):
    """Shown only while the daemon is unreachable: what is wrong and when we retry."""

    def __init__(self) -> None:
        super().__init__(id="banner")

    def refresh_banner(self) -> None:
        app: NexusApp = self.app  # type: ignore[assignment]
        conn = app.connection
        self.display = conn.state == "disconnected"
        if self.display:
            self.update(
                Text.assemble(
                    (f" disconnected — retrying in {conn.retry_in}s ", "bold"),
                    f" {conn.reason}",
                )
            )


class StatusLine(Static):
    """The last action as the equivalent ``nexusctl`` command, with the daemon's answer."""

    def __init__(self) -> None:
        super().__init__(id="statusline")

    def refresh_line(self) -> None:
        app: NexusApp = self.app  # type: ignore[assignment]
        note = app.last_command
        if not note.command and not note.message:
            help_key = app.key_display("nexus.help")
            cmd_key = app.key_display("nexus.command")
            self.update(Text(f" {help_key} keys · {cmd_key} command · ctrl+p palette", "dim"))
            return
        line = Text(" ")
        if note.command:
            line.append("$ ", style="dim")
            line.append(note.command, style="bold")
        if note.message:
            line.append("  ")
            line.append(note.message, style=tone("good" if note.ok else "bad"))
        self.update(line)
