"""The control socket's lifecycle: private directory, exclusive lock, stale-socket cleanup.

Hypercorn would silently unlink a live daemon's socket and steal it, so we bind the socket
ourselves, only after taking an exclusive ``flock`` on ``<socket>.lock`` next to it. The lock
dies with the process (even on ``kill -9``), which is what makes a leftover socket "stale".

``--socket`` may point anywhere, so nothing that is not provably ours is touched: only the
directories created here are made 0700 (an existing one such as ``/tmp`` keeps its mode), and
the path is replaced only if it is a socket, its lock is free *and* connecting to it is
refused. Anything else (a regular file, a directory, a symlink, a socket something answers
on) is refused with a message saying what is there.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import stat
import time
from pathlib import Path

from nexusd.control.location import lock_path, make_private_dirs, record_path

MAX_UNIX_PATH = 104  # macOS sun_path limit (Linux: 108)

log = logging.getLogger("nexus.server")


class ControlSocketError(Exception):
    """The control socket cannot be set up; the message says why and what to do."""


def _kind(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "a regular file"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    return "not a socket"


class ControlListener:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock_path = lock_path(path)
        self._lock_fd: int | None = None
        self._bound: tuple[int, int] | None = None  # (st_dev, st_ino) of the socket we made
        self.sock: socket.socket | None = None

    def open(self) -> socket.socket:
        if len(os.fsencode(self.path)) >= MAX_UNIX_PATH:
            raise ControlSocketError(
                f"control socket path is too long for a Unix socket ({self.path}); "
                "set a shorter one with --socket or NEXUS_SOCKET"
            )
        directory = self.path.parent
        try:
            created = make_private_dirs(directory)
        except OSError as exc:
            raise ControlSocketError(
                f"cannot create the directory for the control socket {self.path}: "
                f"{exc.strerror}; choose another --socket"
            ) from None
        if not created:
            self._check_directory(directory)
        self._take_lock()
        try:
            self._clear_stale()
            sock = self._bind()
        except BaseException:
            self._release_lock()
            raise
        self.sock = sock
        return sock

    def _check_directory(self, directory: Path) -> None:
        """An existing directory is left as it is; say so if others could swap our socket."""
        try:
            st = os.stat(directory)
        except OSError as exc:
            raise ControlSocketError(
                f"cannot use {directory} for the control socket: {exc.strerror}"
            ) from None
        if not stat.S_ISDIR(st.st_mode):
            raise ControlSocketError(f"{directory} is not a directory; choose another --socket")
        if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not st.st_mode & stat.S_ISVTX:
            log.warning(
                "control socket directory %s is writable by other users (mode %o): they could "
                "replace the socket; prefer a private directory for --socket",
                directory,
                stat.S_IMODE(st.st_mode),
            )

    def _bind(self) -> socket.socket:
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
        st = os.stat(self.path)
        self._bound = (st.st_dev, st.st_ino)
        sock.listen(128)
        sock.setblocking(False)
        return sock

    def _take_lock(self) -> None:
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        except OSError as exc:
            raise ControlSocketError(
                f"cannot open the lock file {self.lock_path}: {exc.strerror}; "
                "choose another --socket"
            ) from None
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
        # the previous holder may have unlinked the file between our open and our flock:
        # then this lock guards nothing, start over on the file that is there now
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(self.lock_path))
        except FileNotFoundError:
            same = False
        if not same:
            os.close(fd)
            self._take_lock()
            return
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock_fd = fd

    def _release_lock(self) -> None:
        if self._lock_fd is None:
            return
        with contextlib.suppress(OSError):  # unlink while holding it: a waiter starts over
            if os.path.samestat(os.fstat(self._lock_fd), os.stat(self.lock_path)):
                os.unlink(self.lock_path)
        os.close(self._lock_fd)
        self._lock_fd = None

    def _clear_stale(self) -> None:
        """Remove a leftover socket, but only a provably stale one (we hold its lock, and
        connecting is refused); refuse to touch anything else."""
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise ControlSocketError(
                f"{self.path} already exists and is {_kind(st.st_mode)}, not a Nexus control "
                "socket; refusing to replace it. Remove it yourself or choose another --socket"
            )
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(1.0)
        try:
            probe.connect(os.fspath(self.path))
        except ConnectionRefusedError:
            pass  # nobody listens: stale
        except FileNotFoundError:
            return
        except OSError as exc:
            raise ControlSocketError(
                f"{self.path} is a socket that cannot be checked ({exc.strerror or exc}); "
                "refusing to replace it. Remove it yourself or choose another --socket"
            ) from None
        else:
            raise ControlSocketError(
                f"something that is not a Nexus daemon holding its lock is listening on "
                f"{self.path}; refusing to replace it. Stop it or choose another --socket"
            )
        finally:
            probe.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def write_record(self, api_url: str) -> None:
        """Tell clients where we are, even if their runtime-dir detection differs from ours.

        Best effort: a read-only or full state disk must not stop the daemon (clients still
        find it at the default socket path, or with --socket / NEXUS_SOCKET)."""
        record = record_path()
        tmp = record.with_suffix(".tmp")
        try:
            make_private_dirs(record.parent)
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
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            log.warning(
                "could not write the daemon record %s (%s): clients that rely on it will not "
                "find this daemon; point them at %s with --socket or NEXUS_SOCKET, or make "
                "the state directory writable (NEXUS_STATE_DIR)",
                record,
                exc.strerror or exc,
                self.path,
            )

    def close(self) -> None:
        if self._bound is not None:
            with contextlib.suppress(OSError):  # only our own socket, not a successor's
                st = os.lstat(self.path)
                if (st.st_dev, st.st_ino) == self._bound:
                    self.path.unlink()
            self._bound = None
        record = record_path()
        with contextlib.suppress(OSError, ValueError):
            if json.loads(record.read_text()).get("pid") == os.getpid():
                record.unlink()
        self._release_lock()
