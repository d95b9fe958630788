"""Request history: a ring in memory for live views, SQLite on disk for the long run.

Writes never touch the event loop: records go onto a queue that one writer thread drains in
batches (one transaction per batch, WAL journal), so 10,000 records in a burst cost the
request path an ``append`` each. A crash loses at most the last batch window
(``FLUSH_SECONDS``). Old rows are deleted past ``retention_days``. The schema is versioned
with ``PRAGMA user_version``: a new file gets the current schema, an older one is migrated
step by step (``_MIGRATIONS``) in one write transaction when it is opened.

The writer survives anything: a batch that fails is retried row by row, a row that still
fails is dropped and counted (one log line per failing batch, repeats of the same error at
most once a minute), and the thread itself runs under ``supervise`` so even a crash of the
loop restarts it. Its queue is bounded (``MAX_QUEUE``): past that the oldest rows are dropped
and counted, so a stuck disk costs bounded memory. The history is as private as the control
socket that serves it: the state directory is created 0700 and the database, ``-wal`` and
``-shm`` files are 0600.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import queue
import sqlite3
import stat
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from nexusd.control.location import make_private_dirs
from nexusd.records import RequestRecord
from nexusd.tasks import supervise

log = logging.getLogger("nexus.history")

SCHEMA_VERSION = 4
FLUSH_SECONDS = 0.5
BATCH = 200
#: pause between consecutive batches so a burst of writes never hogs the GIL (the event
#: loop thread waits up to a whole switch interval each time it wants it back)
BATCH_PAUSE = 0.002
RING = 1000
#: rows waiting for the writer; past this the oldest are dropped (and counted)
MAX_QUEUE = 50_000
#: a repeated write error (same type and text) is logged at most this often
ERROR_LOG_SECONDS = 60.0
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
    "cost_usd",
    "cost_status",
    "dialect",
    "translated",
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
    endpoint TEXT NOT NULL DEFAULT 'chat', cost_usd REAL, cost_status TEXT,
    dialect TEXT NOT NULL DEFAULT 'openai', translated INTEGER NOT NULL DEFAULT 0
)""",
    "CREATE INDEX IF NOT EXISTS requests_time ON requests(time)",
    "CREATE INDEX IF NOT EXISTS requests_model_time ON requests(served_model, time)",
)
#: version n → n + 1, for an existing file
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    # 1 → 2: which API the request came in on; every older row was a chat completion
    1: ("ALTER TABLE requests ADD COLUMN endpoint TEXT NOT NULL DEFAULT 'chat'",),
    # 2 → 3: what a cloud answer cost (older rows: unknown, shown as null)
    2: (
        "ALTER TABLE requests ADD COLUMN cost_usd REAL",
        "ALTER TABLE requests ADD COLUMN cost_status TEXT",
    ),
    # 3 → 4: the client's dialect and whether it was translated (older rows: OpenAI, as is)
    3: (
        "ALTER TABLE requests ADD COLUMN dialect TEXT NOT NULL DEFAULT 'openai'",
        "ALTER TABLE requests ADD COLUMN translated INTEGER NOT NULL DEFAULT 0",
    ),
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
        r.cost_usd,
        r.cost_status,
        r.dialect,
        int(r.translated),
    )


def _record(row: sqlite3.Row) -> RequestRecord:
    data = dict(row)
    data["stream"] = bool(data["stream"])
    data["translated"] = bool(data["translated"])
    data["failed_backends"] = tuple(json.loads(data["failed_backends"]))
    return RequestRecord(**data)


def make_private(path: Path) -> None:
    """The state directory 0700 if we create it; the database and its -wal/-shm 0600.

    SQLite gives new -wal/-shm files the database's mode, so creating the database 0600
    covers them; files left 0644 by an older Nexus are tightened here."""
    make_private_dirs(path.parent)
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        with contextlib.suppress(OSError):  # absent, or not ours to change
            if stat.S_IMODE(os.stat(name).st_mode) & 0o077:
                os.chmod(name, 0o600)


def connect(path: Path) -> sqlite3.Connection:
    make_private_dirs(path.parent)
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
        self._task: asyncio.Task[None] | None = None
        self.written = 0
        self.write_errors = 0
        #: rows dropped because the queue was full (the writer could not keep up)
        self.dropped = 0
        self._dropped_logged_at = 0.0
        self._last_error: tuple[str, float, int] | None = None  # (text, logged at, repeats)

    # --- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        if self.path is None:
            return
        try:
            await asyncio.to_thread(make_private, self.path)
            recent = await asyncio.to_thread(self._load_recent, RING)
        except (sqlite3.Error, OSError, RuntimeError) as exc:
            log.warning(
                "request history disabled: cannot open %s (%s). Free disk space or make %s "
                "writable (or point NEXUS_STATE_DIR elsewhere, or set [history] enabled = "
                "false), then restart; requests are still served",
                self.path,
                getattr(exc, "strerror", None) or exc,
                self.path.parent,
            )
            self.path = None
            return
        self.ring.extend(recent)
        self._task = supervise("history-writer", self._run_writer)

    async def stop(self) -> None:
        if self._task is not None:
            self._queue.put(None)
            done, _ = await asyncio.wait({self._task}, timeout=10)
            if not done:
                self._task.cancel()
            self._task = None

    # --- hot path ------------------------------------------------------------------------

    def add(self, rec: RequestRecord) -> None:
        self.ring.append(rec)
        if self._task is not None:
            if self._queue.qsize() >= MAX_QUEUE:
                self._drop_oldest()
            self._queue.put(_row(rec))  # a few µs here saves the writer thread GIL time

    def _drop_oldest(self) -> None:
        try:
            dropped = self._queue.get_nowait()
        except queue.Empty:
            return
        if dropped is None:  # the stop marker: keep it
            self._queue.put(None)
            return
        self.dropped += 1
        now = time.monotonic()
        if now - self._dropped_logged_at >= ERROR_LOG_SECONDS:
            self._dropped_logged_at = now
            log.warning(
                "request history is %d records behind: dropping the oldest (%d dropped so "
                "far); the disk under %s is too slow or stuck",
                MAX_QUEUE,
                self.dropped,
                self.path,
            )

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

    async def _run_writer(self) -> None:
        """The writer thread, as something ``supervise`` can await (and restart on a crash)."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def settle(exc: BaseException | None) -> None:
            if done.done():
                return
            if exc is None:
                done.set_result(None)
            else:
                done.set_exception(exc)

        def target() -> None:
            outcome: BaseException | None = None
            try:
                self._writer()
            except BaseException as exc:  # handed to supervise on the loop
                outcome = exc
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                loop.call_soon_threadsafe(settle, outcome)

        threading.Thread(target=target, name="nexus-history", daemon=True).start()
        await done

    def _writer(self) -> None:
        assert self.path is not None
        conn = connect(self.path)
        last_prune = 0.0
        try:
            while True:
                batch, stop = self._next_batch()
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

    def _next_batch(self) -> tuple[list[tuple[Any, ...]], bool]:
        """Up to BATCH rows, waiting at most FLUSH_SECONDS after the first; True = stop."""
        first = self._queue.get()
        if first is None:
            return [], True
        batch = [first]
        deadline = time.monotonic() + FLUSH_SECONDS
        while len(batch) < BATCH:
            try:
                item = self._queue.get(timeout=max(deadline - time.monotonic(), 0))
            except queue.Empty:
                break
            if item is None:
                return batch, True
            batch.append(item)
        return batch, False

    def _write(self, conn: sqlite3.Connection, batch: list[tuple[Any, ...]]) -> None:
        """One transaction per batch; if a row breaks it, row by row, dropping the bad rows.

        Any exception counts (a lone surrogate in a string is a UnicodeEncodeError, not a
        sqlite3.Error): the writer must outlive every bad row and every bad disk."""
        try:
            with conn:
                conn.executemany(_INSERT, batch)
            self.written += len(batch)
            self._recovered()
            return
        except Exception as exc:
            first: BaseException = exc
        failed: list[tuple[tuple[Any, ...], BaseException]] = []
        if len(batch) == 1 or isinstance(first, sqlite3.OperationalError):
            # disk full, read-only, locked past the timeout: every row would fail the same way
            failed = [(row, first) for row in batch]
        else:
            for row in batch:
                try:
                    with conn:
                        conn.execute(_INSERT, row)
                    self.written += 1
                except Exception as exc:
                    failed.append((row, exc))
        if not failed:
            self._recovered()
            return
        self.write_errors += len(failed)
        row, exc = failed[0]
        text = f"{type(exc).__name__}: {exc}"
        now = time.monotonic()
        last = self._last_error
        if last is not None and last[0] == text and now - last[1] < ERROR_LOG_SECONDS:
            self._last_error = (text, last[1], last[2] + len(failed))
            return
        log.error(
            "could not persist %d of %d request records, dropped them (first: %s: %s); "
            "%d dropped so far",
            len(failed),
            len(batch),
            row[0],
            text,
            self.write_errors,
        )
        self._last_error = (text, now, 0)

    def _recovered(self) -> None:
        if self._last_error is not None and self._last_error[2]:
            log.info(
                "request history: %d more record(s) were dropped for the same error",
                self._last_error[2],
            )
        self._last_error = None

    def _prune(self, conn: sqlite3.Connection) -> None:
        cutoff = time.time() - self.retention_days * 86400
        try:
            with conn:
                conn.execute("DELETE FROM requests WHERE time < ?", (cutoff,))
        except Exception as exc:
            log.error("could not prune request history: %s", exc)
