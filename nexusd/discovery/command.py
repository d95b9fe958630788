"""``nexus discover`` / ``nexusctl discover`` / ``python -m nexusd.discovery``: browse mDNS once.

Runs in the calling process (no daemon needed) and registers nothing: it shows what the
daemon's discovery would see — each service, its addresses and TXT record, whether its
address is inside ``[discovery] allowed_networks``, the URL Nexus would use, and the type the
server's own endpoints reveal.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO

COLUMNS = ("name", "service_type", "addresses", "port", "allowed", "type", "url", "txt")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--timeout", type=float, default=3.0, metavar="S", help="browse for S seconds (default 3)"
    )
    parser.add_argument(
        "-c", "--config", help="config file whose [discovery] settings to use (default: active)"
    )


def discover_rows(timeout: float, config_path: str | None = None) -> list[dict[str, Any]]:
    """Browse with the effective config's service types and allowed networks.

    Raises ``ConfigError`` (invalid config) or ``DiscoveryUnavailable`` (no multicast).
    """
    from nexusd.config.loader import load_config
    from nexusd.discovery.mdns import discover

    cfg = load_config(config_path).config.discovery
    return asyncio.run(discover(cfg.service_types, timeout, allowed_networks=cfg.allowed_networks))


def render_table(rows: Sequence[dict[str, Any]], out: TextIO) -> None:
    def cell(value: Any) -> str:
        if value is None:
            return "-"
        if isinstance(value, bool):
            return "yes" if value else "no"
        if isinstance(value, list):
            return ",".join(map(str, value)) or "-"
        if isinstance(value, dict):
            return " ".join(f"{k}={v}" for k, v in sorted(value.items())) or "-"
        return str(value)

    heads = [c.upper() for c in COLUMNS]
    cells = [[cell(row.get(c)) for c in COLUMNS] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(heads)]
    for line in [heads, *cells]:
        out.write("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip() + "\n")
    if not rows:
        out.write("(no mDNS services found)\n")


def run(
    timeout: float = 3.0,
    *,
    config_path: str | None = None,
    as_json: bool = False,
    out: TextIO | None = None,
) -> int:
    """Print what mDNS shows; exit status 0, or 1 when the config is invalid or mDNS cannot
    start (the message says why)."""
    from nexusd.config.loader import ConfigError
    from nexusd.discovery.mdns import DiscoveryUnavailable

    out = out or sys.stdout
    try:
        rows = discover_rows(timeout, config_path)
    except (ConfigError, DiscoveryUnavailable) as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    if as_json:
        json.dump(rows, out, sort_keys=True, separators=(",", ":"))
        out.write("\n")
    else:
        render_table(rows, out)
    out.flush()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nexusd.discovery", description=__doc__)
    add_arguments(parser)
    parser.add_argument("--json", action="store_true", help="one JSON document")
    args = parser.parse_args(argv)
    return run(args.timeout, config_path=args.config, as_json=args.json)
