"""Evaluate's side of a run on worker processes (or hosts): the evaluation supervisor and the poll.

Not an actor: it runs in the caller's thread, starts the run's supervisor (coordinator + workers, see
``actors.py``) and turns the coordinator's answers into rows; it is a :class:`~.runner.Runner`.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

from ..telemetry.propagation import carry
from .actors import CancelRun, EvalCoordinator, EvalWorker, SweepAndCollect

GIVE_UP_SEEN = 5.0  # seconds to wait, after the coordinator is found gone, for the root to record why


class WorkerFeed:
    """Evaluate's side of a worker run: starts the evaluation supervisor, polls the coordinator for rows.

    Without ``hosts`` the workers are processes of this runtime. With ``hosts`` (node addresses,
    ``ip:port``) each host gets ``workers`` workers under its own supervisor, a temporary child of the
    run's supervisor: a host that is lost (or keeps failing) gives up alone while the coordinator and
    the other hosts go on; its examples go back to the queue when its workers fall silent.
    """

    def __init__(self, rt: Any, program: Any, metric: Any, examples: list, *, done: list, workers: int,
                 concurrency: int, timeout: float | None, retry_timeouts: bool,
                 hosts: Sequence[str] = (), lost_after: float = 10.0, run: str = "eval") -> None:
        import cloudpickle

        from supervision import ChildSpec, SupervisorSpec
        from supervision.node import NODE_CAPABILITY

        from ..errors import ConfigError

        from ..programs.settings import with_resolved_lms

        if hasattr(program, "predictors"):  # workers have no dspex.context / configure of this process
            program = with_resolved_lms(program)
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
        trace = carry()  # the evaluation's span: each worker's rows are its children (when tracing is on)

        def worker(wid: str, title: str, **placement: Any) -> ChildSpec:
            return ChildSpec(wid, EvalWorker, args=(wid, info, payload, per_worker, coordinator, run, trace), title=title,
                             **placement)

        children = [ChildSpec("coordinator", EvalCoordinator, name=coordinator, title="eval-coordinator",
                              args=(examples, timeout, retry_timeouts, list(done), lost_after))]
        local_workers = [worker(f"worker-{n}", f"eval-worker {n}") for n in range(1, workers + 1)] if not hosts else []
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
        try:
            for spec in local_workers:  # one by one, after the coordinator: a worker killed while it starts
                _start_with_retry(self.sup, spec)  # (the first ones already work) is started again
        except BaseException:
            rt.actors.stop_supervisor(self.name)
            raise
        self.coord = self.sup.child("coordinator")
        self.cancelled = False
        self.aborted: str | None = None  # why the run stopped early on its own (no worker left)
        self.gone = False  # the run's supervisor has exited on its own (restart intensity reached)
        self.duplicates = 0  # late results the coordinator dropped

    def rows(self, poll: float = 0.1, until: float | None = None):
        while (until is None or time.monotonic() < until) and not self.gone:
            progress = self._ask(SweepAndCollect())
            if progress is None:
                return
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
        if not self.gone:
            self._ask(CancelRun())

    def close(self) -> None:
        from supervision import SpecError

        if self.gone:  # a supervisor that gave up is gone from the tree already
            return
        try:
            self.rt.actors.stop_supervisor(self.name)
        except SpecError:  # no such child: it gave up since the last poll
            if self._failure() is None:
                raise

    def _ask(self, request: Any) -> Any:
        """The coordinator's answer; None once the run's supervisor has given up (restart intensity
        reached, e.g. workers that crash as they start): then ``aborted`` says why and the run stops."""
        from supervision import ActorExited

        try:
            return self.coord.call(request, 30.0)
        except ActorExited:
            deadline = time.monotonic() + GIVE_UP_SEEN
            while (failure := self._failure()) is None and time.monotonic() < deadline:
                time.sleep(0.05)  # the supervisor stops the coordinator first, then exits: the root learns it next
            if failure is None:
                raise
            self.gone = True
            self.aborted = f"the evaluation's supervisor gave up: {failure.reason}"
            return None

    def _failure(self) -> Any:
        """The root's record of this run's supervisor exiting abnormally, if it did."""
        return next((f for f in reversed(self.rt.actors.failures) if f.name == self.name), None)


def _start_with_retry(sup: Any, spec: Any, attempts: int = 3) -> None:
    """start_child, again if the child died while starting (a failed start leaves no spec behind)."""
    from supervision import FailedToStartChild

    for attempt in range(attempts):
        try:
            sup.start_child(spec)
            return
        except FailedToStartChild:
            if attempt == attempts - 1:
                raise


__all__ = ["WorkerFeed"]
