"""Requests waiting for an open circuit breaker, and which of them go when: a pure decision (no clock,
no actor; the client actor gathers the facts and executes the turn).

While the breaker is open nothing is sent, so a request that meets it waits in this line (oldest first)
instead of failing: up to ``Breaker.max_wait`` seconds from the first time it met the open breaker, then
it fails with ``CircuitOpen``. A half-open breaker lets as many go as it has trial calls left; a closed
one lets everybody go. A trial that failed retries after its backoff and joins the end of the line, so
the trials of an outage rotate over the waiting requests instead of using up one request's retries.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

from supervision.resilience import BreakerState


@dataclass(frozen=True)
class Turn:
    """What to do now: fail ``expired`` (waited ``max_wait``), try ``go`` for a lease, ask again in
    ``check_in`` seconds (None: only when the breaker changes state)."""

    expired: tuple = ()
    go: tuple = ()
    check_in: float | None = None


class BreakerLine:
    """The line: (request, deadline) pairs, oldest first."""

    def __init__(self) -> None:
        self._line: deque[tuple[Any, float]] = deque()

    def join(self, request: Any, deadline: float) -> None:
        self._line.append((request, deadline))

    def __len__(self) -> int:
        return len(self._line)

    def __iter__(self):
        return (request for request, _ in self._line)

    def drop(self, which: Callable[[Any], bool]) -> None:
        """Take out the requests ``which`` picks (their holder is gone)."""
        self._line = deque(pair for pair in self._line if not which(pair[0]))

    def turn(self, now: float, state: BreakerState, trials_left: int, retry_in: float) -> Turn:
        """Take out the requests past their deadline and those the breaker lets through now."""
        expired = tuple(r for r, deadline in self._line if deadline <= now)
        waiting = deque(pair for pair in self._line if pair[1] > now)
        go_n = len(waiting) if state is BreakerState.CLOSED else trials_left if state is BreakerState.HALF_OPEN else 0
        go = tuple(waiting.popleft()[0] for _ in range(min(go_n, len(waiting))))
        self._line = waiting
        if not waiting:
            return Turn(expired, go, None)
        check_in = min(deadline for _, deadline in waiting) - now
        if state is BreakerState.OPEN:
            check_in = min(check_in, retry_in)
        return Turn(expired, go, max(check_in, 0.0))


__all__ = ["BreakerLine", "Turn"]
