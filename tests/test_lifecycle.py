"""The daemon as users run it: a subprocess, signals, drains, long and abandoned streams."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fakes import FakeHost
from tests.harness import ollama_backend

LISTENING = re.compile(r"OpenAI API listening on (http://[\w.\[\]:]+)")


class DaemonProcess:
    """``python -m nexusd`` with a config file; the URL is read from its log, not guessed."""

    def __init__(self, tmp: Path, config: str) -> None:
        path = tmp / "nexus.toml"
        path.write_text(config)
        env = {**os.environ, "NEXUS_CONFIG": str(path), "NEXUS_STATE_DIR": str(tmp / "state")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "nexusd", "--port", "0", "--no-discovery", "--no-probe"],
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.log: list[str] = []
        self._url: str | None = None
        self._found = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        if not self._found.wait(20):
            self.proc.kill()
            raise AssertionError("daemon did not start:\n" + "".join(self.log))

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line)
            match = LISTENING.search(line)
            if match and self._url is None:
                self._url = match.group(1)
                self._found.set()
        self._found.set()

    @property
    def url(self) -> str:
        assert self._url, "".join(self.log)
        return self._url

    def wait_healthy(self, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while httpx.get(self.url + "/health").json()["status"] != "healthy":
            assert time.monotonic() < deadline, "".join(self.log)
            time.sleep(0.05)  # the daemon offers no push channel on TCP; bounded poll

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


@pytest.fixture
def daemon_process(tmp_path: Path) -> Iterator:
    started: list[DaemonProcess] = []

    def start(config: str) -> DaemonProcess:
        proc = DaemonProcess(tmp_path, config)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


def _config(url: str, extra: str = "") -> str:
    return f"""
[server]
shutdown_timeout_seconds = 10
{extra}

[health_check]
interval_seconds = 0.5

[[backends]]
name = "box"
url = "{url}"
type = "ollama"
"""


def _stream_lines(url: str, out: list[str], first: threading.Event) -> None:
    body = {"model": "llama3:8b", "stream": True, "messages": [{"role": "user", "content": "x"}]}
    with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=60) as r:
        for line in r.iter_lines():
            if line:
                out.append(line)
                first.set()


def _sigterm_mid_stream(d: DaemonProcess) -> list[str]:
    """Start a stream, SIGTERM the daemon after its first event; the daemon must exit 0."""
    d.wait_healthy()
    lines: list[str] = []
    first = threading.Event()
    client = threading.Thread(target=_stream_lines, args=(d.url, lines, first))
    client.start()
    assert first.wait(10)
    d.proc.send_signal(signal.SIGTERM)
    client.join(30)
    assert d.proc.wait(20) == 0, "".join(d.log)
    return lines


@pytest.mark.slow
def test_sigterm_lets_inflight_stream_finish_and_exits_0(fakes, daemon_process) -> None:
    fake = fakes("ollama", ["llama3:8b"], chunks=15)
    fake.faults.chunk_delay_s = 0.1
    d = daemon_process(_config(fake.url))
    lines = _sigterm_mid_stream(d)
    assert lines[-1] == "data: [DONE]"
    contents = [json.loads(x[6:]) for x in lines if x.startswith("data: {")]
    assert (
        sum(1 for c in contents if c["choices"] and c["choices"][0]["delta"].get("content")) == 15
    )
    assert not any("error" in c for c in contents)


@pytest.mark.slow
def test_sigterm_drain_deadline_ends_stream_with_error_event(fakes, daemon_process) -> None:
    fake = fakes("ollama", ["llama3:8b"], chunks=100)
    fake.faults.chunk_delay_s = 0.1
    d = daemon_process(
        _config(fake.url).replace("shutdown_timeout_seconds = 10", "shutdown_timeout_seconds = 1")
    )
    lines = _sigterm_mid_stream(d)
    last = json.loads(lines[-1][6:])
    assert "shutting down" in last["error"]["message"]


@pytest.mark.slow
def test_seventy_second_stream_arrives_complete(fakes, nexus) -> None:
    fake = fakes("ollama", ["llama3:8b"], chunks=70)
    fake.faults.chunk_delay_s = 1.0
    d = nexus({"backends": [ollama_backend("box", fake.url)]})
    d.wait_healthy("box")
    lines: list[str] = []
    started = time.monotonic()
    _stream_lines(d.url, lines, threading.Event())
    took = time.monotonic() - started
    pieces = [json.loads(x[6:]) for x in lines if x.startswith("data: {")]
    content = [p for p in pieces if p["choices"] and p["choices"][0]["delta"].get("content")]
    assert len(content) == 70 and lines[-1] == "data: [DONE]"
    assert took > 65  # it really was a long stream, past Quart's 60 s default cut-off


def test_200_aborted_streams_leave_pool_idle(fake_host: FakeHost, fakes, nexus) -> None:
    fake = fakes("ollama", ["llama3:8b"], chunks=500)
    fake.faults.chunk_delay_s = 0.02
    d = nexus({"backends": [ollama_backend("box", fake.url)]})
    d.wait_healthy("box")
    body = {"model": "llama3:8b", "stream": True, "messages": [{"role": "user", "content": "x"}]}

    async def burst() -> int:
        limits = httpx.Limits(max_connections=250, max_keepalive_connections=0)
        async with httpx.AsyncClient(limits=limits, timeout=30) as client:

            async def abandon() -> bool:
                async with client.stream("POST", d.url + "/v1/chat/completions", json=body) as r:
                    async for line in r.aiter_lines():
                        if "content" in line:
                            return True  # leave mid-stream: the context manager aborts
                return False

            return sum(await asyncio.gather(*(abandon() for _ in range(200))))

    for _ in range(2):
        assert asyncio.run(burst()) == 200
        d.wait_idle(timeout=10)
        assert fake_host.call(fake.wait_until(lambda: fake.streams_open == 0, 10))

    fake.faults.chunk_delay_s = 0
    started = time.perf_counter()
    r = httpx.post(d.url + "/v1/chat/completions", json={**body, "stream": False}, timeout=10)
    took_ms = (time.perf_counter() - started) * 1000
    print(f"normal request after 400 aborted streams: {took_ms:.1f} ms")
    assert r.status_code == 200
    assert took_ms < 2000  # sanity only: a leaked pool would hang until the 10 s timeout
    assert fake.client_disconnects >= 400
    d.wait_idle()
