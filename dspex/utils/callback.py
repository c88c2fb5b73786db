"""Callbacks (DSPy's ``dspy.utils.callback``): hooks around module, LM, adapter, tool and evaluation calls.

A callback subclasses :class:`BaseCallback` and overrides the hooks it wants. It is active when it is in
the ``callbacks`` setting (``dspex.configure(callbacks=[...])`` or ``with dspex.context(callbacks=[...])``)
or in the ``callbacks`` list of the instance being called (``Predict(..., callbacks=[...])``). Each call
gets a fresh ``call_id``; while it runs, :data:`ACTIVE_CALL_ID` holds it, so a hook can find its parent
call (``ACTIVE_CALL_ID.get()`` in a start hook is the caller's id). Start hooks get the call's arguments
by name; end hooks get the outputs or the exception (also ``KeyboardInterrupt`` and an async cancellation),
which then propagates unchanged.

Where calls run: hooks run in the thread or task of the call. The context (the settings, the active call
id) goes with work dspex hands to its own threads (``Parallel``, ``n=``, ``batch``, Evaluate's thread
engine). Evaluate's worker processes are other interpreters: a callback object goes there with the program
only if it pickles (it is part of the instance's ``callbacks``); the global setting does not travel, so
hooks set with ``configure`` fire in the parent process only.

A hook that raises is logged (with its callback and hook name) and the call goes on: an observer never
changes what the program computes.

Which hooks a method's call fires is the instance's ``_callback_kind`` (``"module"``, ``"lm"``,
``"adapter"``, ``"tool"``, ``"evaluate"``, ``"compile"``; each class above this layer declares its own); for
adapters the method's name picks ``format`` or ``parse``. Steps that are not method calls (an evaluation's
row, a compile's scoring step) are reported with :func:`observed`.

Besides the setting and the instance's own list, a tracing integration may install callbacks for the whole
process (:func:`add_instrument`; ``dspex.telemetry.instrument`` does): they observe every call, first.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import threading
import uuid
from typing import Any, Callable, Iterator

import structlog

from .callback_context import ACTIVE_CALL_ID, read_setting

log = structlog.get_logger("dspex.callbacks")


class BaseCallback:
    """Override the hooks you need; each does nothing by default."""

    def on_module_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        """A module's ``__call__`` / ``acall`` (or a method decorated with :func:`with_callbacks`) starts."""

    def on_module_end(self, call_id: str, outputs: Any | None, exception: BaseException | None = None) -> None:
        """It ended with ``outputs``, or raised ``exception``."""

    def on_lm_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        """An LM request starts (``inputs``: its messages and options)."""

    def on_lm_end(self, call_id: str, outputs: Any | None, exception: BaseException | None = None) -> None:
        """It ended (``outputs``: the completion)."""

    def on_adapter_format_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        """An adapter starts turning (signature, demos, inputs) into messages."""

    def on_adapter_format_end(self, call_id: str, outputs: Any | None, exception: BaseException | None = None) -> None:
        """It ended (``outputs``: the messages)."""

    def on_adapter_parse_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        """An adapter starts reading a completion."""

    def on_adapter_parse_end(self, call_id: str, outputs: Any | None, exception: BaseException | None = None) -> None:
        """It ended (``outputs``: the field values)."""

    def on_tool_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        """A tool is called."""

    def on_tool_end(self, call_id: str, outputs: Any | None, exception: BaseException | None = None) -> None:
        """It returned or raised."""

    def on_evaluate_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        """An evaluation starts."""

    def on_evaluate_end(self, call_id: str, outputs: Any | None, exception: BaseException | None = None) -> None:
        """It ended (``outputs``: the EvaluationResult)."""

    def on_evaluate_row_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        """One example of an evaluation starts (dspex; ``inputs``: ``index``, ``example``, ``attempt``)."""

    def on_evaluate_row_end(self, call_id: str, outputs: Any | None, exception: BaseException | None = None) -> None:
        """It ended (``outputs``: its row: score, error, prediction)."""

    def on_compile_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        """An optimizer's ``compile`` starts (dspex; ``instance``: the optimizer)."""

    def on_compile_end(self, call_id: str, outputs: Any | None, exception: BaseException | None = None) -> None:
        """It ended (``outputs``: the compiled program)."""

    def on_compile_step_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        """A compile scores a program (dspex; ``inputs``: ``phase``, ``name``, ``examples``)."""

    def on_compile_step_end(self, call_id: str, outputs: Any | None, exception: BaseException | None = None) -> None:
        """It ended (``outputs``: the EvaluationResult)."""


# callbacks installed for the whole process by a tracing integration (add_instrument): every call fires them
_INSTRUMENTS: tuple[BaseCallback, ...] = ()
_INSTRUMENTS_LOCK = threading.Lock()


def add_instrument(callback: BaseCallback) -> None:
    """Fire ``callback``'s hooks on every call in this process, before the setting's and the instance's
    own (``dspex.telemetry.instrument`` installs its tracer this way). Adding one twice adds it once."""
    global _INSTRUMENTS
    with _INSTRUMENTS_LOCK:
        if callback not in _INSTRUMENTS:
            _INSTRUMENTS = (*_INSTRUMENTS, callback)


def remove_instrument(callback: BaseCallback) -> None:
    """Undo :func:`add_instrument` (no error when it is not installed)."""
    global _INSTRUMENTS
    with _INSTRUMENTS_LOCK:
        _INSTRUMENTS = tuple(c for c in _INSTRUMENTS if c is not callback)


def instruments() -> tuple[BaseCallback, ...]:
    """The callbacks installed for the whole process."""
    return _INSTRUMENTS


def active_callbacks(instance: Any) -> list[BaseCallback]:
    """The callbacks for a call on ``instance``: the process's instruments, the setting in force, then the
    instance's own."""
    return [*_INSTRUMENTS, *(read_setting("callbacks", None) or []), *(getattr(instance, "callbacks", None) or [])]


def _hook_names(instance: Any, fn: Callable) -> tuple[str, str]:
    kind = getattr(instance, "_callback_kind", "module")
    if kind == "adapter":
        kind = "adapter_parse" if fn.__name__ == "parse" else "adapter_format"
    return f"on_{kind}_start", f"on_{kind}_end"


@functools.lru_cache(maxsize=1024)
def _signature(fn: Callable) -> inspect.Signature:
    """``fn``'s signature, worked out once (it is most of what a hook's inputs cost)."""
    return inspect.signature(fn)


def _inputs(fn: Callable, instance: Any, args: tuple, kwargs: dict) -> dict[str, Any]:
    """The call's arguments by parameter name, ``self`` left out (``*args`` / ``**kwargs`` under their own
    names, as DSPy reports them)."""
    try:
        bound = _signature(fn).bind(instance, *args, **kwargs)
    except TypeError:  # the call itself will raise the same TypeError
        return {"args": args, "kwargs": kwargs}
    bound.apply_defaults()
    return dict(list(bound.arguments.items())[1:])


def _fire(callbacks: list, hook: str, *args: Any) -> None:
    for callback in callbacks:
        method = getattr(callback, hook, None)
        if method is None:
            continue
        try:
            method(*args)
        except Exception as exc:  # noqa: BLE001 - an observer's bug is reported, never changes the call's result
            log.warning("callback_failed", callback=type(callback).__name__, hook=hook, error=repr(exc)[:300])


# the callback kinds whose calls are parts of one call already reported (see reported_as_one)
_PARTS_OF: contextvars.ContextVar[frozenset[str]] = contextvars.ContextVar("dspex_callback_parts_of",
                                                                          default=frozenset())


def _start(instance: Any, fn: Callable, args: tuple, kwargs: dict) -> tuple | None:
    """Fire the start hooks of a call; what its end needs (None: no callback is active, or the call is a
    part of one reported already)."""
    if getattr(instance, "_callback_kind", "module") in _PARTS_OF.get():
        return None
    callbacks = active_callbacks(instance)
    if not callbacks:
        return None
    start, end = _hook_names(instance, fn)
    return _begin(callbacks, start, end, instance, _inputs(fn, instance, args, kwargs))


def _begin(callbacks: list, start: str, end: str, instance: Any, inputs: dict[str, Any],
           parents: bool = True) -> tuple:
    """Fire the start hooks; with ``parents``, the call is the parent (``ACTIVE_CALL_ID``) of the calls
    made inside it."""
    call_id = uuid.uuid4().hex
    _fire(callbacks, start, call_id, instance, inputs)
    return callbacks, end, call_id, ACTIVE_CALL_ID.set(call_id) if parents else None


def _end(begun: tuple, outputs: Any, error: BaseException | None) -> None:
    callbacks, end, call_id, token = begun
    if token is not None:
        ACTIVE_CALL_ID.reset(token)
    _fire(callbacks, end, call_id, outputs, error)


class Report:
    """What :func:`reported_as_one` reports at its end: set ``outputs`` inside the block."""

    outputs: Any = None


@contextlib.contextmanager
def _ending(begun: tuple | None) -> Iterator[Report]:
    """A :class:`Report` for the block; at its end the end hooks of ``begun`` (None: nothing begun) get
    ``report.outputs`` or the block's exception, which is re-raised unchanged."""
    report = Report()
    if begun is None:
        yield report
        return
    error: BaseException | None = None
    try:
        yield report
    except BaseException as exc:  # reported, then re-raised unchanged
        error = exc
        raise
    finally:
        _end(begun, None if error is not None else report.outputs, error)


@contextlib.contextmanager
def reported_as_one(instance: Any, fn: Callable, *args: Any, **kwargs: Any) -> Iterator[Report]:
    """One start / end pair, as for a call ``fn(instance, *args, **kwargs)``, around a block that makes
    several calls of that kind, which are not reported themselves (in the block's threads too, when they
    copy its context). Predict's ``n=3`` is three LM requests here and one LM call with three completions
    in DSPy: its callbacks see that one call."""
    with _ending(_start(instance, fn, args, kwargs)) as report:
        token = _PARTS_OF.set(_PARTS_OF.get() | {getattr(instance, "_callback_kind", "module")})
        try:
            yield report
        finally:
            _PARTS_OF.reset(token)


@contextlib.contextmanager
def observed(instance: Any, kind: str, **inputs: Any) -> Iterator[Report]:
    """``on_{kind}_start`` / ``on_{kind}_end`` around a block that is one step but no method call (an
    evaluation's row, a compile's scoring step): ``inputs`` go to the start hooks, ``report.outputs`` (set
    inside the block) or the exception to the end hooks. Costs one list read when no callback is active.
    Such a step is not a call in DSPy's sense: the calls inside it keep the enclosing call as their parent
    (``ACTIVE_CALL_ID``), as under DSPy (a Predict in an evaluation's row is the Evaluate call's child)."""
    callbacks = active_callbacks(instance)
    begun = (_begin(callbacks, f"on_{kind}_start", f"on_{kind}_end", instance, inputs, parents=False)
             if callbacks else None)
    with _ending(begun) as report:
        yield report


def with_callbacks(fn: Callable) -> Callable:
    """Fire the active callbacks' start and end hooks around each call of the method ``fn`` (sync or async).
    The wrapper refers only to module-level functions, so it pickles (cloudpickle) with its method."""

    if inspect.iscoroutinefunction(fn):
        @functools.wraps(fn)
        async def async_wrapper(instance: Any, *args: Any, **kwargs: Any) -> Any:
            begun = _start(instance, fn, args, kwargs)
            if begun is None:
                return await fn(instance, *args, **kwargs)
            outputs, error = None, None
            try:
                outputs = await fn(instance, *args, **kwargs)
                return outputs
            except BaseException as exc:  # reported, then re-raised unchanged (cancellation included)
                error = exc
                raise
            finally:
                _end(begun, outputs, error)

        async_wrapper.fires_callbacks = True  # type: ignore[attr-defined]
        return async_wrapper

    @functools.wraps(fn)
    def wrapper(instance: Any, *args: Any, **kwargs: Any) -> Any:
        begun = _start(instance, fn, args, kwargs)
        if begun is None:
            return fn(instance, *args, **kwargs)
        outputs, error = None, None
        try:
            outputs = fn(instance, *args, **kwargs)
            return outputs
        except BaseException as exc:  # reported, then re-raised unchanged (Ctrl-C included)
            error = exc
            raise
        finally:
            _end(begun, outputs, error)

    wrapper.fires_callbacks = True  # type: ignore[attr-defined]
    return wrapper


__all__ = ["BaseCallback", "with_callbacks", "active_callbacks", "reported_as_one", "observed", "add_instrument",
           "remove_instrument", "instruments", "ACTIVE_CALL_ID"]
