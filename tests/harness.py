"""A real daemon for tests: the core plus Hypercorn on a real loopback socket, in its own
thread and event loop, so synchronous clients (the openai SDK) and async tests alike can
talk to it over HTTP while the test inspects its state safely on the daemon's loop.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

from nexusd.config.loader import LoadedConfig, parse_config
from nexusd.core import Nexus
from nexusd.registry import Backend
from nexusd.server import Daemon, bind_tcp

T = TypeVar("T")

#: fast, quiet defaults for tests: no mDNS, no port probe, quick health cycles
TEST_DEFAULTS: dict[str, Any] = {
    "server": {"host": "127.0.0.1", "port": 0, "shutdown_timeout_seconds": 5},
    "discovery": {"enabled": False, "probe": False},
    "health_check": {"interval_seconds": 0.5, "timeout_seconds": 2},
}


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


class DaemonThread:
    def __init__(
        self,
        config: dict[str, Any] | None = None,
        config_path: Path | None = None,
        state_dir: Path | None = None,
    ) -> None:
        data = merge(TEST_DEFAULTS, config or {})
        cfg, warnings, sources = parse_config(data, env={})
        # short: Unix socket paths are limited to ~104 bytes
        workdir = Path(tempfile.mkdtemp(prefix="nx-", dir="/tmp"))
        self.control_path = workdir / "nexusd.sock"
        # edits made through the control API land in this file (absent until the first one)
        self.config_path = config_path or workdir / "nexus.toml"
        self.state_dir = state_dir or workdir / "state"
        self.loaded = LoadedConfig(
            cfg,
            path=self.config_path,
            file_exists=self.config_path.exists(),
            warnings=warnings,
            sources=sources,
        )
        self.loop = asyncio.new_event_loop()
        self._ready: Future[Daemon] = Future()
        self._thread = threading.Thread(target=self._main, name="nexusd-test", daemon=True)
        self.daemon: Daemon

    def start(self) -> DaemonThread:
        self._thread.start()
        self.daemon = self._ready.result(timeout=15)
        return self

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._run())
        finally:
            self.loop.close()

    async def _run(self) -> None:
        try:
            sock = bind_tcp("127.0.0.1", 0)
            daemon = Daemon(
                self.loaded, sock, control_path=self.control_path, state_dir=self.state_dir
            )
            task = asyncio.ensure_future(daemon.run())
            await daemon.ready.wait()
        except BaseException as exc:
            self._ready.set_exception(exc)
            raise
        self._ready.set_result(daemon)
        await task

    # --- access ---------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return self.daemon.url

    @property
    def core(self) -> Nexus:
        return self.daemon.core

    def call(self, fn: Callable[[], T], timeout: float = 10) -> T:
        """Run ``fn`` on the daemon's loop (where its state lives) and return the result."""

        async def run() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout)

    def run(self, coro: Any, timeout: float = 30) -> Any:
        """Await ``coro`` on the daemon's loop."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def backend(self, backend_id: str) -> Backend:
        found = self.call(lambda: self.core.registry.get(backend_id))
        assert found is not None, f"no backend {backend_id!r}"
        return found

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
        """Re-check ``predicate`` on the daemon loop after every bus event (and every 50 ms,
        for state that changes without an event) until true or ``timeout``."""

        async def run() -> bool:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            with self.core.bus.subscribe() as sub:
                while not predicate():
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        return False
                    try:
                        async with asyncio.timeout(min(remaining, 0.05)):
                            await sub.get()
                    except TimeoutError:
                        pass
            return True

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout + 5)

    def wait_healthy(self, *backend_ids: str, timeout: float = 10.0) -> None:
        def all_healthy() -> bool:
            return all(
                (b := self.core.registry.get(i)) is not None and b.routable for i in backend_ids
            )

        assert self.wait_until(all_healthy, timeout), (
            f"backends never became healthy: {backend_ids}"
        )

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Every request finished and every backend's pending counter back at 0."""

        def idle() -> bool:
            return self.core.inflight == 0 and all(b.pending == 0 for b in self.core.registry.all())

        assert self.wait_until(idle, timeout), "daemon did not return to idle"

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        self.loop.call_soon_threadsafe(self.daemon.request_shutdown)
        self._thread.join(20)
        shutil.rmtree(self.control_path.parent, ignore_errors=True)


def ollama_backend(name: str, url: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "url": url, "type": "ollama", **extra}
