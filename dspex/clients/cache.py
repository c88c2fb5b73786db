"""Response cache: an in-memory LRU in front of an SQLite file that survives restarts and is shared
safely by every process on the machine (WAL mode, busy timeout). Hits cost nothing and take no rate tokens."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

from ..errors import ConfigError


def cache_key(provider: str, model: str, messages: list[dict], sampling: dict) -> str:
    """SHA-256 over provider, model, messages and sampling parameters (canonical JSON)."""
    blob = json.dumps([provider, model, messages, sampling], sort_keys=True, ensure_ascii=False, default=str)
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
    """Key → JSON in one SQLite table; one connection per thread."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create the cache directory {self.path.parent}: {exc}; "
                              "pass cache_dir= to dspex.runtime() or set DSPEX_CACHE_DIR") from None
        self._local = threading.local()
        with self._conn() as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, value TEXT NOT NULL, "
                         "created REAL NOT NULL)")

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
        return conn

    def get(self, key: str) -> Any | None:
        row = self._conn().execute("SELECT value FROM responses WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key: str, value: Any) -> None:
        self._conn().execute("INSERT OR REPLACE INTO responses (key, value, created) VALUES (?, ?, ?)",
                             (key, json.dumps(value), time.time()))

    def __len__(self) -> int:
        return self._conn().execute("SELECT COUNT(*) FROM responses").fetchone()[0]


class ResponseCache:
    """Memory first, then disk (a disk hit is promoted to memory)."""

    def __init__(self, directory: str | Path | None, maxsize: int = 10_000) -> None:
        self.memory = MemoryLRU(maxsize)
        self.disk = DiskCache(Path(directory) / "responses.sqlite") if directory is not None else None

    def get(self, key: str) -> Any | None:
        value = self.memory.get(key)
        if value is None and self.disk is not None:
            value = self.disk.get(key)
            if value is not None:
                self.memory.put(key, value)
        return value

    def put(self, key: str, value: Any) -> None:
        self.memory.put(key, value)
        if self.disk is not None:
            self.disk.put(key, value)


__all__ = ["cache_key", "MemoryLRU", "DiskCache", "ResponseCache"]
