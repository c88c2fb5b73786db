"""Evaluation across processes: a coordinator actor hands out batches; worker actors pull them.

The coordinator and its workers are a pool (``feed.WorkerPool``) that serves one evaluation, or every
evaluation of a compile, several at once: each evaluation is a *run* opened on the coordinator with its
examples and its program and metric (pickled by value with cloudpickle). Each worker is a process
(``dspex: eval-worker N`` in ``ps``) that attaches to the runtime, unpickles a run's program the first
time it is handed one of its examples, and runs examples on threads, its LM calls going through the
shared client actors. The thread that does this is linked to the worker actor (``spawn_thread``): if it
dies, the worker exits abnormally with its reason and is restarted. A worker says hello when it starts
and tells the coordinator when it exits, so after a crash the coordinator re-queues what that worker had
in flight, in every run, at once (after kill -9, at the restart's hello; a worker that never comes back,
after ``lost_after``); a result for an example already done, or of a run closed since, is dropped.
"""

from __future__ import annotations

import functools
import math
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from supervision import CallTimeout, GenServer, NoReply
from supervision.messages import Cast

from ..clients.messages import ReportBatch
from ..telemetry.propagation import call_resumed, flush as flush_spans
from .async_runner import arun_example, on_pool, runs_async
from .runner import run_example
from ..programs.settings import setting
from ..utils import collector
from .result import EvalRow, timeout_row
from .tracker import Tracker

IDLE_WAIT = 0.5  # seconds an idle worker's call waits at the coordinator for work before it is answered empty
STOP_JOIN = 2.0  # seconds a stopping worker waits for its thread to close its runtime
PULL_TIMEOUT = 5.0  # seconds beyond its wait a worker's call to the coordinator may take before it is sent again
RELAY_EVERY = 0.1  # seconds relayed reports wait at most (for a poll that flushes them sooner)


@dataclass(frozen=True)
class Pace:
    """How often the workers of a pool talk to its coordinator, and Evaluate to it: the trade between a
    row's latency and the coordinator's cost an example. A busy worker calls when its oldest row has waited
    ``row_delay`` seconds or its threads are about to run dry, and at least every ``heartbeat`` seconds
    (an idle one waits at the coordinator); it keeps queued what it finishes in ``row_delay`` besides twice
    its threads, so a thread never waits for a round trip. Evaluate's poll waits at the coordinator up to
    ``poll`` seconds (answered as soon as rows come) and it pauses ``gather`` seconds after a poll that
    brought rows, letting more gather. A worker's LM calls hold leases for ``lease_ahead`` seconds of
    their need, asked for together, so they do not each cross to the client actor; with ``relay_reports`` the
    reports of their successes go with the rows, and the coordinator hands each client actor those of every
    worker in one message (before Evaluate sees the rows: the ledger has a row's calls when the row counts)."""

    row_delay: float = 0.02
    heartbeat: float = 1.0
    gather: float = 0.02
    poll: float = 0.1
    idle_wait: float = IDLE_WAIT  # seconds an idle worker's call waits at the coordinator for work
    lease_ahead: float = 0.0  # seconds of LM admissions a worker holds leases for ahead (clients/ahead.py)
    relay_reports: bool = False  # a worker's LM success reports travel with its rows, the coordinator relays them

    @classmethod
    def for_hosts(cls, lost_after: float) -> "Pace":
        """Workers on other hosts: the leader hears from each about once a second, not once an example (its
        cost an example must stay flat as hosts are added): a call to the coordinator (rows, their LM reports,
        more work) every ``row_delay``, at least twice within ``lost_after`` so a lost host is told in time,
        and an admission to the client actor for two seconds of LM calls at a time (``lease_ahead``; the
        actor recalls them at once when its breaker opens or a 429 pauses everyone). Evaluate collects the
        rows of all hosts (and the coordinator hands on their LM reports) twice a second."""
        return cls(row_delay=1.0, heartbeat=min(1.0, lost_after / 2), gather=0.5, poll=1.0, idle_wait=5.0,
                   lease_ahead=2.0, relay_reports=True)


@dataclass(frozen=True)
class Hello:
    worker: str


@dataclass(frozen=True)
class WorkerDown:
    """Sent by a worker as it exits (crash or stop): what it had in flight goes back to the queue now."""

    worker: str
    reason: str


@dataclass(frozen=True)
class OpenRun:
    """An evaluation for the pool. ``done``: indices finished already (resumed); ``running``: examples of
    this run each worker runs at once at most (its share of the evaluation's concurrency); the
    coordinator keeps at most twice that per worker in flight (running, or queued at a worker so a
    thread never waits for a round trip)."""

    run: str
    payload: bytes  # cloudpickle of (program, metric)
    examples: list
    done: tuple
    running: int
    timeout: float | None
    retry_timeouts: bool
    trace: dict | None = None  # the evaluation's trace context (dspex.telemetry.propagation)
    engine: str = "auto"  # how a worker runs its examples (Evaluate's engine)


@dataclass(frozen=True)
class CloseRun:
    """The evaluation is over: its state goes; a late row of it is dropped."""

    run: str


@dataclass(frozen=True)
class Pull:
    """Up to ``n`` more examples for ``worker``; ``rows`` are its results since the last call, as
    ``(run, EvalRow)``; ``known``: the runs whose program it holds. With none to give, the answer waits
    up to ``wait`` seconds for some (a run opening, a lost worker's examples coming back)."""

    worker: str
    n: int
    rows: tuple = ()
    known: frozenset = frozenset()
    wait: float = 0.0
    ahead: int = 0  # examples it finishes between two calls: held beyond twice its share of each run
    reports: tuple = ()  # ((client actor address, (Report, ...)), ...): its LM calls' success reports, to relay


@dataclass(frozen=True)
class Batch:
    items: tuple  # ((run, index, example, attempts), ...)
    programs: dict = field(default_factory=dict)  # run -> RunProgram, for runs in items the worker lacks
    runs: frozenset = frozenset()  # the runs open now: a worker forgets the others' programs


@dataclass(frozen=True)
class RunProgram:
    payload: bytes
    trace: dict | None
    running: int
    engine: str = "auto"


@dataclass(frozen=True)
class SweepAndCollect:
    """Evaluate's poll of one run, and it changes things: workers silent too long lose their examples
    (re-queued, in every run), the run's overdue examples are failed as ExampleTimeout rows; the reply
    carries the run's rows finished since, and waits up to ``wait`` seconds for the first of them."""

    run: str
    wait: float = 0.0


@dataclass(frozen=True)
class _Relay:
    """Time to hand the client actors the success reports the workers sent in."""


@dataclass(frozen=True)
class _Expire:
    """A parked call's wait is over: answer it with what there is."""

    key: int


@dataclass(frozen=True)
class Progress:
    rows: tuple
    counts: dict
    finished: bool


@dataclass(frozen=True)
class CancelRun:
    run: str


@dataclass
class _Run:
    """The coordinator's state of one open evaluation."""

    examples: list
    tracker: Tracker
    program: RunProgram
    started: float
    fresh: list = field(default_factory=list)  # rows finished since the last poll
    cancelled: bool = False


class EvalCoordinator(GenServer):
    """Owns a Tracker per open run: pending / in flight (per worker) / done. Workers call in at least
    every ``Pace.heartbeat`` seconds; one silent for ``lost_after`` (its host gone, its process hung) loses its
    examples to the others, and a result it sends later counts only if nobody finished them first."""

    title_prefix = "dspex"

    def init(self, lost_after: float = 10.0) -> None:
        self.runs: dict[str, _Run] = {}
        self.turn = 0  # which run is served first in the next batch (runs take turns)
        self.lost_after = lost_after
        self.seen: dict[str, float] = {}  # worker -> last call
        self.heard = float("-inf")  # the last call of any worker
        # calls answered later (long polls): idle workers' Pulls and runs' polls, each with its timer's key
        self.idle: dict[str, tuple[Any, Pull, int]] = {}  # worker -> (token, request, key)
        self.polls: dict[str, tuple[Any, int]] = {}  # run -> (token, key)
        self.keys = 0
        self.relayed: dict[str, tuple[Any, list]] = {}  # client actor (as text) -> (its address, reports to hand it)
        self.relay_due = False  # a _Relay timer is set

    def handle_call(self, request: Any) -> Any:
        now = time.monotonic()
        match request:
            case OpenRun(run=run) if run in self.runs:
                raise ValueError(f"run {run!r} is open on this pool already")
            case OpenRun():
                tracker = Tracker(len(request.examples), request.timeout, request.retry_timeouts)
                tracker.skip(request.done)
                self.runs[request.run] = _Run(request.examples, tracker, RunProgram(
                    request.payload, request.trace, request.running, request.engine), now)
                self._serve_idle(now)
                return True
            case CloseRun(run=run):
                self.runs.pop(run, None)
                self._answer_poll(run, now)
                return True
            case Hello(worker=worker):
                self.seen[worker] = self.heard = now
                self.idle.pop(worker, None)  # a call of its previous life: nobody waits for that answer
                self._lost(worker, "worker_restarted", now)
                return True
            case Pull(worker=worker, rows=rows):
                self.seen[worker] = self.heard = now
                self._take_reports(request.reports)
                self._finish(rows, now)
                batch = self._batch(request, now)
                if batch.items or request.wait <= 0:
                    return batch
                self.idle[worker] = (self.current_call, request, self._timer(request.wait))
                return NoReply
            case SweepAndCollect(run=run):
                progress = self._sweep_and_collect(run, now)
                if progress.rows or progress.finished or request.wait <= 0:
                    return progress
                self.polls[run] = (self.current_call, self._timer(request.wait))
                return NoReply
            case CancelRun(run=run):
                if run in self.runs:
                    self.runs[run].cancelled = True
                self._answer_poll(run, now)
                return True
        return super().handle_call(request)

    def handle_info(self, message: Any) -> None:
        now = time.monotonic()
        match message:
            case WorkerDown(worker=worker, reason=reason):
                self.idle.pop(worker, None)
                self._lost(worker, "worker_down", now, reason=reason)
            case _Relay():
                self.relay_due = False
                self._relay()
            case _Expire(key=key):
                for worker, (token, request, k) in list(self.idle.items()):
                    if k == key:
                        del self.idle[worker]
                        self.seen[worker] = now  # (it waited on us: its silence starts now)
                        self.reply(token, self._batch(request, now))
                for run, (_, k) in list(self.polls.items()):
                    if k == key:
                        self._answer_poll(run, now)
            case _:
                super().handle_info(message)

    def _timer(self, seconds: float) -> int:
        self.keys += 1
        self.send_after(seconds, _Expire(self.keys))
        return self.keys

    def _batch(self, request: Pull, now: float) -> Batch:
        items = self._take(request.worker, request.n, now, request.ahead)
        programs = {run: self.runs[run].program for run in {item[0] for item in items} - request.known}
        return Batch(items, programs, frozenset(self.runs))

    def _serve_idle(self, now: float) -> None:
        """Examples to hand out (a run opened, examples re-queued): answer the idle workers waiting."""
        for worker, (token, request, _) in list(self.idle.items()):
            batch = self._batch(request, now)
            if batch.items:
                del self.idle[worker]
                self.seen[worker] = now  # (it waited on us: if it died meanwhile, lost_after from now)
                self.reply(token, batch)

    def terminate(self, reason: str) -> None:
        self._relay()  # reports kept for the client actors are theirs, whatever happens to this pool

    def _take_reports(self, reports: tuple) -> None:
        """Keep a worker's success reports for their client actors (handed on by ``_relay``)."""
        for address, batch in reports:  # (a Thespian address is not hashable)
            self.relayed.setdefault(str(address), (address, []))[1].extend(batch)
        if reports and not self.relay_due:
            self.relay_due = True
            self.send_after(RELAY_EVERY, _Relay())

    def _relay(self) -> None:
        """Hand each client actor the reports kept for it, one message each."""
        relayed, self.relayed = self.relayed, {}
        for address, reports in relayed.values():
            self.send(address, Cast(ReportBatch(tuple(reports))))

    def _answer_poll(self, run: str, now: float) -> None:
        """Answer the poll of ``run`` waiting, if one is (a closed run's with what it had: nothing more)."""
        waiting = self.polls.pop(run, None)
        if waiting is not None:
            if run in self.runs:
                self.reply(waiting[0], self._sweep_and_collect(run, now))
            else:
                self.reply(waiting[0], Progress((), {"done": 0, "in_flight": 0, "pending": 0, "duplicates": 0,
                                                     "live_workers": len(self.seen), "alone_s": 0.0}, True))

    def _lost(self, worker: str, event: str, now: float, **details: Any) -> None:
        """What ``worker`` had in flight, in every run, goes back to the front of its run's queue."""
        requeued = sum(len(run.tracker.worker_lost(worker)) for run in self.runs.values())
        if requeued:
            self.actor_log.warning(event, worker=worker, requeued=requeued, **details)
            self._serve_idle(now)

    def _take(self, worker: str, n: int, now: float, ahead: int = 0) -> tuple:
        """Up to ``n`` examples for ``worker``, the open runs taking turns, none past its in-flight share
        (twice its running share, and the ``ahead`` it finishes between two calls)."""
        order = list(self.runs.items())
        if not order:
            return ()
        self.turn = (self.turn + 1) % len(order)
        order = order[self.turn:] + order[:self.turn]
        items: list = []
        while len(items) < n:
            before = len(items)
            for name, run in order:
                held = sum(1 for holder, _ in run.tracker.in_flight.values() if holder == worker)
                room = 2 * run.program.running + ahead - held
                share = min(room, max(1, (n - len(items)) // len(order)), n - len(items))
                if run.cancelled or share <= 0:
                    continue
                items.extend((name, i, run.examples[i], run.tracker.attempts[i])
                             for i in run.tracker.take(worker, share, now))
            if len(items) == before:
                break
        return tuple(items)

    def _sweep_and_collect(self, name: str, now: float) -> Progress:
        self._relay()  # the rows' calls reach their client actors before Evaluate gets the rows
        # a worker whose call waits here for work is not silent: it holds no example, and it is answered (then
        # counted from) when work comes or its wait is over
        for silent in [w for w, t in self.seen.items() if now - t > self.lost_after and w not in self.idle]:
            del self.seen[silent]
            self._lost(silent, "worker_lost", now, silent_s=self.lost_after)
        run = self.runs.get(name)
        if run is None:
            raise LookupError(f"no run {name!r} is open on this pool")
        failed, retried = run.tracker.overdue(now)
        if retried:
            self._serve_idle(now)
        for i in failed:
            holder = run.tracker.in_flight.get(i, ("coordinator",))[0]
            if run.tracker.finish(i):
                run.fresh.append(timeout_row(i, run.examples[i], run.tracker.attempts.get(i, 1), holder))
        rows, run.fresh = tuple(run.fresh), []
        # alone_s: how long the run has been without any worker calling in (all hosts lost, say)
        counts = {**run.tracker.counts(), "live_workers": len(self.seen),
                  "alone_s": 0.0 if self.seen else now - max(self.heard, run.started)}
        return Progress(rows, counts, run.tracker.finished)

    def _finish(self, rows: tuple, now: float) -> None:
        for name, row in rows:
            run = self.runs.get(name)
            if run is not None and run.tracker.finish(row.index):  # (a closed run's late row is dropped)
                run.fresh.append(row)
        for name in {name for name, _ in rows} & set(self.polls):
            self._answer_poll(name, now)


class EvalWorker(GenServer):
    """A process that pulls batches of any open run and runs them on up to ``concurrency`` threads, each
    run's examples on at most its ``running`` share of them."""

    title_prefix = "dspex"

    def init(self, worker: str, info: Any, concurrency: int, coordinator: str, pace: Pace = Pace()) -> None:
        self.worker, self.info, self.concurrency, self.coordinator = worker, info, concurrency, coordinator
        self.pace = pace
        self.stopping = threading.Event()
        self.wake = threading.Event()  # set when a running example finishes (or the worker stops)
        self.rt: Any = None  # the attached runtime (made by the worker thread)
        self.coord: Any = None  # the coordinator's address, once the worker thread has found it
        self.programs: dict[str, tuple] = {}  # run -> (program, metric, RunProgram), as unpickled here
        self.thread = self.spawn_thread(self._loop, name=f"eval-{worker}")  # its crash is this actor's crash

    def terminate(self, reason: str) -> None:
        self.stopping.set()
        self.wake.set()
        if self.coord is not None:  # what this worker had in flight is nobody's now: re-queued at once
            self.send(self.coord, WorkerDown(self.worker, reason))
        # the worker thread leaves its loop at once and closes its runtime: pending reports sent, leases held
        # ahead given back (not swept as lost), the cache written; only a thread stuck in a call is not waited for
        self.thread.join(STOP_JOIN)
        if self.rt is not None and self.thread.is_alive():  # the process may end first: write what is pending
            self.rt.engines.give_back()
            self.rt.engines.flush()
            self.rt.engines.response_cache().close()
        flush_spans()

    def _loop(self) -> None:
        from ..runtime import Runtime

        rt = self.rt = Runtime.attach(self.info)
        rt.engines.lease_ahead = self.pace.lease_ahead  # before the first pipeline is made
        try:
            coord = rt.actors.whereis(self.coordinator)
            if coord is None:
                raise LookupError(f"no coordinator registered as {self.coordinator!r}")
            coord = self.coord = coord.address
            rt.actors.call(coord, Hello(self.worker), 30.0)
            self._work(rt, coord)
        finally:  # a failure goes on up: the linked thread's crash is the worker's exit (then a restart)
            rt.close()

    def _learn(self, rt: Any, batch: Batch) -> None:
        """Unpickle the programs of runs new to this worker, bound to this process's runtime; forget
        those of runs closed since."""
        import cloudpickle

        from ..clients.foreign_lm import is_dspex_lm

        for run in [r for r in self.programs if r not in batch.runs]:
            del self.programs[run]
        for run, sent in batch.programs.items():
            program, metric = cloudpickle.loads(sent.payload)
            bound: set[int] = set()
            for predictor in getattr(program, "predictors", lambda: [])():
                if predictor.lm is not None and id(predictor.lm) not in bound and is_dspex_lm(predictor.lm):
                    predictor.lm.bind(rt)  # (an LM object of the user's own needs no runtime)
                    bound.add(id(predictor.lm))
            # the handles of client actors a module holds (a Retrieve's dspex.ColBERTv2, a RAG module's
            # Embeddings over an HTTP dspex.Embedder): bound to this runtime, as the LMs are
            for module in [program, *(m for _, m in getattr(program, "named_sub_modules", lambda: [])())]:
                for handle in list(vars(module).values()):
                    if getattr(type(handle), "client_handle", False) and id(handle) not in bound:
                        handle.bind(rt)
                        bound.add(id(handle))
            on_loop = sent.engine == "async" or (sent.engine == "auto" and runs_async(program, setting("lm")))
            self.programs[run] = (program, metric, sent, on_loop)

    def _work(self, rt: Any, coord: Any) -> None:
        """Keep the threads busy and enough examples queued (so a thread never waits for a round trip);
        one call to the coordinator both returns finished rows and takes more (``Pace``). Runs until stopped,
        the process's garbage collector paced for many examples in flight (``collector.relaxed``)."""
        with collector.relaxed(self.concurrency):
            self._run_examples(rt, coord)

    def _run_examples(self, rt: Any, coord: Any) -> None:
        pace = self.pace
        running: dict[Future, str] = {}  # future -> its run
        per_run: dict[str, int] = {}  # run -> its examples running here
        queued: deque = deque()  # handed to us, not started yet: still ours (in flight) at the coordinator
        rows: list[tuple[str, EvalRow]] = []
        first_row_at = 0.0
        last_call = float("-inf")
        drained = False  # the last call got less than it asked for: the coordinator has no more for now
        rate = 0.0  # rows a second finished here (smoothed over calls)
        resync = False  # a call went unanswered: what the coordinator handed us in a lost answer is lost to us
        pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix=f"{self.worker}-ex")
        try:
            while not self.stopping.is_set():
                now = time.monotonic()
                ahead = math.ceil(rate * pace.row_delay)
                want = 2 * self.concurrency + ahead - len(running) - len(queued)
                busy = bool(running or queued)
                starving = len(running) + len(queued) < self.concurrency and (
                    not drained or now - last_call > pace.row_delay)
                if ((rows and (not busy or now - first_row_at > pace.row_delay))
                        or starving or now - last_call > pace.heartbeat):
                    if resync:  # as after a restart: the coordinator hands out again what it counts as ours
                        try:
                            rt.actors.call(coord, Hello(self.worker), PULL_TIMEOUT)
                        except CallTimeout:
                            self.actor_log.warning("coordinator_unanswered", waited_s=PULL_TIMEOUT)
                            last_call = time.monotonic()
                            continue
                        resync = False
                    relayed: tuple = ()
                    if rows:
                        if pace.relay_reports:  # the rows' calls go with them (the coordinator hands them on)
                            relayed = tuple(rt.engines.take_reports())
                        rt.engines.flush()  # the ledger has a row's calls before the row counts
                        if not busy:
                            flush_spans()  # an idle moment: the rows' spans go out before the rows
                    # idle, the call waits at the coordinator until there is work (or idle_wait passes)
                    pull = Pull(self.worker, max(0, want), tuple(rows), frozenset(self.programs),
                                0.0 if busy else pace.idle_wait, ahead, relayed)
                    try:
                        batch = rt.actors.call(coord, pull, pull.wait + PULL_TIMEOUT, patience=pull.wait)
                    except CallTimeout:  # lost on the way (a link down): the same rows go with the next call
                        rt.engines.put_back_reports(list(relayed))
                        self.actor_log.warning("coordinator_unanswered", rows=len(rows),
                                               waited_s=pull.wait + PULL_TIMEOUT)
                        last_call, resync = time.monotonic(), True
                        continue
                    except BaseException:  # the rows come again elsewhere; the calls' reports must not be lost
                        rt.engines.put_back_reports(list(relayed))
                        raise
                    took = time.monotonic()
                    if rows and took > last_call:  # (the rows it just sent are those finished since the last)
                        rate = 0.5 * rate + 0.5 * len(rows) / max(took - last_call, pace.row_delay)
                    rows, last_call = [], took
                    drained = len(batch.items) < want
                    self._learn(rt, batch)
                    queued.extend(batch.items)
                self._start(pool, queued, running, per_run)
                # sleep until an example finishes or the next call is due (not a poll: a host's worker is
                # mostly waiting, and its wake-ups are CPU its machine's other work does not get)
                due = last_call + pace.heartbeat
                if rows:
                    due = min(due, first_row_at + pace.row_delay)
                if len(running) + len(queued) < self.concurrency:
                    due = min(due, last_call + pace.row_delay)
                self.wake.wait(max(0.0, due - time.monotonic()))
                self.wake.clear()
                for f in [f for f in running if f.done()]:
                    if not rows:
                        first_row_at = time.monotonic()
                    run = running.pop(f)
                    per_run[run] -= 1
                    rows.append((run, f.result()))  # run_example raises only what must stop the worker (Ctrl-C's kind)
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)  # the crash is reported now, not after the rest finish
            raise
        pool.shutdown(wait=False, cancel_futures=True)

    def _start(self, pool: ThreadPoolExecutor, queued: deque, running: dict, per_run: dict) -> None:
        """Start queued examples on free threads, in order, each run within its share of them."""
        waiting: deque = deque()
        while queued and len(running) < self.concurrency:
            item = queued.popleft()
            run, index, example, attempts = item
            if run not in self.programs:  # closed while queued here: its rows are not wanted any more
                continue
            program, metric, sent, on_loop = self.programs[run]
            if per_run.get(run, 0) >= sent.running:
                waiting.append(item)
                continue
            per_run[run] = per_run.get(run, 0) + 1
            if on_loop:  # a task on this process's event loop; its metric on the pool's threads
                row = arun_example(program, metric, index, example, self.worker, attempts, run,
                                   functools.partial(on_pool, pool))
                future = call_resumed(sent.trace, self.rt.engines.loop.submit, row)
            else:
                future = pool.submit(call_resumed, sent.trace, run_example, program, metric, index, example,
                                     self.worker, attempts, run)
            running[future] = run
            future.add_done_callback(lambda _: self.wake.set())
        queued.extendleft(reversed(waiting))


__all__ = ["Pace", "EvalCoordinator", "EvalWorker", "Hello", "Pull", "WorkerDown", "OpenRun", "CloseRun", "RunProgram",
           "Batch", "SweepAndCollect", "Progress", "CancelRun"]
