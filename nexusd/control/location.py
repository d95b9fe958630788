"""Where the control socket lives and how clients find it (no heavy imports: CLIs use this).

Order for clients: ``--socket`` > ``NEXUS_SOCKET`` > the path the running daemon recorded
in ``<state dir>/daemon.json`` (so a daemon started under another environment is still
found) > ``<user runtime dir>/nexus/nexusd.sock``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from nexusd import paths

SOCKET_NAME = "nexusd.sock"
#: the lock that guards a socket sits next to it: ``<socket>.lock``
LOCK_SUFFIX = ".lock"
RECORD_NAME = "daemon.json"


def lock_path(socket_path: Path) -> Path:
    return socket_path.with_name(socket_path.name + LOCK_SUFFIX)


def make_private_dirs(directory: Path) -> list[Path]:
    """Create ``directory`` and its missing parents, each mode 0700; returns those created.

    Only directories Nexus created are ours to tighten: an existing one (``/tmp``, a shared
    project folder) keeps its mode. Raises OSError if one cannot be created.
    """
    missing: list[Path] = []
    current = directory
    while not os.path.lexists(current) and current != current.parent:
        missing.append(current)
        current = current.parent
    created: list[Path] = []
    for path in reversed(missing):
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            continue  # someone else made it meanwhile: not ours
        os.chmod(path, 0o700)  # mkdir's mode went through the umask
        created.append(path)
    return created


def default_socket() -> Path:
    return paths.runtime_dir() / SOCKET_NAME


def record_path() -> Path:
    return paths.state_dir() / RECORD_NAME


def read_record() -> dict[str, Any] | None:
    try:
        data = json.loads(record_path().read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def find_socket(explicit: str | os.PathLike[str] | None = None) -> Path:
    if explicit:
        return Path(explicit)
    env = os.environ.get("NEXUS_SOCKET")
    if env:
        return Path(env)
    record = read_record()
    if (
        record
        and isinstance(record.get("socket"), str)
        and isinstance(record.get("pid"), int)
        and pid_alive(record["pid"])
    ):
        return Path(record["socket"])
    return default_socket()
