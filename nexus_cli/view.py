"""``nexus health`` and ``nexus models``: read-only looks at a running daemon, for people."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

DEFAULT_URL = "http://127.0.0.1:8000"


def daemon_url(explicit: str | None) -> str:
    if explicit:
        return explicit.rstrip("/")
    port = os.environ.get("NEXUS_PORT")
    return f"http://127.0.0.1:{port}" if port else DEFAULT_URL


class Unreachable(Exception):
    pass


def fetch(url: str, path: str) -> Any:
    import httpx

    try:
        response = httpx.get(url + path, timeout=5.0)
    except httpx.HTTPError as exc:
        raise Unreachable(
            f"no Nexus daemon answers at {url} ({exc.__class__.__name__}). "
            "Start one with `nexus serve` (or pass --url)."
        ) from None
    return response.json()


def run(command: str, url_arg: str | None, as_json: bool) -> int:
    url = daemon_url(url_arg)
    try:
        data = fetch(url, "/health" if command == "health" else "/v1/models")
    except Unreachable as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 3
    if as_json:
        print(json.dumps(data, indent=2))
        return 0
    if command == "health":
        b = data["backends"]
        print(
            f"Status:   {data['status']}\nVersion:  {data.get('version', '?')}\n"
            f"Uptime:   {data['uptime_seconds']}s\n"
            f"Backends: {b['healthy']}/{b['total']} healthy\nModels:   {data['models']}"
        )
        return 0
    rows = [
        (
            m["id"],
            m["owned_by"],
            str(m.get("context_length", "")),
            ",".join(k for k, v in m.get("capabilities", {}).items() if v) or "-",
        )
        for m in data.get("data", [])
    ]
    if not rows:
        print("No models available (no healthy backend lists any).")
        return 0
    header = ("MODEL", "BACKEND", "CONTEXT", "CAPABILITIES")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return 0
