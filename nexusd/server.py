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
from pathlib import Path

from hypercorn.asyncio import serve
from hypercorn.config import Config as HyperConfig

from nexusd.api.app import create_app
from nexusd.config.loader import ConfigError, LoadedConfig, load_config
from nexusd.control.listener import ControlListener, ControlSocketError
from nexusd.control.location import find_socket
from nexusd.control.server import create_control_app
from nexusd.core import Nexus
from nexusd.readiness import notify_systemd, wait_until_serving

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
    """One running Nexus: the core, the OpenAI API on TCP and the control API on a socket."""

    def __init__(
        self,
        loaded: LoadedConfig,
        sock: socket.socket | None = None,
        control_path: Path | None = None,
        state_dir: Path | None = None,
    ) -> None:
        self.loaded = loaded
        cfg = loaded.config.server
        # the lock first: a second daemon must fail before touching anything else
        self.control = ControlListener(control_path or find_socket())
        try:
            self.control_sock = self.control.open()
        except ControlSocketError as exc:
            if sock is not None:
                sock.close()
            raise StartupError(str(exc)) from None
        try:
            self.sock = sock or bind_tcp(cfg.host, cfg.port)
        except StartupError:
            self.control.close()
            raise
        host, port = self.sock.getsockname()[:2]
        self.host, self.port = host, port
        self.core = Nexus(loaded, state_dir)
        self.core.port = port
        self.core.control_socket = str(self.control.path)
        self.stop_event = asyncio.Event()
        self.ready = asyncio.Event()
        self._shutdown_task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def _hypercorn_config(self, fd: int) -> HyperConfig:
        hcfg = HyperConfig()
        hcfg.bind = [f"fd://{fd}"]
        hcfg.accesslog = None
        hcfg.errorlog = logging.getLogger("nexus.http")
        hcfg.graceful_timeout = 2.0  # our drain already ran; this only closes idle connections
        hcfg.keep_alive_timeout = 75.0
        hcfg.keep_alive_max_requests = 1_000_000  # do not recycle busy keep-alive clients
        return hcfg

    async def run(self) -> None:
        try:
            await self.core.start()
            api = create_app(self.core)
            control = create_control_app(self.core, lambda: self.url)
            self.control.write_record(self.url)
            async with asyncio.TaskGroup() as group:
                group.create_task(
                    serve(
                        api,
                        self._hypercorn_config(self.sock.detach()),  # type: ignore[arg-type]
                        shutdown_trigger=self.stop_event.wait,
                    )
                )
                group.create_task(
                    serve(
                        control,  # type: ignore[arg-type]
                        self._hypercorn_config(self.control_sock.detach()),
                        shutdown_trigger=self.stop_event.wait,
                    )
                )
                group.create_task(self._announce())
        finally:
            await self.core.stop()
            self.control.close()
            log.info("stopped")

    async def _announce(self) -> None:
        """Ready means both listeners answer requests, not merely that sockets exist."""
        await wait_until_serving(self.url + "/health", str(self.control.path))
        log.info(
            "OpenAI API listening on %s; control socket %s (%d backends configured)",
            self.url,
            self.control.path,
            len(self.core.registry),
        )
        notify_systemd("READY=1")
        self.ready.set()

    def request_shutdown(self) -> None:
        """First call drains gracefully; a second one stops at once."""
        if self._shutdown_task is None:
            self._shutdown_task = asyncio.get_running_loop().create_task(self._shutdown())
        else:
            log.warning("second stop signal: stopping now")
            self.core.shutting_down = True
            self.stop_event.set()

    async def _shutdown(self) -> None:
        notify_systemd("STOPPING=1")
        timeout = self.loaded.config.server.shutdown_timeout_seconds
        clean = await self.core.drain(timeout)
        self.core.bus.publish("daemon.stopping", {})
        log.info("shutting down (%s)", "drained" if clean else "drain deadline reached")
        self.stop_event.set()

    def reload(self) -> None:
        """SIGHUP: re-read the config file; an invalid file is refused, the old one stays."""
        try:
            loaded = load_config(self.loaded.path, flags=self.loaded.flags)
        except ConfigError as exc:
            log.error("config reload refused, keeping the running config: %s", exc)
            return
        self.core.store.mark_loaded()
        self.core.loaded = self.loaded = loaded
        changes = self.core.apply_config(loaded.config)
        log.info("config reloaded from %s: %s", loaded.path, ", ".join(changes) or "no changes")


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


def run_daemon(loaded: LoadedConfig, control_path: Path | None = None) -> int:
    """Entry point for ``nexus serve``: returns the process exit code."""
    try:
        daemon = Daemon(loaded, control_path=control_path)
    except StartupError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1

    async def main() -> None:
        loop = asyncio.get_running_loop()
        install_signal_handlers(loop, daemon.request_shutdown)
        with contextlib.suppress(NotImplementedError, AttributeError):
            loop.add_signal_handler(signal.SIGHUP, daemon.reload)
        await daemon.run()

    with asyncio.Runner(loop_factory=new_event_loop_factory()) as runner:
        runner.run(main())
    return 0
