"""One worker pool for many evaluations (a compile's): runs at once each get exactly one row per example and
stay within their concurrency, a killed worker's examples come back in every run, and a compile on a
process runtime starts one pool (4 actor processes) instead of processes for every evaluation."""

from __future__ import annotations

import contextvars
import os
import signal
import threading
import time

import pytest

import dspex
from dspex.evaluate.feed import PoolLease, leased
from dspex.testing import Faults

from ...conftest import pids_titled, wait_until
from .test_evaluate import devset, exact
from .test_workers import farm  # noqa: F401 - the module's fixture

pytestmark = pytest.mark.slow


@pytest.fixture
def slow_farm(farm):
    """test_workers' multiproc runtime and simulator, answering in 50 ms (so runs overlap)."""
    server, rt, lm = farm
    server.set_faults(Faults(latency=0.05))
    try:
        yield farm
    finally:
        server.set_faults(Faults())


def run_together(lm, sets: list[list], concurrency: int) -> list:
    """Evaluate each set on its own thread, all in this context (so on its leased pool)."""
    results: list = [None] * len(sets)
    errors: list = []

    def one(k: int) -> None:
        try:
            results[k] = dspex.Evaluate(devset=sets[k], metric=exact, max_concurrency=concurrency, workers=2,
                                        progress=False)(dspex.Predict("question -> answer", lm=lm))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=contextvars.copy_context().run, args=(one, k)) for k in range(len(sets))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    return results


def test_runs_at_once_share_the_pool_each_within_its_concurrency_and_each_row_once(slow_farm):
    server, rt, lm = slow_farm
    sets = [devset(40, f"p{k}-") for k in range(3)]
    lease = PoolLease(12, "test-share")
    server.clear_log()
    try:
        with leased(lease):
            before = set(pids_titled(b"dspex: eval-worker"))
            results = run_together(lm, sets, concurrency=4)
            workers = set(pids_titled(b"dspex: eval-worker")) - before
    finally:
        lease.close()
    for examples, result in zip(sets, results):
        assert [r.example for r in result.rows] == examples
        assert all(r.error is None and r.score == 1.0 for r in result.rows)
    assert len(server.successes()) == 120  # each example asked once
    assert len(workers) == 2  # the three runs on the same two worker processes
    # together, more than one run's 4 at once; never more than the three runs' 12
    assert 4 < server.peak_concurrency <= 12
    assert wait_until(lambda: not set(pids_titled(b"dspex: eval-worker")) - before, timeout=10)  # closed: gone


def test_a_killed_worker_gives_its_examples_back_in_every_run(slow_farm):
    server, rt, lm = slow_farm
    sets = [devset(60, f"k{k}-") for k in range(3)]
    lease = PoolLease(12, "test-kill")
    server.clear_log()
    killed: list[int] = []

    def kill_one() -> None:
        if wait_until(lambda: len(server.log) >= 40, timeout=30):
            pids = pids_titled(b"dspex: eval-worker")
            if pids:
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])

    killer = threading.Thread(target=kill_one, daemon=True)
    try:
        with leased(lease):
            killer.start()
            results = run_together(lm, sets, concurrency=4)
    finally:
        killer.join(timeout=30)
        lease.close()
    assert killed
    for examples, result in zip(sets, results):
        assert [r.example for r in result.rows] == examples  # exactly one row each, in order
        assert all(r.error is None and r.score == 1.0 for r in result.rows)


def test_a_compile_on_worker_processes_starts_one_pool_not_processes_per_evaluation(slow_farm):
    server, rt, lm = slow_farm
    events: list = []
    unsubscribe = rt.actors.subscribe(events.append)
    since = time.time()
    trainset, valset = devset(12, "t"), devset(12, "v")
    optimizer = dspex.BootstrapFewShotWithRandomSearch(exact, num_candidate_programs=2, max_bootstrapped_demos=2,
                                                       max_labeled_demos=2)
    try:
        compiled = optimizer.compile(dspex.Predict("question -> answer", lm=lm), trainset=trainset, valset=valset)
        time.sleep(0.3)  # the last lifecycle events reach the subscriber
    finally:
        unsubscribe()
    starts = [e for e in events if e.kind in ("start", "restart") and e.pid and e.pid != os.getpid()
              and e.at >= since]
    pools = {f"{e.supervisor}/{e.child}".split("/")[1] for e in starts}
    assert len(compiled.compile_report.candidates) == 5  # zero-shot, labeled, unshuffled and 2 shuffled
    assert len(starts) == 4 and len(pools) == 1 and pools.pop().endswith("-pool")  # supervisor, coordinator, 2 workers
    assert wait_until(lambda: not pids_titled(b"dspex: eval-worker"), timeout=10)  # the compile stopped it
    on_threads = dspex.BootstrapFewShotWithRandomSearch(
        exact, num_candidate_programs=2, max_bootstrapped_demos=2, max_labeled_demos=2).compile(
        dspex.Predict("question -> answer", lm=lm), trainset=trainset, valset=valset, workers=0)
    assert ([c.score for c in compiled.compile_report.candidates]
            == [c.score for c in on_threads.compile_report.candidates])
