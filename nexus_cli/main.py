"""``nexus``: the command for people — run the daemon, manage its config, look at it."""

from __future__ import annotations

import argparse
import sys

from nexusd import __version__
from nexusd.entry import add_serve_arguments, serve


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nexus",
        description="Nexus: one OpenAI-compatible endpoint for all your local and cloud LLMs.",
    )
    parser.add_argument("--version", action="version", version=f"nexus {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the daemon (zero-config: finds local backends)")
    add_serve_arguments(serve)

    config = sub.add_parser("config", help="create, check or show the configuration")
    csub = config.add_subparsers(dest="action", metavar="ACTION", required=True)
    init = csub.add_parser("init", help="write a commented example config")
    init.add_argument("-o", "--output", help="where to write (default: the user config file)")
    init.add_argument("-f", "--force", action="store_true", help="overwrite an existing file")
    val = csub.add_parser("validate", help="check a config file and report every problem")
    val.add_argument("path", nargs="?", help="file to check (default: the active config)")
    show = csub.add_parser("show", help="print the effective configuration")
    show.add_argument("path", nargs="?", help="file to load (default: the active config)")
    show.add_argument("--json", action="store_true", help="JSON with the source of each value")

    for name, text in (
        ("health", "show the running daemon's health"),
        ("models", "list the models the running daemon can serve"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("--url", default=None, help="daemon URL (default http://127.0.0.1:8000)")
        p.add_argument("--json", action="store_true", help="print JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command is None:
        build_parser().print_help()
        return 2
    if args.command == "serve":
        return serve(args)
    if args.command == "config":
        from nexus_cli import config_cmd

        if args.action == "init":
            return config_cmd.init(args.output, args.force)
        if args.action == "validate":
            return config_cmd.validate(args.path)
        return config_cmd.show(args.path, args.json)
    from nexus_cli import view

    return view.run(args.command, args.url, args.json)


if __name__ == "__main__":
    sys.exit(main())
