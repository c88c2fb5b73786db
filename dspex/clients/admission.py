"""Whether a request may be sent now, and if not what it waits for: a pure decision (no clock, no actor).

The client actor gathers the facts (its clock, the limiter's slot, places in flight, the breaker, the
budget) and executes the verdict: grant a lease, park the request (a timer or the ready queue) or fail
it. The same decision serves a caller that waits (``Admit``) and one that only takes what is free now
(the followers of an ``AdmitBatch``), as trio's ``acquire`` is ``acquire_nowait`` plus a park.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Verdict(enum.Enum):
    GRANT = "grant"  # send now
    BACKOFF = "backoff"  # a retry's backoff has not elapsed: wait ``seconds``
    RATE = "rate"  # the rate limiter's slot is ``seconds`` away
    ROOM = "room"  # max_in_flight leases are out (or the first request is probing the limits alone)
    BUDGET = "budget"  # the budget is spent: fail, nothing is sent


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    seconds: float = 0.0


@dataclass(frozen=True)
class Facts:
    """What the actor knows about one waiting request at one instant."""

    backoff_left: float  # seconds until a retry may go (0: now)
    rate_delay: float  # seconds until its rate slot (0: now)
    in_flight: int
    max_in_flight: int
    probing: bool  # the rate policy's first request is out alone
    budget_spent: bool


def has_room(in_flight: int, max_in_flight: int, probing: bool) -> bool:
    """A place in flight is free (while the first request probes the provider's limits, it goes alone)."""
    return in_flight < max_in_flight and not (probing and in_flight > 0)


def decide(facts: Facts) -> Decision:
    """Budget first (nothing is sent once it is spent), then backoff, rate slot, and a place in flight."""
    if facts.budget_spent:
        return Decision(Verdict.BUDGET)
    if facts.backoff_left > 0:
        return Decision(Verdict.BACKOFF, facts.backoff_left)
    if facts.rate_delay > 0:
        return Decision(Verdict.RATE, facts.rate_delay)
    if not has_room(facts.in_flight, facts.max_in_flight, facts.probing):
        return Decision(Verdict.ROOM)
    return Decision(Verdict.GRANT)


__all__ = ["Verdict", "Decision", "Facts", "decide", "has_room"]
