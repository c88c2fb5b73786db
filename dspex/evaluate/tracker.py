"""The bookkeeping behind exactly-once evaluation, as a pure value (no actors, no clocks of its own).

Every example index is pending, in flight (with the worker and the time it was handed out), or done.
A result for an index that is already done is dropped; a worker's death puts its in-flight indices
back at the front of the queue; an example in flight longer than ``timeout`` is finished as failed
(or re-queued, with ``retry_timeouts``) so stragglers never stall the run.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Iterable


@dataclass
class Tracker:
    total: int
    timeout: float | None = None
    retry_timeouts: bool = False
    pending: deque = field(default_factory=deque)
    in_flight: dict = field(default_factory=dict)  # index -> (worker, started); attempts are in `attempts`
    done: set = field(default_factory=set)
    attempts: dict = field(default_factory=dict)
    duplicates: int = 0
    _last_take: float = float("-inf")
    _in_time_order: bool = True

    def __post_init__(self) -> None:
        if not self.pending and not self.done:
            self.pending.extend(range(self.total))

    def skip(self, indices: Iterable[int]) -> None:
        """Indices already finished (resumed from a journal)."""
        for i in indices:
            self.done.add(i)
        self.pending = deque(i for i in self.pending if i not in self.done)

    def take(self, worker: str, n: int, now: float) -> list[int]:
        batch = []
        while self.pending and len(batch) < n:
            i = self.pending.popleft()
            if i in self.done or i in self.in_flight:
                continue
            self.attempts[i] = self.attempts.get(i, 0) + 1
            self.in_flight[i] = (worker, now)
            batch.append(i)
        if batch:
            if now < self._last_take:
                self._in_time_order = False  # an injected clock that went back: overdue scans them all
            self._last_take = now
        return batch

    def finish(self, index: int) -> bool:
        """Record a result; False (drop it) if the example is already done."""
        if index in self.done:
            self.duplicates += 1
            return False
        self.in_flight.pop(index, None)
        self.done.add(index)
        return True

    def worker_lost(self, worker: str) -> list[int]:
        """Put a dead worker's examples back in front of the queue."""
        lost = [i for i, (w, _) in self.in_flight.items() if w == worker]
        for i in lost:
            del self.in_flight[i]
        self.pending.extendleft(reversed(lost))
        return lost

    def overdue(self, now: float) -> tuple[list[int], list[int]]:
        """(indices to fail, indices re-queued) among those in flight longer than ``timeout``."""
        if self.timeout is None:
            return [], []
        late = []
        for i, (_, started) in self.in_flight.items():  # in the order handed out: oldest first while the clock
            if now - started <= self.timeout:           # only went forward, so a poll stops at the first on time
                if self._in_time_order:
                    break
                continue
            late.append(i)
        if self.retry_timeouts:
            retry = [i for i in late if self.attempts.get(i, 1) < 2]
            for i in retry:
                del self.in_flight[i]
            self.pending.extendleft(reversed(retry))
            late = [i for i in late if i not in retry]
            return late, retry
        return late, []

    @property
    def finished(self) -> bool:
        return len(self.done) >= self.total

    def counts(self) -> dict:
        return {"done": len(self.done), "in_flight": len(self.in_flight), "pending": len(self.pending),
                "duplicates": self.duplicates}


__all__ = ["Tracker"]
