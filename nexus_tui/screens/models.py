"""Models: the model × backend matrix — capabilities, context length, which backends are
healthy for each model, and the aliases that point at it. `enter` dry-runs a route."""

from __future__ import annotations

from collections.abc import Iterable

from textual.widget import Widget

from nexus_tui.screens.base import NexusScreen
from nexus_tui.state import BACKENDS, MODELS, ModelRow
from nexus_tui.widgets import cells
from nexus_tui.widgets.cells import Cell, tone
from nexus_tui.widgets.live_table import Column, LiveTable

BASE_COLUMNS = (
    Column("id", "Model"),
    Column("ctx", "Context", right=True),
    Column("caps", "Caps"),
    Column("healthy", "Healthy", right=True),
    Column("aliases", "Aliases"),
)
#: per-backend cells: routable, served but not routable (status shown), not served
SERVED_OK, NOT_SERVED = "●", "·"


def model_row(row: ModelRow, backend_ids: list[str]) -> dict[str, Cell]:
    healthy = row.healthy
    out = {
        "id": Cell(row.id, "bold"),
        "ctx": cells.context(row.context_lengths),
        "caps": cells.capabilities(row.capabilities),
        "healthy": Cell(
            f"{len(healthy)}/{len(row.backends)}",
            tone("good" if healthy else "bad"),
            sort=len(healthy),
            justify="right",
        ),
        "aliases": Cell(", ".join(row.aliases), tone("accent")),
    }
    serving = {b["backend_id"]: b for b in row.backends}
    for bid in backend_ids:
        b = serving.get(bid)
        if b is None:
            out[f"b:{bid}"] = Cell(NOT_SERVED, "dim", sort=0, justify="center")
        elif b["routable"]:
            out[f"b:{bid}"] = Cell(SERVED_OK, tone("good"), sort=2, justify="center")
        else:
            status = str(b.get("status") or "unknown")
            out[f"b:{bid}"] = Cell(status, cells.status_style(status), sort=1, justify="center")
    return out


class ModelsScreen(NexusScreen):
    VIEW = "models"
    AUTO_FOCUS = "#models"

    def compose_body(self) -> Iterable[Widget]:
        yield LiveTable("Models", BASE_COLUMNS, id="models", open_label="Route")

    def update_view(self, topics: frozenset[str]) -> None:
        if not topics & {MODELS, BACKENDS}:
            return
        table = self.query_one("#models", LiveTable)
        backends = self.state.backends
        ids = list(backends)
        table.set_columns(
            [
                *BASE_COLUMNS,
                *(Column(f"b:{bid}", str(backends[bid].get("name") or bid)) for bid in ids),
            ]
        )
        table.set_rows({row.id: model_row(row, ids) for row in self.state.models()})

    def on_data_table_row_selected(self, event: LiveTable.RowSelected) -> None:
        event.stop()
        if event.row_key.value:
            self.nexus.open_route(event.row_key.value)
