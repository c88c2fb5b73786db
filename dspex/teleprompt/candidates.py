"""What instruction optimizers share: a program edited to a candidate's instructions and demos, and a
score board that scores each (candidate, example) pair once, however many trials ask for it.

The board is why a resumed or parallel compile spends exactly what an uninterrupted serial one does:
a pair already scored (in memory, or in a row journal a crashed run left) is never asked again, and a
pair another trial is scoring right now is waited for, not scored twice. ``metric_calls`` counts the
pairs scored, so it does not depend on timing. An evaluation's row journal is named after the examples it
claimed, which depends on how the trials in flight interleaved; so a resumed board reads every row
journal of its candidates first, whichever evaluation wrote it, and finds each row by its example.
"""

from __future__ import annotations

import contextvars
import threading
from dataclasses import replace
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Mapping as MappingABC
from typing import Any, Callable, Iterator, Mapping, Sequence

from ..evaluate.result import EvalRow, load_journal
from ..primitives import Example
from ..programs import Module
from .job import CompileJob, digest


def instructions_of(program: Module) -> dict[str, str]:
    """Each predictor's instruction, by its dotted name."""
    return {name: p.signature.instructions for name, p in program.named_predictors()}


def edited(program: Module, instructions: Mapping[str, str] | None = None,
           demos: Mapping[str, Sequence[Mapping[str, Any]]] | None = None) -> Module:
    """A copy of ``program`` with the given predictors' instructions and demos replaced."""
    copy = program.deepcopy()
    for name, predictor in copy.named_predictors():
        if instructions is not None and name in instructions:
            predictor.signature = predictor.signature.with_instructions(instructions[name])
        if demos is not None and name in demos:
            predictor.demos = [dict(d) for d in demos[name]]
    return copy


class ScoreBoard:
    """Rows of (candidate key, example index) for one example set, each scored once."""

    def __init__(self, job: CompileJob, metric: Callable, examples: Sequence[Example], label: str) -> None:
        self.job, self.metric, self.examples, self.label = job, metric, list(examples), label
        self._rows: dict[tuple[str, int], EvalRow] = {}
        self._claims: dict[tuple[str, int], threading.Event] = {}
        self._lock = threading.Lock()
        self._loaded = False
        self._journaled: dict[tuple[str, int], EvalRow] = {}  # rows an earlier run scored, not yet asked for

    @property
    def metric_calls(self) -> int:
        with self._lock:
            return len(self._rows)

    def known(self, key: str, index: int) -> EvalRow | None:
        with self._lock:
            return self._rows.get((key, index))

    def missing(self, key: str, indices: Sequence[int]) -> list[int]:
        """The indices not yet scored for ``key`` (what scoring them would cost in metric calls)."""
        with self._lock:
            return [i for i in indices if (key, i) not in self._rows]

    def score(self, program: Module, key: str, indices: Sequence[int], *, phase: str,
              concurrency: int | None = None) -> list[EvalRow]:
        """The rows of ``indices`` for candidate ``key`` (``program``), in that order, scoring only the
        pairs nobody has scored or is scoring. Raises what ``CompileJob.evaluate`` raises (budget, Ctrl-C)."""
        self._load_journaled()
        while True:
            mine, theirs = [], []
            with self._lock:
                for i in dict.fromkeys(indices):
                    pair = (key, i)
                    if pair in self._journaled:  # scored now, as far as the count goes: as in the first run
                        self._rows[pair] = self._journaled.pop(pair)
                    if pair in self._rows:
                        continue
                    if pair in self._claims:
                        theirs.append(self._claims[pair])
                    else:
                        self._claims[pair] = threading.Event()
                        mine.append(i)
            if mine:
                self._score(program, key, mine, phase, concurrency)
            for event in theirs:
                event.wait()
            with self._lock:
                if all((key, i) in self._rows for i in indices):
                    return [self._rows[(key, i)] for i in indices]
            # another trial's evaluation was cut short (budget, Ctrl-C): take over what it left

    def _load_journaled(self) -> None:
        """The rows an earlier run of this compile journaled for this board (once, before the first score);
        each joins the board (and ``metric_calls``) when the replay asks for it, as it did in that run."""
        with self._lock:
            if self._loaded:
                return
            self._loaded = True
            run_dir = self.job.run_dir
            if run_dir is None or not self.job.resumed_steps:
                return
            where: dict[Example, list[int]] = {}
            for i, example in enumerate(self.examples):
                where.setdefault(example, []).append(i)
            prefix = f"rows-{self.label}-"
            for path in sorted(run_dir.glob(f"{prefix}*.jsonl")):
                key = path.name[len(prefix):].rsplit("-", 1)[0]  # rows-<label>-<key>-<claimed examples' digest>
                for row in load_journal(path):
                    if getattr(row.error, "type_name", "") == "BudgetExceeded":
                        continue  # refused before it was sent: asked again, as Evaluate's resume does
                    for i in where.get(row.example, ()):
                        self._journaled.setdefault((key, i), replace(row, index=i))

    def _score(self, program: Module, key: str, mine: list[int], phase: str, concurrency: int | None) -> None:
        try:
            result = self.job.evaluate(program, [self.examples[i] for i in mine], self.metric, phase=phase,
                                       name=f"{self.label}-{key}-{digest(mine)}", concurrency=concurrency)
            with self._lock:
                for row in result.rows:
                    if type(row.error).__name__ != "EvaluationCancelled":
                        self._rows[(key, mine[row.index])] = row
        finally:
            with self._lock:
                for i in mine:
                    self._claims.pop((key, i)).set()


def in_order(job: CompileJob, parallel: int, fn: Callable, items: Sequence, name: str = "dspex-trial") -> list:
    """``fn`` over ``items`` with up to ``parallel`` at once (each in the caller's context, so
    ``dspex.context`` overrides hold), results in ``items`` order. Ctrl-C stops the job's evaluations."""
    if parallel == 1 or len(items) <= 1:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(min(parallel, len(items)), thread_name_prefix=name) as pool:
        futures = [pool.submit(contextvars.copy_context().run, fn, item) for item in items]
        try:
            return [f.result() for f in futures]
        except KeyboardInterrupt:  # reaches this thread only: stop the other trials' evaluations too
            job.cancel()
            raise


def mean(rows: Sequence[EvalRow]) -> float:
    return sum(r.score for r in rows) / len(rows) if rows else 0.0


class ScoredProgram(MappingABC):
    """One of a compiled program's ``candidate_programs`` (COPRO, SIMBA): ``item["score"]``,
    ``item["program"]`` and the optimizer's other keys, read as DSPy's dicts. A mapping but not a dict, so
    the candidates' predictors never count as the compiled program's own (dspex's module walk looks inside
    dicts held in lists; DSPy's does not)."""

    def __init__(self, score: float, program: Any, **more: Any) -> None:
        self._items = {"score": score, "program": program, **more}

    def __getitem__(self, key: str) -> Any:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"ScoredProgram(score={self._items['score']!r})"


__all__ = ["ScoreBoard", "ScoredProgram", "instructions_of", "edited", "digest", "mean", "in_order"]
