"""The run an LM request belongs to, scoped by a ``with`` (a ``contextvars`` value, right across
threads that copy their context and asyncio tasks): the ledger totals each run's requests, so an
evaluation or a compile can report exactly what it really sent, retried and took from the cache."""

from __future__ import annotations

import contextvars
from contextlib import contextmanager
from typing import Iterator

_RUN: contextvars.ContextVar[str | None] = contextvars.ContextVar("dspex_run", default=None)


def current_run() -> str | None:
    """The innermost run scope's id, or None."""
    return _RUN.get()


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


__all__ = ["current_run", "run_scope"]
