"""The control socket's lifecycle: private directory, exclusive lock, stale-socket cleanup.

Hypercorn would silently unlink a live daemon's socket and steal it, so we bind the socket
ourselves, only after taking an exclusive ``flock`` on a lock file next to it. The lock dies
with the process (even on ``kill -9``), which is what makes a leftover socket "stale".
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from pathlib import Path

from nexusd.control.location import LOCK_NAME, record_path

MAX_UNIX_PATH = 104  # macOS sun_path limit (Linux: 108)


class ControlSocketError(Exception):
    """The control socket cannot be set up; the message says why and what to do."""


class ControlListener:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock_path = path.parent / LOCK_NAME
        self._lock_fd: int | None = None
        self.sock: socket.socket | None = None

    def open(self) -> socket.socket:
        if len(os.fsencode(self.path)) >= MAX_UNIX_PATH:
            raise ControlSocketError(
                f"control socket path is too long for a Unix socket ({self.path}); "
                "set a shorter one with --socket or NEXUS_SOCKET"
            )
        directory = self.path.parent
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(directory, 0o700)
        self._take_lock()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # stale: whoever made it no longer holds the lock
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)
        try:
            sock.bind(os.fspath(self.path))
        except OSError as exc:
            sock.close()
            raise ControlSocketError(f"cannot bind {self.path}: {exc.strerror}") from None
        finally:
            os.umask(old_umask)
        os.chmod(self.path, 0o600)
        sock.listen(128)
        sock.setblocking(False)
        self.sock = sock
        return sock

    def _take_lock(self) -> None:
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise ControlSocketError(
                f"another Nexus daemon (pid {holder}) is already running with control socket "
                f"{self.path}; stop it first (nexusctl status shows it), or give this one "
                "another --socket"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock_fd = fd

    def write_record(self, api_url: str) -> None:
        """Tell clients where we are, even if their runtime-dir detection differs from ours."""
        record = record_path()
        record.parent.mkdir(parents=True, exist_ok=True)
        tmp = record.with_suffix(".tmp")
        tmp.write_text(
            json.dumps(
                {
                    "pid": os.getpid(),
                    "socket": str(self.path),
                    "api_url": api_url,
                    "started_at": time.time(),
                }
            )
        )
        tmp.replace(record)

    def close(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        record = record_path()
        with contextlib.suppress(OSError, ValueError):
            if json.loads(record.read_text()).get("pid") == os.getpid():
                record.unlink()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
