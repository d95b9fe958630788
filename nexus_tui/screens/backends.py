"""Backends: one row per backend with live status, load and its request rate over the last
hour (a sparkline, 6 minutes a character); verbs to
drain, enable/disable, add and remove; `enter` for the details of one backend."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.widget import Widget
from textual.widgets import Static

from nexus_tui.keymap import bind
from nexus_tui.screens.base import NexusScreen
from nexus_tui.state import BACKENDS, REQUESTS
from nexus_tui.widgets import cells
from nexus_tui.widgets.cells import Cell, tone
from nexus_tui.widgets.live_table import Column, LiveTable

COLUMNS = (
    Column("name", "Name"),
    Column("type", "Type"),
    Column("source", "Source", min_screen=110),
    Column("zone", "Zone", min_screen=110),
    Column("status", "Status", min_width=cells.STATUS_WIDTH),
    Column("pending", "Pend", right=True),
    Column("latency", "EMA", right=True),
    Column("requests", "Reqs", right=True),
    Column("errors", "Err", right=True),
    Column("models", "Mdl", right=True),
    Column("spark", "Rate 1h", width=10),
)


def backend_row(backend: dict[str, Any], trend: dict[str, Any] | None) -> dict[str, Cell]:
    return {
        "name": Cell(str(backend.get("name") or backend["id"]), "bold"),
        "type": Cell(str(backend.get("type") or "")),
        "source": Cell(str(backend.get("source") or "")),
        "zone": Cell(str(backend.get("zone") or "")),
        "status": cells.status(backend.get("status")),
        "pending": cells.num(backend.get("pending")),
        "latency": cells.ms(backend.get("latency_ema_ms")),
        "requests": cells.num(backend.get("total_requests")),
        "errors": cells.num(backend.get("errors")),
        "models": cells.num(len(backend.get("models") or [])),
        "spark": cells.trend((trend or {}).get("rate") or [], 10),
        "url": Cell(str(backend.get("url") or "")),  # not a column: lets `/` match URLs
    }


#: characters per last-hour sparkline in the facts grid (5 minutes each)
FACTS_SPARK = 12


def trend_texts(trend: dict[str, Any] | None, width: int = FACTS_SPARK) -> tuple[Text, ...]:
    """Request rate, p95 and error rate over the last hour as sparklines with the latest
    values: this minute's rate, the latest p95, the hour's error rate."""
    if not trend:
        return (Text("no requests in the last hour", "dim"), Text(""), Text(""))
    rate = trend.get("rate") or []
    p95 = [v for v in trend.get("p95_ms") or [] if isinstance(v, (int, float))]
    total = sum(v for v in rate if isinstance(v, (int, float)))
    errors = sum(
        r * e
        for r, e in zip(rate, trend.get("error_rate") or [], strict=False)
        if isinstance(r, (int, float)) and isinstance(e, (int, float))
    )
    parts = (
        ("req/min ", cells.trend(rate, width), f" {rate[-1] if rate else 0}"),
        (
            "",
            cells.trend(trend.get("p95_ms") or [], width, how="max"),
            f" {cells.ms(p95[-1]).plain}" if p95 else f" {cells.DASH}",
        ),
        (
            "errors  ",
            cells.trend(trend.get("error_rate") or [], width, how="max"),
            f" {errors / total:.0%}" if total else f" {cells.DASH}",
        ),
    )
    out = []
    for label, spark, value in parts:
        text = Text(label, "dim")
        text.append(spark.plain, spark.style)
        text.append(value)
        out.append(text)
    return tuple(out)


def backend_facts(backend: dict[str, Any], trend: dict[str, Any] | None = None) -> Table:
    """The facts of one backend as a two-column grid (details screen and preview)."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    flags = [
        "enabled" if backend.get("enabled", True) else "disabled",
        *(["draining"] if backend.get("draining") else []),
    ]
    name = str(backend.get("name") or backend["id"])
    if name != backend["id"]:
        name += f" (id {backend['id']})"
    grid.add_row("Backend", name, "Status", cells.status(backend.get("status")))
    grid.add_row("URL", str(backend.get("url")), "Flags", ", ".join(flags))
    grid.add_row(
        "Type",
        f"{backend.get('type')} · {backend.get('source')}",
        "Zone",
        f"{backend.get('zone')} · priority {backend.get('priority')}",
    )
    grid.add_row(
        "Load",
        f"{backend.get('pending', 0)} pending · {backend.get('total_requests', 0)} requests"
        f" · {backend.get('errors', 0)} errors",
        "Latency",
        cells.ms(backend.get("latency_ema_ms")).plain + " EMA",
    )
    rate, p95, errors = trend_texts(trend)
    grid.add_row("Last hour", rate, "p95", p95)
    grid.add_row("", errors, "", "")
    last_error = backend.get("last_error")
    dialects = backend.get("native_dialects") or []
    grid.add_row(
        "Last error",
        Text(str(last_error), tone("bad")) if last_error else Text("none", "dim"),
        "Native",
        ", ".join(dialects) if dialects else Text("none (translated)", "dim"),
    )
    return grid


#: terminals at least this tall show the selected backend under the table
PREVIEW_HEIGHT = 36


class BackendsScreen(NexusScreen):
    VIEW = "backends"
    AUTO_FOCUS = "#backends"
    MUTATING_ACTIONS = frozenset({"drain", "enable", "add", "remove"})
    BINDINGS: ClassVar[list[Any]] = [
        bind("nexus.backend.drain", "drain"),
        bind("nexus.backend.enable", "enable"),
        bind("nexus.backend.add", "add"),
        bind("nexus.backend.remove", "remove"),
    ]

    def compose_body(self) -> Iterable[Widget]:
        yield LiveTable("Backends", COLUMNS, id="backends", open_label="Details")
        yield Static(id="backend-preview")

    @property
    def table(self) -> LiveTable:
        return self.query_one("#backends", LiveTable)

    def update_view(self, topics: frozenset[str]) -> None:
        if not topics & {BACKENDS, REQUESTS}:
            return
        state = self.state
        self.table.set_rows(
            {bid: backend_row(b, state.backend_trend(bid)) for bid, b in state.backends.items()}
        )
        self._preview()

    def on_resize(self) -> None:
        self._preview()

    def on_data_table_row_highlighted(self, event: LiveTable.RowHighlighted) -> None:
        self._preview()

    def on_live_table_selection_changed(self, event: LiveTable.SelectionChanged) -> None:
        # a filter (`/`, `:be /ollama`) or a removed row put another backend under the cursor
        self._preview()

    def _preview(self) -> None:
        """On tall terminals: the selected backend's facts and models below the table."""
        preview = self.query_one("#backend-preview", Static)
        backend = self.selected()
        preview.display = self.app.size.height >= PREVIEW_HEIGHT and backend is not None
        if not preview.display or backend is None:
            return
        models = Text("Models  ", style="bold")
        for i, m in enumerate(backend.get("models") or []):
            if i:
                models.append(" · ")
            models.append(m["id"])
            ctx = cells.context([int(m.get("context_length") or 0)]).plain
            models.append(f" {ctx} {cells.capabilities(m.get('capabilities')).plain}", "dim")
        preview.border_title = f"{backend.get('name') or backend['id']} · enter for details"
        preview.update(
            Group(backend_facts(backend, self.state.backend_trend(backend["id"])), models)
        )

    def selected(self) -> dict[str, Any] | None:
        key = self.table.selected_key
        return self.state.backends.get(key) if key else None

    def on_data_table_row_selected(self, event: LiveTable.RowSelected) -> None:
        event.stop()
        if event.row_key.value in self.state.backends:
            self.app.push_screen(BackendDetailScreen(event.row_key.value))

    def action_drain(self) -> None:
        backend = self.selected()
        if backend is None:
            return
        undo = bool(backend.get("draining")) or backend.get("status") == "draining"
        argv = ["nexusctl", "backends", "drain", backend["id"], *(["--undo"] if undo else [])]
        self.nexus.patch_backend(backend["id"], {"drain": not undo}, argv)

    def action_enable(self) -> None:
        backend = self.selected()
        if backend is None:
            return
        enable = not backend.get("enabled", True)
        verb = "enable" if enable else "disable"
        self.nexus.patch_backend(
            backend["id"], {"enabled": enable}, ["nexusctl", "backends", verb, backend["id"]]
        )

    def action_add(self) -> None:
        from nexus_tui.screens.dialogs import AddBackendForm

        self.app.push_screen(AddBackendForm())

    def action_remove(self) -> None:
        from nexus_tui.screens.dialogs import ConfirmScreen

        backend = self.selected()
        if backend is None:
            return
        bid = backend["id"]
        argv = ["nexusctl", "backends", "rm", bid]
        question = f"Remove backend {backend.get('name') or bid} ({backend.get('url')})?"
        if backend.get("source") == "static":
            question += " It is also removed from the config file."

        def answer(yes: bool | None) -> None:
            if yes:
                self.nexus.mutate_in_background(argv, "DELETE", f"/v1/backends/{bid}")

        self.app.push_screen(ConfirmScreen(question, " ".join(argv)), answer)


MODEL_COLUMNS = (
    Column("id", "Model"),
    Column("ctx", "Context", right=True),
    Column("caps", "Caps"),
    Column("loaded", "Loaded"),
    Column("max_out", "Max out", right=True),
)
RECENT_COLUMNS = (
    Column("time", "Time"),
    Column("model", "Model"),
    Column("status", "Status"),
    Column("latency", "Latency", right=True),
    Column("ttft", "TTFT", right=True),
)


class BackendDetailScreen(NexusScreen):
    """`enter` on a backend: its facts, its models with capabilities, recent requests."""

    VIEW = "backends"
    AUTO_FOCUS = "#backend-models"

    def __init__(self, backend_id: str) -> None:
        super().__init__()
        self.backend_id = backend_id

    def compose_body(self) -> Iterable[Widget]:
        info = Static(id="backend-info")
        info.border_title = f"Backend {self.backend_id} · esc back"
        yield info
        yield LiveTable("Models", MODEL_COLUMNS, id="backend-models", open_label="Route")
        yield LiveTable(
            "Recent requests",
            RECENT_COLUMNS,
            id="backend-requests",
            sort="time",
            reverse=True,
            open_label="Explain",
        )

    def on_data_table_row_selected(self, event: LiveTable.RowSelected) -> None:
        event.stop()
        key = event.row_key.value
        if not key:
            return
        if event.data_table.id == "backend-models":
            self.nexus.open_route(key)
        else:
            from nexus_tui.screens.requests import RequestExplainScreen

            self.app.push_screen(RequestExplainScreen(key))

    def update_view(self, topics: frozenset[str]) -> None:
        backend = self.state.backends.get(self.backend_id)
        info = self.query_one("#backend-info", Static)
        if backend is None:
            info.update(Text(f"backend {self.backend_id} was removed", tone("bad")))
            return
        grid = backend_facts(backend, self.state.backend_trend(self.backend_id))
        info.update(grid)
        self.query_one("#backend-models", LiveTable).set_rows(
            {
                m["id"]: {
                    "id": Cell(m["id"], "bold"),
                    "ctx": cells.context([int(m.get("context_length") or 0)]),
                    "caps": cells.capabilities(m.get("capabilities")),
                    "loaded": cells.yes_no(m.get("loaded")),
                    "max_out": cells.num(m.get("max_output_tokens")),
                }
                for m in backend.get("models") or []
            }
        )
        if REQUESTS in topics:
            self.query_one("#backend-requests", LiveTable).set_rows(
                {
                    rid: request_cells(r)
                    for rid, r in self.state.requests.items()
                    if r.get("backend") == self.backend_id
                }
            )


def request_cells(r: dict[str, Any]) -> dict[str, Cell]:
    ok = r.get("status") == "success"
    code = r.get("status_code")
    return {
        "time": cells.clock(r.get("time")),
        "model": Cell(str(r.get("served_model") or r.get("requested_model") or "")),
        "status": Cell(str(code or r.get("status")), tone("good" if ok else "bad"), sort=code or 0),
        "latency": cells.ms(r.get("latency_ms")),
        "ttft": cells.ms(r.get("ttft_ms")),
    }
