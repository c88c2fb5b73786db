"""DSPy's ``asyncify``: call a synchronous program from async code without blocking the event loop.

``await asyncify(program)(**inputs)`` runs ``program(**inputs)`` in a worker thread, in a copy of the
awaiting task's ``contextvars`` context (so ``with dspex.context(lm=...)`` and the trace scope reach it).
All asyncified calls share one ``anyio.CapacityLimiter`` (:func:`get_limiter`): at most
``async_max_workers`` of them (DSPy's default, 8) run at once, the others wait for a slot. The limiter is
resized, not replaced, when the setting changes. Cancelling the awaiting task abandons the thread's call
(a thread cannot be killed: it runs to its end and its result is dropped).

This module is in dspex's lowest layer: ``async_max_workers`` is read through the settings reader that
dspex registers with :func:`dspex.utils.callback_context.set_settings_reader` (8 when none is registered), or
passed explicitly as ``get_limiter(max_workers)``.
"""

from __future__ import annotations

import contextvars
import functools
import threading
from typing import Any, Awaitable, Callable

import anyio.to_thread
from anyio import CapacityLimiter

from ..errors import ConfigError
from .callback_context import read_setting

DEFAULT_ASYNC_MAX_WORKERS = 8  # DSPy's settings.async_max_workers

_limiter: CapacityLimiter | None = None
_limiter_lock = threading.Lock()


def get_async_max_workers() -> int:
    """The ``async_max_workers`` setting in force (8 unless set)."""
    value = read_setting("async_max_workers", DEFAULT_ASYNC_MAX_WORKERS)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"async_max_workers must be a positive integer, got {value!r}")
    return value


def get_limiter(max_workers: int | None = None) -> CapacityLimiter:
    """The process's one limiter for asyncified calls, sized ``max_workers`` (default: the setting)."""
    size = get_async_max_workers() if max_workers is None else max_workers
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ConfigError(f"max_workers must be a positive integer, got {size!r}")
    global _limiter
    with _limiter_lock:
        if _limiter is None:
            _limiter = CapacityLimiter(size)
        elif _limiter.total_tokens != size:
            _limiter.total_tokens = size
        return _limiter


def asyncify(program: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
    """An async function that runs ``program(*args, **kwargs)`` in a worker thread (bounded by
    :func:`get_limiter`), in the caller's context."""

    async def async_program(*args: Any, **kwargs: Any) -> Any:
        limiter = get_limiter()  # sized by the setting in force where the call is awaited
        call = functools.partial(contextvars.copy_context().run, program, *args, **kwargs)
        return await anyio.to_thread.run_sync(call, abandon_on_cancel=True, limiter=limiter)

    async_program.__name__ = f"async_{getattr(program, '__name__', type(program).__name__)}"
    async_program.__qualname__ = async_program.__name__
    async_program.__doc__ = getattr(program, "__doc__", None)
    return async_program


__all__ = ["asyncify", "get_limiter", "get_async_max_workers", "DEFAULT_ASYNC_MAX_WORKERS"]
