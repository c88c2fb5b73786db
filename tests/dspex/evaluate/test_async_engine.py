"""The asyncio engine: examples as tasks on the runtime's event loop, chosen by itself for async programs,
thousands in flight on a handful of threads, and every promise of the threads' engine kept (one row per
example under faults, timeouts that give their lease back, the ledger)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

import dspex
from dspex.testing import Faults, ProviderServer
from dspex.utils.callback import BaseCallback

from ..scripted import questions as devset
from ..scripted import shout as answer
from ..scripted import shouted as exact

KEY = "sk-test-async-engine-0123"


def make_lm(server, **options):
    defaults = {"api_key": KEY, "base_url": server.base_url(), "rpm": None, "cache": False, "backoff_base": 0.01,
                "backoff_cap": 0.05}
    return dspex.LM("openai/async", **{**defaults, **options})


class RowThreads(BaseCallback):
    """Records the thread each evaluation row runs on."""

    def __init__(self):
        self.threads = set()

    def on_evaluate_row_start(self, call_id, instance, inputs):
        self.threads.add(threading.current_thread().name)


class SyncOnly(dspex.Module):
    def __init__(self, lm):
        super().__init__()
        self.step = dspex.Predict("question -> answer", lm=lm)

    def forward(self, question):
        return self.step(question=question)


class AsyncToo(SyncOnly):
    async def aforward(self, question):
        return await self.step.acall(question=question)


@pytest.fixture
def world(tmp_path):
    with ProviderServer(answer=answer, api_key=KEY) as server, \
            dspex.runtime("local", cache_dir=tmp_path / "cache", log_level=None) as rt:
        yield server, rt


def engine_of(program, **options):
    seen = RowThreads()
    with dspex.context(callbacks=[seen]):
        result = dspex.Evaluate(devset(6), exact, max_concurrency=3, progress=False, **options)(program)
    assert result.score == 100.0
    return "async" if seen.threads == {"dspex-loop"} else "threads"


def test_auto_runs_async_programs_on_the_loop_and_sync_ones_on_threads(world):
    server, _ = world
    lm = make_lm(server)
    assert engine_of(dspex.Predict("question -> answer", lm=lm)) == "async"
    assert engine_of(AsyncToo(lm)) == "async"
    assert engine_of(SyncOnly(lm)) == "threads"  # its forward would hold a thread of the loop's pool
    assert engine_of(dspex.Predict("question -> answer", lm=lm), engine="threads") == "threads"
    assert engine_of(SyncOnly(lm), engine="async") == "async"  # asked for: its forward runs on a thread under it


def test_a_subclass_overriding_only_forward_is_not_bypassed_by_the_inherited_aforward(world):
    server, _ = world

    class Shouting(dspex.Predict):
        def forward(self, **kwargs):
            pred = super().forward(**kwargs)
            pred.answer = pred.answer + "!"
            return pred

    program = Shouting("question -> answer", lm=make_lm(server))
    result = dspex.Evaluate(devset(4), lambda e, p: p.answer.endswith("!"), max_concurrency=2, progress=False)(program)
    assert result.score == 100.0
    assert asyncio.run(program.acall(question="q1")).answer == "Q1!"


def test_a_bad_engine_is_a_config_error():
    with pytest.raises(dspex.ConfigError, match="engine must be one of"):
        dspex.Evaluate(devset(1), exact, engine="greenlets")


@pytest.mark.slow
def test_a_thousand_examples_in_flight_together_on_few_threads(world):
    _, rt = world
    n = 1000
    with ProviderServer(answer=answer, api_key=KEY, faults=Faults(latency=3.0)) as slow:
        lm = make_lm(slow, max_in_flight=n)
        program = dspex.Predict("question -> answer", lm=lm)
        before = threading.active_count()  # this process's threads of other tests (their servers, runtimes)
        most = [before]
        done = threading.Event()

        def sample():
            while not done.wait(0.05):
                most.append(threading.active_count())

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        start = time.monotonic()
        result = dspex.Evaluate(devset(n), exact, max_concurrency=n, progress=False)(program)
        wall = time.monotonic() - start
        done.set()
        assert sorted(r.index for r in result.rows) == list(range(n))
        assert result.score == 100.0
        assert slow.peak_concurrency >= 0.9 * n, slow.peak_concurrency  # all of them waited out 3 s together
        assert max(most) - before <= 100, (before, max(most))  # (threads: a thousand)
        assert wall < 30, wall
        assert lm.usage().ok == n


def test_with_the_client_actor_in_this_process_the_loop_asks_for_its_leases_itself(world):
    """The local base: admissions and success reports go from the loop (no pump or report thread), in
    batches, each lease granted and booked once, whatever the limit makes wait."""
    server, rt = world
    lm = make_lm(server, max_in_flight=4)  # 16 at once: most admissions wait for a report to free a lease
    program = dspex.Predict("question -> answer", lm=lm)
    started: list[str] = []
    original = threading.Thread.start

    def noting(self):
        started.append(self.name)
        return original(self)

    threading.Thread.start = noting
    try:
        result = dspex.Evaluate(devset(200), exact, max_concurrency=16, progress=False)(program)
    finally:
        threading.Thread.start = original
    assert result.score == 100.0 and sorted(r.index for r in result.rows) == list(range(200))
    assert not [name for name in started if name.startswith(("dspex-admissions", "dspex-reports"))], started
    status = lm.status()
    assert (status.in_flight, status.queued) == (0, 0)
    assert lm.usage().requests == lm.usage().ok == 200
    assert len(server.log) == 200


def test_faults_at_scale_end_each_row_once_and_a_hung_request_at_its_timeout(world):
    _, rt = world
    n = 400
    faults = Faults(error_rates={500: 0.05, 429: 0.05}, hang_rate=0.01, hang_s=30.0, retry_after=0.05,
                    latency=0.05, seed=7)
    with ProviderServer(answer=answer, api_key=KEY, faults=faults) as server:
        lm = make_lm(server, max_in_flight=n, timeout=1.0, retries=3, breaker=dspex.Breaker(max_failures=10_000))
        start = time.monotonic()
        result = dspex.Evaluate(devset(n), exact, max_concurrency=n, progress=False, timeout_per_example=20)(
            dspex.Predict("question -> answer", lm=lm))
        wall = time.monotonic() - start
        assert sorted(r.index for r in result.rows) == list(range(n))
        assert result.score >= 95.0, [str(r.error) for r in result.rows if r.error][:3]
        assert wall < 15, wall  # a hung connection is cut at the LM's timeout (1 s), not the server's 30 s
        usage = lm.usage()
        assert usage.failed + usage.ok == n
        assert usage.retries > 0
        assert lm.status().in_flight == 0


def test_a_timed_out_example_is_cancelled_and_gives_its_lease_back(world):
    _, rt = world
    with ProviderServer(answer=answer, api_key=KEY, faults=Faults(hang_rate=1.0, hang_s=30.0)) as server:
        lm = make_lm(server, timeout=60.0, max_in_flight=4)
        start = time.monotonic()
        result = dspex.Evaluate(devset(4), exact, max_concurrency=4, progress=False, timeout_per_example=0.5)(
            dspex.Predict("question -> answer", lm=lm))
        assert time.monotonic() - start < 10
        assert [type(r.error).__name__ for r in result.rows] == ["ExampleTimeout"] * 4
        deadline = time.monotonic() + 5
        while lm.status().in_flight and time.monotonic() < deadline:
            time.sleep(0.05)
        assert lm.status().in_flight == 0  # the cancelled tasks handed their leases back


def test_an_async_metric_is_awaited_and_a_failing_one_is_the_rows_error(world):
    server, _ = world

    async def metric(example, pred, trace=None):
        await asyncio.sleep(0)
        if example.question == "q1":
            raise ValueError("metric bug")
        return pred.answer == example.question.upper()

    result = dspex.Evaluate(devset(4), metric, max_concurrency=4, progress=False)(
        dspex.Predict("question -> answer", lm=make_lm(server)))
    errors = {r.index: r.error for r in result.rows}
    assert isinstance(errors[1], dspex.evaluate.MetricError) and "metric bug" in str(errors[1])
    assert [errors[i] for i in (0, 2, 3)] == [None] * 3 and result.score == 75.0


def test_a_quick_metric_moves_onto_the_loop_and_a_slow_one_stays_on_threads(world):
    server, _ = world
    program = dspex.Predict("question -> answer", lm=make_lm(server))

    def where(slow, n=40):
        seen = []

        def metric(example, pred, trace=None):
            seen.append(threading.current_thread().name)
            if slow == "long":
                time.sleep(0.06)  # longer than a GIL wait: judged by its wall time from the first probe
            elif slow is True or (slow == "some" and len(seen) in (2, 5, 7)):
                time.sleep(0.01)  # (some: as a quick probe that waited for the GIL the loop held)
            return exact(example, pred)

        result = dspex.Evaluate(devset(n), metric, max_concurrency=1, progress=False)(program)
        assert result.score == 100.0
        return seen

    quick = where(slow=False)
    assert all(name.startswith("dspex-metric") for name in quick[:8]) and set(quick[8:]) == {"dspex-loop"}
    slow = where(slow=True)  # 10 ms of waiting, not of CPU: it reaches the loop, and leaves after two calls
    assert slow.count("dspex-loop") <= 2 and all(name.startswith("dspex-metric") for name in slow[10:])
    assert all(name.startswith("dspex-metric") for name in where(slow="long", n=12))  # never on the loop
    some = where(slow="some")  # the median of the first probes decides, not the slowest one
    assert all(name.startswith("dspex-metric") for name in some[:8]) and set(some[8:]) == {"dspex-loop"}


def test_async_calls_from_the_users_own_loop_share_the_client(world):
    server, _ = world
    lm = make_lm(server, max_in_flight=8)
    program = AsyncToo(lm)

    async def main():
        preds = await asyncio.gather(*(program.acall(question=f"q{i}") for i in range(50)))
        texts = await lm.acall("hello", n=3)
        return preds, texts

    preds, texts = asyncio.run(main())
    assert [p.answer for p in preds] == [f"Q{i}" for i in range(50)]
    assert len(texts) == 3
    assert lm.usage().ok == 53
    assert server.peak_concurrency <= 8


class Where(dspex.Module):
    """Answers, and says which thread its call ran on."""

    def __init__(self, lm):
        super().__init__()
        self.step = dspex.Predict("question -> answer", lm=lm)

    async def aforward(self, question):
        pred = await self.step.acall(question=question)
        return dspex.Prediction(answer=pred.answer, thread=threading.current_thread().name)

    def forward(self, question):
        pred = self.step(question=question)
        return dspex.Prediction(answer=pred.answer, thread=threading.current_thread().name)


@pytest.mark.slow
def test_worker_processes_run_an_async_program_on_their_own_loop(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)  # worker processes read their key from the environment
    with ProviderServer(answer=answer, api_key=KEY) as server, \
            dspex.runtime("multiproc", cache_dir=tmp_path / "cache", log_level=None):
        program = Where(make_lm(server))

        def on(thread):
            return lambda e, p: p.answer == e.question.upper() and p.thread == thread

        result = dspex.Evaluate(devset(40), on("dspex-loop"), max_concurrency=8, workers=2, progress=False)(program)
        assert result.score == 100.0, [(r.prediction, r.error) for r in result.rows if not r.score][:3]
        assert len({r.worker for r in result.rows}) == 2
        threads = dspex.Evaluate(devset(8), lambda e, p: "-ex_" in p.thread, max_concurrency=4, workers=2,
                                 progress=False, engine="threads")(program)
        assert threads.score == 100.0, [r.prediction for r in threads.rows][:2]


def test_an_await_given_up_on_the_users_loop_cancels_the_request_on_the_runtimes(world):
    _, rt = world
    with ProviderServer(answer=answer, api_key=KEY, faults=Faults(latency=5.0)) as slow:
        lm = make_lm(slow, max_in_flight=4)

        async def main():
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(lm.acall("hi"), 0.5)

        asyncio.run(main())
        deadline = time.monotonic() + 2
        while lm.status().in_flight and time.monotonic() < deadline:
            time.sleep(0.02)
        assert lm.status().in_flight == 0  # the hopped task was cancelled, its lease given back (not 5 s later)
