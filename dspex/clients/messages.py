"""Messages between LM handles, client actors and the ledger (named values, never bare tuples)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from ..primitives import Usage
from .budgets import RunBudget
from .prices import Price
from .transport import AttemptResult


@dataclass(frozen=True)
class Completion:
    """One answer: ``usage`` is the provider's own count; ``cost`` in USD from the price table."""

    text: str
    usage: Usage
    cost: float
    model: str
    latency_s: float
    cached: bool = False
    attempts: int = 1
    extras: tuple[tuple[str, Any], ...] = ()  # logprobs / tool calls, when asked for and given

    def __str__(self) -> str:
        return self.text

    def output(self) -> str | dict:
        """What DSPy's ``lm(...)`` gives for this completion: its text, or a dict with ``text`` and the
        ``logprobs`` / ``tool_calls`` the answer carried."""
        return {"text": self.text, **dict(self.extras)} if self.extras else self.text

    @classmethod
    def unbilled(cls, output: str | dict, model: str) -> "Completion":
        """The inverse of :meth:`output`: one of DSPy's completions (a text, or a dict with ``text`` and its
        extras) that no provider billed (an LM object's own answer, never leased or booked)."""
        if isinstance(output, dict):
            text, extras = output.get("text"), tuple((k, v) for k, v in output.items() if k != "text" and v)
        else:
            text, extras = output, ()
        return cls(text=text or "", usage=Usage(), cost=0.0, model=model, latency_s=0.0, extras=extras)


@dataclass(frozen=True)
class UsageTotals:
    """Totals over requests: ``requests`` = finished lm requests (ok + failed + cache hits).

    Tokens and cost never count less than the provider bills: an attempt whose count never came back
    (its holder died with the lease, its host was lost, Ctrl-C mid-request, the 200's body could not be
    read) is booked at its maximum (every prompt byte a token, plus ``max_tokens``). Those attempts are
    also counted in ``unconfirmed_calls``, with their share of the tokens and cost in
    ``unconfirmed_tokens`` and ``unconfirmed_cost`` (included in the totals, which are an upper bound by
    that much). ``hedged``: twins of slow attempts whose answer was not used (``hedge=``; each also an
    unconfirmed call, and not a request of its own)."""

    requests: int = 0
    ok: int = 0
    failed: int = 0
    cache_hits: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    unconfirmed_calls: int = 0
    unconfirmed_tokens: int = 0
    unconfirmed_cost: float = 0.0
    hedged: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: "UsageTotals") -> "UsageTotals":
        return UsageTotals(*(getattr(self, n) + getattr(other, n) for n in _TOTALS_FIELDS))

    def record(self, rec: "UsageRecord") -> "UsageTotals":
        """These totals with one finished request more (the ledger adds every request to three totals)."""
        return UsageTotals(self.requests + (not rec.hedge), self.ok + (rec.ok and not rec.cached),
                           self.failed + (not rec.ok and not rec.hedge),
                           self.cache_hits + rec.cached, self.retries + rec.retries,
                           self.prompt_tokens + rec.prompt_tokens, self.completion_tokens + rec.completion_tokens,
                           self.cost + rec.cost, self.unconfirmed_calls + rec.unconfirmed,
                           self.unconfirmed_tokens + rec.unconfirmed_tokens, self.unconfirmed_cost + rec.unconfirmed_cost,
                           self.hedged + rec.hedge)


_TOTALS_FIELDS = tuple(f.name for f in fields(UsageTotals))  # (worked out once: fields() is slow)


@dataclass(frozen=True)
class UsageRecord:
    """What the ledger keeps per finished request. ``unconfirmed`` attempts of it were booked at their
    maximum (``unconfirmed_tokens`` / ``unconfirmed_cost`` of the totals): the provider's count never came."""

    client: str
    run: str | None
    ok: bool
    cached: bool
    retries: int
    prompt_tokens: int
    completion_tokens: int
    cost: float
    status: int = 0
    error: str = ""
    unconfirmed: int = 0
    unconfirmed_tokens: int = 0
    unconfirmed_cost: float = 0.0
    hedge: bool = False  # the slower of a hedged pair: booked (at its maximum), not a request of its own


# --- handle -> client actor -------------------------------------------------------------------------

@dataclass(frozen=True)
class Admit:
    """Ask leave to send attempt 0 of a request (``est_tokens`` for the token limit). ``holder`` is the
    asking process, ``(node id, pid)``: if it dies, its leases are taken back at once."""

    est_tokens: int
    run: str | None = None
    holder: tuple[str, int] | None = None
    retries: int | None = None  # this handle's retries (None: the client's); handles of one client may differ
    max_prompt: int = 0  # the most prompt tokens an attempt can be billed (``prices.prompt_tokens_bound``)
    max_completion: int = 0  # its max_tokens: together, what an attempt whose report never comes is booked at


@dataclass(frozen=True)
class AdmitBatch:
    """Several threads of one process asking at once: the first waits its turn as an :class:`Admit`;
    when it is granted, the others get a lease too if one is free right now. The reply is a
    :class:`Leases` (``None`` for each that must ask again); an error is the first's."""

    requests: tuple


@dataclass(frozen=True)
class Leases:
    leases: tuple  # Lease | None, in the order of the AdmitBatch
    recalls: int = 0  # the client actor's recalls so far (see :class:`Recall`) when these were granted


@dataclass(frozen=True)
class Lease:
    """Leave to send one attempt now. ``price`` lets the holder work out the cost of a success itself,
    so it can report a success without waiting for an answer (see :class:`Report`)."""

    id: int
    attempt: int
    price: Price | None = None


@dataclass(frozen=True)
class Report:
    """The outcome of a leased attempt; the reply is :class:`Done`, the next :class:`Lease`, or an error.
    A success is sent as a cast (no reply: the holder knows its cost and attempts), anything else as a call."""

    lease: int
    outcome: AttemptResult
    attempt: int = 0
    run: str | None = None


@dataclass(frozen=True)
class Release:
    """A leased attempt that ended without an outcome (Ctrl-C, an error in the caller's process, the slower
    of a hedged pair): the place in flight is given back at once (one-way) and the request is booked as
    failed, at its maximum, with ``reason`` as its error."""

    lease: int
    run: str | None = None
    reason: str = "Aborted"  # or HEDGED: booked, but not as a request of its own (UsageTotals.hedged)


HEDGED = "Hedged"  # the reason a hedged pair's slower attempt is released with


@dataclass(frozen=True)
class GiveBack:
    """Leases granted ahead of need (``ahead.py``) that no request used: their places go back, nothing is
    booked (no attempt was made with them). One-way."""

    leases: tuple  # lease ids


@dataclass(frozen=True)
class Recall:
    """A process holding leases ahead asks to be told when the client actor wants them back: its breaker
    opened or a 429 paused every request (leases granted before are no longer leave to send). Answered
    with the count of recalls as soon as it exceeds ``seen``, or at the latest after ``wait`` seconds (then
    the holder asks again): a long poll, so the decision reaches every holder at once, not when its leases
    expire. ``watcher`` names the asking channel: its new watch replaces its old one."""

    seen: int
    wait: float
    watcher: str


@dataclass(frozen=True)
class Unwatch:
    """A channel that stops watching (it closes): its watch is answered now, so nothing waits. One-way."""

    watcher: str


@dataclass(frozen=True)
class ReportBatch:
    """Success reports of several calls of one process, sent together (one-way)."""

    reports: tuple


@dataclass(frozen=True)
class Done:
    cost: float
    attempts: int


@dataclass(frozen=True)
class CacheHit:
    run: str | None = None


@dataclass(frozen=True)
class GetUsage:
    pass


@dataclass(frozen=True)
class ResetBreaker:
    pass


@dataclass(frozen=True)
class InjectFaults:
    fraction: float


@dataclass(frozen=True)
class GetStatus:
    pass


@dataclass(frozen=True)
class ClientStatus:
    """A client actor's live state (for the dashboard and tests)."""

    client: str
    breaker: str
    breaker_retry_in: float
    breaker_trips: int
    in_flight: int
    queued: int
    paused_for: float
    totals: UsageTotals
    rpm: float | None = None  # requests per minute in force (None: no cap)
    tpm: float | None = None
    rate_source: str = "none"  # where rpm came from: none | fixed | advertised | learned
    tpm_source: str = "none"
    advertised_rpm: float | None = None
    advertised_tpm: float | None = None
    throttled: int = 0  # 429s seen
    errors: tuple[tuple[str, int], ...] = ()  # requests that failed for good, by error type
    max_in_flight: int = 0  # this client's own cap on requests out at once
    waiting_for_room: int = 0  # requests waiting for a place under that cap (nothing else holds them)

    def capped(self) -> str | None:
        """What this client's own ``max_in_flight`` holds back now, when it is the bottleneck (all its
        places taken, requests waiting for one): a progress line names it. None otherwise."""
        if self.max_in_flight and self.in_flight >= self.max_in_flight and self.waiting_for_room:
            return f"max_in_flight={self.max_in_flight} of {self.client} (all in use, requests waiting)"
        return None


@dataclass(frozen=True)
class Flush:
    """Send pending usage records to the ledger and reply once it has them."""


# --- client actor -> ledger ---------------------------------------------------------------------------

@dataclass(frozen=True)
class RecordBatch:
    records: tuple[UsageRecord, ...]


@dataclass(frozen=True)
class Booked:
    """The ledger's answer to a :class:`RecordBatch`: how many records it took, and each open run
    budget's spend over all clients now (run id -> ``budgets.Spend``)."""

    records: int
    budgets: dict = field(default_factory=dict)


@dataclass(frozen=True)
class OpenBudget:
    """Hold run ``budget.run`` (and the runs inside it) to ``budget`` from now on (to the ledger and
    every client actor; see ``budgets.py``)."""

    budget: RunBudget


@dataclass(frozen=True)
class CloseBudget:
    run: str


@dataclass(frozen=True)
class LedgerQuery:
    client: str | None = None
    run: str | None = None


@dataclass(frozen=True)
class LedgerReport:
    total: UsageTotals
    by_client: dict = field(default_factory=dict)
    by_run: dict = field(default_factory=dict)
    budgets: dict = field(default_factory=dict)  # open run budgets: run id -> (RunBudget, Spend so far)


def cache_entry(comp: Completion) -> dict:
    """What the response cache keeps of a completion (read back by :func:`cached_completion`)."""
    return {"text": comp.text, "prompt_tokens": comp.usage.prompt_tokens,
            "completion_tokens": comp.usage.completion_tokens, "model": comp.model,
            **({"extras": [list(pair) for pair in comp.extras]} if comp.extras else {})}


def cached_completion(data: dict) -> Completion:
    """A completion from the cache: free, instant, flagged."""
    return Completion(text=data["text"], usage=Usage(data["prompt_tokens"], data["completion_tokens"]), cost=0.0,
                      model=data["model"], latency_s=0.0, cached=True, attempts=0,
                      extras=tuple((name, value) for name, value in data.get("extras", ())))
