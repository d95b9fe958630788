"""Table cells and the small formatters every view uses (words first, colour second, so the
views read the same under ``NO_COLOR``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rich.text import Text

#: semantic tones -> Rich styles; under NO_COLOR, weight and reverse video instead of hue
#: (Textual greys colours out, and dark red on dark grey would be unreadable)
TONES = {
    "good": "green",
    "bad": "bold red",
    "warn": "yellow",
    "note": "magenta",
    "accent": "cyan",
    "dim": "dim",
}
MONO_TONES = {
    "good": "",
    "bad": "bold reverse",
    "warn": "bold",
    "note": "italic",
    "accent": "",
    "dim": "dim",
}
_active = TONES
STATUS_TONE = {
    "healthy": "good",
    "unhealthy": "bad",
    "loading": "warn",
    "draining": "note",
    "disabled": "dim",
    "unknown": "dim",
}
#: a status column is at least this wide, so no status word is ever cut (`draini…`)
STATUS_WIDTH = max(len(word) for word in STATUS_TONE)


def set_monochrome(on: bool) -> None:
    """Called by the app at start with ``App.no_color`` (the ``NO_COLOR`` convention)."""
    global _active
    _active = MONO_TONES if on else TONES


def tone(kind: str) -> str:
    return _active.get(kind, "")


def status_style(value: str | None) -> str:
    return tone(STATUS_TONE.get(value or "unknown", ""))


BLOCKS = "▁▂▃▄▅▆▇█"
DASH = "–"


class Cell(Text):
    """A ``rich.text.Text`` that also carries the value the column sorts by."""

    def __init__(
        self,
        text: str = "",
        style: str = "",
        *,
        sort: Any = None,
        justify: str | None = None,
    ) -> None:
        super().__init__(text, style=style, justify=justify, no_wrap=True, overflow="ellipsis")  # type: ignore[arg-type]
        self.sort_key: Any = text.lower() if sort is None else sort

    def signature(self) -> tuple[Any, ...]:
        return (self.plain, str(self.style), self._spans, self.sort_key)


EMPTY = Cell("")


def num(value: float | int | None, *, fmt: str = "{:d}") -> Cell:
    if value is None:
        return Cell(DASH, "dim", sort=-1.0, justify="right")
    return Cell(fmt.format(value), sort=float(value), justify="right")


def ms(value: float | None) -> Cell:
    if value is None:
        return Cell(DASH, "dim", sort=-1.0, justify="right")
    text = f"{value / 1000:.1f}s" if value >= 10_000 else f"{value:.0f}ms"
    return Cell(text, sort=float(value), justify="right")


def status(value: str | None) -> Cell:
    value = value or "unknown"
    return Cell(value, status_style(value), sort=value)


def clock(ts: float | None) -> Cell:
    if ts is None:
        return Cell(DASH, "dim", sort=0.0)
    return Cell(datetime.fromtimestamp(ts).strftime("%H:%M:%S"), sort=float(ts))


def sparkline(values: list[float], width: int = 8) -> Cell:
    """Latest ``width`` samples as block characters, scaled between their min and max."""
    tail = values[-width:]
    if not tail:
        return Cell(" " * width, sort=-1.0)
    low, high = min(tail), max(tail)
    span = (high - low) or 1.0
    bars = "".join(BLOCKS[min(7, int((v - low) / span * 7.999))] for v in tail)
    if high == low:
        bars = BLOCKS[1] * len(tail)
    return Cell(bars.ljust(width), tone("accent"), sort=float(tail[-1]))


def trend(values: list[Any], width: int = 10, *, how: str = "sum") -> Cell:
    """A last-hour series (``GET /v1/trends``, one point a minute) in ``width`` characters:
    consecutive minutes grouped (``sum`` for a rate, ``max`` for latency or error rate),
    scaled from zero to the largest group; a group without data is a space."""
    nums: list[float | None] = [
        float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 else None
        for v in values
    ]
    if not nums or width <= 0:
        return Cell(" " * max(width, 0), sort=-1.0)
    size = -(-len(nums) // width)  # minutes per character
    nums = [None] * (size * width - len(nums)) + nums
    groups: list[float | None] = []
    for i in range(width):
        chunk = [v for v in nums[i * size : (i + 1) * size] if v is not None]
        groups.append(None if not chunk else sum(chunk) if how == "sum" else max(chunk))
    top = max((g for g in groups if g is not None), default=0.0)
    text = "".join(
        " " if g is None else BLOCKS[min(7, int(g / top * 7.999))] if top else BLOCKS[0]
        for g in groups
    )
    last = next((g for g in reversed(groups) if g is not None), 0.0)
    return Cell(text, tone("accent"), sort=float(last))


def context(lengths: list[int]) -> Cell:
    lengths = [n for n in lengths if n]
    if not lengths:
        return Cell(DASH, "dim", sort=0, justify="right")
    low, high = lengths[0], lengths[-1]
    text = short_int(high) if low == high else f"{short_int(low)}-{short_int(high)}"
    return Cell(text, sort=high, justify="right")


def short_int(n: int) -> str:
    if n >= 1_000_000:
        return f"{n / 1_000_000:g}M"
    if n >= 1024:
        return f"{round(n / 1024)}k"
    return str(n)


CAPS = (("vision", "V"), ("tools", "T"), ("json_mode", "J"), ("embeddings", "E"))


def capabilities(caps: dict[str, Any] | None) -> Cell:
    caps = caps or {}
    text = "".join(letter if caps.get(name) else "·" for name, letter in CAPS)
    return Cell(text, sort=text.count("·"))


def yes_no(value: Any) -> Cell:
    if value is None:
        return Cell(DASH, "dim", sort=0)
    return Cell("yes" if value else "no", "" if value else "dim", sort=int(bool(value)))
