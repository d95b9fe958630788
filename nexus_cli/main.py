# PYTHON_ARGCOMPLETE_OK
"""``nexus``: the command for people — run the daemon, look at it, manage config and service.

Everything except ``serve``, ``config``, ``completions`` and ``service`` talks to the running
daemon over its control socket, and says so plainly when none is running.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from nexusd import __version__
from nexusd.entry import add_serve_arguments, serve


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nexus",
        description="Nexus: one OpenAI-compatible endpoint for all your local and cloud LLMs.",
    )
    parser.add_argument("--version", action="version", version=f"nexus {__version__}")
    parser.add_argument("--socket", help="control socket of the daemon to talk to")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve_p = sub.add_parser("serve", help="run the daemon (zero-config: finds local backends)")
    add_serve_arguments(serve_p)
    tui = sub.add_parser("tui", help="terminal UI: backends, models, requests, aliases, routing")
    tui.add_argument("--socket", default=argparse.SUPPRESS, help="control socket of the daemon")
    tui.add_argument("--read-only", action="store_true", help="hide and refuse every change")
    tui.add_argument("--view", choices=["backends", "models", "requests", "aliases", "route"])

    backends = sub.add_parser("backends", help="list, add, remove or drain backends")
    bsub = backends.add_subparsers(dest="action", metavar="ACTION")
    bsub.add_parser("list", help="backends with status, load and latency (default)")
    add = bsub.add_parser("add", help="add a backend by URL (type detected); saved to config")
    add.add_argument("url")
    add.add_argument("-t", "--type", dest="type_")
    add.add_argument("-n", "--name")
    add.add_argument("-p", "--priority", type=int)
    add.add_argument(
        "--api-key-env", metavar="VAR", help="cloud types: the env var holding the key"
    )
    bsub.add_parser("scan", help="look for local servers on their usual ports now")
    remove = bsub.add_parser("remove", help="remove a backend")
    remove.add_argument("id")
    drain = bsub.add_parser("drain", help="stop new requests to a backend (--undo to resume)")
    drain.add_argument("id")
    drain.add_argument("--undo", action="store_true")

    sub.add_parser("models", help="models, which backends serve them, capabilities")
    sub.add_parser("health", help="is the daemon up, and how are its backends")
    disc = sub.add_parser(
        "discover", help="browse mDNS once: what would be discovered (registers nothing)"
    )
    from nexusd.discovery.command import add_arguments as add_discover_arguments

    add_discover_arguments(disc)

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

    comp = sub.add_parser("completions", help="shell completion script for nexus and nexusctl")
    comp.add_argument("shell", choices=["bash", "zsh", "fish"])

    service = sub.add_parser("service", help="run Nexus as a user service (systemd / launchd)")
    ssub = service.add_subparsers(dest="action", metavar="ACTION", required=True)
    for name, text in (
        ("install", "write the unit / agent and say how to enable it"),
        ("uninstall", "stop and remove it"),
        ("status", "is it installed"),
    ):
        sp = ssub.add_parser(name, help=text)
        sp.add_argument(
            "--kind",
            choices=["systemd", "launchd"],
            help="default: launchd on macOS, systemd elsewhere",
        )
    return parser


def main(argv: list[str] | None = None) -> int:
    from nexus_cli.render import exit_quietly_on_broken_pipe

    try:
        return _main(argv)
    except BrokenPipeError:
        return exit_quietly_on_broken_pipe()


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    _enable_completion(parser)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
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
    if args.command == "completions":
        import argcomplete

        print(argcomplete.shellcode(["nexus", "nexusctl"], shell=args.shell))
        return 0
    if args.command == "service":
        from nexus_cli import service

        action = {
            "install": lambda: service.install(args.kind, []),
            "uninstall": lambda: service.uninstall(args.kind),
            "status": lambda: service.status(args.kind),
        }[args.action]
        return action()
    if args.command == "tui":
        from nexus_tui import main as tui_main

        return tui_main(
            [
                *(["--socket", args.socket] if args.socket else []),
                *(["--read-only"] if args.read_only else []),
                *(["--view", args.view] if args.view else []),
            ]
        )
    if args.command == "discover":
        from nexusd.discovery.command import run as discover

        return discover(args.timeout, config_path=args.config)
    return _talk_to_daemon(args)


def _enable_completion(parser: argparse.ArgumentParser) -> None:
    """Tab completion (argcomplete); a no-op unless the shell is asking for completions."""
    import os

    if "_ARGCOMPLETE" in os.environ:
        import argcomplete

        argcomplete.autocomplete(parser)


def _talk_to_daemon(args: argparse.Namespace) -> int:
    from nexus_cli.render import table
    from nexusd.control.client import ControlClient, ControlError

    try:
        with ControlClient(args.socket) as client:
            if args.command == "backends":
                return _backends(args, client, table)
            if args.command == "models":
                return _models(client, table)
            status = client.status()
            backends = client.backends()
            _health(status, backends)
            return 0
    except ControlError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return exc.exit_code


def _backends(args: argparse.Namespace, client: Any, table: Any) -> int:
    action = args.action or "list"
    if action == "add":
        b = client.add_backend(
            args.url,
            type=args.type_,
            name=args.name,
            priority=args.priority,
            api_key_env=args.api_key_env,
        )
        print(
            f"Added backend {b['id']} ({b['type']}) at {b['url']} — saved to the config. "
            f"Its id (or its name, {b['name']}) works with remove and drain."
        )
        if b.get("disabled_reason"):
            print(f"It is disabled: {b['disabled_reason']}")
        return 0
    if action == "scan":
        found = client.scan_backends()
        for b in found:
            print(f"Found {b['type']} at {b['url']}: backend {b['id']} ({len(b['models'])} models)")
        if not found:
            print(
                "No new local server found on the usual ports. Start one (Ollama: `ollama "
                "serve`; llama.cpp: `llama-server -m MODEL.gguf`) or add one with "
                "`nexus backends add URL`."
            )
        return 0
    if action == "remove":
        removed = client.remove_backend(args.id)
        print(f"Removed backend {removed.get('removed', args.id)}")
        return 0
    if action == "drain":
        b = client.patch_backend(args.id, drain=not args.undo)
        print(f"Backend '{b['id']}' is now {b['status']}")
        return 0
    backends = client.backends()
    rows = [
        {
            **b,
            "models": len(b["models"]),
            "latency": f"{b['latency_ema_ms']:.0f}ms" if b["latency_ema_ms"] is not None else None,
        }
        for b in backends
    ]
    table(rows, ("id", "type", "source", "status", "models", "pending", "latency", "url"))
    # why a backend is not healthy, under the table (a reason is too long for a column)
    for b in backends:
        if b["last_error"] and b["status"] != "healthy":
            print(f"{b['id']}: {b['status']} — {b['last_error']}")
    return 0


def _models(client: Any, table: Any) -> int:
    rows = []
    for m in client.models():
        serving = m["backends"]
        rows.append(
            {
                "model": m["id"],
                "backends": [
                    b["name"] if b["routable"] else f"{b['name']}({b['status']})" for b in serving
                ],
                "context": max(b["context_length"] for b in serving),
                "capabilities": {
                    k: any(b["capabilities"][k] for b in serving)
                    for k in ("vision", "tools", "json_mode", "embeddings")
                },
                "aliases": m["aliases"],
            }
        )
    table(rows, ("model", "backends", "context", "capabilities", "aliases"))
    return 0


def _health(status: dict[str, Any], backends: list[dict[str, Any]]) -> None:
    counts = status["counts"]
    state = (
        "healthy"
        if counts["backends"] and counts["healthy"] == counts["backends"]
        else "degraded"
        if counts["healthy"]
        else "unhealthy"
    )
    uptime = int(status["uptime_seconds"])
    hours, rest = divmod(uptime, 3600)
    minutes, seconds = divmod(rest, 60)
    print(
        f"Status:   {state}\nVersion:  {status['version']}\n"
        f"Uptime:   {f'{hours}h ' if hours else ''}{f'{minutes}m ' if minutes or hours else ''}"
        f"{seconds}s\nAPI:      {status['listeners']['api']}\n"
        f"Backends: {counts['healthy']}/{counts['backends']} healthy\n"
        f"Models:   {counts['models']} available"
    )
    icons = {
        "healthy": "✓",
        "unhealthy": "✗",
        "unknown": "?",
        "loading": "…",
        "draining": "~",
        "disabled": "-",
    }
    for b in backends:
        error = f" — {b['last_error']}" if b["last_error"] and b["status"] != "healthy" else ""
        print(
            f"  {icons.get(b['status'], '?')} {b['name']} ({b['type']}) "
            f"{len(b['models'])} models{error}"
        )


if __name__ == "__main__":
    sys.exit(main())
