"""BootstrapFewShotWithOptuna: demo sets bootstrapped as random search builds them, then a seeded Bayesian
search (Optuna's TPE) over which set's demos each predictor gets.

1. Demo sets: ``num_candidate_programs`` bootstraps of the trainset (an unshuffled one with up to
   ``max_demos`` bootstrapped demos, then seeded shuffles with a random number of them, as
   :mod:`.demo_sets` plans them), each filled with labeled demos up to ``max_labeled_demos``.
2. Search: ``num_candidate_programs`` trials (DSPy's count). A trial chooses, per predictor, one demo
   set (an integer parameter ``demo_index_for_<predictor>``, DSPy's name) and scores that program on the
   whole valset (the trainset when none is given). The first trials give every predictor set 0, 1, 2, ...
   in turn (enqueued), so each set is scored before the sampler's draws, which repeat. Trials are asked of the sampler in rounds of
   ``TRIAL_ROUND`` whatever ``parallel_trials`` is (up to that many are scored at once), so the same seed
   gives the same program however many run together. The best trial's program is returned (the earliest
   on a tie).

Every bootstrap trace and every trial is journaled; a resumed compile rebuilds the demo sets from the
journal and replays the sampler against the journaled trials, so it asks nothing again and returns the
identical program. A budget, Ctrl-C or a refused journal write returns the best trial so far.

Unlike DSPy's (one bootstrap, from whose demos each trial gives every predictor a single demo), the
trials choose among whole bootstrapped demo sets, per predictor; the sampler is seeded (``seed``).
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Sequence

from ..errors import ConfigError
from ..evaluate.metric_call import MetricPlace, bind_metric
from ..journal import BootstrapBatch, BootstrapTrace, OptunaTrial
from ..primitives import Example
from ..programs import Module
from . import demo_sets
from .base import Teleprompter, need_optuna
from .candidates import ScoreBoard, edited, in_order, mean
from .fewshot import BootstrapFewShot, Demo
from .job import DEFAULT_PARALLEL, CandidateScore, CompileJob
from .validate import check_student, check_trainset, example_digest, structure, tokens_per_call

TRIAL_ROUND = 8  # trials asked of the sampler together (the most that can be in flight at once)


def param_name(predictor: str) -> str:
    """The sampler's parameter for one predictor's choice (DSPy's name for it)."""
    return f"demo_index_for_{predictor}"


class BootstrapFewShotWithOptuna(Teleprompter):
    """DSPy's BootstrapFewShotWithOptuna (see the module's doc). ``max_bootstrapped_demos`` is what
    ``compile``'s ``max_demos`` defaults to; ``num_threads`` is the job's ``max_concurrency``; ``seed``
    seeds the demo-set plan and the sampler."""

    journal_entries = (BootstrapTrace, BootstrapBatch, OptunaTrial)

    def __init__(self, metric: Callable, teacher_settings: dict | None = None, max_bootstrapped_demos: int = 4,
                 max_labeled_demos: int = 16, max_rounds: int = 1, num_candidate_programs: int = 16,
                 num_threads: int | None = None, seed: int = 0) -> None:
        bind_metric(metric, MetricPlace.BOOTSTRAP, "BootstrapFewShotWithOptuna")  # it bootstraps demos
        need_optuna("BootstrapFewShotWithOptuna")
        for label, value, low in (("max_bootstrapped_demos", max_bootstrapped_demos, 0),
                                  ("max_labeled_demos", max_labeled_demos, 0), ("max_rounds", max_rounds, 1),
                                  ("num_candidate_programs", num_candidate_programs, 1)):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ConfigError(f"{label} must be an int >= {low}, got {value!r}")
        if num_threads is not None and (not isinstance(num_threads, int) or isinstance(num_threads, bool)
                                        or num_threads < 1):
            raise ConfigError(f"num_threads must be an int >= 1 or None, got {num_threads!r}")
        if teacher_settings is not None and not isinstance(teacher_settings, dict):
            raise ConfigError(f"teacher_settings must be a dict (e.g. {{'lm': teacher_lm}}), got {teacher_settings!r}")
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise ConfigError(f"seed must be an int, got {seed!r}")
        self.metric, self.teacher_settings = metric, dict(teacher_settings or {})
        self.max_bootstrapped_demos, self.max_labeled_demos = max_bootstrapped_demos, max_labeled_demos
        self.max_rounds, self.num_candidate_programs = max_rounds, num_candidate_programs
        self.num_threads, self.seed = num_threads, seed
        self.min_num_samples, self.max_num_samples = 1, max_bootstrapped_demos  # DSPy's attributes
        self.num_candidate_sets = num_candidate_programs

    def compile(self, student: Module, *, teacher: Module | None = None, max_demos: int | None = None,
                trainset: Sequence[Example], valset: Sequence[Example] | None = None, **job_options: Any) -> Module:
        """The best trial's program (see the module's doc): ``max_demos`` bootstrapped demos at most per
        demo set (default ``max_bootstrapped_demos``); ``job_options`` are the compile job's (run_dir,
        budget_usd / budget_tokens, max_concurrency, parallel_trials, ...)."""
        max_demos = self.max_bootstrapped_demos if max_demos is None else max_demos
        if not isinstance(max_demos, int) or isinstance(max_demos, bool) or max_demos < 0:
            raise ConfigError(f"max_demos must be an int >= 0, got {max_demos!r}")
        student = check_student(student)
        trainset = check_trainset(trainset, student)
        valset = check_trainset(valset if valset is not None else trainset, student, "valset")  # DSPy's default
        if self.num_threads is not None:
            job_options.setdefault("max_concurrency", self.num_threads)
        teacher_lm = self.teacher_settings.get("lm")
        settings = {"n": self.num_candidate_programs, "demos": max_demos, "labeled": self.max_labeled_demos,
                    "rounds": self.max_rounds,
                    "teacher": str(getattr(teacher_lm, "model", teacher_lm)) if teacher_lm is not None else None}
        job = self.job({"student": structure(student), "trainset": example_digest(trainset),
                        "valset": example_digest(valset), "settings": settings}, **job_options)
        search = _Search(self, job, student, teacher, trainset, valset, max_demos)
        with job:
            per_call = tokens_per_call(student, valset[0])
            n = self.num_candidate_programs
            job.estimate(n * (len(trainset) + len(valset)), per_call)
            job.refuse_if_baseline_cannot_fit(len(valset), per_call)
            search.run()
        return search.finish()


class _Search:
    """One compile's state: the demo sets, the sampler and the trials told to it."""

    def __init__(self, opt: BootstrapFewShotWithOptuna, job: CompileJob, student: Module, teacher: Module | None,
                 trainset: list[Example], valset: list[Example], max_demos: int) -> None:
        self.opt, self.job, self.student, self.teacher = opt, job, student, teacher
        self.trainset, self.valset, self.max_demos = trainset, valset, max_demos
        self.names = [name for name, _ in student.named_predictors()]
        self.parallel = min(job.parallel_trials or DEFAULT_PARALLEL, TRIAL_ROUND)
        self.per_eval = max(1, job.max_concurrency // self.parallel)
        self.board = ScoreBoard(job, opt.metric, valset, "optuna")
        self.plan = demo_sets.plan(opt.seed, opt.num_candidate_programs - 1, max_demos)[2:]  # the bootstraps only
        self.sets: list[dict[str, list[dict]]] = []  # demo set -> predictor -> its demos
        self.trials: dict[int, OptunaTrial] = {}  # told to the sampler (this run's or the journal's)
        self.journaled = {e.trial: e for e in job.journaled(OptunaTrial)}
        self._lock = threading.Lock()

    def run(self) -> None:
        """The demo sets, then the trials; a stop (budget, Ctrl-C, the journal) goes up to the job's block."""
        booter = BootstrapFewShot(self.opt.metric, None, self.max_demos, self.opt.max_labeled_demos,
                                  self.opt.max_rounds, seed=self.opt.seed, teacher_settings=self.opt.teacher_settings)
        programs = in_order(self.job, self.parallel, lambda item: demo_sets.build(
            self.job, booter, self.student, self.teacher, self.trainset, item), self.plan, "dspex-demos")
        self.sets = [{name: [dict(d) for d in p.demos] for name, p in program.named_predictors()}
                     for program in programs]
        self.job.progress("demos", fraction=0.2)
        self.search()

    def search(self) -> None:
        optuna = need_optuna("BootstrapFewShotWithOptuna")
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # its per-trial INFO lines are ours to report
        study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=self.opt.seed))
        dists = {param_name(name): optuna.distributions.IntDistribution(0, len(self.sets) - 1)
                 for name in self.names}
        # the first trials give every predictor demo set 0, 1, 2, ... in turn: each set is scored once before
        # the sampler chooses (its random start draws with replacement: with 4 trials over 4 sets, seed 0 drew
        # set 2 four times, and the search scored one program)
        for index in range(min(len(self.sets), self.opt.num_candidate_programs)):
            study.enqueue_trial({param_name(name): index for name in self.names})
        total, t = self.opt.num_candidate_programs, 0
        while t < total:
            asked = [study.ask(dists) for _ in range(min(TRIAL_ROUND, total - t))]
            configs = [{name: int(trial.params[param_name(name)]) for name in self.names} for trial in asked]
            for j, config in enumerate(configs):
                old = self.journaled.get(t + j)
                if old is not None and old.demo_sets != config:
                    raise ConfigError(f"the journal's trial {t + j} chose {old.demo_sets} but the sampler now "
                                      f"chooses {config} (another Optuna version?): use a new run_dir")
            # the round's trials together; each is kept (and journaled) as it finishes, so a stop keeps it
            scores = in_order(self.job, self.parallel, self.score, [(t + j, c) for j, c in enumerate(configs)],
                              "dspex-trial")
            for trial, score in zip(asked, scores):  # told in trial order: the sampler's next round is the same
                study.tell(trial, score)
            t += len(asked)

    def score(self, item: tuple[int, dict[str, int]]) -> float:
        """Trial ``number``'s valset mean (the journal's when it has it; a configuration is scored once)."""
        number, config = item
        entry = self.journaled.get(number)
        if entry is None:
            rows = self.board.score(self.program(config), self.key(config), range(len(self.valset)),
                                    phase="trials", concurrency=self.per_eval)
            entry = OptunaTrial(number, config, mean(rows))
            self.job.record(entry)
        with self._lock:
            self.trials[number] = entry
        self.job.progress("trials", number, entry.score,
                          0.2 + 0.8 * len(self.trials) / self.opt.num_candidate_programs)
        return entry.score

    def key(self, config: dict[str, int]) -> str:
        return "_".join(str(config[name]) for name in self.names)

    def program(self, config: dict[str, int]) -> Module:
        """The student with each predictor's demos from its chosen set."""
        program = edited(self.student, demos={name: self.sets[config[name]][name] for name in self.names})
        for predictor in program.predictors():
            predictor.demos = [Demo(d) for d in predictor.demos]
        program._compiled = True
        return program

    def describe(self, config: dict[str, int]) -> str:
        return "; ".join(f"{name}: demo set {config[name]} ({self.plan[config[name]].describe()})"
                         for name in self.names)

    def finish(self) -> Module:
        """The best trial's program (else the student's copy), with the report."""
        best = max(self.trials.values(), key=lambda e: (e.score, -e.trial)) if self.trials else None
        compiled = self.program(best.demo_sets) if best is not None else self.student.reset_copy()
        candidates = [CandidateScore(n, self.describe(e.demo_sets), e.score, 0, trials=1)
                      for n, e in sorted(self.trials.items())]
        scored = {self.key(e.demo_sets) for e in self.trials.values()}  # each configuration is scored once
        return self.job.report(compiled, best=best.score if best is not None else None, candidates=candidates,
                               metric_calls=len(scored) * len(self.valset))


__all__ = ["BootstrapFewShotWithOptuna", "param_name"]
