"""The command lines as a user runs them: real processes, real files, exit codes."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(
    *args: str, env: dict[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    full_env.pop("NEXUS_CONFIG", None)
    if env and "NEXUS_CONFIG" in env:
        full_env["NEXUS_CONFIG"] = env["NEXUS_CONFIG"]
    return subprocess.run(
        [sys.executable, "-m", *args], capture_output=True, text=True, env=full_env, timeout=timeout
    )


def test_version_and_help() -> None:
    version = run("nexus_cli.main", "--version")
    assert version.returncode == 0 and version.stdout.startswith("nexus 0.")
    helptext = run("nexus_cli.main", "--help").stdout
    for command in ("serve", "config", "health", "models"):
        assert command in helptext
    serve_help = run("nexus_cli.main", "serve", "--help").stdout
    for flag in ("--config", "--host", "--port", "--no-discovery", "--no-health-check"):
        assert flag in serve_help
    bad = run("nexus_cli.main", "frobnicate")
    assert bad.returncode == 2 and "invalid choice" in bad.stderr


def test_config_init_validate_show(tmp_path: Path) -> None:
    target = tmp_path / "conf" / "nexus.toml"
    created = run("nexus_cli.main", "config", "init", "-o", str(target))
    assert created.returncode == 0, created.stderr
    assert target.read_text() == (ROOT / "share" / "nexus.example.toml").read_text()
    again = run("nexus_cli.main", "config", "init", "-o", str(target))
    assert again.returncode == 1 and "already exists" in again.stderr and "--force" in again.stderr
    assert run("nexus_cli.main", "config", "init", "-o", str(target), "--force").returncode == 0

    valid = run("nexus_cli.main", "config", "validate", str(target))
    assert valid.returncode == 0 and "1 backend(s), 3 alias(es)" in valid.stdout

    shown = run(
        "nexus_cli.main",
        "config",
        "show",
        "--json",
        env={"NEXUS_CONFIG": str(target), "NEXUS_PORT": "9123"},
    )
    data = json.loads(shown.stdout)
    assert data["config"]["server"]["port"] == 9123
    assert data["sources"]["server.port"] == "env"
    assert data["sources"]["routing.aliases"] == "file"


@pytest.mark.parametrize(
    ("toml", "fragments"),
    [
        ('[routing]\nstrategy = "fastest"\n', ["routing.strategy", "'fastest'", "round_robin"]),
        (
            '[server]\nrequest_timeout_seconds = "long"\n',
            ["server.request_timeout_seconds", "a number", "long"],
        ),
        (
            '[[backends]]\nname = "x"\nurl = "http://h:1"\ntype = "ollamax"\n',
            ["backends[0].type", "ollamax", "ollama"],
        ),
        ('[routing.aliases]\na = "b"\nb = "a"\n', ["circular alias", "'a' → 'b' → 'a'"]),
        ("[server\nport = 1\n", ["not valid TOML"]),
    ],
)
def test_invalid_config_exits_1_naming_the_key_and_leaves_file_untouched(
    tmp_path: Path, toml: str, fragments: list[str]
) -> None:
    path = tmp_path / "nexus.toml"
    path.write_text(toml)
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    for args in (
        ("nexus_cli.main", "serve", "--config", str(path), "--port", "0"),
        ("nexus_cli.main", "config", "validate", str(path)),
    ):
        result = run(*args)
        assert result.returncode == 1, result.stderr
        for fragment in fragments:
            assert fragment in result.stderr
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


def test_unknown_key_is_a_warning_not_an_error(tmp_path: Path) -> None:
    path = tmp_path / "nexus.toml"
    path.write_text("[server]\nhots = 'x'\n")
    result = run("nexus_cli.main", "config", "validate", str(path))
    assert result.returncode == 0
    assert "unknown key 'server.hots' ignored; did you mean 'host'?" in result.stderr


def test_busy_port_names_the_fix(tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        result = run(
            "nexusd",
            "--port",
            str(port),
            "--no-probe",
            "--no-discovery",
            env={"NEXUS_CONFIG": str(tmp_path / "absent.toml")},
        )
    assert result.returncode == 1
    assert "already in use" in result.stderr and "--port" in result.stderr
