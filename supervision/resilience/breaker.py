"""CircuitBreaker: stop calling a dependency that is down, then probe it with a few trial calls.

A breaker is for outages, not for an error rate that retries absorb. It *opens* when the recent calls —
those of the last ``window`` seconds, at most the last ``window_calls`` of them — number at least
``min_calls``, at least ``max_failures`` of them failed, and the failures are at least ``failure_rate``
of them (Hystrix: 50% of at least 20 calls in 10 s; resilience4j: 50% of its last 100 calls). So scattered
errors never open it, and an outage opens it within a few calls' latency even after a long healthy run
(the count cap keeps old successes from diluting it). A failure that comes back fast is not more telling
for coming back first: the calls still out that were sent before the newest failed one count with the
recent calls, as not failed so far (at 10,000 in flight and 2 s latency, the first hundred answers are all
the provider's quick refusals; they are not half the calls). So a crowd of slow calls holds the breaker
back for at most their latency, or their timeout. And a call that timed out does not count once a call
sent after it has succeeded: the provider has answered since (a hung connection is that request's bad
luck; in a hang outage nothing sent after it succeeds); while calls sent after it are still out, its verdict
waits ``timeout_grace`` seconds for one of them to succeed (a process too busy to read its answers times out
a burst of calls whose answers are on their way: the breaker is for the provider's outages, not the
caller's). It stays open for ``reset_after`` seconds, then goes
half-open: ``trial_calls`` trial calls may pass; it closes as soon as a majority of them succeeded and opens
again as soon as a majority can no longer succeed. Not thread-safe by design: one actor owns it. The clock
and the random source are injected so it can be tested without sleeping.
"""

from __future__ import annotations

import bisect
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
    """Leave to make one call; hand it back to ``record``. ``trial`` marks a half-open probe."""

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
    recent_calls: int = 0


class CircuitBreaker:
    """Closed → open → half-open → closed. ``acquire()`` before a call, ``record(permit, ok)`` after."""

    def __init__(self, max_failures: int = 5, window: float = 10.0, reset_after: float = 5.0, *,
                 failure_rate: float = 0.5, min_calls: int = 20, window_calls: int = 100, trial_calls: int = 3,
                 timeout_grace: float = 2.0, name: str = "breaker", on_change: Callable[[BreakerChange], None] | None = None,
                 fail_fraction: float = 0.0, clock: Callable[[], float] = time.monotonic,
                 rand: Callable[[], float] = random.random) -> None:
        if (max_failures < 1 or window <= 0 or reset_after < 0 or not 0 < failure_rate <= 1 or min_calls < 1
                or window_calls < min_calls or trial_calls < 1 or not timeout_grace >= 0):
            raise SpecError("CircuitBreaker", f"max_failures={max_failures}, window={window}, reset_after="
                            f"{reset_after}, failure_rate={failure_rate}, min_calls={min_calls}, window_calls="
                            f"{window_calls}, trial_calls={trial_calls}, timeout_grace={timeout_grace}",
                            "use max_failures >= 1, window > 0, reset_after >= 0, 0 < failure_rate <= 1, "
                            "min_calls >= 1, window_calls >= min_calls, trial_calls >= 1, timeout_grace >= 0")
        self.name = name
        self.max_failures, self.window, self.reset_after = max_failures, window, reset_after
        self.failure_rate, self.min_calls, self.window_calls = failure_rate, min_calls, window_calls
        self.trial_calls, self.timeout_grace = trial_calls, timeout_grace
        self.on_change = on_change
        self.clock, self.rand = clock, rand
        self._state = BreakerState.CLOSED
        self._calls: deque[tuple[float, bool]] = deque()  # (time, failed) of the recent calls
        self._failed = 0
        self._newest_failed = 0  # the permit id of the newest failed call in the window (ids grow with time)
        self._newest_ok = 0  # the permit id of the newest-sent call of this state that succeeded
        self._out: list[int] = []  # ids of this state's permits not yet recorded or cancelled, ascending
        self._pending: deque[tuple[float, int]] = deque()  # (time, permit id) of timeouts awaiting their verdict
        self._opened_at = 0.0
        self._trials = {"out": 0, "ok": 0, "failed": 0}  # trial permits of this half-open period
        self._generation = 0  # bumps on every state change: permits from an older state are ignored
        self._ids = itertools.count(1)
        self.trips = 0
        self.inject_faults(fail_fraction)

    # --- state ---------------------------------------------------------------------------------

    @property
    def state(self) -> BreakerState:
        if self._pending:
            self._judge_timeouts()
        if self._state is BreakerState.OPEN and self.clock() >= self._opened_at + self.reset_after:
            self._move(BreakerState.HALF_OPEN, "reset_after elapsed")
        return self._state

    def retry_in(self) -> float:
        if self.state is BreakerState.OPEN:
            return max(0.0, self._opened_at + self.reset_after - self.clock())
        return 0.0

    def trials_left(self) -> int:
        """Trial permits still to hand out in this half-open period (0 in any other state)."""
        if self.state is not BreakerState.HALF_OPEN:
            return 0
        t = self._trials
        return max(0, self.trial_calls - t["out"] - t["ok"] - t["failed"])

    def pressure(self) -> float:
        """The recent failure share over ``failure_rate`` (1: at the share that opens it; 1 while not closed):
        how unwell the dependency looks, for a retry's backoff."""
        if self.state is not BreakerState.CLOSED:
            return 1.0
        self._prune()
        return self._failed / self._counted() / self.failure_rate if self._calls else 0.0

    def verdict_in(self) -> float | None:
        """Seconds until the oldest timeout awaiting its verdict is judged (None: none awaits): its owner
        looks at ``state`` then, so a hang outage opens it ``timeout_grace`` after its first timeouts even
        if nothing else happens."""
        if self._pending:
            self._judge_timeouts()
        return self._pending[0][0] + self.timeout_grace - self.clock() if self._pending else None

    def snapshot(self) -> BreakerSnapshot:
        self._prune()
        return BreakerSnapshot(self.name, self.state, self._failed, self.retry_in(), self.trips, len(self._calls))

    # --- calls ---------------------------------------------------------------------------------

    def acquire(self) -> Permit:
        """A permit for one call, or :class:`BreakerOpen`."""
        state = self.state
        if state is BreakerState.OPEN:
            raise BreakerOpen(self.name, state, self.retry_in())
        if state is BreakerState.HALF_OPEN:
            if not self.trials_left():
                raise BreakerOpen(self.name, state, 0.0)
            self._trials["out"] += 1
            return Permit(next(self._ids), True, self._generation)
        if self.fail_fraction and self.rand() < self.fail_fraction:
            raise BreakerOpen(self.name, state, 0.0, injected=True)
        permit = Permit(next(self._ids), False, self._generation)
        self._out.append(permit.id)
        return permit

    def record(self, permit: Permit, ok: bool, timed_out: bool = False) -> None:
        """The outcome of a permitted call (``timed_out``: it failed by getting no answer in time). Outcomes
        of calls begun in an older state do not count, nor a timeout of a call older than one that succeeded."""
        if permit.generation != self._generation:
            return
        if permit.trial:
            self._record_trial(ok)
            return
        if self._state is not BreakerState.CLOSED:
            return
        self._settled(permit)
        if ok:
            self._newest_ok = max(self._newest_ok, permit.id)
        elif timed_out and permit.id < self._newest_ok:
            return  # the provider answered a later call since: this one hung, the provider is not down
        elif timed_out and self.timeout_grace > 0 and self._out and self._out[-1] > permit.id:
            self._pending.append((self.clock(), permit.id))  # calls sent after it are out: wait for them
            self._judge_timeouts()
            return
        self._count(permit.id, failed=not ok)
        if self._pending:
            self._judge_timeouts()

    def cancel(self, permit: Permit) -> None:
        """The permitted call was never made, or its outcome says nothing about the dependency's health:
        it does not count, and a trial permit is handed back."""
        if permit.generation != self._generation:
            return
        if permit.trial:
            self._trials["out"] -= 1
        else:
            self._settled(permit)

    def reset(self) -> None:
        """Close by hand (an operator fixed the dependency)."""
        self._clear()
        if self._state is not BreakerState.CLOSED:
            self._move(BreakerState.CLOSED, "manual reset")

    def inject_faults(self, fraction: float) -> None:
        """Reject ``fraction`` of calls while closed, on purpose (chaos testing of the callers)."""
        if not 0.0 <= fraction <= 1.0:
            raise SpecError("CircuitBreaker.fail_fraction", f"{fraction}", "use a fraction in [0, 1]")
        self.fail_fraction = fraction

    # --- internals -----------------------------------------------------------------------------

    def _record_trial(self, ok: bool) -> None:
        t = self._trials
        t["out"] -= 1
        t["ok" if ok else "failed"] += 1
        needed = self.trial_calls // 2 + 1  # a majority of the trials
        if t["ok"] >= needed:
            self._clear()
            self._move(BreakerState.CLOSED, f"{t['ok']} of {self.trial_calls} trial calls succeeded")
        elif t["failed"] > self.trial_calls - needed:
            self._open(f"{t['failed']} of {self.trial_calls} trial calls failed")

    def _count(self, permit_id: int, failed: bool) -> None:
        """A call's outcome joins the recent calls; opens the breaker when the failures are the share."""
        self._calls.append((self.clock(), failed))
        if failed:
            self._failed += 1
            self._newest_failed = max(self._newest_failed, permit_id)
        self._prune()
        calls = len(self._calls)
        if failed and calls >= self.min_calls and self._failed >= self.max_failures:
            counted = self._counted()
            if self._failed >= self.failure_rate * counted:
                older = counted - calls
                self._open(f"{self._failed} of the last {calls} calls failed"
                           + (f" ({older} sent before them still out)" if older else ""))

    def _judge_timeouts(self) -> None:
        """Timeouts whose grace is over: one whose later-sent call has succeeded meanwhile is dropped (its
        answer was on its way), the others count as failures now."""
        horizon = self.clock() - self.timeout_grace
        while self._pending and self._pending[0][0] <= horizon and self._state is BreakerState.CLOSED:
            _, permit_id = self._pending.popleft()
            if permit_id > self._newest_ok:
                self._count(permit_id, failed=True)

    def _settled(self, permit: Permit) -> None:
        """The permit is no longer out."""
        at = bisect.bisect_left(self._out, permit.id)
        if at < len(self._out) and self._out[at] == permit.id:
            del self._out[at]

    def _counted(self) -> int:
        """The calls a failure share is taken of: the recent ones, and those out that were sent before the
        newest failed one (not failed so far; a quick failure says nothing about the slow calls before it)."""
        older = bisect.bisect_left(self._out, self._newest_failed) if self._failed else 0
        return len(self._calls) + older

    def _prune(self) -> None:
        horizon = self.clock() - self.window
        while self._calls and (self._calls[0][0] <= horizon or len(self._calls) > self.window_calls):
            self._failed -= self._calls.popleft()[1]

    def _clear(self) -> None:
        self._calls.clear()
        self._pending.clear()
        self._failed = 0

    def _open(self, reason: str) -> None:
        self._opened_at = self.clock()
        self._clear()
        self.trips += 1
        self._move(BreakerState.OPEN, reason)

    def _move(self, new: BreakerState, reason: str) -> None:
        old, self._state = self._state, new
        self._generation += 1
        self._out.clear()  # permits of the old state: their outcomes no longer count
        self._newest_ok = 0
        self._trials = {"out": 0, "ok": 0, "failed": 0}
        if self.on_change is not None and old is not new:
            self.on_change(BreakerChange(self.name, old, new, reason, time.time()))


__all__ = ["CircuitBreaker", "BreakerState", "BreakerOpen", "BreakerChange", "Permit", "BreakerSnapshot"]
