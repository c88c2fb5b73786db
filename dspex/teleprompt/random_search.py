"""BootstrapFewShotWithRandomSearch: DSPy's candidate set, scored with several candidates in flight.

Candidates (as DSPy builds them): zero-shot, labeled demos only, an unshuffled bootstrap, then
bootstraps of shuffled trainsets with a random number of demos. ``search_adapters=True`` makes the
adapter (Chat / JSON / Text) part of each candidate: for small models the prompt's shape matters more
than its demos. Candidates are scored on the valset in batches of ``parallel`` at once, sharing
``max_concurrency``; every score is journaled, so a resumed compile scores only what is missing and
picks the same best (the highest score, the earliest candidate on a tie).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Sequence

from ..errors import ConfigError
from ..evaluate.metric_call import MetricPlace, bind_metric
from ..journal import BootstrapBatch, BootstrapTrace, ScoredCandidate
from ..primitives import Example
from ..programs import Module
from . import demo_sets
from .base import Teleprompter
from .candidates import in_order
from .fewshot import BootstrapFewShot
from .job import CandidateScore
from .validate import check_student, check_trainset, example_digest, structure, tokens_per_call


class BootstrapFewShotWithRandomSearch(Teleprompter):
    """DSPy's BootstrapFewShotWithRandomSearch: every demo set of :mod:`.demo_sets` built and scored on
    the valset as a program; the best (the earliest on a tie) is returned. ``stop_at_score`` stops the
    search at the first batch whose best reaches it."""

    journal_entries = (BootstrapTrace, BootstrapBatch, ScoredCandidate)

    def __init__(self, metric: Callable, num_candidate_programs: int = 16, max_bootstrapped_demos: int = 4,
                 max_labeled_demos: int = 16, stop_at_score: float | None = None, search_adapters: bool = False,
                 seed: int = 0, metric_threshold: float | None = None, max_rounds: int = 1,
                 parallel: int | None = None, num_threads: int | None = None, max_errors: int | None = None,
                 teacher_settings: dict | None = None) -> None:
        bind_metric(metric, MetricPlace.BOOTSTRAP, "BootstrapFewShotWithRandomSearch")  # it bootstraps demos
        if not isinstance(num_candidate_programs, int) or num_candidate_programs < 0:
            raise ConfigError(f"num_candidate_programs must be an int >= 0, got {num_candidate_programs!r}")
        self.metric, self.num_candidate_programs = metric, num_candidate_programs
        self.max_bootstrapped_demos, self.max_labeled_demos = max_bootstrapped_demos, max_labeled_demos
        self.stop_at_score, self.search_adapters, self.seed = stop_at_score, search_adapters, seed
        self.metric_threshold, self.max_rounds, self.parallel = metric_threshold, max_rounds, parallel
        self.num_threads, self.max_errors, self.teacher_settings = num_threads, max_errors, teacher_settings

    def plan(self) -> list[demo_sets.DemoSet]:
        """The candidates, in order: what each is (the journal and the report say it)."""
        return demo_sets.plan(self.seed, self.num_candidate_programs, self.max_bootstrapped_demos,
                              self.search_adapters)

    def compile(self, student: Module, *, trainset: Sequence[Example], valset: Sequence[Example] | None = None,
                teacher: Module | None = None, restrict: Iterable[int] | None = None, labeled_sample: bool = True,
                **job_options: Any) -> Module:
        """The best candidate program by its score on ``valset`` (DSPy's default: the trainset itself).
        ``restrict`` keeps only the candidates of those DSPy seeds (-3 zero-shot, -2 labeled demos only,
        -1 the unshuffled bootstrap, 0, 1, ... the shuffled ones)."""
        student = check_student(student)
        trainset = check_trainset(trainset, student)
        valset = check_trainset(valset if valset is not None else trainset, student, "valset")
        plan = self.plan()
        if restrict is not None:
            wanted = set(restrict)  # read once: a single-use iterator is fine
            plan = [item for item in plan if dspy_seed(item) in wanted]
            if not plan:
                raise ValueError(f"restrict={sorted(wanted)} matches no candidate seed: the seeds are -3 (zero-shot), "
                                 f"-2 (labeled demos), -1 (unshuffled bootstrap) and 0..{self.num_candidate_programs - 1}")
        if self.num_threads is not None and "max_concurrency" not in job_options:
            job_options["max_concurrency"] = self.num_threads
        settings = {"n": self.num_candidate_programs, "boot": self.max_bootstrapped_demos,
                    "labeled": self.max_labeled_demos, "adapters": self.search_adapters,
                    "threshold": self.metric_threshold, "stop": self.stop_at_score}
        if self.search_adapters:  # the widened plan holds the single-adapter one (a journal of the old plan differs)
            settings["adapter_plan"] = 2
        if restrict is not None:
            settings["restrict"] = sorted({dspy_seed(item) for item in plan})
        job = self.job({"student": structure(student), "trainset": example_digest(trainset),
                        "valset": example_digest(valset), "settings": settings}, **job_options)
        booter = BootstrapFewShot(self.metric, self.metric_threshold, self.max_bootstrapped_demos,
                                  self.max_labeled_demos, self.max_rounds, max_errors=self.max_errors, seed=self.seed,
                                  teacher_settings=self.teacher_settings)
        scored: dict[int, ScoredCandidate] = {}
        programs: dict[int, Module] = {}
        with job:
            per_call = tokens_per_call(student, valset[0])
            job.estimate(len(plan) * (len(valset) + len(trainset)), per_call)
            job.refuse_if_baseline_cannot_fit(len(valset), per_call)
            scored.update((e.id, e) for e in job.journaled(ScoredCandidate))
            parallel = self.parallel or max(1, min(4, job.max_concurrency // 4))
            per_candidate = max(1, job.max_concurrency // parallel)

            def build_and_score(item: demo_sets.DemoSet) -> ScoredCandidate | None:
                program = demo_sets.build(job, booter, student, teacher, trainset, item)
                programs[item.id] = program
                if item.id in scored:
                    return None  # scored before the crash: the journal has it
                result = job.evaluate(program, valset, self.metric, phase="candidates", name=f"candidate-{item.id}",
                                      concurrency=per_candidate)
                return ScoredCandidate(item.id, item.describe(), result.mean, result.usage.requests,
                                       not result.aborted)

            for start in range(0, len(plan), parallel):
                for entry in in_order(job, parallel, build_and_score, plan[start:start + parallel], "dspex-candidate"):
                    if entry is not None and entry.complete:  # one cut short by the budget is no score
                        scored[entry.id] = entry
                        job.record(entry)
                        job.progress("candidates", entry.id, entry.score, (entry.id + 1) / len(plan))
                best = _best(scored)
                if self.stop_at_score is not None and best is not None and best.score >= self.stop_at_score:
                    break
        best = _best(scored)
        if best is None:
            compiled = student.reset_copy()
        else:  # built in this run, or else rebuilt from the journal (its traces are there: it was scored)
            compiled = programs.get(best.id) or demo_sets.build(job, booter, student, teacher, trainset,
                                                                {item.id: item for item in plan}[best.id])
        candidates = [CandidateScore(e.id, e.description, e.score, e.lm_calls) for _, e in sorted(scored.items())]
        return job.report(compiled, best=best.score if best else None,
                          baseline=scored[0].score if 0 in scored else None, candidates=candidates)


def dspy_seed(item: demo_sets.DemoSet) -> int:
    """The seed DSPy's random search gives this candidate: -3 zero-shot, -2 labeled, -1 unshuffled, else its shuffle."""
    if item.source == "zero-shot":
        return -3
    if item.source == "labeled":
        return -2
    return -1 if item.shuffle is None else item.shuffle


def _best(scored: dict[int, ScoredCandidate]) -> ScoredCandidate | None:
    return max(scored.values(), key=lambda e: (e.score, -e.id)) if scored else None


__all__ = ["BootstrapFewShotWithRandomSearch"]
