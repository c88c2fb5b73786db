"""Response cache: an in-memory LRU in front of an SQLite file that survives restarts and is shared
safely by every process on the machine (WAL mode, busy timeout). Hits cost nothing and take no rate tokens.

Writes are behind (``batcher.Batcher``): a put lands in memory at once and reaches the file within
``WRITE_EVERY`` seconds, in one transaction with the others (64 threads each committing their own insert
would queue on SQLite's write lock). A cache file that is not a database is set aside with a warning, never an error
on every request.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

import structlog

from ..errors import ConfigError
from .batcher import Batcher

log = structlog.get_logger("dspex")
WRITE_EVERY = 0.05  # seconds a put may wait to be written with others


def cache_key(provider: str, model: str, messages: list[dict], sampling: dict, endpoint: str = "") -> str:
    """SHA-256 over the endpoint, provider, model, messages and sampling parameters (canonical JSON):
    the same model name at another server is another cache entry."""
    blob = json.dumps([endpoint, provider, model, messages, sampling], sort_keys=True, ensure_ascii=False,
                      default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


class MemoryLRU:
    """A bounded, thread-safe LRU of JSON-able values."""

    def __init__(self, maxsize: int = 10_000) -> None:
        self.maxsize = maxsize
        self._data: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> Any | None:
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def put(self, key: str, value: Any) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.maxsize:
                self._data.popitem(last=False)


class DiskCache:
    """Key → JSON in one SQLite table over one connection (a lock; each statement takes microseconds,
    and threads come and go: Evaluate runs each example on a thread of its own), one writer thread
    (the batcher's)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create the cache directory {self.path.parent}: {exc}; "
                              "pass cache_dir= to dspex.runtime() or set DSPEX_CACHE_DIR") from None
        self._db: sqlite3.Connection | None = None
        self._db_lock = threading.RLock()
        self._writes = Batcher(self._write, WRITE_EVERY, "dspex-cache-writer")  # (key, json) pairs
        self._open_table()

    def _open_table(self) -> None:
        with self._db_lock:
            try:
                self._conn().execute("CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, "
                                     "value TEXT NOT NULL, created REAL NOT NULL)")
            except sqlite3.DatabaseError as exc:
                self._set_aside(exc)
                self._conn().execute("CREATE TABLE responses (key TEXT PRIMARY KEY, value TEXT NOT NULL, "
                                     "created REAL NOT NULL)")

    def _set_aside(self, exc: Exception) -> None:
        """A file that is not a cache database: keep it for inspection, start an empty one."""
        if self._db is not None:
            self._db.close()
            self._db = None
        aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
        for suffix in ("", "-wal", "-shm"):
            part = Path(str(self.path) + suffix)
            if part.exists():
                part.rename(Path(str(aside) + suffix))
        log.warning("cache_set_aside", path=str(self.path), moved_to=str(aside), error=str(exc))

    def _conn(self) -> sqlite3.Connection:
        """The connection (callers hold ``_db_lock``)."""
        if self._db is None:
            self._db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
        return self._db

    def get(self, key: str) -> Any | None:
        pending = self._writes.pending(key)
        if pending is not None:
            return json.loads(pending[1])
        with self._db_lock:
            try:
                row = self._conn().execute("SELECT value FROM responses WHERE key = ?", (key,)).fetchone()
            except sqlite3.DatabaseError as exc:  # locked for too long, or damaged under us: a miss
                self._recover(exc)
                return None
        return json.loads(row[0]) if row else None

    def put(self, key: str, value: Any) -> None:
        self._writes.add((key, json.dumps(value)), key=key)

    def flush(self) -> None:
        """Write every pending put now."""
        self._writes.flush()

    def _write(self, batch: list[tuple[str, str]]) -> None:
        """One transaction for a batch of puts (the writer thread's, or a flush's)."""
        now = time.time()
        rows = [(k, v, now) for k, v in batch]
        with self._db_lock:
            conn = self._conn()
            try:
                conn.execute("BEGIN")
                conn.executemany("INSERT OR REPLACE INTO responses (key, value, created) VALUES (?, ?, ?)", rows)
                conn.execute("COMMIT")
            except sqlite3.DatabaseError as exc:
                log.warning("cache_write_failed", path=str(self.path), entries=len(batch), error=str(exc))
                if conn.in_transaction:
                    conn.rollback()
                self._recover(exc)

    def _recover(self, exc: sqlite3.DatabaseError) -> None:
        """A damaged file is set aside for a fresh one; a busy or emptied one is only re-checked."""
        if not isinstance(exc, sqlite3.OperationalError):  # "not a database", "malformed"
            self._set_aside(exc)
        self._open_table()

    def close(self) -> None:
        self._writes.close()

    def __len__(self) -> int:
        self.flush()
        with self._db_lock:
            return self._conn().execute("SELECT COUNT(*) FROM responses").fetchone()[0]


class ResponseCache:
    """Memory first, then disk (a disk hit is promoted to memory). ``configure`` changes which of the two
    are used in place (DSPy's ``configure_cache``), so every pipeline holding this cache sees the change."""

    def __init__(self, directory: str | Path | None, maxsize: int = 10_000) -> None:
        self._lock = threading.Lock()
        self.memory: MemoryLRU | None = MemoryLRU(maxsize)
        self.disk = DiskCache(Path(directory) / "responses.sqlite") if directory is not None else None

    def configure(self, directory: str | Path | None, *, memory: bool = True, maxsize: int = 10_000) -> None:
        """Use a fresh memory LRU (or none) and the disk cache in ``directory`` (or none); the disk cache
        used before writes what is pending first."""
        with self._lock:
            old = self.disk
            self.memory = MemoryLRU(maxsize) if memory else None
            self.disk = DiskCache(Path(directory) / "responses.sqlite") if directory is not None else None
        if old is not None:
            old.close()

    @property
    def enabled(self) -> bool:
        return self.memory is not None or self.disk is not None

    def get(self, key: str) -> Any | None:
        memory, disk = self.memory, self.disk
        value = memory.get(key) if memory is not None else None
        if value is None and disk is not None:
            value = disk.get(key)
            if value is not None and memory is not None:
                memory.put(key, value)
        return value

    def put(self, key: str, value: Any) -> None:
        memory, disk = self.memory, self.disk
        if memory is not None:
            memory.put(key, value)
        if disk is not None:
            disk.put(key, value)

    def reset_memory(self) -> None:
        """Forget what the memory LRU holds (the disk cache keeps it)."""
        with self._lock:
            if self.memory is not None:
                self.memory = MemoryLRU(self.memory.maxsize)

    def flush(self) -> None:
        """Write the pending puts now (another process reads them from the file at once)."""
        disk = self.disk
        if disk is not None:
            disk.flush()

    def close(self) -> None:
        """Write what is pending (the process's last puts reach the file)."""
        if self.disk is not None:
            self.disk.close()


__all__ = ["cache_key", "MemoryLRU", "DiskCache", "ResponseCache"]
