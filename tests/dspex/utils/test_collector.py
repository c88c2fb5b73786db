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


def test_relaxed_inside_and_given_back_after(thresholds):
    with collector.relaxed():
        assert gc.get_threshold() == (collector.YOUNG, 10, 10)
    assert gc.get_threshold() == (700, 10, 10)


def test_overlapping_scopes_give_back_when_the_last_ends(thresholds):
    first, second = collector.relaxed(), collector.relaxed()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    assert gc.get_threshold()[0] == collector.YOUNG  # the second still runs
    second.__exit__(None, None, None)
    assert gc.get_threshold() == (700, 10, 10)


def test_scopes_in_threads(thresholds):
    inside, go = threading.Barrier(4), threading.Event()
    seen = []

    def evaluate() -> None:
        with collector.relaxed():
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
    assert seen == [collector.YOUNG] * 3 and gc.get_threshold() == (700, 10, 10)


def test_thresholds_set_meanwhile_stay(thresholds):
    with collector.relaxed():
        gc.set_threshold(2000, 5, 5)  # the user's own, set while an evaluation ran
    assert gc.get_threshold() == (2000, 5, 5)


@pytest.mark.parametrize("setup", ["disabled", "already rare"])
def test_a_process_that_collects_rarely_or_never_is_left_alone(thresholds, setup):
    if setup == "disabled":
        gc.disable()
    else:
        gc.set_threshold(10 * collector.YOUNG, 10, 10)
    before = gc.get_threshold()
    with collector.relaxed():
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
    assert result.score == 100.0 and set(seen) == {collector.YOUNG}
    assert gc.get_threshold() == (700, 10, 10)
