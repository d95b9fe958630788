"""Requests: the live tail (newest on top, `space` pauses) and, on `enter`, the routing
explanation of one request (``GET /v1/requests/{id}``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

from rich.text import Text
from textual.containers import VerticalScroll
from textual.widget import Widget
from textual.widgets import Static

from nexus_tui.keymap import bind
from nexus_tui.screens.base import NexusScreen
from nexus_tui.state import BACKENDS, REQUESTS
from nexus_tui.widgets import cells
from nexus_tui.widgets.cells import Cell, tone
from nexus_tui.widgets.explain import explain
from nexus_tui.widgets.live_table import Column, LiveTable

COLUMNS = (
    Column("time", "Time"),
    Column("kind", "Kind", width=5),
    Column("model", "Model→served", narrow=16),
    Column("backend", "Backend", narrow=10),
    Column("status", "St", right=True),
    Column("latency", "Latency", right=True),
    Column("ttft", "TTFT", right=True),
    Column("tokens", "Tokens", right=True),
    Column("reason", "Route reason", min_screen=100),
)


#: the Kind column: which API the request called (records from before the field: chat)
KINDS = {
    "chat": "chat",
    "completions": "compl",
    "embeddings": "embed",
    "messages": "msgs",
    "responses": "resp",
}
#: a client dialect's endpoint, shown instead of "chat" (its canonical kind)
DIALECT_KINDS = {"anthropic": "messages", "responses": "responses"}


def kind_cell(endpoint: Any, dialect: Any = None) -> Cell:
    name = DIALECT_KINDS.get(str(dialect), str(endpoint or "chat"))
    return Cell(KINDS.get(name, name), "dim" if name == "chat" else tone("accent"), sort=name)


def request_row(r: dict[str, Any], backend_name: str) -> dict[str, Cell]:
    requested = str(r.get("requested_model") or "")
    served = r.get("served_model")
    model = requested if not served or served == requested else f"{requested}→{served}"
    if r.get("fallback_model"):
        model += " (fallback)"
    ok = r.get("status") == "success"
    code = r.get("status_code")
    prompt, completion = r.get("prompt_tokens"), r.get("completion_tokens")
    tokens = (  # embeddings have prompt tokens only: "12/–"
        f"{'–' if prompt is None else prompt}/{'–' if completion is None else completion}"
        if prompt is not None or completion is not None
        else "–"
    )
    return {
        "time": cells.clock(r.get("time")),
        "kind": kind_cell(r.get("endpoint"), r.get("dialect")),
        "model": Cell(model),
        "backend": Cell(backend_name or "–", "" if backend_name else "dim"),
        "status": Cell(
            str(code or ("ok" if ok else "err")),
            tone("good" if ok else "bad"),
            sort=code or 0,
            justify="right",
        ),
        "latency": cells.ms(r.get("latency_ms")),
        "ttft": cells.ms(r.get("ttft_ms")),
        "tokens": Cell(tokens, sort=(prompt or 0) + (completion or 0), justify="right"),
        "reason": Cell(str(r.get("route_reason") or r.get("error") or ""), "dim"),
        "outcome": Cell(str(r.get("outcome") or "")),  # filterable, not a column
        "id": Cell(str(r.get("request_id") or "")),
    }


class RequestsScreen(NexusScreen):
    VIEW = "requests"
    AUTO_FOCUS = "#requests"
    BINDINGS: ClassVar[list[Any]] = [bind("nexus.requests.pause", "pause")]

    def compose_body(self) -> Iterable[Widget]:
        table = LiveTable(
            "Requests", COLUMNS, id="requests", sort="time", reverse=True, open_label="Explain"
        )
        table.badge = "PAUSED"
        yield table

    def __init__(self) -> None:
        super().__init__()
        self._cache: dict[str, tuple[dict[str, Any], str, dict[str, Cell]]] = {}

    @property
    def table(self) -> LiveTable:
        return self.query_one("#requests", LiveTable)

    @property
    def paused(self) -> bool:
        return self.table.frozen

    def update_view(self, topics: frozenset[str]) -> None:
        if REQUESTS not in topics and BACKENDS not in topics:
            return
        # the hot path under load: build cells only for records not seen before
        name = self.state.backend_name
        cache, self._cache = self._cache, {}
        rows = {}
        for rid, record in self.state.requests.items():
            backend = name(record.get("backend"))
            hit = cache.get(rid)
            if hit is None or hit[0] is not record or hit[1] != backend:
                hit = (record, backend, request_row(record, backend))
            self._cache[rid] = hit
            rows[rid] = hit[2]
        self.table.set_rows(rows)

    def action_pause(self) -> None:
        self.table.set_frozen(not self.table.frozen)
        self.nexus.note("live tail paused (space resumes)" if self.paused else "live tail resumed")

    def on_data_table_row_selected(self, event: LiveTable.RowSelected) -> None:
        event.stop()
        if event.row_key.value:
            self.app.push_screen(RequestExplainScreen(event.row_key.value))


class RequestExplainScreen(NexusScreen):
    """Why a request went where it went: candidates, each exclusion, the attempts."""

    VIEW = "requests"
    AUTO_FOCUS = "#explain-scroll"

    def __init__(self, request_id: str) -> None:
        super().__init__()
        self.request_id = request_id

    def compose_body(self) -> Iterable[Widget]:
        with VerticalScroll(id="explain-scroll") as scroll:
            scroll.border_title = f"Request {self.request_id}"
            yield Static(Text("loading…", "dim"), id="explain")

    def on_mount(self) -> None:
        super().on_mount()
        self.run_worker(self._load(), group="explain", exclusive=True, exit_on_error=False)

    async def _load(self) -> None:
        from nexusd.control.client import ControlError

        target = self.query_one("#explain", Static)
        try:
            data = await self.nexus.source.call("GET", f"/v1/requests/{self.request_id}")
        except ControlError as exc:
            target.update(Text(getattr(exc, "message", None) or str(exc), tone("bad")))
            return
        self.nexus.note_command(["nexusctl", "explain", self.request_id])
        target.update(explain(data))
