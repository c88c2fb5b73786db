"""The collector's pace while an evaluation runs: relaxed inside, the process's own thresholds after."""

from __future__ import annotations

import gc
import threading

import pytest

import dspex
from dspex.utils import collector


@pytest.fixture
def thresholds():
    """The test's thresholds are CPython's defaults; whatever the process had comes back after."""
    before, enabled = gc.get_threshold(), gc.isenabled()
    gc.set_threshold(700, 10, 10)
    gc.enable()
    yield
    gc.set_threshold(*before)
    (gc.enable if enabled else gc.disable)()


def test_the_pace_follows_the_examples_in_flight_within_bounds():
    assert collector.young_for(1) == collector.FLOOR
    assert collector.young_for(2000) == 2000 * collector.PER_EXAMPLE
    assert collector.young_for(1_000_000) == collector.CEILING


def test_relaxed_inside_and_given_back_after(thresholds):
    with collector.relaxed(2000):
        assert gc.get_threshold() == (collector.young_for(2000), collector.MIDDLE, 10)
    assert gc.get_threshold() == (700, 10, 10)


def test_overlapping_scopes_run_at_the_largest_pace_and_give_back_when_the_last_ends(thresholds):
    small, large = collector.relaxed(64), collector.relaxed(10_000)
    small.__enter__()
    assert gc.get_threshold()[0] == collector.young_for(64)
    large.__enter__()
    assert gc.get_threshold()[0] == collector.young_for(10_000)
    large.__exit__(None, None, None)
    assert gc.get_threshold()[0] == collector.young_for(64)  # the small one still runs
    small.__exit__(None, None, None)
    assert gc.get_threshold() == (700, 10, 10)


def test_scopes_in_threads(thresholds):
    inside, go = threading.Barrier(4), threading.Event()
    seen = []

    def evaluate() -> None:
        with collector.relaxed(1000):
            inside.wait()
            go.wait(5)
            seen.append(gc.get_threshold()[0])

    threads = [threading.Thread(target=evaluate) for _ in range(3)]
    for t in threads:
        t.start()
    inside.wait()
    go.set()
    for t in threads:
        t.join(5)
    assert seen == [collector.young_for(1000)] * 3 and gc.get_threshold() == (700, 10, 10)


def test_thresholds_set_meanwhile_stay(thresholds):
    with collector.relaxed(1000):
        gc.set_threshold(2000, 5, 5)  # the user's own, set while an evaluation ran
    assert gc.get_threshold() == (2000, 5, 5)


@pytest.mark.parametrize("setup", ["disabled", "already rare"])
def test_a_process_that_collects_rarely_or_never_is_left_alone(thresholds, setup):
    if setup == "disabled":
        gc.disable()
    else:
        gc.set_threshold(10 * collector.CEILING, 10, 10)
    before = gc.get_threshold()
    with collector.relaxed(10_000):
        assert gc.get_threshold() == before
    assert gc.get_threshold() == before


def test_an_evaluation_runs_relaxed_and_gives_the_thresholds_back(thresholds):
    seen = []

    def program(question: str) -> dspex.Prediction:
        seen.append(gc.get_threshold()[0])
        return dspex.Prediction(answer=question)

    devset = [dspex.Example(question=str(i), answer=str(i)).with_inputs("question") for i in range(8)]
    result = dspex.Evaluate(devset, lambda e, p: e.answer == p.answer, max_concurrency=4, progress=False,
                            engine="threads")(program)
    assert result.score == 100.0 and set(seen) == {collector.young_for(4)}
    assert gc.get_threshold() == (700, 10, 10)
