"""Readiness: when both listeners really answer, tell systemd (``Type=notify``).

The notify protocol is one datagram to ``$NOTIFY_SOCKET`` — a few lines of stdlib, no
dependency. An ``@`` prefix means Linux's abstract socket namespace.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket

import aiohttp

log = logging.getLogger("nexus.server")


def notify_systemd(state: str) -> bool:
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        try:
            sock.sendto(state.encode(), address)
        except OSError as exc:
            log.warning("could not notify systemd (%s): %s", state, exc)
            return False
    return True


async def wait_until_serving(api_health_url: str, control_socket: str, timeout: float = 30) -> None:
    """Poll both listeners until each answers a request (they were bound before serving)."""
    async with asyncio.timeout(timeout):
        async with aiohttp.ClientSession() as tcp:
            while True:
                try:
                    async with tcp.get(api_health_url) as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.01)
        connector = aiohttp.UnixConnector(path=control_socket)
        async with aiohttp.ClientSession(connector=connector) as unix:
            while True:
                try:
                    async with unix.get("http://nexus/v1/status") as resp:
                        if resp.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.01)
