"""The client actor: one per provider + model + endpoint, the single owner of its shared limits.

One request, top to bottom (the handle's side is the request pipeline, ``pipeline.py``):

1. cache — in the handle's process: a hit is free, takes no rate slot, and is only counted here (``CacheHit``);
2. ``Admit`` — the pipeline asks for a *lease*; ``_try_lease`` is the one admission core: the budget,
   the retry's backoff, the rate limiter's slot, a place in flight (``max_in_flight``; the first
   request probes the provider's limits alone) and the breaker, decided by ``admission.decide``. A
   request that cannot go now is parked (an actor timer, the ready queue or, while the breaker is open,
   its line: ``breaker_line.py``; never a sleep) or failed;
3. HTTP — in the handle's process (bytes never cross a process boundary; many requests are in
   flight without an actor each), classified by ``transport.AttemptResult``;
4. ``Report`` — the outcome comes back: the breaker and the rate policy learn from it (advertised
   limits, 429s, successes); a retryable failure backs off and goes round step 2 again; a success
   (sent one-way) or a final failure is booked (what an outcome means: ``outcomes.py``);
5. ledger — usage records go to the ledger actor in batches (totals survive client restarts).

Nothing billed goes unbooked: an attempt whose report never comes (its holder process died with the
lease, its host was lost, Ctrl-C in the holder) is booked when the lease is taken back, at its maximum
(``Admit.max_prompt`` + ``max_completion`` tokens) and marked unconfirmed (``leases.py``); so is a 200 whose counts
could not be read (``AttemptResult.estimated``). Budgets count that too: the client's own ``budget_usd`` /
``budget_tokens``, and the run budgets of compiles (``budgets.py``), both checked at admission.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from supervision import GenServer, NoReply, procfs
from supervision.messages import Call, CallToken, Reply, WhichChildren
from supervision.resilience import BreakerChange, BreakerOpen, BreakerState, CircuitBreaker, RateLimiter
from supervision.resilience.adaptive import AdaptiveRate, RateSource

from ..errors import BudgetExceeded, CircuitOpen, LMError
from .admission import Facts, Verdict, decide, has_room
from .breaker_line import BreakerLine
from .budgets import BudgetBook
from .config import LMConfig
from .leases import SWEEP_EVERY, HeldLease, Wait, holder_gone, remember, to_take_back
from .messages import (Admit, AdmitBatch, Booked, CacheHit, ClientStatus, CloseBudget, Done, Flush, GetStatus, GetUsage,
                       GiveBack, HEDGED, InjectFaults, Lease, Leases, LedgerQuery, LedgerReport, OpenBudget, Recall, RecordBatch,
                       Release, Report, ReportBatch, ResetBreaker, Unwatch, UsageRecord, UsageTotals)
from .outcomes import attempt_error, learn, remaining_pause, retry_delay, throttle_pause
from .prices import Price, cost_of
from .transport import AttemptResult

FLUSH_EVERY = 0.2  # seconds between usage batches to the ledger


@dataclass(frozen=True)
class _Due:
    wait_id: int


@dataclass(frozen=True)
class _Tick:
    kind: str


@dataclass(frozen=True)
class _LineCheck:
    at: float  # a later look at the breaker's line replaces this one


class ClientActor(GenServer):
    """Owns limiter, breaker, budget and totals for one client; see the module docstring."""

    title_prefix = "dspex"

    def init(self, cfg: LMConfig, price: Price | None = None, use_ledger: bool = True) -> None:
        self.cfg, self.price, self.ledger = cfg, price, None
        self.clock = time.monotonic
        self.rate = AdaptiveRate(cfg.rpm, cfg.tpm)
        self.limiter = RateLimiter(self.rate.rpm, self.rate.tpm, name=cfg.qualified)
        b = cfg.breaker
        self.breaker = CircuitBreaker(b.max_failures, b.window, b.reset_after, failure_rate=b.failure_rate,
                                      min_calls=b.min_calls, window_calls=b.window_calls, trial_calls=b.trial_calls,
                                      timeout_grace=b.timeout_grace, name=cfg.qualified,
                                      fail_fraction=b.fail_fraction, on_change=self._on_breaker)
        self.blocked = BreakerLine()  # requests waiting for the open breaker (up to b.max_wait)
        self.blocked_check: float | None = None  # when the line is next looked at (a timer is set)
        self.ids = itertools.count(1)
        self.leases: dict[int, HeldLease] = {}
        self.timed: dict[int, Wait] = {}
        self.ready: deque[Wait] = deque()
        self.totals = UsageTotals()
        self.baseline = UsageTotals()  # what the ledger had for this client before a restart
        self.errors: dict[str, int] = {}  # requests that failed for good, by error type (since this actor started)
        self.budgets = BudgetBook()  # the run budgets open in this runtime (a compile's), as this client knows them
        self.swept: dict[int, None] = {}  # leases taken back (booked at their maximum), oldest first
        self.settled: dict[int, None] = {}  # leases whose success was booked, oldest first (a report sent twice)
        self.records: list[UsageRecord] = []
        self.flushes: dict[int, list[CallToken]] = {}
        self.usage_waiters: list[CallToken] | None = [] if use_ledger else None
        self.timers = {"flush": False, "sweep": False, "recall": False}
        # leases held ahead recalled so far (breaker opened, a 429 paused everyone), counted from the wall clock's
        # microseconds: a restarted actor's count exceeds its predecessor's, so a holder drops the old leases
        # (``ReportingChannel.hold``) instead of taking the new actor's grants for stale ones
        self.recalls = time.time_ns() // 1000
        self.recall_watchers: dict[str, CallToken] = {}  # channels holding leases ahead, waiting to hear of the next
        self.asked_parent = next(self.ids)
        if use_ledger:  # find the ledger (a sibling, restarted with us under rest_for_one), then our totals
            self.send(self._sv_parent, Call(self.asked_parent, WhichChildren()))
        self.actor_log.info("client_started", client=cfg.client_key, rpm=cfg.rpm, tpm=cfg.tpm,
                            max_in_flight=cfg.max_in_flight)

    # --- calls -------------------------------------------------------------------------------------

    def handle_call(self, request: Any) -> Any:
        match request:
            case Admit():
                return self._admit(request)
            case AdmitBatch(requests=(first, *rest)):
                return self._admit(first, tuple(rest))
            case Report():
                return self._report(request)
            case Recall(seen=seen, wait=wait, watcher=watcher):
                if self.recalls > seen:
                    return self.recalls
                self.recall_watchers[watcher] = self.current_call
                self._tick("recall", wait)
                return NoReply
            case GetUsage():
                if self.usage_waiters is not None:  # the ledger's baseline has not arrived yet
                    self.usage_waiters.append(self.current_call)
                    return NoReply
                return self.baseline + self.totals
            case Flush():
                self._sweep()  # a holder that died is booked before anyone reads the totals
                return self._flush(self.current_call)
            case OpenBudget(budget=budget):
                self.budgets.open(budget)
                return None
            case CloseBudget(run=run):
                self.budgets.close(run)
                return None
            case GetStatus():
                return self._status()
            case ResetBreaker():
                self.breaker.reset()
                self._pump()
                return None
            case InjectFaults(fraction=fraction):
                self.breaker.inject_faults(fraction)
                return None
        return super().handle_call(request)

    def handle_cast(self, message: Any) -> None:
        match message:
            case Report():  # a success: nobody waits for the Done
                self._report(message)
            case ReportBatch(reports=reports):
                for report in reports:
                    self._report(report)
            case Release(lease=lease_id, reason=reason):
                self._release(lease_id, reason)
            case GiveBack(leases=ids):
                self._give_back(ids)
            case Unwatch(watcher=watcher):
                token = self.recall_watchers.pop(watcher, None)
                if token is not None:
                    self.reply(token, self.recalls)
            case CacheHit(run=run):
                self._account(UsageRecord(client=self.cfg.client_key, run=run, ok=True, cached=True, retries=0,
                                          prompt_tokens=0, completion_tokens=0, cost=0.0))

    def handle_info(self, message: Any) -> None:
        match message:
            case _Due(wait_id=wait_id):
                wait = self.timed.pop(wait_id, None)
                if wait is not None:
                    self._advance(wait)
            case _Tick(kind="flush"):
                self.timers["flush"] = False
                self._flush(None)
            case _Tick(kind="sweep"):
                self.timers["sweep"] = False
                self._sweep()
            case _Tick(kind="recall"):  # the watchers' waits are over: they ask again
                self.timers["recall"] = False
                self._answer_recall_watchers()
            case _LineCheck(at=at) if at == self.blocked_check:
                self.blocked_check = None
                self._check_line(self.breaker.verdict_in())  # judges the timeouts due, then the next
                self._pump()
            case Reply():
                self._on_ledger_reply(message)

    def _status(self) -> ClientStatus:
        snap, rate = self.breaker.snapshot(), self.rate.status()
        return ClientStatus(client=self.cfg.client_key, breaker=snap.state.value, breaker_retry_in=snap.retry_in,
                            breaker_trips=snap.trips, in_flight=len(self.leases),
                            queued=len(self.ready) + len(self.timed) + len(self.blocked),
                            paused_for=self.limiter.paused_for,
                            totals=self.baseline + self.totals, rpm=rate.rpm, tpm=rate.tpm,
                            rate_source=rate.source.value, tpm_source=rate.tpm_source.value,
                            advertised_rpm=rate.advertised_rpm, advertised_tpm=rate.advertised_tpm,
                            throttled=rate.throttled, errors=tuple(sorted(self.errors.items())),
                            max_in_flight=self.cfg.max_in_flight, waiting_for_room=len(self.ready))

    # --- the pipeline ------------------------------------------------------------------------------

    def _admit(self, req: Admit, batch: tuple = ()) -> Any:
        self._advance(Wait.of(next(self.ids), self.current_call, req, batch))
        return NoReply

    def _advance(self, wait: Wait) -> None:
        """The waiting path: a lease now, or the request parks (timer, ready queue) or fails."""
        lease = self._try_lease(wait, park=True)
        if lease is None:
            return
        if wait.batch:  # the followers of an AdmitBatch get a lease too if one is free this instant
            batch, wait.batch = wait.batch, ()
            followers = (self._try_lease(Wait.of(next(self.ids), None, a), park=False) for a in batch)
            self.reply(wait.token, Leases((lease, *followers), self.recalls))
        else:
            self.reply(wait.token, lease)
        self._tick("sweep", SWEEP_EVERY)

    def _try_lease(self, wait: Wait, *, park: bool) -> Lease | None:
        """The one admission core, non-blocking: a lease if ``wait`` may be sent now, else None.

        budget → backoff → rate slot → place in flight → breaker (the verdict is ``admission.decide``).
        With ``park`` the request waits where the verdict says (a timer, the ready queue) or fails with
        its typed error; without, nothing is booked, parked or failed (a batch follower asks again).
        """
        if not park and (self.ready or self.timed or self.blocked):
            return None  # a follower never jumps the line
        now = self.clock()
        backoff_left = max(0.0, wait.not_before - now)
        rate_delay = 0.0 if backoff_left > 0 else self._rate_delay(wait, now, book=park)
        decision = decide(Facts(backoff_left=backoff_left, rate_delay=rate_delay, in_flight=len(self.leases),
                                max_in_flight=self.cfg.max_in_flight, probing=self.rate.probing,
                                budget_spent=self._budget_spent(wait.run) is not None))
        match decision.verdict:
            case Verdict.GRANT:
                return self._lease(wait, now, park)
            case Verdict.BUDGET if park:
                why = self._budget_spent(wait.run)
                self._fail(wait, BudgetExceeded(f"{why}; the request was not sent", self.cfg.qualified,
                                                wait.attempt), 0)
            case Verdict.BACKOFF | Verdict.RATE if park:
                self.timed[wait.id] = wait
                self.send_after(decision.seconds, _Due(wait.id))
            case Verdict.ROOM if park:
                self.ready.append(wait)
        return None

    def _rate_delay(self, wait: Wait, now: float, book: bool) -> float:
        """Seconds to the request's rate slot; a waiting request books it (again after a 429's pause)."""
        if not book:
            return self.limiter.available_in(wait.est_tokens)
        paused_for = self.limiter.paused_for
        if wait.reservation is None or (paused_for > 0 and wait.reservation.at < now + paused_for):
            wait.reservation = self.limiter.reserve(wait.est_tokens)
        return self.limiter.delay(wait.reservation)

    def _lease(self, wait: Wait, now: float, park: bool) -> Lease | None:
        """The breaker's permit, then the lease (an open breaker parks a waiting request in its line, up to
        ``Breaker.max_wait``; with 0, or a rejection by fault injection, it fails, typed)."""
        try:
            permit = self.breaker.acquire()
        except BreakerOpen as exc:
            if park and not exc.injected and self.cfg.breaker.max_wait > 0:
                if wait.open_deadline is None:
                    wait.open_deadline = now + self.cfg.breaker.max_wait
                wait.reservation = None  # its rate slot goes to a request that can use it
                self.blocked.join(wait, wait.open_deadline)
                left = wait.open_deadline - now
                self._check_line(min(exc.retry_in, left) if exc.retry_in > 0 else left)
            elif park:
                self._fail(wait, CircuitOpen(f"circuit breaker is {exc.state.value}"
                                             + (" (fault injection)" if exc.injected else "")
                                             + f"; a trial request may pass in {exc.retry_in:.1f}s",
                                             self.cfg.qualified, wait.attempt + 1, retry_in=exc.retry_in), status=0)
            return None
        if wait.reservation is None:  # a follower: its slot is free right now
            wait.reservation = self.limiter.reserve(wait.est_tokens)
        lease_id = next(self.ids)
        self.leases[lease_id] = HeldLease(wait, permit, now)
        return Lease(lease_id, wait.attempt, self.price)

    def _room(self) -> bool:
        """A place in flight is free (while the first request probes the provider's limits, it goes alone)."""
        return has_room(len(self.leases), self.cfg.max_in_flight, self.rate.probing)

    def _budget_spent(self, run: str | None) -> str | None:
        """Why a request of ``run`` may not be sent: this client's budget, or a run budget covering ``run``."""
        cfg = self.cfg
        if cfg.budget_usd is None and cfg.budget_tokens is None:
            return self.budgets.exhausted(run)
        spent = self.baseline + self.totals
        if cfg.budget_usd is not None and spent.cost >= cfg.budget_usd:
            return f"budget_usd={cfg.budget_usd:g} is spent (${spent.cost:.6f} so far)"
        if cfg.budget_tokens is not None and spent.total_tokens >= cfg.budget_tokens:
            return f"budget_tokens={cfg.budget_tokens} is spent ({spent.total_tokens} tokens so far)"
        return self.budgets.exhausted(run)

    def _report(self, rep: Report) -> Any:
        lease = self.leases.pop(rep.lease, None)
        outcome = rep.outcome
        if lease is None and rep.lease in self.swept:
            return self._late(rep)
        if lease is None and rep.lease in self.settled:  # a report sent again (its first way's answer was lost)
            return Done(0.0, rep.attempt + 1)
        if lease is None:  # a lease of this client before a restart: account for it all the same
            lease = HeldLease(Wait(next(self.ids), self.current_call, 0, rep.run, rep.attempt), None, self.clock())
        wait = lease.wait
        wait.token = self.current_call
        if lease.permit is not None:
            if outcome.kind == "timeout" and not self.cfg.breaker.count_timeouts:
                self.breaker.cancel(lease.permit)  # slow, not down (a local model on a busy machine)
            else:
                self.breaker.record(lease.permit, ok=not outcome.health_failure,
                                    timed_out=outcome.kind == "timeout")
                self._check_line(self.breaker.verdict_in())  # a timeout's verdict is due then
        self._adapt(outcome, lease.started)
        wait.add(outcome.prompt_tokens, outcome.completion_tokens, outcome.estimated)
        if outcome.ok:
            remember(self.settled, rep.lease)
            if wait.reservation is not None:
                self.limiter.settle(wait.reservation, outcome.prompt_tokens + outcome.completion_tokens)
            cost = self._book(wait, ok=True, status=200)
            self._log_request(outcome, wait.attempt)
            self._pump()
            return Done(cost, wait.attempt + 1)
        pause = throttle_pause(outcome, wait.attempt, self.cfg, self.rate.share)
        if pause is not None and pause > 0:  # "Retry-After: 0" asks for no pause
            before = self.limiter.paused_for
            self.limiter.pause(pause, sent_at=lease.started)  # (none again for a request sent before the pause)
            if self.limiter.paused_for > before:
                self._emit("rate_pause", f"429: no request for {pause:.2f}s")
                self._recall()
        delay = retry_delay(outcome, wait.attempt, wait.retries, self.cfg, self.breaker.pressure)
        if delay is not None:
            wait.attempt += 1
            wait.not_before = self.clock() + delay
            wait.reservation = None
            self._advance(wait)
        else:
            self._log_request(outcome, wait.attempt)
            self._fail(wait, attempt_error(outcome, wait.attempt + 1, self.cfg), outcome.status)
        self._pump()
        return NoReply

    def _late(self, rep: Report) -> Any:
        """The report of a lease taken back (its holder was silent past any attempt's time): the attempt
        was booked at its maximum then, so it is not booked again, and a failure is not retried."""
        del self.swept[rep.lease]
        outcome = rep.outcome
        self.actor_log.warning("late_report", client=self.cfg.client_key, attempt=rep.attempt, kind=outcome.kind.value)
        if outcome.ok:
            return Done(cost_of(self.price, outcome.prompt_tokens, outcome.completion_tokens), rep.attempt + 1)
        self.reply_error(self.current_call, attempt_error(outcome, rep.attempt + 1, self.cfg))
        return NoReply

    def _release(self, lease_id: int, reason: str) -> None:
        """The holder gave its lease back without an outcome (Ctrl-C mid-request, an error of its own, the
        slower of a hedged pair): the request may have reached the provider, so the attempt is booked at its
        maximum, unconfirmed, failed with ``reason``."""
        lease = self.leases.pop(lease_id, None)
        if lease is None:
            return
        if lease.permit is not None:
            self.breaker.cancel(lease.permit)
        wait = lease.wait
        wait.add_maximum()
        self._book(wait, ok=False, status=0, error=reason, hedge=reason == HEDGED)
        self._pump()

    def _give_back(self, ids: tuple) -> None:
        """Leases granted ahead that no request used: their places (and breaker permits) go back, unbooked."""
        for lease_id in ids:
            lease = self.leases.pop(lease_id, None)
            if lease is not None and lease.permit is not None:
                self.breaker.cancel(lease.permit)
        self._pump()

    def _pump(self) -> None:
        """Let the breaker's line go as far as the breaker allows, then grant waiting requests while there
        is room in flight."""
        if self.blocked:
            self._unblock()
        while self.ready and self._room():
            self._advance(self.ready.popleft())

    def _unblock(self) -> None:
        """The breaker's line: requests past ``max_wait`` fail (typed); a closed breaker lets all go, a
        half-open one as many as it has trials left; the line is looked at again when due."""
        b = self.breaker
        turn = self.blocked.turn(self.clock(), b.state, b.trials_left(), b.retry_in())
        for wait in turn.expired:
            self._fail(wait, CircuitOpen(f"circuit breaker is {b.state.value} and stayed so for max_wait="
                                         f"{self.cfg.breaker.max_wait:g}s", self.cfg.qualified, wait.attempt + 1,
                                         retry_in=b.retry_in()), status=0)
        for wait in turn.go:
            self._advance(wait)
        if turn.check_in is not None:
            self._check_line(turn.check_in)

    def _check_line(self, seconds: float | None) -> None:
        """Look at the breaker's line in ``seconds`` (unless a look is due sooner); None: when it changes."""
        if seconds is None:
            return
        at = self.clock() + seconds
        if self.blocked_check is None or at < self.blocked_check:
            self.blocked_check = at
            self.send_after(seconds, _LineCheck(at))

    def _adapt(self, outcome: AttemptResult, sent_at: float) -> None:
        """The rate policy learns from every answer: advertised limits, 429s (decrease), successes (increase)."""
        rate = self.rate
        before, old_rpm = rate.source, rate.rpm
        if learn(rate, outcome, sent_at):
            self.limiter.set_limits(rate.rpm, rate.tpm, sliding_window=rate.source is RateSource.FIXED)
            if rate.rpm is not None and (old_rpm is None or rate.rpm < old_rpm):
                for wait in (*self.ready, *self.timed.values()):  # slots booked at the old rate: book again
                    wait.reservation = None
            if rate.source is not before:
                self._emit("rate_" + rate.source.value, f"rpm={_fmt(rate.rpm)} tpm={_fmt(rate.tpm)}")
        pause = remaining_pause(outcome.hints)  # no request left at the server: none until its next is due
        if pause is not None:
            self.limiter.pause(pause)

    def _fail(self, wait: Wait, error: LMError, status: int) -> None:
        self._book(wait, ok=False, status=status, error=type(error).__name__)
        self.errors[type(error).__name__] = self.errors.get(type(error).__name__, 0) + 1
        self.reply_error(wait.token, error)

    # --- accounting --------------------------------------------------------------------------------

    def _book(self, wait: Wait, *, ok: bool, status: int, error: str = "", hedge: bool = False) -> float:
        """Book a finished request: every attempt the provider counted, the unconfirmed ones at their
        maximum (and said so). Returns its cost."""
        prompt, completion = wait.billed
        calls, up, uc = wait.unconfirmed
        cost = cost_of(self.price, prompt, completion)
        self._account(UsageRecord(client=self.cfg.client_key, run=wait.run, ok=ok, cached=False, retries=wait.attempt,
                                  prompt_tokens=prompt, completion_tokens=completion, cost=cost, status=status,
                                  error=error, unconfirmed=calls, unconfirmed_tokens=up + uc,
                                  unconfirmed_cost=cost_of(self.price, up, uc), hedge=hedge))
        return cost

    def _account(self, rec: UsageRecord) -> None:
        self.totals = self.totals.record(rec)
        self.budgets.book(rec.run, rec.cost, rec.prompt_tokens + rec.completion_tokens)
        self.records.append(rec)
        self._tick("flush", FLUSH_EVERY)

    def _flush(self, token: CallToken | None) -> Any:
        if self.ledger is None:  # not found yet (or none): keep the records, answer at once
            if self.usage_waiters is not None:
                self._tick("flush", FLUSH_EVERY)
            else:
                self.records = []
            return True if token is not None else None
        corr = next(self.ids)
        self.flushes[corr] = [token] if token is not None else []
        self.budgets.sending(corr)
        self.send(self.ledger, Call(corr, RecordBatch(tuple(self.records))))
        self.records = []
        return NoReply

    def _on_ledger_reply(self, reply: Reply) -> None:
        if reply.corr == self.asked_parent:
            ledger = next((c.ref for c in reply.value if c.id == "ledger" and c.ref is not None), None)
            if ledger is None:
                raise RuntimeError("no running ledger beside this client")  # crash: the supervisor retries
            self.ledger = ledger.address
            corr = next(self.ids)
            self.flushes[corr] = []
            self.send(self.ledger, Call(corr, LedgerQuery(client=self.cfg.client_key)))
            return
        tokens = self.flushes.pop(reply.corr, None)
        if tokens is None:
            return
        if isinstance(reply.value, Booked):
            self.budgets.acknowledged(reply.corr, reply.value.budgets)
        if isinstance(reply.value, LedgerReport) and self.usage_waiters is not None:
            for budget, spent in reply.value.budgets.values():  # the run budgets opened before we started
                if budget.run not in self.budgets.budgets:
                    self.budgets.open(budget, spent)
            self.baseline = reply.value.by_client.get(self.cfg.client_key, UsageTotals())
            waiters, self.usage_waiters = self.usage_waiters, None
            for token in waiters:
                self.reply(token, self.baseline + self.totals)
        for token in tokens:
            self.reply(token, True)

    def _sweep(self) -> None:
        """Take back leases whose holder will never report: its process is gone (checked on this node),
        or the lease is older than any attempt can take (another node, a host lost). Frees their places
        and books each attempt at its maximum, unconfirmed: it may have reached the provider, which bills
        it. A parked request of a dead process is dropped (its earlier attempts booked)."""
        horizon = self.clock() - (self.cfg.timeout + 30.0)
        node = procfs.node_id()
        checked: dict[int, bool] = {}  # pid -> gone, looked up once a sweep (a process holds many leases)

        def exited(pid: int) -> bool:
            if pid not in checked:
                checked[pid] = procfs.gone(pid)
            return checked[pid]

        def dead(wait: Wait) -> bool:
            return holder_gone(wait, node, exited)

        for lease_id, lease, gone in to_take_back(self.leases, horizon, dead):
            del self.leases[lease_id]
            if lease.permit is not None:
                self.breaker.cancel(lease.permit)
            wait = lease.wait
            wait.add_maximum()
            self._book(wait, ok=False, status=0, error="LeaseTakenBack")
            remember(self.swept, lease_id)
            self.actor_log.warning("lease_expired", client=self.cfg.client_key, attempt=wait.attempt,
                                   why="holder process gone" if gone else "no report in time",
                                   booked_tokens=wait.max_prompt + wait.max_completion)
        orphans = {w.id: w for w in (*self.ready, *self.timed.values(), *self.blocked) if dead(w)}
        if orphans:
            self.ready = deque(w for w in self.ready if w.id not in orphans)
            self.blocked.drop(lambda w: w.id in orphans)
            for wait in orphans.values():
                self.timed.pop(wait.id, None)
                self._book(wait, ok=False, status=0, error="HolderGone")
        self._pump()
        if self.leases:
            self._tick("sweep", SWEEP_EVERY)

    def _tick(self, kind: str, seconds: float) -> None:
        if not self.timers[kind]:
            self.timers[kind] = True
            self.send_after(seconds, _Tick(kind))

    # --- telemetry ---------------------------------------------------------------------------------

    def _log_request(self, outcome: AttemptResult, retries: int) -> None:
        log = self.actor_log.debug if outcome.ok else self.actor_log.warning
        log("lm_request", provider=self.cfg.provider, model=self.cfg.model, status=outcome.status or outcome.kind,
            latency_s=round(outcome.latency_s, 4), prompt_tokens=outcome.prompt_tokens,
            completion_tokens=outcome.completion_tokens, retries=retries)

    def _on_breaker(self, change: BreakerChange) -> None:
        self._emit(f"breaker_{change.new.value}", change.reason, normal=change.new is not BreakerState.OPEN)
        if change.new is BreakerState.OPEN:
            self._recall()

    def _recall(self) -> None:
        """Leases held ahead are no longer leave to send (the breaker opened, or a 429 paused everyone):
        every holder watching hears it now and gives its leases back (``messages.Recall``)."""
        self.recalls += 1
        self._answer_recall_watchers()

    def _answer_recall_watchers(self) -> None:
        watchers, self.recall_watchers = self.recall_watchers, {}
        for token in watchers.values():
            self.reply(token, self.recalls)

    def _emit(self, kind: str, reason: str, normal: bool = True) -> None:
        self.emit_event(kind, subject=self.cfg.client_key, reason=reason, normal=normal)

    def terminate(self, reason: str) -> None:
        if self.records and self.ledger is not None:
            self.send(self.ledger, Call(next(self.ids), RecordBatch(tuple(self.records))))
            self.records = []


def _fmt(value: float | None) -> str:
    return "none" if value is None else f"{value:g}"


__all__ = ["ClientActor"]
