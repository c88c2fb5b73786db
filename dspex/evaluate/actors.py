"""Evaluation across processes: a coordinator actor hands out batches; worker actors pull them.

Each worker is a process (``dspex: eval-worker N`` in ``ps``) that attaches to the runtime, unpickles
the program and metric (sent by value with cloudpickle), and runs its examples on threads, its LM calls
going through the shared client actors. The thread that does this is linked to the worker actor
(``spawn_thread``): if it dies, the worker exits abnormally with its reason and is restarted. A worker
says hello when it starts and tells the coordinator when it exits, so after a crash the coordinator
re-queues what that worker had in flight at once (after kill -9, at the restart's hello; a worker that
never comes back, after ``lost_after``); a result for an example already done is dropped.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from supervision import GenServer

from ..telemetry.propagation import call_resumed, flush as flush_spans
from .runner import run_example
from .result import EvalRow, timeout_row
from .tracker import Tracker

HEARTBEAT = 1.0  # seconds: a worker calls the coordinator at least this often, busy or not
ROWS_PER_CALL = 8  # a worker sends its finished rows once it has this many...
ROW_DELAY = 0.02  # ...or the oldest has waited this long (seconds)


@dataclass(frozen=True)
class Hello:
    worker: str


@dataclass(frozen=True)
class WorkerDown:
    """Sent by a worker as it exits (crash or stop): what it had in flight goes back to the queue now."""

    worker: str
    reason: str


@dataclass(frozen=True)
class Pull:
    """Up to ``n`` more examples for ``worker``; ``rows`` are its results since the last call."""

    worker: str
    n: int
    rows: tuple = ()


@dataclass(frozen=True)
class Batch:
    items: tuple  # ((index, example, attempts), ...)
    finished: bool = False


@dataclass(frozen=True)
class SweepAndCollect:
    """Evaluate's poll, and it changes things: workers silent too long lose their examples (re-queued),
    overdue examples are failed as ExampleTimeout rows; the reply carries the rows finished since."""


@dataclass(frozen=True)
class Progress:
    rows: tuple
    counts: dict
    finished: bool


@dataclass(frozen=True)
class CancelRun:
    pass


class EvalCoordinator(GenServer):
    """Owns the Tracker: pending / in flight (per worker) / done. Workers call in at least every
    HEARTBEAT seconds; one silent for ``lost_after`` (its host gone, its process hung) loses its
    examples to the others, and a result it sends later counts only if nobody finished them first."""

    title_prefix = "dspex"

    def init(self, examples: list, timeout: float | None, retry_timeouts: bool, done: list,
             lost_after: float = 10.0) -> None:
        self.examples = examples
        self.tracker = Tracker(len(examples), timeout, retry_timeouts)
        self.tracker.skip(done)
        self.fresh: list[EvalRow] = []
        self.cancelled = False
        self.lost_after = lost_after
        self.seen: dict[str, float] = {}  # worker -> last call
        self.started = time.monotonic()

    def handle_call(self, request: Any) -> Any:
        now = time.monotonic()
        match request:
            case Hello(worker=worker):
                self.seen[worker] = now
                requeued = self.tracker.worker_lost(worker)
                if requeued:
                    self.actor_log.warning("worker_restarted", worker=worker, requeued=len(requeued))
                return True
            case Pull(worker=worker, n=n, rows=rows):
                self.seen[worker] = now
                self._finish(rows)
                if self.cancelled:
                    return Batch((), finished=True)
                idx = self.tracker.take(worker, n, now)
                return Batch(tuple((i, self.examples[i], self.tracker.attempts[i]) for i in idx), self.tracker.finished)
            case SweepAndCollect():
                return self._sweep_and_collect(now)
            case CancelRun():
                self.cancelled = True
                return True
        return super().handle_call(request)

    def handle_info(self, message: Any) -> None:
        match message:
            case WorkerDown(worker=worker, reason=reason):
                requeued = self.tracker.worker_lost(worker)
                if requeued:
                    self.actor_log.warning("worker_down", worker=worker, reason=reason, requeued=len(requeued))
            case _:
                super().handle_info(message)

    def _sweep_and_collect(self, now: float) -> Progress:
        for silent in [w for w, t in self.seen.items() if now - t > self.lost_after]:
            del self.seen[silent]
            requeued = self.tracker.worker_lost(silent)
            self.actor_log.warning("worker_lost", worker=silent, silent_s=self.lost_after, requeued=len(requeued))
        failed, _ = self.tracker.overdue(now)
        for i in failed:
            holder = self.tracker.in_flight.get(i, ("coordinator",))[0]
            if self.tracker.finish(i):
                self.fresh.append(timeout_row(i, self.examples[i], self.tracker.attempts.get(i, 1), holder))
        rows, self.fresh = tuple(self.fresh), []
        counts = {**self.tracker.counts(), "live_workers": len(self.seen), "age_s": now - self.started}
        return Progress(rows, counts, self.tracker.finished)

    def _finish(self, rows: tuple) -> None:
        for row in rows:
            if self.tracker.finish(row.index):
                self.fresh.append(row)


class EvalWorker(GenServer):
    """A process that pulls batches and runs them on ``concurrency`` threads."""

    title_prefix = "dspex"

    def init(self, worker: str, info: Any, payload: bytes, concurrency: int, coordinator: str,
             run: str | None = None, trace: dict[str, str] | None = None) -> None:
        self.worker, self.info, self.payload, self.concurrency = worker, info, payload, concurrency
        self.coordinator, self.run = coordinator, run
        self.trace = trace  # the evaluation's trace context (dspex.telemetry.propagation): rows are its children
        self.stopping = threading.Event()
        self.rt: Any = None  # the attached runtime (made by the worker thread)
        self.coord: Any = None  # the coordinator's address, once the worker thread has found it
        self.thread = self.spawn_thread(self._loop, name=f"eval-{worker}")  # its crash is this actor's crash

    def terminate(self, reason: str) -> None:
        self.stopping.set()
        if self.coord is not None:  # what this worker had in flight is nobody's now: re-queued at once
            self.send(self.coord, WorkerDown(self.worker, reason))
        if self.rt is not None:  # the process may end before the worker thread does: write what is pending
            self.rt.engines.flush()
            self.rt.engines.response_cache().close()
        flush_spans()

    def _loop(self) -> None:
        import cloudpickle

        from ..clients.foreign_lm import is_dspex_lm
        from ..runtime import Runtime

        rt = self.rt = Runtime.attach(self.info)
        try:
            program, metric = cloudpickle.loads(self.payload)
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
            coord = rt.actors.whereis(self.coordinator)
            if coord is None:
                raise LookupError(f"no coordinator registered as {self.coordinator!r}")
            coord = self.coord = coord.address
            rt.actors.call(coord, Hello(self.worker), 30.0)
            self._work(rt, coord, program, metric)
        finally:  # a failure goes on up: the linked thread's crash is the worker's exit (then a restart)
            rt.close()

    def _work(self, rt: Any, coord: Any, program: Any, metric: Any) -> None:
        """Keep ``concurrency`` examples running and as many queued (so a thread never waits for a round
        trip); one call to the coordinator both returns finished rows and takes more."""
        running: dict[Future, int] = {}
        queued: deque = deque()  # handed to us, not started yet: still ours (in flight) at the coordinator
        rows: list[EvalRow] = []
        first_row_at = 0.0
        finished = False
        last_call = float("-inf")
        pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix=f"{self.worker}-ex")
        try:
            while not self.stopping.is_set() and (running or queued or rows or not finished):
                now = time.monotonic()
                want = 0 if finished else 2 * self.concurrency - len(running) - len(queued)
                if ((rows and (len(rows) >= ROWS_PER_CALL or now - first_row_at > ROW_DELAY))
                        or want >= max(1, self.concurrency // 2) or (want > 0 and not running and not queued)
                        or now - last_call > HEARTBEAT):
                    if rows:
                        rt.engines.flush()  # the ledger has a row's calls before the row counts
                    batch = rt.actors.call(coord, Pull(self.worker, want, tuple(rows)), 30.0)
                    rows, last_call = [], time.monotonic()
                    finished = finished or (batch.finished and not batch.items)
                    queued.extend(batch.items)
                while queued and len(running) < self.concurrency:
                    index, example, attempts = queued.popleft()
                    running[pool.submit(call_resumed, self.trace, run_example, program, metric, index, example,
                                        self.worker, attempts, self.run)] = index
                if not running:
                    time.sleep(0.01)
                    continue
                done, _ = wait(list(running), timeout=ROW_DELAY, return_when=FIRST_COMPLETED)
                for f in done:
                    if not rows:
                        first_row_at = time.monotonic()
                    rows.append(f.result())  # run_example raises only what must stop the worker (Ctrl-C's kind)
                    del running[f]
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)  # the crash is reported now, not after the rest finish
            raise
        pool.shutdown(wait=True)
        flush_spans()  # the rows' spans are out before the run ends


__all__ = ["EvalCoordinator", "EvalWorker", "Hello", "Pull", "WorkerDown", "Batch", "SweepAndCollect", "Progress",
           "CancelRun"]
