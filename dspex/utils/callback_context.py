"""What the lowest layer reads from the context a call runs in: the active callback call id (DSPy's
``ACTIVE_CALL_ID``) and the settings in force.

The settings live a layer above (``dspex.programs.settings``: the runtime's ``configure`` and the block's
``context``), which this layer may not import; that module registers its reader here when it is imported.
"""

from __future__ import annotations

import contextvars
import functools
from typing import Any, Callable

ACTIVE_CALL_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("dspex_active_call_id", default=None)

_settings_reader: Callable[[str], Any] | None = None


def set_settings_reader(reader: Callable[[str], Any] | None) -> None:
    """Where settings come from: ``reader(key)`` returns the setting in force (None: unset)."""
    global _settings_reader
    _settings_reader = reader


def read_setting(key: str, default: Any) -> Any:
    """The registered reader's value for ``key``, or ``default`` when none is registered or it says None."""
    reader = _settings_reader
    value = reader(key) if reader is not None else None
    return default if value is None else value


def _bind_active_call_id(fn: Callable) -> Callable:
    """``fn`` bound to the call id active now: each call of it runs under that id (work handed to another
    thread keeps its parent's id), and the caller's id is back afterwards, also when it raises."""
    parent = ACTIVE_CALL_ID.get()

    @functools.wraps(fn)
    def bound(*args: Any, **kwargs: Any) -> Any:
        token = ACTIVE_CALL_ID.set(parent)
        try:
            return fn(*args, **kwargs)
        finally:
            ACTIVE_CALL_ID.reset(token)

    return bound


__all__ = ["ACTIVE_CALL_ID", "set_settings_reader", "read_setting", "_bind_active_call_id"]
