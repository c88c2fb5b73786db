"""Run budgets: a compile's ``budget_usd`` / ``budget_tokens``, held at admission by every client actor.

A budget is opened for a run (``Runtime.open_budget``: a compile opens one for its run id) and covers
that run and every run started inside it (``scope.within``: the compile's evaluations and proposals).
The ledger totals each open budget over all clients; each client actor keeps a :class:`BudgetBook`:
the ledger's total as of its last answer plus this client's own spend the ledger has not acknowledged
yet. A request of a covered run is refused at admission (``BudgetExceeded``, nothing sent) once that
total reaches the limit, so a run spends at most its budget plus the calls already in flight, each at
most its maximum cost. A client sees its own spend at once and other clients' within one flush of
theirs (``client.FLUSH_EVERY``), so a budget shared by several models can pass by what they send in
that time as well.

Spend counts what the ledger counts: confirmed usage and the unconfirmed part booked at a call's
maximum cost (a holder that died with its lease, a 200 whose body could not be read).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping

from ..errors import ConfigError
from .scope import within


@dataclass(frozen=True)
class Spend:
    cost: float = 0.0
    tokens: int = 0

    def __add__(self, other: "Spend") -> "Spend":
        return Spend(self.cost + other.cost, self.tokens + other.tokens)


@dataclass(frozen=True)
class RunBudget:
    """At most ``usd`` dollars and ``tokens`` tokens (None: no limit) for run ``run`` and its inner runs."""

    run: str
    usd: float | None = None
    tokens: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.run, str) or not self.run:
            raise ConfigError(f"a run budget needs a run id, got {self.run!r}")
        for label, value in (("budget_usd", self.usd), ("budget_tokens", self.tokens)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not math.isfinite(value) or value < 0):
                raise ConfigError(f"{label} must be a number >= 0 or None, got {value!r}")

    def covers(self, run: str | None) -> bool:
        return within(run, self.run)

    def spent(self, spend: Spend) -> str | None:
        """Why this budget is spent (a sentence for BudgetExceeded), or None while it is not."""
        if self.usd is not None and spend.cost >= self.usd:
            return f"budget_usd={self.usd:g} of run {self.run} is spent (${spend.cost:.6f} so far)"
        if self.tokens is not None and spend.tokens >= self.tokens:
            return f"budget_tokens={self.tokens} of run {self.run} is spent ({spend.tokens} tokens so far)"
        return None


def covering(budgets: Mapping[str, RunBudget], run: str | None) -> list[RunBudget]:
    return [b for b in budgets.values() if b.covers(run)] if run is not None else []


@dataclass
class BudgetBook:
    """One client actor's view of the open run budgets (see the module docstring). Batches of usage
    records go to the ledger one after another and its answers come back in the same order."""

    budgets: dict[str, RunBudget] = field(default_factory=dict)
    ledger: dict[str, Spend] = field(default_factory=dict)  # the ledger's totals (all clients), last answer
    unsent: dict[str, Spend] = field(default_factory=dict)  # this client's spend not yet sent to the ledger
    in_transit: dict[int, dict[str, Spend]] = field(default_factory=dict)  # sent, not yet acknowledged

    def open(self, budget: RunBudget, spent: Spend = Spend()) -> None:
        self.budgets[budget.run] = budget
        self.ledger[budget.run] = spent

    def close(self, run: str) -> None:
        self.budgets.pop(run, None)
        self.ledger.pop(run, None)
        self.unsent.pop(run, None)
        for batch in self.in_transit.values():
            batch.pop(run, None)

    def book(self, run: str | None, cost: float, tokens: int) -> None:
        """This client booked ``cost`` and ``tokens`` for a request of ``run``."""
        for budget in covering(self.budgets, run):
            self.unsent[budget.run] = self.unsent.get(budget.run, Spend()) + Spend(cost, tokens)

    def sending(self, batch: int) -> None:
        """What is booked so far goes to the ledger in batch ``batch``."""
        if self.unsent:
            self.in_transit[batch], self.unsent = self.unsent, {}

    def acknowledged(self, batch: int | None, totals: Mapping[str, Spend]) -> None:
        """The ledger has batch ``batch`` (None: a query, no batch): ``totals`` are its figures now."""
        if batch is not None:
            self.in_transit.pop(batch, None)
        for run, spend in totals.items():
            if run in self.budgets:
                self.ledger[run] = spend

    def total(self, run: str) -> Spend:
        """Budget ``run``'s spend as this client knows it: the ledger's, plus what it has not acknowledged."""
        spend = self.ledger.get(run, Spend()) + self.unsent.get(run, Spend())
        for batch in self.in_transit.values():
            spend = spend + batch.get(run, Spend())
        return spend

    def exhausted(self, run: str | None) -> str | None:
        """Why a request of ``run`` may not be sent (a budget covering it is spent), or None."""
        for budget in covering(self.budgets, run):
            why = budget.spent(self.total(budget.run))
            if why is not None:
                return why
        return None


__all__ = ["RunBudget", "Spend", "BudgetBook", "covering"]
