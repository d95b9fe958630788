"""Advertise one service over mDNS from its own process, for the discovery tests.

    python tests/mdns_advertise.py NAME TYPE PORT [--txt k=v]... [--address IP]...

Registers ``NAME.TYPE`` (e.g. ``My_Box`` ``_ollama._tcp.local.`` ``11434``) with zeroconf's
async API on ``127.0.0.1`` only (IPv4), so its multicast never leaves the loopback interface.
``--address`` sets the addresses put in the A records (default 127.0.0.1; it may be an address
that is not on this machine, e.g. a TEST-NET one).

Prints one line per state change, flushed, so a parent waits by reading stdout, never by
sleeping: ``advertised``, ``withdrawn``, ``updated``, ``stopped``. Commands on stdin, one per
line: ``withdraw`` (unregister: goodbye packets), ``advertise`` (register again),
``txt k=v ...`` (update the TXT record). SIGTERM, SIGINT or EOF on stdin unregister and exit 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import signal
import sys

from zeroconf import IPVersion
from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="mdns_advertise", description=__doc__)
    p.add_argument("name", help="instance label, e.g. My_Ollama")
    p.add_argument("type", help="service type, e.g. _ollama._tcp.local.")
    p.add_argument("port", type=int)
    p.add_argument("--txt", action="append", default=[], metavar="K=V")
    p.add_argument("--address", action="append", default=[], metavar="IP")
    p.add_argument("--interface", default="127.0.0.1", help="interface address to send on")
    return p.parse_args(argv)


def txt_of(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        out[key] = value
    return out


class Advertiser:
    def __init__(self, args: argparse.Namespace) -> None:
        self.type = args.type if args.type.endswith(".") else args.type + "."
        self.name = f"{args.name}.{self.type}"
        self.port = args.port
        self.addresses = [ipaddress.ip_address(a).packed for a in args.address or ["127.0.0.1"]]
        self.txt = txt_of(args.txt)
        host = "".join(c if c.isalnum() else "-" for c in args.name.lower())
        self.server = f"{host}-{self.port}.local."
        self.azc = AsyncZeroconf(interfaces=[args.interface], ip_version=IPVersion.V4Only)
        self.info: AsyncServiceInfo | None = None

    def _info(self) -> AsyncServiceInfo:
        return AsyncServiceInfo(
            self.type,
            self.name,
            addresses=self.addresses,
            port=self.port,
            properties=self.txt,
            server=self.server,
        )

    async def advertise(self) -> None:
        if self.info is None:
            self.info = self._info()
            # no probing for a unique name: this is a test network of our own
            done = await self.azc.async_register_service(self.info, cooperating_responders=True)
            await done
        say("advertised")

    async def withdraw(self) -> None:
        if self.info is not None:
            done = await self.azc.async_unregister_service(self.info)
            await done
            self.info = None
        say("withdrawn")

    async def update_txt(self, pairs: list[str]) -> None:
        self.txt.update(txt_of(pairs))
        if self.info is not None:
            self.info = self._info()
            done = await self.azc.async_update_service(self.info)
            await done
        say("updated")

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.withdraw()
        await self.azc.async_close()


def say(line: str) -> None:
    print(line, flush=True)


async def main(args: argparse.Namespace) -> int:
    adv = Advertiser(args)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    async def commands() -> None:
        while line := (await reader.readline()).decode():
            cmd, *rest = line.split() or [""]
            if cmd == "withdraw":
                await adv.withdraw()
            elif cmd == "advertise":
                await adv.advertise()
            elif cmd == "txt":
                await adv.update_txt(rest)
            elif cmd:
                print(f"unknown command {cmd!r}", file=sys.stderr, flush=True)
        stop.set()  # EOF: our parent is gone

    try:
        await adv.advertise()
        task = asyncio.create_task(commands())
        await stop.wait()
        task.cancel()
    finally:
        await adv.close()
    say("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
