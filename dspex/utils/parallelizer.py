"""DSPy's ``ParallelExecutor``: run one function over many items on a few threads.

``ParallelExecutor(num_threads=8).execute(fn, items)`` returns ``fn``'s results in the items' order,
``None`` where ``fn`` raised (the error is logged and kept in ``exceptions_map`` / ``failed_indices``).
Once ``max_errors`` items have failed no further item is started, the ones running are waited for and
:class:`ExecutionCancelled` is raised (its message is DSPy's: "Execution cancelled due to errors or
interruption."). Ctrl-C does the same and re-raises ``KeyboardInterrupt``; a second Ctrl-C stops waiting.

Each item runs in a copy of the calling thread's ``contextvars`` context, so ``with dspex.context(lm=...)``,
the trace scope of a program call and a callback's call id are seen by the function in the worker thread,
while whatever the function sets in its context stays its own. A nested executor (one started by an item)
is cancelled with its parent.

With ``num_threads=1`` the items run one after another on the calling thread. With more, on that many
daemon threads; when at most ``straggler_limit`` items are left and one has run ``timeout`` seconds or
more, it is started once more on a thread of its own and whichever attempt ends first gives its result
(Python cannot kill a thread: the slow attempt is abandoned, and its thread ends when its call returns).

This module sits in dspex's lowest layer: it reads dspex's settings (``num_threads``, ``max_errors``,
``provide_traceback``) only through the reader the package registers with :func:`set_settings_reader`.
"""

from __future__ import annotations

import contextvars
import logging
import queue
import sys
import threading
import time
import traceback
from typing import Any, Callable, Iterable

import tqdm

from .callback_context import read_setting, set_settings_reader  # noqa: F401 - re-exported
from ..errors import ConfigError, DspexError
from ..scrub import scrub_text

logger = logging.getLogger(__name__)

DEFAULT_NUM_THREADS = 8  # DSPy's settings.num_threads
DEFAULT_MAX_ERRORS = 10  # DSPy's settings.max_errors
CANCELLED_MESSAGE = "Execution cancelled due to errors or interruption."
POLL_S = 0.1  # how often the waiting thread looks at stragglers and at a parent's cancellation

# The cancel events of the executors whose items this context runs in (outermost first): a nested
# executor stops when any of them is set.
_CANCEL_CHAIN: contextvars.ContextVar[tuple[threading.Event, ...]] = contextvars.ContextVar(
    "dspex_parallel_cancel", default=())


class ExecutionCancelled(DspexError):
    """``max_errors`` items failed, or the run was interrupted (by Ctrl-C, or by a parent executor's
    cancellation): the items not yet started were not run. ``failed_indices`` and ``exceptions_map``
    say what failed; ``__cause__`` is the first failure."""

    def __init__(self, message: str = CANCELLED_MESSAGE, failed_indices: Iterable[int] = (),
                 exceptions_map: dict[int, BaseException] | None = None) -> None:
        self.failed_indices = list(failed_indices)
        self.exceptions_map = dict(exceptions_map or {})
        super().__init__(message)

    def __reduce__(self):
        return (type(self), (str(self), self.failed_indices))


_UNSET = object()


class _Run:
    """One ``execute`` call's shared state: results, who settled, the error count (under ``cond``)."""

    def __init__(self, executor: "ParallelExecutor", items: list, function: Callable, chain: tuple) -> None:
        self.executor = executor
        self.items = items
        self.function = function
        self.chain = chain
        self.results: list[Any] = [_UNSET] * len(items)
        self.settled = [False] * len(items)
        self.done = 0
        self.fatal: BaseException | None = None  # a BaseException (not Exception) raised by an item
        self.cond = threading.Condition()
        self.base = contextvars.copy_context()  # the caller's context, taken on the calling thread
        self.base.run(_CANCEL_CHAIN.set, chain)

    def cancelled(self) -> bool:
        return any(event.is_set() for event in self.chain)

    def attempt(self, index: int) -> None:
        """Run item ``index`` once in a fresh copy of the caller's context and settle it."""
        try:
            outcome, ok = self.base.copy().run(self.function, self.items[index]), True
        except Exception as exc:  # noqa: BLE001 - an item's failure is its result (None) and is counted
            outcome, ok = exc, False
        except BaseException as exc:  # KeyboardInterrupt / SystemExit inside an item: stop everything
            with self.cond:
                self.fatal = self.fatal or exc
                self.executor.cancel_jobs.set()
                self.cond.notify_all()
            return
        self.settle(index, ok, outcome)

    def settle(self, index: int, ok: bool, outcome: Any) -> None:
        """The first outcome of an item counts (a straggler's later attempt is dropped). A failure is
        logged before the item counts as done, so the log is written when ``execute`` returns."""
        ex = self.executor
        with self.cond:
            if self.settled[index]:
                return
            self.settled[index] = True
            if ok:
                self.results[index] = outcome
            else:
                ex.failed_indices.append(index)
                ex.exceptions_map[index] = outcome
                ex.error_count += 1
                if ex.error_count >= ex.max_errors:
                    ex.cancel_jobs.set()
        if not ok:
            ex._log_failure(self.items[index], outcome)
        with self.cond:
            self.done += 1
            self.cond.notify_all()

    def finished(self) -> list[Any]:
        return [None if r is _UNSET else r for r in self.results]


class ParallelExecutor:
    """DSPy's executor: ``execute(function, data)`` → results in order, None for failed items."""

    def __init__(self, num_threads: int | None = None, max_errors: int | None = None,
                 disable_progress_bar: bool = False, provide_traceback: bool | None = None,
                 compare_results: bool = False, timeout: float = 120, straggler_limit: int = 3) -> None:
        self.num_threads = int(num_threads or read_setting("num_threads", DEFAULT_NUM_THREADS))
        self.max_errors = max_errors if max_errors is not None else read_setting("max_errors", DEFAULT_MAX_ERRORS)
        self.disable_progress_bar = disable_progress_bar
        self.provide_traceback = (provide_traceback if provide_traceback is not None
                                  else bool(read_setting("provide_traceback", False)))
        self.compare_results = compare_results
        self.timeout = timeout
        self.straggler_limit = straggler_limit
        if self.num_threads < 1:
            raise ConfigError(f"ParallelExecutor: num_threads must be at least 1, got {self.num_threads}")

        self.error_count = 0
        self.cancel_jobs = threading.Event()
        self.failed_indices: list[int] = []
        self.exceptions_map: dict[int, Exception] = {}

    # --- the public call ---------------------------------------------------------------------------

    def execute(self, function: Callable[[Any], Any], data: Iterable[Any]) -> list[Any]:
        """``function(item)`` for every item; the results in the items' order (None where it raised)."""
        items = list(data)
        self.error_count = 0
        self.cancel_jobs = threading.Event()
        self.failed_indices = []
        self.exceptions_map = {}
        run = _Run(self, items, function, _CANCEL_CHAIN.get() + (self.cancel_jobs,))
        if self.num_threads == 1 or not items:
            self._execute_sequential(run)
        else:
            self._execute_parallel(run)
        return run.finished()

    # --- one thread --------------------------------------------------------------------------------

    def _execute_sequential(self, run: _Run) -> None:
        pbar = self._progress_bar(len(run.items))
        try:
            for index in range(len(run.items)):
                if run.cancelled():
                    break
                run.attempt(index)
                if run.fatal is not None:
                    raise run.fatal
                self._report_progress(pbar, run.results, len(run.items))
        except KeyboardInterrupt:
            self.cancel_jobs.set()
            logger.warning("SIGINT received: cancelling the remaining items")
            raise
        finally:
            pbar.close()
        self._raise_if_cancelled(run)

    # --- many threads ------------------------------------------------------------------------------

    def _execute_parallel(self, run: _Run) -> None:
        n = len(run.items)
        jobs: queue.SimpleQueue = queue.SimpleQueue()
        for index in range(n):
            jobs.put(index)
        started: dict[int, float] = {}  # index -> when its first attempt started (monotonic)
        retried: set[int] = set()
        busy: dict[threading.Thread, tuple[int, float]] = {}  # thread -> (its item, when that attempt started)

        def attempt(index: int, first: bool = True) -> None:
            me = threading.current_thread()
            with run.cond:
                busy[me] = (index, started.setdefault(index, time.monotonic()) if first else time.monotonic())
            try:
                run.attempt(index)
            finally:
                with run.cond:
                    busy.pop(me, None)

        def work() -> None:
            while True:
                try:
                    index = jobs.get_nowait()
                except queue.Empty:
                    return
                if not run.cancelled():  # once cancelled, the rest of the queue is drained unrun
                    attempt(index)

        def retry(index: int) -> None:
            if not run.cancelled() and not run.settled[index]:
                attempt(index, first=False)

        threads = [threading.Thread(target=work, name=f"dspex-parallel-{i}", daemon=True)
                   for i in range(min(self.num_threads, n))]
        for t in threads:
            t.start()

        pbar = self._progress_bar(n)
        interrupted: KeyboardInterrupt | None = None
        reported = 0
        try:
            while True:
                with run.cond:
                    if run.done == reported and not run.cancelled():
                        run.cond.wait(POLL_S)
                    new, pending = run.done - reported, [i for i in range(n) if not run.settled[i]]
                for _ in range(new):
                    self._report_progress(pbar, run.results, n)
                reported += new
                if run.cancelled() or not pending:
                    break
                if self.timeout and self.timeout > 0 and len(pending) <= self.straggler_limit:
                    now = time.monotonic()
                    with run.cond:
                        slow = [i for i in pending if i not in retried and i in started
                                and now - started[i] >= self.timeout]
                    for index in slow:
                        retried.add(index)
                        logger.warning("item %d has run %.1fs: starting it once more", index, now - started[index])
                        t = threading.Thread(target=retry, args=(index,), name=f"dspex-parallel-retry-{index}",
                                             daemon=True)
                        threads.append(t)
                        t.start()
        except KeyboardInterrupt as exc:
            self.cancel_jobs.set()
            logger.warning("SIGINT received: cancelling; waiting for the items already running "
                           "(Ctrl-C again to stop waiting)")
            interrupted = exc
        finally:
            pbar.close()

        self._wait_for(threads, busy, retried, run)
        if run.fatal is not None:
            raise run.fatal
        if interrupted is not None:
            raise interrupted
        self._raise_if_cancelled(run)

    def _wait_for(self, threads: list[threading.Thread], busy: dict[threading.Thread, tuple[int, float]],
                  retried: set[int], run: _Run) -> None:
        """Join the threads, except the ones whose attempt is abandoned: after a complete run, the
        losing attempts of restarted stragglers; after a cancellation, attempts running ``timeout``
        seconds or more (a hung call must not hang the caller). A Ctrl-C here stops waiting."""
        while True:
            with run.cond:
                now = time.monotonic()
                if run.done == len(run.items):
                    abandoned = {t for t, (index, _) in busy.items() if index in retried}
                else:
                    abandoned = {t for t, (_, since) in busy.items()
                                 if self.timeout and 0 < self.timeout <= now - since}
            waiting = [t for t in threads if t.is_alive() and t not in abandoned]
            if not waiting:
                return
            waiting[0].join(POLL_S)

    # --- shared ------------------------------------------------------------------------------------

    def _raise_if_cancelled(self, run: _Run) -> None:
        if not run.cancelled():
            return
        own = self.cancel_jobs.is_set()
        why = (f"{self.error_count} of {len(run.items)} items failed (max_errors={self.max_errors})"
               if own and self.error_count >= self.max_errors else
               "interrupted" if own else "the enclosing parallel run was cancelled")
        logger.warning("%s %s", CANCELLED_MESSAGE, why)
        first = self.exceptions_map[self.failed_indices[0]] if self.failed_indices else None
        detail = f"; the first: {type(first).__name__}: {scrub_text(str(first))[:300]}" if first else ""
        raise ExecutionCancelled(f"{CANCELLED_MESSAGE} {why}{detail}", self.failed_indices,
                                 self.exceptions_map) from first

    def _log_failure(self, item: Any, exc: BaseException) -> None:
        shown = scrub_text(repr(item))
        shown = shown if len(shown) <= 300 else shown[:300] + "..."
        if self.provide_traceback:
            text = "".join(traceback.format_exception(exc))
            logger.error("Error for %s: %s\n%s", shown, scrub_text(str(exc)), scrub_text(text))
        else:
            logger.error("Error for %s: %s. Set `provide_traceback=True` for traceback.", shown,
                         scrub_text(str(exc)))

    def _progress_bar(self, total: int) -> tqdm.tqdm:
        return tqdm.tqdm(total=total, dynamic_ncols=True, disable=self.disable_progress_bar, file=sys.stdout)

    def _report_progress(self, pbar: tqdm.tqdm, results: list, total: int) -> None:
        """After each settled item: how many succeeded, or with ``compare_results`` the sum of their
        scores (the last element of each result) over how many there are."""
        done = [r for r in results if r is not _UNSET]
        if self.compare_results:
            scores = [r[-1] for r in done if r is not None]
            self._update_progress(pbar, sum(scores), len(scores))
        else:
            self._update_progress(pbar, len(done), total)

    def _update_progress(self, pbar: tqdm.tqdm, nresults: float, ntotal: int) -> None:
        if self.compare_results:
            pct = round(100 * nresults / ntotal, 1) if ntotal else 0
            pbar.set_description(f"Average Metric: {nresults:.2f} / {ntotal} ({pct}%)")
        else:
            pbar.set_description(f"Processed {nresults} / {ntotal} examples")
        pbar.update()


__all__ = ["ParallelExecutor", "ExecutionCancelled", "set_settings_reader", "read_setting",
           "DEFAULT_NUM_THREADS", "DEFAULT_MAX_ERRORS"]
