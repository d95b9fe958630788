"""The web dashboard (F10): ``/`` server-rendered (works without JavaScript), ``/assets/*``
from package data (no CDN, no build step), and ``/ws`` pushing live updates.

Each WebSocket client reads its own bounded event-bus subscription: a browser that stops
reading loses old updates (and gets a ``Gap`` message) but never slows the daemon or the
other viewers.
"""

from __future__ import annotations

import html
import json
import time
from collections import OrderedDict
from importlib import resources
from typing import TYPE_CHECKING, Any

from quart import Quart, Response, websocket

if TYPE_CHECKING:
    from nexusd.core import Nexus
    from nexusd.events import Event

ASSETS = {"app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8"}
WS_QUEUE = 256
#: the badge beside the model in the requests table; chat (the common case) has none.
#: app.js has the same map.
KIND_BADGES = {"completions": "compl", "embeddings": "embed"}


def _asset(name: str) -> bytes:
    return resources.files("nexusd.api.static").joinpath(name).read_bytes()


def backend_views(core: Nexus) -> list[dict[str, Any]]:
    return [b.to_json() for b in core.registry.all()]


def snapshot(core: Nexus) -> dict[str, Any]:
    return {
        "stats": core.stats.snapshot(core.registry, core.uptime_seconds),
        "backends": backend_views(core),
        "history": [r.to_json() for r in core.history.recent(100)],
    }


def install_dashboard(app: Quart, core: Nexus) -> None:
    page = _asset("index.html").decode()

    @app.get("/")
    async def index() -> Response:
        data = snapshot(core)
        body = (
            page.replace("{{initial_data}}", _script_json(data))
            .replace("{{summary}}", _summary(data))
            .replace("{{backends}}", _backends(data["backends"]))
            .replace("{{models}}", _models(data["backends"]))
            .replace("{{history}}", _history(data["history"], data["backends"]))
        )
        response = Response(body, 200, content_type="text/html; charset=utf-8")
        response.timeout = None
        return response

    @app.get("/assets/<name>")
    async def asset(name: str) -> Response:
        if name not in ASSETS:
            return Response("Asset not found", 404, content_type="text/plain")
        response = Response(_asset(name), 200, content_type=ASSETS[name])
        response.headers["Cache-Control"] = "no-cache"
        return response

    rendered: OrderedDict[int, str | None] = OrderedDict()

    def message_for(event: Event) -> str | None:
        """Serialise each event once, whatever the number of viewers."""
        if event.seq in rendered:
            return rendered[event.seq]
        message = _ws_message(core, event.type, event.data)
        if event.seq:
            rendered[event.seq] = message
            if len(rendered) > WS_QUEUE * 2:
                rendered.popitem(last=False)
        return message

    @app.websocket("/ws")
    async def ws() -> None:
        with core.bus.subscribe(WS_QUEUE) as sub:
            await websocket.send(json.dumps({"update_type": "Snapshot", "data": snapshot(core)}))
            while not core.shutting_down:
                message = message_for(await sub.get())
                if message is not None:
                    await websocket.send(message)


def _ws_message(core: Nexus, kind: str, data: dict[str, Any]) -> str | None:
    if kind in ("backend.status", "backend.added", "backend.removed"):
        return json.dumps({"update_type": "BackendStatus", "data": backend_views(core)})
    if kind == "models.changed":
        return json.dumps(
            {
                "update_type": "ModelChange",
                "data": {"backend_id": data["backend"], "models": data["models"]},
            }
        )
    if kind == "request.completed":
        return json.dumps({"update_type": "RequestComplete", "data": data})
    if kind == "gap":
        return json.dumps({"update_type": "Gap", "data": data})
    return None


def _script_json(data: Any) -> str:
    # inside <script type="application/json">: only "</" can break out
    return json.dumps(data).replace("</", "<\\/")


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _summary(data: dict[str, Any]) -> str:
    s = data["stats"]
    healthy = sum(1 for b in data["backends"] if b["status"] == "healthy")
    models = {m["id"] for b in data["backends"] if b["status"] == "healthy" for m in b["models"]}
    cards = [
        ("Uptime", f"{s['uptime_seconds']} s", "uptime"),
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


def _backends(backends: list[dict[str, Any]]) -> str:
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
            f'<svg class="spark" viewBox="0 0 100 20" preserveAspectRatio="none"></svg>'
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


def _kind_badge(endpoint: str | None) -> str:
    """``<span class="kind">embed</span>`` for anything but chat (and records without it)."""
    if not endpoint or endpoint == "chat":
        return ""
    label = KIND_BADGES.get(endpoint, endpoint)
    return f'<span class="kind kind-{_e(endpoint)}" title="/v1/{_e(endpoint)}">{_e(label)}</span>'


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
            f"{_kind_badge(r.get('endpoint'))}</td>"
            f"<td>{_e(names.get(r['backend'] or '', r['backend'] or '-'))}</td>"
            f"<td>{r['status_code']}</td><td>{r['latency_ms']:.0f} ms</td>"
            f"<td>{ttft}</td>"
            f"<td>{_e(r['route_reason'] or r['error_type'] or '')}</td></tr>"
        )
    body = "".join(rows) or '<tr class="empty"><td colspan="7">No requests yet.</td></tr>'
    return (
        "<table><thead><tr><th>Time</th><th>Model</th><th>Backend</th><th>Status</th>"
        "<th>Latency</th><th>TTFT</th><th>Route</th></tr></thead>"
        f'<tbody id="history-body">{body}</tbody></table>'
    )
