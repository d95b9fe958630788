"""The ``serve`` command line, shared by ``nexus serve`` and ``python -m nexusd``."""

from __future__ import annotations

import argparse
import logging
import sys

from nexusd import __version__


def add_serve_arguments(serve: argparse.ArgumentParser) -> None:
    serve.add_argument(
        "-c",
        "--config",
        help="config file (default: NEXUS_CONFIG or the user config dir's nexus/nexus.toml)",
    )
    serve.add_argument("-H", "--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("-p", "--port", type=int, help="TCP port (default 8000)")
    serve.add_argument("-l", "--log-level", choices=["trace", "debug", "info", "warn", "error"])
    serve.add_argument("--log-format", choices=["pretty", "json"])
    serve.add_argument("--no-discovery", action="store_true", help="disable mDNS discovery")
    serve.add_argument("--no-probe", action="store_true", help="do not probe local ports")
    serve.add_argument(
        "--no-health-check",
        action="store_true",
        help="no periodic health checks (models are read once at start)",
    )
    serve.add_argument(
        "--socket",
        help="control socket path (default: NEXUS_SOCKET or <user runtime dir>/nexus/nexusd.sock);"
        " an existing path is only replaced if it is a stale Nexus socket",
    )


def serve(args: argparse.Namespace) -> int:
    from nexusd.config.loader import ConfigError, load_config
    from nexusd.logs import setup_logging

    flags = {
        "server.host": args.host,
        "server.port": args.port,
        "logging.level": args.log_level,
        "logging.format": args.log_format,
        "discovery.enabled": False if args.no_discovery else None,
        "discovery.probe": False if args.no_probe else None,
        "health_check.enabled": False if args.no_health_check else None,
    }
    try:
        loaded = load_config(args.config, flags=flags)
    except ConfigError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    setup_logging(loaded.config.logging)
    log = logging.getLogger("nexus")
    for warning in loaded.warnings:
        log.warning("config: %s", warning)
    log.info(
        "nexus %s starting (config: %s%s)",
        __version__,
        loaded.path,
        "" if loaded.file_exists else ", absent: defaults",
    )
    from pathlib import Path

    from nexusd.server import run_daemon

    return run_daemon(loaded, Path(args.socket) if args.socket else None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nexusd", description="Run the Nexus daemon.")
    add_serve_arguments(parser)
    return serve(parser.parse_args(argv))
