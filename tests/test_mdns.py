"""mDNS discovery (F05).

Three layers:

- pure helpers (TXT, URLs, names, trust) — no sockets;
- the discovery logic on a real daemon, fed resolved services directly (loopback HTTP only,
  no multicast), so it runs anywhere;
- real multicast, end to end: advertiser processes (``tests/mdns_advertise.py``), a real
  daemon, fake backends. These run only inside a private network namespace: the test
  ``test_multicast_suite_in_private_network_namespace`` re-runs this module's ``mcast`` tests
  under ``unshare -n`` and asserts on their exit status. Without namespaces it fails when
  ``CI`` is set and skips (saying why) otherwise.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from nexusd.config.schema import DiscoveryConfig
from nexusd.discovery import mdns as mdns_module
from nexusd.discovery.mdns import (
    REMOVED_REASON,
    MdnsDiscovery,
    ServiceRecord,
    api_path,
    build_url,
    choose_type,
    declared_type,
    extract_name,
    instance_label,
    is_allowed,
    normalise_service_types,
    order_addresses,
    parse_networks,
    parse_txt,
)
from nexusd.types import BackendStatus, BackendType, DiscoverySource, PrivacyZone
from tests.harness import DaemonThread, merge, ollama_backend
from tests.mdns_support import (
    REPO,
    Advertiser,
    EventLog,
    LogWatcher,
    RunningDiscovery,
    assert_isolated,
    in_netns,
    is_event,
    netns_command,
)

OLLAMA = "_ollama._tcp.local."
LLM = "_llm._tcp.local."
DEFAULT_NETS = parse_networks(DiscoveryConfig().allowed_networks)


def chat(d: DaemonThread, model: str) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    return httpx.post(d.url + "/v1/chat/completions", json=body, timeout=30)


# --- pure helpers -------------------------------------------------------------------------------


def test_parse_txt_decodes_lowercases_and_keeps_empty_keys() -> None:
    raw = {b"Type": b"vLLM", b"api_path": b"/v1", b"flag": None, "version": "0.5.1"}
    assert parse_txt(raw) == {"type": "vLLM", "api_path": "/v1", "flag": "", "version": "0.5.1"}
    assert parse_txt(None) == {}
    assert parse_txt({b"bad": b"\xff"}) == {"bad": "\ufffd"}


@pytest.mark.parametrize(
    ("service_type", "txt", "expected"),
    [
        (OLLAMA, {}, BackendType.OLLAMA),
        (LLM, {}, BackendType.GENERIC),
        (LLM, {"type": "vllm"}, BackendType.VLLM),
        (LLM, {"type": "LlamaCpp"}, BackendType.LLAMACPP),
        (LLM, {"type": "llama.cpp"}, BackendType.LLAMACPP),
        (LLM, {"type": "exo"}, BackendType.EXO),
        (LLM, {"type": "lmstudio"}, BackendType.LMSTUDIO),
        (LLM, {"type": "ollama"}, BackendType.OLLAMA),
        # a LAN server speaking OpenAI's API is not OpenAI's cloud
        (LLM, {"type": "openai"}, BackendType.GENERIC),
        (LLM, {"type": "something-new"}, BackendType.GENERIC),
        (OLLAMA, {"type": "vllm"}, BackendType.VLLM),
    ],
)
def test_declared_type(service_type: str, txt: dict[str, str], expected: BackendType) -> None:
    assert declared_type(service_type, txt) is expected


def test_api_path_defaults_and_txt() -> None:
    assert api_path(BackendType.OLLAMA, {}) == ""
    assert api_path(BackendType.GENERIC, {}) == "/v1"
    assert api_path(BackendType.GENERIC, {"api_path": "v1/"}) == "/v1"
    assert api_path(BackendType.OLLAMA, {"api_path": "/custom"}) == "/custom"


def test_build_url_brackets_ipv6_and_strips_v1() -> None:
    assert build_url("192.168.1.10", 11434) == "http://192.168.1.10:11434"
    assert build_url("192.168.1.10", 8000, "/v1") == "http://192.168.1.10:8000"
    assert build_url("fe80::1", 8080, "/v1") == "http://[fe80::1]:8080"
    assert build_url("10.0.0.2", 9000, "/api/openai/v1") == "http://10.0.0.2:9000/api/openai"


def test_order_addresses_prefers_ipv4_and_drops_junk() -> None:
    got = order_addresses(["fd00::5", "192.168.1.10", "not-an-ip", "10.0.0.1", "192.168.1.10"])
    assert got == ["192.168.1.10", "10.0.0.1", "fd00::5"]


def test_record_urls_ipv4_preferred_ipv6_only_bracketed_v1_not_doubled() -> None:
    both = ServiceRecord("box._llm._tcp.local.", LLM, ["fd00::1", "192.168.1.7"], 8000, {})
    assert both.urls() == ["http://192.168.1.7:8000", "http://[fd00::1]:8000"]
    v6 = ServiceRecord("box._llm._tcp.local.", LLM, ["fd00::1"], 8080, {"api_path": "/v1"})
    assert v6.urls() == ["http://[fd00::1]:8080"]
    ollama = ServiceRecord("o._ollama._tcp.local.", OLLAMA, ["192.168.1.10"], 11434, {})
    assert ollama.urls() == ["http://192.168.1.10:11434"]


@pytest.mark.parametrize(
    ("instance", "service_type", "label", "name"),
    [
        ("My_Ollama_Server._ollama._tcp.local.", OLLAMA, "My_Ollama_Server", "My Ollama Server"),
        ("ollama-desktop._ollama._tcp.local", None, "ollama-desktop", "ollama-desktop"),
        ("no-dots", None, "no-dots", "no-dots"),
        ("", None, "", ""),
        ("_leading_._llm._tcp.local.", LLM, "_leading_", "leading"),
        # with the service type known, a dotted label survives
        ("box v1.2._llm._tcp.local.", LLM, "box v1.2", "box v1.2"),
    ],
)
def test_instance_label_and_name(
    instance: str, service_type: str | None, label: str, name: str
) -> None:
    assert instance_label(instance, service_type) == label
    assert extract_name(instance, service_type) == name


def test_allowed_networks() -> None:
    for address in ("127.0.0.1", "10.1.2.3", "172.16.0.9", "192.168.1.10", "169.254.1.1"):
        assert is_allowed(address, DEFAULT_NETS), address
    for address in ("::1", "fe80::1", "fd12:3456::1", "::ffff:192.168.1.10"):
        assert is_allowed(address, DEFAULT_NETS), address
    for address in ("8.8.8.8", "192.0.2.10", "172.32.0.1", "2001:db8::1", "::ffff:8.8.8.8"):
        assert not is_allowed(address, DEFAULT_NETS), address
    assert not is_allowed("garbage", DEFAULT_NETS)
    only_ten = parse_networks(["10.0.0.0/8"])
    assert not is_allowed("127.0.0.1", only_ten)
    assert is_allowed("10.9.9.9", only_ten)


def test_choose_type_fingerprint_wins_except_weak_verdicts() -> None:
    assert choose_type(BackendType.GENERIC, BackendType.LLAMACPP) is BackendType.LLAMACPP
    assert choose_type(BackendType.OLLAMA, None) is BackendType.OLLAMA
    assert choose_type(BackendType.EXO, BackendType.GENERIC) is BackendType.EXO
    assert choose_type(BackendType.VLLM, BackendType.GENERIC) is BackendType.GENERIC


def test_service_types_get_a_trailing_dot_once() -> None:
    got = normalise_service_types(["_ollama._tcp.local", "_ollama._tcp.local.", " _llm._tcp.local"])
    assert got == [OLLAMA, LLM]


# --- the logic on a real daemon, fed resolved services directly (no multicast) -----------------


def record(label: str, service_type: str, port: int, *addresses: str, **txt: str) -> ServiceRecord:
    return ServiceRecord(
        f"{label}.{service_type}", service_type, list(addresses or ["127.0.0.1"]), port, txt
    )


class Driver:
    """An ``MdnsDiscovery`` on a test daemon whose zeroconf never starts."""

    def __init__(self, d: DaemonThread, **config: Any) -> None:
        self.d = d
        cfg = DiscoveryConfig(**config)
        self.mdns: MdnsDiscovery = d.call(lambda: MdnsDiscovery(d.core, config=cfg))

    def found(self, rec: ServiceRecord) -> Any:
        fut = asyncio.run_coroutine_threadsafe(self.mdns.service_found(rec), self.d.loop)
        return fut.result(15)

    def removed(self, instance: str) -> None:
        self.d.call(lambda: self.mdns.service_removed(instance))

    def close(self) -> None:
        self.d.call(self.mdns.close)


@pytest.fixture
def driver(nexus: Any) -> Iterator[Any]:
    drivers: list[Driver] = []

    def make(config: dict[str, Any] | None = None, **discovery: Any) -> Driver:
        drv = Driver(nexus(config), **discovery)
        drivers.append(drv)
        return drv

    yield make
    for drv in drivers:
        drv.close()


def test_logic_register_serve_unknown_restore_remove(fakes: Any, driver: Any) -> None:
    fake = fakes("ollama", ["llama3:8b"], reply="hi from mdns")
    drv = driver(grace_period_seconds=0.5)
    d = drv.d
    events = EventLog(d)
    rec = record("Lab_Box", OLLAMA, fake.port, version="0.5.1")
    backend = drv.found(rec)
    assert backend.id == "mdns-lab-box"
    assert (backend.name, backend.url, backend.type) == (
        "Lab Box",
        fake.url,
        BackendType.OLLAMA,
    )
    assert (backend.source, backend.zone) == (DiscoverySource.MDNS, PrivacyZone.LOCAL)
    assert backend.metadata["mdns_instance"] == "Lab_Box._ollama._tcp.local."
    assert backend.metadata["mdns_version"] == "0.5.1"
    d.wait_healthy("mdns-lab-box")
    reply = chat(d, "llama3:8b")
    assert reply.status_code == 200, reply.text
    assert reply.headers["X-Nexus-Backend"] == "Lab Box"
    d.wait_idle()
    served = backend.total_requests
    assert served == 1

    # an update of a known service changes nothing but its metadata
    assert drv.found(record("Lab_Box", OLLAMA, fake.port, version="0.6")) is backend
    assert backend.metadata["mdns_version"] == "0.6"
    assert len(d.core.registry) == 1

    drv.removed(rec.instance)
    events.wait(is_event("backend.status", id=backend.id, health="unknown", error=REMOVED_REASON))
    assert drv.found(rec) is backend  # back inside the grace period
    restored = events.wait(is_event("backend.restored", id=backend.id))
    assert restored.data == {"id": backend.id, "name": "Lab Box", "instance": rec.instance}
    d.wait_healthy(backend.id)  # resynced at once, not stuck in unknown
    assert d.backend(backend.id) is backend and backend.total_requests == served

    drv.removed(rec.instance)
    gone = events.wait(is_event("backend.status", id=backend.id, health="unknown"))
    removed = events.wait(is_event("backend.removed", id=backend.id))
    assert removed.time - gone.time >= 0.45
    assert d.call(lambda: d.core.registry.get(backend.id)) is None
    drv.removed(rec.instance)  # a removal for a forgotten instance is ignored


def test_logic_url_already_configured_is_enriched_not_duplicated(fakes: Any, driver: Any) -> None:
    fake = fakes("ollama", ["mistral:7b"])
    # configured as localhost + trailing slash: still the same server as 127.0.0.1
    url = f"http://localhost:{fake.port}/"
    drv = driver({"backends": [ollama_backend("my-ollama", url, priority=5)]})
    d = drv.d
    rec = record("Desk", OLLAMA, fake.port, version="1.2")
    assert drv.found(rec) is d.backend("my-ollama")
    static = d.backend("my-ollama")
    assert len(d.core.registry) == 1
    assert (static.source, static.name, static.priority) == (DiscoverySource.STATIC, "my-ollama", 5)
    assert static.metadata["mdns_instance"] == rec.instance
    assert static.metadata["mdns_version"] == "1.2"
    # the goodbye of an enriching service leaves the configured backend alone
    drv.removed(rec.instance)
    assert "mdns_instance" not in static.metadata
    assert d.call(lambda: d.core.registry.get("my-ollama")) is static
    assert static.last_error != REMOVED_REASON  # never set unknown by mDNS


def test_logic_llm_service_fingerprinted_as_llamacpp_one_backend_for_two_addresses(
    fakes: Any, driver: Any
) -> None:
    llama = fakes("llamacpp", ["smol"])
    drv = driver()
    # 127.0.0.2 refuses (the fake listens on 127.0.0.1 only): the address that answers wins
    rec = record("Smol", LLM, llama.port, "127.0.0.2", "127.0.0.1", api_path="/v1")
    backend = drv.found(rec)
    assert backend.type is BackendType.LLAMACPP
    assert backend.url == llama.url  # no /v1, so never /v1/v1
    # the same service announced under a second service type is the same backend
    twin = record("Smol", OLLAMA, llama.port, "127.0.0.1", type="llamacpp")
    assert drv.found(twin) is backend
    assert len(drv.d.core.registry) == 1
    drv.d.wait_healthy(backend.id)
    # the first announcement leaves, the twin still announces it: kept, not even unknown
    drv.removed(rec.instance)
    assert drv.d.core.registry.get(backend.id) is backend
    assert backend.health is BackendStatus.HEALTHY
    assert backend.metadata["mdns_instance"] == twin.instance


def test_logic_outside_allowed_networks_ignored_with_one_info_line(fakes: Any, driver: Any) -> None:
    fake = fakes("ollama")
    drv = driver(allowed_networks=["10.0.0.0/8"])
    rec = record("Stranger", OLLAMA, fake.port, "127.0.0.1")
    with LogWatcher() as logs:
        for _ in range(3):
            assert drv.found(rec) is None
    infos = logs.matching(lambda r: r.levelno == logging.INFO and "Stranger" in r.getMessage())
    assert len(infos) == 1, [r.getMessage() for r in infos]
    assert "allowed_networks" in infos[0].getMessage()
    assert len(drv.d.core.registry) == 0
    no_address = ServiceRecord("Void._llm._tcp.local.", LLM, [], 8000, {})
    assert drv.found(no_address) is None
    assert len(drv.d.core.registry) == 0


@pytest.mark.parametrize(
    ("env", "enabled"),
    [({}, True), ({"NEXUS_DISCOVERY": "false"}, False), ({"NEXUS_DISCOVERY": "0"}, False)],
)
def test_nexus_discovery_env_switch(env: dict[str, str], enabled: bool) -> None:
    from nexusd.config.loader import parse_config

    cfg, _, _ = parse_config({"discovery": {"service_types": ["_llm._tcp.local"]}}, env=env)
    assert cfg.discovery.enabled is enabled
    assert cfg.discovery.service_types == [LLM]  # the loader adds the trailing dot
    assert cfg.discovery.grace_period_seconds == 60


async def test_run_returns_quietly_when_disabled_or_unavailable(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    class Core:  # run() needs nothing else before zeroconf starts
        config = type("C", (), {"discovery": DiscoveryConfig(enabled=False)})()

    caplog.set_level(logging.INFO, "nexus.discovery")
    await asyncio.wait_for(MdnsDiscovery(Core()).run(), 2)  # type: ignore[arg-type]
    assert "mDNS discovery disabled" in caplog.text

    def no_multicast(*args: Any) -> Any:
        raise OSError(19, "No such device")

    monkeypatch.setattr(mdns_module, "_start_zeroconf", no_multicast)
    caplog.clear()
    cfg = DiscoveryConfig(enabled=True)
    await asyncio.wait_for(MdnsDiscovery(Core(), config=cfg).run(), 2)  # type: ignore[arg-type]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage() for r in warnings] == [
        "mDNS unavailable, discovery disabled: [Errno 19] No such device"
    ]


def test_discover_command_table_json_and_unavailable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from nexusd.discovery import command
    from nexusd.discovery.mdns import DiscoveryUnavailable

    row = {
        "instance": "Box._llm._tcp.local.",
        "name": "Box",
        "service_type": LLM,
        "addresses": ["192.168.1.7", "fd00::7"],
        "port": 8080,
        "txt": {"api_path": "/v1", "version": "b1"},
        "declared_type": "generic",
        "allowed": True,
        "url": "http://192.168.1.7:8080",
        "type": "llamacpp",
    }
    monkeypatch.setattr(command, "discover_rows", lambda timeout, config_path=None: [row])
    assert command.main(["--timeout", "0.1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [c.upper() for c in command.COLUMNS]
    assert lines[1].split() == [
        "Box",
        LLM,
        "192.168.1.7,fd00::7",
        "8080",
        "yes",
        "llamacpp",
        "http://192.168.1.7:8080",
        "api_path=/v1",
        "version=b1",
    ]
    assert command.main(["--json"]) == 0
    assert json.loads(capsys.readouterr().out) == [row]
    monkeypatch.setattr(command, "discover_rows", lambda timeout, config_path=None: [])
    assert command.main([]) == 0
    assert "(no mDNS services found)" in capsys.readouterr().out

    def unavailable(timeout: float, config_path: str | None = None) -> Any:
        raise DiscoveryUnavailable("mDNS unavailable: [Errno 19] No such device")

    monkeypatch.setattr(command, "discover_rows", unavailable)
    assert command.main([]) == 1
    assert "Error: mDNS unavailable" in capsys.readouterr().err


# --- real multicast, inside a private network namespace ----------------------------------------

if not in_netns():

    def test_multicast_suite_in_private_network_namespace() -> None:
        inner = [sys.executable, "-m", "pytest", __file__, "-q", "-p", "no:cacheprovider"]
        inner += ["-k", "mcast_"]
        argv, why = netns_command(inner)
        if argv is None:
            if os.environ.get("CI"):
                pytest.fail(f"mDNS tests must run in CI: {why}")
            pytest.skip(why)
        env = {**os.environ, "NEXUS_MDNS_NETNS": "1"}
        proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0, f"mDNS suite failed in the namespace:\n{out}"
        assert " passed" in out and "skipped" not in out, out

else:

    @pytest.fixture
    def advertise() -> Iterator[Any]:
        assert_isolated()
        started: list[Advertiser] = []

        def start(*args: Any, **kwargs: Any) -> Advertiser:
            adv = Advertiser(*args, **kwargs)
            started.append(adv)
            return adv

        yield start
        for adv in started:
            adv.stop()

    @pytest.fixture
    def discovering(nexus: Any) -> Iterator[Any]:
        """A real daemon with mDNS discovery running in it, and its event log."""
        assert_isolated()
        running: list[tuple[RunningDiscovery, EventLog]] = []

        def start(config: dict[str, Any]) -> tuple[DaemonThread, EventLog]:
            d = nexus(merge({"discovery": {"enabled": True}}, config))
            events = EventLog(d)
            running.append((RunningDiscovery(d), events))
            return d, events

        yield start
        for disc, events in running:
            disc.stop()
            events.close()

    def test_mcast_discover_serve_withdraw_restore_and_remove(
        fakes: Any, advertise: Any, discovering: Any
    ) -> None:
        fake = fakes("ollama", ["llama3:8b"], reply="found you over mDNS")
        d, events = discovering({"discovery": {"grace_period_seconds": 30}})
        adv = advertise("Test_Ollama", OLLAMA, fake.port, txt={"version": "0.5.1"})
        bid = "mdns-test-ollama"
        events.wait(is_event("backend.added", id=bid))
        adv.expect("advertised")
        d.wait_healthy(bid)
        backend = d.backend(bid)
        assert (backend.name, backend.url, backend.type) == (
            "Test Ollama",
            fake.url,
            BackendType.OLLAMA,
        )
        assert (backend.source, backend.zone) == (DiscoverySource.MDNS, PrivacyZone.LOCAL)
        assert backend.metadata["mdns_instance"] == adv.instance
        assert backend.metadata["mdns_version"] == "0.5.1"

        reply = chat(d, "llama3:8b")
        assert reply.status_code == 200, reply.text
        assert reply.json()["choices"][0]["message"]["content"] == "found you over mDNS"
        assert reply.headers["X-Nexus-Backend"] == "Test Ollama"
        d.wait_idle()
        served = backend.total_requests
        assert served == 1

        # goodbye → unknown; back inside the grace period → the same backend, counters kept
        adv.withdraw()
        events.wait(is_event("backend.status", id=bid, health="unknown", error=REMOVED_REASON))
        adv.advertise()
        restored = events.wait(is_event("backend.restored", id=bid))
        assert restored.data == {"id": bid, "name": "Test Ollama", "instance": adv.instance}
        assert d.backend(bid) is backend and backend.total_requests == served
        d.wait_healthy(bid)  # resynced, never stuck in unknown

        # a shorter grace period, and a goodbye for good
        d.call(lambda: setattr(d.core.config.discovery, "grace_period_seconds", 1.0))
        adv.withdraw()
        gone = events.wait(is_event("backend.status", id=bid, health="unknown"))
        removed = events.wait(is_event("backend.removed", id=bid))
        assert removed.time - gone.time >= 0.9
        assert d.call(lambda: d.core.registry.get(bid)) is None
        assert not any(e.type == "backend.restored" for e in events.events[-3:])

    def test_mcast_trust_dedup_and_fingerprint(
        fakes: Any, advertise: Any, discovering: Any
    ) -> None:
        configured = fakes("ollama", ["mistral:7b"])
        llama = fakes("llamacpp", ["smol"], reply="llama.cpp here")
        d, events = discovering({"backends": [ollama_backend("my-ollama", configured.url)]})
        with LogWatcher() as logs:
            outsider = advertise("Outsider", OLLAMA, configured.port, addresses=["192.0.2.10"])
            dup = advertise("Configured_Box", OLLAMA, configured.port, txt={"version": "9.9"})
            smol = advertise(
                "Smol_Llama",
                LLM,
                llama.port,
                txt={"api_path": "/v1"},
                addresses=["127.0.0.2", "127.0.0.1"],
            )
            for adv in (outsider, dup, smol):
                adv.expect("advertised")

            # an _llm._tcp service that is llama.cpp is registered as llamacpp, once, at /
            events.wait(is_event("backend.added", id="mdns-smol-llama"))
            d.wait_healthy("mdns-smol-llama")
            backend = d.backend("mdns-smol-llama")
            assert backend.type is BackendType.LLAMACPP
            assert backend.url == llama.url
            reply = chat(d, "smol")
            assert reply.status_code == 200, reply.text
            assert reply.headers["X-Nexus-Backend"] == "Smol Llama"

            # the configured URL is enriched, not duplicated
            static = d.backend("my-ollama")
            assert d.wait_until(lambda: "mdns_instance" in static.metadata)
            assert static.metadata["mdns_instance"] == dup.instance
            assert static.metadata["mdns_version"] == "9.9"
            assert static.source is DiscoverySource.STATIC

            # outside the allowed networks: ignored, one INFO line however many events
            def outsider_info(r: logging.LogRecord) -> bool:
                return r.levelno == logging.INFO and "Outsider" in r.getMessage()

            logs.wait(outsider_info)
            outsider.send("txt version=2", "updated")
            logs.wait(lambda r: r.levelno == logging.DEBUG and "still ignored" in r.getMessage())
            assert len(logs.matching(outsider_info)) == 1
        ids = sorted(b.id for b in d.call(d.core.registry.all))
        assert ids == ["mdns-smol-llama", "my-ollama"]

    def test_mcast_discover_command_browses_once_and_registers_nothing(
        fakes: Any, advertise: Any
    ) -> None:
        llama = fakes("llamacpp", ["smol"])
        found = advertise("Cmd_Llama", LLM, llama.port, txt={"api_path": "/v1", "version": "b1"})
        stranger = advertise("Cmd_Stranger", OLLAMA, 11434, addresses=["192.0.2.10"])
        for adv in (found, stranger):
            adv.expect("advertised")
        # 2 s: a responder does not repeat a record it multicast less than 1 s ago (RFC 6762
        # §6), so the browser's first query, right after the announcements, may go unanswered
        argv = [sys.executable, "-m", "nexusd.discovery", "--timeout", "2", "--json"]
        proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=30)
        assert proc.returncode == 0, proc.stderr
        rows = {row["name"]: row for row in json.loads(proc.stdout)}
        assert rows["Cmd Llama"] == {
            "instance": found.instance,
            "name": "Cmd Llama",
            "service_type": LLM,
            "addresses": ["127.0.0.1"],
            "port": llama.port,
            "txt": {"api_path": "/v1", "version": "b1"},
            "declared_type": "generic",
            "allowed": True,
            "url": llama.url,
            "type": "llamacpp",
        }
        assert rows["Cmd Stranger"]["allowed"] is False
        assert rows["Cmd Stranger"]["type"] is None
