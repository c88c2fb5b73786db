"""Evaluation across processes: a coordinator actor hands out batches; worker actors pull them.

Each worker is a process (``dspex: eval-worker N`` in ``ps``) that attaches to the runtime, unpickles
the program and metric (sent by value with cloudpickle), and runs its examples on threads, its LM calls
going through the shared client actors. It says hello when it starts, so after a crash or kill -9 the
coordinator re-queues what that worker had in flight; a result for an example already done is dropped.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from supervision import GenServer
from supervision.messages import WhichChildren

from .engine import run_example
from .result import EvalRow, ExampleTimeout
from .tracker import Tracker

_RUNS = itertools.count(1)


@dataclass(frozen=True)
class Hello:
    worker: str


@dataclass(frozen=True)
class Pull:
    worker: str
    n: int


@dataclass(frozen=True)
class Batch:
    items: tuple  # ((index, example, attempts), ...)
    finished: bool = False


@dataclass(frozen=True)
class Results:
    worker: str
    rows: tuple


@dataclass(frozen=True)
class GetProgress:
    pass


@dataclass(frozen=True)
class Progress:
    rows: tuple
    counts: dict
    finished: bool


@dataclass(frozen=True)
class CancelRun:
    pass


class EvalCoordinator(GenServer):
    """Owns the Tracker: pending / in flight (per worker) / done."""

    title_prefix = "dspex"

    def init(self, examples: list, timeout: float | None, retry_timeouts: bool, done: list) -> None:
        self.examples = examples
        self.tracker = Tracker(len(examples), timeout, retry_timeouts)
        self.tracker.skip(done)
        self.fresh: list[EvalRow] = []
        self.cancelled = False

    def handle_call(self, request: Any) -> Any:
        now = time.monotonic()
        if isinstance(request, Hello):
            requeued = self.tracker.worker_lost(request.worker)
            if requeued:
                self.actor_log.warning("worker_restarted", worker=request.worker, requeued=len(requeued))
            return True
        if isinstance(request, Pull):
            if self.cancelled:
                return Batch((), finished=True)
            idx = self.tracker.take(request.worker, request.n, now)
            return Batch(tuple((i, self.examples[i], self.tracker.attempts[i]) for i in idx), self.tracker.finished)
        if isinstance(request, Results):
            for row in request.rows:
                if self.tracker.finish(row.index):
                    self.fresh.append(row)
            return True
        if isinstance(request, GetProgress):
            failed, _ = self.tracker.overdue(now)
            for i in failed:
                if self.tracker.finish(i):
                    self.fresh.append(EvalRow(i, self.examples[i], None, 0.0, ExampleTimeout(
                        f"example {i} ran past timeout_per_example"), self.tracker.attempts.get(i, 1), "coordinator"))
            rows, self.fresh = tuple(self.fresh), []
            return Progress(rows, self.tracker.counts(), self.tracker.finished)
        if isinstance(request, CancelRun):
            self.cancelled = True
            return True
        return super().handle_call(request)


class EvalWorker(GenServer):
    """A process that pulls batches and runs them on ``concurrency`` threads."""

    title_prefix = "dspex"

    def init(self, worker: str, info: Any, payload: bytes, concurrency: int) -> None:
        self.worker, self.info, self.payload, self.concurrency = worker, info, payload, concurrency
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._loop, name=f"eval-{worker}", daemon=True)
        self.thread.start()

    def terminate(self, reason: str) -> None:
        self.stopping.set()

    def _loop(self) -> None:
        import cloudpickle

        from ..runtime import Runtime

        rt = Runtime.attach(self.info)
        try:
            program, metric = cloudpickle.loads(self.payload)
            bound: set[int] = set()
            for predictor in getattr(program, "predictors", lambda: [])():
                if predictor.lm is not None and id(predictor.lm) not in bound:
                    predictor.lm.bind(rt)
                    bound.add(id(predictor.lm))
            siblings = rt.actors.call(self._sv_parent, WhichChildren(), 30.0)
            coord = next(c.ref.address for c in siblings if c.id == "coordinator" and c.ref is not None)
            rt.actors.call(coord, Hello(self.worker), 30.0)
            self._work(rt, coord, program, metric)
        except Exception as exc:  # noqa: BLE001 - logged; the coordinator's timeouts and a restart recover
            self.actor_log.error("eval_worker_failed", worker=self.worker, error=f"{type(exc).__name__}: {exc}")
        finally:
            rt.close()

    def _work(self, rt: Any, coord: Any, program: Any, metric: Any) -> None:
        running: dict[Future, int] = {}
        finished = False
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix=f"{self.worker}-ex") as pool:
            while not self.stopping.is_set() and not (finished and not running):
                free = self.concurrency - len(running)
                if free > 0 and not finished:
                    batch = rt.actors.call(coord, Pull(self.worker, free), 30.0)
                    finished = batch.finished and not batch.items
                    for index, example, attempts in batch.items:
                        fut = pool.submit(run_example, program, metric, index, example, self.worker, attempts)
                        running[fut] = index
                if not running:
                    time.sleep(0.05)
                    continue
                done, _ = wait(list(running), timeout=0.1, return_when=FIRST_COMPLETED)
                rows = tuple(f.result() for f in done)
                for f in done:
                    del running[f]
                if rows:
                    rt.actors.call(coord, Results(self.worker, rows), 30.0)


class WorkerFeed:
    """Evaluate's side of a worker run: starts the evaluation supervisor, polls the coordinator for rows."""

    def __init__(self, rt: Any, program: Any, metric: Any, examples: list, done: list, workers: int,
                 concurrency: int, timeout: float | None, retry_timeouts: bool) -> None:
        import cloudpickle

        from supervision import ChildSpec, SupervisorSpec

        from ..errors import ConfigError

        try:
            payload = cloudpickle.dumps((program, metric))
        except Exception as exc:  # noqa: BLE001 - any pickling failure gets the same clear message
            raise ConfigError(f"cannot send the program and metric to worker processes ({type(exc).__name__}: "
                              f"{exc}); make them picklable or use workers=0") from None
        self.rt = rt
        self.name = f"eval-{os.getpid()}-{next(_RUNS)}"
        per_worker = max(1, concurrency // workers)
        info = rt.info()
        children = [ChildSpec("coordinator", EvalCoordinator, args=(examples, timeout, retry_timeouts, list(done)),
                              title="eval-coordinator")]
        children += [ChildSpec(f"worker-{n}", EvalWorker, args=(f"worker-{n}", info, payload, per_worker),
                               title=f"eval-worker {n}") for n in range(1, workers + 1)]
        self.sup = rt.actors.start_supervisor(SupervisorSpec("one_for_one", intensity=20, period=10.0), children,
                                              name=self.name)
        self.coord = self.sup.child("coordinator")
        self.cancelled = False
        self.duplicates = 0  # late results the coordinator dropped

    def rows(self, poll: float = 0.1, until: float | None = None):
        while until is None or time.monotonic() < until:
            progress = self.coord.call(GetProgress(), 30.0)
            self.duplicates = progress.counts["duplicates"]
            yield from progress.rows
            if progress.finished or (self.cancelled and not progress.counts["in_flight"]):
                return
            time.sleep(poll)

    def cancel(self) -> None:
        self.cancelled = True
        self.coord.call(CancelRun(), 30.0)

    def close(self) -> None:
        self.rt.actors.stop_supervisor(self.name)


__all__ = ["EvalCoordinator", "EvalWorker", "Hello", "Pull", "Batch", "Results", "GetProgress", "Progress",
           "CancelRun", "WorkerFeed"]
