"""Run the daemon: bind, start the core, serve with Hypercorn, drain on SIGTERM/SIGINT.

We bind the TCP socket ourselves and hand Hypercorn the file descriptor: a busy port then
fails with a message that names the fix, and ``port = 0`` reports the port it really got.
Shutdown drains in-flight requests up to ``server.shutdown_timeout_seconds`` before
Hypercorn stops, because Hypercorn's own graceful timeout either cuts streams (3.11) or
waits forever for them (3.12+).

Open files are a shared budget: both listeners, upstream connections and SQLite draw on one
``RLIMIT_NOFILE``. At start-up the soft limit is raised towards the hard one; ``FdGuard``
counts connections, warns once per crossing of 80 % of the limit, and answers new API
connections with a 503 (closing them at once) above ``limit - reserve`` so the control socket
always has descriptors left. Two small Hypercorn subclasses (see "Hypercorn adjustments")
release a connection as soon as its peer closes, and give Hypercorn's own 400/431 answers an
OpenAI-style JSON body.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from http import HTTPStatus
from itertools import chain
from pathlib import Path

import h11
import hypercorn.asyncio.run as hypercorn_run
import hypercorn.protocol as hypercorn_protocol
from hypercorn.asyncio import serve
from hypercorn.asyncio.tcp_server import TCPServer
from hypercorn.config import Config as HyperConfig
from hypercorn.events import Event as HyperEvent
from hypercorn.events import Updated
from hypercorn.protocol import ws_stream
from hypercorn.protocol.h11 import H11Protocol
from wsproto.events import Message

from nexusd.api.app import create_app
from nexusd.config.loader import ConfigError, LoadedConfig, load_config
from nexusd.control.listener import ControlListener, ControlSocketError
from nexusd.control.location import find_socket
from nexusd.control.server import create_control_app
from nexusd.core import Nexus
from nexusd.errors import ServiceUnavailable
from nexusd.readiness import notify_systemd, wait_until_serving
from nexusd.tasks import supervise
from nexusd.types import DiscoverySource

try:
    import resource
except ImportError:  # Windows
    resource = None  # type: ignore[assignment]

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


# --- open files ------------------------------------------------------------------------------

#: raise the soft RLIMIT_NOFILE up to this (or the hard limit, if lower); more is never needed
#: and some libraries size tables by the limit
FD_SOFT_TARGET = 65536
#: how often the guard re-counts the process's open files (connections are counted live)
FD_SAMPLE_SECONDS = 1.0


def raise_open_file_limit() -> tuple[int, int] | None:
    """Raise the soft open-file limit towards the hard one (what systemd recommends to
    programs that need more than 1,024); returns (before, after), or None where unknown."""
    if resource is None:
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = FD_SOFT_TARGET if hard == resource.RLIM_INFINITY else min(hard, FD_SOFT_TARGET)
    if soft != resource.RLIM_INFINITY and soft < target:
        # macOS refuses more than kern.maxfilesperproc (often 10,240): try that next
        for value in (target, min(target, 10240)):
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (value, hard))
            except (ValueError, OSError):
                continue
            return soft, value
    return soft, soft


def count_open_fds() -> int | None:
    """How many descriptors this process has open (Linux /proc, macOS /dev/fd); None if
    the platform cannot tell."""
    for directory in ("/proc/self/fd", "/dev/fd"):
        try:
            return len(os.listdir(directory)) - 1  # listdir's own descriptor
        except OSError:
            continue
    return None


class FdGuard:
    """Open-file accounting shared by both listeners (they draw on one descriptor table).

    Connections accepted on either listener are counted live; everything else (upstream
    connections, SQLite, the event loop's own) is re-counted every ``FD_SAMPLE_SECONDS`` and
    again whenever the estimate nears a threshold. Above ``api_ceiling`` a new API connection
    is answered 503 and closed at once, so the last ``reserve`` descriptors stay for the
    control socket, upstream connections and SQLite: ``nexusctl`` keeps answering while the
    API is saturated. Crossing ``warn_at`` logs one WARNING (again only after dropping back
    below ``rearm_at``); refusing logs one WARNING until the count is back under ``warn_at``.
    """

    def __init__(self, limit: int | None = None) -> None:
        if limit is None and resource is not None:
            soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
            limit = None if soft == resource.RLIM_INFINITY else soft
        self.connections = 0
        self.refused = 0
        self.warned = False
        self.refusing = False
        self._refused_at_start = 0
        self._checked = 0.0
        self._others = 0
        self.enabled = bool(limit) and count_open_fds() is not None
        self.limit = limit or 0
        self.reserve = max(16, min(256, self.limit // 8))
        self.api_ceiling = self.limit - self.reserve
        self.warn_at = min(int(self.limit * 0.8), self.api_ceiling)
        self.rearm_at = int(self.warn_at * 0.9)
        if self.enabled:
            self.sample()

    @property
    def estimate(self) -> int:
        return self._others + self.connections

    def sample(self) -> int:
        """Re-count the descriptors really open; log a crossing either way."""
        count = count_open_fds()
        if count is None:
            return self.estimate
        self._checked = time.monotonic()
        self._others = count - self.connections
        self._observe(count)
        return count

    def _observe(self, count: int) -> None:
        if count >= self.warn_at and not self.warned:
            self.warned = True
            log.warning(
                "open files: %d of the limit %d; from %d on new API connections are refused "
                "(503) so the control socket keeps answering. Raise the limit (LimitNOFILE= in "
                "the systemd unit, ulimit -n) or find the client holding connections open",
                count,
                self.limit,
                self.api_ceiling,
            )
        elif count < self.rearm_at and self.warned:
            self.warned = False
            log.info("open files back to %d of the limit %d", count, self.limit)
        if self.refusing and count < self.warn_at:
            self.refusing = False
            log.info(
                "API connections no longer refused (%d refused at the open-file limit)",
                self.refused - self._refused_at_start,
            )

    def admit(self, listener: str) -> bool:
        """Count a new connection; False means answer 503 and close it (API only)."""
        self.connections += 1
        if not self.enabled:
            return True
        count = self.estimate
        if count >= self.warn_at and time.monotonic() - self._checked > 0.01:
            count = self.sample()
        if listener != "api" or count < self.api_ceiling:
            return True
        if not self.refusing:
            self.refusing = True
            self._refused_at_start = self.refused
            log.warning(
                "refusing new API connections: %d open files, limit %d (%d kept for the control "
                "socket, upstream connections and history)",
                count,
                self.limit,
                self.reserve,
            )
        self.refused += 1
        return False

    def release(self) -> None:
        self.connections -= 1

    async def run(self) -> None:
        while self.enabled:
            self.sample()
            await asyncio.sleep(FD_SAMPLE_SECONDS)


# --- Hypercorn adjustments -------------------------------------------------------------------
#
# Three subclasses, installed into Hypercorn's own module namespace (``install_hypercorn_patches``)
# because ``serve`` offers no hook for them; both are checked against Hypercorn 0.17 and 0.18
# (the pinned range). Every Hypercorn server in the process gets them (the API and the control
# socket are the only ones).


class _HyperConfig(HyperConfig):
    """Hypercorn's config plus what our connection class needs to know."""

    fd_guard: FdGuard | None = None
    listener = "api"


class NexusTCPServer(TCPServer):
    """Hypercorn's connection, released as soon as the peer closes it.

    Hypercorn notices the peer's FIN while idle (``_read_data`` ends at EOF), but then waits
    for its task group to finish before closing the socket, and that group still holds the
    keep-alive idle task: the descriptor stays in CLOSE_WAIT for the whole
    ``keep_alive_timeout``. Stopping the idle task once reading has ended lets the connection
    close at once; an in-flight request already got ``http.disconnect`` from Hypercorn.
    """

    _peer_gone = False

    async def run(self) -> None:
        guard = getattr(self.config, "fd_guard", None)
        if guard is None:
            await super().run()
            return
        try:
            if guard.admit(getattr(self.config, "listener", "api")):
                await super().run()
            else:
                await self._refuse(guard)
        finally:
            guard.release()

    async def _read_data(self) -> None:
        try:
            await super()._read_data()
        finally:
            self._peer_gone = True
            await self.idle_task.stop()

    async def protocol_send(self, event: HyperEvent) -> None:
        if self._peer_gone and isinstance(event, Updated) and event.idle:
            return  # nothing left to keep alive: run() is closing the connection
        await super().protocol_send(event)

    async def _refuse(self, guard: FdGuard) -> None:
        body = ServiceUnavailable(
            f"Nexus is at its open-file limit ({guard.limit}); try again shortly"
        ).render()
        head = (
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nretry-after: 1\r\nconnection: close\r\n\r\n"
        )
        with contextlib.suppress(OSError, RuntimeError):
            self.writer.write(head.encode() + body)
            self.writer.write_eof()
        with contextlib.suppress(OSError, RuntimeError, asyncio.CancelledError):
            self.writer.close()
            await self.writer.wait_closed()


#: Hypercorn's own error answers (the request never reached the app): status → (code, text)
_PROTOCOL_ERRORS = {
    400: (
        "malformed_request",
        "malformed HTTP request: the request line or a header could not be parsed",
    ),
    431: (
        "request_header_fields_too_large",
        "request headers are too large (at most {limit} KiB for the request line and headers)",
    ),
}


def protocol_error_body(status: int, header_limit: int = 16 * 1024) -> bytes:
    """The OpenAI error envelope for an answer Hypercorn gives before any app sees the request."""
    code, message = _PROTOCOL_ERRORS.get(
        status, ("protocol_error", f"HTTP protocol error: {HTTPStatus(status).phrase}")
    )
    message = message.replace("{limit}", f"{header_limit // 1024}")
    error = {"message": message, "type": "invalid_request_error", "param": None, "code": code}
    return json.dumps({"error": error}).encode()


class NexusH11Protocol(H11Protocol):
    """HTTP/1.1 with a JSON body on Hypercorn's own 400 (malformed request line or header)
    and 431 (oversize headers) answers, which are otherwise empty."""

    async def _send_error_response(self, status_code: int) -> None:
        body = protocol_error_body(status_code, self.config.h11_max_incomplete_size)
        headers: list[tuple[bytes, bytes]] = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        await self._send_h11_event(
            h11.Response(
                status_code=status_code,
                headers=list(chain(headers, self.config.response_headers("h11"))),
            )
        )
        await self._send_h11_event(h11.Data(data=body))
        await self._send_h11_event(h11.EndOfMessage())


class BoundedWebsocketBuffer(ws_stream.WebsocketBuffer):
    """Hypercorn's buffer writes a message part *then* checks the size, and after a 1009 it
    keeps appending what follows: one 256 MiB frame cost 258 MiB of RSS. Refuse before
    writing, and stay refused."""

    def extend(self, event: Message) -> None:
        if self.length + len(event.data) > self.max_length:
            self.length = self.max_length + 1
            raise ws_stream.FrameTooLargeError()
        super().extend(event)


def install_hypercorn_patches() -> None:
    """Make Hypercorn's ``serve`` use the classes above (idempotent)."""
    needed = [(TCPServer, "_read_data"), (TCPServer, "protocol_send")]
    needed += [(H11Protocol, "_send_error_response"), (H11Protocol, "_send_h11_event")]
    for cls, name in needed:
        if not callable(getattr(cls, name, None)):
            raise RuntimeError(f"unsupported Hypercorn version: {cls.__name__}.{name} is gone")
    hypercorn_run.TCPServer = NexusTCPServer  # type: ignore[misc]
    hypercorn_protocol.H11Protocol = NexusH11Protocol  # type: ignore[misc]
    if not hasattr(ws_stream, "FrameTooLargeError"):
        raise RuntimeError("unsupported Hypercorn version: ws_stream.FrameTooLargeError is gone")
    ws_stream.WebsocketBuffer = BoundedWebsocketBuffer  # type: ignore[misc]


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
        install_hypercorn_patches()
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
        self.fd_guard = FdGuard()
        self.stop_event = asyncio.Event()
        self.ready = asyncio.Event()
        self._shutdown_task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def _hypercorn_config(self, fd: int, listener: str) -> HyperConfig:
        hcfg = _HyperConfig()
        hcfg.fd_guard = self.fd_guard
        hcfg.listener = listener
        hcfg.bind = [f"fd://{fd}"]
        hcfg.accesslog = None
        hcfg.errorlog = logging.getLogger("nexus.http")
        hcfg.graceful_timeout = 2.0  # our drain already ran; this only closes idle connections
        # idle keep-alive connections only: one the client closes is released at once
        # (NexusTCPServer), and FdGuard keeps many idle ones from starving the control socket
        hcfg.keep_alive_timeout = 75.0
        hcfg.keep_alive_max_requests = 1_000_000  # do not recycle busy keep-alive clients
        # /ws viewers only send tiny messages; the app closes anything over 4 KiB itself
        hcfg.websocket_max_message_size = 64 * 1024
        return hcfg

    async def run(self) -> None:
        fd_task: asyncio.Task[None] | None = None
        try:
            await self.core.start()
            api = create_app(self.core)
            control = create_control_app(self.core, lambda: self.url)
            self.control.write_record(self.url)
            fd_task = supervise("fd-guard", self.fd_guard.run)
            async with asyncio.TaskGroup() as group:
                group.create_task(
                    serve(
                        api,
                        self._hypercorn_config(self.sock.detach(), "api"),  # type: ignore[arg-type]
                        shutdown_trigger=self.stop_event.wait,
                    )
                )
                group.create_task(
                    serve(
                        control,  # type: ignore[arg-type]
                        self._hypercorn_config(self.control_sock.detach(), "control"),
                        shutdown_trigger=self.stop_event.wait,
                    )
                )
                group.create_task(self._announce())
        finally:
            if fd_task is not None:
                fd_task.cancel()
            await self.core.stop()
            self.control.close()
            log.info("stopped")

    async def _announce(self) -> None:
        """Ready means both listeners answer requests, not merely that sockets exist."""
        await wait_until_serving(self.url + "/health", str(self.control.path))
        backends = self.core.registry.all()
        configured = sum(1 for b in backends if b.source is DiscoverySource.STATIC)
        log.info(
            "OpenAI API listening on %s; control socket %s (%d backends: %d configured, %d found)",
            self.url,
            self.control.path,
            len(backends),
            configured,
            len(backends) - configured,
        )
        if not backends:
            log.warning(
                "no backends yet: start a local server (Ollama: `ollama serve`; llama.cpp: "
                "`llama-server -m MODEL.gguf`) — Nexus looks for it on its usual port at the "
                "first request — or add one with `nexus backends add URL`"
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
    limits = raise_open_file_limit()
    if limits is not None and limits[1] > limits[0]:
        log.info("open-file limit raised from %d to %d", *limits)
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
