# PYTHON_ARGCOMPLETE_OK
"""``nexusctl``: Nexus for scripts — every control resource as a subcommand.

Output is JSON by default (one document, keys sorted; streams as JSON lines) and stable;
``-o table`` (anywhere on the line) is for people. Exit codes: 0 ok, 1 refused by the daemon
(message on stderr; also a dry run that would be refused), 2 usage, 3 daemon not reachable
(the message says how to start it).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from nexusd import __version__

EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3

TABLES: dict[str, tuple[str, ...]] = {
    "backends": (
        "id",
        "type",
        "source",
        "status",
        "priority",
        "pending",
        "total_requests",
        "errors",
        "latency_ema_ms",
        "url",
    ),
    "models": ("id", "healthy_backends", "aliases"),
    "requests": (
        "request_id",
        "endpoint",
        "requested_model",
        "served_model",
        "backend",
        "status",
        "outcome",
        "retries",
    ),
}
#: table headers that differ from the field name
HEADERS: dict[str, str] = {"endpoint": "kind"}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nexusctl", description="Script the running Nexus daemon.")
    p.add_argument("--version", action="version", version=f"nexusctl {__version__}")
    p.add_argument(
        "--socket",
        help="control socket (default: NEXUS_SOCKET, then the one the "
        "running daemon recorded, then <user runtime dir>/nexus/nexusd.sock)",
    )
    p.add_argument("-o", "--output", choices=["json", "table"], default="json")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    sub.add_parser("status", help="version, uptime, listeners, config path, counts")

    b = sub.add_parser("backends", help="list, add, remove, drain, enable backends")
    bs = b.add_subparsers(dest="action", metavar="ACTION")
    bs.add_parser("list", help="every backend with status and counters")
    add = bs.add_parser("add", help="add a backend (type detected when not given); persisted")
    add.add_argument("url")
    add.add_argument("--type", dest="type_")
    add.add_argument("--name")
    add.add_argument("--priority", type=int)
    add.add_argument(
        "--api-key-env", metavar="VAR", help="cloud types: the env var holding the key"
    )
    bs.add_parser("scan", help="probe the usual local ports now; prints what was added")
    rm = bs.add_parser("rm", help="remove a backend (and from the config file if it is there)")
    rm.add_argument("id")
    drain = bs.add_parser("drain", help="stop sending new requests (in-flight ones finish)")
    drain.add_argument("id")
    drain.add_argument("--undo", action="store_true", help="take new requests again")
    enable = bs.add_parser("enable", help="enable a backend (persisted)")
    enable.add_argument("id")
    disable = bs.add_parser("disable", help="disable a backend (persisted)")
    disable.add_argument("id")
    prio = bs.add_parser("priority", help="set priority, lower is preferred (persisted)")
    prio.add_argument("id")
    prio.add_argument("priority", type=int)

    sub.add_parser("models", help="models, the backends serving them, their aliases")

    a = sub.add_parser("aliases", help="model aliases (persisted to the config file)")
    as_ = a.add_subparsers(dest="action", metavar="ACTION")
    as_.add_parser("list")
    aset = as_.add_parser("set", help="NAME → TARGET (cycles and chains over 3 hops refused)")
    aset.add_argument("name")
    aset.add_argument("target")
    arm = as_.add_parser("rm")
    arm.add_argument("name")

    f = sub.add_parser("fallbacks", help="fallback chains (persisted to the config file)")
    fs = f.add_subparsers(dest="action", metavar="ACTION")
    fs.add_parser("list")
    fset = fs.add_parser("set", help="MODEL FALLBACK [FALLBACK…]")
    fset.add_argument("model")
    fset.add_argument("chain", nargs="+")
    frm = fs.add_parser("rm")
    frm.add_argument("model")

    r = sub.add_parser("requests", help="recent requests (newest first)")
    r.add_argument("--limit", type=int, default=50)
    r.add_argument("--model")
    r.add_argument("--backend")
    r.add_argument(
        "--outcome", choices=["ok", "error", "passed_through", "client_disconnected", "in_progress"]
    )
    r.add_argument("--follow", "-f", action="store_true", help="then stream new ones as JSON lines")

    e = sub.add_parser("explain", help="the full routing decision of one request")
    e.add_argument("request_id")

    rt = sub.add_parser("route", help="dry run: where would a request go now, and why")
    rt.add_argument("model")
    rt.add_argument("--vision", action="store_true")
    rt.add_argument("--tools", action="store_true")
    rt.add_argument("--json", dest="json_mode", action="store_true", help="needs JSON mode")
    rt.add_argument("--tokens", type=int, default=0, help="prompt size estimate")
    rt.add_argument("--max-tokens", type=int, default=0)
    rt.add_argument(
        "--endpoint",
        choices=["chat", "completions", "embeddings"],
        default="chat",
        help="which API the request would call (default chat)",
    )
    rt.add_argument(
        "--privacy",
        choices=["local", "restricted", "public"],
        help="as X-Nexus-Privacy: route within this zone (policies apply anyway)",
    )

    sub.add_parser("stats", help="request totals, per backend and per model")

    lg = sub.add_parser("log-level", help="show or change log levels at runtime (not saved)")
    lg.add_argument("level", nargs="?", help="trace|debug|info|warn|error")
    lg.add_argument("--component", help="e.g. routing, health, proxy, requests")

    c = sub.add_parser("config", help="effective config with sources, or reload the file")
    cs = c.add_subparsers(dest="action", metavar="ACTION", required=True)
    cs.add_parser("show")
    cs.add_parser("reload", help="re-read the file; an invalid file is refused")

    sub.add_parser("events", help="live events as JSON lines (Ctrl-C to stop)")
    disc = sub.add_parser("discover", help="browse mDNS once (no daemon needed; registers nothing)")
    from nexusd.discovery.command import add_arguments as add_discover_arguments

    add_discover_arguments(disc)
    _output_everywhere(p)
    return p


def _output_everywhere(parser: argparse.ArgumentParser) -> None:
    """``-o table`` after the subcommand works too (a later one wins)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                if not any("--output" in a.option_strings for a in sub._actions):
                    sub.add_argument(
                        "-o",
                        "--output",
                        choices=["json", "table"],
                        default=argparse.SUPPRESS,
                        help="json (default) or table",
                    )
                _output_everywhere(sub)


def main(argv: list[str] | None = None) -> int:
    from nexus_cli.render import exit_quietly_on_broken_pipe

    try:
        return _main(argv)
    except BrokenPipeError:
        return exit_quietly_on_broken_pipe()


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    if "_ARGCOMPLETE" in os.environ:  # the shell asks for completions: answer and exit
        import argcomplete

        argcomplete.autocomplete(parser)
    args = parser.parse_args(argv)
    if args.command == "discover":
        from nexusd.discovery.command import run as discover

        return discover(args.timeout, config_path=args.config, as_json=args.output == "json")
    from nexusd.control.client import ControlClient, ControlError

    try:
        with ControlClient(args.socket) as client:
            return dispatch(args, client)
    except ControlError as exc:
        print(f"nexusctl: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return EXIT_OK


def dispatch(args: argparse.Namespace, client: Any) -> int:
    from nexus_cli.render import emit_json, show_any, table

    table_mode = args.output == "table"

    def show(data: Any, kind: str | None = None) -> int:
        if table_mode and kind in TABLES and isinstance(data, list):
            columns = TABLES[kind]
            table(data, columns, [HEADERS.get(c, c) for c in columns])
        elif table_mode:
            show_any(data)
        else:
            emit_json(data)
        return EXIT_OK

    cmd, action = args.command, getattr(args, "action", None)
    if cmd == "status":
        return show(client.status())
    if cmd == "backends":
        if action in (None, "list"):
            return show(client.backends(), "backends")
        if action == "add":
            return show(
                client.add_backend(
                    args.url,
                    type=args.type_,
                    name=args.name,
                    priority=args.priority,
                    api_key_env=args.api_key_env,
                )
            )
        if action == "scan":
            return show(client.scan_backends(), "backends")
        if action == "rm":
            return show(client.remove_backend(args.id))
        if action == "drain":
            return show(client.patch_backend(args.id, drain=not args.undo))
        if action in ("enable", "disable"):
            return show(client.patch_backend(args.id, enabled=action == "enable"))
        return show(client.patch_backend(args.id, priority=args.priority))
    if cmd == "models":
        return show(client.models(), "models")
    if cmd == "aliases":
        if action in (None, "list"):
            return show(client.aliases())
        if action == "set":
            return show(client.set_alias(args.name, args.target))
        return show(client.remove_alias(args.name))
    if cmd == "fallbacks":
        if action in (None, "list"):
            return show(client.fallbacks())
        if action == "set":
            return show(client.set_fallbacks(args.model, args.chain))
        return show(client.remove_fallbacks(args.model))
    if cmd == "requests":
        show(
            client.requests(
                args.limit, model=args.model, backend=args.backend, outcome=args.outcome
            ),
            "requests",
        )
        if args.follow:
            for event in client.events():
                if event.get("type") == "request.completed":
                    emit_json(event["data"])
        return EXIT_OK
    if cmd == "explain":
        return show(client.request(args.request_id))
    if cmd == "route":
        plan = client.route(
            args.model,
            vision=args.vision,
            tools=args.tools,
            json_mode=args.json_mode,
            tokens=args.tokens,
            max_tokens=args.max_tokens,
            endpoint=args.endpoint,
            privacy=args.privacy,
        )
        show(plan)
        # a dry run that the API would refuse exits like a refusal
        return EXIT_REFUSED if plan["outcome"] in ("reject", "not_found") else EXIT_OK
    if cmd == "stats":
        return show(client.stats())
    if cmd == "log-level":
        if args.level is None:
            return show(client.call("GET", "/v1/logging"))
        current = client.call("GET", "/v1/logging")
        if args.component:
            levels = {**current["component_levels"], args.component: args.level}
            return show(client.call("PUT", "/v1/logging", {"component_levels": levels}))
        return show(client.call("PUT", "/v1/logging", {"level": args.level}))
    if cmd == "config":
        return show(client.config() if action == "show" else client.reload_config())
    if cmd == "events":
        for event in client.events():
            emit_json(event)
        return EXIT_OK
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
