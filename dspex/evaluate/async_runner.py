"""Examples as tasks on the runtime's event loop: thousands in flight without a thread each.

The asyncio engine of an evaluation. ``Evaluate`` picks it by itself (``engine="auto"``) when the program can
run async all the way down (:func:`runs_async`): every module has an ``aforward`` twin of its ``forward``
(every built-in predictor does) and every LM is a ``dspex.LM``, whose requests are tasks on the same loop
(``Pipeline.asend``: aiohttp, leases asked for in batches). The bookkeeping is the threads' (``ThreadRunner``:
the same tracker, one row per example, timeouts, cancel, Ctrl-C); only how an example starts differs: a
task, and a timed-out one is cancelled (its lease goes back) instead of left to run out. A metric is called
on a bounded pool of threads until its first calls prove it quick, then on the loop, and back on the threads
for good after two slow calls in a row there; an ``async def`` metric is awaited; a program without
``acall`` (a plain function) runs on that pool.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import enum
import functools
import inspect
import statistics
import time
from typing import Any, Awaitable, Callable, Sequence

from ..clients.event_loop import EventLoop, LoopState
from ..clients.lm import LM, answers_itself
from ..clients.scope import run_scope
from ..primitives import Example
from ..utils.callback import observed
from .result import EvalRow
from .runner import Metric, ThreadRunner, _without_keys, program_failed, scored
from .tracker import Tracker

METRIC_THREADS = 32  # the most metrics (and plain-function programs) running at once, each on a thread
INLINE_METRIC_S = 0.002  # a metric call longer than this keeps (or moves) the run's metric calls off the loop
QUICK_PROBES = 8  # metric calls on threads before the rest run on the loop (if their median was quick)
GIL_WAIT_S = 0.05  # a probe this long or shorter is judged by its CPU time (the rest of it: waiting for the GIL)


class MetricMode(str, enum.Enum):
    """Where a run's sync metric is called (``AsyncRunner._score``)."""

    PROBING = "probing"  # on threads, timing each call
    LOOP = "loop"  # on the loop: its calls proved quick
    THREADS = "threads"  # on threads for good: a call was slow


class AsyncRunner(ThreadRunner):
    """See the module docstring. ``loop``: the runtime's event loop (``rt.engines.loop``)."""

    def __init__(self, program: Any, metric: Metric, examples: Sequence[Example], tracker: Tracker,
                 concurrency: int, loop: EventLoop, worker: str = "main", run: str | None = None) -> None:
        super().__init__(program, metric, examples, tracker, concurrency, worker=worker, run=run)
        self.loop = loop
        self._tasks: dict[int, asyncio.Task] = {}
        self._threads = concurrent.futures.ThreadPoolExecutor(min(concurrency, METRIC_THREADS),
                                                              thread_name_prefix="dspex-metric")
        self._metric_mode = MetricMode.PROBING
        self._probes: list[float] = []  # seconds each probe on a thread took
        self._slow_on_loop = False  # the last call on the loop was slow

    def _start(self, indices: list[int]) -> None:
        starts = [(index, self.tracker.attempts.get(index, 1)) for index in indices]
        context = contextvars.copy_context()  # the caller's (its dspex.context overrides); each task copies it
        self.loop.get().call_soon_threadsafe(context.run, self._spawn, starts)

    def _spawn(self, starts: list[tuple[int, int]]) -> None:
        loop = asyncio.get_running_loop()
        for index, attempts in starts:
            task = loop.create_task(self._example(index, attempts))
            self._tasks[index] = task
            task.add_done_callback(functools.partial(self._forget, index))

    def _forget(self, index: int, task: asyncio.Task) -> None:
        if self._tasks.get(index) is task:  # (a retried example has a newer task)
            del self._tasks[index]

    def _abandon(self, indices: list[int]) -> None:
        """Examples past their timeout: their tasks are cancelled (a lease held goes back at once)."""
        def cancel() -> None:
            for index in indices:
                task = self._tasks.get(index)
                if task is not None:
                    task.cancel()

        self.loop.get().call_soon_threadsafe(cancel)

    async def _example(self, index: int, attempts: int) -> None:
        try:
            row = await arun_example(self.program, self.metric, index, self.examples[index], self.worker, attempts,
                                     self.run, self._on_thread, self._score)
        except asyncio.CancelledError:
            return  # timed out (its row is written without it) or the runner closed
        self.results.put(row)

    async def _on_thread(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        return await on_pool(self._threads, fn, *args, **kwargs)

    async def _score(self, fn: Any, *args: Any) -> Any:
        """The metric on the pool's threads until its first ``QUICK_PROBES`` calls took a median of at most
        ``INLINE_METRIC_S`` (a thread hop costs more than most metrics), then on the loop; two calls in a row
        on the loop that take longer (a metric that calls an LM, or waits) send it back to the threads for
        good, so a slow metric holds the loop up at most twice, and one that is slow from the start never does.
        A probe on a thread is judged by its CPU time if it took at most ``GIL_WAIT_S`` (a quick metric there
        waits for the GIL the loop holds: with many examples in flight most probes took milliseconds of wall
        time, and a trivial metric stayed on threads for the whole run, a tenth of its CPU in thread hops),
        by its wall time beyond (a metric that waits: an LM call, a gate); one that waits less is caught on
        the loop."""
        if self._metric_mode is MetricMode.LOOP:  # judged by wall time: the loop waited all of it
            start = time.perf_counter()
            row = fn(*args)
            slow = time.perf_counter() - start > INLINE_METRIC_S
            if slow and self._slow_on_loop:  # twice in a row: one can be the GIL lent out, or the process preempted
                self._metric_mode = MetricMode.THREADS
            self._slow_on_loop = slow
            return row
        took: list[float] = []

        def timed(*a: Any) -> Any:
            start, cpu = time.perf_counter(), time.thread_time()
            try:
                return fn(*a)
            finally:
                wall, cpu = time.perf_counter() - start, time.thread_time() - cpu
                took.append(cpu if wall <= GIL_WAIT_S else wall)

        row = await self._on_thread(timed, *args)
        if self._metric_mode is MetricMode.PROBING:
            self._probes.append(took[0] if took else float("inf"))
            if len(self._probes) >= QUICK_PROBES:
                quick = statistics.median(self._probes) <= INLINE_METRIC_S
                self._metric_mode = MetricMode.LOOP if quick else MetricMode.THREADS
        return row

    def close(self) -> None:
        """Cancel what still runs (a cancelled run's stragglers); the metric threads end with their work."""
        def cancel() -> None:
            for task in list(self._tasks.values()):
                task.cancel()

        if self.loop.state is LoopState.RUNNING:
            self.loop.get().call_soon_threadsafe(cancel)
        self._threads.shutdown(wait=False)


OnThread = Callable[..., Awaitable[Any]]  # runs fn(*args, **kwargs) on a thread, awaited


async def on_pool(pool: concurrent.futures.Executor, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` on ``pool``, in a copy of the task's context."""
    context = contextvars.copy_context()
    return await asyncio.get_running_loop().run_in_executor(pool, lambda: context.run(fn, *args, **kwargs))


async def arun_example(program: Any, metric: Metric, index: int, example: Example, worker: str, attempts: int,
                       run: str | None, on_thread: OnThread, score: OnThread | None = None) -> EvalRow:
    """``runner.run_example`` as a task: the program awaited (``acall``; a program without one on a
    thread), then the metric through ``score`` (default: on a thread; an ``async def`` metric awaited)."""
    with run_scope(run), observed(None, "evaluate_row", index=index, example=example, attempt=attempts,
                                  worker=worker) as report:
        try:
            acall = getattr(program, "acall", None)
            if acall is not None:
                prediction = await acall(**example.inputs())
            else:
                prediction = await on_thread(program, **example.inputs())
        except (KeyboardInterrupt, asyncio.CancelledError):
            raise
        except BaseException as exc:  # noqa: BLE001 - every failure of the program becomes this row's error
            row = program_failed(exc, index, example, worker, attempts)
        else:
            if inspect.iscoroutinefunction(getattr(metric, "metric", metric)):
                row = await _ascored(metric, index, example, prediction, worker, attempts)
            else:
                row = await (score or on_thread)(scored, metric, index, example, prediction, worker, attempts)
        report.outputs = _without_keys(row)
        return report.outputs


async def _ascored(metric: Metric, index: int, example: Example, prediction: Any, worker: str,
                   attempts: int) -> EvalRow:
    """An ``async def`` metric, awaited on the loop; its value (or failure) scored as a sync metric's is."""
    try:
        value = await metric(example, prediction)
    except (KeyboardInterrupt, asyncio.CancelledError):
        raise
    except BaseException as exc:  # noqa: BLE001 - scored() turns it into the row's MetricError
        failure = exc

        def raising(*_: Any) -> Any:
            raise failure

        return scored(raising, index, example, prediction, worker, attempts)
    return scored(lambda *_: value, index, example, prediction, worker, attempts)


def runs_async(program: Any, default_lm: Any = None) -> bool:
    """The program runs async all the way down (see the module docstring): every module in it has its
    own ``aforward``, and every predictor's LM (or ``default_lm``, for one without) is a ``dspex.LM`` that
    does not answer in its own ``__call__``."""
    from ..programs.module import Module, own_aforward

    if not isinstance(program, Module):
        return False
    modules = [program, *(m for _, m in program.named_sub_modules())]
    if any(own_aforward(m) is None for m in modules):
        return False
    for _, predictor in program.named_predictors():
        lm = getattr(predictor, "lm", None) or default_lm
        if not isinstance(lm, LM) or answers_itself(type(lm)):
            return False
    return True


__all__ = ["AsyncRunner", "runs_async", "arun_example", "on_pool", "METRIC_THREADS"]
