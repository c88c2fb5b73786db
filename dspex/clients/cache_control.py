"""DSPy's cache controls (``dspy.cache``, ``dspy.configure_cache``) over a runtime's response cache.

dspex keeps one response cache per runtime and process (``rt.engines.response_cache()``: memory LRU in
front of a shared SQLite file). :func:`configure_cache` changes which of the two the current runtime uses,
in place, so LM handles already made see it at once. :class:`Cache` is what ``dspex.cache`` holds: a view
of the current runtime's cache with DSPy's names (``get``/``put`` of a request dict, ``reset_memory_cache``,
``disk_cache.close()``), for code and tests written against DSPy's cache.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .cache import ResponseCache
from .host import current_runtime, existing_runtime

DISK_SIZE_LIMIT = 30 * 1024**3  # DSPy's default: accepted; dspex's disk cache is not size-limited
MEMORY_MAX_ENTRIES = 1_000_000  # DSPy's default


def _cache_of(start: bool) -> ResponseCache | None:
    rt = current_runtime() if start else existing_runtime()
    return rt.engines.response_cache() if rt is not None else None


def request_key(request: dict[str, Any], ignored_args_for_cache_key: list[str] | None = None) -> str:
    """SHA-256 of a request dict (canonical JSON) without the ignored arguments (DSPy's ``cache_key``)."""
    ignored = set(ignored_args_for_cache_key or ())
    blob = json.dumps({k: v for k, v in request.items() if k not in ignored}, sort_keys=True, default=str)
    return "request:" + hashlib.sha256(blob.encode()).hexdigest()


class _DiskHandle:
    """``dspex.cache.disk_cache``: ``close()`` writes what is pending (the file reopens on next use)."""

    def close(self) -> None:
        cache = _cache_of(start=False)
        if cache is not None and cache.disk is not None:
            cache.disk.close()


class Cache:
    """The current runtime's response cache with DSPy's names (see the module docstring)."""

    def __init__(self, enable_disk_cache: bool = True, enable_memory_cache: bool = True) -> None:
        self.enable_disk_cache = enable_disk_cache
        self.enable_memory_cache = enable_memory_cache
        self.disk_cache = _DiskHandle() if enable_disk_cache else {}

    def cache_key(self, request: dict[str, Any], ignored_args_for_cache_key: list[str] | None = None) -> str:
        return request_key(request, ignored_args_for_cache_key)

    def get(self, request: dict[str, Any], ignored_args_for_cache_key: list[str] | None = None) -> Any:
        cache = _cache_of(start=False)
        return cache.get(request_key(request, ignored_args_for_cache_key)) if cache is not None else None

    def put(self, request: dict[str, Any], value: Any, ignored_args_for_cache_key: list[str] | None = None,
            enable_memory_cache: bool = True) -> None:
        try:
            json.dumps(value)
        except TypeError:
            raise ConfigError(f"dspex.cache.put: the value must be JSON-able (the cache file never holds "
                              f"pickles), got {type(value).__name__}") from None
        _cache_of(start=True).put(request_key(request, ignored_args_for_cache_key), value)

    def reset_memory_cache(self) -> None:
        cache = _cache_of(start=False)
        if cache is not None:
            cache.reset_memory()

    def __repr__(self) -> str:
        return f"dspex.cache(disk={self.enable_disk_cache}, memory={self.enable_memory_cache})"


def configure_cache(enable_disk_cache: bool = True, enable_memory_cache: bool = True,
                    disk_cache_dir: str | Path | None = None, disk_size_limit_bytes: int | None = DISK_SIZE_LIMIT,
                    memory_max_entries: int = MEMORY_MAX_ENTRIES) -> Cache:
    """Which caches the current runtime's LM calls use (DSPy's ``configure_cache``); returns the new view.
    With both off, nothing is cached (an LM's ``cache=True`` then caches nothing)."""
    if disk_size_limit_bytes not in (None, DISK_SIZE_LIMIT):
        raise ConfigError("configure_cache: dspex's disk cache has no size limit; drop disk_size_limit_bytes= "
                          "and clear the cache folder (dspex.Settings().cache_dir) when it grows too large")
    if not isinstance(memory_max_entries, int) or memory_max_entries < 1:
        raise ConfigError(f"configure_cache: memory_max_entries must be a positive int, got {memory_max_entries!r}")
    rt = current_runtime()
    directory = (Path(disk_cache_dir) if disk_cache_dir is not None else rt.cache_dir) if enable_disk_cache else None
    rt.engines.response_cache().configure(directory, memory=enable_memory_cache,
                                          maxsize=min(memory_max_entries, 10_000_000))
    return Cache(enable_disk_cache, enable_memory_cache)


__all__ = ["Cache", "configure_cache", "request_key"]
