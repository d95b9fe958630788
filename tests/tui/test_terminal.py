"""The TUI as a process: without a terminal it refuses at once (issue 12, item 15: it used
to spin at 83 % CPU for ten minutes behind `| head`), and in a real terminal (tmux) it
starts, shows the disconnected banner and quits with `q`."""

from __future__ import annotations

import os
import pty
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
TUI = [sys.executable, "-m", "nexus_tui"]


def run(argv: list[str] | str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run with a timeout; on timeout the whole process group goes (a TUI spinning on EOF
    behind a shell pipeline must not outlive the test)."""
    with subprocess.Popen(
        argv,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        **kwargs,  # type: ignore[call-overload]
    ) as process:
        try:
            out, err = process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise
    return subprocess.CompletedProcess(argv, process.returncode, out, err)


def test_refuses_at_once_when_stdin_is_not_a_terminal(tmp_path: Path) -> None:
    sock = str(tmp_path / "none.sock")
    start = time.monotonic()
    # `nexus tui </dev/null | head -5`: both ends redirected
    done = run(
        f"{' '.join(TUI)} --socket {sock} </dev/null | head -5; exit ${{PIPESTATUS[0]}}",
        shell=True,
        executable="/bin/bash",
    )
    assert time.monotonic() - start < 10
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.startswith("nexus tui needs a terminal: standard input is not a terminal")
    assert "standard output is not a terminal" in done.stderr


def test_refuses_when_only_stdout_is_redirected() -> None:
    primary, secondary = pty.openpty()  # a real terminal on stdin, a pipe on stdout
    try:
        done = run([*TUI, "--read-only"], stdin=secondary)
    finally:
        os.close(primary)
        os.close(secondary)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.startswith("nexus tui needs a terminal: standard output is not a terminal")
    assert "standard input" not in done.stderr


def test_the_nexus_command_passes_the_refusal_on() -> None:
    done = run([sys.executable, "-m", "nexus_cli.main", "tui"], stdin=subprocess.DEVNULL)
    assert done.returncode == 2, done
    assert "nexus tui needs a terminal" in done.stderr


def test_help_needs_no_terminal() -> None:
    done = run([*TUI, "--help"], stdin=subprocess.DEVNULL)
    assert done.returncode == 0 and "--read-only" in done.stdout


# --- a real terminal -------------------------------------------------------------------------


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[list[str]]:
    """A private tmux server (its own socket), killed afterwards."""
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed")
    base = ["tmux", "-S", str(tmp_path / "tmux.sock")]
    yield base
    subprocess.run([*base, "kill-server"], capture_output=True, timeout=10)


def screen(tmux: list[str]) -> str:
    return run([*tmux, "capture-pane", "-p", "-t", "tui"]).stdout


def wait_for(what: str, check: object, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_starts_in_a_real_terminal_and_quits_with_q(tmux: list[str], tmp_path: Path) -> None:
    rc = tmp_path / "rc"
    command = (
        f"cd {ROOT} && {sys.executable} -m nexus_tui --socket {tmp_path / 'none.sock'}; "
        f"echo $? > {rc}; sleep 30"
    )
    run([*tmux, "new-session", "-d", "-s", "tui", "-x", "100", "-y", "24", command])
    wait_for("the disconnected banner", lambda: "disconnected — retrying" in screen(tmux))
    shown = screen(tmux)
    assert "1 Backends" in shown and "no Nexus daemon answers" in shown
    run([*tmux, "send-keys", "-t", "tui", "q"])
    wait_for("the TUI to exit", rc.exists)
    wait_for("its exit status", lambda: rc.read_text().strip() != "")
    assert rc.read_text().strip() == "0"
