"""The data source: the only part of the TUI that talks to the daemon.

``Source`` is the interface the app depends on; ``DaemonSource`` implements it over the
control socket with ``AsyncControlClient``: it opens the live event stream (``GET
/v1/events``), loads a snapshot (status, backends, aliases, fallbacks, recent requests and
the ``[tui.keymap]`` config), posts both to the app as messages, polls the counters that
have no events (pending, latency EMA) every few seconds, and when the daemon goes away it
posts ``Disconnected`` with a countdown and reconnects with backoff — never raising into
the UI. Tests swap in a fake source with fixed data (tests/tui/fake_source.py).

The first failed read says so: the event stream ending, a failed poll, and also a failed
request of the UI itself (a route, an explanation, a change) end the session at once, so the
banner never waits for the next poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nexus_tui.messages import (
    BackendRefreshed,
    Connected,
    DaemonEvent,
    Disconnected,
    Polled,
    SnapshotLoaded,
)
from nexus_tui.state import MAX_REQUESTS

#: how often the poll loop also reads ``GET /v1/trends`` (the series move once a minute)
TRENDS_EVERY = 10.0

if TYPE_CHECKING:
    from textual.app import App

    from nexusd.control.client import AsyncControlClient


class Source:
    """What the app needs from a data source. Subclass it (see ``DaemonSource``)."""

    #: shown in the banner and the header ("where are we connected")
    where: str = "?"

    async def run(self, app: App[Any]) -> None:
        """Post ``Connected``/``SnapshotLoaded``/``DaemonEvent``/… to ``app`` until cancelled."""
        raise NotImplementedError

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        """One control-API request; raises ``nexusd.control.client.ControlError`` subclasses:
        ``Refused`` (the daemon said no, with its message) or ``DaemonUnreachable``."""
        raise NotImplementedError

    async def aclose(self) -> None:
        return None


async def fetch_snapshot(call: Any) -> dict[str, Any]:
    """Everything the views need, fetched concurrently with ``call(method, path)``."""

    async def keymap() -> Any:
        from nexusd.control.client import Refused

        try:  # optional: a daemon without [tui.keymap] support still gets a working TUI
            config = await call("GET", "/v1/config")
        except Refused:
            return {}
        return ((config or {}).get("values") or {}).get("tui.keymap", {}).get("value") or {}

    async def trends() -> Any:
        from nexusd.control.client import Refused

        try:  # optional: a daemon from before GET /v1/trends still gets a working TUI
            return await call("GET", "/v1/trends")
        except Refused:
            return {}

    status, backends, aliases, fallbacks, requests, keys, trend = await asyncio.gather(
        call("GET", "/v1/status"),
        call("GET", "/v1/backends"),
        call("GET", "/v1/aliases"),
        call("GET", "/v1/fallbacks"),
        call("GET", f"/v1/requests?limit={MAX_REQUESTS}"),
        keymap(),
        trends(),
    )
    return {
        "status": status,
        "backends": backends["backends"],
        "aliases": aliases["aliases"],
        "fallbacks": fallbacks["fallbacks"],
        "requests": requests["requests"],
        "keymap": keys if isinstance(keys, dict) else {},
        "trends": trend if isinstance(trend, dict) else {},
    }


class _StreamEnded(Exception):
    pass


class DaemonSource(Source):
    def __init__(
        self,
        socket: str | Path | None = None,
        *,
        poll_interval: float = 2.0,
        backoff_start: float = 0.5,
        backoff_max: float = 5.0,
    ) -> None:
        from nexusd.control.location import find_socket

        self.socket = find_socket(socket)
        self.where = str(self.socket)
        self.poll_interval = poll_interval
        self.backoff_start, self.backoff_max = backoff_start, backoff_max
        self._client: AsyncControlClient | None = None
        #: the live session's inbox while connected (a failed UI request lands there too)
        self._inbox: asyncio.Queue[Any] | None = None

    def _new_client(self) -> AsyncControlClient:
        from nexusd.control.client import AsyncControlClient

        return AsyncControlClient(self.socket)

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        from nexusd.control.client import DaemonUnreachable

        try:
            return await self._read(method, path, body)
        except DaemonUnreachable as exc:
            if self._inbox is not None:  # connected until now: the session ends at once
                self._inbox.put_nowait(exc)
            raise

    async def _read(self, method: str, path: str, body: Any = None) -> Any:
        if self._client is None:
            self._client = self._new_client()
        return await self._client.call(method, path, body)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def run(self, app: App[Any]) -> None:
        # httpx is the heaviest import of the TUI: load it off the UI thread
        await asyncio.to_thread(importlib.import_module, "nexusd.control.client")
        delay = self.backoff_start
        while True:
            reason = await self._session(app)
            if reason is None:  # connected for a while, then lost: start the backoff again
                delay = self.backoff_start
                continue
            remaining = delay
            while remaining > 0:
                app.post_message(Disconnected(self.where, reason, math.ceil(remaining)))
                step = min(1.0, remaining)
                await asyncio.sleep(step)
                remaining -= step
            delay = min(delay * 2, self.backoff_max)

    async def _session(self, app: App[Any]) -> str | None:
        """One connection: returns why it could not connect, or None after a lost connection
        (which is reported at once and retried after the first backoff step)."""
        from nexusd.control.client import DaemonUnreachable

        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.aclose()
        self._client = client = self._new_client()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        tasks: list[asyncio.Task[Any]] = []
        connected = False
        try:
            # subscribe first, so nothing that happens while the snapshot loads is missed
            tasks.append(asyncio.create_task(self._pump(client, queue)))
            snapshot = await fetch_snapshot(self._read)
            connected = True
            self._inbox = queue
            app.post_message(Connected(self.where))
            app.post_message(SnapshotLoaded(snapshot))
            tasks.append(asyncio.create_task(self._poll(queue)))
            while True:
                item = await queue.get()
                if isinstance(item, BaseException):
                    raise item
                await self._handle(app, item)
        except asyncio.CancelledError:
            raise
        except DaemonUnreachable:
            reason = f"no Nexus daemon answers on {self.where}"
        except _StreamEnded as exc:
            reason = str(exc)
        except Exception as exc:  # a broken daemon must never crash the UI
            reason = f"{type(exc).__name__}: {exc}"[:200]
        finally:
            self._inbox = None
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if connected:
            app.post_message(Disconnected(self.where, reason, math.ceil(self.backoff_start)))
            await asyncio.sleep(self.backoff_start)
            return None
        return reason

    async def _handle(self, app: App[Any], event: dict[str, Any]) -> None:
        from nexusd.control.client import Refused

        kind = event.get("type")
        if kind == "_poll":
            app.post_message(
                Polled(event["status"], event["backends"]["backends"], event.get("trends"))
            )
            return
        app.post_message(DaemonEvent(event))
        if kind == "backend.status":
            # the event carries the status, not the flags (enabled, draining, priority)
            with contextlib.suppress(Refused):
                backend = await self._read("GET", f"/v1/backends/{event['data']['id']}")
                app.post_message(BackendRefreshed(backend))
        elif kind in ("gap", "config.reloaded"):
            app.post_message(SnapshotLoaded(await fetch_snapshot(self._read)))

    async def _pump(self, client: AsyncControlClient, queue: asyncio.Queue[Any]) -> None:
        try:
            async for event in client.events():
                queue.put_nowait(event)
            queue.put_nowait(_StreamEnded("the daemon closed the event stream (stopped?)"))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            queue.put_nowait(exc)

    async def _poll(self, queue: asyncio.Queue[Any]) -> None:
        from nexusd.control.client import Refused

        loop = asyncio.get_running_loop()
        trends_due = loop.time() + TRENDS_EVERY
        try:
            while True:
                await asyncio.sleep(self.poll_interval)
                status, backends = await asyncio.gather(
                    self._read("GET", "/v1/status"), self._read("GET", "/v1/backends")
                )
                poll = {"type": "_poll", "status": status, "backends": backends}
                if loop.time() >= trends_due:
                    trends_due = loop.time() + TRENDS_EVERY
                    with contextlib.suppress(Refused):  # an older daemon: no trends
                        poll["trends"] = await self._read("GET", "/v1/trends")
                queue.put_nowait(poll)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            queue.put_nowait(exc)
