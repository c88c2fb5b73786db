"""Evaluation across processes: a coordinator actor hands out batches; worker actors pull them.

Each worker is a process (``dspex: eval-worker N`` in ``ps``) that attaches to the runtime, unpickles
the program and metric (sent by value with cloudpickle), and runs its examples on threads, its LM calls
going through the shared client actors. It says hello when it starts, so after a crash or kill -9 the
coordinator re-queues what that worker had in flight; a result for an example already done is dropped.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Sequence

from supervision import GenServer

from .engine import run_example
from .result import EvalRow, ExampleTimeout
from .tracker import Tracker

HEARTBEAT = 1.0  # seconds: a worker calls the coordinator at least this often, busy or not
ROWS_PER_CALL = 8  # a worker sends its finished rows once it has this many...
ROW_DELAY = 0.02  # ...or the oldest has waited this long (seconds)


@dataclass(frozen=True)
class Hello:
    worker: str


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
        worker = getattr(request, "worker", None)
        if worker is not None:
            self.seen[worker] = now
        if isinstance(request, Hello):
            requeued = self.tracker.worker_lost(request.worker)
            if requeued:
                self.actor_log.warning("worker_restarted", worker=request.worker, requeued=len(requeued))
            return True
        if isinstance(request, Pull):
            self._finish(request.rows)
            if self.cancelled:
                return Batch((), finished=True)
            idx = self.tracker.take(request.worker, request.n, now)
            return Batch(tuple((i, self.examples[i], self.tracker.attempts[i]) for i in idx), self.tracker.finished)
        if isinstance(request, GetProgress):
            for silent in [w for w, t in self.seen.items() if now - t > self.lost_after]:
                del self.seen[silent]
                requeued = self.tracker.worker_lost(silent)
                self.actor_log.warning("worker_lost", worker=silent, silent_s=self.lost_after, requeued=len(requeued))
            failed, _ = self.tracker.overdue(now)
            for i in failed:
                holder = self.tracker.in_flight.get(i, ("coordinator",))[0]
                if self.tracker.finish(i):
                    self.fresh.append(EvalRow(i, self.examples[i], None, 0.0, ExampleTimeout(
                        f"example {i} ran past timeout_per_example on {holder}"), self.tracker.attempts.get(i, 1),
                        holder))
            rows, self.fresh = tuple(self.fresh), []
            counts = {**self.tracker.counts(), "live_workers": len(self.seen), "age_s": now - self.started}
            return Progress(rows, counts, self.tracker.finished)
        if isinstance(request, CancelRun):
            self.cancelled = True
            return True
        return super().handle_call(request)

    def _finish(self, rows: tuple) -> None:
        for row in rows:
            if self.tracker.finish(row.index):
                self.fresh.append(row)


class EvalWorker(GenServer):
    """A process that pulls batches and runs them on ``concurrency`` threads."""

    title_prefix = "dspex"

    def init(self, worker: str, info: Any, payload: bytes, concurrency: int, coordinator: str,
             run: str | None = None) -> None:
        self.worker, self.info, self.payload, self.concurrency = worker, info, payload, concurrency
        self.coordinator, self.run = coordinator, run
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
            coord = rt.actors.whereis(self.coordinator)
            if coord is None:
                raise LookupError(f"no coordinator registered as {self.coordinator!r}")
            coord = coord.address
            rt.actors.call(coord, Hello(self.worker), 30.0)
            self._work(rt, coord, program, metric)
        except Exception as exc:  # noqa: BLE001 - logged; the coordinator's timeouts and a restart recover
            self.actor_log.error("eval_worker_failed", worker=self.worker, error=f"{type(exc).__name__}: {exc}")
        finally:
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
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix=f"{self.worker}-ex") as pool:
            while not self.stopping.is_set() and (running or queued or rows or not finished):
                now = time.monotonic()
                want = 0 if finished else 2 * self.concurrency - len(running) - len(queued)
                if ((rows and (len(rows) >= ROWS_PER_CALL or now - first_row_at > ROW_DELAY))
                        or want >= max(1, self.concurrency // 2) or (want > 0 and not running and not queued)
                        or now - last_call > HEARTBEAT):
                    if rows:
                        rt.flush_reports()  # the ledger has a row's calls before the row counts
                    batch = rt.actors.call(coord, Pull(self.worker, want, tuple(rows)), 30.0)
                    rows, last_call = [], time.monotonic()
                    finished = finished or (batch.finished and not batch.items)
                    queued.extend(batch.items)
                while queued and len(running) < self.concurrency:
                    index, example, attempts = queued.popleft()
                    running[pool.submit(run_example, program, metric, index, example, self.worker, attempts,
                                        self.run)] = index
                if not running:
                    time.sleep(0.01)
                    continue
                done, _ = wait(list(running), timeout=ROW_DELAY, return_when=FIRST_COMPLETED)
                for f in done:
                    if not rows:
                        first_row_at = time.monotonic()
                    rows.append(f.result())
                    del running[f]


class WorkerFeed:
    """Evaluate's side of a worker run: starts the evaluation supervisor, polls the coordinator for rows.

    Without ``hosts`` the workers are processes of this runtime. With ``hosts`` (node addresses,
    ``ip:port``) each host gets ``workers`` workers under its own supervisor, a temporary child of the
    run's supervisor: a host that is lost (or keeps failing) gives up alone while the coordinator and
    the other hosts go on; its examples go back to the queue when its workers fall silent.
    """

    def __init__(self, rt: Any, program: Any, metric: Any, examples: list, done: list, workers: int,
                 concurrency: int, timeout: float | None, retry_timeouts: bool,
                 hosts: Sequence[str] = (), lost_after: float = 10.0, run: str = "eval") -> None:
        import cloudpickle

        from supervision import ChildSpec, SupervisorSpec
        from supervision.node import NODE_CAPABILITY

        from ..errors import ConfigError

        try:
            payload = cloudpickle.dumps((program, metric))
        except Exception as exc:  # noqa: BLE001 - any pickling failure gets the same clear message
            raise ConfigError(f"cannot send the program and metric to worker processes ({type(exc).__name__}: "
                              f"{exc}); make them picklable or use workers=0") from None
        self.rt = rt
        self.name = run  # the run's id names its supervisor too
        self.lost_after = lost_after
        coordinator = f"{self.name}-coordinator"
        per_worker = max(1, concurrency // (workers * max(1, len(hosts))))
        info = rt.info()

        def worker(wid: str, title: str, **placement: Any) -> ChildSpec:
            return ChildSpec(wid, EvalWorker, args=(wid, info, payload, per_worker, coordinator, run), title=title,
                             **placement)

        children = [ChildSpec("coordinator", EvalCoordinator, name=coordinator, title="eval-coordinator",
                              args=(examples, timeout, retry_timeouts, list(done), lost_after))]
        if not hosts:
            children += [worker(f"worker-{n}", f"eval-worker {n}") for n in range(1, workers + 1)]
        for host in hosts:
            placed = [worker(f"worker-{n}@{host}", f"eval-worker {n}@{host}", shutdown=2.0,
                             requirements={NODE_CAPABILITY: host}) for n in range(1, workers + 1)]
            # a restart on a host that is gone waits for its start timeout: keep both small, so a lost
            # host's supervisor gives up in seconds (the coordinator has re-queued its examples already)
            children.append(ChildSpec(f"host:{host}", SupervisorSpec("one_for_one", intensity=3, period=30.0,
                                                                     start_timeout=5.0),
                                      children=placed, restart="temporary"))
        self.sup = rt.actors.start_supervisor(SupervisorSpec("one_for_one", intensity=20, period=10.0), children,
                                              name=self.name)
        self.coord = self.sup.child("coordinator")
        self.cancelled = False
        self.aborted: str | None = None  # why the run stopped early on its own (no worker left)
        self.duplicates = 0  # late results the coordinator dropped

    def rows(self, poll: float = 0.1, until: float | None = None):
        while until is None or time.monotonic() < until:
            progress = self.coord.call(GetProgress(), 30.0)
            self.duplicates = progress.counts["duplicates"]
            yield from progress.rows
            if progress.finished or (self.cancelled and not progress.counts["in_flight"]):
                return
            if not progress.counts["live_workers"] and progress.counts["age_s"] > 3 * self.lost_after:
                self.aborted = f"no evaluation worker has called in for {self.lost_after:g}s (all hosts lost?)"
                return
            time.sleep(poll)

    def cancel(self) -> None:
        self.cancelled = True
        self.coord.call(CancelRun(), 30.0)

    def close(self) -> None:
        self.rt.actors.stop_supervisor(self.name)


__all__ = ["EvalCoordinator", "EvalWorker", "Hello", "Pull", "Batch", "GetProgress", "Progress",
           "CancelRun", "WorkerFeed"]
