"""Run the daemon: bind, start the core, serve with Hypercorn, drain on SIGTERM/SIGINT.

We bind the TCP socket ourselves and hand Hypercorn the file descriptor: a busy port then
fails with a message that names the fix, and ``port = 0`` reports the port it really got.
Shutdown drains in-flight requests up to ``server.shutdown_timeout_seconds`` before
Hypercorn stops, because Hypercorn's own graceful timeout either cuts streams (3.11) or
waits forever for them (3.12+).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import signal
import socket
import sys
from collections.abc import Callable

from hypercorn.asyncio import serve
from hypercorn.config import Config as HyperConfig

from nexusd.api.app import create_app
from nexusd.config.loader import LoadedConfig
from nexusd.core import Nexus

log = logging.getLogger("nexus.server")


class StartupError(Exception):
    """Something the user must fix before the daemon can run (printed, exit 1)."""


def bind_tcp(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise StartupError(
                f"port {port} on {host} is already in use (another Nexus, or a backend such as "
                "vLLM?); choose another with --port or NEXUS_PORT"
            ) from None
        raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(1024)
    sock.setblocking(False)
    return sock


class Daemon:
    """One running Nexus: the core plus its HTTP listener."""

    def __init__(self, loaded: LoadedConfig, sock: socket.socket | None = None) -> None:
        self.loaded = loaded
        cfg = loaded.config.server
        self.sock = sock or bind_tcp(cfg.host, cfg.port)
        host, port = self.sock.getsockname()[:2]
        self.host, self.port = host, port
        self.core = Nexus(loaded)
        self.core.port = port
        self.stop_event = asyncio.Event()
        self.ready = asyncio.Event()
        self._shutdown_task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def run(self) -> None:
        await self.core.start()
        app = create_app(self.core)
        hcfg = HyperConfig()
        hcfg.bind = [f"fd://{self.sock.detach()}"]
        hcfg.accesslog = None
        hcfg.errorlog = logging.getLogger("nexus.http")
        hcfg.graceful_timeout = 2.0  # our drain already ran; this only closes idle connections
        hcfg.keep_alive_timeout = 75.0
        log.info(
            "OpenAI API listening on %s (%d backends configured)", self.url, len(self.core.registry)
        )
        self.ready.set()
        try:
            await serve(app, hcfg, shutdown_trigger=self.stop_event.wait)  # type: ignore[arg-type]
        finally:
            await self.core.stop()
            log.info("stopped")

    def request_shutdown(self) -> None:
        """First call drains gracefully; a second one stops at once."""
        if self._shutdown_task is None:
            self._shutdown_task = asyncio.get_running_loop().create_task(self._shutdown())
        else:
            log.warning("second stop signal: stopping now")
            self.core.shutting_down = True
            self.stop_event.set()

    async def _shutdown(self) -> None:
        timeout = self.loaded.config.server.shutdown_timeout_seconds
        clean = await self.core.drain(timeout)
        log.info("shutting down (%s)", "drained" if clean else "drain deadline reached")
        self.stop_event.set()


def install_signal_handlers(loop: asyncio.AbstractEventLoop, handler: Callable[[], None]) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):  # Windows
            loop.add_signal_handler(sig, handler)


def new_event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when installed (faster sockets); plain asyncio otherwise."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run_daemon(loaded: LoadedConfig) -> int:
    """Entry point for ``nexus serve``: returns the process exit code."""
    try:
        sock = bind_tcp(loaded.config.server.host, loaded.config.server.port)
    except StartupError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1

    async def main() -> None:
        daemon = Daemon(loaded, sock)
        install_signal_handlers(asyncio.get_running_loop(), daemon.request_shutdown)
        await daemon.run()

    with asyncio.Runner(loop_factory=new_event_loop_factory()) as runner:
        runner.run(main())
    return 0
