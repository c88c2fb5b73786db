"""CircuitBreaker: stop calling a failing dependency, then probe it with one trial request.

Fuse-style, as in Erlang's ``fuse``: it *melts* (opens) after ``max_failures`` failures within
``window`` seconds that are also at least ``failure_rate`` of the calls in that window (a busy client
does not melt on a few percent of errors its retries absorb), stays open for ``reset_after`` seconds, then lets exactly one trial through
(half-open). The trial's success closes it; its failure opens it again. Not thread-safe by design:
one actor owns it. The clock and the random source are injected so it can be tested without sleeping.
"""

from __future__ import annotations

import enum
import itertools
import random
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable

from ..errors import SpecError, SupervisionError


class BreakerState(str, enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class BreakerOpen(SupervisionError):
    """The breaker refused a call (``retry_in``: seconds until a trial may pass; ``injected``: on purpose)."""

    def __init__(self, name: str, state: BreakerState, retry_in: float, injected: bool = False) -> None:
        self.name, self.state, self.retry_in, self.injected = name, state, retry_in, injected
        why = "fault injection rejected the call" if injected else f"breaker is {state.value}"
        super().__init__(f"{name}: {why}; a trial may pass in {retry_in:.2f}s")

    def __reduce__(self):
        return (type(self), (self.name, self.state, self.retry_in, self.injected))


@dataclass(frozen=True)
class BreakerChange:
    """A state change, handed to ``on_change`` (an actor publishes it as an event)."""

    name: str
    old: BreakerState
    new: BreakerState
    reason: str
    at: float


@dataclass(frozen=True)
class Permit:
    """Leave to make one call; hand it back to ``record``. ``trial`` marks the half-open probe."""

    id: int
    trial: bool
    generation: int


@dataclass(frozen=True)
class BreakerSnapshot:
    name: str
    state: BreakerState
    recent_failures: int
    retry_in: float
    trips: int


class CircuitBreaker:
    """Closed → open → half-open → closed. ``acquire()`` before a call, ``record(permit, ok)`` after."""

    def __init__(self, max_failures: int = 5, window: float = 10.0, reset_after: float = 30.0, *,
                 failure_rate: float = 0.5, name: str = "breaker", on_change: Callable[[BreakerChange], None] | None = None,
                 fail_fraction: float = 0.0, clock: Callable[[], float] = time.monotonic,
                 rand: Callable[[], float] = random.random) -> None:
        if max_failures < 1 or window <= 0 or reset_after < 0 or not 0 < failure_rate <= 1:
            raise SpecError("CircuitBreaker", f"max_failures={max_failures}, window={window}, reset_after="
                            f"{reset_after}, failure_rate={failure_rate}",
                            "use max_failures >= 1, window > 0, reset_after >= 0, 0 < failure_rate <= 1")
        self.failure_rate = failure_rate
        self.name = name
        self.max_failures, self.window, self.reset_after = max_failures, window, reset_after
        self.on_change = on_change
        self.clock, self.rand = clock, rand
        self._state = BreakerState.CLOSED
        self._calls: deque[tuple[float, bool]] = deque()  # (time, failed) of the calls in the window
        self._failed = 0
        self._opened_at = 0.0
        self._trial_out = False
        self._generation = 0  # bumps on every state change: permits from an older state are ignored
        self._ids = itertools.count(1)
        self.trips = 0
        self.inject_faults(fail_fraction)

    # --- state ---------------------------------------------------------------------------------

    @property
    def state(self) -> BreakerState:
        if self._state is BreakerState.OPEN and self.clock() >= self._opened_at + self.reset_after:
            self._move(BreakerState.HALF_OPEN, "reset_after elapsed")
        return self._state

    def retry_in(self) -> float:
        if self.state is BreakerState.OPEN:
            return max(0.0, self._opened_at + self.reset_after - self.clock())
        return 0.0

    def snapshot(self) -> BreakerSnapshot:
        self._prune()
        return BreakerSnapshot(self.name, self.state, self._failed, self.retry_in(), self.trips)

    # --- calls ---------------------------------------------------------------------------------

    def acquire(self) -> Permit:
        """A permit for one call, or :class:`BreakerOpen`."""
        state = self.state
        if state is BreakerState.OPEN:
            raise BreakerOpen(self.name, state, self.retry_in())
        if state is BreakerState.HALF_OPEN:
            if self._trial_out:
                raise BreakerOpen(self.name, state, 0.0)
            self._trial_out = True
            return Permit(next(self._ids), True, self._generation)
        if self.fail_fraction and self.rand() < self.fail_fraction:
            raise BreakerOpen(self.name, state, 0.0, injected=True)
        return Permit(next(self._ids), False, self._generation)

    def record(self, permit: Permit, ok: bool) -> None:
        """The outcome of a permitted call. Outcomes of calls begun in an older state do not count."""
        if permit.generation != self._generation:
            return
        if permit.trial:
            self._trial_out = False
            if ok:
                self._clear()
                self._move(BreakerState.CLOSED, "trial succeeded")
            else:
                self._open("trial failed")
            return
        if self._state is not BreakerState.CLOSED:
            return
        self._calls.append((self.clock(), not ok))
        self._failed += not ok
        self._prune()
        if not ok and self._failed >= self.max_failures and self._failed >= self.failure_rate * len(self._calls):
            self._open(f"{self._failed} of {len(self._calls)} calls failed within {self.window:g}s")

    def cancel(self, permit: Permit) -> None:
        """The permitted call was never made: a trial permit is handed back."""
        if permit.trial and permit.generation == self._generation:
            self._trial_out = False

    def reset(self) -> None:
        """Close by hand (an operator fixed the dependency)."""
        self._clear()
        self._trial_out = False
        if self._state is not BreakerState.CLOSED:
            self._move(BreakerState.CLOSED, "manual reset")

    def inject_faults(self, fraction: float) -> None:
        """Reject ``fraction`` of calls while closed, on purpose (chaos testing of the callers)."""
        if not 0.0 <= fraction <= 1.0:
            raise SpecError("CircuitBreaker.fail_fraction", f"{fraction}", "use a fraction in [0, 1]")
        self.fail_fraction = fraction

    # --- internals -----------------------------------------------------------------------------

    def _prune(self) -> None:
        horizon = self.clock() - self.window
        while self._calls and self._calls[0][0] <= horizon:
            self._failed -= self._calls.popleft()[1]

    def _clear(self) -> None:
        self._calls.clear()
        self._failed = 0

    def _open(self, reason: str) -> None:
        self._opened_at = self.clock()
        self._clear()
        self.trips += 1
        self._move(BreakerState.OPEN, reason)

    def _move(self, new: BreakerState, reason: str) -> None:
        old, self._state = self._state, new
        self._generation += 1
        self._trial_out = False
        if self.on_change is not None and old is not new:
            self.on_change(BreakerChange(self.name, old, new, reason, time.time()))


__all__ = ["CircuitBreaker", "BreakerState", "BreakerOpen", "BreakerChange", "Permit", "BreakerSnapshot"]
