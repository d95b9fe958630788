"""Output for the CLIs: stable JSON for scripts, aligned tables for people."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO


def emit_json(data: Any, out: TextIO | None = None) -> None:
    out = out or sys.stdout
    json.dump(data, out, sort_keys=True, separators=(",", ":"))
    out.write("\n")
    out.flush()


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.1f}"
    if isinstance(value, list):
        return ",".join(_cell(v) for v in value) or "-"
    if isinstance(value, dict):
        return ",".join(k for k, v in value.items() if v) or "-"
    return str(value)


def table(
    rows: Sequence[dict[str, Any]],
    columns: Sequence[str],
    headers: Sequence[str] | None = None,
    out: TextIO | None = None,
) -> None:
    out = out or sys.stdout
    heads = [h.upper() for h in (headers or columns)]
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(heads)]
    for line in [heads, *cells]:
        out.write("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip() + "\n")
    if not rows:
        out.write("(none)\n")


def show_any(data: Any, out: TextIO | None = None) -> None:
    """Any JSON document as tables for people: a list of objects is one table; an object is
    key/value rows (nested objects flattened to dotted keys), and each of its lists of
    objects follows as its own titled table."""
    out = out or sys.stdout
    if isinstance(data, list) and all(isinstance(row, dict) for row in data):
        columns = list(dict.fromkeys(k for row in data for k in row))
        table(data, columns, out=out)
        return
    if not isinstance(data, dict):
        out.write(_cell(data) + "\n")
        return
    rows: list[dict[str, Any]] = []
    nested: list[tuple[str, list[dict[str, Any]]]] = []
    _flatten(data, "", rows, nested)
    if rows:
        table(rows, ("key", "value"), out=out)
    for title, items in nested:
        out.write(f"\n{title.upper()}\n")
        show_any(items, out)


def _flatten(
    data: dict[str, Any],
    prefix: str,
    rows: list[dict[str, Any]],
    nested: list[tuple[str, list[dict[str, Any]]]],
) -> None:
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            _flatten(value, f"{name}.", rows, nested)
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            nested.append((name, value))
        else:
            rows.append({"key": name, "value": value})


def exit_quietly_on_broken_pipe() -> int:
    """``nexus … | head``: the reader left. Exit like other Unix tools, without a traceback
    (and without Python complaining again when it flushes stdout at exit)."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 141  # 128 + SIGPIPE, what a shell reports for a tool killed by it
