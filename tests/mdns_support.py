"""Helpers for the mDNS tests: a private network namespace, advertiser processes, and waits on
the daemon's events and log records (never sleeps).

The multicast tests run only inside a network namespace of their own (``unshare -n``: only
``lo`` exists, with MULTICAST on and a route for 224.0.0.0/4), so no mDNS packet can reach a
real network. :func:`netns_command` builds that command; :func:`assert_isolated` refuses to
run multicast anywhere else.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nexusd.discovery.mdns import MdnsDiscovery
from nexusd.events import Event
from nexusd.tasks import supervise
from tests.harness import DaemonThread

REPO = Path(__file__).resolve().parent.parent
ADVERTISER = Path(__file__).resolve().parent / "mdns_advertise.py"
#: set in the environment of the test run inside the namespace
NETNS_ENV = "NEXUS_MDNS_NETNS"
#: run inside the namespace before pytest: loopback up, multicast on it, multicast route
NETNS_SETUP = "ip link set lo up && ip link set lo multicast on && ip route add 224.0.0.0/4 dev lo"


def in_netns() -> bool:
    return os.environ.get(NETNS_ENV) == "1"


def assert_isolated() -> None:
    """Multicast tests must only ever see the loopback interface."""
    names = sorted(name for _, name in socket.if_nameindex())
    assert names == ["lo"], f"refusing to run mDNS tests on a real network (interfaces: {names})"


def netns_command(inner: list[str]) -> tuple[list[str] | None, str]:
    """``(argv, "")`` running ``inner`` in a fresh network namespace, or ``(None, why not)``."""
    unshare, ip = shutil.which("unshare"), shutil.which("ip")
    if unshare is None or ip is None:
        return None, "unshare(1) and ip(8) are needed to run mDNS tests in a network namespace"
    # root: a plain net namespace; otherwise a user namespace maps us to root inside it
    flags = ["-n"] if os.geteuid() == 0 else ["-r", "-n"]
    probe = subprocess.run(
        [unshare, *flags, "sh", "-c", NETNS_SETUP],
        capture_output=True,
        text=True,
        timeout=20,
    )
    if probe.returncode != 0:
        return None, f"cannot create a network namespace: {probe.stderr.strip() or probe.stdout}"
    script = f'{NETNS_SETUP} && exec "$@"'
    return [unshare, *flags, "sh", "-c", script, "sh", *inner], ""


# --- advertiser processes -----------------------------------------------------------------------


class Advertiser:
    """One ``tests/mdns_advertise.py`` process; its stdout lines are read by a thread."""

    def __init__(
        self,
        name: str,
        service_type: str,
        port: int,
        txt: dict[str, str] | None = None,
        addresses: list[str] | None = None,
    ) -> None:
        argv = [sys.executable, str(ADVERTISER), name, service_type, str(port)]
        for key, value in (txt or {}).items():
            argv += ["--txt", f"{key}={value}"]
        for address in addresses or []:
            argv += ["--address", address]
        self.instance = f"{name}.{service_type}"
        self.proc = subprocess.Popen(
            argv,
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line.strip())
        self._lines.put(None)

    def expect(self, wanted: str, timeout: float = 10.0) -> None:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(
                f"advertiser {self.instance}: no {wanted!r} in {timeout}s"
            ) from None
        if line != wanted:
            err = self.proc.stderr.read() if line is None and self.proc.stderr else ""
            raise AssertionError(f"advertiser {self.instance}: {line!r}, wanted {wanted!r} {err}")

    def send(self, command: str, wanted: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        self.expect(wanted)

    def withdraw(self) -> None:
        self.send("withdraw", "withdrawn")

    def advertise(self) -> None:
        self.send("advertise", "advertised")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# --- waiting on the daemon ----------------------------------------------------------------------


class EventLog:
    """Every bus event from now on; ``wait(match)`` returns the next matching one in order."""

    def __init__(self, d: DaemonThread) -> None:
        self.d = d
        self.events: list[Event] = []
        self._pos = 0
        self._sub = d.call(lambda: d.core.bus.subscribe(maxsize=10_000))

    def wait(self, match: Callable[[Event], bool], timeout: float = 10.0) -> Event:
        async def run() -> Event | None:
            i = self._pos
            try:
                async with asyncio.timeout(timeout):
                    while True:
                        while i < len(self.events):
                            if match(self.events[i]):
                                self._pos = i + 1
                                return self.events[i]
                            i += 1
                        self.events.append(await self._sub.get())
            except TimeoutError:
                return None

        found = asyncio.run_coroutine_threadsafe(run(), self.d.loop).result(timeout + 5)
        if found is None:
            seen = [(e.type, e.data.get("id")) for e in self.events[self._pos :]]
            raise AssertionError(f"no matching event within {timeout}s; saw {seen}")
        return found

    def close(self) -> None:
        self.d.call(self._sub.close)


def is_event(type_: str, **data: Any) -> Callable[[Event], bool]:
    return lambda e: e.type == type_ and all(e.data.get(k) == v for k, v in data.items())


class LogWatcher(logging.Handler):
    """Records of one logger (from any thread); ``wait(match)`` blocks until one matches."""

    def __init__(self, logger: str = "nexus.discovery", level: int = logging.DEBUG) -> None:
        super().__init__(level)
        self.records: list[logging.LogRecord] = []
        self._cond = threading.Condition()
        self._logger = logging.getLogger(logger)
        self._saved_level = self._logger.level

    def __enter__(self) -> LogWatcher:
        self._logger.addHandler(self)
        self._logger.setLevel(self.level)
        return self

    def __exit__(self, *exc: object) -> None:
        self._logger.removeHandler(self)
        self._logger.setLevel(self._saved_level)

    def emit(self, record: logging.LogRecord) -> None:
        with self._cond:
            self.records.append(record)
            self._cond.notify_all()

    def matching(self, match: Callable[[logging.LogRecord], bool]) -> list[logging.LogRecord]:
        with self._cond:
            return [r for r in self.records if match(r)]

    def wait(self, match: Callable[[logging.LogRecord], bool], timeout: float = 10.0) -> None:
        with self._cond:
            ok = self._cond.wait_for(lambda: any(match(r) for r in self.records), timeout)
        messages = [r.getMessage() for r in self.records]
        assert ok, f"no matching log record within {timeout}s; saw {messages}"


# --- discovery on a test daemon -----------------------------------------------------------------


class RunningDiscovery:
    """The daemon's own mDNS discovery when the core starts one, else one started here."""

    def __init__(self, d: DaemonThread, **kwargs: Any) -> None:
        self.d = d
        self.task: asyncio.Task[None] | None = None
        wired = getattr(d.core, "mdns", None)
        if isinstance(wired, MdnsDiscovery) and not kwargs:
            self.mdns = wired
        else:

            def start() -> MdnsDiscovery:
                mdns = MdnsDiscovery(d.core, **kwargs)
                self.task = supervise("mdns-test", mdns.run)
                return mdns

            self.mdns = d.call(start)
        browsing = asyncio.wait_for(self.mdns.browsing.wait(), 10)
        asyncio.run_coroutine_threadsafe(browsing, d.loop).result(15)

    def stop(self) -> None:
        task = self.task
        if task is not None and not task.done():

            async def cancel() -> None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

            asyncio.run_coroutine_threadsafe(cancel(), self.d.loop).result(10)
