"""The ledger actor: every finished request's tokens and cost, totalled per client and per run.

It outlives client restarts (a sibling under the ClientSupervisor), so totals survive a client crash.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from supervision import GenServer

from .messages import LedgerQuery, LedgerReport, RecordBatch, UsageTotals


class LedgerActor(GenServer):
    title_prefix = "dspex"

    def init(self) -> None:
        self.total = UsageTotals()
        self.by_client: dict[str, UsageTotals] = defaultdict(UsageTotals)
        self.by_run: dict[str, UsageTotals] = defaultdict(UsageTotals)

    def handle_call(self, request: Any) -> Any:
        if isinstance(request, RecordBatch):
            self._add(request)
            return len(request.records)
        if isinstance(request, LedgerQuery):
            by_client = {k: v for k, v in self.by_client.items() if request.client in (None, k)}
            by_run = {k: v for k, v in self.by_run.items() if request.run in (None, k)}
            return LedgerReport(self.total, by_client, by_run)
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


__all__ = ["LedgerActor"]
