"""Write runtime edits back to the TOML file, keeping the user's comments and layout.

Every edit: re-read the file; if it changed on disk since we loaded it, the caller first
re-applies it (an external edit is never overwritten); apply the change to the tomlkit
document; validate the result exactly like a file loaded at start-up; then write a temp
file, fsync, and rename it over the original (atomic, same permissions).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.items import AoT, Table

from nexusd.config.loader import ConfigError, parse_config
from nexusd.config.schema import NexusConfig

HEADER = "# Nexus configuration — created by Nexus for runtime edits; see docs/configuration.md\n"


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class ConfigStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.loaded_digest = self.current_digest()

    def current_digest(self) -> str | None:
        try:
            return digest(self.path.read_bytes())
        except FileNotFoundError:
            return None

    @property
    def changed_on_disk(self) -> bool:
        return self.current_digest() != self.loaded_digest

    def mark_loaded(self) -> None:
        self.loaded_digest = self.current_digest()

    def read_document(self) -> tomlkit.TOMLDocument:
        try:
            text = self.path.read_text("utf-8")
        except FileNotFoundError:
            text = HEADER
        return tomlkit.parse(text)

    def edit(
        self,
        mutate: Callable[[tomlkit.TOMLDocument], None],
        *,
        flags: Mapping[str, Any] | None = None,
    ) -> NexusConfig:
        """Apply ``mutate`` to the file's document, validate, write atomically.

        Raises ConfigError (nothing written) when the result would not load.
        """
        doc = self.read_document()
        mutate(doc)
        # the running config = this file + the same env and flags as at start-up
        cfg, _warnings, _sources = parse_config(
            doc.unwrap(), env=os.environ, flags=flags, path=self.path
        )
        self._write(tomlkit.dumps(doc).encode())
        return cfg

    def _write(self, data: bytes) -> None:
        directory = self.path.parent
        directory.mkdir(parents=True, exist_ok=True)
        try:
            mode = self.path.stat().st_mode & 0o777
        except FileNotFoundError:
            mode = 0o600
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=directory)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, mode)
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        self.loaded_digest = digest(data)


# --- mutations used by the control API ------------------------------------------------------


def _table(doc: tomlkit.TOMLDocument, *keys: str) -> Table:
    node: Any = doc
    for key in keys:
        if key not in node:
            node[key] = tomlkit.table()
        node = node[key]
    return node


def _set(table: Table, key: str, value: Any) -> None:
    """Set ``key``; a new key goes right after the table's last key, not after the blank
    lines and comments that end the table (they introduce the next table and stay with it)."""
    if key in table:
        table[key] = value
        return
    body = table.value.body
    last = max((i for i, (k, _) in enumerate(body) if k is not None), default=None)
    if last is None or last == len(body) - 1:
        table[key] = value
    else:
        table.value._insert_at(last + 1, key, value)  # tomlkit has no public "insert at"


def set_alias(name: str, target: str) -> Callable[[tomlkit.TOMLDocument], None]:
    def mutate(doc: tomlkit.TOMLDocument) -> None:
        _set(_table(doc, "routing", "aliases"), name, target)

    return mutate


def remove_key(section: tuple[str, ...], name: str) -> Callable[[tomlkit.TOMLDocument], None]:
    def mutate(doc: tomlkit.TOMLDocument) -> None:
        table = _table(doc, *section)
        if name in table:
            del table[name]

    return mutate


def set_fallbacks(model: str, chain: list[str]) -> Callable[[tomlkit.TOMLDocument], None]:
    def mutate(doc: tomlkit.TOMLDocument) -> None:
        _set(_table(doc, "routing", "fallbacks"), model, chain)

    return mutate


def add_backend(entry: dict[str, Any]) -> Callable[[tomlkit.TOMLDocument], None]:
    def mutate(doc: tomlkit.TOMLDocument) -> None:
        table = tomlkit.table()
        for key, value in entry.items():
            if value is not None:
                table[key] = value
        table.add(tomlkit.nl())
        if "backends" not in doc:
            doc["backends"] = tomlkit.aot()
        backends = doc["backends"]
        assert isinstance(backends, AoT)
        backends.append(table)

    return mutate


def remove_backend(name: str) -> Callable[[tomlkit.TOMLDocument], None]:
    def mutate(doc: tomlkit.TOMLDocument) -> None:
        backends = doc.get("backends")
        if not isinstance(backends, AoT):
            return
        for index, table in enumerate(backends):
            if table.get("name") == name:
                del backends[index]
                break
        if not len(backends):
            del doc["backends"]

    return mutate


def update_backend(name: str, fields: dict[str, Any]) -> Callable[[tomlkit.TOMLDocument], None]:
    def mutate(doc: tomlkit.TOMLDocument) -> None:
        backends = doc.get("backends")
        for table in backends if isinstance(backends, AoT) else ():
            if table.get("name") == name:
                for key, value in fields.items():
                    table[key] = value

    return mutate


__all__ = ["ConfigError", "ConfigStore"]
