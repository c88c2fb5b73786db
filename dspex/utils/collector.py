"""The cyclic garbage collector's pace while examples run: its youngest generation collected every
``young_for(in_flight)`` allocations instead of CPython's 700.

CPython collects its youngest generation every 700 net container allocations, the middle one every 10 of
those, and the whole heap whenever the objects that survived both have grown by a quarter. An example in
flight keeps ~100 tracked objects alive for its request's latency (coroutine frames, futures, the HTTP
client's parser and headers, the prompt): ~1.2 million at 10,000 in flight. Each collection walks the live
objects of the generations it collects, so with thousands in flight almost every object is walked by a
young collection, again by a middle one, and the whole heap every second or so. Measured at 10,000 in
flight, 2 s latency: 13 whole-heap collections took 3.3 s of a run's 10 s of CPU; 100,000 examples spent
25 s of 127 in collections at 50,000 allocations. The cost of a collection is the live objects it walks, so
collecting less often costs less; what waits longer is only cyclic garbage (everything else is freed when
its last reference goes), and a young collection still comes after ``young`` net allocations, so the
garbage waiting is bounded: at most ~``PER_EXAMPLE`` containers an example in flight, of the order of what
the examples in flight hold anyway.

Scoped, since the collector is the whole process's: ``relaxed(in_flight)`` is entered by an evaluation
(and a worker process's loop) and left when it ends; overlapping scopes share the collector at the
largest pace any of them asks, and the thresholds the process had come back when the last one ends,
unless someone set others meanwhile (theirs stay). A process that already collects as rarely, or not at
all (``gc.disable()``), is left as it is.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from typing import Iterator

PER_EXAMPLE = 100  # allocations between young collections, per example in flight
FLOOR = 50_000  # the fewest (a few dozen in flight: whole-heap collections as rows pile up)
CEILING = 1_000_000  # the most (cyclic garbage waiting: at most this many containers)
MIDDLE = 100  # young collections between collections of the middle generation (CPython: 10)


def young_for(in_flight: int) -> int:
    """Allocations between young collections while ``in_flight`` examples run at once."""
    return min(CEILING, max(FLOOR, PER_EXAMPLE * in_flight))


class _Scopes:
    """The open ``relaxed()`` scopes' paces, and the thresholds to give back when the last one closes."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.paces: list[int] = []  # the young threshold each open scope asked for
        self.saved: tuple[int, ...] | None = None  # the thresholds before the first scope (None: left alone)
        self.ours: tuple[int, ...] | None = None  # the thresholds set last by a scope

    def apply(self) -> None:
        """The thresholds for the open scopes (lock held)."""
        if self.saved is None or gc.get_threshold() != self.ours:
            return  # left alone from the start, or someone set their own meanwhile
        if self.paces:
            self.ours = (max(self.paces), max(self.saved[1], MIDDLE), self.saved[2])
            gc.set_threshold(*self.ours)
        else:
            gc.set_threshold(*self.saved)
            self.saved = self.ours = None


_SCOPES = _Scopes()  # one collector per process, so one record of its scopes


@contextlib.contextmanager
def relaxed(in_flight: int) -> Iterator[None]:
    """Collect the youngest generation every ``young_for(in_flight)`` allocations while this runs (see the
    module)."""
    scopes, pace = _SCOPES, young_for(in_flight)
    with scopes.lock:
        if not scopes.paces:
            current = gc.get_threshold()
            if gc.isenabled() and 0 < current[0] < pace:
                scopes.saved = scopes.ours = current
            else:
                scopes.saved = scopes.ours = None
        scopes.paces.append(pace)
        scopes.apply()
    try:
        yield
    finally:
        with scopes.lock:
            scopes.paces.remove(pace)
            scopes.apply()


__all__ = ["relaxed", "young_for", "PER_EXAMPLE", "FLOOR", "CEILING", "MIDDLE"]
