"""Worker processes under fire: hypothesis-drawn provider faults, kill -9 of workers at drawn moments and
metric exceptions, and still exactly one row per example; a real Ctrl-C mid-run, then resume."""

from __future__ import annotations

import os
import signal
import threading
from contextlib import contextmanager
from typing import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dspex
from dspex.evaluate import load_journal, EvaluationCancelled, MetricError
from dspex.testing import Faults, ProviderServer
from tests.conftest import pids_titled, wait_until

from .test_evaluate import KEY, answer, devset, exact, failing_for

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def farm(tmp_path_factory):
    """A multiproc runtime (examples run in eval-worker processes) and the simulator."""
    os.environ["OPENAI_API_KEY"] = KEY  # worker processes read their key from the environment
    try:
        with ProviderServer(answer=answer, api_key=KEY) as server, \
                dspex.runtime("multiproc", cache_dir=tmp_path_factory.mktemp("cache"), log_level=None) as rt:
            wait_until(lambda: pids_titled(b"supervision: watchdog"), timeout=5)  # titled before tests look
            lm = dspex.LM("openai/eval", api_key=KEY, base_url=server.base_url(), rpm=None, cache=False, retries=2,
                          backoff_base=0.001, backoff_cap=0.005, breaker=dspex.Breaker(max_failures=10_000))
            yield server, rt, lm
    finally:
        del os.environ["OPENAI_API_KEY"]


def kill_workers_at(server: ProviderServer, moments: list[int], killed: list[int], stop: threading.Event) -> None:
    """kill -9 an eval-worker when the server has seen each of ``moments`` requests (bounded wait)."""
    for moment in sorted(moments):
        if not wait_until(lambda: len(server.log) >= moment or stop.is_set(), timeout=20) or stop.is_set():
            return
        pids = pids_titled(b"dspex: eval-worker")
        if pids:
            try:
                os.kill(pids[moment % len(pids)], signal.SIGKILL)
                killed.append(pids[moment % len(pids)])
            except ProcessLookupError:
                pass


@contextmanager
def killing(server: ProviderServer, moments: list[int]) -> Iterator[list[int]]:
    """Run the block while a thread kills workers at ``moments``; yields the pids it killed."""
    killed: list[int] = []
    stop = threading.Event()
    killer = threading.Thread(target=kill_workers_at, args=(server, moments, killed, stop), daemon=True)
    killer.start()
    try:
        yield killed
    finally:
        stop.set()
        killer.join(timeout=25)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(schedule=st.lists(st.sampled_from(["ok", "ok", "ok", "500", "429", "400", "malformed", "reset"]), max_size=40),
       n=st.integers(5, 60), kills=st.lists(st.floats(0.05, 0.5), min_size=1, max_size=2),
       metric_fails=st.sets(st.integers(0, 59), max_size=5))
def test_exactly_one_row_per_example_with_faults_and_worker_kills(farm, schedule, n, kills, metric_fails):
    server, _, lm = farm
    server.clear_log()
    server.set_faults(Faults(schedule=schedule, retry_after=0.0, latency=0.01))
    data = devset(n)
    bad = {data[i].question for i in metric_fails if i < n}
    with killing(server, [max(1, int(f * n)) for f in kills]):  # moments: requests seen by the server
        result = dspex.Evaluate(data, failing_for(bad), max_concurrency=8, workers=2, progress=False,
                                timeout_per_example=30).run(dspex.Predict("question -> answer", lm=lm))
    assert [r.index for r in result.rows] == list(range(n))
    assert [r.example for r in result.rows] == data
    assert result.mean == pytest.approx(sum(r.score for r in result.rows) / n)
    for row in result.rows:
        if row.error is not None:
            assert isinstance(row.error, (dspex.LMError, MetricError, dspex.AdapterParseError)), row.error
            assert row.score == 0
        else:
            assert row.score == 1.0 and row.example.question not in bad
    assert result.aborted is None  # (a kill may land after the last row: test_twelve_hundred... always kills mid-run)


def test_ctrl_c_mid_run_then_resume_gives_the_rows_of_an_uninterrupted_run(tmp_path):
    """A real SIGINT in the middle of a run: partial result, journal; the resumed run (cache on) ends
    with exactly the rows of a run that was never interrupted."""
    with ProviderServer(answer=answer, api_key=KEY, faults=Faults(latency=0.02)) as server, \
            dspex.runtime("local", cache_dir=tmp_path / "cache", log_level=None):
        lm = dspex.LM("openai/eval", api_key=KEY, base_url=server.base_url(), rpm=None, cache=True)
        program = dspex.Predict("question -> answer", lm=lm)
        data = devset(120)
        journal = tmp_path / "run.jsonl"
        threading.Timer(0.5, signal.raise_signal, args=(signal.SIGINT,)).start()
        partial = dspex.Evaluate(data, exact, max_concurrency=4, progress=False, journal=journal).run(program)
        assert partial.aborted == "interrupted"
        cancelled = [r for r in partial.rows if isinstance(r.error, EvaluationCancelled)]
        assert 0 < len(cancelled) < 120 and len(partial.rows) == 120
        journaled = {r.index for r in load_journal(journal)}  # every finished row, drained ones included
        assert journaled == {r.index for r in partial.rows if not isinstance(r.error, EvaluationCancelled)}
        asked_before = len(server.log)
        resumed = dspex.Evaluate(data, exact, max_concurrency=4, progress=False, journal=journal,
                                 resume_from=journal).run(program)
        assert len(server.log) - asked_before <= len(cancelled)  # finished rows are not asked again
        full = dspex.Evaluate(data, exact, max_concurrency=4, progress=False).run(program)  # all cached now
        assert [(r.index, r.score, r.prediction.answer) for r in resumed.rows] == \
               [(r.index, r.score, r.prediction.answer) for r in full.rows]
        assert resumed.score == full.score == 100.0


def test_twelve_hundred_examples_with_faults_and_a_kill_each_row_once_ledger_matches_server(farm):
    server, rt, lm = farm
    server.clear_log()
    server.set_faults(Faults(error_rates={500: 0.1, 429: 0.05}, retry_after=0.0, latency=0.005))
    before = rt.usage().total
    data = devset(1200)
    with killing(server, [400]) as killed:
        result = dspex.Evaluate(data, exact, max_concurrency=16, workers=2, progress=False,
                                timeout_per_example=30).run(dspex.Predict("question -> answer", lm=lm))
    assert killed and [r.index for r in result.rows] == list(range(1200))
    assert result.mean == pytest.approx(sum(r.score for r in result.rows) / 1200)
    assert all(isinstance(r.error, dspex.LMError) for r in result.errors)  # only exhausted retries fail
    after = rt.usage().total
    # every answer the server gave is in the ledger once, whichever process asked for it; the ones a killed
    # worker received and never reported (per thread, 8 each, at most one answer in flight and one report
    # waiting for its batch) are booked when its leases are taken back, unconfirmed, at their maximum
    answered, booked = len(server.successes()), after.ok - before.ok
    assert booked <= answered <= booked + 16
    billed = sum(r.prompt_tokens + r.completion_tokens for r in server.log)
    tokens = after.total_tokens - before.total_tokens
    unconfirmed = after.unconfirmed_tokens - before.unconfirmed_tokens
    assert tokens - unconfirmed <= billed <= tokens  # never less than the bill; what is not confirmed is marked
