"""nexus_tui — the terminal UI of Nexus (``nexus tui``). It talks only to the daemon's
control API over the Unix socket (``nexusd.control.client``).

Import-light: ``main`` imports Textual only when it runs.
"""

from __future__ import annotations

import argparse
import sys

VIEWS = ("backends", "models", "requests", "aliases", "route")


def build_parser(prog: str = "nexus tui") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog, description="Terminal UI for the running Nexus daemon (keys: ? for help)."
    )
    p.add_argument(
        "--socket",
        help="control socket (default: NEXUS_SOCKET, then the one the running daemon "
        "recorded, then <user runtime dir>/nexus/nexusd.sock)",
    )
    p.add_argument(
        "--read-only",
        action="store_true",
        help="look, don't touch: every verb that changes the daemon is hidden and refused",
    )
    p.add_argument("--view", choices=VIEWS, help="start in this view (default: backends)")
    return p


def not_a_terminal() -> str | None:
    """Why the TUI cannot run here, or None. Without a terminal on both ends Textual reads
    EOF forever (100 % CPU) and paints escape codes into a pipe: refuse at once instead."""
    problems = [
        f"{name} is not a terminal"
        for name, stream in (("standard input", sys.stdin), ("standard output", sys.stdout))
        if stream is None or not stream.isatty()
    ]
    return " and ".join(problems) or None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    problem = not_a_terminal()
    if problem is not None:
        print(
            f"nexus tui needs a terminal: {problem}. Run it in a terminal without redirecting "
            "its input or output; scripts can use nexusctl (`nexusctl backends list`, "
            "`nexusctl events`).",
            file=sys.stderr,
        )
        return 2
    from nexus_tui.app import NexusApp
    from nexus_tui.source import DaemonSource

    app = NexusApp(DaemonSource(args.socket), read_only=args.read_only, initial_view=args.view)
    app.run()
    return app.return_code or 0


__all__ = ["build_parser", "main"]

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
