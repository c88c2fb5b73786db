"""A compile as a job: one journal, one budget, one set of progress events, one report.

Every optimizer's ``compile`` works inside ``with CompileJob(...) as job:``. The job scores through
``Evaluate`` (so concurrently, with exact accounting), appends every step (bootstrapped traces, candidates
with their configuration and score) to ``run_dir/journal.jsonl`` as it happens, and on a later
``compile(..., run_dir=same)`` hands the optimizer what was already done (so it is not asked again) after
checking the journal belongs to the same optimizer, settings, student, data and seed. A budget
(``budget_usd``, ``budget_tokens``), Ctrl-C, the dashboard's cancel or a journal the disk stops taking
(full, read-only) stops dispatching and ends the ``with`` block: ``job.stopped`` says which, and the
optimizer reports its best program so far (``job.report``; after a refused journal write that program
comes back inside the JournalWriteError, ``.result``). A run directory is locked for the compile's life
(``run_dir/lock``: a second compile on it is refused with JournalLocked).

Who writes the journal: the compiling process, through :func:`dspex.journal.append` (fsynced, under the
run directory's lock), not an actor. Until this release a ``JournalKeeper`` actor under the runtime's
``compile`` supervisor wrote it, and the compile was driven from the caller's thread anyway: each step cost
two actor round trips and a sleep-retry loop, and the keeper's copy of the steps was never read. Making
that supervised actor the compile's driver instead (its state rebuilt from the journal on restart) was
weighed and not done: on the local base an actor's handler runs on the actor system's one thread, so a
driver there would block the LM client actors it calls; on the process bases the student, teacher and
metric (closures and lambdas included) would have to be pickled into another process, and the caller's
``dspex.context`` overrides, its Ctrl-C and the program it gets back would all have to cross that boundary.
The journal already makes the whole compile restartable (kill -9 of the process, then the same
``compile(run_dir=...)``), and what a compile runs on stays supervised: its evaluations' coordinator and
worker actors, and the LM client actors (a crash of any of them is restarted and the compile goes on).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

import structlog

from ..clients.budgets import RunBudget
from ..clients.host import active_runtime
from ..clients.messages import UsageTotals
from ..errors import AuthError, BudgetExceeded, ConfigError, DspexError, JournalWriteError, LMError
from ..evaluate import Evaluate, EvaluationResult
from ..events import CompileProgress, CompileStep
from ..clients.scope import run_scope
from ..evaluate.evaluate import new_run_id, run_usage
from ..evaluate.feed import PoolLease, leased
from ..evaluate.result import MetricError
from ..primitives import Example
from ..journal import Entry, Header, JournalType, JournalWriter, RunLock, append, read
from ..scrub import known_keys, scrub_text
from ..utils.callback import observed

log = structlog.get_logger("dspex.teleprompt")
T = TypeVar("T")
E = TypeVar("E", bound=Entry)
JOURNAL = "journal.jsonl"


class CompileStopped(DspexError):
    """Raised inside a compile when it must stop dispatching (``reason``: "budget", "cancelled" or
    "journal"); the job's ``with`` block ends there and the optimizer reports its best program so far."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason, self.detail = reason, detail
        super().__init__(f"compile stopped: {reason}" + (f" ({detail})" if detail else ""))


class EvaluationFailed(DspexError):
    """Every LM call, or every metric call, of an evaluation inside a compile failed (a wrong key, an
    unreachable provider, keys missing in worker processes' environment, a metric that raises): the compile
    stops instead of scoring garbage."""


def check_not_all_failed(result: Any, phase: str) -> None:
    """Raise EvaluationFailed when every row that ran failed in the LM or in the metric: such a run measured
    nothing, so no optimizer may take its zeros for a score. (Rows whose program or parse failed are a
    candidate's real failures and stay scores.)"""
    ran = [r for r in result.rows if type(r.error).__name__ != "EvaluationCancelled"]
    if not ran or not all(isinstance(r.error, (LMError, MetricError)) for r in ran):
        return
    first = ran[0].error
    what = "metric call" if isinstance(first, MetricError) else "LM call"
    raise EvaluationFailed(f"every {what} of the {phase} evaluation failed, e.g. {type(first).__name__}: "
                           f"{str(first)[:300]}" + ("; worker processes read provider keys from their "
                                                    "environment (e.g. OPENAI_API_KEY)"
                                                    if isinstance(first, AuthError) else ""))


@dataclass(frozen=True)
class CandidateScore:
    """One candidate a compile scored. Instruction optimizers also say what each predictor's instruction
    was (``instructions``), whether ``score`` is on the whole valset (``full``) or a minibatch mean, and
    how many trials / minibatches scored it."""

    id: int
    description: str
    score: float
    lm_calls: int
    instructions: dict[str, str] | None = None
    full: bool = True
    trials: int = 0
    parents: tuple[int, ...] = ()


@dataclass(frozen=True)
class CompileReport:
    """What a compile tried and spent (``compiled.compile_report``)."""

    optimizer: str
    seed: int
    baseline_score: float | None
    score: float | None
    candidates: tuple[CandidateScore, ...]
    stopped: str  # "done" | "budget" | "cancelled" | "journal" (the journal could not be written)
    usage: UsageTotals
    cost: float
    lm_calls: int
    wall_s: float
    run_dir: str | None
    resumed_steps: int = 0  # journal entries a resumed compile did not redo
    metric_calls: int = 0  # (candidate, example) pairs scored, for the optimizers that count them


DEFAULT_PARALLEL = 4  # evaluations (trials, candidates) an optimizer runs at once unless parallel_trials says


@dataclass
class CompileJob:
    """One compile's journal, budget, events and report; used as ``with job:`` (see the module's doc)."""

    optimizer: str
    seed: int
    fingerprint: dict  # what a resumed journal must match
    run_dir: Path | None = None
    budget_usd: float | None = None
    budget_tokens: int | None = None
    max_concurrency: int = 16
    workers: int | None = None
    hosts: Sequence[str] | None = None  # run_distributed hosts ("ip:port"): every evaluation runs on them
    parallel_trials: int | None = None  # trials / candidate evaluations in flight at once (None: the optimizer's default)
    entries: tuple[type[Entry], ...] = ()  # the kinds of step this optimizer journals (dspex.journal.format)
    run: str = field(default_factory=lambda: new_run_id("compile"))
    usage: UsageTotals = field(default_factory=UsageTotals)
    started: float = field(default_factory=time.monotonic)
    done: list[Entry] = field(default_factory=list)  # journal entries from an earlier run (resume)
    best: float | None = None
    resumed_steps: int = 0
    stopped: str = "done"  # "done" | "budget" | "cancelled" | "journal": what ended the ``with job:`` block
    errors: list = field(default_factory=list)  # bootstrap errors as met (the first ones are named on failure)
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    _cancelled: threading.Event = field(default_factory=threading.Event, repr=False)
    _journal: Path | None = field(default=None, repr=False)  # run_dir/journal.jsonl, once opened
    _replayed: set = field(default_factory=set, repr=False)  # steps recorded or found in the journal
    _indexed: set = field(default_factory=set, repr=False)  # (kind, key fields) already read from the journal
    _live: dict = field(default_factory=dict, repr=False)  # evaluation in flight -> (usd, tokens) spent so far
    _run_lock: Any = field(default=None, repr=False)  # the run_dir's RunLock, held until close()
    _journal_error: Any = field(default=None, repr=False)  # the JournalWriteError that stopped the compile
    _budget_rt: Any = field(default=None, repr=False)  # the runtime holding this compile's run budget, until close()
    _lease: PoolLease = field(init=False, repr=False)  # the worker pool its evaluations share (process runtimes)

    def __post_init__(self) -> None:
        for label, value in (("budget_usd", self.budget_usd), ("budget_tokens", self.budget_tokens)):
            if value is not None and not (isinstance(value, (int, float)) and value >= 0):
                raise ConfigError(f"{label} must be a number >= 0 or None, got {value!r}")
        if not isinstance(self.max_concurrency, int) or self.max_concurrency < 1:
            raise ConfigError(f"max_concurrency must be an int >= 1, got {self.max_concurrency!r}")
        if self.parallel_trials is not None and (not isinstance(self.parallel_trials, int) or self.parallel_trials < 1):
            raise ConfigError(f"parallel_trials must be an int >= 1 or None, got {self.parallel_trials!r}")
        # every evaluation of the compile, parallel_trials at once, on one pool: no processes per round
        self._lease = PoolLease(self.max_concurrency * (self.parallel_trials or DEFAULT_PARALLEL), self.run)
        if self.budget_usd == 0 or self.budget_tokens == 0:
            raise BudgetExceeded("the budget is zero: not even the baseline fits; raise budget_usd / budget_tokens",
                                 self.optimizer, 0)
        if self.run_dir is not None:
            self.run_dir = Path(self.run_dir)
            try:
                self.run_dir.mkdir(parents=True, exist_ok=True)
                self._run_lock = RunLock(self.run_dir / "lock", f"the run directory {self.run_dir}").acquire()
            except OSError as exc:
                raise ConfigError(f"run_dir={str(self.run_dir)!r} cannot be used: {exc}; pass another one") from exc
            try:
                self._open_journal()
            except BaseException:
                self.close()
                raise
        self._open_budget()

    def _open_budget(self) -> None:
        """The budget is held at admission, by every client actor, for every LM call of this compile (its
        evaluations and proposals are runs inside ``self.run``): it is passed by at most the calls in
        flight when it is reached, each at most one call's maximum cost (``clients/budgets.py``)."""
        rt = active_runtime()
        if rt is None or (self.budget_usd is None and self.budget_tokens is None):
            return
        rt.open_budget(RunBudget(self.run, self.budget_usd, self.budget_tokens))
        self._budget_rt = rt

    # --- the with block ----------------------------------------------------------------------------

    def __enter__(self) -> "CompileJob":
        return self

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> bool:
        """A stop (CompileStopped: the budget, the dashboard's cancel, a refused journal write) or Ctrl-C
        ends the block as ``job.stopped``; any other error goes on up. Either way the job closes."""
        try:
            if isinstance(exc, CompileStopped):
                self.stopped = exc.reason
                return True
            if isinstance(exc, KeyboardInterrupt):  # between evaluations (within one, Evaluate stops it)
                self._cancelled.set()
                self.stopped = "cancelled"
                return True
            return False
        finally:
            self.close()

    def close(self) -> None:
        """The job is over (or failed): its run directory's lock and its budget go, the journal stays in
        run_dir. Idempotent."""
        self._journal = None  # nothing is appended once the lock may be another compile's
        lock, self._run_lock = self._run_lock, None
        if lock is not None:
            lock.release()
        budget_rt, self._budget_rt = self._budget_rt, None
        if budget_rt is not None:
            budget_rt.close_budget(self.run)
        self._lease.close()

    # --- journal -----------------------------------------------------------------------------------

    def _open_journal(self) -> None:
        path = self.run_dir / JOURNAL  # type: ignore[operator]
        header = Header(JournalType.COMPILE.value, optimizer=self.optimizer, seed=self.seed,
                        fingerprint=self.fingerprint)
        journal = read(path, *self.entries, journal=JournalType.COMPILE)  # none yet, or only a torn line
        if journal.header is not None:
            differs = journal.header.differences(header)
            if differs:
                raise ConfigError(f"{path} is the journal of another compile: its {', '.join(differs)} "
                                  f"differ{'s' if len(differs) == 1 else ''} from this one's; use another run_dir "
                                  "or the same optimizer, settings, student, trainset and seed")
            self.done = list(journal.entries)
            self.resumed_steps = len(self.done)
            JournalWriter(path).close()  # a line torn by a crash is cut off now, whether or not a step follows
            log.info("compile_resumed", run_dir=str(self.run_dir), steps=len(self.done), format=journal.format)
        elif journal.entries:
            raise ConfigError(f"{path} is not a dspex compile journal (no header): use another run_dir")
        else:
            append(path, header)  # JournalWriteError as it is: nothing was done yet
        self._journal = path

    def record(self, entry: Entry) -> None:
        """Append one step to the journal (fsynced: a kill -9, even a power loss, loses at most the step
        under way). A write the disk refuses stops the compile (CompileStopped "journal")."""
        if self._journal is None:
            return
        try:
            with self._lock:  # steps from trials in flight together: one line at a time
                append(self._journal, entry)
        except JournalWriteError as exc:
            self._journal_failed(exc)

    def _journal_failed(self, exc: JournalWriteError) -> None:
        """The journal stopped taking steps: stop dispatching everywhere, as Ctrl-C does; the optimizer
        reports its best program so far and :meth:`report` raises this error with it."""
        with self._lock:
            if self._journal_error is None:
                self._journal_error = exc
        self._cancelled.set()
        raise CompileStopped("journal", str(exc)) from exc

    def record_once(self, entry: Entry, *key: str) -> None:
        """Record ``entry`` unless an earlier run of this compile journaled the same step (same kind and
        the same values of the ``key`` fields): a resumed compile replays its steps without repeating them."""
        def ident(e: Entry) -> tuple:
            return (e.kind, *(json.dumps(getattr(e, k), sort_keys=True) for k in key))

        with self._lock:
            if (entry.kind, key) not in self._indexed:  # the journal's steps of this kind, read once
                self._indexed.add((entry.kind, key))
                self._replayed.update(ident(e) for e in self.done if e.kind == entry.kind)
            if ident(entry) in self._replayed:
                return
            self._replayed.add(ident(entry))
        self.record(entry)

    def journaled(self, cls: type[E]) -> list[E]:
        """The steps of that class an earlier run of this compile finished (resume)."""
        return [e for e in self.done if isinstance(e, cls)]

    # --- scoring -----------------------------------------------------------------------------------

    def evaluate(self, program: Any, examples: Sequence[Example], metric: Callable, *, phase: str, name: str,
                 concurrency: int | None = None,
                 until: Callable[[Any], bool] | None = None) -> EvaluationResult:
        """Score ``program`` on ``examples`` through Evaluate, inside the budget; CompileStopped when
        the budget is spent or Ctrl-C arrives (the partial result is still counted). With a run_dir,
        each row is journaled as it finishes (``name`` tells the evaluations apart), so a resumed
        compile asks again only the rows that were in flight."""
        self._check_budget()
        me, rt = object(), active_runtime()

        def stop(tally: Any) -> bool:
            with self._lock:  # what every evaluation in flight has spent so far counts (trials run in parallel)
                self._live[me] = (tally.spent, tally.tokens)
                spent_usd = self.usage.cost + sum(v[0] for v in self._live.values())
                spent_tokens = self.usage.total_tokens + sum(v[1] for v in self._live.values())
            over = ((self.budget_usd is not None and spent_usd >= self.budget_usd)
                    or (self.budget_tokens is not None and spent_tokens >= self.budget_tokens))
            if rt is not None and rt.run_cancelled(self.run):
                self._cancelled.set()  # the dashboard's cancel button: as Ctrl-C, the best so far is returned
            refused = bool(tally.rows) and _refused(next(reversed(tally.rows.values())))  # the budget, at admission
            return over or refused or self._cancelled.is_set() or (until is not None and until(tally))

        workers = self.workers if self.workers is not None else 2  # Evaluate's default (process runtimes only)
        rows = self.run_dir / f"rows-{name}.jsonl" if self.run_dir is not None else None
        evaluator = Evaluate(examples, metric, max_concurrency=concurrency or self.max_concurrency, workers=workers,
                             progress=False, timeout_per_example=300.0, journal=rows, resume_from=rows,
                             warn_if_all_failed=False)
        try:
            # the evaluation is a run inside the compile's (its budget covers it), and one compile step
            with run_scope(self.run), leased(self._lease), observed(self, "compile_step", phase=phase, name=name,
                                                                    examples=len(examples)) as step:
                result = step.outputs = (evaluator.run_distributed(program, self.hosts, until=stop) if self.hosts
                                         else evaluator.run(program, until=stop))
        except JournalWriteError as exc:  # this evaluation's rows journal: its rows so far still count as spent
            with self._lock:
                self._live.pop(me, None)
                if exc.result is not None:
                    self.usage = self.usage + exc.result.usage
            self._journal_failed(exc)
        except BaseException:
            with self._lock:
                self._live.pop(me, None)
            raise
        with self._lock:  # in one step, so no other evaluation sees this one's spend twice or not at all
            self._live.pop(me, None)
            self.usage = self.usage + result.usage
        if rt is not None and rt.watched:  # the dashboard's candidate table
            prompts = prompts_of(program)
            rt.publish(CompileStep(self.run, result.run, phase, name, len(examples),
                                   None if result.aborted else result.mean, digest(prompts), prompts))
        if result.aborted in ("interrupted", "cancelled"):
            raise CompileStopped("cancelled", f"Ctrl-C during {phase}")
        refused = next((r for r in result.rows if _refused(r)), None)
        if refused is not None:  # rows the budget stopped at admission are no scores
            raise CompileStopped("budget", str(refused.error))
        check_not_all_failed(result, phase)
        self._check_budget()
        return result

    def charged(self, fn: Callable[[], T]) -> T:
        """Run LM calls made outside an evaluation (an instruction proposal, a reflection) booked to the
        compile: the ledger's count for them joins the report's usage and the budgets."""
        self._check_budget()
        with run_scope(self.run):
            run = new_run_id("ask")  # a run inside the compile's: its budget covers it
        try:
            with run_scope(run):
                return fn()
        except BudgetExceeded as exc:  # refused at admission: nothing was sent
            raise CompileStopped("budget", str(exc)) from exc
        finally:
            rt = active_runtime()
            if rt is not None:
                spent = run_usage(rt, run)
                with self._lock:
                    self.usage = self.usage + spent

    def estimate(self, calls: int, tokens_per_call: int) -> None:
        """Log what the compile will ask for at most (as MIPROv2 does)."""
        log.info("compile_estimate", optimizer=self.optimizer, lm_calls=calls, tokens=calls * tokens_per_call)

    def refuse_if_baseline_cannot_fit(self, baseline_calls: int, tokens_per_call: int) -> None:
        """BudgetExceeded before anything is sent when the token budget cannot hold the baseline evaluation."""
        need = baseline_calls * tokens_per_call
        if self.budget_tokens is not None and self.budget_tokens < need:
            raise BudgetExceeded(f"budget_tokens={self.budget_tokens} cannot hold even the baseline (about {need} "
                                 f"tokens: {baseline_calls} calls of ~{tokens_per_call}); raise the budget or score "
                                 "on a smaller valset", self.optimizer, 0)

    def cancel(self) -> None:
        """Stop dispatching everywhere (Ctrl-C reached the thread that drives the compile)."""
        self._cancelled.set()

    def _check_budget(self) -> None:
        rt = active_runtime()
        if rt is not None and rt.run_cancelled(self.run):
            self._cancelled.set()
        if self._cancelled.is_set():
            raise CompileStopped("cancelled", "Ctrl-C")
        if self.budget_usd is not None and self.usage.cost >= self.budget_usd:
            raise CompileStopped("budget", f"budget_usd={self.budget_usd:g} spent (${self.usage.cost:.6f})")
        if self.budget_tokens is not None and self.usage.total_tokens >= self.budget_tokens:
            raise CompileStopped("budget", f"budget_tokens={self.budget_tokens} spent ({self.usage.total_tokens})")

    # --- events and report --------------------------------------------------------------------------

    def progress(self, phase: str, candidate: int | None = None, score: float | None = None,
                 fraction: float | None = None, finished: bool = False, parents: Sequence[int] = ()) -> None:
        """Publish a CompileProgress event (``score``: a candidate's, kept as the best when higher;
        ``fraction``: how far the compile is, for the ETA; ``parents``: the candidates it was made from)."""
        if score is not None and (self.best is None or score > self.best):
            self.best = score
        elapsed = time.monotonic() - self.started
        eta = elapsed * (1 - fraction) / fraction if fraction else None
        event = CompileProgress(self.run, self.optimizer, phase, candidate, percent(score), percent(self.best),
                                self.usage.requests, self.usage.cost, eta, finished, tuple(parents))
        rt = active_runtime()
        if rt is not None:
            rt.publish(event)

    def report(self, compiled: T, best: float | None = None, baseline: float | None = None,
               candidates: Sequence[CandidateScore] = (), metric_calls: int = 0) -> T:
        """What ``compile`` returns: ``compiled`` with its ``compile_report`` (``best``: its score,
        ``baseline``: the student's; ``metric_calls``: the (candidate, example) pairs scored, for the
        optimizers that count them) — or, when the journal stopped the compile, a JournalWriteError carrying
        it (``.result``, with ``compile_report.stopped == "journal"``). Closes the job."""
        stopped = "journal" if self._journal_error is not None else self.stopped
        self.progress("finished", score=best, fraction=1.0, finished=True)
        self.close()
        compiled.compile_report = CompileReport(  # type: ignore[attr-defined]
            self.optimizer, self.seed, percent(baseline), percent(best),
            tuple(replace(c, score=percent(c.score)) for c in candidates), stopped, self.usage, self.usage.cost,
            self.usage.requests, time.monotonic() - self.started, str(self.run_dir) if self.run_dir is not None
            else None, self.resumed_steps, metric_calls)
        error = self._journal_error
        if error is None:
            return compiled
        raise JournalWriteError(f"{error}; the compile stopped there and its best program so far is in .result; "
                                "free space (or fix the journal) and compile again with the same run_dir to go on",
                                error.path, error.errno, compiled) from error


def percent(mean: float | None) -> float | None:
    """A mean metric value as the percent users see (DSPy's scale; 2 decimals as DSPy rounds)."""
    return None if mean is None else round(100 * mean, 2)


def _refused(row: Any) -> bool:
    """The row's LM call was refused at admission because a budget is spent (nothing was sent)."""
    error = row.error
    return isinstance(error, BudgetExceeded) or getattr(error, "type_name", "") == "BudgetExceeded"


MAX_PROMPT_TEXT, MAX_DEMOS = 4000, 16  # what a CompileStep shows of a prompt


def prompts_of(program: Any) -> tuple[dict, ...]:
    """Per predictor of ``program``: its name, instructions and demos, as bounded plain text with every known
    key masked (what the dashboard shows of a candidate)."""
    keys = known_keys()

    def text(value: Any) -> str:
        return scrub_text(str(value)[:MAX_PROMPT_TEXT], keys)

    out = []
    for name, predictor in getattr(program, "named_predictors", lambda: [])():
        demos = [{k: text(v) for k, v in dict(d).items()} for d in list(predictor.demos or [])[:MAX_DEMOS]]
        out.append({"predictor": name, "instructions": text(predictor.signature.instructions),
                    "signature": predictor.signature.signature_string(), "demos": demos,
                    "demo_count": len(predictor.demos or [])})
    return tuple(out)


def digest(value: Any, length: int = 12) -> str:
    """A short stable name for a JSON-able value (a candidate's prompts, a subset, a fingerprint part)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:length]


def fingerprint(**parts: Any) -> dict:
    """Stable digests of what a journal must match (the student's structure, the data, the settings)."""
    return {k: digest(v, 16) for k, v in parts.items()}


__all__ = ["CompileJob", "CompileReport", "CandidateScore", "CompileProgress", "CompileStopped", "EvaluationFailed",
           "fingerprint"]
