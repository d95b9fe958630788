"""The browser guard: web pages the user visits must not be able to use Nexus.

Nexus has no authentication on its loopback API (like Ollama, llama.cpp…); what keeps a
hostile web page in the user's browser out is this ASGI middleware, in front of everything
(the inference hot path, the Quart routes, the dashboard and its ``/ws`` feed):

- **DNS rebinding** (``Host``): a page at ``rebind.attacker.example`` whose DNS name is
  switched to 127.0.0.1 is *same-origin* to the browser, so only the ``Host`` header tells it
  apart. When Nexus listens on a loopback address, only loopback names are answered —
  ``localhost``, ``*.localhost`` (browsers resolve these to loopback themselves, RFC 6761),
  ``127.x.y.z``, ``[::1]``, with any port — plus ``server.allowed_hosts``; anything else is a
  403. When it listens elsewhere (the LAN) the names clients legitimately use are open-ended
  (addresses, ``*.local`` mDNS names, DNS names, a reverse proxy's name), so there is no
  check unless ``server.allowed_hosts`` is set, which then turns the same check on (with the
  loopback names and the bind address).
- **Cross-site requests** (``Origin``): browsers send ``Origin`` on every cross-origin
  request that could change something — a ``fetch``/form POST (including the "simple"
  ``text/plain`` POST sent without a CORS preflight) and every WebSocket handshake. A present
  ``Origin`` must be Nexus's own (``http(s)://`` + the request's ``Host``) or listed in
  ``server.allowed_origins``; otherwise 403. ``Origin: null`` (sandboxed frames, ``file:``
  pages) is never ours. A request without ``Origin`` is not a cross-site browser request —
  curl, the SDKs, ``nexusctl`` — and passes, unless the browser marked it
  ``Sec-Fetch-Site: cross-site`` (an ``<img>``/``<script>`` from another site). A cross-site
  top-level navigation (a link to the dashboard on another site: ``GET``, ``Sec-Fetch-Mode:
  navigate``, ``Sec-Fetch-Dest: document``) is allowed: its answer goes to the user's tab,
  never to the page that linked it.
- No CORS headers are ever added: a page on another origin cannot read any answer.

The content type is deliberately not checked (``curl -d`` sends form-urlencoded JSON): the
``Origin`` rule covers browsers, and non-browser clients are not the threat here.

Cost on the hot path: one pass over the request headers comparing three names, a dict
lookup for the ``Host`` verdict (memoised), a byte comparison when ``Origin`` is present.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import TYPE_CHECKING

from nexusd.api.asgi import ASGIApp, Receive, Scope, Send
from nexusd.errors import NexusError

if TYPE_CHECKING:
    from nexusd.config.schema import ServerConfig
    from nexusd.core import Nexus

log = logging.getLogger("nexus.api")


#: verdicts remembered per ``Host`` value (cleared when full: hostile values cannot grow it)
HOST_MEMO = 256
#: distinct refused hosts/origins logged (each once) before the log goes quiet
LOG_LIMIT = 64
#: longest ``Host``/``Origin`` value echoed back in an error message
ECHO = 100


class Forbidden(NexusError):
    status = 403
    type = "invalid_request_error"
    code = "forbidden"

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message, error_type=code)
        self.code = code  # type: ignore[misc]


def is_loopback_host(host: str) -> bool:
    """True for a bind address (or host name) that only this machine can reach."""
    name = host.strip().strip("[]").rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def host_name(value: bytes) -> bytes | None:
    """The lower-case name in a ``Host`` value, without port or IPv6 brackets; None when
    the value is malformed (junk after the name, a port that is not a number)."""
    value = value.strip().lower()
    if value.startswith(b"["):
        end = value.find(b"]")
        rest = value[end + 1 :]
        if end < 0 or (rest and not (rest[:1] == b":" and rest[1:].isdigit())):
            return None
        return value[1:end]
    name, colon, port = value.rpartition(b":")
    if not colon:
        name = value
    elif not port.isdigit() or b":" in name:
        return None
    name = name[:-1] if name.endswith(b".") else name
    return name or None


def _strip_default_port(authority: bytes) -> bytes:
    if authority.endswith(b":80"):
        return authority[:-3]
    if authority.endswith(b":443"):
        return authority[:-4]
    return authority


def _origin_key(origin: str) -> bytes:
    """``HTTP://Example.com:80/`` → ``http://example.com``: how a browser spells an origin."""
    text = origin.strip().rstrip("/").lower()
    for scheme, port in (("http://", ":80"), ("https://", ":443")):
        if text.startswith(scheme) and text.endswith(port):
            text = text[: -len(port)]
    return text.encode("latin-1", "replace")


class _Policy:
    """The compiled rules for one ``[server]`` section."""

    def __init__(self, server: ServerConfig, loopback_bind: bool) -> None:
        #: ``name:port`` entries match that port only, bare names any port
        self.allowed_hosts = frozenset(h.strip().lower().encode() for h in server.allowed_hosts)
        self.allowed_names = frozenset(
            name
            for h in self.allowed_hosts
            if (name := host_name(h)) is not None
            and not h.rstrip(b"]").rpartition(b":")[2].isdigit()
        )
        #: check ``Host`` at all: always on loopback, on the LAN only when hosts are configured
        self.check_host = loopback_bind or bool(self.allowed_hosts)
        #: the bind address itself, as local tools spell it (also 0.0.0.0 / ::: that
        #: destination is this machine, and a page elsewhere sending it fails the Origin rule)
        self.bind_name = server.host.strip().strip("[]").rstrip(".").lower().encode()
        self.origins = frozenset(_origin_key(o) for o in server.allowed_origins)
        self.memo: dict[bytes, bool] = {}

    def host_ok(self, value: bytes) -> bool:
        verdict = self.memo.get(value)
        if verdict is None:
            verdict = self._host_ok(value)
            if len(self.memo) >= HOST_MEMO:
                self.memo.clear()
            self.memo[value] = verdict
        return verdict

    def _host_ok(self, value: bytes) -> bool:
        name = host_name(value)
        if name is None:
            return False
        if name in self.allowed_names or value.strip().lower() in self.allowed_hosts:
            return True
        if name == self.bind_name:
            return True
        try:
            return is_loopback_host(name.decode("ascii"))
        except UnicodeDecodeError:
            return False

    def origin_ok(self, origin: bytes, host: bytes | None) -> bool:
        origin = origin.lower()
        if origin.startswith(b"http://"):
            authority = origin[7:]
        elif origin.startswith(b"https://"):
            authority = origin[8:]
        else:  # "null", or nonsense
            return False
        if host is not None:
            host = host.lower()
            if authority == host or _strip_default_port(authority) == _strip_default_port(host):
                return True
        return origin in self.origins or _strip_default_port(origin) in self.origins


class BrowserGuard:
    """ASGI middleware refusing DNS-rebinding and cross-site browser requests (403)."""

    def __init__(self, app: ASGIApp, core: Nexus) -> None:
        self.app = app
        self.core = core
        #: where the listener is bound decides the ``Host`` rule; it changes only on restart
        self.loopback_bind = is_loopback_host(core.config.server.host)
        self._server = core.config.server
        self.policy = _Policy(self._server, self.loopback_bind)
        self._logged: set[bytes] = set()

    def _current(self) -> _Policy:
        server = self.core.config.server
        if server is not self._server:  # the config was reloaded
            self._server = server
            self.policy = _Policy(server, self.loopback_bind)
        return self.policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            return await self.app(scope, receive, send)
        policy = self._current()
        host = origin = fetch_site = None
        hosts = 0
        for name, value in scope["headers"]:
            if name == b"host":
                host = value
                hosts += 1
            elif name == b"origin":
                origin = value
            elif name == b"sec-fetch-site":
                fetch_site = value
        if policy.check_host and host is not None and (hosts > 1 or not policy.host_ok(host)):
            return await self._refuse(scope, send, self._host_error(host))
        if origin is not None:
            if not policy.origin_ok(origin, host):
                return await self._refuse(scope, send, self._origin_error(origin))
        elif fetch_site == b"cross-site" and not _is_navigation(scope):
            return await self._refuse(scope, send, self._fetch_site_error())
        return await self.app(scope, receive, send)

    # --- refusals ---------------------------------------------------------------------------

    def _note(self, what: str, value: bytes) -> None:
        if value in self._logged or len(self._logged) >= LOG_LIMIT:
            return
        self._logged.add(value)
        log.warning("refused a browser request with %s %r (see docs/security.md)", what, value)

    def _host_error(self, host: bytes) -> Forbidden:
        self._note("Host", host)
        shown = host[:ECHO].decode("latin-1")
        if self.loopback_bind:
            why = (
                "Nexus listens on loopback and answers only loopback names (localhost, "
                "127.0.0.1, [::1]), so that web pages cannot reach it through DNS rebinding"
            )
        else:
            why = "server.allowed_hosts lists the names this Nexus answers to"
        return Forbidden(
            f"Host '{shown}' is not allowed: {why}. If this name is yours, add it to "
            "server.allowed_hosts.",
            code="host_not_allowed",
        )

    def _origin_error(self, origin: bytes) -> Forbidden:
        self._note("Origin", origin)
        shown = origin[:ECHO].decode("latin-1")
        return Forbidden(
            f"Origin '{shown}' is not allowed: web pages may use Nexus only from its own "
            "origin (the dashboard). To let a web app at that origin call Nexus, add it to "
            "server.allowed_origins.",
            code="origin_not_allowed",
        )

    def _fetch_site_error(self) -> Forbidden:
        self._note("Sec-Fetch-Site", b"cross-site")
        return Forbidden(
            "Cross-site browser requests are not allowed (Sec-Fetch-Site: cross-site): web "
            "pages may use Nexus only from its own origin or from one listed in "
            "server.allowed_origins (which the browser names in an Origin header).",
            code="origin_not_allowed",
        )

    @staticmethod
    async def _refuse(scope: Scope, send: Send, err: Forbidden) -> None:
        body = err.render()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"x-content-type-options", b"nosniff"),
        ]
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": err.status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
        elif "websocket.http.response" in (scope.get("extensions") or {}):
            await send(
                {"type": "websocket.http.response.start", "status": err.status, "headers": headers}
            )
            await send({"type": "websocket.http.response.body", "body": body})
        else:  # the server cannot send a body: a bare 403
            await send({"type": "websocket.close", "code": 1008})


def _is_navigation(scope: Scope) -> bool:
    """A top-level GET navigation (a link followed): its answer goes to the user's tab."""
    if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD"):
        return False
    headers = dict(scope["headers"])
    return headers.get(b"sec-fetch-mode") == b"navigate" and (
        headers.get(b"sec-fetch-dest") == b"document"
    )
