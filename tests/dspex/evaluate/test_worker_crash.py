"""A crash of an eval-worker's thread is the worker's crash: an abnormal exit with the thread's reason,
a restart, and its examples back in the queue at once (not after ``lost_after``); one row each still."""

from __future__ import annotations

import os
import time

import pytest

import dspex
from dspex.evaluate import EvaluationCancelled
from tests.conftest import pids_titled, wait_until

from .test_evaluate import devset, exact

pytestmark = pytest.mark.slow

LOST_AFTER = 10.0  # WorkerFeed's default, which Evaluate.run uses: a silent worker's examples come back after this


@pytest.fixture(scope="module")
def farm(tmp_path_factory):
    with dspex.runtime("multiproc", cache_dir=tmp_path_factory.mktemp("cache"), log_level=None) as rt:
        wait_until(lambda: pids_titled(b"supervision: watchdog"), timeout=5)  # titled before tests look
        yield rt


def interrupted_once(calls: str, at: int, delay: float):
    """A program answering the question in capitals, after ``delay``; once, at about the ``at``-th call
    across all processes, it raises KeyboardInterrupt, the one exception run_example does not turn into a
    row (Ctrl-C's kind): it escapes to the worker's thread and kills it."""

    def program(question: str) -> dspex.Prediction:
        time.sleep(delay)
        fd = os.open(calls, os.O_WRONLY | os.O_APPEND | os.O_CREAT)  # one byte per call, from any process
        try:
            os.write(fd, b".")
            seen = os.fstat(fd).st_size
        finally:
            os.close(fd)
        if seen >= at:
            try:  # the first call to get here (creating the marker is atomic) is the one that raises
                os.close(os.open(calls + ".raised", os.O_WRONLY | os.O_CREAT | os.O_EXCL))
            except FileExistsError:
                pass
            else:
                raise KeyboardInterrupt("injected into an eval worker")
        return dspex.Prediction(answer=question.upper())

    return program


def test_a_worker_thread_crash_is_restarted_and_its_examples_requeued_at_once(farm, tmp_path):
    events = []
    farm.actors.subscribe(events.append)
    data = devset(60)
    program = interrupted_once(str(tmp_path / "calls"), at=10, delay=0.05)
    start = time.monotonic()
    result = dspex.Evaluate(data, exact, max_concurrency=8, workers=2, progress=False).run(program)
    elapsed = time.monotonic() - start

    assert [r.index for r in result.rows] == list(range(60))  # every example, exactly once
    assert [r.example for r in result.rows] == data
    assert result.score == 100.0, [(r.index, r.error) for r in result.rows if r.error]
    assert elapsed < LOST_AFTER / 2, elapsed  # re-queued at the crash, not when the worker fell silent
    crashed = [e for e in events if e.kind == "exit" and e.child.startswith("worker-") and not e.normal]
    assert len(crashed) == 1, [e.summary() for e in events]
    assert crashed[0].reason == f"thread eval-{crashed[0].child} crashed: KeyboardInterrupt: injected into an eval worker"
    assert any(e.kind == "restart" and e.child == crashed[0].child for e in events)


def _cannot_load():
    raise RuntimeError("this program cannot be loaded here")


class Unloadable:
    """A program whose unpickling fails: in every worker, its thread crashes as it starts."""

    def __call__(self, question: str) -> dspex.Prediction:
        return dspex.Prediction(answer=question.upper())

    def __reduce__(self):
        return _cannot_load, ()


def test_workers_that_crash_as_they_start_make_the_run_give_up_at_once_with_the_reason(farm):
    data = devset(10)
    start = time.monotonic()
    # 4 workers crash-looping reach the run supervisor's intensity (more than 20 restarts in 10 s) in ~5 s
    result = dspex.Evaluate(data, exact, max_concurrency=4, workers=4, progress=False).run(Unloadable())
    elapsed = time.monotonic() - start

    assert result.aborted.startswith("the evaluation's supervisor gave up: reached_max_restart_intensity")
    assert "crashed: RuntimeError: this program cannot be loaded here" in result.aborted
    assert [r.index for r in result.rows] == list(range(10))
    assert all(isinstance(r.error, EvaluationCancelled) for r in result.rows)
    assert elapsed < 3 * LOST_AFTER, elapsed  # not the silence rule's 3 × lost_after
    assert not [f for f in farm.actors.failures if f.name != result.run]  # only this run's supervisor gave up
