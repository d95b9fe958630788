"""Request history: a ring in memory for live views, SQLite on disk for the long run.

Writes never touch the event loop: records go onto a queue that one writer thread drains in
batches (one transaction per batch, WAL journal), so 10,000 records in a burst cost the
request path an ``append`` each. A crash loses at most the last batch window
(``FLUSH_SECONDS``). Old rows are deleted past ``retention_days``. The schema is versioned
with ``PRAGMA user_version``: a new file gets the current schema, an older one is migrated
step by step (``_MIGRATIONS``) in one write transaction when it is opened.
"""

from __future__ import annotations

import asyncio
import json
import logging
import queue
import sqlite3
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from nexusd.records import RequestRecord

log = logging.getLogger("nexus.history")

SCHEMA_VERSION = 2
FLUSH_SECONDS = 0.5
BATCH = 200
#: pause between consecutive batches so a burst of writes never hogs the GIL (the event
#: loop thread waits up to a whole switch interval each time it wants it back)
BATCH_PAUSE = 0.002
RING = 1000
COLUMNS = (
    "request_id",
    "time",
    "requested_model",
    "served_model",
    "backend",
    "backend_name",
    "backend_type",
    "status",
    "status_code",
    "latency_ms",
    "ttft_ms",
    "overhead_ms",
    "prompt_tokens",
    "completion_tokens",
    "stream",
    "route_reason",
    "retries",
    "fallback_model",
    "outcome",
    "error_type",
    "error",
    "failed_backends",
    "endpoint",
)
#: the current schema, for a new file
_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS requests (
    request_id TEXT PRIMARY KEY, time REAL NOT NULL, requested_model TEXT NOT NULL,
    served_model TEXT, backend TEXT, backend_name TEXT, backend_type TEXT, status TEXT NOT NULL,
    status_code INTEGER NOT NULL, latency_ms REAL NOT NULL, ttft_ms REAL, overhead_ms REAL,
    prompt_tokens INTEGER, completion_tokens INTEGER, stream INTEGER NOT NULL,
    route_reason TEXT, retries INTEGER NOT NULL, fallback_model TEXT, outcome TEXT NOT NULL,
    error_type TEXT, error TEXT, failed_backends TEXT NOT NULL,
    endpoint TEXT NOT NULL DEFAULT 'chat'
)""",
    "CREATE INDEX IF NOT EXISTS requests_time ON requests(time)",
    "CREATE INDEX IF NOT EXISTS requests_model_time ON requests(served_model, time)",
)
#: version n → n + 1, for an existing file
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    # 1 → 2: which API the request came in on; every older row was a chat completion
    1: ("ALTER TABLE requests ADD COLUMN endpoint TEXT NOT NULL DEFAULT 'chat'",),
}
_INSERT = (
    f"INSERT OR REPLACE INTO requests ({', '.join(COLUMNS)}) VALUES "
    f"({', '.join('?' for _ in COLUMNS)})"
)


def _row(r: RequestRecord) -> tuple[Any, ...]:
    """Column values in COLUMNS order (spelled out: this runs once per request)."""
    return (
        r.request_id,
        r.time,
        r.requested_model,
        r.served_model,
        r.backend,
        r.backend_name,
        r.backend_type,
        r.status,
        r.status_code,
        r.latency_ms,
        r.ttft_ms,
        r.overhead_ms,
        r.prompt_tokens,
        r.completion_tokens,
        int(r.stream),
        r.route_reason,
        r.retries,
        r.fallback_model,
        r.outcome,
        r.error_type,
        r.error,
        json.dumps(r.failed_backends) if r.failed_backends else "[]",
        r.endpoint,
    )


def _record(row: sqlite3.Row) -> RequestRecord:
    data = dict(row)
    data["stream"] = bool(data["stream"])
    data["failed_backends"] = tuple(json.loads(data["failed_backends"]))
    return RequestRecord(**data)


def connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, check_same_thread=False, timeout=10)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    try:
        if _version(conn, path) < SCHEMA_VERSION:
            _upgrade(conn, path)
    except BaseException:
        conn.close()
        raise
    return conn


def _version(conn: sqlite3.Connection, path: Path) -> int:
    version: int = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise RuntimeError(f"{path} was written by a newer Nexus (schema {version})")
    return version


def _upgrade(conn: sqlite3.Connection, path: Path) -> None:
    """Create the schema (new file) or migrate an older one, all in one write transaction;
    the version is read again under the write lock, in case another connection won the race."""
    with conn:  # commit, or roll back everything on any error
        conn.execute("BEGIN IMMEDIATE")
        version = _version(conn, path)
        if version == 0:
            statements: tuple[str, ...] = _SCHEMA
        else:
            statements = tuple(s for v in range(version, SCHEMA_VERSION) for s in _MIGRATIONS[v])
            if statements:
                log.info("migrating %s from schema %d to %d", path, version, SCHEMA_VERSION)
        for statement in statements:
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


class History:
    def __init__(self, path: Path | None, retention_days: float = 30.0) -> None:
        self.path = path
        self.retention_days = retention_days
        self.ring: deque[RequestRecord] = deque(maxlen=RING)
        self._queue: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self.written = 0
        self.write_errors = 0

    # --- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        if self.path is None:
            return
        try:
            recent = await asyncio.to_thread(self._load_recent, RING)
        except (sqlite3.Error, OSError, RuntimeError) as exc:
            log.error("request history disabled: cannot open %s: %s", self.path, exc)
            self.path = None
            return
        self.ring.extend(recent)
        self._thread = threading.Thread(target=self._writer, name="nexus-history", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            await asyncio.to_thread(self._thread.join, 10)
            self._thread = None

    # --- hot path ------------------------------------------------------------------------

    def add(self, rec: RequestRecord) -> None:
        self.ring.append(rec)
        if self._thread is not None:
            self._queue.put(_row(rec))  # a few µs here saves the writer thread GIL time

    def recent(self, limit: int = 100) -> list[RequestRecord]:
        """Newest last, like the reference's ``/v1/history``."""
        if limit >= len(self.ring):
            return list(self.ring)
        return list(self.ring)[-limit:]

    # --- disk ----------------------------------------------------------------------------

    def _load_recent(self, limit: int) -> list[RequestRecord]:
        assert self.path is not None
        conn = connect(self.path)
        try:
            rows = conn.execute(
                "SELECT * FROM requests ORDER BY time DESC LIMIT ?", (limit,)
            ).fetchall()
        finally:
            conn.close()
        return [_record(r) for r in reversed(rows)]

    async def query(self, since: float = 0.0, limit: int = 1000) -> list[RequestRecord]:
        """Read persisted records (for analysis), off the event loop."""
        if self.path is None:
            return list(self.ring)[-limit:]

        def read() -> list[RequestRecord]:
            assert self.path is not None
            conn = connect(self.path)
            try:
                rows = conn.execute(
                    "SELECT * FROM requests WHERE time >= ? ORDER BY time DESC LIMIT ?",
                    (since, limit),
                ).fetchall()
            finally:
                conn.close()
            return [_record(r) for r in reversed(rows)]

        return await asyncio.to_thread(read)

    def _writer(self) -> None:
        assert self.path is not None
        conn = connect(self.path)
        last_prune = 0.0
        try:
            while True:
                first = self._queue.get()
                batch = [] if first is None else [first]
                deadline = time.monotonic() + FLUSH_SECONDS
                stop = first is None
                while not stop and len(batch) < BATCH:
                    try:
                        item = self._queue.get(timeout=max(deadline - time.monotonic(), 0))
                    except queue.Empty:
                        break
                    if item is None:
                        stop = True
                    else:
                        batch.append(item)
                if batch:
                    self._write(conn, batch)
                    if not self._queue.empty():
                        time.sleep(BATCH_PAUSE)
                if time.monotonic() - last_prune > 3600:
                    self._prune(conn)
                    last_prune = time.monotonic()
                if stop:
                    return
        finally:
            conn.close()

    def _write(self, conn: sqlite3.Connection, batch: list[tuple[Any, ...]]) -> None:
        try:
            with conn:
                conn.executemany(_INSERT, batch)
            self.written += len(batch)
        except sqlite3.Error as exc:  # disk full, locked…: keep serving, say so
            self.write_errors += len(batch)
            log.error("could not persist %d request records: %s", len(batch), exc)

    def _prune(self, conn: sqlite3.Connection) -> None:
        cutoff = time.time() - self.retention_days * 86400
        try:
            with conn:
                conn.execute("DELETE FROM requests WHERE time < ?", (cutoff,))
        except sqlite3.Error as exc:
            log.error("could not prune request history: %s", exc)
