"""``dspex.Evaluate``: score a program on a data set; every example ends as exactly one row.

    result = dspex.Evaluate(devset, metric, max_concurrency=64, timeout_per_example=60.0).run(program)

Failures (program, adapter parse, LM errors, metric) are rows with typed errors and score 0 (or left out
of the mean with ``exclude_failures=True``); an example past ``timeout_per_example`` is failed without
waiting for it (its late result is dropped); ``max_errors`` and Ctrl-C stop dispatching and return the
partial result, the unfinished examples as ``EvaluationCancelled`` rows. With ``journal=path`` every
finished row is appended as JSON Lines as it arrives; ``resume_from=path`` skips the rows found there.

DSPy's call, ``evaluator(program, metric=..., devset=..., num_threads=..., display_table=...,
save_as_csv=..., save_as_json=...)``, takes its overrides for that call; on Ctrl-C it raises
KeyboardInterrupt as DSPy's does (the partial result on the exception's ``.result``), where ``run``
returns the partial result.
"""

from __future__ import annotations

import copy
import csv
import itertools
import json
import logging
import os
import signal
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from ..clients.messages import UsageTotals
from ..errors import ConfigError, DspexError, EvaluationCancelled, JournalWriteError
from ..journal import Header, JournalType, JournalWriter, RunLock, lock_path
from ..primitives import Example
from ..utils import collector
from ..utils.callback import with_callbacks
from ..clients.host import active_runtime
from ..clients.scope import RUN_SEP, current_run
from .metric_call import MetricPlace, bind_metric
from ..adapters.base import to_jsonable
from .runner import Metric, Runner, ThreadRunner, run_example
from .async_runner import AsyncRunner, runs_async
from ..clients.event_loop import EventLoop
from ..clients.lm import LM
from ..programs.settings import setting
from .feed import HOST_LOST_AFTER, feed, host_pools
from .result import EvalProgress, EvalRow, EvaluationResult, RowFinished, load_journal
from .tracker import Tracker


_RUNS = itertools.count(1)
CAP_CHECK_S = 2.0  # seconds between asks whether a client's own max_in_flight holds the run back (bar, dashboard)
logger = logging.getLogger(__name__)


ENGINES = ("auto", "async", "threads")
DSPY_INSTEAD = {
    "return_outputs": "result.results holds (example, prediction, score) triples, result.rows everything",
    "return_all_scores": "result.results holds every score",
}
_UNSET: Any = object()


class Evaluate:
    """Also speaks DSPy: ``num_threads`` (= ``max_concurrency``; ``num_threads=1`` runs the examples one by
    one in the calling thread, as DSPy does, so ``timeout_per_example`` cannot cut one short there),
    ``display_progress`` (= ``progress``), ``display_table`` (print DSPy's result table: all rows, or the
    first N), ``failure_score`` (the score of a failed row), ``save_as_csv`` / ``save_as_json`` (DSPy's
    records: the example's fields, the prediction's, the metric's score), ``provide_traceback`` (log each
    failure's traceback), and ``evaluator(program, ...)``. ``result.score`` is percent (0–100) as DSPy's,
    ``result.mean`` the fraction."""

    def __init__(self, devset: Sequence[Example] | None = None, metric: Metric | None = None,
                 max_concurrency: int = 64, workers: int = 2, timeout_per_example: float | None = 60.0,
                 max_errors: int | None = None, progress: bool = True, journal: str | Path | None = None,
                 resume_from: str | Path | None = None, exclude_failures: bool = False,
                 retry_timeouts: bool = False, *, num_threads: int | None = None,
                 display_progress: bool | None = None, display_table: bool | int | None = False,
                 failure_score: float = 0.0, warn_if_all_failed: bool = True, save_as_csv: str | Path | None = None,
                 save_as_json: str | Path | None = None, provide_traceback: bool | None = None,
                 keep_rows: bool = True, engine: str = "auto", **unknown: Any) -> None:
        if unknown:
            name = sorted(unknown)[0]
            raise ConfigError(f"Evaluate does not take {name}=: {DSPY_INSTEAD.get(name, 'see help(dspex.Evaluate)')}")
        display_table = False if display_table is None else display_table
        _check_table(display_table)
        self.num_threads = num_threads  # DSPy's attribute, as given (None: max_concurrency decides)
        self.save_as_csv, self.save_as_json, self.provide_traceback = save_as_csv, save_as_json, provide_traceback
        if num_threads is not None:
            if not _int_at_least(num_threads, 1):
                raise ConfigError(f"num_threads must be an int >= 1, got {num_threads!r}")
            max_concurrency = num_threads
        if display_progress is not None:
            progress = display_progress
        if not isinstance(failure_score, (int, float)) or failure_score != failure_score:
            raise ConfigError(f"failure_score must be a number, got {failure_score!r}")
        self.display_table, self.failure_score = display_table, float(failure_score)
        self.warn_if_all_failed = warn_if_all_failed  # off where the caller raises instead (a compile)
        self.devset = _checked_devset(devset if devset is not None else [])
        bind_metric(metric, MetricPlace.EVALUATE)  # a metric that cannot take (example, prediction) fails here
        if not _int_at_least(max_concurrency, 1) or not _int_at_least(workers, 0):
            raise ConfigError(f"need max_concurrency >= 1 and workers >= 0 (ints), got {max_concurrency!r}, {workers!r}")
        if max_errors is not None and not _int_at_least(max_errors, 1):
            raise ConfigError(f"max_errors must be an int >= 1 (stop after that many failed rows) or None, "
                              f"got {max_errors!r}")
        if timeout_per_example is not None and not (isinstance(timeout_per_example, (int, float))
                                                    and 0 < timeout_per_example < float("inf")):
            raise ConfigError(f"timeout_per_example must be a number of seconds > 0 or None, got {timeout_per_example!r}")
        self.metric, self.max_concurrency, self.workers = metric, max_concurrency, workers
        self.timeout, self.max_errors, self.progress = timeout_per_example, max_errors, progress
        self.journal = Path(journal) if journal is not None else None
        self.resume_from = Path(resume_from) if resume_from is not None else None
        self.exclude_failures, self.retry_timeouts = exclude_failures, retry_timeouts
        if not isinstance(keep_rows, bool):
            raise ConfigError(f"keep_rows must be True or False, got {keep_rows!r}")
        if engine not in ENGINES:
            raise ConfigError(f"engine must be one of {', '.join(map(repr, ENGINES))}, got {engine!r}")
        # how the examples run in this process: "async" as tasks on the runtime's event loop (the program
        # must run async all the way down to gain from it), "threads" a thread each, "auto" the first when
        # the program can (async_runner.runs_async), else the second
        self.engine = engine
        # False: a row keeps its score, error and example, not its prediction (the journal has it): an
        # evaluation of 100,000 examples holds a few hundred bytes a row instead of the predictions' traces
        self.keep_rows = keep_rows

    _callback_kind = "evaluate"  # a call fires the evaluate hooks (dspex.utils.callback)

    @property
    def display_progress(self) -> bool:
        """DSPy's name for ``progress``."""
        return self.progress

    @display_progress.setter
    def display_progress(self, value: bool) -> None:
        self.progress = value

    def __call__(self, program: Any, metric: Metric | None = None, devset: Sequence[Example] | None = None,
                 num_threads: int | None = None, display_progress: bool | None = None,
                 display_table: bool | int | None = None, callback_metadata: dict[str, Any] | None = None,
                 save_as_csv: str | Path | None = None, save_as_json: str | Path | None = None, *,
                 runtime: Any = None, until: Callable[["_Tally"], bool] | None = None) -> EvaluationResult:
        """DSPy's ``evaluator(program, ...)``: :meth:`run`, with DSPy's per-call overrides, except that
        Ctrl-C raises KeyboardInterrupt (as in DSPy) once the partial result is in (on ``.result``)."""
        result = self.run(program, runtime, devset=devset, until=until, metric=metric, num_threads=num_threads,
                          display_progress=display_progress, display_table=display_table,
                          callback_metadata=callback_metadata, save_as_csv=save_as_csv, save_as_json=save_as_json)
        if result.aborted == "interrupted":
            interrupt = KeyboardInterrupt("evaluation interrupted; the partial result is on this exception's .result")
            interrupt.result = result  # type: ignore[attr-defined]
            raise interrupt
        return result

    @with_callbacks
    def run(self, program: Any, runtime: Any = None, *, devset: Sequence[Example] | None = None,
            until: Callable[["_Tally"], bool] | None = None, metric: Metric | None = None,
            num_threads: int | None = None, display_progress: bool | None = None,
            display_table: bool | int | None = None, callback_metadata: dict[str, Any] | None = None,
            save_as_csv: str | Path | None = None, save_as_json: str | Path | None = None) -> EvaluationResult:
        """Evaluate ``program``. On a multiproc/tcp runtime with ``workers > 0`` the examples run in worker
        processes (``max_concurrency / workers`` at once each); otherwise in this process: as tasks on the
        runtime's event loop or on threads, by ``engine`` (``"auto"``: tasks when the program runs async all
        the way down).
        Either way the LM calls share the runtime's client actors (limits, breakers, ledger).
        ``devset=``, ``metric=``, ``num_threads=``, ``display_progress=``, ``display_table=``,
        ``save_as_csv=``, ``save_as_json=`` apply to this run only (DSPy's overrides);
        ``callback_metadata`` is logged (at debug) for callback handlers.
        ``until(tally)`` is asked after each row; when it says True, dispatching stops as with
        max_errors (optimizers stop a bootstrap once they have their demos, or at their budget)."""
        if callback_metadata:
            logger.debug("Evaluate is called with callback metadata: %s", callback_metadata)
        overrides = {"devset": devset, "metric": metric, "num_threads": num_threads, "progress": display_progress,
                     "display_table": display_table, "save_as_csv": save_as_csv, "save_as_json": save_as_json}
        overrides = {k: v for k, v in overrides.items() if v is not None}
        if overrides:
            return self._with(overrides)._run(program, runtime, until)
        return self._run(program, runtime, until)

    def _with(self, overrides: dict[str, Any]) -> "Evaluate":
        """The same settings with this call's overrides (checked as the constructor checks them)."""
        other = copy.copy(self)
        for key, value in overrides.items():
            if key == "devset":
                value = _checked_devset(value)
            elif key == "metric":
                bind_metric(value, MetricPlace.EVALUATE)
            elif key == "num_threads":
                if not _int_at_least(value, 1):
                    raise ConfigError(f"num_threads must be an int >= 1, got {value!r}")
                other.max_concurrency = value
            elif key == "display_table":
                _check_table(value)
            setattr(other, key, value)
        return other

    def _run(self, program: Any, runtime: Any, until: Callable[["_Tally"], bool] | None) -> EvaluationResult:
        if not self.devset:
            raise ConfigError("Evaluate has no examples: pass devset= (to Evaluate or to run)")
        start, run = time.monotonic(), new_run_id()
        # locked and open before anything is read back or sent; the collector paced for many in flight
        with self._journal() as journal, collector.relaxed(self.max_concurrency):
            rows = self._resumed()
            rt = runtime if runtime is not None else active_runtime()
            metric = bind_metric(self.metric, MetricPlace.EVALUATE)
            if self.num_threads == 1:  # DSPy's one thread: the examples run here, in the calling thread
                runner: Runner = InlineRunner(program, metric, self.devset, set(rows), run)
            elif self.workers > 0 and rt is not None and not rt.actors.is_local:
                runner = feed(rt, program, metric, self.devset, done=list(rows), workers=self.workers,
                              concurrency=self.max_concurrency, timeout=self.timeout,
                              retry_timeouts=self.retry_timeouts, run=run, engine=self.engine)
            else:
                tracker = Tracker(len(self.devset), self.timeout, self.retry_timeouts)
                tracker.skip(rows)
                loop = self._event_loop(program, rt)
                runner = (AsyncRunner(program, metric, self.devset, tracker, self.max_concurrency, loop, run=run)
                          if loop is not None else
                          ThreadRunner(program, metric, self.devset, tracker, self.max_concurrency, run=run))
            return self._collect(runner, rows, start, rt, run, until, journal, _clients_of(program))

    def _event_loop(self, program: Any, rt: Any) -> EventLoop | None:
        """The event loop the examples run on (None: threads), by ``engine``."""
        if self.engine == "threads":
            return None
        default_lm = setting("lm")
        if self.engine == "auto" and not runs_async(program, default_lm):
            return None
        lms = [getattr(p, "lm", None) or default_lm for _, p in getattr(program, "named_predictors", list)()]
        lm = next((lm for lm in lms if isinstance(lm, LM)), None)
        if lm is not None:
            return lm._need_runtime().engines.loop
        if rt is None:
            raise ConfigError("engine='async' runs the examples on a dspex runtime's event loop, and none is open: "
                              "evaluate inside `with dspex.runtime():`, or pass engine='threads'")
        return rt.engines.loop

    @with_callbacks
    def run_distributed(self, program: Any, hosts: Sequence[str], runtime: Any = None, *,
                        join_timeout: float = 30.0, lost_after: float = HOST_LOST_AFTER,
                        until: Callable[["_Tally"], bool] | None = None) -> EvaluationResult:
        """Evaluate ``program`` with ``workers`` worker processes on each of ``hosts``.

        ``hosts`` are the node addresses (``ip:port``) of machines running ``python -m dspex host
        --leader <this runtime's ip:admin_port> --bind <ip> --port <port>``; this process's runtime
        must be ``dspex.runtime("tcp", bind_host=<ip the hosts reach>, admin_port=..., peers=[<host
        ips>])``. The program, metric and examples travel to the hosts as pickles; their LM calls go
        through this runtime's client actors (shared limits, breakers, budget, ledger), their HTTP
        from the hosts, each host's keys from its own environment. A host silent for ``lost_after``
        seconds is lost: its examples run again elsewhere, still one row each. ``until`` as for ``run``.
        The worker processes started on the hosts stay up for the next ``run_distributed`` on this runtime
        (a pool the runtime keeps, stopped when it closes): only the first evaluation waits for them.
        """
        from supervision import SpecError, tcp
        from supervision.runtime import LOOPBACK

        start, run = time.monotonic(), new_run_id()
        rt = runtime if runtime is not None else active_runtime()
        if rt is None or rt.actors.base != "tcp" or rt.actors.bind_host in LOOPBACK:
            raise ConfigError("run_distributed needs a tcp runtime on an address the hosts can reach: "
                              "dspex.runtime('tcp', bind_host='<this ip>', admin_port=1900, peers=['<host ip>', ...])")
        hosts = list(hosts)
        if not hosts:
            raise ConfigError("run_distributed needs at least one host ('ip:port' of a `python -m dspex host`)")
        for host in hosts:
            try:
                ip, _ = tcp.check_address(host, "run_distributed.hosts")
            except SpecError as exc:
                raise ConfigError(str(exc)) from None
            if ip not in rt.actors.peers:
                raise ConfigError(f"host {host} is not among the runtime's peers {list(rt.actors.peers)}: add "
                                  f"{ip!r} to dspex.runtime(..., peers=[...]) (peers are trusted to run code here)")
        missing = _wait_for_hosts(rt, hosts, join_timeout)
        if missing:
            leader = f"{rt.actors.bind_host}:{rt.actors.admin_port}"
            raise ConfigError(f"hosts {missing} have not joined within {join_timeout:g}s; on each, run "
                              f"`python -m dspex host --leader {leader} --bind <its ip> --port <its port>`")
        with self._journal() as journal, host_pools(rt):  # the journal locked and open before anything is sent
            rows = self._resumed()
            runner = feed(rt, program, bind_metric(self.metric, MetricPlace.EVALUATE), self.devset,
                          done=list(rows), workers=max(1, self.workers), concurrency=self.max_concurrency,
                          timeout=self.timeout, retry_timeouts=self.retry_timeouts, hosts=hosts,
                          lost_after=lost_after, run=run, engine=self.engine)
            return self._collect(runner, rows, start, rt, run, until, journal, _clients_of(program))

    @contextmanager
    def _journal(self) -> Iterator[JournalWriter | None]:
        """This run's journal: locked (``<journal>.lock``; a second run on it is refused with JournalLocked)
        and open (a line torn by a crash cut off) before anything is read back or sent."""
        path = self.journal
        if path is None:
            yield None
            return
        if not path.parent.is_dir():
            raise ConfigError(f"journal={str(path)!r}: the folder {str(path.parent)!r} does not exist; create it "
                              "or pass another path")
        lock = writer = None
        try:
            try:
                if not path.exists() or path.is_file():  # a device or a FIFO (/dev/stdout) is no run's to lock
                    lock = RunLock(lock_path(path), f"the journal {path}").acquire()
                writer = JournalWriter(path, header=Header(JournalType.EVALUATION.value))
            except (OSError, JournalWriteError) as exc:
                raise ConfigError(f"journal={str(path)!r} cannot be opened for appending: {exc}; pass another "
                                  "path") from exc
            yield writer
        finally:
            if writer is not None:
                writer.close()
            if lock is not None:
                lock.release()

    def _resumed(self) -> dict[int, EvalRow]:
        rows: dict[int, EvalRow] = {}
        if self.resume_from is not None:
            for row in load_journal(self.resume_from):
                if getattr(row.error, "type_name", "") == "BudgetExceeded":
                    continue  # refused before it was sent: a resumed run (with more budget) asks it
                if 0 <= row.index < len(self.devset) and row.example == self.devset[row.index]:
                    rows[row.index] = row
        return rows

    def _collect(self, runner: Runner, rows: dict[int, EvalRow], start: float, rt: Any, run: str,
                 until: Callable[["_Tally"], bool] | None = None,
                 journal: JournalWriter | None = None, clients: tuple = ()) -> EvaluationResult:
        """Take the runner's rows (each example once) into ``rows``, with journal, bar, progress events,
        max_errors and Ctrl-C (rows finished while draining are journaled like any other). A journal the
        disk stops taking stops dispatching as Ctrl-C does: JournalWriteError carries the partial result."""
        tally = _Tally(run, len(self.devset), rows, rt, start, journal, self.progress, self.keep_rows)
        tally.clients = clients
        aborted: str | None = None
        interrupts = _HeldInterrupts()
        if until is not None and rows and until(tally):  # the resumed rows are already enough: ask nothing
            aborted = "stopped"
            runner.cancel()
        try:
            try:
                for row in runner.rows():
                    with interrupts.held():  # a Ctrl-C waits until this row is in the result and the journal
                        tally.take(row)
                    interrupts.raise_if_lost()
                    if tally.write_error is not None and aborted is None:
                        aborted = "journal write failed"
                        runner.cancel()
                    if self.max_errors is not None and tally.new_errors >= self.max_errors and aborted is None:
                        aborted = f"max_errors={self.max_errors} reached"
                        runner.cancel()
                    if until is not None and aborted is None and until(tally):
                        aborted = "stopped"
                        runner.cancel()
                    if rt is not None and aborted is None and rt.run_cancelled(run):
                        aborted = "cancelled"  # from the dashboard: as Ctrl-C, the partial result is kept
                        runner.cancel()
            except KeyboardInterrupt:
                interrupts.delivered = True
                aborted = "interrupted"
                runner.cancel()
                for row in runner.rows(poll=0.02, until=time.monotonic() + 2.0):
                    with interrupts.held(raise_after=False):
                        tally.take(row)
        finally:
            interrupts.restore()
            aborted = aborted or runner.aborted
            runner.close()
            tally.close()
        for i, ex in enumerate(self.devset):
            if i not in rows:
                rows[i] = EvalRow(index=i, example=ex, prediction=None, score=0.0,
                                  error=EvaluationCancelled(f"not finished: {aborted}"), attempts=0, worker="")
                tally.cancelled += 1
        tally.publish(finished=True, aborted=aborted)
        ordered = [rows[i] for i in range(len(self.devset))]
        if self.failure_score:
            ordered = [replace(r, score=self.failure_score) if r.failed else r for r in ordered]
        result = EvaluationResult(ordered, time.monotonic() - start, run_usage(rt, run), self.exclude_failures,
                                  aborted, runner.duplicates, run=run)
        ran = [r for r in result.rows if not isinstance(r.error, EvaluationCancelled)]
        if result.all_failed and ran and self.warn_if_all_failed:
            first = ran[0].error
            print(f"warning: every one of the {len(result.rows)} rows of this evaluation failed, so its score "
                  f"{result.score:.4g} measures nothing; the first: {type(first).__name__}: {str(first)[:300]}",
                  file=sys.stderr, flush=True)
        if self.provide_traceback:
            for row in result.errors:
                if not isinstance(row.error, EvaluationCancelled):
                    logger.error("Error for example %d: %s", row.index, row.error, exc_info=row.error)
        logger.info("Average Metric: %s / %d (%s%%)", round(sum(r.score for r in result.rows), 4), len(result.rows),
                    round(100 * result.mean, 1))
        if self.display_table or self.save_as_csv or self.save_as_json:
            records = _records(result, _metric_name(self.metric))
            if self.display_table:
                print(_table(records, _metric_name(self.metric), self.display_table), flush=True)
            if self.save_as_csv:
                _save_csv(records, self.save_as_csv)
            if self.save_as_json:
                with open(self.save_as_json, "w", encoding="utf-8") as fh:
                    json.dump([_jsonable(r) for r in records], fh)
        if tally.write_error is not None:
            error, done = tally.write_error, sum(1 for r in result.rows if not isinstance(r.error, EvaluationCancelled))
            raise JournalWriteError(f"{error}; the run stopped there with {done} of {len(result.rows)} rows finished "
                                    "(in .result; the journal holds those written before); free space (or fix the "
                                    "journal) and run again with resume_from= to go on", error.path, error.errno,
                                    result) from error
        return result


class _HeldInterrupts:
    """Ctrl-C (SIGINT, main thread only) is held while a row is being recorded and raised right after,
    so the result and the journal always agree on which rows finished."""

    def __init__(self) -> None:
        self.busy = self.pending = False
        # a Ctrl-C whose KeyboardInterrupt Python swallowed (raised while the main thread ran a weakref
        # callback or a __del__ during garbage collection: "Exception ignored in ..."): raised again by
        # raise_if_lost() after the next row, so a Ctrl-C is never lost
        self.fired = self.delivered = False
        self.previous: Any = None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.getsignal(signal.SIGINT)
            if self.previous is signal.default_int_handler:  # only Python's own: a user's handler is left alone
                signal.signal(signal.SIGINT, self._handler)
            else:
                self.previous = None

    def _handler(self, signum: int, frame: Any) -> None:
        self.fired = True
        if self.busy:
            self.pending = True
        else:
            raise KeyboardInterrupt

    def raise_if_lost(self) -> None:
        if self.fired and not self.delivered:
            self.delivered = True
            raise KeyboardInterrupt

    @contextmanager
    def held(self, raise_after: bool = True) -> Iterator[None]:
        self.busy = True
        try:
            yield
        finally:
            self.busy = False
        if self.pending and raise_after:
            self.pending = False
            raise KeyboardInterrupt

    def restore(self) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
            self.previous = None


class _Tally:
    """One run's rows as they arrive: each example once, appended to the journal, counted on the bar,
    and published as ``EvalProgress`` (at most ten times a second, and once at the end)."""

    def __init__(self, run: str, total: int, rows: dict[int, EvalRow], rt: Any, start: float,
                 journal: JournalWriter | None, bar: bool, keep_rows: bool = True) -> None:
        self.run, self.total, self.rows, self.rt, self.start = run, total, rows, rt, start
        self.keep_rows = keep_rows
        self.resumed = len(rows)
        self.errors = sum(1 for r in rows.values() if r.failed)
        self.new_errors = 0  # failures of this run (max_errors counts these: resumed rows ran before)
        self.cancelled = 0  # examples the run stopped before (EvaluationCancelled rows): not failures
        self.spent = _cost(rows)
        self.tokens = sum(getattr(getattr(r.prediction, "usage", None), "total_tokens", 0) for r in rows.values())
        self.last_event = 0.0
        self.journal = journal
        self.write_error: JournalWriteError | None = None  # the first refused write: nothing more is written
        self.bar = _progress(total, len(rows)) if bar else None
        self.clients: tuple = ()  # the program's LM handles, asked every CAP_CHECK_S whether their cap holds it back
        self.capped: str | None = None
        self.last_check = time.monotonic()

    def take(self, row: EvalRow) -> None:
        if row.index in self.rows:
            return  # already finished (a resumed row): exactly once
        # kept compact when asked: journaled and published whole below, held without its prediction
        self.rows[row.index] = row if self.keep_rows else replace(row, prediction=None)
        self.errors += row.failed
        self.new_errors += row.failed
        if row.prediction is not None:  # a program may return a dict, a list, a string: no usage of its own
            self.spent += getattr(row.prediction, "cost", 0.0)
            self.tokens += getattr(getattr(row.prediction, "usage", None), "total_tokens", 0)
        if self.journal is not None and self.write_error is None:
            try:
                self.journal.append(row.to_entry())
            except JournalWriteError as exc:
                self.write_error = exc
        if self.clients and time.monotonic() - self.last_check >= CAP_CHECK_S and (
                self.bar is not None or (self.rt is not None and self.rt.watched)):
            self.last_check = time.monotonic()
            self.capped = next(filter(None, (lm.status().capped() for lm in self.clients)), None)
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(failed=self.errors, spend=f"${self.spent:.4f}", refresh=False,
                                 **({"capped": self.capped} if self.capped else {}))
        if self.rt is not None and self.rt.watched:
            self.rt.publish(RowFinished(self.run, row))
        if time.monotonic() - self.last_event >= 0.1:
            self.publish()
            self.last_event = time.monotonic()

    def publish(self, finished: bool = False, aborted: str | None = None) -> None:
        if self.rt is None:
            return
        elapsed = time.monotonic() - self.start
        rate = (len(self.rows) - self.resumed) / elapsed if elapsed > 0 else 0.0
        left = self.total - len(self.rows)
        self.rt.publish(EvalProgress(self.run, self.total, len(self.rows), self.errors, rate,
                                     left / rate if rate > 0 else None, self.spent, finished, aborted,
                                     self.cancelled, self.capped))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class InlineRunner:
    """DSPy's ``num_threads=1``: each example in turn in the calling thread (a metric or program that
    needs the main thread gets it). Nothing can stop an example from outside, so ``timeout_per_example``
    is not applied; Ctrl-C stops the run between or inside examples, as elsewhere."""

    def __init__(self, program: Any, metric: Metric, examples: Sequence[Example], done: set[int],
                 run: str | None) -> None:
        self.program, self.metric, self.examples, self.done, self.run = program, metric, examples, done, run
        self.cancelled = False
        self.aborted: str | None = None
        self.duplicates = 0

    def rows(self, poll: float = 0.05, until: float | None = None) -> Iterator[EvalRow]:
        for index, example in enumerate(self.examples):
            if self.cancelled:
                return
            if index in self.done:
                continue
            self.done.add(index)
            yield run_example(self.program, self.metric, index, example, "main", 1, self.run)

    def cancel(self) -> None:
        self.cancelled = True

    def close(self) -> None:
        pass


def _check_table(display_table: Any) -> None:
    if not isinstance(display_table, (bool, int)) or display_table < 0:
        raise ConfigError(f"display_table must be True/False or a number of rows to show, got {display_table!r}")


def _metric_name(metric: Any) -> str:
    """The metric's column name, as DSPy names it: a function's name, else its class's."""
    import types

    return metric.__name__ if isinstance(metric, types.FunctionType) else type(metric).__name__


def _fields(value: Any) -> dict[str, Any] | None:
    if hasattr(value, "toDict"):
        return dict(value.toDict())
    if isinstance(value, Mapping) or (hasattr(value, "items") and callable(value.items)):
        return dict(value.items())
    return None


def _records(result: EvaluationResult, metric_name: str) -> list[dict[str, Any]]:
    """One record per row, as DSPy writes them: the example's fields and the prediction's (a name both
    have becomes ``example_<name>`` and ``pred_<name>``), or a ``prediction`` field when the program
    returned a plain value, and the metric's score under the metric's name."""
    records = []
    for example, prediction, score in result.results:
        ex = _fields(example) or {}
        pred = _fields(prediction)
        if pred is None:
            record = {**ex, "prediction": prediction}
        else:
            record = {(f"example_{k}" if k in pred else k): v for k, v in ex.items()}
            record.update({(f"pred_{k}" if k in ex else k): v for k, v in pred.items()})
        record[metric_name] = score
        records.append(record)
    return records


def _jsonable(value: Any) -> Any:
    try:
        return to_jsonable(value)
    except DspexError:
        return repr(value)


def _cell(value: Any) -> Any:
    """A CSV cell: text and numbers as they are, anything else as JSON."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return json.dumps(_jsonable(value), ensure_ascii=False)


def _save_csv(records: list[dict[str, Any]], path: str | Path) -> None:
    columns: dict[str, None] = {}
    for record in records:
        columns.update(dict.fromkeys(record))
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(columns))
        writer.writeheader()
        for record in records:
            writer.writerow({k: _cell(v) for k, v in record.items()})


def _truncated(value: Any, words: int = 25) -> str:
    parts = str(value).split()
    return " ".join(parts[:words]) + "..." if len(parts) > words else " ".join(parts)


def _table(records: list[dict[str, Any]], metric_name: str, display_table: bool | int) -> str:
    """DSPy's result table (its columns, cells cut to 25 words, the score as ``✔️ [score]``), as plain
    text (dspex does not need pandas); a number shows that many rows and says how many more there are."""
    shown = records if isinstance(display_table, bool) else records[:display_table]
    columns: dict[str, None] = {}
    for record in records:
        columns.update(dict.fromkeys(record))

    def cell(record: dict[str, Any], column: str) -> str:
        value = record.get(column)
        if column == metric_name:
            return "" if value is None else f"✔️ [{value:.3f}]" if isinstance(value, float) else f"✔️ [{value}]"
        return "" if column not in record else _truncated(value)

    grid = [[""] + list(columns)] + [[str(i)] + [cell(r, c) for c in columns] for i, r in enumerate(shown)]
    widths = [min(60, max(len(line[j]) for line in grid)) for j in range(len(grid[0]))]
    lines = ["  ".join(text[:w].ljust(w) for text, w in zip(line, widths)).rstrip() for line in grid]
    more = len(records) - len(shown)
    if more > 0:
        lines.append(f"... {more} more rows not displayed ...")
    return "\n".join(lines)


def _wait_for_hosts(rt: Any, hosts: list[str], timeout: float) -> list[str]:
    """Hosts not yet in the runtime's convention after waiting up to ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        members = set(rt.actors.convention_members())
        missing = [h for h in hosts if h not in members]
        if not missing or time.monotonic() > deadline:
            return missing
        time.sleep(0.1)


def _checked_devset(devset: Any) -> list[Example]:
    examples = list(devset)
    for i, ex in enumerate(examples):
        if not isinstance(ex, Example) or ex.input_keys is None:
            raise ConfigError(f"devset[{i}] must be an Example with inputs marked (example.with_inputs(...))")
    shared: dict[frozenset, frozenset] = {}
    return [_own_copy(ex, shared) for ex in examples]


_IMMUTABLE = (str, int, float, bool, bytes, type(None))


def _own_copy(example: Example, shared: dict[frozenset, frozenset]) -> Example:
    """A copy the run works on (Examples are mutable): ``deepcopy``'s result, made directly for an example whose
    values are all immutable scalars (deepcopy's machinery took ~15 µs an example: 2% of a run's CPU at 0 ms),
    its input keys one frozen set shared by the copies that have the same (``shared``; a set of its own was
    216 bytes an example, 22 MB of a 100,000-example run; it still compares equal to a set)."""
    data = example._data
    if type(example) is not Example or not all(isinstance(v, _IMMUTABLE) for v in data.values()):
        return copy.deepcopy(example)
    keys = frozenset(example._input_keys)
    return Example._of(dict(data), shared.setdefault(keys, keys))


def _int_at_least(value: Any, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def new_run_id(kind: str = "eval") -> str:
    """The one source of run ids: a run's ledger entry, its progress events and its supervisor share it.
    A run started inside another's scope is named inside it (``compile-1-2:eval-1-3``), so the outer run's
    budget covers it (``clients/budgets.py``)."""
    run, outer = f"{kind}-{os.getpid()}-{next(_RUNS)}", current_run()
    return f"{outer}{RUN_SEP}{run}" if outer is not None else run


def _clients_of(program: Any) -> tuple:
    """The dspex LM handles ``program``'s predictors call (their own, else the one in force), once each."""
    from ..clients.foreign_lm import is_dspex_lm
    from ..programs.settings import setting

    found: dict[int, Any] = {}
    for predictor in getattr(program, "predictors", lambda: [])():
        lm = getattr(predictor, "lm", None) or setting("lm")
        if is_dspex_lm(lm):
            found.setdefault(id(lm), lm)
    return tuple(found.values())


def run_usage(rt: Any, run: str) -> UsageTotals:
    """What this run really sent, retried and took from the cache: the ledger's count for the run."""
    if rt is None:
        return UsageTotals()
    return rt.usage(run=run).by_run.get(run, UsageTotals())


def _cost(rows: dict) -> float:
    return sum(getattr(r.prediction, "cost", 0.0) for r in rows.values() if r.prediction is not None)


def _progress(total: int, initial: int) -> Any:
    from tqdm import tqdm

    # disable=None: a bar on a terminal only, never carriage-return frames in a log file or a CI transcript
    return tqdm(total=total, initial=initial, desc="evaluate", unit="ex", leave=False, disable=None)


__all__ = ["Evaluate", "EvaluationCancelled"]
