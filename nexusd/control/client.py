"""Client of the control API over the Unix socket — used by ``nexusctl``, ``nexus`` and the TUI.

Import-light on purpose (httpx and the stdlib only; never Quart, zeroconf or tiktoken), so
command-line tools start fast.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from nexusd.control.location import find_socket

BASE = "http://nexus"


class ControlError(Exception):
    """Base of client errors; ``exit_code`` is what ``nexusctl`` exits with."""

    exit_code = 1


class DaemonUnreachable(ControlError):
    exit_code = 3

    def __init__(self, socket: Path, reason: str) -> None:
        super().__init__(
            f"no Nexus daemon answers on {socket} ({reason}). Start one with `nexus serve` "
            "(or `nexus service install` to run it as a user service), or point at it with "
            "--socket / NEXUS_SOCKET."
        )
        self.socket = socket


class Refused(ControlError):
    """The daemon understood and said no (4xx/5xx with ``{"error": {code, message}}``)."""

    exit_code = 1

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _raise_for(response: httpx.Response) -> Any:
    try:
        data = response.json()
    except ValueError:
        data = None
    if response.status_code >= 400:
        error = (data or {}).get("error") if isinstance(data, dict) else None
        if isinstance(error, dict):
            raise Refused(response.status_code, str(error.get("code")), str(error.get("message")))
        raise Refused(response.status_code, "http_error", response.text[:200])
    return data


class ControlClient:
    def __init__(self, socket: str | Path | None = None, timeout: float = 10.0) -> None:
        self.socket = find_socket(socket)
        self._http = httpx.Client(
            transport=httpx.HTTPTransport(uds=str(self.socket)),
            base_url=BASE,
            timeout=httpx.Timeout(timeout),
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, method: str, path: str, body: Any = None, params: Any = None) -> Any:
        try:
            response = self._http.request(method, path, json=body, params=params)
        except (httpx.ConnectError, httpx.RemoteProtocolError, FileNotFoundError) as exc:
            raise DaemonUnreachable(self.socket, type(exc).__name__) from None
        except httpx.TimeoutException:
            raise DaemonUnreachable(self.socket, "timed out") from None
        return _raise_for(response)

    # --- resources -----------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return self.call("GET", "/v1/status")

    def backends(self) -> list[dict[str, Any]]:
        return self.call("GET", "/v1/backends")["backends"]

    def add_backend(self, url: str, **fields: Any) -> dict[str, Any]:
        return self.call(
            "POST",
            "/v1/backends",
            {"url": url, **{k: v for k, v in fields.items() if v is not None}},
        )

    def scan_backends(self) -> list[dict[str, Any]]:
        return self.call("POST", "/v1/backends/scan")["added"]

    def remove_backend(self, backend: str) -> dict[str, Any]:
        """By id or by name (``nexus backends add`` shows both)."""
        return self._by_id_or_name(backend, "DELETE")

    def patch_backend(self, backend: str, **fields: Any) -> dict[str, Any]:
        return self._by_id_or_name(backend, "PATCH", fields)

    def _by_id_or_name(self, ref: str, method: str, body: Any = None) -> Any:
        try:
            return self.call(method, f"/v1/backends/{quote(ref, safe='')}", body)
        except Refused as exc:
            if exc.status != 404:
                raise
            named = [b["id"] for b in self.backends() if b["name"] == ref]
            if len(named) != 1:
                raise
            return self.call(method, f"/v1/backends/{quote(named[0], safe='')}", body)

    def models(self) -> list[dict[str, Any]]:
        return self.call("GET", "/v1/models")["models"]

    def aliases(self) -> dict[str, str]:
        return self.call("GET", "/v1/aliases")["aliases"]

    def set_alias(self, name: str, target: str) -> dict[str, Any]:
        return self.call("PUT", f"/v1/aliases/{name}", {"target": target})

    def remove_alias(self, name: str) -> dict[str, Any]:
        return self.call("DELETE", f"/v1/aliases/{name}")

    def fallbacks(self) -> dict[str, list[str]]:
        return self.call("GET", "/v1/fallbacks")["fallbacks"]

    def set_fallbacks(self, model: str, chain: list[str]) -> dict[str, Any]:
        return self.call("PUT", f"/v1/fallbacks/{model}", {"chain": chain})

    def remove_fallbacks(self, model: str) -> dict[str, Any]:
        return self.call("DELETE", f"/v1/fallbacks/{model}")

    def requests(self, limit: int = 100, **filters: str | None) -> list[dict[str, Any]]:
        params = {"limit": limit, **{k: v for k, v in filters.items() if v}}
        return self.call("GET", "/v1/requests", params=params)["requests"]

    def request(self, request_id: str) -> dict[str, Any]:
        return self.call("GET", f"/v1/requests/{request_id}")

    def route(self, model: str, **needs: Any) -> dict[str, Any]:
        return self.call("POST", "/v1/route", {"model": model, **needs})

    def stats(self) -> dict[str, Any]:
        return self.call("GET", "/v1/stats")

    def trends(self) -> dict[str, Any]:
        """``{"overall": series, "backends": {id: series}}``: the last hour, per minute."""
        return self.call("GET", "/v1/trends")

    def config(self) -> dict[str, Any]:
        return self.call("GET", "/v1/config")

    def reload_config(self) -> dict[str, Any]:
        return self.call("POST", "/v1/config/reload")

    def events(self) -> Iterator[dict[str, Any]]:
        """Live events until the daemon stops (heartbeat comments are skipped)."""
        try:
            with self._http.stream(
                "GET", "/v1/events", timeout=httpx.Timeout(5.0, read=None)
            ) as response:
                if response.status_code >= 400:
                    response.read()
                    _raise_for(response)
                yield from _parse_sse(response.iter_lines())
        except (httpx.TransportError, FileNotFoundError) as exc:
            # a daemon that stops ends the stream cleanly; anything else is a lost daemon
            raise DaemonUnreachable(self.socket, f"connection lost: {type(exc).__name__}") from None


class AsyncControlClient:
    """The async twin for the TUI: same resources, plus the event stream."""

    def __init__(self, socket: str | Path | None = None, timeout: float = 10.0) -> None:
        self.socket = find_socket(socket)
        self._http = httpx.AsyncClient(
            transport=httpx.AsyncHTTPTransport(uds=str(self.socket)),
            base_url=BASE,
            timeout=httpx.Timeout(timeout),
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def call(self, method: str, path: str, body: Any = None, params: Any = None) -> Any:
        try:
            response = await self._http.request(method, path, json=body, params=params)
        except httpx.TimeoutException:
            raise DaemonUnreachable(self.socket, "timed out") from None
        except (httpx.TransportError, FileNotFoundError) as exc:
            raise DaemonUnreachable(self.socket, type(exc).__name__) from None
        return _raise_for(response)

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        try:
            async with self._http.stream(
                "GET", "/v1/events", timeout=httpx.Timeout(5.0, read=None)
            ) as response:
                if response.status_code >= 400:
                    await response.aread()
                    _raise_for(response)
                lines = []
                async for line in response.aiter_lines():
                    lines.append(line)
                    if line == "":
                        for event in _parse_sse(lines):
                            yield event
                        lines = []
        except (httpx.TransportError, FileNotFoundError) as exc:
            raise DaemonUnreachable(self.socket, type(exc).__name__) from None


def _parse_sse(lines: Iterator[str] | list[str]) -> Iterator[dict[str, Any]]:
    data: list[str] = []
    for line in lines:
        if line.startswith("data:"):
            data.append(line[5:].lstrip())
        elif line == "" and data:
            yield json.loads("\n".join(data))
            data = []
    if data:
        yield json.loads("\n".join(data))
