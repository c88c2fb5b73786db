"""The ledger actor: every finished request's tokens and cost, totalled per client and per run, and
each open run budget's spend over all clients (see ``budgets.py``).

It outlives client restarts (a sibling under the ClientSupervisor), so totals survive a client crash.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from supervision import GenServer

from .budgets import RunBudget, Spend, covering
from .messages import Booked, CloseBudget, LedgerQuery, LedgerReport, OpenBudget, RecordBatch, UsageTotals


class LedgerActor(GenServer):
    title_prefix = "dspex"

    def init(self) -> None:
        self.total = UsageTotals()
        self.by_client: dict[str, UsageTotals] = defaultdict(UsageTotals)
        self.by_run: dict[str, UsageTotals] = defaultdict(UsageTotals)
        self.budgets: dict[str, RunBudget] = {}
        self.spent: dict[str, Spend] = {}  # open budget -> its spend over all clients

    def handle_call(self, request: Any) -> Any:
        match request:
            case RecordBatch():
                self._add(request)
                return Booked(len(request.records), dict(self.spent))
            case LedgerQuery(client=client, run=run):
                by_client = {k: v for k, v in self.by_client.items() if client in (None, k)}
                by_run = {k: v for k, v in self.by_run.items() if run in (None, k)}
                budgets = {k: (b, self.spent[k]) for k, b in self.budgets.items()}
                return LedgerReport(self.total, by_client, by_run, budgets)
            case OpenBudget(budget=budget):
                self.budgets[budget.run] = budget
                self.spent[budget.run] = self._spent_by(budget)
                return self.spent[budget.run]
            case CloseBudget(run=run):
                self.budgets.pop(run, None)
                return self.spent.pop(run, None)
        return super().handle_call(request)

    def handle_cast(self, message: Any) -> None:
        if isinstance(message, RecordBatch):
            self._add(message)

    def _add(self, batch: RecordBatch) -> None:
        for rec in batch.records:
            self.total = self.total.record(rec)
            self.by_client[rec.client] = self.by_client[rec.client].record(rec)
            if rec.run is not None:
                self.by_run[rec.run] = self.by_run[rec.run].record(rec)
                for budget in covering(self.budgets, rec.run):
                    self.spent[budget.run] += Spend(rec.cost, rec.prompt_tokens + rec.completion_tokens)

    def _spent_by(self, budget: RunBudget) -> Spend:
        """What the runs a budget covers spent before it was opened (a reopened budget keeps counting)."""
        runs = [u for r, u in self.by_run.items() if budget.covers(r)]
        return Spend(sum(u.cost for u in runs), sum(u.total_tokens for u in runs))


__all__ = ["LedgerActor"]
