"""mDNS discovery (F05): backends that announce themselves on the local network.

``MdnsDiscovery(core).run()`` browses ``[discovery] service_types`` with zeroconf's asyncio
API (handlers run on our loop, no threads). Each resolved service goes through
:meth:`MdnsDiscovery.service_found`, each goodbye through :meth:`MdnsDiscovery.service_removed`;
both are public so tests (and a future manual "announce") can drive the logic without sockets.

Rules, in the order they are applied to a resolved service:

1. **Trust**: only addresses inside ``allowed_networks`` are considered; a service with none
   is ignored with one INFO line (per instance and address set, not per event).
2. **Ownership by instance name**: a service we registered before is updated in place (a second
   address, a new TXT ``version``), and restored — same object, id and counters — when it
   comes back inside the grace period (``backend.restored`` event, immediate health check).
3. **De-duplication by URL**: a service whose URL is already a configured, probed, manual or
   other discovered backend only enriches it (``metadata["mdns_instance"]`` and
   ``["mdns_version"]``); static configuration always wins.
4. **Type**: declared by TXT ``type`` or the service type, then confirmed by fingerprinting the
   server's own endpoints (an ``_llm._tcp`` service that is llama.cpp becomes ``llamacpp``).
   The base URL is stored without a trailing ``/v1``.

A goodbye sets the backend ``unknown`` ("service disappeared from mDNS") and removes it after
``grace_period_seconds`` unless it comes back first.

``discover()`` browses once and reports what it saw, registering nothing (``nexus discover``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp

from nexusd.backends.factory import create_agent
from nexusd.backends.fingerprint import detect_backend_type
from nexusd.config.loader import backend_id as slugify
from nexusd.config.schema import DiscoveryConfig
from nexusd.registry import Backend, normalise_url
from nexusd.types import BackendStatus, BackendType, DiscoverySource, PrivacyZone

if TYPE_CHECKING:
    from zeroconf import IPVersion, ServiceStateChange, Zeroconf
    from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

    from nexusd.core import Nexus

# zeroconf is imported where it is used: it costs ~0.25 s, and the daemon may never browse

log = logging.getLogger("nexus.discovery")

DEFAULT_SERVICE_TYPES = ("_ollama._tcp.local.", "_llm._tcp.local.")
REMOVED_REASON = "service disappeared from mDNS"
RESOLVE_TIMEOUT_MS = 3000
# Questions are always asked QM (answer by multicast), never QU (answer by unicast): with
# several mDNS stacks on one host (avahi, another daemon, an advertiser) sharing port 5353,
# a unicast answer reaches only one of their sockets, often not ours.
FINGERPRINT_TIMEOUT = 2.0
#: at most this many of a service's addresses are fingerprinted (concurrently)
MAX_ADDRESS_CANDIDATES = 4
#: metadata keys this module owns on a backend
META_KEYS = ("mdns_instance", "mdns_service_type", "mdns_version", "mdns_addresses")

Fingerprinter = Callable[[aiohttp.ClientSession, str, float], Awaitable[BackendType | None]]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_TXT_TYPES: dict[str, BackendType] = {
    "ollama": BackendType.OLLAMA,
    "vllm": BackendType.VLLM,
    "llamacpp": BackendType.LLAMACPP,
    "llama.cpp": BackendType.LLAMACPP,
    "llama-cpp": BackendType.LLAMACPP,
    "llama_cpp": BackendType.LLAMACPP,
    "exo": BackendType.EXO,
    "lmstudio": BackendType.LMSTUDIO,
    "lm-studio": BackendType.LMSTUDIO,
    # a server on the LAN that speaks OpenAI's API is not OpenAI's cloud (zone, keys)
    "openai": BackendType.GENERIC,
    "generic": BackendType.GENERIC,
}


# --- pure helpers (unit-tested without sockets) ------------------------------------------------


def normalise_service_type(service_type: str) -> str:
    """``_ollama._tcp.local`` → ``_ollama._tcp.local.`` (zeroconf needs the trailing dot)."""
    service_type = service_type.strip()
    return service_type if service_type.endswith(".") else service_type + "."


def normalise_service_types(service_types: Iterable[str]) -> list[str]:
    out: list[str] = []
    for service_type in service_types:
        normalised = normalise_service_type(service_type)
        if normalised != "." and normalised not in out:
            out.append(normalised)
    return out


def parse_txt(properties: Mapping[Any, Any] | None) -> dict[str, str]:
    """TXT properties as ``str → str``: keys lower-cased, a key without a value maps to ``""``."""
    out: dict[str, str] = {}
    for key, value in (properties or {}).items():
        if isinstance(key, bytes):
            key = key.decode("utf-8", "replace")
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        out[str(key).strip().lower()] = "" if value is None else str(value).strip()
    return out


def declared_type(service_type: str, txt: Mapping[str, str]) -> BackendType:
    """The type a service claims: TXT ``type`` first, else ``_ollama.`` → ollama, else generic."""
    claimed = txt.get("type", "").strip().lower()
    if claimed:
        return _TXT_TYPES.get(claimed, BackendType.GENERIC)
    return BackendType.OLLAMA if "_ollama." in service_type.lower() else BackendType.GENERIC


def api_path(kind: BackendType, txt: Mapping[str, str]) -> str:
    """TXT ``api_path`` if given, else ``""`` for Ollama and ``/v1`` for the rest."""
    path = txt.get("api_path")
    if path is None:
        path = "" if kind is BackendType.OLLAMA else "/v1"
    path = path.strip().rstrip("/")
    if path and not path.startswith("/"):
        path = "/" + path
    return path


def order_addresses(addresses: Iterable[str]) -> list[str]:
    """Valid addresses without duplicates, IPv4 first, otherwise in the order given."""
    v4: list[str] = []
    v6: list[str] = []
    for text in addresses:
        try:
            ip = ipaddress.ip_address(text.split("%", 1)[0])
        except ValueError:
            continue
        bucket = v4 if ip.version == 4 else v6
        if str(ip) not in bucket:
            bucket.append(str(ip))
    return v4 + v6


def build_url(address: str, port: int, path: str = "") -> str:
    """``http://ip:port`` + path, IPv6 in brackets, stored form (no trailing ``/`` or ``/v1``)."""
    host = f"[{address}]" if ":" in address else address
    return normalise_url(f"http://{host}:{port}{path}")


def instance_label(instance: str, service_type: str | None = None) -> str:
    """The instance's own label: ``My_Box._ollama._tcp.local.`` → ``My_Box``.

    The service-type suffix is cut when known (so a label may contain dots), else the text
    before the first ``.``.
    """
    name = instance.strip()
    if service_type:
        suffix = "." + normalise_service_type(service_type)
        for candidate in (suffix, suffix.rstrip(".")):
            if name.lower().endswith(candidate.lower()) and len(name) > len(candidate):
                return name[: -len(candidate)].strip()
    return name.split(".", 1)[0].strip()


def extract_name(instance: str, service_type: str | None = None) -> str:
    """Display name: the instance label with ``_`` as spaces (``My_Box`` → ``My Box``)."""
    return " ".join(instance_label(instance, service_type).replace("_", " ").split())


def parse_networks(networks: Iterable[str]) -> list[Network]:
    out: list[Network] = []
    for net in networks:
        try:
            out.append(ipaddress.ip_network(net.strip(), strict=False))
        except ValueError:
            log.warning("discovery.allowed_networks: %r is not a network; ignored", net)
    return out


def is_allowed(address: str, networks: Sequence[Network]) -> bool:
    """Is ``address`` inside one of ``networks``? IPv4-mapped IPv6 counts as its IPv4."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip.version == net.version and ip in net for net in networks)


def choose_type(declared: BackendType, fingerprinted: BackendType | None) -> BackendType:
    """The fingerprint wins when it recognised the server.

    ``generic`` is its weakest verdict ("OpenAI-compatible, nothing more specific"), so a
    declared ``exo`` (which has no endpoint of its own) stays ``exo``; nothing answering keeps
    the declared type and the health checker reports the server's state.
    """
    if fingerprinted is None:
        return declared
    if fingerprinted is BackendType.GENERIC and declared is BackendType.EXO:
        return declared
    return fingerprinted


def loopback_aliases(url: str) -> list[str]:
    """The same URL spelled with ``localhost`` (users configure both), for de-duplication."""
    for spelling in ("127.0.0.1", "[::1]"):
        prefix = f"http://{spelling}:"
        if url.startswith(prefix):
            return [f"http://localhost:{url[len(prefix) :]}"]
    return []


async def fingerprint_candidates(
    http: aiohttp.ClientSession,
    urls: Sequence[str],
    timeout: float = FINGERPRINT_TIMEOUT,
    fingerprint: Fingerprinter = detect_backend_type,
) -> tuple[str, BackendType | None]:
    """Fingerprint the candidate URLs at once; the first (in order) that answers wins.

    Returns ``(urls[0], None)`` when none answers.
    """
    urls = list(urls)[:MAX_ADDRESS_CANDIDATES]
    kinds = await asyncio.gather(*(fingerprint(http, url, timeout) for url in urls))
    for url, kind in zip(urls, kinds, strict=True):
        if kind is not None:
            return url, kind
    return urls[0], None


@dataclass(slots=True)
class ServiceRecord:
    """One resolved service, as zeroconf reported it."""

    instance: str  # full name: "My_Box._ollama._tcp.local."
    service_type: str
    addresses: list[str]
    port: int
    txt: dict[str, str] = field(default_factory=dict)
    server: str | None = None

    @classmethod
    def from_info(cls, info: AsyncServiceInfo, service_type: str) -> ServiceRecord:
        return cls(
            instance=info.name,
            service_type=service_type,
            addresses=list(info.parsed_addresses()),
            port=info.port or 0,
            txt=parse_txt(info.properties),
            server=info.server,
        )

    @property
    def name(self) -> str:
        return extract_name(self.instance, self.service_type) or self.instance

    @property
    def declared_type(self) -> BackendType:
        return declared_type(self.service_type, self.txt)

    @property
    def version(self) -> str | None:
        return self.txt.get("version") or None

    def urls(self, addresses: Iterable[str] | None = None) -> list[str]:
        """Candidate base URLs, one per address, IPv4 first."""
        path = api_path(self.declared_type, self.txt)
        chosen = self.addresses if addresses is None else addresses
        return [build_url(a, self.port, path) for a in order_addresses(chosen)]


# --- the background service --------------------------------------------------------------------


class MdnsDiscovery:
    """Browse mDNS and keep the registry in step with what the network announces.

    ``config`` (default: the core's live ``[discovery]`` section), ``interfaces`` (default
    zeroconf's ``InterfaceChoice.Default``) and ``ip_version`` (default IPv4 only) are for
    tests and special setups.
    """

    def __init__(
        self,
        core: Nexus,
        *,
        config: DiscoveryConfig | None = None,
        interfaces: Any = None,
        ip_version: IPVersion | None = None,
        fingerprint: Fingerprinter = detect_backend_type,
    ) -> None:
        self.core = core
        self._config = config
        self.interfaces = interfaces
        self.ip_version = ip_version
        self.fingerprint = fingerprint
        #: set while browsers are running (tests wait on it)
        self.browsing = asyncio.Event()
        self._owned: dict[str, str] = {}  # instance -> id of the backend we registered for it
        self._enriched: dict[str, str] = {}  # instance -> id of someone else's backend
        self._records: dict[str, ServiceRecord] = {}
        self._removal: dict[str, asyncio.TimerHandle] = {}  # instance -> grace timer
        self._reported: dict[str, tuple[str, ...]] = {}  # instance -> addresses refused
        self._latest: dict[str, tuple[str, str]] = {}  # instance -> (event, service type)
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._zc: Zeroconf | None = None

    @property
    def config(self) -> DiscoveryConfig:
        return self._config if self._config is not None else self.core.config.discovery

    # --- lifecycle ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Browse until cancelled; return at once (one log line) when disabled or unavailable."""
        cfg = self.config
        if not cfg.enabled:
            log.info("mDNS discovery disabled")
            return
        service_types = normalise_service_types(cfg.service_types)
        if not service_types:
            log.info("mDNS discovery: no service types configured")
            return
        try:
            azc = _start_zeroconf(self.interfaces, self.ip_version)
        except Exception as exc:  # no multicast (containers, WSL), no interface, ...
            log.warning("mDNS unavailable, discovery disabled: %s", exc)
            return
        from zeroconf import DNSQuestionType
        from zeroconf.asyncio import AsyncServiceBrowser

        browsers: list[AsyncServiceBrowser] = []
        try:
            for service_type in service_types:
                try:
                    browsers.append(
                        AsyncServiceBrowser(
                            azc.zeroconf,
                            [service_type],
                            handlers=[self._on_state_change],
                            question_type=DNSQuestionType.QM,
                        )
                    )
                except Exception as exc:
                    log.error("mDNS: cannot browse %s: %s", service_type, exc)
            if not browsers:
                log.warning("mDNS: no service type could be browsed; discovery disabled")
                return
            self._zc = azc.zeroconf
            self.browsing.set()
            log.info("mDNS discovery browsing %s", ", ".join(service_types))
            await asyncio.Future()  # until cancelled
        except asyncio.CancelledError:
            self.close()  # shutting down
            raise
        finally:
            self.browsing.clear()
            self._zc = None
            await self._shutdown(azc, browsers)

    async def _shutdown(self, azc: AsyncZeroconf, browsers: list[AsyncServiceBrowser]) -> None:
        workers = list(self._workers.values())
        for task in workers:
            task.cancel()
        self._latest.clear()
        await asyncio.gather(*workers, return_exceptions=True)
        # pending removals stay pending: a supervised restart re-browses and restores
        # services still there; the timers remove the rest
        with contextlib.suppress(Exception):
            async with asyncio.timeout(3):
                for browser in browsers:
                    await browser.async_cancel()
                await azc.async_close()

    def close(self) -> None:
        """Forget timers and workers (daemon shutdown). Registered backends stay."""
        for handle in self._removal.values():
            handle.cancel()
        self._removal.clear()
        for task in self._workers.values():
            task.cancel()

    # --- zeroconf events: one worker per instance, latest event wins ---------------------------

    def _on_state_change(
        self,
        zeroconf: Zeroconf,
        service_type: str,
        name: str,
        state_change: ServiceStateChange,
    ) -> None:
        from zeroconf import ServiceStateChange

        kind = "removed" if state_change is ServiceStateChange.Removed else "found"
        self._submit(name, kind, service_type)

    def _submit(self, instance: str, kind: str, service_type: str) -> None:
        self._latest[instance] = (kind, service_type)
        if instance not in self._workers:
            task = asyncio.get_running_loop().create_task(
                self._work(instance), name=f"nexus:mdns:{instance}"
            )
            self._workers[instance] = task

    async def _work(self, instance: str) -> None:
        try:
            while (event := self._latest.pop(instance, None)) is not None:
                kind, service_type = event
                try:
                    if kind == "removed":
                        self.service_removed(instance)
                    elif self._goodbye_pending(service_type, instance):
                        # a goodbye's records linger ~1 s in zeroconf's cache (RFC 6762
                        # §10.1) and can still raise "updated": not a comeback
                        log.debug("mDNS: %s said goodbye; a stale update ignored", instance)
                    else:
                        record = await self._resolve(service_type, instance)
                        if record is not None and not self._goodbye_pending(service_type, instance):
                            await self.service_found(record)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("mDNS: handling %s of %s failed", kind, instance)
        finally:
            self._workers.pop(instance, None)

    def _goodbye_pending(self, service_type: str, instance: str) -> bool:
        """The service is waiting for removal and its pointer in the cache is gone or is a
        goodbye (zeroconf keeps a TTL-0 record for one more second, with TTL 1)."""
        if instance not in self._removal or self._zc is None:
            return False
        pointer = self._zc.cache.current_entry_with_name_and_alias(service_type, instance)
        return pointer is None or pointer.ttl <= 1

    async def _resolve(self, service_type: str, instance: str) -> ServiceRecord | None:
        zc = self._zc
        if zc is None:
            return None
        from zeroconf import DNSQuestionType
        from zeroconf.asyncio import AsyncServiceInfo

        info = AsyncServiceInfo(service_type, instance)
        if not await info.async_request(zc, RESOLVE_TIMEOUT_MS, DNSQuestionType.QM):
            log.debug("mDNS: could not resolve %s", instance)
            return None
        return ServiceRecord.from_info(info, service_type)

    # --- the logic ---------------------------------------------------------------------------

    async def service_found(self, record: ServiceRecord) -> Backend | None:
        """A service was resolved (added or updated); returns the backend it maps to, if any."""
        instance = record.instance
        addresses = order_addresses(record.addresses)
        if not addresses or not record.port:
            self._report_once(instance, (), "has no address or port")
            self.service_removed(instance, quiet=True)
            return None
        networks = parse_networks(self.config.allowed_networks)
        allowed = [a for a in addresses if is_allowed(a, networks)]
        if not allowed:
            self._report_once(
                instance,
                tuple(addresses),
                f"at {', '.join(addresses)} is outside discovery.allowed_networks",
            )
            self.service_removed(instance, quiet=True)
            return None
        self._reported.pop(instance, None)
        self._records[instance] = record
        candidates = record.urls(allowed)

        backend = self._owned_backend(instance)
        if backend is not None:
            return await self._refresh(instance, backend, record, candidates)
        existing = self._find_by_urls(candidates)
        if existing is not None:
            return self._attach(instance, existing, record)

        url, found = await fingerprint_candidates(
            self.core.http, candidates, FINGERPRINT_TIMEOUT, self.fingerprint
        )
        # the registry may have changed while we waited
        existing = self._find_by_urls([url])
        if existing is not None:
            return self._attach(instance, existing, record)
        kind = choose_type(record.declared_type, found)
        backend = Backend(
            id=self._new_id(record),
            name=record.name,
            url=url,
            type=kind,
            source=DiscoverySource.MDNS,
            zone=PrivacyZone.LOCAL,
            metadata=self._metadata(record),
        )
        self.core.add_backend(backend)
        self._owned[instance] = backend.id
        self._enriched.pop(instance, None)
        if found is None:
            log.info(
                "discovered %s via mDNS (%s) at %s; it did not answer fingerprinting, "
                "registered as the declared type %s",
                backend.name,
                instance,
                url,
                kind.value,
            )
        else:
            log.info(
                "discovered %s %s via mDNS (%s) at %s", kind.value, backend.name, instance, url
            )
        return backend

    def service_removed(self, instance: str, *, quiet: bool = False) -> None:
        """The service said goodbye: ``unknown`` now, removed after the grace period."""
        self._records.pop(instance, None)
        backend = self._owned_backend(instance)
        if backend is not None:
            if instance in self._removal:
                return
            heir = self._heir(instance, backend)
            if heir is not None:
                # the same server is still announced under another name (or type)
                self._owned.pop(instance)
                self._enriched.pop(heir)
                self._owned[heir] = backend.id
                self._set_metadata(backend, self._metadata(self._records[heir]))
                log.info(
                    "%s: mDNS service %s gone, still announced as %s", backend.id, instance, heir
                )
                return
            self.core.registry.set_health(backend, BackendStatus.UNKNOWN, REMOVED_REASON)
            grace = max(0.0, float(self.config.grace_period_seconds))
            self._removal[instance] = asyncio.get_running_loop().call_later(
                grace, self._expire, instance, backend
            )
            log.warning(
                "backend %s disappeared from mDNS (%s); removing it in %gs unless it comes back",
                backend.id,
                instance,
                grace,
            )
            return
        backend_id = self._enriched.pop(instance, None)
        backend = self.core.registry.get(backend_id) if backend_id else None
        if backend is not None and backend.metadata.get("mdns_instance") == instance:
            heir = self._heir(instance, backend)
            if heir is not None:
                meta = self._metadata(self._records[heir])
                meta.pop("mdns_addresses", None)
                self._set_metadata(backend, meta)
            else:
                self._set_metadata(backend, {})
                log.info("%s is no longer announced via mDNS (%s)", backend.id, instance)
        elif not quiet:
            log.debug("mDNS: removal of %s, which maps to no backend; ignored", instance)

    # --- helpers -----------------------------------------------------------------------------

    def _owned_backend(self, instance: str) -> Backend | None:
        backend_id = self._owned.get(instance)
        if backend_id is None:
            return None
        backend = self.core.registry.get(backend_id)
        if backend is None or backend.source is not DiscoverySource.MDNS:
            # removed (by the user, or replaced) behind our back: start afresh
            self._owned.pop(instance, None)
            handle = self._removal.pop(instance, None)
            if handle is not None:
                handle.cancel()
            return None
        return backend

    async def _refresh(
        self, instance: str, backend: Backend, record: ServiceRecord, candidates: list[str]
    ) -> Backend | None:
        """A service we own was announced again: restore it, follow an address change."""
        handle = self._removal.pop(instance, None)
        if handle is not None:
            handle.cancel()
            self._restored(instance, backend)
        if backend.url not in candidates:
            # it moved: register it at an address that answers, unless that is another backend
            url, found = await fingerprint_candidates(
                self.core.http, candidates, FINGERPRINT_TIMEOUT, self.fingerprint
            )
            if self._owned_backend(instance) is not backend:
                return None  # removed while we fingerprinted
            other = self._find_by_urls([url])
            if other is not None and other is not backend:
                self._owned.pop(instance, None)
                self.core.registry.remove(backend.id)
                return self._attach(instance, other, record)
            old = backend.url
            backend.url = url
            backend.type = choose_type(record.declared_type, found)
            backend.agent = create_agent(backend, self.core.http, self.core.timeouts)
            log.info("backend %s moved from %s to %s (mDNS %s)", backend.id, old, url, instance)
            self._set_metadata(backend, self._metadata(record), force_event=True)
            self.core.health.check_soon(backend)
            return backend
        self._set_metadata(backend, self._metadata(record))
        return backend

    def _restored(self, instance: str, backend: Backend) -> None:
        self.core.bus.publish(
            "backend.restored", {"id": backend.id, "name": backend.name, "instance": instance}
        )
        log.info("backend %s is back on mDNS (%s); restored", backend.id, instance)
        # resync from "unknown" now rather than at the next cycle
        self.core.health.check_soon(backend)

    def _attach(self, instance: str, backend: Backend, record: ServiceRecord) -> Backend:
        """The service's URL is already ``backend``: adopt it when it is ours and waiting for
        removal under another name (same server, new announcement), else only enrich it."""
        owner = next((i for i, b in self._owned.items() if b == backend.id), None)
        if owner is not None and owner != instance and owner in self._removal:
            self._removal.pop(owner).cancel()
            del self._owned[owner]
            self._owned[instance] = backend.id
            self._enriched.pop(instance, None)
            self._restored(instance, backend)
            self._set_metadata(backend, self._metadata(record))
            return backend
        self._enrich(instance, backend, record)
        return backend

    def _heir(self, instance: str, backend: Backend) -> str | None:
        for other, backend_id in self._enriched.items():
            if backend_id == backend.id and other != instance and other in self._records:
                return other
        return None

    def _find_by_urls(self, urls: Iterable[str]) -> Backend | None:
        registry = self.core.registry
        for url in urls:
            for spelling in (url, *loopback_aliases(url)):
                found = registry.find_by_url(spelling)
                if found is not None:
                    return found
        return None

    def _enrich(self, instance: str, backend: Backend, record: ServiceRecord) -> None:
        self._enriched[instance] = backend.id
        current = backend.metadata.get("mdns_instance")
        if current not in (None, instance):
            return  # already described by another instance; keep the first
        if current is None:
            log.info(
                "mDNS service %s is %s (%s), already registered; not adding it twice",
                instance,
                backend.id,
                backend.url,
            )
        meta = self._metadata(record)
        meta.pop("mdns_addresses", None)
        self._set_metadata(backend, meta)

    def _set_metadata(
        self, backend: Backend, meta: dict[str, str], *, force_event: bool = False
    ) -> None:
        """Replace our ``mdns_*`` keys; publish ``backend.status`` so watchers see the change."""
        before = {k: backend.metadata[k] for k in META_KEYS if k in backend.metadata}
        if before == meta and not force_event:
            return
        for key in META_KEYS:
            backend.metadata.pop(key, None)
        backend.metadata.update(meta)
        if self.core.registry.get(backend.id) is backend:
            self.core.registry.publish_status(backend, backend.health)

    @staticmethod
    def _metadata(record: ServiceRecord) -> dict[str, str]:
        meta = {
            "mdns_instance": record.instance,
            "mdns_service_type": record.service_type,
            "mdns_addresses": ",".join(order_addresses(record.addresses)),
        }
        if record.version:
            meta["mdns_version"] = record.version
        return meta

    def _new_id(self, record: ServiceRecord) -> str:
        """``mdns-<instance label>``: stable across restarts; port, then a counter on clashes."""
        base = "mdns-" + slugify(instance_label(record.instance, record.service_type))
        registry = self.core.registry
        if registry.get(base) is None:
            return base
        candidate = f"{base}-{record.port}"
        n = 2
        while registry.get(candidate) is not None:
            candidate = f"{base}-{record.port}-{n}"
            n += 1
        return candidate

    def _report_once(self, instance: str, addresses: tuple[str, ...], why: str) -> None:
        if self._reported.get(instance) == addresses:
            log.debug("mDNS service %s still ignored (%s)", instance, why)
            return
        self._reported[instance] = addresses
        log.info("ignoring mDNS service %s: %s", instance, why)

    def _expire(self, instance: str, backend: Backend) -> None:
        self._removal.pop(instance, None)
        if self._owned.get(instance) != backend.id:
            return
        del self._owned[instance]
        if self.core.registry.get(backend.id) is backend:
            self.core.registry.remove(backend.id)
            log.info(
                "removed backend %s: gone from mDNS for %gs (%s)",
                backend.id,
                self.config.grace_period_seconds,
                instance,
            )


def _start_zeroconf(interfaces: Any = None, ip_version: IPVersion | None = None) -> AsyncZeroconf:
    from zeroconf import InterfaceChoice, IPVersion
    from zeroconf.asyncio import AsyncZeroconf

    return AsyncZeroconf(
        interfaces=InterfaceChoice.Default if interfaces is None else interfaces,
        ip_version=IPVersion.V4Only if ip_version is None else ip_version,
    )


# --- browse once (``nexus discover``) ----------------------------------------------------------


class DiscoveryUnavailable(RuntimeError):
    """zeroconf could not start (no multicast-capable interface, permissions...)."""


async def browse(
    service_types: Iterable[str] = DEFAULT_SERVICE_TYPES,
    timeout: float = 3.0,
    *,
    interfaces: Any = None,
    ip_version: IPVersion | None = None,
) -> list[ServiceRecord]:
    """Every service of ``service_types`` announced within ``timeout`` seconds, resolved."""
    types = normalise_service_types(service_types)
    try:
        azc = _start_zeroconf(interfaces, ip_version)
    except Exception as exc:
        raise DiscoveryUnavailable(f"mDNS unavailable: {exc}") from exc
    from zeroconf import DNSQuestionType, ServiceStateChange
    from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo

    tasks: dict[str, asyncio.Task[ServiceRecord | None]] = {}
    resolve_ms = int(min(RESOLVE_TIMEOUT_MS, max(1000.0, timeout * 1000)))

    async def resolve(service_type: str, name: str) -> ServiceRecord | None:
        info = AsyncServiceInfo(service_type, name)
        if not await info.async_request(azc.zeroconf, resolve_ms, DNSQuestionType.QM):
            return None
        return ServiceRecord.from_info(info, service_type)

    def on_change(
        zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        if state_change is not ServiceStateChange.Removed and name not in tasks:
            tasks[name] = asyncio.get_running_loop().create_task(resolve(service_type, name))

    browser: AsyncServiceBrowser | None = None
    try:
        browser = AsyncServiceBrowser(
            azc.zeroconf, types, handlers=[on_change], question_type=DNSQuestionType.QM
        )
        await asyncio.sleep(timeout)  # the browse window itself
        results = await asyncio.gather(*tasks.values(), return_exceptions=True)
    finally:
        for task in tasks.values():
            task.cancel()
        with contextlib.suppress(Exception):
            if browser is not None:
                await browser.async_cancel()
            await azc.async_close()
    records = [r for r in results if isinstance(r, ServiceRecord)]
    return sorted(records, key=lambda r: (r.service_type, r.instance))


async def discover(
    service_types: Iterable[str] = DEFAULT_SERVICE_TYPES,
    timeout: float = 3.0,
    *,
    allowed_networks: Iterable[str] | None = None,
    fingerprint: bool = True,
    interfaces: Any = None,
    ip_version: IPVersion | None = None,
) -> list[dict[str, Any]]:
    """Browse once and describe each service as the daemon would see it; registers nothing.

    Each entry: ``instance, name, service_type, addresses, port, txt, declared_type, allowed,
    url`` (the URL Nexus would use) and ``type`` (the fingerprinted type, ``None`` when the
    server did not answer or was not fingerprinted).
    """
    if allowed_networks is None:
        allowed_networks = DiscoveryConfig().allowed_networks
    networks = parse_networks(allowed_networks)
    records = await browse(service_types, timeout, interfaces=interfaces, ip_version=ip_version)
    out: list[dict[str, Any]] = []
    async with aiohttp.ClientSession() as http:

        async def describe(record: ServiceRecord) -> dict[str, Any]:
            allowed = [a for a in record.addresses if is_allowed(a, networks)]
            candidates = record.urls(allowed or record.addresses)
            url, kind = (candidates[0] if candidates else None), None
            if fingerprint and candidates:
                url, kind = await fingerprint_candidates(http, candidates)
            return {
                "instance": record.instance,
                "name": record.name,
                "service_type": record.service_type,
                "addresses": order_addresses(record.addresses),
                "port": record.port,
                "txt": dict(record.txt),
                "declared_type": record.declared_type.value,
                "allowed": bool(allowed),
                "url": url,
                "type": kind.value if kind is not None else None,
            }

        out = list(await asyncio.gather(*(describe(r) for r in records)))
    return out
