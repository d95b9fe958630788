"""The CLIs as people and scripts use them (issue #12, CLI items): real processes against a
real daemon — ids and names, ``-o table`` anywhere, exit codes, pipes, tab completion.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import DaemonThread, ollama_backend

ROOT = Path(__file__).resolve().parents[1]


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **(env or {})},
    )


def nexusctl(d: DaemonThread, *args: str) -> subprocess.CompletedProcess[str]:
    return cli("nexus_cli.ctl", "--socket", str(d.control_path), *args)


def nexus_cmd(d: DaemonThread, *args: str) -> subprocess.CompletedProcess[str]:
    return cli("nexus_cli.main", "--socket", str(d.control_path), *args)


@pytest.fixture
def daemon(fakes, nexus) -> DaemonThread:
    fake = fakes("ollama", ["llama3:8b"])
    d = nexus({"backends": [ollama_backend("box", fake.url)]})
    d.wait_healthy("box")
    return d


def test_backends_add_prints_the_id_and_name_or_id_both_work(fakes, daemon) -> None:
    other = fakes("vllm", ["qwen"])
    added = nexus_cmd(daemon, "backends", "add", other.url, "--name", "GPU Box", "--type", "vllm")
    assert added.returncode == 0, added.stderr
    assert "gpu-box" in added.stdout and "GPU Box" in added.stdout
    drained = nexus_cmd(daemon, "backends", "drain", "GPU Box")  # by name
    assert drained.returncode == 0, drained.stderr
    assert "gpu-box is now draining" in drained.stdout.replace("'", "")
    undone = nexusctl(daemon, "backends", "drain", "gpu-box", "--undo")  # by id
    assert undone.returncode == 0
    removed = nexus_cmd(daemon, "backends", "remove", "GPU Box")
    assert removed.returncode == 0 and "gpu-box" in removed.stdout
    missing = nexus_cmd(daemon, "backends", "remove", "GPU Box")
    assert missing.returncode == 1 and "no backend 'GPU Box'" in missing.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("route", "llama3:8b"),
        ("status",),
        ("stats",),
        ("config", "show"),
        ("backends", "list"),
        ("requests",),
    ],
)
def test_table_output_anywhere_on_the_line(daemon, args) -> None:
    before = nexusctl(daemon, "-o", "table", *args)
    after = nexusctl(daemon, *args, "-o", "table")
    for result in (before, after):
        assert result.returncode == 0, result.stderr
        assert not result.stdout.lstrip().startswith(("{", "[")), result.stdout[:200]
        assert result.stdout.splitlines()[0].isupper() or "KEY" in result.stdout
    assert before.stdout.splitlines()[0] == after.stdout.splitlines()[0]


def test_route_table_shows_nested_steps(daemon) -> None:
    out = nexusctl(daemon, "route", "llama3:8b", "--vision", "-o", "table")
    assert out.returncode == 1  # the API would refuse it
    assert "requirements.vision" in out.stdout
    assert "STEPS" in out.stdout and "box" in out.stdout


def test_route_exit_codes_follow_the_documented_meaning(daemon) -> None:
    assert nexusctl(daemon, "route", "llama3:8b").returncode == 0
    rejected = nexusctl(daemon, "route", "llama3:8b", "--vision")
    assert rejected.returncode == 1 and json.loads(rejected.stdout)["outcome"] == "reject"
    unknown = nexusctl(daemon, "route", "no-such-model")
    assert unknown.returncode == 1 and json.loads(unknown.stdout)["outcome"] == "not_found"


def test_closed_pipe_is_not_a_traceback(daemon, tmp_path) -> None:
    config = tmp_path / "nexus.toml"
    config.write_text("".join(f"# comment line {i}\n" for i in range(20_000)))
    for command in (
        f"{sys.executable} -m nexus_cli.main config show {config} | head -1",
        f"{sys.executable} -m nexus_cli.ctl --socket {daemon.control_path} config show "
        "-o table | head -1",
        f"{sys.executable} -m nexus_cli.main --socket {daemon.control_path} health | head -0",
    ):
        done = subprocess.run(
            ["bash", "-o", "pipefail", "-c", command], capture_output=True, text=True, timeout=30
        )
        assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr
        assert done.returncode in (0, 141), (command, done.returncode, done.stderr)


@pytest.mark.parametrize(
    ("module", "line"), [("nexus_cli.ctl", "nexusctl ba"), ("nexus_cli.main", "nexus mo")]
)
def test_tab_completion_answers(tmp_path, module: str, line: str) -> None:
    answer = tmp_path / "answer"
    done = subprocess.run(
        [sys.executable, "-m", module],
        capture_output=True,
        text=True,
        timeout=30,
        env={
            **os.environ,
            "_ARGCOMPLETE": "1",
            "_ARGCOMPLETE_SHELL": "bash",
            "COMP_LINE": line,
            "COMP_POINT": str(len(line)),
            "_ARGCOMPLETE_STDOUT_FILENAME": str(answer),
        },
    )
    assert done.returncode == 0, done.stderr
    words = answer.read_text().split()
    assert ("backends" in words) if "ctl" in module else ("models" in words), words


def test_service_status_fails_when_systemctl_does(tmp_path) -> None:
    home = tmp_path / "home"
    unit = home / ".config/systemd/user/nexus.service"
    unit.parent.mkdir(parents=True)
    unit.write_text("[Service]\nExecStart=/bin/true\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "systemctl"
    fake.write_text("#!/bin/sh\necho 'nexus.service - inactive (dead)'\nexit 3\n")
    fake.chmod(0o755)
    env = {
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
    }
    done = cli("nexus_cli.main", "service", "status", "--kind", "systemd", env=env)
    assert "installed" in done.stdout
    assert done.returncode == 1, done.stdout


def test_backends_scan_finds_a_server_started_after_the_daemon(fakes, nexus) -> None:
    fake = fakes("ollama", ["llama3:8b"])
    # the periodic probe is off: only the explicit scan can find it
    d = nexus({"discovery": {"probe": False, "probe_ports": [fake.port]}})
    assert len(d.core.registry) == 0
    scanned = nexus_cmd(d, "backends", "scan")
    assert scanned.returncode == 0, scanned.stderr
    assert f"ollama-{fake.port}" in scanned.stdout and "1 models" in scanned.stdout
    assert d.backend(f"ollama-{fake.port}").routable  # health-checked before the answer
    again = nexusctl(d, "backends", "scan")
    assert again.returncode == 0 and json.loads(again.stdout) == []
    assert "No new local server" in nexus_cmd(d, "backends", "scan").stdout
