"""Other local users and the local machine (issue #11): descriptors, disk, files, names.

Each test performs the attack or the failure for real (real sockets, real subprocess daemons,
real files) and fails on the code before the fix.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import resource
import shutil
import socket
import sqlite3
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from nexusd import history as history_module
from nexusd.config.loader import ConfigError, parse_config
from nexusd.history import History
from tests.harness import DaemonThread, ollama_backend
from tests.records import make_record

LISTENING = re.compile(r"OpenAI API listening on http://127\.0\.0\.1:(\d+)")
PROC_FD = Path("/proc/self/fd")
NEXUSD = (sys.executable, "-m", "nexusd", "--port", "0", "--no-probe", "--no-discovery")
linux_only = pytest.mark.skipif(not PROC_FD.is_dir(), reason="needs /proc/<pid>/fd (Linux)")


# --- helpers ---------------------------------------------------------------------------------


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A short directory under /tmp (Unix socket paths are limited to ~104 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="nxl-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


class Daemon:
    """``python -m nexusd`` in its own runtime dir; its log is collected as it runs."""

    def __init__(
        self,
        home: Path,
        *args: str,
        config: str = "",
        env: dict[str, str] | None = None,
        nofile: tuple[int, int] | None = None,
        wait: bool = True,
        prefix: tuple[str, ...] = (),
    ) -> None:
        config_path = home / "nexus.toml"
        config_path.write_text(config)
        self.runtime = home / "rt"
        self.env = {
            **os.environ,
            "NEXUS_RUNTIME_DIR": str(self.runtime),
            "NEXUS_STATE_DIR": str(home / "state"),
            "NEXUS_CONFIG": str(config_path),
            **(env or {}),
        }

        def limit() -> None:
            if nofile is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, nofile)

        self.proc = subprocess.Popen(
            [*prefix, *NEXUSD, *args],
            env=self.env,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=limit,
        )
        self.lines: list[str] = []
        self.port: int | None = None
        self._listening = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        if wait:
            assert self._listening.wait(30), self.log
            assert self.port is not None, f"exited {self.proc.poll()}:\n{self.log}"

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            match = LISTENING.search(line)
            if match:
                self.port = int(match.group(1))
                self._listening.set()
        self._listening.set()

    @property
    def log(self) -> str:
        return "".join(self.lines)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def exit_code(self, timeout: float = 30) -> int:
        code = self.proc.wait(timeout)
        time.sleep(0.1)  # let the reader thread take the last lines
        return code

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture
def daemons() -> Iterator[Callable[..., Daemon]]:
    started: list[Daemon] = []

    def start(*args: Any, **kwargs: Any) -> Daemon:
        daemon = Daemon(*args, **kwargs)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.stop()


def nexusctl(socket_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nexus_cli.ctl", "--socket", str(socket_path), *args],
        capture_output=True,
        text=True,
        timeout=30,
    )


def wait_for(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)  # the kernel tells no one when a descriptor closes; bounded poll
    return True


def open_fds() -> int:
    return len(os.listdir(PROC_FD))


def raw_exchange(address: Any, data: bytes, family: int = socket.AF_INET) -> bytes:
    """Send ``data`` on a fresh connection and read until the server closes it."""
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(address)
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def split_response(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


# --- 1. file descriptors -------------------------------------------------------------------


@linux_only
def test_closed_connections_release_their_descriptors_at_once(nexus) -> None:
    """A client that closes must not leave its socket in CLOSE_WAIT for keep_alive_timeout."""
    d = nexus()
    host, port = "127.0.0.1", d.daemon.port
    with httpx.Client() as client:  # warm up: first requests allocate lazily
        client.get(d.url + "/health")
    time.sleep(0.3)
    baseline = open_fds()

    for i in range(150):
        with socket.create_connection((host, port)) as sock:
            if i % 3 == 0:  # connect and close without a word
                continue
            # one request, then close the kept-alive connection (or half-close first)
            sock.sendall(f"GET /health HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")
            if i % 3 == 2:
                sock.shutdown(socket.SHUT_WR)
    for _ in range(50):
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(str(d.control_path))
            sock.sendall(b"GET /v1/status HTTP/1.1\r\nHost: nexus\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")

    # well under Hypercorn's 75 s keep-alive timeout
    assert wait_for(lambda: open_fds() <= baseline + 2, 2.0), (
        f"{open_fds() - baseline} descriptors still open"
    )
    assert httpx.get(d.url + "/health").status_code == 200


@linux_only
def test_saturated_api_leaves_the_control_socket_answering(daemons, short_dir: Path) -> None:
    """With a 128-descriptor limit the daemon cannot raise, 200 idle API connections used to
    take every descriptor: accept() failed on both listeners and nexusctl said "no daemon"."""
    d = daemons(short_dir, nofile=(128, 128))
    time.sleep(0.3)
    baseline = d.fds()
    clients = [socket.create_connection(("127.0.0.1", d.port)) for _ in range(200)]
    try:
        status = nexusctl(d.runtime / "nexusd.sock", "status")
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["listeners"]["api"] == d.url
        # the excess API connections were answered 503 (JSON) and closed, not left pending
        clients[-1].settimeout(10)
        raw = clients[-1].recv(65536)
        code, headers, body = split_response(raw)
        assert code == 503 and headers.get("content-type") == "application/json", raw
        assert "open-file limit" in json.loads(body)["error"]["message"]
        assert d.fds() <= 128
    finally:
        for sock in clients:
            sock.close()
    assert wait_for(lambda: d.fds() <= baseline + 2, 2.0), f"{d.fds()} open, was {baseline}"
    assert httpx.get(d.url + "/health", timeout=5).status_code == 200
    warnings = [line for line in d.lines if "WARNING" in line]
    assert sum("open files: " in line for line in warnings) == 1, d.log  # once per crossing
    assert sum("refusing new API connections" in line for line in warnings) == 1, d.log
    assert "LimitNOFILE" in d.log


@linux_only
def test_soft_open_file_limit_is_raised_to_the_hard_one(daemons, short_dir: Path) -> None:
    d = daemons(short_dir, nofile=(256, 4096))
    limits = Path(f"/proc/{d.proc.pid}/limits").read_text()
    assert re.search(r"Max open files\s+4096\s+4096", limits), limits
    assert "open-file limit raised from 256 to 4096" in d.log


def test_service_files_raise_the_open_file_limit(tmp_path: Path) -> None:
    import plistlib

    from nexus_cli import service

    unit = service.render_unit([])
    assert unit.count("LimitNOFILE=") == 1 and "\nLimitNOFILE=65536\n" in unit
    text = service.render_plist(tmp_path, [])
    assert text.count("<key>SoftResourceLimits</key>") == 1
    assert plistlib.loads(text.encode())["SoftResourceLimits"]["NumberOfFiles"] >= 4096


# --- 2. the history writer -----------------------------------------------------------------


def _rows(path: Path) -> list[str]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return [r[0] for r in db.execute("SELECT request_id FROM requests ORDER BY time")]


def test_history_writer_survives_a_lone_surrogate(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A record the database cannot encode (UnicodeEncodeError, not sqlite3.Error) used to kill
    the writer thread for good; now only that row is dropped."""
    path = tmp_path / "history.sqlite3"

    async def run() -> History:
        history = History(path)
        await history.start()
        # in one batch with good rows: the batch fails, the good rows are retried one by one
        history.add(make_record("before"))
        history.add(make_record("bad-1", requested_model="x\ud800", served_model="x\ud800"))
        history.add(make_record("after"))
        await asyncio.sleep(history_module.FLUSH_SECONDS + 0.3)
        # alone in a later batch, then normal records again
        history.add(make_record("bad-2", requested_model="x\ud800"))
        await asyncio.sleep(history_module.FLUSH_SECONDS + 0.3)
        for i in range(5):
            history.add(make_record(f"later-{i}"))
        await history.stop()
        return history

    with caplog.at_level(logging.INFO, logger="nexus"):
        history = asyncio.run(run())
    assert _rows(path) == ["before", "after"] + [f"later-{i}" for i in range(5)]
    assert history.write_errors == 2 and history.written == 7
    # logged once; the same error again within a minute is only counted, then summed up
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "bad-1: UnicodeEncodeError" in errors[0], errors
    assert any("1 more record(s) were dropped" in r.getMessage() for r in caplog.records)
    assert not any(r.exc_info for r in caplog.records)  # no crash, no traceback


def test_history_queue_is_bounded_and_drops_the_oldest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A stuck disk (here: another process holds the write lock) must cost bounded memory."""
    monkeypatch.setattr(history_module, "MAX_QUEUE", 50, raising=False)
    path = tmp_path / "history.sqlite3"

    async def run() -> History:
        history = History(path)
        await history.start()
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            history.add(make_record("first"))  # the writer takes it and waits for the lock
            await asyncio.sleep(history_module.FLUSH_SECONDS + 0.3)
            for i in range(200):
                history.add(make_record(f"r{i:03d}"))
            assert history._queue.qsize() <= 50
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        await history.stop()
        return history

    with caplog.at_level(logging.WARNING, logger="nexus.history"):
        history = asyncio.run(run())
    assert history.dropped == 150
    assert _rows(path) == ["first"] + [f"r{i:03d}" for i in range(150, 200)]
    drops = [r.getMessage() for r in caplog.records if "dropping the oldest" in r.getMessage()]
    assert len(drops) == 1, drops  # counted, logged once (not once per record)


def test_history_writer_is_restarted_after_a_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "history.sqlite3"
    real_connect = history_module.connect
    calls: list[int] = []

    def flaky_connect(p: Path) -> sqlite3.Connection:
        calls.append(1)
        if len(calls) == 2:  # the writer thread's first connection (the first is start()'s)
            raise OSError("simulated: the disk went away")
        return real_connect(p)

    monkeypatch.setattr(history_module, "connect", flaky_connect)

    async def run() -> None:
        history = History(path)
        await history.start()
        history.add(make_record("queued-while-down"))
        await asyncio.sleep(1.5)  # supervise restarts after 1 s
        history.add(make_record("after-restart"))
        await history.stop()

    with caplog.at_level(logging.ERROR, logger="nexus.tasks"):
        asyncio.run(run())
    assert _rows(path) == ["queued-while-down", "after-restart"]
    assert any("history-writer crashed" in r.getMessage() for r in caplog.records)


# --- 3. --socket must not damage the filesystem ----------------------------------------------


def test_socket_in_a_shared_directory_leaves_its_mode_alone(daemons, short_dir: Path) -> None:
    shared = short_dir / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)  # like /tmp
    d = daemons(short_dir, "--socket", str(shared / "n.sock"))
    assert stat.S_IMODE(os.stat(shared).st_mode) == 0o1777  # was chmod-ed to 0700
    assert stat.S_IMODE(os.stat(shared / "n.sock").st_mode) == 0o600
    assert nexusctl(shared / "n.sock", "status").returncode == 0
    # directories Nexus creates itself are private
    fresh = short_dir / "new" / "sub"
    home2 = short_dir / "h2"
    home2.mkdir()
    d2 = daemons(home2, "--socket", str(fresh / "n.sock"))
    for directory in (short_dir / "new", fresh):
        assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700, directory
    d2.stop()
    d.stop()
    assert not (shared / "n.sock").exists() and not (fresh / "n.sock").exists()
    assert stat.S_IMODE(os.stat(shared).st_mode) == 0o1777


def _refused(daemons: Callable[..., Daemon], home: Path, target: Path) -> str:
    d = daemons(home, "--socket", str(target), wait=False)
    assert d.exit_code() == 1, d.log
    assert "Traceback" not in d.log
    return d.log


def test_socket_path_that_is_not_a_stale_socket_is_never_replaced(daemons, short_dir: Path) -> None:
    # a regular file (used to be deleted)
    precious = short_dir / "notes.txt"
    precious.write_text("keep me")
    log = _refused(daemons, short_dir, precious)
    assert "is a regular file" in log and "refusing to replace it" in log
    assert precious.read_text() == "keep me"

    # a directory, and a symlink to a socket
    (short_dir / "adir").mkdir()
    assert "is a directory" in _refused(daemons, short_dir, short_dir / "adir")
    (short_dir / "link").symlink_to(short_dir / "elsewhere.sock")
    assert "is a symbolic link" in _refused(daemons, short_dir, short_dir / "link")
    assert (short_dir / "link").is_symlink()

    # a live socket of some other program (no Nexus lock held): it keeps its socket
    other = short_dir / "other.sock"
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(other))
        listener.listen(8)
        assert "is listening on" in _refused(daemons, short_dir, other)
        with socket.socket(socket.AF_UNIX) as probe:
            probe.connect(str(other))  # still the other program's

    # a provably stale socket (lock free, connection refused) is replaced
    stale = short_dir / "stale.sock"
    with socket.socket(socket.AF_UNIX) as dead:
        dead.bind(str(stale))
    d = daemons(short_dir, "--socket", str(stale))
    assert nexusctl(stale, "status").returncode == 0, d.log


# --- 4. a read-only or full state disk --------------------------------------------------------


def _chat_config(url: str) -> str:
    return f"""
[[backends]]
name = "box"
url = "{url}"
type = "ollama"
"""


def _assert_serves_without_state(d: Daemon) -> None:
    body = {"model": "llama3:8b", "messages": [{"role": "user", "content": "hi"}]}
    deadline = time.monotonic() + 10
    while True:
        r = httpx.post(d.url + "/v1/chat/completions", json=body, timeout=10)
        if r.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.1)  # the backend's first health check
    assert r.status_code == 200, r.text
    assert nexusctl(d.runtime / "nexusd.sock", "status").returncode == 0
    warnings = [line for line in d.lines if "WARNING" in line]
    history = [line for line in warnings if "request history disabled" in line]
    assert len(history) == 1 and "writable" in history[0], d.log
    assert sum("could not write the daemon record" in line for line in warnings) == 1, d.log
    assert "Traceback" not in d.log and "ERROR" not in d.log


def test_unwritable_state_dir_daemon_starts_and_routes(daemons, fakes, short_dir: Path) -> None:
    """The state dir cannot be created (its parent is a file: fails for root too). This used to
    log "history disabled" and then exit 1 with a traceback writing daemon.json."""
    fake = fakes("ollama", ["llama3:8b"])
    blocker = short_dir / "blocker"
    blocker.write_text("")
    d = daemons(
        short_dir, config=_chat_config(fake.url), env={"NEXUS_STATE_DIR": str(blocker / "st")}
    )
    _assert_serves_without_state(d)
    d.stop()
    assert d.proc.returncode == 0


def _can_mount_in_a_user_namespace() -> bool:
    if not shutil.which("unshare"):
        return False
    probe = subprocess.run(
        ["unshare", "-rm", "sh", "-c", "mount -t tmpfs tmpfs /mnt 2>/dev/null || exit 1"],
        capture_output=True,
    )
    return probe.returncode == 0


#: in a private mount namespace: a tmpfs at $0 holding $0/state, then made full or read-only
_DISKS = {
    "full": 'mount -t tmpfs -o size=256k tmpfs "$0" && mkdir "$0/state" && '
    '{ dd if=/dev/zero of="$0/fill" bs=4k 2>/dev/null; true; } && exec "$@"',
    # a read-only tmpfs mounted on the state dir (a remount to ro is refused in an
    # unprivileged user namespace; a fresh ro mount works for root and other users alike)
    "read-only": 'mount -t tmpfs tmpfs "$0" && mkdir "$0/state" && '
    'mount -t tmpfs -o ro tmpfs "$0/state" && exec "$@"',
}


@pytest.mark.skipif(
    not _can_mount_in_a_user_namespace(), reason="needs unshare -rm (user + mount namespace)"
)
@pytest.mark.parametrize("disk", sorted(_DISKS))
def test_full_or_read_only_state_disk_daemon_starts_and_routes(
    daemons, fakes, short_dir: Path, disk: str
) -> None:
    """A real full (ENOSPC) or read-only (EROFS) filesystem under the state dir; binds root too."""
    fake = fakes("ollama", ["llama3:8b"])
    mount = short_dir / "disk"
    mount.mkdir()
    d = daemons(
        short_dir,
        config=_chat_config(fake.url),
        env={"NEXUS_STATE_DIR": str(mount / "state")},
        prefix=("unshare", "-rm", "sh", "-c", _DISKS[disk], str(mount)),
    )
    _assert_serves_without_state(d)
    reason = "No space left" if disk == "full" else "Read-only file system"
    assert reason in d.log or (disk == "full" and "disk is full" in d.log), d.log


@pytest.mark.skipif(os.geteuid() == 0, reason="permission bits do not bind root")
def test_read_only_state_dir_daemon_starts_and_routes(daemons, fakes, short_dir: Path) -> None:
    fake = fakes("ollama", ["llama3:8b"])
    state = short_dir / "ro"
    state.mkdir()
    os.chmod(state, 0o500)
    try:
        d = daemons(short_dir, config=_chat_config(fake.url), env={"NEXUS_STATE_DIR": str(state)})
        _assert_serves_without_state(d)
    finally:
        os.chmod(state, 0o700)


# --- 5. private state ------------------------------------------------------------------------


def _wait_written(d: DaemonThread, request_id: str) -> None:
    d.call(lambda: d.core.record(make_record(request_id)))
    path = d.state_dir / "history.sqlite3"
    assert wait_for(lambda: request_id in _rows(path), 5)


def test_state_dir_and_history_files_are_private(nexus, tmp_path: Path) -> None:
    old_umask = os.umask(0o022)
    try:
        fresh = tmp_path / "new" / "state"
        d = nexus(state_dir=fresh)
        _wait_written(d, "one")
        for directory in (tmp_path / "new", fresh):
            assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700, directory
        for name in ("history.sqlite3", "history.sqlite3-wal", "history.sqlite3-shm"):
            assert stat.S_IMODE(os.stat(fresh / name).st_mode) == 0o600, name
        d.stop()

        # a database an older Nexus left 0644 is tightened (and so the -wal/-shm SQLite makes
        # from it); a directory Nexus did not create keeps its mode
        existing = tmp_path / "existing"
        existing.mkdir(mode=0o755)
        shutil.copy(fresh / "history.sqlite3", existing / "history.sqlite3")
        os.chmod(existing / "history.sqlite3", 0o644)
        again = nexus(state_dir=existing)
        _wait_written(again, "two")
        assert stat.S_IMODE(os.stat(existing).st_mode) == 0o755
        for name in ("history.sqlite3", "history.sqlite3-wal", "history.sqlite3-shm"):
            assert stat.S_IMODE(os.stat(existing / name).st_mode) == 0o600, name
    finally:
        os.umask(old_umask)


# --- 6. backend names ------------------------------------------------------------------------


def test_backend_names_with_control_characters_are_refused(fakes, nexus) -> None:
    fake = fakes("ollama", ["llama3:8b"])
    d = nexus()
    transport = httpx.HTTPTransport(uds=str(d.control_path))
    with httpx.Client(transport=transport, base_url="http://nexus", timeout=10) as control:
        for name, words in (
            ("evil\r\nx-injected: 1", "control characters"),
            ("tab\there", "control characters"),
            ("n" * 65, "at most 64"),
            ("   ", "must not be empty"),
            (7, "must be a string"),
        ):
            r = control.post("/v1/backends", json={"url": fake.url, "type": "ollama", "name": name})
            assert r.status_code == 400, (name, r.text)
            message = r.json()["error"]["message"]
            assert message.startswith("'name'") and words in message, message
        assert control.get("/v1/backends").json()["backends"] == []
        ok = control.post("/v1/backends", json={"url": fake.url, "type": "ollama", "name": "box"})
        assert ok.status_code == 201, ok.text
    d.wait_healthy("box")
    body = {"model": "llama3:8b", "messages": [{"role": "user", "content": "hi"}]}
    assert httpx.post(d.url + "/v1/chat/completions", json=body, timeout=10).status_code == 200


@pytest.mark.parametrize(
    ("name", "words"),
    [("a\r\nb", "control characters"), ("x" * 65, "at most 64"), ("nul\x00", "control")],
)
def test_config_backend_names_are_validated(name: str, words: str) -> None:
    data = {"backends": [ollama_backend(name, "http://127.0.0.1:11434")]}
    with pytest.raises(ConfigError) as caught:
        parse_config(data, env={})
    problem = "; ".join(caught.value.problems)
    assert "backends[0].name" in problem and words in problem, problem


# --- 7. Hypercorn's own 400/431 answers -----------------------------------------------------


def test_protocol_errors_have_a_json_body(nexus) -> None:
    d = nexus()
    api = ("127.0.0.1", d.daemon.port)
    for address, family in ((api, socket.AF_INET), (str(d.control_path), socket.AF_UNIX)):
        code, headers, body = split_response(
            raw_exchange(address, b"THIS IS NOT HTTP\r\n\r\n", family)
        )
        assert code == 400 and headers["content-type"] == "application/json"
        assert int(headers["content-length"]) == len(body)
        error = json.loads(body)["error"]
        assert error["type"] == "invalid_request_error" and error["code"] == "malformed_request"
        assert set(error) == {"message", "type", "param", "code"}

        # headers past Hypercorn's 16 KiB limit, still unterminated
        oversize = b"GET /health HTTP/1.1\r\nHost: localhost\r\nX-Fill: " + b"a" * 40_000
        code, headers, body = split_response(raw_exchange(address, oversize, family))
        assert code == 431 and headers["content-type"] == "application/json"
        error = json.loads(body)["error"]
        assert error["code"] == "request_header_fields_too_large"
        assert "16 KiB" in error["message"]
    assert httpx.get(d.url + "/health").status_code == 200
