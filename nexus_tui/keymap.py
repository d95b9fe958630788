"""Every key binding of the TUI, with a stable id, its default key and what it does.

Users remap keys by id under ``[tui.keymap]`` in the daemon's config file, e.g.::

    [tui.keymap]
    "nexus.backend.drain" = "D"     # full id
    drain = "D"                     # or the last part of the id, when it is unique

The TUI reads the effective value from ``GET /v1/config`` (``values["tui.keymap"]``) and
applies it with ``App.set_keymap``; docs/tui.md lists the ids (generated from ``KEYS``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from textual.binding import Binding


@dataclass(frozen=True, slots=True)
class Key:
    id: str
    key: str  # Textual key string (comma-separated alternatives)
    label: str  # short, for the footer
    help: str  # one line, for `?` and docs/tui.md
    scope: str  # where it is active
    mutating: bool = False  # hidden and refused in --read-only mode


KEYS: tuple[Key, ...] = (
    Key("nexus.view.backends", "1", "Backends", "go to the Backends view", "global"),
    Key("nexus.view.models", "2", "Models", "go to the Models view", "global"),
    Key("nexus.view.requests", "3", "Requests", "go to the Requests view", "global"),
    Key("nexus.view.aliases", "4", "Aliases", "go to the Aliases & fallbacks view", "global"),
    Key("nexus.view.route", "5", "Route", "go to the Route (dry-run) view", "global"),
    Key(
        "nexus.command",
        "colon",
        "Cmd",
        "open the command bar (:backends, :route llama3 …)",
        "global",
    ),
    Key("nexus.help", "question_mark,f1", "Help", "show the keys of this view", "global"),
    Key("nexus.quit", "q", "Quit", "quit", "global"),
    Key(
        "nexus.back",
        "escape",
        "Back",
        "back out one level (field, filter, detail, view)",
        "global",
    ),
    Key("nexus.row.open", "enter", "Open", "open the selected row", "table"),
    Key(
        "nexus.table.filter",
        "slash",
        "Filter",
        "filter the table (!x inverts, re:x regex)",
        "table",
    ),
    Key("nexus.table.sort", "s", "Sort", "sort by the next column", "table"),
    Key("nexus.table.sort_reverse", "S", "Reverse", "reverse the sort order", "table"),
    Key("nexus.backend.drain", "d", "Drain", "drain / undrain the backend", "backends", True),
    Key("nexus.backend.enable", "e", "Enable", "enable / disable the backend", "backends", True),
    Key("nexus.backend.add", "a", "Add", "add a backend by URL (type detected)", "backends", True),
    Key("nexus.backend.remove", "x", "Remove", "remove the backend (asks first)", "backends", True),
    Key("nexus.requests.pause", "space", "Pause", "pause / resume the live tail", "requests"),
    Key("nexus.alias.new", "n", "New", "new alias or fallback chain", "aliases", True),
    Key("nexus.alias.edit", "e", "Edit", "edit the selected alias or chain", "aliases", True),
    Key(
        "nexus.alias.delete",
        "x",
        "Delete",
        "delete the selected entry (asks first)",
        "aliases",
        True,
    ),
    Key("nexus.route.run", "ctrl+r", "Route", "run the dry-run route", "route"),
    Key(
        "nexus.route.edit_model",
        "enter",
        "Edit model",
        "type in the model field (esc leaves it, then 1–5 switch views)",
        "route",
    ),
)

BY_ID: dict[str, Key] = {k.id: k for k in KEYS}
MUTATING_IDS = frozenset(k.id for k in KEYS if k.mutating)


def bind(
    binding_id: str,
    action: str,
    *,
    show: bool = True,
    priority: bool = False,
    label: str | None = None,
) -> Binding:
    """A Textual ``Binding`` for one of ``KEYS`` (so ids, keys and docs never drift)."""
    k = BY_ID[binding_id]
    return Binding(
        k.key,
        action,
        label or k.label,
        show=show,
        priority=priority,
        id=k.id,
        tooltip=k.help,
    )


def resolve_keymap(raw: Mapping[str, object] | None) -> tuple[dict[str, str], list[str]]:
    """User overrides -> a Textual keymap (id -> keys) and a list of problems.

    An override may name the full id (``nexus.backend.drain``), the id without ``nexus.``
    (``backend.drain``) or only its last part (``drain``) when that is unique.
    """
    keymap: dict[str, str] = {}
    problems: list[str] = []
    by_tail: dict[str, list[str]] = {}
    for k in KEYS:
        by_tail.setdefault(k.id.rsplit(".", 1)[-1], []).append(k.id)
    for name, value in (raw or {}).items():
        if not isinstance(value, str) or not value.strip():
            problems.append(f'tui.keymap.{name}: expected a key such as "D" or "ctrl+d"')
            continue
        if name in BY_ID:
            ident = name
        elif f"nexus.{name}" in BY_ID:
            ident = f"nexus.{name}"
        elif len(by_tail.get(name, [])) == 1:
            ident = by_tail[name][0]
        else:
            problems.append(f"tui.keymap: unknown binding id {name!r} (see docs/tui.md)")
            continue
        keymap[ident] = ",".join(part.strip() for part in value.split(",") if part.strip())
    return keymap, problems
