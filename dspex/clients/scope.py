"""The run an LM request belongs to, scoped by a ``with`` (a ``contextvars`` value, right across
threads that copy their context and asyncio tasks): the ledger totals each run's requests, so an
evaluation or a compile can report exactly what it really sent, retried and took from the cache.
A run started inside another is named inside it (``outer:inner``, see ``within``): a compile's
evaluations and proposals are runs inside the compile's, and its budget covers them."""

from __future__ import annotations

import contextvars
from contextlib import contextmanager
from typing import Callable, Iterator, Optional

_RUN: contextvars.ContextVar[str | None] = contextvars.ContextVar("dspex_run", default=None)
# where streamed text goes: sink(piece) as it arrives, sink(None) when an attempt failed after some text
# (its pieces are void: a retry streams again from the start)
StreamSink = Callable[[Optional[str]], None]
_STREAM: contextvars.ContextVar[StreamSink | None] = contextvars.ContextVar("dspex_stream", default=None)


RUN_SEP = ":"  # a run started inside another is named ``parent:child`` (a compile's evaluations, its proposals)


def current_run() -> str | None:
    """The innermost run scope's id, or None."""
    return _RUN.get()


def within(run: str | None, outer: str) -> bool:
    """``run`` is ``outer`` or a run started inside it (a budget opened for ``outer`` covers it)."""
    return run is not None and (run == outer or run.startswith(outer + RUN_SEP))


@contextmanager
def run_scope(run: str | None) -> Iterator[str | None]:
    """Requests made inside the block are booked to ``run`` (None: leave the current scope as is)."""
    if run is None:
        yield _RUN.get()
        return
    token = _RUN.set(run)
    try:
        yield run
    finally:
        _RUN.reset(token)


def current_stream() -> StreamSink | None:
    """The innermost streaming scope's sink, or None (answers come whole)."""
    return _STREAM.get()


@contextmanager
def streaming(sink: StreamSink | None) -> Iterator[StreamSink | None]:
    """LM requests made inside the block stream their text to ``sink`` (None: they do not)."""
    token = _STREAM.set(sink)
    try:
        yield sink
    finally:
        _STREAM.reset(token)


__all__ = ["RUN_SEP", "within", "current_run", "run_scope", "current_stream", "streaming", "StreamSink"]
