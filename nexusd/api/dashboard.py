"""The web dashboard (F10): ``/`` server-rendered (works without JavaScript), ``/assets/*``
from package data (no CDN, no build step), and ``/ws`` pushing live updates.

``/ws`` is plain ASGI (``LiveSocket``, in front of Quart), for two reasons measured on the
issue-11 attack: Quart queues whatever a client sends without limit (543 MB pushed = 543 MB
of RSS), and the per-viewer cost must not land on the request path. With one task per viewer
woken by every finished request, 200 viewers took chat p50 from 0.9 ms to 12 ms (24 ms when
the viewers negotiate permessage-deflate, as browsers do: each viewer compresses each update
again), because every request paid for 200 sends.

So the feed is coalesced: one ``LiveFeed`` holds the only bus subscription, collects events
for ``TICK`` (250 ms), renders them once into one ``Batch`` message (at most
``RECORDS_PER_TICK`` request rows, then absolute ``Totals``) and hands the same string to
every viewer. Per second that is at most 4 sends per viewer whatever the request rate, and
publishing a request costs one subscription, not one per viewer. Each viewer has a small
outbox; a viewer that stops reading (its socket full) loses its outbox and gets a fresh
``Snapshot`` once it drains — it never slows the daemon or the other viewers.

Inbound: the dashboard never sends anything, so a viewer may send only small (≤
``WS_MAX_MESSAGE`` bytes, else close 1009) and rare (else close 1008) messages, which are
read and dropped at once. Who may connect at all (``Origin``) is the browser guard's job
(``nexusd.api.guard``, in front of everything).

Every dashboard surface (page, initial JSON, ``/ws``) shows backend URLs with credentials
and query-string values redacted, and long request strings clipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import logging
import math
import re
import time
from collections import deque
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from quart import Quart, Response
from werkzeug.exceptions import NotFound

from nexusd.api.asgi import ASGIApp, Receive, Scope, Send

if TYPE_CHECKING:
    from nexusd.core import Nexus
    from nexusd.events import Event, Subscription

log = logging.getLogger("nexus.api")


ASSETS = {"app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8"}
#: the reference's asset names (its own end-to-end script fetches them): the same files
ASSET_ALIASES = {"dashboard.js": "app.js", "styles.css": "style.css"}
#: the badge beside the model in the requests table; chat (the common case) has none.
#: app.js has the same map.
KIND_BADGES = {
    "completions": "compl",
    "embeddings": "embed",
    "messages": "msgs",
    "responses": "resp",
}
#: a client dialect's endpoint, shown instead of "chat" (its canonical kind)
DIALECT_PATHS = {"anthropic": "messages", "responses": "responses"}
#: rows in the requests table (page, snapshot, app.js)
HISTORY_ROWS = 100

#: the live feed's coalescing period: at most 1/TICK messages per second per viewer
TICK = 0.25
#: request rows per batch (the rest are counted in ``Totals``; a human reads fewer)
RECORDS_PER_TICK = 25
#: the feed's own bus subscription (drained every tick)
FEED_QUEUE = 4096
#: batches a viewer may fall behind before it is resynchronised with a snapshot
OUTBOX = 8
#: concurrent viewers; more are told to come back later (close 1013)
MAX_VIEWERS = 1000
#: largest message a viewer may send (the dashboard sends none) → close 1009
WS_MAX_MESSAGE = 4096
#: inbound messages: a burst of this many, then this many per second → close 1008
WS_INBOUND_BURST = 20
WS_INBOUND_RATE = 5.0
#: how long closing a connection may wait for a viewer that does not read
CLOSE_TIMEOUT = 5.0
#: longest string of a request record shown (requested model, error…)
CLIP = 256
#: how often the live feed sends the trend series (``Trends`` update), in seconds
TRENDS_EVERY = 10.0
#: the trend sparklines: metric, label, least top of the scale (app.js: the same table)
TREND_CHARTS = (("rate", "req/min", 1.0), ("p95_ms", "p95", 1.0), ("error_rate", "errors", 1.0))
#: the sparkline's viewBox (app.js: the same)
SPARK_W = 120
SPARK_H = 24

#: every dashboard answer: no framing (clickjacking), nothing from elsewhere, no referrer
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def _asset(name: str) -> bytes:
    return resources.files("nexusd.api.static").joinpath(name).read_bytes()


# --- redaction -------------------------------------------------------------------------------

_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@?#]*@")
_QUERY = re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^\s?#]*\?)([^\s#]*)")
_REDACTED = "***"


def _redact_query(query: str) -> str:
    return "&".join(
        f"{key}={_REDACTED}" if sep else part
        for part in query.split("&")
        for key, sep, _ in (part.partition("="),)
    )


def redact_url(url: str) -> str:
    """``http://alice:pw@host:1/x?key=s`` → ``http://***@host:1/x?key=***``."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            netloc = f"{_REDACTED}@{netloc.rpartition('@')[2]}"
        query = _redact_query(parts.query) if parts.query else ""
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:
        return redact_text(url)


def redact_text(text: str) -> str:
    """Credentials and query-string values of any URL inside free text (an error message)."""
    if "://" not in text:
        return text
    text = _USERINFO.sub(lambda m: m.group(1) + _REDACTED + "@", text)
    return _QUERY.sub(lambda m: m.group(1) + _redact_query(m.group(2)), text)


def _clip(value: Any) -> Any:
    if isinstance(value, str) and len(value) > CLIP:
        return value[:CLIP] + "…"
    return value


def record_view(record: dict[str, Any]) -> dict[str, Any]:
    """A request record as the dashboard shows it (a copy; the bus's dict is shared)."""
    view = {k: _clip(v) for k, v in record.items()}
    if isinstance(view.get("error"), str):
        view["error"] = redact_text(view["error"])
    return view


def backend_views(core: Nexus) -> list[dict[str, Any]]:
    views = []
    for backend in core.registry.all():
        view = backend.to_json()
        view["url"] = redact_url(view["url"])
        if view["last_error"]:
            view["last_error"] = redact_text(view["last_error"])
        view["metadata"] = {
            k: redact_text(v) if isinstance(v, str) else v for k, v in view["metadata"].items()
        }
        views.append(view)
    return views


def trend_views(core: Nexus) -> dict[str, Any]:
    """The last hour per minute, overall and for each backend shown (``nexusd.trends``)."""
    return core.trends.snapshot(b.id for b in core.registry.all())


def snapshot(core: Nexus) -> dict[str, Any]:
    return {
        "stats": core.stats_snapshot(),
        "backends": backend_views(core),
        "history": [record_view(r.to_json()) for r in core.history.recent(HISTORY_ROWS)],
        "trends": trend_views(core),
    }


# --- the page --------------------------------------------------------------------------------


def install_dashboard(app: Quart, core: Nexus) -> None:
    """``/`` and ``/assets/*`` on the Quart app; ``/ws`` is ``LiveSocket`` (see create_app)."""
    # split once: placeholders are filled in one pass, so a value that looks like one
    # (a model named "{{history}}") is never expanded
    template = re.split(r"\{\{(\w+)\}\}", _asset("index.html").decode())
    assets = {name: _asset(name) for name in ASSETS}

    @app.get("/")
    async def index() -> Response:
        data = snapshot(core)
        fill = {
            "initial_data": _script_json(data),
            "summary": _summary(data),
            "trends": _trend_charts(data["trends"]["overall"]),
            "backends": _backends(data["backends"], data["trends"]["backends"]),
            "models": _models(data["backends"]),
            "history": _history(data["history"], data["backends"]),
        }
        body = "".join(fill[part] if i % 2 else part for i, part in enumerate(template))
        response = Response(body, 200, content_type="text/html; charset=utf-8")
        response.headers.update(PAGE_HEADERS)
        response.timeout = None
        return response

    @app.get("/assets/<name>")
    async def asset(name: str) -> Response:
        name = ASSET_ALIASES.get(name, name)
        if name not in assets:  # only the package's own files, by exact name
            raise NotFound()  # → the OpenAI-envelope 404 of every unknown path
        response = Response(assets[name], 200, content_type=ASSETS[name])
        response.headers.update(PAGE_HEADERS)
        response.headers["Cache-Control"] = "no-cache"
        return response


_SCRIPT_ESCAPES = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)


def _script_json(data: Any) -> str:
    """JSON safe inside ``<script type="application/json">``: with no ``<`` at all nothing can
    end the block or switch the tokenizer's state (``<!--<script>``); ``>``, ``&`` and the
    JavaScript line separators are escaped too. Every escape is still the same JSON."""
    return json.dumps(data).translate(_SCRIPT_ESCAPES)


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _duration(seconds: int) -> str:
    """``3d 4h``, ``2h 05m``, ``4m 09s``, ``42s``: uptime as people read it (app.js: same)."""
    days, rest = divmod(int(seconds), 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def _retry_badge(r: dict[str, Any]) -> str:
    """A request that needed a failover or a fallback says so (the route reason alone hid it)."""
    failed = r.get("failed_backends") or []
    if r.get("fallback_model"):
        return ' <span class="badge retry" title="a fallback model answered">fallback</span>'
    if failed:
        tried = ", ".join(failed)
        return (
            f' <span class="badge retry" title="failed first: {_e(tried)}">'
            f"failover ×{len(failed)}</span>"
        )
    return ""


def _summary(data: dict[str, Any]) -> str:
    s = data["stats"]
    healthy = sum(1 for b in data["backends"] if b["status"] == "healthy")
    models = {m["id"] for b in data["backends"] if b["status"] == "healthy" for m in b["models"]}
    cards = [
        ("Uptime", _duration(s["uptime_seconds"]), "uptime"),
        ("Requests", s["requests"]["total"], "requests"),
        ("Errors", s["requests"]["errors"], "errors"),
        ("Backends healthy", f"{healthy}/{len(data['backends'])}", "backends"),
        ("Models available", len(models), "models"),
    ]
    return "".join(
        f'<div class="card" data-summary="{key}"><div class="label">{_e(label)}'
        f'</div><div class="value">{_e(value)}</div></div>'
        for label, value, key in cards
    )


def _number(value: Any) -> float:
    """A finite, non-negative number, else 0 (only numbers ever reach the SVG)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return 0.0
    return max(float(value), 0.0)


def _coord(value: float) -> str:
    """One decimal, printed as JavaScript prints ``Math.round(v * 10) / 10``."""
    rounded = math.floor(value * 10 + 0.5) / 10
    return str(int(rounded)) if rounded == int(rounded) else repr(rounded)


def spark_points(values: list[Any], floor: float = 1.0) -> str:
    """A polyline's points in the ``0 0 SPARK_W SPARK_H`` viewBox: x spreads the points
    evenly, y scales to the largest value (at least ``floor``); a missing value is 0.
    app.js ``sparkPoints`` is the same mapping."""
    nums = [_number(v) for v in values]
    if len(nums) < 2:
        return ""
    top = max(max(nums), floor)
    last = len(nums) - 1
    return " ".join(
        f"{_coord(i * SPARK_W / last)},{_coord(SPARK_H - 1 - v / top * (SPARK_H - 2))}"
        for i, v in enumerate(nums)
    )


def _trend_value(metric: str, series: dict[str, Any]) -> str:
    """The number beside a chart: this minute's rate, the latest p95, the hour's error rate
    (app.js ``trendValue``: the same)."""
    if metric == "rate":
        return f"{int(_number(series['rate'][-1]))}/min"
    if metric == "p95_ms":
        latest = [_number(v) for v in series["p95_ms"] if v is not None]
        return f"{latest[-1]:.0f} ms" if latest else "-"
    total = sum(_number(v) for v in series["rate"])
    if not total:
        return "-"
    errors = sum(
        _number(r) * _number(e) for r, e in zip(series["rate"], series["error_rate"], strict=False)
    )
    return f"{errors / total * 100:.1f}%"


def _trend_charts(series: dict[str, Any] | None) -> str:
    """Rate, p95 and error rate over the last hour as inline SVG sparklines."""
    if not series:
        return '<div class="trends"></div>'
    out = []
    for metric, label, floor in TREND_CHARTS:
        points = spark_points(series[metric], floor)
        line = f'<polyline points="{points}"/>' if points else ""
        out.append(
            f'<div class="trend" data-trend="{metric}" title="{label}, last hour per minute">'
            f'<span class="tl">{label}</span>'
            f'<svg class="spark" viewBox="0 0 {SPARK_W} {SPARK_H}" preserveAspectRatio="none">'
            f'{line}</svg><b class="tv">{_e(_trend_value(metric, series))}</b></div>'
        )
    return f'<div class="trends">{"".join(out)}</div>'


def _backends(
    backends: list[dict[str, Any]], trends: dict[str, dict[str, Any]] | None = None
) -> str:
    if not backends:
        return (
            '<p class="empty">No backends yet — start Ollama, llama.cpp, LM Studio… or add one '
            "with <code>nexusctl backends add URL</code>.</p>"
        )
    out = []
    for b in backends:
        latency = "-" if b["latency_ema_ms"] is None else f"{b['latency_ema_ms']:.0f} ms"
        error = f'<div class="error">{_e(b["last_error"])}</div>' if b["last_error"] else ""
        out.append(
            f'<div class="backend" data-backend="{_e(b["id"])}">'
            f'<div class="head"><span class="name">{_e(b["name"])}</span>'
            f'<span class="badge status-{_e(b["status"])}">{_e(b["status"])}</span></div>'
            f'<div class="meta">{_e(b["type"])} · {_e(b["url"])} · {_e(b["source"])}</div>'
            f'<div class="numbers"><span>latency <b data-field="latency">{latency}</b></span>'
            f'<span>pending <b data-field="pending">{b["pending"]}</b></span>'
            f'<span>requests <b data-field="requests">{b["total_requests"]}</b></span>'
            f'<span>models <b data-field="models">{len(b["models"])}</b></span></div>'
            f"{_trend_charts((trends or {}).get(b['id']))}"
            f"{error}</div>"
        )
    return "".join(out)


def _models(backends: list[dict[str, Any]]) -> str:
    names = sorted({m["id"] for b in backends for m in b["models"]})
    if not names:
        return '<p class="empty">No models available.</p>'
    head = "".join(f"<th>{_e(b['name'])}</th>" for b in backends)
    rows = []
    for name in names:
        info = next(m for b in backends for m in b["models"] if m["id"] == name)
        caps = [k for k, v in info["capabilities"].items() if v] or ["text"]
        cells = []
        for b in backends:
            served = any(m["id"] == name for m in b["models"])
            mark = ("●" if b["status"] == "healthy" else "○") if served else ""
            cells.append(f'<td class="cell">{mark}</td>')
        badges = "".join(f'<span class="cap">{_e(c)}</span>' for c in caps)
        rows.append(
            f'<tr><td class="model" title="{_e(name)}">{_e(name[:50])}</td>'
            f"<td>{info['context_length']:,}</td><td>{badges}</td>{''.join(cells)}</tr>"
        )
    return (
        f"<table><thead><tr><th>Model</th><th>Context</th><th>Capabilities</th>{head}"
        f"</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _kind_badge(endpoint: str | None, dialect: str | None = None) -> str:
    """``<span class="kind">embed</span>`` for anything but OpenAI chat (and records without
    the field); Anthropic Messages and Responses requests show their own endpoint."""
    kind = DIALECT_PATHS.get(dialect or "", endpoint)
    if not kind or kind == "chat":
        return ""
    label = KIND_BADGES.get(kind, kind)
    return f'<span class="kind kind-{_e(kind)}" title="/v1/{_e(kind)}">{_e(label)}</span>'


def _history(history: list[dict[str, Any]], backends: list[dict[str, Any]]) -> str:
    names = {b["id"]: b["name"] for b in backends}
    rows = []
    for r in reversed(history):
        when = time.strftime("%H:%M:%S", time.localtime(r["time"]))
        ttft = "-" if r["ttft_ms"] is None else f"{r['ttft_ms']:.0f} ms"
        served = (
            f" → {r['served_model']}"
            if r["served_model"] not in (None, r["requested_model"])
            else ""
        )
        rows.append(
            f'<tr data-request="{_e(r["request_id"])}" class="{_e(r["status"])}">'
            f"<td>{when}</td><td>{_e(r['requested_model'])}{_e(served)}"
            f"{_kind_badge(r.get('endpoint'), r.get('dialect'))}</td>"
            f"<td>{_e(names.get(r['backend'] or '', r['backend'] or '-'))}</td>"
            f"<td>{r['status_code']}</td><td>{r['latency_ms']:.0f} ms</td>"
            f"<td>{ttft}</td>"
            f"<td>{_e(r['route_reason'] or r['error_type'] or '')}{_retry_badge(r)}</td></tr>"
        )
    body = "".join(rows) or '<tr class="empty"><td colspan="7">No requests yet.</td></tr>'
    return (
        "<table><thead><tr><th>Time</th><th>Model</th><th>Backend</th><th>Status</th>"
        "<th>Latency</th><th>TTFT</th><th>Route</th></tr></thead>"
        f'<tbody id="history-body">{body}</tbody></table>'
    )


# --- the live feed ---------------------------------------------------------------------------


class Viewer:
    """One ``/ws`` connection's side of the feed: a small outbox its writer drains."""

    __slots__ = ("close_code", "outbox", "resync", "wakeup")

    def __init__(self) -> None:
        self.outbox: deque[str] = deque()
        self.resync = True  # the first message is a snapshot
        self.close_code: int | None = None
        self.wakeup = asyncio.Event()

    def offer(self, message: str) -> None:
        if len(self.outbox) >= OUTBOX:  # not reading: forget the backlog, resync later
            self.outbox.clear()
            self.resync = True
        else:
            self.outbox.append(message)
        self.wakeup.set()

    def close(self, code: int) -> None:
        self.close_code = code
        self.wakeup.set()


class LiveFeed:
    """The one bus subscription behind every viewer; see the module docstring."""

    def __init__(self, core: Nexus) -> None:
        self.core = core
        self.viewers: set[Viewer] = set()
        self.generation = 0
        self._task: asyncio.Task[None] | None = None
        self._sub: Subscription | None = None
        self._snapshot: tuple[tuple[int, int], str] | None = None
        self._trends_due = 0.0

    def join(self) -> Viewer:
        viewer = Viewer()
        self.viewers.add(viewer)
        if self._task is None:
            # subscribe now, before the viewer's snapshot: no event can fall in between
            self._sub = self.core.bus.subscribe(FEED_QUEUE)
            self._task = asyncio.get_running_loop().create_task(self._run(self._sub))
        return viewer

    def leave(self, viewer: Viewer) -> None:
        self.viewers.discard(viewer)
        if not self.viewers and self._task is not None:
            self._task.cancel()
            self._task = None
            if self._sub is not None:
                self._sub.close()
                self._sub = None

    def snapshot_message(self) -> str:
        """Rendered at most once per broadcast (and per second), however many viewers ask."""
        key = (self.generation, int(time.monotonic()))
        if self._snapshot is None or self._snapshot[0] != key:
            message = json.dumps({"update_type": "Snapshot", "data": snapshot(self.core)})
            self._snapshot = (key, message)
        return self._snapshot[1]

    async def _run(self, sub: Subscription) -> None:
        loop = asyncio.get_running_loop()
        self._trends_due = loop.time() + TRENDS_EVERY
        while True:
            events: list[Event] = []
            try:
                async with asyncio.timeout(max(self._trends_due - loop.time(), 0.0)):
                    first = await sub.get()
                events.append(first)
                if first.type != "daemon.stopping":
                    await asyncio.sleep(TICK)
            except TimeoutError:  # nothing happened: the trends still move on
                pass
            while (event := sub.get_nowait()) is not None:
                events.append(event)
            trends = loop.time() >= self._trends_due
            if trends:
                self._trends_due = loop.time() + TRENDS_EVERY
            try:
                message = self.render(events, trends=trends)
            except Exception:  # a bug must not end the feed for everyone
                log.exception("rendering a dashboard update failed")
                message = None
            self.generation += 1
            if message is not None:
                for viewer in self.viewers:
                    viewer.offer(message)
            if self.core.shutting_down or any(e.type == "daemon.stopping" for e in events):
                for viewer in self.viewers:
                    viewer.close(1001)  # going away: app.js reconnects to the next daemon

    def render(self, events: list[Event], trends: bool = False) -> str | None:
        """One tick's events as one ``Batch`` message (None when nothing shown changed);
        ``trends``: add the trend series (every ``TRENDS_EVERY`` seconds)."""
        backends = False
        models: dict[str, Any] = {}
        records: list[dict[str, Any]] = []
        lost = 0
        for event in events:
            kind = event.type
            if kind == "request.completed":
                records.append(event.data)
            elif kind in ("backend.status", "backend.added", "backend.removed"):
                backends = True
            elif kind == "models.changed":
                models[event.data["backend"]] = event.data["models"]
            elif kind == "gap":
                lost += event.data.get("lost", 0)
                backends = True  # whatever was lost, the backends list is re-sent
        updates: list[dict[str, Any]] = []
        if backends:
            updates.append({"update_type": "BackendStatus", "data": backend_views(self.core)})
        else:
            updates.extend(
                {"update_type": "ModelChange", "data": {"backend_id": b, "models": m}}
                for b, m in models.items()
            )
        updates.extend(
            {"update_type": "RequestComplete", "data": record_view(r)}
            for r in records[-RECORDS_PER_TICK:]
        )
        if records or lost:
            stats = self.core.stats
            updates.append(
                {"update_type": "Totals", "data": {"total": stats.total, "errors": stats.errors}}
            )
        if trends:
            updates.append({"update_type": "Trends", "data": trend_views(self.core)})
        if not updates:
            return None
        return json.dumps({"update_type": "Batch", "data": updates})


class LiveSocket:
    """``/ws`` as plain ASGI in front of ``app`` (everything else goes to ``app``)."""

    def __init__(self, core: Nexus, app: ASGIApp) -> None:
        self.core = core
        self.app = app
        self.feed = LiveFeed(core)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and scope["path"] == "/ws":
            await self.serve(receive, send)
        else:
            await self.app(scope, receive, send)

    async def serve(self, receive: Receive, send: Send) -> None:
        if (await receive())["type"] != "websocket.connect":
            return
        await send({"type": "websocket.accept"})
        if self.core.shutting_down:
            await _close(send, 1001, "Nexus is shutting down")
            return
        if len(self.feed.viewers) >= MAX_VIEWERS:
            await _close(send, 1013, "too many dashboard viewers; retry later")
            return
        viewer = self.feed.join()
        reader = asyncio.ensure_future(_read(receive))
        writer = asyncio.ensure_future(self._write(viewer, send))
        try:
            done, _ = await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.feed.leave(viewer)
            reader.cancel()
            writer.cancel()
        if reader in done and (verdict := reader.result()) is not None:
            await asyncio.wait({writer})  # let a send cut short by the cancel unwind first
            await _close(send, *verdict)
            await _linger(receive)

    async def _write(self, viewer: Viewer, send: Send) -> None:
        try:
            while True:
                if viewer.close_code is not None:
                    await _close(send, viewer.close_code, "")
                    return
                if viewer.resync:
                    viewer.resync = False
                    viewer.outbox.clear()
                    message = self.feed.snapshot_message()
                elif viewer.outbox:
                    message = viewer.outbox.popleft()
                else:
                    viewer.wakeup.clear()
                    await viewer.wakeup.wait()
                    continue
                await send({"type": "websocket.send", "text": message})
        except Exception:
            log.exception("dashboard viewer failed")


async def _read(receive: Receive) -> tuple[int, str] | None:
    """Drop whatever a viewer sends (nothing, normally); a close code when it misbehaves,
    None when it left."""
    loop = asyncio.get_running_loop()
    budget = float(WS_INBOUND_BURST)
    last = loop.time()
    while True:
        message = await receive()
        kind = message["type"]
        if kind == "websocket.disconnect":
            return None
        if kind != "websocket.receive":
            continue
        data = message.get("bytes")
        text = message.get("text")
        if data is not None:
            too_big = len(data) > WS_MAX_MESSAGE
        else:
            text = text or ""
            too_big = len(text) > WS_MAX_MESSAGE or len(text.encode("utf-8", "replace")) > (
                WS_MAX_MESSAGE
            )
        del data, text, message  # nothing a viewer sends is kept
        if too_big:
            return 1009, f"messages to /ws are limited to {WS_MAX_MESSAGE} bytes"
        now = loop.time()
        budget = min(float(WS_INBOUND_BURST), budget + (now - last) * WS_INBOUND_RATE)
        last = now
        budget -= 1
        if budget < 0:
            return 1008, "/ws is a one-way feed; too many messages"


async def _linger(receive: Receive) -> None:
    """After our close frame: drop what is still in flight until the viewer's own close
    (a clean closing handshake, so it surely reads our code), for a few seconds at most."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(CLOSE_TIMEOUT):
            while (await receive())["type"] != "websocket.disconnect":
                pass


async def _close(send: Send, code: int, reason: str) -> None:
    """Close, but never wait long on a viewer that does not read."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(CLOSE_TIMEOUT):
            await send({"type": "websocket.close", "code": code, "reason": reason})
