"""Leases held ahead of need: a process's share of a client's limits, so its requests do not each cross to
the client actor (on a cluster, the leader) for admission.

A worker on another host asks the client actor for its admissions together (``AdmitBatch``) and, in the
same message, for as many more as it will need in the next ``ahead`` seconds (measured: its admissions of
the last second). The actor grants those extras by the one admission core, only if each may go that instant
(budget, rate slot, place in flight, breaker), so the actor stays the single owner of every limit: a lease
held ahead is a place in flight and a rate slot taken, the sum of what all processes hold never exceeds
``max_in_flight``. A request takes a lease held ahead when it fits (same run and retries, no larger a
prompt or reply than the lease was asked for); one that does not asks as before.

A lease held ahead that is not used within ``held_for`` seconds goes back to the actor unused
(``GiveBack``: nothing booked), and so does every lease held when an attempt of this process fails (a 429's
pause, a breaker about to open: the actor decides again), and every lease held when the actor recalls them:
while it holds leases, a process keeps a long poll at the actor (``messages.Recall``) that is answered the
moment the breaker opens or a 429 pauses every request. A breaker decision therefore reaches every process
at once, whatever ``held_for`` is. A process that is lost with leases held has them taken back by the actor's
sweep and booked at their maximum, unconfirmed, like any lease whose holder vanished (``leases.py``): the
ledger may count more than the provider billed, never less. What is decided here is pure but for the clock.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, replace
from typing import Callable, Sequence

from .messages import Admit, Lease

RATE_WINDOW = 1.0  # seconds of admissions the need ahead is measured over
# a lease held ahead is asked for this much larger than the largest request of the last second, so the next
# requests fit it when prompts grow a little (numbered questions, a growing history): its reservation is a
# maximum, each request is booked at what it used
HEADROOM = 1.25


@dataclass(frozen=True)
class HeldAhead:
    lease: Lease
    granted_for: Admit  # the most a request it serves may need
    until: float  # monotonic time after which it goes back unused


def asker(admit: Admit) -> tuple:
    """Whose admission it is: its run, retries and holder (a lease held ahead serves only the same)."""
    return admit.run, admit.retries, admit.holder


def fits(held: Admit, wanted: Admit) -> bool:
    """A lease asked for ``held`` may serve the request ``wanted``: same run, retries and holder, and no larger."""
    return (asker(held) == asker(wanted) and held.est_tokens >= wanted.est_tokens
            and held.max_prompt >= wanted.max_prompt and held.max_completion >= wanted.max_completion)


class Ahead:
    """One channel's leases held ahead (not thread-safe: its channel holds its own lock around every call).

    ``ahead``: seconds of this process's admissions asked for ahead; ``held_for``: seconds a lease held
    ahead waits for a request before it goes back; ``most``: leases asked for in one message at most."""

    def __init__(self, ahead: float, held_for: float, most: int, clock: Callable[[], float] = time.monotonic) -> None:
        if held_for <= ahead:
            raise ValueError(f"held_for={held_for} must exceed ahead={ahead}: leases would go back before use")
        self.ahead, self.held_for, self.most, self.clock = ahead, held_for, most, clock
        self.held: deque[HeldAhead] = deque()
        self.asked: deque[tuple[float, Admit]] = deque()  # this process's admissions in the last RATE_WINDOW

    def take(self, admit: Admit, note: bool = True) -> Lease | None:
        """A lease held ahead for ``admit``, or None: it asks the actor. ``note``: count it in the need
        (once a request: not again when it looks a second time)."""
        now = self.clock()
        if note:
            self.asked.append((now, admit))
        while self.asked and self.asked[0][0] < now - RATE_WINDOW:
            self.asked.popleft()
        for i, held in enumerate(self.held):
            if held.until > now and fits(held.granted_for, admit):
                del self.held[i]
                return held.lease
        return None

    def extras(self, asking: Sequence[Admit]) -> list[Admit]:
        """What to ask for ahead alongside ``asking`` (the admissions about to be asked for): the need of the
        next ``ahead`` seconds of the same run, retries and holder as the first of ``asking``, less what is
        held for them, each ``HEADROOM`` times as large as the largest of their requests of the last second."""
        if not asking or self.ahead <= 0:
            return []
        first = asking[0]
        alike = [a for _, a in self.asked if asker(a) == asker(first)]
        # the need of the same run: leases held for another (the run before, still unexpired) serve none of it
        held = sum(1 for h in self.held if asker(h.granted_for) == asker(first))
        need = math.ceil(len(alike) / RATE_WINDOW * self.ahead) - held
        count = min(need, self.most - len(asking))
        if count <= 0:
            return []
        largest = replace(first, est_tokens=math.ceil(HEADROOM * max(a.est_tokens for a in [first, *alike])),
                          max_prompt=math.ceil(HEADROOM * max(a.max_prompt for a in [first, *alike])),
                          max_completion=max(a.max_completion for a in [first, *alike]))
        return [largest] * count

    def add(self, extras: Sequence[Admit], leases: Sequence[Lease | None]) -> None:
        """The leases granted for ``extras`` (None where the actor had none free), held from now."""
        until = self.clock() + self.held_for
        self.held.extend(HeldAhead(lease, admit, until) for admit, lease in zip(extras, leases) if lease is not None)

    def expired(self) -> list[int]:
        """Ids of the leases whose time is up, no longer held."""
        now = self.clock()
        gone = [h.lease.id for h in self.held if h.until <= now]
        if gone:
            self.held = deque(h for h in self.held if h.until > now)
        return gone

    def drain(self) -> list[int]:
        """Ids of every lease held, no longer held (an attempt failed, or the channel closes)."""
        gone = [h.lease.id for h in self.held]
        self.held.clear()
        return gone

    def next_expiry(self) -> float | None:
        return min((h.until for h in self.held), default=None)


__all__ = ["Ahead", "HeldAhead", "asker", "fits", "RATE_WINDOW", "HEADROOM"]
