"""ParallelExecutor: order, failures, max_errors, context in workers, Ctrl-C, nesting and stragglers."""

from __future__ import annotations

import contextvars
import os
import random
import signal
import threading
import time

import pytest

import dspex
from dspex.programs import settings
from dspex.utils import callback_context, parallelizer
from dspex.utils.parallelizer import CANCELLED_MESSAGE, ExecutionCancelled, ParallelExecutor

from ...conftest import wait_until

VAR: contextvars.ContextVar[str] = contextvars.ContextVar("test_parallelizer_var", default="unset")


def executor(**kw) -> ParallelExecutor:
    return ParallelExecutor(disable_progress_bar=True, **kw)


def pool_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("dspex-parallel")]


@pytest.fixture
def dspex_settings(monkeypatch):
    """The settings reader dspex registers (set here too, so this file does not depend on the wiring)."""
    monkeypatch.setattr(callback_context, "_settings_reader", settings.setting)


@pytest.fixture(autouse=True)
def no_threads_left():
    yield
    assert wait_until(lambda: not pool_threads(), timeout=5), pool_threads()


@pytest.mark.parametrize("num_threads", [1, 4])
def test_results_come_back_in_input_order(num_threads):
    rng = random.Random(7)
    delays = [rng.uniform(0, 0.02) for _ in range(30)]

    def task(i):
        time.sleep(delays[i])
        return i * 10

    assert executor(num_threads=num_threads).execute(task, range(30)) == [i * 10 for i in range(30)]
    assert executor(num_threads=num_threads).execute(task, []) == []


def test_items_really_run_concurrently():
    running, peak, lock = [0], [0], threading.Lock()

    def task(i):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.1)
        with lock:
            running[0] -= 1
        return i

    start = time.monotonic()
    assert executor(num_threads=4).execute(task, range(8)) == list(range(8))
    assert peak[0] == 4 and time.monotonic() - start < 0.6  # two waves of 0.1s, not eight


@pytest.mark.parametrize("num_threads", [1, 3])
def test_failed_items_are_none_and_recorded(num_threads, caplog):
    def task(i):
        if i in (2, 5):
            raise (ValueError if i == 2 else RuntimeError)(f"bad {i}")
        return i

    ex = executor(num_threads=num_threads, max_errors=3)
    assert ex.execute(task, range(7)) == [0, 1, None, 3, 4, None, 6]
    assert sorted(ex.failed_indices) == [2, 5]
    assert isinstance(ex.exceptions_map[2], ValueError) and str(ex.exceptions_map[5]) == "bad 5"
    assert "Error for 2: bad 2" in caplog.text and "provide_traceback=True" in caplog.text


def test_provide_traceback_logs_the_traceback(caplog):
    def task(i):
        raise KeyError("deep")

    executor(num_threads=2, max_errors=5, provide_traceback=True).execute(task, [1])
    assert "Traceback (most recent call last)" in caplog.text and "KeyError: 'deep'" in caplog.text


@pytest.mark.parametrize("num_threads", [1, 2])
def test_max_errors_stops_the_run(num_threads):
    started = []

    def task(i):
        started.append(i)
        time.sleep(0.01)
        if i >= 2:
            raise ValueError(f"bad {i}")
        return i

    ex = executor(num_threads=num_threads, max_errors=2)
    with pytest.raises(ExecutionCancelled, match=CANCELLED_MESSAGE) as info:
        ex.execute(task, range(40))
    assert isinstance(info.value, dspex.DspexError)
    assert "max_errors=2" in str(info.value) and isinstance(info.value.__cause__, ValueError)
    assert len(ex.failed_indices) >= 2 and len(started) < 10  # the rest never started
    assert not pool_threads()  # the running items were waited for


def test_an_executor_can_be_reused_after_a_cancelled_run():
    ex = executor(num_threads=2, max_errors=1)
    with pytest.raises(ExecutionCancelled):
        ex.execute(lambda i: 1 / 0, range(3))
    assert ex.execute(lambda i: i, range(3)) == [0, 1, 2] and ex.failed_indices == []


@pytest.mark.parametrize("num_threads", [1, 3])
def test_the_callers_context_reaches_every_item_and_items_stay_isolated(num_threads):
    def task(i):
        seen = VAR.get()
        VAR.set(f"item {i}")  # an item's own change is its own
        return seen

    token = VAR.set("caller")
    try:
        assert executor(num_threads=num_threads).execute(task, range(6)) == ["caller"] * 6
        assert VAR.get() == "caller"
    finally:
        VAR.reset(token)


def test_sequential_runs_on_the_calling_thread():
    threads = executor(num_threads=1).execute(lambda _: threading.current_thread(), range(3))
    assert threads == [threading.current_thread()] * 3


def test_dspex_context_is_seen_in_worker_threads(dspex_settings):
    with dspex.context(max_errors=3, provide_traceback=True):
        got = executor(num_threads=3).execute(lambda _: settings.setting("max_errors"), range(4))
        ex = executor(num_threads=2)
    assert got == [3] * 4 and ex.max_errors == 3 and ex.provide_traceback is True


def test_defaults_come_from_the_settings(dspex_settings):
    ex = ParallelExecutor()
    assert (ex.num_threads, ex.max_errors, ex.provide_traceback) == (8, 10, False)
    with dspex.context(num_threads=3, max_errors=1):
        ex = ParallelExecutor()
    assert (ex.num_threads, ex.max_errors) == (3, 1)


def test_defaults_without_a_settings_reader(monkeypatch):
    monkeypatch.setattr(callback_context, "_settings_reader", None)
    ex = ParallelExecutor()
    assert (ex.num_threads, ex.max_errors, ex.provide_traceback) == (8, 10, False)


def _interrupt_after(seconds: float) -> threading.Timer:
    timer = threading.Timer(seconds, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    return timer


@pytest.mark.parametrize("num_threads", [1, 3])
def test_ctrl_c_cancels_and_waits_for_the_running_items(num_threads):
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    started, finished, lock = [], [], threading.Lock()

    def task(i):
        with lock:
            started.append(i)
        time.sleep(0.1)
        with lock:
            finished.append(i)
        return i

    timer = _interrupt_after(0.25)
    try:
        with pytest.raises(KeyboardInterrupt):
            executor(num_threads=num_threads).execute(task, range(100))
    finally:
        timer.cancel()
    assert 0 < len(started) < 100
    if num_threads == 1:  # the item on the calling thread is the one Ctrl-C interrupts
        assert set(started) - set(finished) <= {started[-1]}
    else:  # the workers' items ran to their end, and none is left running
        assert sorted(finished) == sorted(started)
    assert not pool_threads()


def test_a_nested_executor_stops_with_its_parent():
    inner_started = []

    def inner_task(j):
        inner_started.append(j)
        time.sleep(0.05)
        return j

    def outer_task(i):
        if i == 0:
            time.sleep(0.1)
            raise ValueError("outer item failed")
        return executor(num_threads=2).execute(inner_task, range(50))

    with pytest.raises(ExecutionCancelled):
        executor(num_threads=2, max_errors=1).execute(outer_task, range(2))
    assert len(inner_started) < 20  # the inner run was cancelled, not finished


def test_a_straggler_is_started_again_and_the_first_answer_wins():
    release, attempts = threading.Event(), []

    def task(i):
        attempts.append(i)
        if i == 1 and attempts.count(1) == 1:
            release.wait(10)  # the first attempt hangs
            return "late"
        return f"ok {i}"

    start = time.monotonic()
    try:
        results = executor(num_threads=2, timeout=0.3, straggler_limit=2).execute(task, range(4))
    finally:
        release.set()
    assert results == ["ok 0", "ok 1", "ok 2", "ok 3"]
    assert attempts.count(1) == 2 and time.monotonic() - start < 3


def test_timeout_zero_never_restarts():
    attempts = []

    def task(i):
        attempts.append(i)
        time.sleep(0.3 if i == 0 else 0)
        return i

    assert executor(num_threads=2, timeout=0).execute(task, range(2)) == [0, 1] and attempts.count(0) == 1


def test_a_base_exception_in_an_item_is_raised_in_the_caller():
    def task(i):
        if i == 1:
            raise SystemExit(3)
        return i

    with pytest.raises(SystemExit):
        executor(num_threads=2).execute(task, range(4))


@pytest.mark.parametrize("num_threads", [1, 3])
def test_progress_reports_successes_and_scores(num_threads):
    calls = []
    ex = executor(num_threads=num_threads)
    ex._update_progress = lambda pbar, n, total: calls.append((n, total))
    ex.execute(lambda i: None, range(4))
    assert calls[-1] == (4, 4) and len(calls) == 4
    calls.clear()
    ex = executor(num_threads=num_threads, compare_results=True)
    ex._update_progress = lambda pbar, n, total: calls.append((n, total))
    assert ex.execute(lambda i: (i, i > 1), range(4)) == [(0, False), (1, False), (2, True), (3, True)]
    assert calls[-1] == (2, 4)


def test_the_error_pickles():
    import pickle

    err = pickle.loads(pickle.dumps(ExecutionCancelled(f"{CANCELLED_MESSAGE} x", [1, 2])))
    assert isinstance(err, ExecutionCancelled) and err.failed_indices == [1, 2] and CANCELLED_MESSAGE in str(err)


def test_zero_threads_is_a_config_error():
    with pytest.raises(dspex.ConfigError, match="num_threads"):
        ParallelExecutor(num_threads=-1)
