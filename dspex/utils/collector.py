"""The cyclic garbage collector's pace while examples run: its youngest generation collected every
``YOUNG`` allocations instead of CPython's 700.

CPython collects its youngest generation every 700 net container allocations, and the whole heap whenever
the objects that survived two younger collections have grown by a quarter. An example in flight keeps a
hundred or so tracked objects alive for its request's latency (coroutine frames, futures, the HTTP
client's parser and headers, the prompt), so at thousands in flight most of them outlive the young
collections, and whole-heap collections come back every second or so, each walking every object of the
process. Measured at 10,000 in flight (2 s latency): 13 whole-heap collections took 3.3 s of the run's
10 s of CPU, a third; at 64 in flight a tenth of the CPU an example. Collected every ``YOUNG`` allocations,
the same garbage is found, later (the older generations follow from the young one, as ever): 0.3 s.

Scoped, since the collector is the whole process's: ``relaxed()`` is entered by an evaluation (and a
worker process's loop) and left when it ends; overlapping scopes share it, and the thresholds the process
had come back when the last one ends, unless someone set others meanwhile (theirs stay). A process that
already collects this rarely, or not at all (``gc.disable()``), is left as it is.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from typing import Iterator

YOUNG = 50_000  # allocations between collections of the youngest generation while an evaluation runs


class _Scopes:
    """How many ``relaxed()`` scopes are open, and the thresholds to give back when the last one closes."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.open = 0
        self.saved: tuple[int, ...] | None = None  # the thresholds before the first scope (None: left alone)
        self.ours: tuple[int, ...] | None = None  # the thresholds the first scope set


_SCOPES = _Scopes()  # one collector per process, so one count of its scopes


@contextlib.contextmanager
def relaxed() -> Iterator[None]:
    """Collect the youngest generation every ``YOUNG`` allocations while this runs (see the module)."""
    scopes = _SCOPES
    with scopes.lock:
        scopes.open += 1
        if scopes.open == 1:
            current = gc.get_threshold()
            if gc.isenabled() and 0 < current[0] < YOUNG:
                scopes.saved, scopes.ours = current, (YOUNG, *current[1:])
                gc.set_threshold(*scopes.ours)
            else:
                scopes.saved = scopes.ours = None
    try:
        yield
    finally:
        with scopes.lock:
            scopes.open -= 1
            if scopes.open == 0 and scopes.saved is not None:
                if gc.get_threshold() == scopes.ours:  # nobody set others meanwhile
                    gc.set_threshold(*scopes.saved)
                scopes.saved = scopes.ours = None


__all__ = ["relaxed", "YOUNG"]
