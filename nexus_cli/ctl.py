"""``nexusctl``: Nexus for scripts — stable JSON on stdout, meaningful exit codes.

Exit codes: 0 ok, 1 refused by the daemon, 2 usage, 3 daemon not reachable.
(This first version reads the public API; the control-socket commands arrive with the
control API.)
"""

from __future__ import annotations

import argparse
import json
import sys

from nexusd import __version__

EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nexusctl", description="Script the Nexus daemon.")
    parser.add_argument("--version", action="version", version=f"nexusctl {__version__}")
    parser.add_argument("--url", help="daemon URL (default http://127.0.0.1:8000 or NEXUS_PORT)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    sub.add_parser("health", help="daemon health as JSON")
    sub.add_parser("models", help="models the daemon can serve now, as JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from nexus_cli.view import Unreachable, daemon_url, fetch

    url = daemon_url(args.url)
    try:
        data = fetch(url, "/health" if args.command == "health" else "/v1/models")
    except Unreachable as exc:
        print(f"nexusctl: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    json.dump(data, sys.stdout, sort_keys=True)
    sys.stdout.write("\n")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
