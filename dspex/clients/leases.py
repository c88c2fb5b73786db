"""The client actor's lease bookkeeping: a request between attempts (``Wait``), a lease out (``HeldLease``),
and which leases are taken back because their holder will never report.

A lease is granted when admission says go (``client.ClientActor._lease``), given back by its report or a
``Release``, or taken back by the actor's sweep: its holder process is gone (checked on this node) or the
lease is older than any attempt can take. A lease taken back is booked at its maximum, unconfirmed (it may
have reached the provider), and its id is remembered (``SWEPT_KEPT`` of them) so a late report is not
booked twice. The actor holds the leases and executes; what is decided here is pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

from supervision.messages import CallToken
from supervision.resilience import Permit, Reservation

from .messages import Admit

SWEEP_EVERY = 1.0  # seconds between checks for leases whose holder vanished
SWEPT_KEPT = 10_000  # ids of leases taken back, remembered so a late report is not booked twice


@dataclass
class Wait:
    """A request between attempts: waiting for its backoff, its rate slot or an in-flight place."""

    id: int
    token: CallToken
    est_tokens: int
    run: str | None
    attempt: int = 0
    not_before: float = 0.0
    reservation: Reservation | None = None
    holder: tuple[str, int] | None = None  # the asking process (node id, pid)
    retries: int | None = None  # the asking handle's retries (None: the client's)
    billed: tuple[int, int] = (0, 0)  # tokens of failed attempts the provider still counted (empty answers)
    batch: tuple = ()  # the rest of an AdmitBatch: leased with this one if free right now
    open_deadline: float | None = None  # when it stops waiting for an open breaker (set when it first meets one)
    max_prompt: int = 0  # the most one attempt can be billed (Admit.max_prompt, max_completion)
    max_completion: int = 0
    unconfirmed: tuple[int, int, int] = (0, 0, 0)  # of ``billed``: attempts booked at their maximum, and its tokens

    @classmethod
    def of(cls, wait_id: int, token: CallToken | None, admit: Admit, batch: tuple = ()) -> "Wait":
        return cls(wait_id, token, admit.est_tokens, admit.run, holder=admit.holder, retries=admit.retries,  # type: ignore[arg-type]
                   batch=batch, max_prompt=admit.max_prompt, max_completion=admit.max_completion)

    def add(self, prompt: int, completion: int, estimated: bool) -> None:
        """One attempt's tokens (``estimated``: its maximum, the provider's count never came)."""
        self.billed = (self.billed[0] + prompt, self.billed[1] + completion)
        if estimated:
            calls, p, c = self.unconfirmed
            self.unconfirmed = (calls + 1, p + prompt, c + completion)

    def add_maximum(self) -> None:
        """One attempt that may have reached the provider and whose count never comes: its maximum, unconfirmed."""
        self.add(self.max_prompt, self.max_completion, estimated=True)


@dataclass
class HeldLease:
    wait: Wait
    permit: Permit | None  # None: the lease had expired when its report came
    started: float


def holder_gone(wait: Wait, node: str, gone: Callable[[int], bool]) -> bool:
    """The process that asked for ``wait`` ran on ``node`` (this one) and is gone."""
    return wait.holder is not None and wait.holder[0] == node and gone(wait.holder[1])


def to_take_back(leases: Mapping[int, HeldLease], horizon: float,
                 dead: Callable[[Wait], bool]) -> list[tuple[int, HeldLease, bool]]:
    """The leases whose holder will never report, as (id, lease, holder gone): its process is ``dead``, or the
    lease started before ``horizon`` (older than any attempt can take: another node, a host lost)."""
    back = []
    for lease_id, lease in list(leases.items()):
        gone = dead(lease.wait)
        if gone or lease.started < horizon:
            back.append((lease_id, lease, gone))
    return back


def remember(swept: dict[int, None], lease_id: int) -> None:
    """Remember a lease taken back (the oldest are forgotten past ``SWEPT_KEPT``)."""
    swept[lease_id] = None
    while len(swept) > SWEPT_KEPT:
        del swept[next(iter(swept))]


__all__ = ["Wait", "HeldLease", "holder_gone", "to_take_back", "remember", "SWEEP_EVERY", "SWEPT_KEPT"]
