"""Running examples: one example → one row, whatever raises; and a bounded, straggler-proof thread runner."""

from __future__ import annotations

import contextvars
import queue
import threading
import time
from dataclasses import replace
from typing import Any, Callable, Iterator, Protocol, Sequence

from ..clients.scope import run_scope
from ..primitives import Example
from ..scrub import known_keys, scrub_text
from ..utils.callback import observed
from .result import (EvalRow, MetricError, ProgramAborted, RemoteError, metric_score, portable,
                     timeout_row)
from .tracker import Tracker

Metric = Callable[..., Any]


def run_example(program: Any, metric: Metric, index: int, example: Example, worker: str, attempts: int = 1,
                run: str | None = None) -> EvalRow:
    """Program, then metric; a failure of either is this row's typed error (score 0). The LM calls
    made inside are booked to ``run`` in the ledger; the row is one ``evaluate_row`` step for callbacks
    (a span under dspex.telemetry)."""
    with run_scope(run), observed(None, "evaluate_row", index=index, example=example, attempt=attempts,
                                  worker=worker) as report:
        report.outputs = _without_keys(_run_example(program, metric, index, example, worker, attempts))
        return report.outputs


def _without_keys(row: EvalRow) -> EvalRow:
    """The row with every known key masked in its error's and feedback's text (a metric raising
    ``ValueError(f"bad {key}")``): rows are formed here, so through them no key reaches the result,
    a journal, the dashboard or a log. A builtin exception keeps its type; another becomes a RemoteError
    with its type's name (its own fields cannot be masked in place)."""
    if row.error is None and row.feedback is None:
        return row
    keys = known_keys()
    if not keys:
        return row
    error, feedback = row.error, None if row.feedback is None else scrub_text(row.feedback, keys)
    if error is not None:
        text = str(error)
        clean = scrub_text(text, keys)
        if clean != text:
            error = _masked(error, clean)
    if error is row.error and feedback == row.feedback:
        return row
    return replace(row, error=error, feedback=feedback)


def _masked(error: BaseException, text: str) -> BaseException:
    kind = type(error)
    if kind.__module__ == "builtins" or kind is MetricError:
        try:
            twin = kind(text)
        except TypeError:  # a builtin with more arguments than a message (UnicodeDecodeError)
            pass
        else:
            if str(twin) == text:
                return twin
    return RemoteError(kind.__name__, text)


def _run_example(program: Any, metric: Metric, index: int, example: Example, worker: str, attempts: int) -> EvalRow:
    try:
        prediction = program(**example.inputs())
    except KeyboardInterrupt:
        raise  # Ctrl-C keeps its meaning: the run stops with its partial result
    except BaseException as exc:  # noqa: BLE001 - every failure of the program becomes this row's error
        return program_failed(exc, index, example, worker, attempts)
    return scored(metric, index, example, prediction, worker, attempts)


def program_failed(exc: BaseException, index: int, example: Example, worker: str, attempts: int) -> EvalRow:
    """The row of an example whose program raised (SystemExit or a library's own BaseException too: this
    example's failure, not the run's)."""
    if isinstance(exc, Exception):
        error: BaseException = portable(exc)
    else:
        error = ProgramAborted(f"the program raised {type(exc).__name__}: {exc}")
    return EvalRow(index=index, example=example, prediction=None, score=0.0, error=error, attempts=attempts,
                   worker=worker)


def scored(metric: Metric, index: int, example: Example, prediction: Any, worker: str, attempts: int) -> EvalRow:
    """The row of an example the program answered: the metric's score, or its failure (score 0)."""
    try:
        value = metric(example, prediction)  # a MetricCall: called the way this metric was bound (Evaluate's form)
        score, feedback = metric_score(value)
    except KeyboardInterrupt:
        raise
    except MetricError as exc:
        return EvalRow(index=index, example=example, prediction=prediction, score=0.0, error=exc,
                       attempts=attempts, worker=worker)
    except BaseException as exc:  # noqa: BLE001 - a metric failure is recorded, the run goes on
        error = MetricError(f"the metric raised {type(exc).__name__}: {exc}")
        return EvalRow(index=index, example=example, prediction=prediction, score=0.0, error=portable(error),
                       attempts=attempts, worker=worker)
    return EvalRow(index=index, example=example, prediction=prediction, score=score, attempts=attempts, worker=worker,
                   feedback=feedback)


class Runner(Protocol):
    """How Evaluate drives a run, in threads (ThreadRunner) or on worker processes (WorkerFeed)."""

    aborted: str | None  # why the run stopped early on its own (None: it did not)

    def rows(self, poll: float = ..., until: float | None = None) -> Iterator[EvalRow]: ...

    def cancel(self) -> None: ...

    def close(self) -> None: ...

    @property
    def duplicates(self) -> int: ...


class ThreadRunner:
    """Runs up to ``concurrency`` examples at once, one daemon thread each, so a hung example holds
    only its own thread: the tracker fails it at its timeout and the run goes on."""

    def __init__(self, program: Any, metric: Metric, examples: Sequence[Example], tracker: Tracker,
                 concurrency: int, worker: str = "main", clock: Callable[[], float] = time.monotonic,
                 run: str | None = None) -> None:
        self.program, self.metric, self.examples, self.tracker = program, metric, examples, tracker
        self.concurrency, self.worker, self.clock, self.run = concurrency, worker, clock, run
        self.results: queue.SimpleQueue = queue.SimpleQueue()
        self.cancelled = threading.Event()
        self.aborted: str | None = None  # a thread run never aborts on its own

    def rows(self, poll: float = 0.05, until: float | None = None) -> Iterator[EvalRow]:
        """Rows as they finish (each example exactly once), until all are done, ``cancel()`` has
        drained what was in flight, or the clock passes ``until``."""
        while not self.tracker.finished and (until is None or self.clock() < until):
            if not self.cancelled.is_set():
                free = self.concurrency - len(self.tracker.in_flight)
                taken = self.tracker.take(self.worker, max(0, free), self.clock())
                if taken:
                    self._start(taken)
            failed, retried = self.tracker.overdue(self.clock())
            if failed or retried:
                self._abandon(failed + retried)
            for index in failed:
                if self.tracker.finish(index):
                    yield timeout_row(index, self.examples[index], self.tracker.attempts.get(index, 1), self.worker)
            if self.cancelled.is_set() and not self.tracker.in_flight:
                return
            try:
                row = self.results.get(timeout=poll)
            except queue.Empty:
                continue
            if self.tracker.finish(row.index):
                yield row

    @property
    def duplicates(self) -> int:
        """Late results dropped because their example was already done."""
        return self.tracker.duplicates

    def cancel(self) -> None:
        self.cancelled.set()

    def close(self) -> None:
        """Nothing to stop: a straggler's daemon thread ends on its own and its late result is dropped."""

    def _start(self, indices: list[int]) -> None:
        """Start these examples (taken from the tracker), a thread each."""
        for index in indices:
            attempts = self.tracker.attempts.get(index, 1)

            def work(index: int = index, attempts: int = attempts) -> None:
                self.results.put(run_example(self.program, self.metric, index, self.examples[index], self.worker,
                                             attempts, self.run))

            # the caller's context (its dspex.context overrides) goes with the example
            threading.Thread(target=contextvars.copy_context().run, args=(work,), name=f"eval-{index}",
                             daemon=True).start()

    def _abandon(self, indices: list[int]) -> None:
        """Examples past their timeout (their rows are written without them): a thread cannot be stopped,
        so it runs out on its own and its late result is dropped."""


__all__ = ["run_example", "program_failed", "scored", "Runner", "ThreadRunner", "Metric"]
