"""Keys out of text: every API key this process knows is masked in any text dspex writes (journals,
rows' errors, logs, the dashboard's JSON, the command line's messages), whoever produced that text.

dspex's own messages never hold a key; a user's metric or program may (``ValueError(f"bad {key}")``),
and a provider may echo one back. So the writers scrub, not the producers:

* :func:`scrub_secret` masks one key (every run of ``SCRUB_MIN`` or more of its characters, any case,
  so a truncated or upper-cased echo is caught too);
* :func:`known_keys` is what this process knows now: the environment's ``*_API_KEY`` values, and the
  value of every live :class:`~dspex.clients.Secret` (an LM's or an embedder's key, from ``api_key=``
  or the settings; a runtime's key vault holds them while it runs);
* :func:`scrub_text` and :func:`scrub_value` mask all of them.

Why a process-wide set (habit 1 says pass handles): the writers sit below every handle (a structlog
processor, the JSON Lines writer, an actor process's journal), and the key is process-wide by nature
(it is in this process's memory). The set holds weak references only, so a key leaves it with its last
``Secret``, and it can only ever mask more of what is written, never change a result. A "key" shorter
than ``SCRUB_MIN`` (``"local"``, ``"EMPTY"`` for a local server) is no secret and is left alone:
masking every ``"local"`` in a journal would destroy it. This module imports nothing of dspex but the
provider registry (plain data: the key variables), so every writer can use it.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Any, Protocol

from .providers import PROVIDERS

SCRUB_MIN = 8  # a run of this many characters of a key is masked wherever it appears
MASK = "***"


class _Revealable(Protocol):
    def reveal(self) -> str: ...


# by identity, not equality: two equal Secrets are two holders of one key, and the key stays while either lives
_live: "weakref.WeakValueDictionary[int, _Revealable]" = weakref.WeakValueDictionary()
_live_lock = threading.Lock()


def remember(secret: _Revealable) -> None:
    """Mask ``secret.reveal()`` in what this process writes, for as long as ``secret`` lives
    (``Secret.__init__`` calls it)."""
    with _live_lock:
        _live[id(secret)] = secret


def scrub_secret(text: str, secret: str) -> str:
    """``text`` with every run of at least ``SCRUB_MIN`` characters of ``secret`` (case-insensitive) masked."""
    return _mask(text, _spans(text.lower(), secret))


def _spans(low: str, secret: str) -> list[list[int]]:
    """Where runs of ``SCRUB_MIN`` characters of ``secret`` are in ``low`` (lower-cased text)."""
    key = secret.lower()
    n = SCRUB_MIN if len(key) >= SCRUB_MIN else len(key)
    spans: list[list[int]] = []
    for i in range(len(key) - n + 1):
        gram, at = key[i:i + n], low.find(key[i:i + n])
        while at >= 0:
            spans.append([at, at + n])
            at = low.find(gram, at + 1)
    return spans


def _mask(text: str, spans: list[list[int]]) -> str:
    """``text`` with the (possibly overlapping) spans replaced by one MASK each where they touch."""
    if not spans:
        return text
    spans.sort()
    merged = [spans[0]]
    for start, end in spans[1:]:
        if start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    out, pos = [], 0
    for start, end in merged:
        out += [text[pos:start], MASK]
        pos = end
    return "".join(out) + text[pos:]


KEY_VARIABLES = frozenset(name for spec in PROVIDERS.values()
                          for name in (*spec.key_env, *spec.credential_env))  # HF_TOKEN, AWS_SECRET_ACCESS_KEY, ...


def known_keys() -> frozenset[str]:
    """The keys this process knows now (``*_API_KEY`` and every provider's key variable in the environment,
    such as ``HF_TOKEN``; every live ``Secret``), those of
    at least ``SCRUB_MIN`` characters."""
    keys = {value.strip() for name, value in os.environ.items()
            if name.upper().endswith("_API_KEY") or name in KEY_VARIABLES}
    with _live_lock:
        keys.update(secret.reveal() for secret in list(_live.values()))
    return frozenset(k for k in keys if len(k) >= SCRUB_MIN)


def scrub_text(text: str, keys: frozenset[str] | None = None) -> str:
    """``text`` with every known key (or every one of ``keys``) masked, all found in the original text
    first (two keys sharing a run of characters are masked as one span, not one over the other's mask)."""
    low = text.lower()
    return _mask(text, [span for key in (known_keys() if keys is None else keys) for span in _spans(low, key)])


def bounded(text: Any, limit: int, keys: frozenset[str] | None = None) -> str:
    """``text`` as shown outside the process (a page, a span): at most ``limit`` characters, then "…",
    every known key (or every one of ``keys``) masked."""
    text = str(text)
    return scrub_text(text if len(text) <= limit else text[:limit] + "…", keys)


def scrub_value(value: Any, keys: frozenset[str] | None = None) -> Any:
    """Strings masked, recursively in dicts (keys and values), lists and tuples; other values as they are."""
    keys = known_keys() if keys is None else keys
    if not keys:
        return value
    if isinstance(value, str):
        return scrub_text(value, keys)
    if isinstance(value, dict):
        return {scrub_value(k, keys): scrub_value(v, keys) for k, v in value.items()}
    if isinstance(value, (list, tuple)) and type(value) in (list, tuple):
        return type(value)(scrub_value(v, keys) for v in value)
    return value


__all__ = ["SCRUB_MIN", "MASK", "remember", "scrub_secret", "known_keys", "scrub_text", "bounded", "scrub_value"]
