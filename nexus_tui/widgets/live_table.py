"""A DataTable for live data: rows keyed by a stable id and updated in place.

``set_rows`` diffs against what is on screen: it removes rows that went away, changes only
the cells that changed (``update_cell``), appends new rows (``add_row``) and reorders with
``sort`` — never ``clear()``, which would reset the cursor and the scroll. The cursor stays
on the same row (by key) across updates. ``/`` filters (shown in the border title), ``s`` /
``S`` sort; columns with ``min_screen`` appear only on terminals at least that wide.

Columns are as wide as their widest cell (never narrower than ``min_width``): a cell that
grows widens its column *before* it is drawn. (Textual measures grown cells only when idle
and caches the cell it drew meanwhile, at the old width: ``draini…`` with room to spare.)
When the row under the cursor becomes another one without the cursor moving (a filter,
rows going away) the table posts ``SelectionChanged``, so detail panes follow it. A
``stale`` table (the daemon is unreachable) shows every cell dimmed, without colour, and
says STALE in its border.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from rich.text import Text
from textual.message import Message
from textual.widgets import DataTable
from textual.widgets.data_table import CellDoesNotExist, ColumnKey

from nexus_tui.keymap import bind
from nexus_tui.widgets.cells import EMPTY, Cell

Rows = Mapping[str, Mapping[str, Cell]]


@dataclass(frozen=True, slots=True)
class Column:
    key: str
    label: str
    width: int | None = None
    min_screen: int = 0  # only shown when the terminal is at least this many columns wide
    right: bool = False
    narrow: int | None = None  # fixed width on terminals narrower than NARROW (ellipsis)
    min_width: int = 0  # auto-width columns are never narrower (e.g. the longest status word)


#: below this terminal width, columns with ``narrow`` get that fixed width
NARROW = 120


class LiveTable(DataTable[Any]):
    BINDINGS = [
        bind("nexus.row.open", "select_cursor"),
        bind("nexus.table.filter", "filter"),
        bind("nexus.table.sort", "sort"),
        bind("nexus.table.sort_reverse", "sort_reverse", show=False),
        bind("nexus.back", "clear_filter", show=False),
    ]

    class FilterRequested(Message):
        def __init__(self, table: LiveTable) -> None:
            super().__init__()
            self.table = table

    class SelectionChanged(Message):
        """Another row (or none) is under the cursor, though the cursor did not move."""

        def __init__(self, table: LiveTable, key: str | None) -> None:
            super().__init__()
            self.table, self.key = table, key

        @property
        def control(self) -> LiveTable:
            return self.table

    def __init__(
        self,
        title: str,
        columns: Sequence[Column],
        *,
        sort: str | None = None,
        reverse: bool = False,
        id: str | None = None,
        open_label: str = "Open",
        open_mutates: bool = False,
    ) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=False, cell_padding=1)
        self.title = title
        self.open_label = open_label
        #: `enter` changes the daemon (e.g. "Edit"): hidden and off in --read-only mode
        self.open_mutates = open_mutates
        if open_label != "Open":  # this table's `enter` says what it does, in footer and `?`
            enter = self._bindings.key_to_bindings.get("enter", [])
            self._bindings.key_to_bindings["enter"] = [
                replace(b, description=open_label) if b.id == "nexus.row.open" else b for b in enter
            ]
        self._all_columns: list[Column] = list(columns)
        self._shown: list[Column] = []
        self._shown_layout: list[tuple[str, int | None]] = []
        self._rows: dict[str, Mapping[str, Cell]] = {}
        self._pending: dict[str, Mapping[str, Cell]] | None = None  # newest data while frozen
        self.filter_text = ""
        self.sort_column = sort or self._all_columns[0].key
        self.sort_reverse = reverse
        self.badge = ""  # e.g. "PAUSED", shown in the border title
        self.frozen = False  # True: rows stay as they are (paused); the newest data waits
        self.stale = False  # True: the daemon is unreachable, the rows are the last known

    # --- public --------------------------------------------------------------------------

    def set_rows(self, rows: Rows) -> None:
        if self.frozen:
            self._pending = dict(rows)
            return
        self._rows = dict(rows)
        self._sync()

    def set_columns(self, columns: Sequence[Column]) -> None:
        """Change the column set (e.g. one column per backend); rebuilds only if different."""
        if list(columns) != self._all_columns:
            self._all_columns = list(columns)
            if self.sort_column not in {c.key for c in columns}:
                self.sort_column = columns[0].key
            self._rebuild()

    def set_filter(self, text: str) -> None:
        if text != self.filter_text:
            self.filter_text = text
            self._sync()

    def set_stale(self, stale: bool) -> None:
        """Show the rows as the last known state (dimmed, STALE in the border) or live."""
        if stale != self.stale:
            self.stale = stale
            self._sync()

    def set_frozen(self, frozen: bool) -> None:
        self.frozen = frozen
        if not frozen and self._pending is not None:
            self._rows, self._pending = self._pending, None
        self._sync()

    @property
    def selected_key(self) -> str | None:
        if not self.row_count:
            return None
        try:
            return self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        except CellDoesNotExist:
            return None

    @property
    def visible_keys(self) -> list[str]:
        return [row.key.value for row in self.ordered_rows if row.key.value is not None]

    # --- actions -------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "clear_filter":
            return bool(self.filter_text)  # otherwise esc goes on to the screen (back)
        if action == "select_cursor" and self.open_mutates:
            return not getattr(self.app, "read_only", False)
        return True

    async def action_filter(self) -> None:
        # the screen opens the bar; awaited, so the keys typed next already go to the bar
        opener = getattr(self.screen, "open_filter_bar", None)
        if opener is not None:
            await opener(self)
        else:
            self.post_message(self.FilterRequested(self))

    def action_clear_filter(self) -> None:
        self.set_filter("")

    def action_sort(self) -> None:
        keys = [c.key for c in self._shown]
        index = keys.index(self.sort_column) if self.sort_column in keys else -1
        self.sort_column = keys[(index + 1) % len(keys)]
        self._sync()

    def action_sort_reverse(self) -> None:
        self.sort_reverse = not self.sort_reverse
        self._sync()

    # --- mechanics -----------------------------------------------------------------------

    def on_mount(self) -> None:
        self._rebuild()

    def on_resize(self) -> None:
        if self._layout_key() != self._shown_layout:
            self._rebuild()

    def _wanted_columns(self) -> list[Column]:
        width = self.app.size.width
        return [c for c in self._all_columns if width >= c.min_screen]

    def _width(self, column: Column) -> int | None:
        if column.narrow is not None and self.app.size.width < NARROW:
            return column.narrow
        return column.width

    def _layout_key(self) -> list[tuple[str, int | None]]:
        return [(c.key, self._width(c)) for c in self._wanted_columns()]

    def _rebuild(self) -> None:
        if not self.is_mounted:
            return
        cursor_key = self.selected_key
        self.clear(columns=True)
        self._shown = self._wanted_columns()
        self._shown_layout = self._layout_key()
        for c in self._shown:
            label = Text(c.label, justify="right" if c.right else "left")
            self.add_column(label, key=c.key, width=self._width(c))
            if c.min_width:
                self._grow(c.key, c.min_width)
        self._sync(cursor_key)

    def _matches(self, cells: Mapping[str, Cell]) -> bool:
        text = self.filter_text
        if not text:
            return True
        invert = text.startswith("!")
        if invert:
            text = text[1:]
        haystack = " ".join(c.plain for c in cells.values()).lower()
        if text.startswith("re:"):
            try:
                found = re.search(text[3:], haystack, re.IGNORECASE) is not None
            except re.error:
                found = text[3:].lower() in haystack
        else:
            found = text.lower() in haystack
        return found != invert

    def _sort_value(self, key: str) -> Any:
        cell = self._rows[key].get(self.sort_column, EMPTY)
        value = getattr(cell, "sort_key", cell.plain)
        return (0, value) if isinstance(value, int | float) else (1, str(value))

    def _grow(self, column: str, width: int) -> bool:
        """Widen an auto-width column to ``width`` now, before anything is drawn at the old
        width. Returns True when it grew."""
        found = self.columns.get(ColumnKey(column))
        if found is None or not found.auto_width or found.content_width >= width:
            return False
        found.content_width = width
        return True

    def _sync(self, cursor_key: str | None = None) -> None:
        if not self._shown:
            if self.is_mounted:
                self._update_title()
            return
        if cursor_key is None:
            cursor_key = self.selected_key
        before = self.selected_key
        visible = [k for k, cells in self._rows.items() if self._matches(cells)]
        wanted = set(visible)
        for row_key in list(self.rows):
            if row_key.value not in wanted:
                self.remove_row(row_key)
        present = {row_key.value for row_key in self.rows}
        columns = [c.key for c in self._shown]
        cell = self._faded if self.stale else _cell
        for key in visible:
            cells = self._rows[key]
            if key in present:
                for column in columns:
                    new = cell(cells, column)
                    old = self.get_cell(key, column)
                    if not isinstance(old, Cell) or old.signature() != new.signature():
                        grew = self._grow(column, new.cell_len)
                        # only a wider cell re-measures the column: Textual's re-measure
                        # after a narrower one would shrink it below ``min_width``
                        self.update_cell(key, column, new, update_width=grew)
            else:
                # a fresh cell per slot: sorting tells rows apart by their first cell's identity
                row = [cell(cells, c) for c in columns]
                for column, new in zip(columns, row, strict=True):
                    self._grow(column, new.cell_len)
                self.add_row(*row, key=key)
        desired = sorted(visible, key=self._sort_value, reverse=self.sort_reverse)
        if desired != self.visible_keys:
            first = columns[0]
            rank = {id(self.get_cell(k, first)): i for i, k in enumerate(desired)}
            self.sort(first, key=lambda cell: rank[id(cell)])
        if cursor_key is not None and cursor_key in wanted:
            index = self.get_row_index(cursor_key)
            if index != self.cursor_row:
                self.move_cursor(row=index, scroll=False)
        after = self.selected_key
        if after != before:
            self.post_message(self.SelectionChanged(self, after))
        self._update_title()

    @staticmethod
    def _faded(cells: Mapping[str, Cell], column: str) -> Cell:
        """A cell of a stale row: same text, dimmed, no colour (no green `healthy`)."""
        found = _cell(cells, column)
        return Cell(found.plain, "dim", sort=found.sort_key, justify=found.justify)

    def _update_title(self) -> None:
        total, shown = len(self._rows), self.row_count
        count = f"{shown}/{total}" if self.filter_text else f"{total}"
        parts = [f"{self.title} [b]{count}[/b]"]
        if self.filter_text:
            parts.append(f"[reverse] /{escape(self.filter_text)} [/reverse]")
        label = next((c.label for c in self._shown if c.key == self.sort_column), "")
        if label:
            parts.append(f"sort:{escape(label.lower())}{'↓' if self.sort_reverse else '↑'}")
        if self.badge and self.frozen:
            parts.append(f"[reverse b] {self.badge} [/]")
        if self.stale:
            parts.append("[reverse b] STALE [/] last known, not live")
        self.border_title = " ".join(parts)


def _cell(cells: Mapping[str, Cell], column: str) -> Cell:
    found = cells.get(column)
    return Cell("") if found is None else found


def escape(text: str) -> str:
    from textual.markup import escape as markup_escape

    return markup_escape(text)
