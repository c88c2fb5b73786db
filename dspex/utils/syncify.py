"""DSPy's ``syncify``: make an async module (one with ``aforward``) callable synchronously.

``syncify(program)`` gives the program a ``forward`` that runs ``aforward`` to completion (in place, the
default: fine unless the program already has a different ``forward``); ``syncify(program, in_place=False)``
returns a wrapper module holding the program (its predictors are found through it, so optimizers work).

:func:`run_async` runs a coroutine from synchronous code: with ``asyncio.run`` when the thread has no
running event loop; inside a running loop (a notebook, an async caller) on a fresh loop in a helper
thread, with the caller's ``contextvars`` context, while the caller waits. (DSPy re-enters the running
loop with ``nest_asyncio`` instead; that patches asyncio process-wide, and dspex does not depend on it.)

This module is in dspex's lowest layer, so it does not import ``dspex.programs``: the wrapper's class is
made from the module base the program itself derives from (the first class of its hierarchy, from the
root, that defines both ``__call__`` and ``forward``: ``dspex.Module`` for a dspex program).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import threading
from types import MethodType
from typing import Any, Coroutine, Iterator

_wrappers: dict[type, type] = {}
_wrappers_lock = threading.Lock()


def run_async(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run ``coro`` to completion from synchronous code and return its result (or raise its error)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    # This thread's loop is busy running the caller: run the coroutine on a loop of its own.
    outcome: dict[str, Any] = {}
    context = contextvars.copy_context()

    def run() -> None:
        try:
            outcome["value"] = context.run(asyncio.run, coro)
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller, who re-raises it
            outcome["error"] = exc

    helper = threading.Thread(target=run, name="dspex-syncify", daemon=True)
    helper.start()
    helper.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


# the event loop of an ``await module.acall(...)`` whose sync body runs on a worker thread: async work that
# body reaches (an LM object's own ``acall``) is awaited there, not on a loop of its own
_CALLER_LOOP: contextvars.ContextVar[Any] = contextvars.ContextVar("dspex_caller_loop", default=None)


def caller_loop() -> Any:
    """The event loop awaiting this thread's work (an async call's), or None."""
    return _CALLER_LOOP.get()


@contextlib.contextmanager
def awaited_from(loop: Any) -> Iterator[None]:
    """Work started inside the block (on worker threads that copy the context) is awaited on ``loop``."""
    token = _CALLER_LOOP.set(loop)
    try:
        yield
    finally:
        _CALLER_LOOP.reset(token)


def caller_awaits(fn: Any) -> bool:
    """Whether an async caller awaits this thread's work and ``fn`` is a coroutine function it can await
    there (:func:`on_caller_loop`): an object's ``acall`` then serves instead of its sync call."""
    return caller_loop() is not None and inspect.iscoroutinefunction(fn)


def on_caller_loop(coro: Coroutine[Any, Any, Any]) -> Any:
    """``coro``'s result, awaited on the caller's event loop (see :func:`awaited_from`), else as
    :func:`run_async` runs it."""
    loop = caller_loop()
    if loop is None:
        return run_async(coro)
    return asyncio.run_coroutine_threadsafe(coro, loop).result()


def _forward(self: Any, *args: Any, **kwargs: Any) -> Any:
    return run_async(self.aforward(*args, **kwargs))


def _module_base(cls: type) -> type:
    for base in reversed(cls.__mro__):
        if "__call__" in vars(base) and "forward" in vars(base):
            return base
    return object


def _wrapper_class(base: type) -> type:
    with _wrappers_lock:
        found = _wrappers.get(base)
        if found is None:
            def __init__(self: Any, program: Any) -> None:
                self.program = program

            def forward(self: Any, *args: Any, **kwargs: Any) -> Any:
                return run_async(self.program.aforward(*args, **kwargs))

            namespace: dict[str, Any] = {"__init__": __init__, "forward": forward, "__module__": __name__,
                                         "__doc__": "A synchronous module around an async program (``program``)."}
            if base is object:  # not a module of any kind: the wrapper is at least callable
                namespace["__call__"] = forward
            found = _wrappers[base] = type("SyncWrapper", (base,), namespace)
        return found


def syncify(program: Any, in_place: bool = True) -> Any:
    """A synchronous version of ``program`` (which must define ``aforward``): the program itself with a
    ``forward`` added (``in_place=True``), or a wrapper module holding it (``in_place=False``)."""
    if not callable(getattr(program, "aforward", None)):
        raise TypeError(f"syncify: {type(program).__name__} has no aforward method to run synchronously")
    if in_place:
        program.forward = MethodType(_forward, program)
        return program
    return _wrapper_class(_module_base(type(program)))(program)


__all__ = ["syncify", "run_async", "caller_loop", "caller_awaits", "awaited_from", "on_caller_loop"]
