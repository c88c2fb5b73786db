"""Few-shot optimizers: LabeledFewShot (sampled training examples as demos) and BootstrapFewShot
(demos from the teacher's own successful traces, gathered concurrently and deterministically).

Neither mutates the student or the teacher: compile works on copies. The same seed gives the same
compiled program: bootstrapped demos are the first successes in trainset order, whatever order the
concurrent calls finish in; once every predictor has its demos the rest are cancelled, not waited for.
"""

from __future__ import annotations

import random
from collections import deque
import logging
from typing import Any, Callable, Mapping, Sequence

from ..errors import ConfigError, DspexError
from ..evaluate.metric_call import MetricPlace, bind_metric
from ..evaluate.result import metric_score
from ..journal import BootstrapBatch, BootstrapTrace
from ..primitives import Example, Prediction, Usage
from ..programs import Module
from ..programs.trace import collect
from .base import Teleprompter
from .job import CompileJob
from .validate import check_student, check_trainset, example_digest, structure


class LabeledFewShot(Teleprompter):
    """``k`` training examples (a seeded sample) as every predictor's demos. No LM calls."""

    def __init__(self, k: int = 16, seed: int = 0) -> None:
        if not isinstance(k, int) or k < 0:
            raise ConfigError(f"k must be an int >= 0, got {k!r}")
        self.k, self.seed = k, seed

    def compile(self, student: Module, *, trainset: Sequence[Example], sample: bool = True, **job_options: Any
                ) -> Module:
        """A copy of ``student`` whose predictors have ``k`` training examples as demos (a seeded sample, or
        the first ``k`` with ``sample=False``)."""
        trainset = check_trainset(trainset, check_student(student), inputs_marked=False)  # demos only
        job = self.job({"student": structure(student), "k": self.k}, **job_options)
        compiled = student.reset_copy()
        with job:
            demos = labeled_demos(trainset, self.k, random.Random(self.seed) if sample else None)
            for predictor in compiled.predictors():
                predictor.demos = list(demos)
        return job.report(compiled)


class Demo(dict):
    """A demo as optimizers hand it to a predictor: a plain dict (it saves and compares as one) whose fields
    also read as attributes, as DSPy's Example demos do (``demo.question``)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def labeled_demos(examples: Sequence[Example], k: int, rng: random.Random | None) -> list[dict]:
    chosen = rng.sample(list(examples), min(k, len(examples))) if rng is not None else list(examples)[:k]
    return [Demo(ex.items()) for ex in chosen]


class Traced(Module):
    """The teacher as Evaluate runs it during bootstrapping: every predictor call of one forward is
    collected (a scope opened around the call, in whichever thread or worker process runs it)."""

    def __init__(self, program: Module, settings: dict | None = None) -> None:
        self.program, self.settings = program, dict(settings or {})

    def forward(self, **inputs: Any) -> Prediction:
        program = _without_own_demo(self.program, inputs)
        if self.settings:
            from ..programs.settings import context

            with context(**self.settings), collect(program) as steps:
                result = program.forward(**inputs)
        else:
            with collect(program) as steps:
                result = program.forward(**inputs)
        if not isinstance(result, Prediction):
            raise ConfigError(f"the teacher returned {type(result).__name__}, not a Prediction")
        return Prediction(dict(result.items()), usage=sum((s.usage for s in steps), Usage()),
                          cost=sum(s.cost for s in steps), raw=result.raw, trace=steps)


def _without_own_demo(program: Module, inputs: dict) -> Module:
    """As DSPy: the teacher does not see the example it answers among its demos (a copy without it)."""
    def own(demo: Any) -> bool:
        return isinstance(demo, Mapping) and all(k in demo and demo[k] == v for k, v in inputs.items())

    if not inputs or not any(own(d) for p in program.predictors() for d in p.demos):
        return program
    program = program.deepcopy()
    for predictor in program.predictors():
        predictor.demos = [d for d in predictor.demos if not own(d)]
    return program


def passed(metric: Callable, threshold: float | None) -> Callable:
    """A bootstrap metric: the user's metric with the trace, as 1.0 (keep these demos) or 0.0."""
    bound = bind_metric(metric, MetricPlace.BOOTSTRAP, "BootstrapFewShot") if metric is not None else None

    def bootstrap_metric(example: Example, prediction: Prediction, trace: Any = None) -> float:
        if bound is None:  # DSPy: without a metric every trace that ran is kept
            return 1.0
        score, _ = metric_score(bound(example, prediction, prediction.trace))
        return 1.0 if (score >= threshold if threshold is not None else bool(score)) else 0.0

    return bootstrap_metric


class BootstrapFewShot(Teleprompter):
    """DSPy's BootstrapFewShot: run the teacher (by default the student; as in DSPy, an uncompiled teacher
    gets ``max_labeled_demos`` labeled demos, never the example it answers) over the trainset in order,
    keep the traces the metric passes as demos (up to ``max_bootstrapped_demos`` per predictor), fill up
    to ``max_labeled_demos`` with raw examples. No more teacher calls than DSPy makes: examples are handed
    out only while the passes so far could still fall short. Concurrent, deterministic, journaled,
    resumable. A teacher error counts towards ``max_errors`` (default: the ``max_errors`` setting, 10);
    reaching it re-raises that error, as DSPy does."""

    def __init__(self, metric: Callable | None = None, metric_threshold: float | None = None,
                 max_bootstrapped_demos: int = 4, max_labeled_demos: int = 16, max_rounds: int = 1,
                 max_errors: int | None = None, seed: int = 0, teacher_settings: dict | None = None) -> None:
        if metric is not None:
            bind_metric(metric, MetricPlace.BOOTSTRAP, "BootstrapFewShot")  # checked before anything runs
        for label, value, low in (("max_bootstrapped_demos", max_bootstrapped_demos, 0),
                                  ("max_labeled_demos", max_labeled_demos, 0), ("max_rounds", max_rounds, 1)):
            if not isinstance(value, int) or value < low:
                raise ConfigError(f"{label} must be an int >= {low}, got {value!r}")
        if max_errors is not None and (not isinstance(max_errors, int) or max_errors < 1):
            raise ConfigError(f"max_errors must be an int >= 1 or None, got {max_errors!r}")
        self.metric, self.metric_threshold = metric, metric_threshold
        self.max_bootstrapped_demos, self.max_labeled_demos = max_bootstrapped_demos, max_labeled_demos
        self.max_rounds, self.max_errors, self.seed = max_rounds, max_errors, seed
        self.teacher_settings = dict(teacher_settings or {})
        # examples handed out at once per pass still missing: 1 tries exactly the examples DSPy's sequential
        # loop tries; an optimizer that bootstraps many sets from one trainset (MIPROv2) hands out more, for
        # fewer rounds of evaluations (the chosen demos are the same: the first passes in order)
        self.lookahead = 1

    journal_entries = (BootstrapTrace, BootstrapBatch)

    def settings(self) -> dict:
        """What a resumed compile's journal must have been made with (besides the student, data and seed)."""
        return {"threshold": self.metric_threshold, "boot": self.max_bootstrapped_demos,
                "labeled": self.max_labeled_demos, "rounds": self.max_rounds}

    def compile(self, student: Module, *, trainset: Sequence[Example], teacher: Module | None = None,
                **job_options: Any) -> Module:
        """A copy of ``student`` with bootstrapped demos (``teacher``: a program of the same structure to
        trace; by default the student). When no trace passes the metric the program has labeled demos only
        (as DSPy's; a warning says so)."""
        trainset = check_trainset(trainset, check_student(student))
        job = self.job({"student": structure(student), "trainset": example_digest(trainset),
                        "settings": self.settings()}, **job_options)
        compiled, traces = student.reset_copy(), {}
        with job:
            compiled, traces = self.compile_in(job, student, trainset, teacher)
        if job.stopped == "done" and traces and self.max_bootstrapped_demos and not any(
                v is not None for v in traces.values()):
            errors = [e for e in job.errors if e][:3]
            logger.warning("BootstrapFewShot: no trace of the teacher passed the metric on %d examples%s; the "
                           "program has labeled demos only", len(traces),
                           f" (first errors: {errors})" if errors else "")
        return job.report(compiled)

    def teacher_for(self, student: Module, teacher: Module | None, trainset: list[Example]) -> Module:
        """The program traced: a copy of ``teacher`` (or of the student); an uncompiled one gets labeled demos."""
        copy = teacher.deepcopy() if teacher is not None else student.reset_copy()
        if self.max_labeled_demos and not getattr(copy, "_compiled", False):
            labeled = labeled_demos(trainset, self.max_labeled_demos, random.Random(self.seed))
            for predictor in copy.predictors():
                predictor.demos = list(labeled)
        return copy

    def compile_in(self, job: CompileJob, student: Module, trainset: list[Example], teacher: Module | None,
                   order: Sequence[int] | None = None, max_demos: int | None = None, tag: str = ""
                   ) -> tuple[Module, dict[int, list[dict] | None]]:
        """The compiled copy of ``student`` and the traces found; ``order`` (train indices) and
        ``max_demos`` let random search bootstrap shuffled subsets; journal entries carry ``tag``."""
        compiled = student.reset_copy()
        teacher_copy = self.teacher_for(student, teacher, trainset)
        if structure(teacher_copy) != structure(compiled):
            raise ConfigError(f"the teacher's predictors {structure(teacher_copy)} differ from the student's "
                              f"{structure(compiled)}: use a teacher of the same program")
        order = list(order) if order is not None else list(range(len(trainset)))
        want = self.max_bootstrapped_demos if max_demos is None else max_demos
        traces = self.bootstrap(job, teacher_copy, trainset, order, want, tag)
        chosen = [i for i in order if traces.get(i) is not None][:want]
        demos: dict[str, list[dict]] = {name: [] for name, _ in compiled.named_predictors()}
        for i in chosen:
            for step in traces[i] or ():
                if step["predictor"] in demos:
                    demos[step["predictor"]].append(Demo({**step["inputs"], **step["outputs"]}))
        raw = [trainset[i] for i in order if i not in chosen]
        rng = random.Random(self.seed)
        for name, predictor in compiled.named_predictors():
            room = max(0, self.max_labeled_demos - len(demos[name]))
            predictor.demos = demos[name] + labeled_demos(raw, room, rng)
        compiled._compiled = True
        return compiled, traces

    def bootstrap(self, job: CompileJob, teacher: Module, trainset: list[Example], order: list[int], want: int,
                  tag: str) -> dict[int, list[dict] | None]:
        """Train index → the passing trace's steps (None: it failed every round). Journaled results are
        reused. Examples are handed out in ``order``, at most as many at once as passes are still missing
        (``lookahead`` times as many), each through its rounds before later ones: with ``lookahead`` 1, exactly
        the examples DSPy's sequential loop would try."""
        found: dict[int, list[dict] | None] = {}
        tried: dict[int, int] = {}  # index -> last round it ran in
        journaled: set[tuple[int, int]] = set()  # (index, round) with an entry from an earlier run
        errors = 0
        for entry in job.journaled(BootstrapTrace):
            if entry.tag == tag:
                found[entry.index] = entry.steps if entry.ok else None
                tried[entry.index] = max(tried.get(entry.index, -1), entry.round)
                errors += entry.error is not None
                journaled.add((entry.index, entry.round))
        # the evaluations an earlier run started, in order: one a kill left unfinished runs again as it was
        unfinished = deque(b for b in job.journaled(BootstrapBatch) if b.tag == tag
                           and not all((i, b.round) in journaled for i in b.examples))
        max_errors = self.max_errors
        if max_errors is None:
            from ..programs.settings import setting

            max_errors = setting("max_errors") or 10
        metric = passed(self.metric, self.metric_threshold)
        while want > 0:
            if unfinished:  # the evaluation a kill cut short: the same examples under the same name
                started = unfinished.popleft()
                round_, pending = started.round, list(started.examples)
            else:
                ok, batch = 0, []
                for i in order:
                    if len(batch) >= self.lookahead * (want - ok):
                        break
                    if found.get(i) is not None:
                        ok += 1
                    elif i not in found or tried.get(i, -1) < self.max_rounds - 1:
                        batch.append(i)
                if not batch:
                    break
                round_ = min(tried.get(i, -1) + 1 for i in batch)
                pending = [i for i in batch if tried.get(i, -1) + 1 == round_]
                job.record(BootstrapBatch(tag, round_, pending))
            program = teacher if round_ == 0 else _sampling(teacher, round_)
            result = job.evaluate(Traced(program, self.teacher_settings), [trainset[i] for i in pending], metric,
                                  phase="bootstrap", concurrency=min(job.max_concurrency, len(pending)),
                                  name=f"bootstrap{('-' + tag) if tag else ''}-round{round_}-at{pending[0]}")
            first_error: BaseException | None = None
            for pos, row in enumerate(result.rows):
                if type(row.error).__name__ == "EvaluationCancelled":
                    continue  # never ran: not journaled, so a resumed compile may still run it
                if (pending[pos], round_) in journaled:
                    continue  # journaled before the kill: the state has it already
                ok_row = row.error is None and row.score >= 1.0
                steps = [_step_json(s) for s in row.prediction.trace] if ok_row else None
                found[pending[pos]], tried[pending[pos]] = steps, round_
                error = None if row.error is None else f"{type(row.error).__name__}: {str(row.error)[:200]}"
                if row.error is not None:
                    errors += 1
                    first_error = first_error or row.error
                job.errors.append(error)
                job.record(BootstrapTrace(tag, pending[pos], round_, ok_row, steps, error))
            job.progress("bootstrap", fraction=min(1.0, sum(v is not None for v in found.values()) / max(1, want)))
            if first_error is not None and errors >= max_errors:
                if isinstance(first_error, Exception):
                    raise first_error
                raise NoTracePassed(f"bootstrapping stopped: {errors} examples failed (max_errors={max_errors})")
            if len(result.rows) < len(pending) or all(type(r.error).__name__ == "EvaluationCancelled"
                                                      for r in result.rows):
                break  # nothing more ran (a budget or Ctrl-C ends the job's block)
        return found


class NoTracePassed(DspexError):
    """Bootstrapping found no trace the metric passes (the first errors are named), or more examples
    failed than ``max_errors`` allows: never a silently empty program."""


def _sampling(teacher: Module, round_: int) -> Module:
    """Rounds after the first sample afresh: temperature 1.0 and a rollout id (part of the cache key)."""
    fresh = teacher.deepcopy()
    for predictor in fresh.predictors():
        predictor.config = {**predictor.config, "temperature": 1.0, "rollout": round_}
    return fresh


def _step_json(step: Any) -> dict:
    from ..adapters.base import to_jsonable

    return {"predictor": step.predictor, "inputs": {k: to_jsonable(v) for k, v in step.inputs.items()},
            "outputs": {k: to_jsonable(v) for k, v in step.outputs.items()}}


logger = logging.getLogger(__name__)

__all__ = ["LabeledFewShot", "Demo", "BootstrapFewShot", "NoTracePassed", "Traced", "labeled_demos"]
