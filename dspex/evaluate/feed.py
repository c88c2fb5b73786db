"""Evaluate's side of a run on worker processes (or hosts): the worker pool and the poll.

A :class:`WorkerPool` is a supervisor of one coordinator and its workers (``actors.py``). Evaluate opens
one for its run and stops it at the end, unless a pool is leased in the current context
(:func:`leased`): a compile leases one for all its evaluations, several at once, so its rounds start
no processes (a pool is ~4 processes; an evaluation each was ~7, 56 for an 8-candidate compile).
Neither is an actor: they run in the caller's thread; :class:`WorkerFeed` is a
:class:`~.runner.Runner`.
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import enum
import itertools
import os
import sys
import sysconfig
import threading
import time
from typing import Any, Iterator, Sequence

import structlog

from ..telemetry.propagation import carry
from .actors import CancelRun, CloseRun, EvalCoordinator, EvalWorker, OpenRun, Pace, SweepAndCollect

log = structlog.get_logger("dspex.evaluate")
GIVE_UP_SEEN = 5.0  # seconds to wait, after the coordinator is found gone, for the root to record why

_LEASED: contextvars.ContextVar["PoolLease | None"] = contextvars.ContextVar("dspex_worker_pool", default=None)
_names = itertools.count(1)


class PoolState(enum.Enum):
    RUNNING = "running"
    GAVE_UP = "gave_up"  # its supervisor exited on its own (restart intensity reached)
    CLOSED = "closed"  # stopped by close()


def own_modules() -> list[Any]:
    """The user's own modules loaded in this process: neither installed nor the standard library (nor dspex),
    so a host cannot import them (a metric in ``my_metrics.py`` beside the leader's command line, wrapped
    or not). Registering them costs nothing: only what the pickled objects reach is shipped."""
    installed = {os.path.abspath(p) + os.sep for k, p in sysconfig.get_paths().items()
                 if k in ("stdlib", "platstdlib", "purelib", "platlib")}
    found = []
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if path is None or name == "__main__" or name.split(".")[0] in ("dspex", "supervision"):
            continue  # (cloudpickle ships __main__'s by value already)
        if not any(os.path.abspath(path).startswith(place) for place in installed):
            found.append(module)
    return found


# cloudpickle's by-value registry is one per process and evaluations pickle in several threads at once (a
# compile's trials): a module stays registered while any of them needs it
_by_value: collections.Counter = collections.Counter()
_by_value_lock = threading.Lock()


@contextlib.contextmanager
def shipped_by_value(modules: Sequence[Any]) -> Iterator[None]:
    """Within: cloudpickle pickles what ``modules`` define by value (their code travels), not by name."""
    import cloudpickle

    with _by_value_lock:
        registered = cloudpickle.list_registry_pickle_by_value()
        ours = [m for m in modules if _by_value[m.__name__] or m.__name__ not in registered]
        for module in ours:  # (one the user registered is left as it is)
            if not _by_value[module.__name__]:
                cloudpickle.register_pickle_by_value(module)
            _by_value[module.__name__] += 1
    try:
        yield
    finally:
        with _by_value_lock:
            for module in ours:
                _by_value[module.__name__] -= 1
                if not _by_value[module.__name__]:
                    del _by_value[module.__name__]
                    cloudpickle.unregister_pickle_by_value(module)


LOST_AFTER = 10.0  # seconds a local worker may stay silent before its examples go to the others
HOST_LOST_AFTER = 2.0  # the same for a worker on another host (it calls in every Pace.heartbeat seconds)
ABANDON_AFTER = 30.0  # seconds a run waits with no worker at all (every host lost) before it stops
REVIVE_EVERY = 2.0  # seconds between looks for a lost host that answers again
REVIVE_PROBE = 0.5  # seconds a host has to answer that look


class WorkerPool:
    """A coordinator and ``workers`` worker processes (per host with ``hosts``) under one supervisor,
    with ``concurrency`` threads in all; runs evaluations (:meth:`open`), several at once.

    Without ``hosts`` the workers are processes of this runtime. With ``hosts`` (node addresses,
    ``ip:port``) each host gets ``workers`` workers under its own supervisor, a temporary child of the
    pool's supervisor: a host that is lost (or keeps failing) gives up alone while the coordinator and
    the other hosts go on; its examples go back to the queue when its workers fall silent.
    """

    def __init__(self, rt: Any, *, workers: int, concurrency: int, hosts: Sequence[str] = (),
                 lost_after: float | None = None, name: str | None = None) -> None:
        from supervision import ChildSpec, SupervisorSpec
        from supervision.node import NODE_CAPABILITY

        self.rt, self.hosts, self.workers, self.concurrency = rt, tuple(hosts), workers, concurrency
        self.lost_after = lost_after = lost_after or (HOST_LOST_AFTER if self.hosts else LOST_AFTER)
        self.pace = Pace.for_hosts(lost_after) if self.hosts else Pace()
        # a run with no worker left waits this long for one (a lost host comes back; one is revived)
        self.abandon_after = max(ABANDON_AFTER, 3 * lost_after)
        self.host_specs: dict[str, ChildSpec] = {}  # host -> the spec of its supervisor (started again by revive)
        self.next_revive = 0.0  # monotonic time of the next look for hosts to start again
        self.name = name or f"eval-pool-{next(_names)}"
        self.spread = workers * max(1, len(self.hosts))  # worker processes in all
        coordinator = f"{self.name}-coordinator"
        per_worker = max(1, concurrency // self.spread)
        info = rt.info()

        def worker(wid: str, title: str, **placement: Any) -> ChildSpec:
            return ChildSpec(wid, EvalWorker, args=(wid, info, per_worker, coordinator, self.pace), title=title,
                             **placement)

        children = [ChildSpec("coordinator", EvalCoordinator, name=coordinator, title="eval-coordinator",
                              args=(lost_after,))]
        local_workers = [worker(f"worker-{n}", f"eval-worker {n}") for n in range(1, workers + 1)] if not hosts else []
        for host in self.hosts:
            placed = [worker(f"worker-{n}@{host}", f"eval-worker {n}@{host}", shutdown=2.0,
                             requirements={NODE_CAPABILITY: host}) for n in range(1, workers + 1)]
            # a restart on a host that is gone waits for its start timeout: keep both small, so a lost
            # host's supervisor gives up in seconds (the coordinator has re-queued its examples already)
            self.host_specs[host] = ChildSpec(f"host:{host}", SupervisorSpec("one_for_one", intensity=3, period=30.0,
                                                                             start_timeout=5.0),
                                              children=placed, restart="temporary")
            children.append(self.host_specs[host])
        self.sup = rt.actors.start_supervisor(SupervisorSpec("one_for_one", intensity=20, period=10.0), children,
                                              name=self.name)
        try:
            for spec in local_workers:  # one by one, after the coordinator: a worker killed while it starts
                _start_with_retry(self.sup, spec)  # (the first ones already work) is started again
        except BaseException:
            rt.actors.stop_supervisor(self.name)
            raise
        self.coord = self.sup.child("coordinator")
        self.state = PoolState.RUNNING
        self._lock = threading.Lock()

    def revive(self, now: float, live_workers: int | None = None) -> list[str]:
        """Hosts whose supervisor gave up (the host was lost: restarts there failed) get it back once they
        answer again (restarted, or healed), so their workers join the runs still open. At most every
        REVIVE_EVERY seconds, and not while ``live_workers`` (the coordinator's count of workers calling
        in) says every worker is there; the hosts are asked only when one is missing."""
        from supervision import NodeState, SupervisionError

        if not self.hosts or now < self.next_revive or self.state is not PoolState.RUNNING:
            return []
        if live_workers is not None and live_workers >= self.spread:
            return []  # (a question to the pool's supervisor every REVIVE_EVERY s, for nothing)
        self.next_revive = now + REVIVE_EVERY
        try:
            listed = {child.id: child.ref is not None for child in self.sup.which_children()}
            missing = [host for host in self.hosts if not listed.get(f"host:{host}", False)]
            if not missing:
                return []
            up = {info.address for info in self.rt.actors.nodes(timeout=REVIVE_PROBE) if info.state is NodeState.UP}
        except SupervisionError:  # the pool itself is going: the feed sees that on its own
            return []
        revived = []
        for host in (h for h in missing if h in up):
            cid = f"host:{host}"
            try:  # a spec still listed (stopped) is restarted; one deleted on exit (temporary) is started anew
                if cid in listed:
                    self.sup.restart_child(cid)
                else:
                    self.sup.start_child(self.host_specs[host])
            except SupervisionError as exc:  # it went again, or is not ready: the next look tries again
                log.info("host_not_revived", pool=self.name, host=host, error=str(exc))
                continue
            log.warning("host_revived", pool=self.name, host=host)
            revived.append(host)
        return revived

    @property
    def gone(self) -> bool:
        """The supervisor has exited on its own (restart intensity reached): nothing runs on this pool."""
        return self.state is PoolState.GAVE_UP

    def gave_up(self) -> None:
        with self._lock:
            if self.state is PoolState.RUNNING:
                self.state = PoolState.GAVE_UP

    def open(self, program: Any, metric: Any, examples: list, *, done: list, concurrency: int,
             timeout: float | None, retry_timeouts: bool, run: str, owned: bool = False,
             engine: str = "auto") -> "WorkerFeed":
        """Start evaluating ``program`` on ``examples`` (the ``done`` indices skipped), at most
        ``concurrency`` examples running at once; its rows through the returned feed."""
        import cloudpickle

        from ..errors import ConfigError
        from ..programs.settings import with_resolved_lms

        if hasattr(program, "predictors"):  # workers have no dspex.context / configure of this process
            program = with_resolved_lms(program)
        try:
            with shipped_by_value(own_modules() if self.hosts else ()):
                payload = cloudpickle.dumps((program, metric))
        except Exception as exc:  # noqa: BLE001 - any pickling failure gets the same clear message
            raise ConfigError(f"cannot send the program and metric to worker processes ({type(exc).__name__}: "
                              f"{exc}); make them picklable or use workers=0") from None
        running = max(1, concurrency // self.spread)
        feed = WorkerFeed(self, run, owned)
        # the evaluation's span travels with it: each worker's rows are its children (when tracing is on)
        feed._ask(OpenRun(run, payload, examples, tuple(done), running, timeout, retry_timeouts, carry(), engine))
        return feed

    def close(self) -> None:
        """Stop the coordinator and the workers. Idempotent."""
        from supervision import SpecError

        with self._lock:
            state, self.state = self.state, PoolState.CLOSED
        if state is not PoolState.RUNNING:  # closed already, or it gave up and is gone from the tree
            return
        try:
            self.rt.actors.stop_supervisor(self.name)
        except SpecError:  # no such child: it gave up since the last poll
            if self.failure() is None:
                raise

    def failure(self) -> Any:
        """The root's record of this pool's supervisor exiting abnormally, if it did."""
        return next((f for f in reversed(self.rt.actors.failures) if f.name == self.name), None)

    def __enter__(self) -> "WorkerPool":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class PoolLease:
    """One worker pool for every evaluation run in a context (:func:`leased`; a compile's), started when
    the first of them runs on worker processes and stopped by :meth:`close`. ``concurrency``: threads in
    all (e.g. the compile's per-evaluation concurrency × the evaluations it runs at once; at least each
    evaluation's own). A runtime keeps one for ``run_distributed`` (:func:`host_pools`)."""

    def __init__(self, concurrency: int, name: str) -> None:
        self.concurrency, self.name = concurrency, name
        self._pool: WorkerPool | None = None
        self._lock = threading.Lock()
        self._closed = False

    def pool(self, rt: Any, hosts: tuple, workers: int, lost_after: float | None,
             concurrency: int = 1) -> WorkerPool | None:
        """The pool for an evaluation on ``rt`` (and ``hosts``) running ``concurrency`` examples at once,
        started (again, if the last one gave up, served other hosts or has fewer threads) when needed; None
        once the lease is closed."""
        with self._lock:
            if self._closed:
                return None
            old = self._pool
            threads = max(self.concurrency, concurrency, workers)
            if (old is None or old.state is not PoolState.RUNNING or old.rt is not rt or old.hosts != hosts
                    or old.workers != workers or old.concurrency < threads
                    or (lost_after is not None and old.lost_after != lost_after)):
                if old is not None:
                    old.close()
                self._pool = WorkerPool(rt, workers=workers, concurrency=threads,
                                        hosts=hosts, lost_after=lost_after, name=f"{self.name}-pool")
            return self._pool

    def close(self) -> None:
        """Stop the pool, if one was started. Idempotent."""
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()


def host_pools(rt: Any) -> contextlib.AbstractContextManager:
    """Within: ``run_distributed`` uses the pool the runtime keeps for it (its worker processes on the hosts
    stay up between evaluations, closed with the runtime), unless the context leases one already (a compile)."""
    if _LEASED.get() is not None:
        return contextlib.nullcontext()
    return leased(rt.kept("host-pool", lambda: PoolLease(1, "hosts")))


@contextlib.contextmanager
def leased(lease: PoolLease) -> Iterator[PoolLease]:
    """Evaluations started in this context (and in threads that copy it) that run on worker processes
    run on ``lease``'s pool."""
    token = _LEASED.set(lease)
    try:
        yield lease
    finally:
        _LEASED.reset(token)


def feed(rt: Any, program: Any, metric: Any, examples: list, *, done: list, workers: int, concurrency: int,
         timeout: float | None, retry_timeouts: bool, hosts: Sequence[str] = (), lost_after: float | None = None,
         run: str = "eval", engine: str = "auto") -> "WorkerFeed":
    """A run on the leased pool, if this context has one; else on a pool of its own (named after the
    run), stopped when the run closes."""
    lease = _LEASED.get()
    pool = lease.pool(rt, tuple(hosts), workers, lost_after, concurrency) if lease is not None else None
    owned = pool is None
    if pool is None:
        pool = WorkerPool(rt, workers=workers, concurrency=concurrency, hosts=hosts, lost_after=lost_after, name=run)
    try:
        return pool.open(program, metric, examples, done=done, concurrency=concurrency, timeout=timeout,
                         retry_timeouts=retry_timeouts, run=run, owned=owned, engine=engine)
    except BaseException:
        if owned:
            pool.close()
        raise


class WorkerFeed:
    """Evaluate's side of one run on a pool: polls the coordinator for rows; closing it closes the run
    (and the pool, when the run has it to itself)."""

    def __init__(self, pool: WorkerPool, run: str, owned: bool) -> None:
        self.pool, self.run, self.owned = pool, run, owned
        self.cancelled = False
        self.aborted: str | None = None  # why the run stopped early on its own (no worker left)
        self.duplicates = 0  # late results the coordinator dropped

    def rows(self, poll: float | None = None, until: float | None = None):
        """Rows as they finish: each poll waits at the coordinator up to ``poll`` seconds (the pool's
        ``Pace.poll`` unless given) for the first (so a row is here as soon as a worker reports it); after
        rows, a short pause lets more gather."""
        poll = self.pool.pace.poll if poll is None else poll
        while (until is None or time.monotonic() < until) and not self.pool.gone:
            wait = poll if until is None else max(0.0, min(poll, until - time.monotonic()))
            progress = self._ask(SweepAndCollect(self.run, wait))
            if progress is None:
                return
            self.duplicates = progress.counts["duplicates"]
            yield from progress.rows
            if progress.finished or (self.cancelled and not progress.counts["in_flight"]):
                return
            self.pool.revive(time.monotonic(), progress.counts["live_workers"])
            if progress.counts["alone_s"] > self.pool.abandon_after:
                self.aborted = (f"no evaluation worker has called in for {self.pool.abandon_after:g}s "
                                "(all hosts lost?)")
                return
            if progress.rows:
                time.sleep(self.pool.pace.gather)

    def cancel(self) -> None:
        self.cancelled = True
        if not self.pool.gone:
            self._ask(CancelRun(self.run))

    def close(self) -> None:
        try:
            if not self.owned and not self.pool.gone:
                self._ask(CloseRun(self.run))
        finally:
            if self.owned:
                self.pool.close()

    def _ask(self, request: Any) -> Any:
        """The coordinator's answer; None once the pool's supervisor has given up (restart intensity
        reached, e.g. workers that crash as they start): then ``aborted`` says why and the run stops."""
        from supervision import ActorExited

        if self.pool.gone:
            self.aborted = self.aborted or "the evaluation's supervisor gave up"
            return None
        try:
            return self.pool.coord.call(request, 30.0)
        except ActorExited:
            deadline = time.monotonic() + GIVE_UP_SEEN
            while (failure := self.pool.failure()) is None and time.monotonic() < deadline:
                time.sleep(0.05)  # the supervisor stops the coordinator first, then exits: the root learns it next
            if failure is None:
                raise
            self.pool.gave_up()
            self.aborted = f"the evaluation's supervisor gave up: {failure.reason}"
            return None


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


__all__ = ["WorkerPool", "PoolState", "PoolLease", "WorkerFeed", "feed", "leased", "host_pools"]
