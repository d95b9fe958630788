"""The control API, nexusctl and nexus over a real Unix socket in a short temp dir."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest

from nexusd.control.schema import SCHEMAS
from tests.fakes import FakeHost
from tests.harness import DaemonThread, ollama_backend
from tests.records import make_record

ROOT = Path(__file__).resolve().parents[1]
CTL = (sys.executable, "-m", "nexus_cli.ctl")
EXAMPLE = (ROOT / "share" / "nexus.example.toml").read_text()


def ctl(d: DaemonThread, *args: str, schema: str | None = None) -> tuple[int, Any, str]:
    """Run the real ``nexusctl`` against the daemon; validate its JSON output."""
    result = subprocess.run(
        [sys.executable, "-m", "nexus_cli.ctl", "--socket", str(d.control_path), *args],
        capture_output=True,
        text=True,
        timeout=30,
    )
    data = json.loads(result.stdout) if result.stdout.strip().startswith(("{", "[")) else None
    if schema and data is not None and result.returncode in (0, 1):
        jsonschema.validate(data, SCHEMAS[schema])
    return result.returncode, data, result.stderr


def chat(d: DaemonThread, model: str, **extra: Any) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], **extra}
    return httpx.post(d.url + "/v1/chat/completions", json=body, timeout=30)


@pytest.fixture
def with_file(tmp_path: Path, fakes, nexus):
    """A daemon started from a copy of the example config, pointed at a fake Ollama."""

    def start(extra_backends: list[dict[str, Any]] | None = None):
        fake = fakes("ollama", ["llama3:8b", "llama3:70b"])
        path = tmp_path / "nexus.toml"
        path.write_text(EXAMPLE.replace("http://localhost:11434", fake.url))
        from nexusd.config.loader import read_toml

        data = read_toml(path)
        from tests.harness import TEST_DEFAULTS, merge

        d = nexus(merge(data, {k: v for k, v in TEST_DEFAULTS.items()}), config_path=path)
        d.wait_healthy("local-ollama")
        return d, path, fake

    return start


def test_socket_permissions_and_status(fakes, nexus) -> None:
    d = nexus()
    mode = stat.S_IMODE(os.stat(d.control_path).st_mode)
    assert stat.S_ISSOCK(os.stat(d.control_path).st_mode) and mode == 0o600
    assert stat.S_IMODE(os.stat(d.control_path.parent).st_mode) == 0o700
    rc, data, _ = ctl(d, "status", schema="status")
    assert rc == 0
    assert data["listeners"] == {"api": d.url, "control": str(d.control_path)}
    assert data["pid"] == os.getpid()


def test_alias_set_is_routable_persisted_and_comments_kept(with_file) -> None:
    d, path, fake = with_file()
    before = path.read_text()
    assert chat(d, "fast").status_code == 404
    rc, data, _ = ctl(d, "aliases", "set", "fast", "llama3:8b", schema="alias_set")
    assert rc == 0 and data == {"alias": "fast", "target": "llama3:8b"}
    r = chat(d, "fast")
    assert r.status_code == 200 and fake.chat_requests[-1].json["model"] == "llama3:8b"
    after = path.read_text()
    added = 'fast = "llama3:8b"\n'
    assert added in after
    assert after.replace(added, "", 1) == before  # every other byte, comments and order kept
    rc, aliases, _ = ctl(d, "aliases", "list", schema="aliases")
    assert aliases["fast"] == "llama3:8b"

    # a cycle is refused, names the cycle, and leaves the file alone
    rc, _, err = ctl(d, "aliases", "set", "llama3:8b", "fast")
    assert rc == 1 and "'fast' → 'llama3:8b' → 'fast'" in err
    assert path.read_text() == after
    # removal
    rc, data, _ = ctl(d, "aliases", "rm", "fast", schema="removed")
    assert rc == 0 and path.read_text() == before
    rc, _, err = ctl(d, "aliases", "rm", "fast")
    assert rc == 1 and "no alias 'fast'" in err


def test_alias_survives_restart(with_file, nexus) -> None:
    d, path, _ = with_file()
    assert ctl(d, "aliases", "set", "fast", "llama3:8b")[0] == 0
    d.stop()
    from nexusd.config.loader import load_config

    again = load_config(path, env={})
    assert again.config.routing.aliases["fast"] == "llama3:8b"


def test_alias_chain_longer_than_three_hops_is_refused(with_file) -> None:
    d, _, _ = with_file()
    for name, target in (("a", "b"), ("b", "c"), ("c", "llama3:8b")):
        assert ctl(d, "aliases", "set", name, target)[0] == 0
    rc, _, err = ctl(d, "aliases", "set", "z", "a")
    assert rc == 1 and "longer than 3 hops" in err


def test_fallbacks_crud_and_routing(with_file) -> None:
    d, path, _ = with_file()
    rc, data, _ = ctl(d, "fallbacks", "set", "gone:1b", "llama3:8b", schema="fallbacks_set")
    assert rc == 0
    r = chat(d, "gone:1b")
    assert r.status_code == 200 and r.headers["x-nexus-fallback-model"] == "llama3:8b"
    rc, data, _ = ctl(d, "fallbacks", "list", schema="fallbacks")
    assert data["gone:1b"] == ["llama3:8b"]
    assert '"gone:1b" = ["llama3:8b"]' in path.read_text()
    assert ctl(d, "fallbacks", "rm", "gone:1b", schema="removed")[0] == 0


def test_hand_edit_and_reload_then_broken_file_refused(with_file) -> None:
    d, path, _ = with_file()
    path.write_text(path.read_text().replace('"gpt-4" = "llama3:70b"', '"gpt-4" = "llama3:8b"'))
    rc, data, _ = ctl(d, "config", "reload", schema="config_reload")
    assert rc == 0 and "aliases" in data["changes"]
    assert chat(d, "gpt-4").status_code == 200
    good = path.read_text()
    path.write_text(good.replace('strategy = "smart"', 'strategy = "bogus"'))
    rc, _, err = ctl(d, "config", "reload")
    assert rc == 1 and "bogus" in err and "running config stays" in err
    assert chat(d, "gpt-4").status_code == 200  # old config keeps serving
    assert d.call(lambda: d.core.config.routing.strategy.value) == "smart"


def test_external_edit_is_applied_not_overwritten_by_an_api_edit(with_file) -> None:
    d, path, _ = with_file()
    path.write_text(
        path.read_text().replace(
            '"gpt-3.5-turbo" = "mistral:7b"', '"gpt-3.5-turbo" = "mistral:7b"\nhand = "llama3:8b"'
        )
    )
    assert ctl(d, "aliases", "set", "api", "llama3:70b")[0] == 0
    text = path.read_text()
    assert 'hand = "llama3:8b"' in text and 'api = "llama3:70b"' in text
    assert chat(d, "hand").status_code == 200 and chat(d, "api").status_code == 200


def test_edits_keep_env_and_flag_overrides(with_file, monkeypatch) -> None:
    d, path, _ = with_file()
    monkeypatch.setenv("NEXUS_ROUTING_STRATEGY", "round_robin")
    d.call(lambda: setattr(d.core.loaded, "flags", {"routing.max_retries": 0}))
    assert ctl(d, "aliases", "set", "fast", "llama3:8b")[0] == 0
    routing = d.call(lambda: d.core.config.routing)
    assert routing.strategy.value == "round_robin" and routing.max_retries == 0
    assert 'strategy = "smart"' in path.read_text()  # overrides are applied, never written


def test_config_show_has_sources(with_file) -> None:
    d, _, _ = with_file()
    rc, data, _ = ctl(d, "config", "show", schema="config")
    assert rc == 0
    assert data["values"]["routing.aliases"]["source"] == "file"
    assert data["values"]["server.request_timeout_seconds"]["source"] == "file"


def test_backends_list_add_drain_enable_remove(fakes, with_file) -> None:
    d, path, _ = with_file()
    other = fakes("vllm", ["llama3:8b"])
    rc, data, _ = ctl(d, "backends", "add", other.url, schema="backend")
    assert rc == 0 and data["type"] == "vllm"  # detected by fingerprint
    d.wait_healthy(data["id"])
    assert f'url = "{other.url}"' in path.read_text()
    rc, backends, _ = ctl(d, "backends", "list", schema="backends")
    assert [b["id"] for b in backends] == ["local-ollama", data["id"]]

    rc, drained, _ = ctl(d, "backends", "drain", "local-ollama", schema="backend")
    assert drained["status"] == "draining"
    for _ in range(3):
        r = chat(d, "llama3:8b")
        assert r.headers["x-nexus-backend"] == data["name"]
    assert ctl(d, "backends", "drain", "local-ollama", "--undo")[1]["status"] == "healthy"
    rc, disabled, _ = ctl(d, "backends", "disable", "local-ollama", schema="backend")
    assert disabled["status"] == "disabled" and "enabled = false" in path.read_text()
    assert ctl(d, "backends", "enable", "local-ollama")[1]["enabled"] is True

    rc, _, err = ctl(d, "backends", "add", other.url)
    assert rc == 1 and "already backend" in err
    rc, _, err = ctl(d, "backends", "add", "http://127.0.0.1:9")
    assert rc == 1 and "nothing answering" in err
    assert ctl(d, "backends", "rm", data["id"], schema="removed")[0] == 0
    assert other.url not in path.read_text()
    rc, _, err = ctl(d, "backends", "rm", "nope")
    assert rc == 1 and "no backend 'nope'" in err


def test_explain_failover_and_dry_run_route(fake_host: FakeHost, fakes, nexus) -> None:
    first = fakes("ollama", ["llama3:8b"])
    second = fakes("ollama", ["llama3:8b"])
    d = nexus(
        {
            "backends": [
                ollama_backend("first", first.url, priority=1),
                ollama_backend("second", second.url, priority=90),
            ],
            "health_check": {"interval_seconds": 3600},
        }
    )
    d.wait_healthy("first", "second")
    fake_host.stop(first)
    r = chat(d, "llama3:8b")
    assert r.status_code == 200
    rc, trace, _ = ctl(d, "explain", r.headers["x-nexus-request-id"], schema="request")
    assert rc == 0
    assert [(a["backend"], a["outcome"]) for a in trace["attempts"]] == [
        ("first", "failed"),
        ("second", "ok"),
    ]
    assert "cannot connect" in trace["attempts"][0]["error"]
    second_run = trace["steps"][1]
    assert {
        "stage": "availability",
        "backend": "first",
        "reason": "already failed during this request",
    } in second_run["rejections"]

    rc, requests, _ = ctl(d, "requests", "--limit", "5", schema="requests")
    assert requests[0]["request_id"] == r.headers["x-nexus-request-id"]
    sent_before = len(second.chat_requests)
    rc, plan, _ = ctl(d, "route", "llama3:8b", "--vision", schema="route")
    assert (rc, plan["outcome"]) == (1, "reject")  # what the API would refuse exits 1
    reasons = {x["backend"]: x["reason"] for x in plan["steps"][0]["rejections"]}
    assert reasons["second"].startswith("model llama3:8b lacks vision")
    assert len(second.chat_requests) == sent_before  # nothing was sent
    rc, plan, _ = ctl(d, "route", "llama3:8b", schema="route")
    assert rc == 0
    # one passive failure is below failure_threshold (3): "first" is still preferred
    assert plan["outcome"] == "route" and plan["backend"] == "first"
    assert plan["reason"].startswith("highest_score:first:")
    rc, _, err = ctl(d, "explain", "no-such-id")
    assert rc == 1 and "no request" in err


def test_models_and_stats_schemas(fakes, nexus) -> None:
    fake = fakes("ollama", ["llama3:8b", {"id": "llava:7b", "vision": True}])
    d = nexus(
        {
            "backends": [ollama_backend("box", fake.url)],
            "routing": {"aliases": {"fast": "llama3:8b"}},
        }
    )
    d.wait_healthy("box")
    chat(d, "llama3:8b")
    _, models, _ = ctl(d, "models", schema="models")
    assert {m["id"]: m["aliases"] for m in models} == {"llama3:8b": ["fast"], "llava:7b": []}
    assert [(b["id"], b["model"]) for b in models[0]["backends"]] == [("box", "llama3:8b")]
    _, stats, _ = ctl(d, "stats", schema="stats")
    assert stats["backends"][0]["requests"] == 1


def test_requests_and_stats_carry_the_kind(nexus) -> None:
    d = nexus()
    records = [
        make_record("r-chat", "chat"),
        make_record("r-compl", "completions", stream=True),
        make_record("r-embed", "embeddings"),
    ]
    for rec in records:
        d.call(lambda rec=rec: d.core.record(rec))
    rc, requests, _ = ctl(d, "requests", schema="requests")
    assert rc == 0
    assert [(r["request_id"], r["endpoint"]) for r in requests] == [
        ("r-embed", "embeddings"),
        ("r-compl", "completions"),
        ("r-chat", "chat"),
    ]
    assert requests[0] == records[2].to_json()  # the record, whole
    rc, stats, _ = ctl(d, "stats", schema="stats")
    assert stats["endpoints"] == {"chat": 1, "completions": 1, "embeddings": 1}
    assert {m["name"]: m["tokens"] for m in stats["models"]}["nomic-embed-text"] == {
        "prompt": 12,
        "completion": 0,
    }
    # the schema holds the kind to the three names
    bad = dict(requests[0], endpoint="images")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate([bad], SCHEMAS["requests"])

    result = subprocess.run(
        [*CTL, "--socket", str(d.control_path), "-o", "table", "requests"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    head, *rows = result.stdout.splitlines()
    assert head.split() == [
        "REQUEST_ID",
        "KIND",
        "REQUESTED_MODEL",
        "SERVED_MODEL",
        "BACKEND",
        "STATUS",
        "OUTCOME",
        "RETRIES",
    ]
    assert [row.split()[:3] for row in rows] == [
        ["r-embed", "embeddings", "nomic-embed-text"],
        ["r-compl", "completions", "llama3:8b"],
        ["r-chat", "chat", "llama3:8b"],
    ]


def test_events_show_backend_status_changes(fake_host: FakeHost, fakes, nexus) -> None:
    fake = fakes("ollama", ["llama3:8b"])
    d = nexus(
        {
            "backends": [ollama_backend("box", fake.url)],
            "health_check": {"failure_threshold": 1, "recovery_threshold": 1},
        }
    )
    d.wait_healthy("box")
    proc = subprocess.Popen(
        [sys.executable, "-m", "nexus_cli.ctl", "--socket", str(d.control_path), "events"],
        stdout=subprocess.PIPE,
        text=True,
    )
    events: list[dict[str, Any]] = []
    seen = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            event = json.loads(line)
            jsonschema.validate(event, SCHEMAS["event"])
            events.append(event)
            statuses = [e["data"]["status"] for e in events if e["type"] == "backend.status"]
            if statuses[-2:] == ["unhealthy", "healthy"]:
                seen.set()

    threading.Thread(target=read, daemon=True).start()
    # the wait itself subscribes too: wait for a second subscriber (nexusctl)
    assert d.wait_until(lambda: len(d.core.bus._subscribers) >= 2)
    fake_host.stop(fake)
    assert d.wait_until(lambda: not d.core.registry.get("box").routable)
    fake_host.restart(fake)
    d.wait_healthy("box")
    assert seen.wait(10), events
    proc.terminate()
    proc.wait(5)


def test_exit_codes(nexus, tmp_path: Path) -> None:
    d = nexus()
    assert ctl(d, "status")[0] == 0
    assert ctl(d, "backends", "rm", "nope")[0] == 1
    usage = subprocess.run(
        [sys.executable, "-m", "nexus_cli.ctl", "frob"], capture_output=True, text=True
    )
    assert usage.returncode == 2
    missing = subprocess.run(
        [sys.executable, "-m", "nexus_cli.ctl", "--socket", str(tmp_path / "x.sock"), "status"],
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 3 and "nexus serve" in missing.stderr
    human = subprocess.run(
        [sys.executable, "-m", "nexus_cli.main", "--socket", str(tmp_path / "x.sock"), "health"],
        capture_output=True,
        text=True,
    )
    assert human.returncode == 3 and "no Nexus daemon answers" in human.stderr


def test_human_commands_print_tables(fakes, nexus) -> None:
    fake = fakes("ollama", ["llama3:8b"])
    d = nexus({"backends": [ollama_backend("box", fake.url)]})
    d.wait_healthy("box")

    def nexus_cmd(*args: str) -> str:
        out = subprocess.run(
            [sys.executable, "-m", "nexus_cli.main", "--socket", str(d.control_path), *args],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert out.returncode == 0, out.stderr
        return out.stdout

    assert "box" in nexus_cmd("backends") and "healthy" in nexus_cmd("backends")
    assert "llama3:8b" in nexus_cmd("models")
    health = nexus_cmd("health")
    assert "Backends: 1/1 healthy" in health and "✓ box (ollama) 1 models" in health


def test_light_clients_do_not_import_the_server_stack() -> None:
    code = (
        "import sys\nfrom nexus_cli.ctl import main\n"
        "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] in "
        "('quart', 'zeroconf', 'tiktoken', 'hypercorn', 'aiohttp')]\n"
        "print('HEAVY', heavy)"
    )
    for args in (["--help"], ["--socket", "/nonexistent.sock", "status"]):
        out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
        assert "HEAVY []" in out.stdout, out.stdout + out.stderr


def test_second_daemon_refused_then_kill9_leaves_replaceable_socket(tmp_path: Path) -> None:
    import tempfile
    import time

    runtime = Path(tempfile.mkdtemp(prefix="nxs-", dir="/tmp"))
    env = {
        **os.environ,
        "NEXUS_RUNTIME_DIR": str(runtime),
        "NEXUS_STATE_DIR": str(tmp_path),
        "NEXUS_CONFIG": str(tmp_path / "absent.toml"),
    }
    cmd = [sys.executable, "-m", "nexusd", "--port", "0", "--no-probe", "--no-discovery"]

    def start() -> subprocess.Popen[str]:
        proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
        assert proc.stderr is not None
        for line in proc.stderr:
            if "OpenAI API listening" in line:
                return proc
        raise AssertionError(f"daemon did not start (exit {proc.wait()})")

    first = start()
    try:
        second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=30)
        assert second.returncode == 1
        assert f"pid {first.pid}" in second.stderr
        sock = runtime / "nexusd.sock"
        assert _answers(sock)  # the first keeps serving
        first.kill()
        first.wait()
        assert sock.exists() and not _answers(sock)  # stale
        record = json.loads((tmp_path / "daemon.json").read_text())
        assert record["pid"] == first.pid
        third = start()
        try:
            assert _answers(sock)
            deadline = time.monotonic() + 5
            while json.loads((tmp_path / "daemon.json").read_text())["pid"] != third.pid:
                assert time.monotonic() < deadline
        finally:
            third.terminate()
            assert third.wait(20) == 0
        assert not sock.exists()  # removed on exit
    finally:
        if first.poll() is None:
            first.kill()


def _answers(path: Path) -> bool:
    try:
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(path)), timeout=2) as client:
            return client.get("http://nexus/v1/status").status_code == 200
    except httpx.HTTPError:
        return False


def test_readiness_notification_only_after_both_listeners_answer(tmp_path: Path) -> None:
    import tempfile

    runtime = Path(tempfile.mkdtemp(prefix="nxr-", dir="/tmp"))
    notify_path = runtime / "notify.sock"
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(notify_path))
    receiver.settimeout(20)
    env = {
        **os.environ,
        "NEXUS_RUNTIME_DIR": str(runtime),
        "NEXUS_STATE_DIR": str(tmp_path),
        "NEXUS_CONFIG": str(tmp_path / "absent.toml"),
        "NOTIFY_SOCKET": str(notify_path),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "nexusd", "--port", "0", "--no-probe", "--no-discovery"],
        env=env,
        stderr=subprocess.DEVNULL,
    )
    try:
        message = receiver.recv(1024).decode()
        assert message == "READY=1"
        record = json.loads((tmp_path / "daemon.json").read_text())
        # at the moment READY arrives, both listeners already answer requests
        assert httpx.get(record["api_url"] + "/health", timeout=2).status_code == 200
        assert _answers(Path(record["socket"]))
        proc.terminate()
        assert receiver.recv(1024).decode() == "STOPPING=1"
        assert proc.wait(20) == 0
    finally:
        receiver.close()
        if proc.poll() is None:
            proc.kill()


def test_service_install_writes_verifiable_unit_and_plist(tmp_path: Path) -> None:
    import plistlib
    import shutil

    from nexus_cli import service

    home = tmp_path / "home"
    env = {**os.environ, "HOME": str(home)}
    env.pop("XDG_CONFIG_HOME", None)
    said = {}
    for kind in ("systemd", "launchd"):
        out = subprocess.run(
            [sys.executable, "-m", "nexus_cli.main", "service", "install", "--kind", kind],
            capture_output=True,
            text=True,
            env=env,
        )
        assert out.returncode == 0, out.stderr
        said[kind] = out.stdout
    unit = home / ".config/systemd/user/nexus.service"
    text = unit.read_text()
    assert "Type=notify" in text
    exec_start = next(line for line in text.splitlines() if line.startswith("ExecStart="))
    assert Path(exec_start.split("=", 1)[1].split()[0]).is_absolute()
    assert "systemctl --user enable --now nexus" in said["systemd"]
    assert "loginctl enable-linger" in said["systemd"]
    assert "launchctl bootstrap" in said["launchd"]
    if shutil.which("systemd-analyze"):
        runtime = tmp_path / "xdg"
        runtime.mkdir(mode=0o700)
        verify = subprocess.run(
            ["systemd-analyze", "verify", "--user", str(unit)],
            capture_output=True,
            text=True,
            env={**env, "XDG_RUNTIME_DIR": str(runtime)},
        )
        assert verify.returncode == 0, verify.stderr
    plist = plistlib.loads((home / "Library/LaunchAgents" / service.PLIST_NAME).read_bytes())
    assert plist["Label"] == "dev.nexus.daemon"
    assert all(Path(a).is_absolute() for a in plist["ProgramArguments"][:1])
    assert Path(plist["StandardOutPath"]).is_absolute()
    status = subprocess.run(
        [sys.executable, "-m", "nexus_cli.main", "service", "status", "--kind", "launchd"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert status.returncode == 0 and "installed" in status.stdout


def test_completions_scripts() -> None:
    for shell, marker in (("bash", "complete"), ("zsh", "compdef"), ("fish", "complete")):
        out = subprocess.run(
            [sys.executable, "-m", "nexus_cli.main", "completions", shell],
            capture_output=True,
            text=True,
        )
        assert out.returncode == 0 and marker in out.stdout


def test_route_dry_run_per_endpoint_says_permanent(fakes, nexus) -> None:
    """The dry run judges the endpoint too: an embedding model refuses chat for good
    (``permanent``, ``code``, ``fix``) and routes embeddings."""
    fake = fakes("ollama", [{"id": "nomic-embed-text", "embedding": True}, "llama3:8b"])
    d = nexus({"backends": [ollama_backend("box", fake.url)]})
    d.wait_healthy("box")
    rc, plan, _ = ctl(d, "route", "nomic-embed-text", schema="route")
    assert (rc, plan["outcome"], plan["permanent"]) == (1, "reject", True)
    (rejection,) = plan["steps"][0]["rejections"]
    assert rejection["code"] == "wrong_endpoint"
    assert 'models."nomic-embed-text".embeddings = false' in rejection["fix"]
    rc, plan, _ = ctl(d, "route", "nomic-embed-text", "--endpoint", "embeddings", schema="route")
    assert (plan["outcome"], plan["backend"], plan["permanent"]) == ("route", "box", False)
    assert plan["requirements"]["endpoint"] == "embeddings"
    rc, plan, _ = ctl(d, "route", "llama3:8b", "--endpoint", "embeddings", schema="route")
    assert plan["outcome"] == "route"  # Ollama embeds with chat models: not a stated "no"
    rc, _, err = ctl(d, "route", "llama3:8b", "--endpoint", "rerank")
    assert rc == 2 and "invalid choice" in err


def test_config_file_io_never_blocks_the_event_loop(fakes, nexus, monkeypatch) -> None:
    """A slow disk (each write takes 0.6 s) delays the edit, not the API's other requests."""
    import threading
    import time

    from nexusd.config.store import ConfigStore

    fake = fakes("ollama", ["llama3:8b"])
    d = nexus({"backends": [ollama_backend("box", fake.url)]})
    d.wait_healthy("box")
    real_write = ConfigStore._write
    writing = threading.Event()

    def slow_write(self, data: bytes) -> None:
        writing.set()
        time.sleep(0.6)  # a blocking call, as a slow fsync is
        real_write(self, data)

    monkeypatch.setattr(ConfigStore, "_write", slow_write)
    done: dict[str, int] = {}
    edit = threading.Thread(
        target=lambda: done.setdefault("rc", ctl(d, "aliases", "set", "fast", "llama3:8b")[0])
    )
    edit.start()
    assert writing.wait(10)  # the edit is inside its (blocking) write now
    started = time.perf_counter()
    assert httpx.get(d.url + "/health", timeout=5).status_code == 200
    answered = time.perf_counter() - started
    edit.join(10)
    assert done["rc"] == 0 and d.core.config.routing.aliases["fast"] == "llama3:8b"
    assert answered < 0.3, f"/health waited {answered:.2f}s behind the config write"
