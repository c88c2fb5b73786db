"""MIPROv2: grounded instruction proposals and demo sets per predictor, chosen together by Bayesian search.

1. Demo sets, as random search builds them: zero-shot, labeled only, an unshuffled bootstrap, then
   shuffled bootstraps (``num_candidates`` in all).
2. Instructions: candidate 0 is each predictor's own; the others are proposed by the prompt model from a
   summary of the data, the program, a demo set and a random tip (temperature ``init_temperature``, a
   rollout id each). An unusable proposal is journaled and skipped.
3. Search: Optuna's TPE (seeded) over one categorical choice per predictor and variable (instruction,
   demo set). Trials are asked of the sampler in rounds of ``TRIAL_ROUND`` whatever ``parallel_trials``
   is, so the same seed gives the same program however many trials run at once. A trial scores its
   configuration on a fresh seeded minibatch of the valset; every ``minibatch_full_eval_steps`` trials
   the best-mean configuration not yet fully scored is scored on the whole valset and that score goes
   back to the sampler. The program returned is the best by full-valset score only.

Every step is journaled (demos, proposals, each row of each trial's minibatch, full scores); a resumed
compile replays the search against the journal, so the sampler and every random draw come out the same
and nothing finished is asked again.

Concurrency: up to ``parallel_trials`` evaluations at once, each with up to ``max_concurrency`` calls in
flight (as one ``Evaluate``); together they share the LM client's limits (``max_in_flight``, rate, breaker).
"""

from __future__ import annotations

import inspect
import math
import random
import warnings
from typing import Any, Callable, Sequence

from ..errors import AdapterParseError, ConfigError, LMError
from ..evaluate.metric_call import MetricPlace, bind_metric
from ..journal import BootstrapBatch, BootstrapTrace, DataSummary, FullScore, InstructionProposal, Trial
from ..primitives import Example
from ..programs import Module
from ..programs.settings import resolve_lm
from . import demo_sets
from .base import Teleprompter, need_optuna
from .candidates import ScoreBoard, in_order, edited, mean
from .fewshot import BootstrapFewShot
from .job import DEFAULT_PARALLEL, CandidateScore, CompileJob
from .proposer import GroundedProposer, ProposalRejected
from .validate import check_student, check_trainset, example_digest, structure, tokens_per_call

AUTO = {"light": {"n": 6, "val": 100}, "medium": {"n": 12, "val": 300}, "heavy": {"n": 18, "val": 1000}}
# its demo sets' bootstraps hand out 4x the examples still missing a pass: a quarter of the rounds of small
# evaluations, for a few more teacher calls (the same demos); measured on the two-rule task, 3.3 s -> 2.6 s
BOOTSTRAP_LOOKAHEAD = 4
TRIAL_ROUND = 8  # trials asked of the sampler together (the most that can be in flight at once)
COMPILE_OVERRIDES = ("num_trials", "minibatch", "minibatch_size", "minibatch_full_eval_steps", "max_bootstrapped_demos",
                     "max_labeled_demos", "seed", "num_candidates")  # DSPy takes these in compile() too


def trials_for(num_vars: int, num_candidates: int) -> int:
    """DSPy's sizing: ``max(2·M·log2 n, 1.5·n)`` for M search variables (an instruction and, unless
    zero-shot, a demo set per predictor) and n candidates."""
    return max(1, int(max(2 * num_vars * math.log2(max(num_candidates, 1)), 1.5 * num_candidates)))


class MIPROv2(Teleprompter):
    """DSPy's MIPROv2: instructions proposed from the data and demo sets bootstrapped per predictor, the
    pair chosen together by a seeded TPE search scored on minibatches, the best by full-valset score
    returned (see the module's doc). ``auto`` ("light", "medium", "heavy") sizes the search; with
    ``auto=None`` set ``num_candidates`` (and optionally ``num_trials``). ``prompt_model`` writes the
    proposals (default: the student's LM); ``task_model`` runs the student (default: its own)."""

    journal_entries = (BootstrapTrace, BootstrapBatch, DataSummary, InstructionProposal, Trial, FullScore)

    def __init__(self, metric: Callable, prompt_model: Any = None, task_model: Any = None, auto: str | None = "light",
                 num_candidates: int | None = None, num_trials: int | None = None, minibatch: bool = True,
                 minibatch_size: int = 35, minibatch_full_eval_steps: int = 5, max_bootstrapped_demos: int = 4,
                 max_labeled_demos: int = 4, seed: int = 9, init_temperature: float = 1.0,
                 metric_threshold: float | None = None) -> None:
        bind_metric(metric, MetricPlace.BOOTSTRAP, "MIPROv2")  # it bootstraps demos
        need_optuna("MIPROv2")
        if auto is not None and auto not in AUTO:
            raise ConfigError(f"auto must be one of {', '.join(map(repr, AUTO))} or None, got {auto!r}")
        if auto is not None and (num_candidates is not None or num_trials is not None):
            raise ConfigError(f"auto={auto!r} sizes num_candidates and num_trials itself; pass auto=None to set them")
        if auto is None and num_candidates is None:
            raise ConfigError("with auto=None, set num_candidates= (and optionally num_trials=)")
        for label, value, low in (("num_candidates", num_candidates, 1), ("num_trials", num_trials, 1),
                                  ("minibatch_size", minibatch_size, 1),
                                  ("minibatch_full_eval_steps", minibatch_full_eval_steps, 1),
                                  ("max_bootstrapped_demos", max_bootstrapped_demos, 0),
                                  ("max_labeled_demos", max_labeled_demos, 0)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < low):
                raise ConfigError(f"{label} must be an int >= {low}, got {value!r}")
        self.metric, self.prompt_model, self.task_model, self.auto = metric, prompt_model, task_model, auto
        self.num_candidates, self.num_trials = num_candidates, num_trials
        self.minibatch, self.minibatch_size, self.minibatch_full_eval_steps = (minibatch, minibatch_size,
                                                                               minibatch_full_eval_steps)
        self.max_bootstrapped_demos, self.max_labeled_demos = max_bootstrapped_demos, max_labeled_demos
        self.seed, self.init_temperature, self.metric_threshold = seed, init_temperature, metric_threshold

    def compile(self, student: Module, *, trainset: Sequence[Example], valset: Sequence[Example] | None = None,
                teacher: Module | None = None, **job_options: Any) -> Module:
        """``job_options`` are the compile job's (run_dir, budgets, max_concurrency, workers, parallel_trials);
        DSPy's habit of passing ``num_trials``, ``minibatch_size``, ... to compile works too."""
        overrides = {k: job_options.pop(k) for k in COMPILE_OVERRIDES if k in job_options}
        if overrides:
            settings = {k: getattr(self, k) for k in inspect.signature(MIPROv2).parameters}
            return MIPROv2(**{**settings, **overrides}).compile(student, trainset=trainset, valset=valset,
                                                                 teacher=teacher, **job_options)
        student = check_student(student)
        if self.task_model is not None:
            student = student.deepcopy().set_lm(self.task_model)
        trainset = check_trainset(trainset, student)
        if valset is None:  # as DSPy: the last 80% of the trainset scores, the rest proposes and bootstraps
            if len(trainset) < 2:
                raise ConfigError("MIPROv2 without valset= needs at least 2 training examples to split; pass valset=")
            cut = len(trainset) - max(1, int(len(trainset) * 0.8))
            trainset, valset = trainset[:max(1, cut)], trainset[max(1, cut):]
        valset = check_trainset(valset, student, "valset")
        n = self.num_candidates or AUTO[self.auto]["n"]  # type: ignore[index]
        if self.auto is not None and len(valset) > AUTO[self.auto]["val"]:
            valset = random.Random(self.seed).sample(valset, AUTO[self.auto]["val"])
        names = [name for name, _ in student.named_predictors()]
        zero_shot = self.max_bootstrapped_demos == 0 and self.max_labeled_demos == 0
        num_trials = self.num_trials or trials_for(len(names) * (1 if zero_shot else 2), n)
        settings = {"n": n, "trials": num_trials, "minibatch": self.minibatch, "size": self.minibatch_size,
                    "steps": self.minibatch_full_eval_steps, "boot": self.max_bootstrapped_demos,
                    "labeled": self.max_labeled_demos, "temperature": self.init_temperature,
                    "threshold": self.metric_threshold}
        prompt_lm = self.prompt_model if self.prompt_model is not None else resolve_lm(
            student.predictors()[0].lm, "MIPROv2's prompt model (pass prompt_model=)")
        job = self.job({"student": structure(student), "trainset": example_digest(trainset),
                        "valset": example_digest(valset), "settings": settings}, **job_options)
        search = _Search(self, job, student, trainset, valset, teacher, prompt_lm, n, num_trials, names)
        with job:
            per_call = tokens_per_call(student, valset[0])
            job.estimate(n * len(trainset) + num_trials * min(self.minibatch_size, len(valset)) + len(valset),
                         per_call)
            job.refuse_if_baseline_cannot_fit(len(valset), per_call)
            search.run()
        best = search.best()
        return job.report(search.program(best) if best is not None else student.deepcopy(),
                          best=search.full.get(search.key(best)) if best is not None else None,
                          baseline=search.full.get(search.key(search.baseline)), candidates=search.candidates(),
                          metric_calls=search.board.metric_calls)


class _Search:
    """One MIPROv2 compile's state: demo sets, instructions, the sampler and the scores."""

    def __init__(self, opt: MIPROv2, job: CompileJob, student: Module, trainset: list[Example],
                 valset: list[Example], teacher: Module | None, prompt_lm: Any, n: int, num_trials: int,
                 names: list[str]) -> None:
        self.opt, self.job, self.student, self.trainset, self.valset = opt, job, student, trainset, valset
        self.teacher, self.prompt_lm, self.n, self.num_trials, self.names = teacher, prompt_lm, n, num_trials, names
        self.parallel = min(job.parallel_trials or DEFAULT_PARALLEL, TRIAL_ROUND)
        self.per_eval = job.max_concurrency  # per evaluation, as for Evaluate; the LM client's max_in_flight caps the sum
        self.use_minibatch = opt.minibatch and len(valset) > opt.minibatch_size
        self.board = ScoreBoard(job, opt.metric, valset, "mipro")
        self.demo_sets: list[dict[str, list[dict]]] = []
        self.demo_names: list[str] = []
        self.instructions: dict[str, list[str]] = {}
        self.baseline: tuple = tuple((0, 0) for _ in names)
        self.full: dict[str, float] = {}
        self.batches: dict[str, list[float]] = {}
        self.trials: dict[str, int] = {}  # config key -> the trials that drew it (minibatch or whole valset)
        self.order: dict[str, tuple] = {}  # every configuration scored, in the order first seen

    # --- the steps ---------------------------------------------------------------------------------

    def run(self) -> None:
        """The three steps; a stop (budget, Ctrl-C, the journal) goes up to the job's ``with`` block."""
        self.build_demo_sets()
        self.propose_instructions()
        self.search()

    def build_demo_sets(self) -> None:
        opt = self.opt
        if opt.max_bootstrapped_demos == 0 and opt.max_labeled_demos == 0:
            self.demo_sets, self.demo_names = [{name: [] for name in self.names}], ["zero-shot"]
            return
        booter = BootstrapFewShot(opt.metric, opt.metric_threshold, opt.max_bootstrapped_demos, opt.max_labeled_demos,
                                  seed=opt.seed)
        booter.lookahead = BOOTSTRAP_LOOKAHEAD
        plan = demo_sets.plan(opt.seed, max(0, self.n - 3), opt.max_bootstrapped_demos)[:max(self.n, 3)]
        programs = self.map(lambda item: demo_sets.build(self.job, booter, self.student, self.teacher, self.trainset,
                                                         item), plan)
        self.demo_sets = [{name: [dict(d) for d in p.demos] for name, p in program.named_predictors()}
                          for program in programs]
        self.demo_names = [item.describe() for item in plan]
        self.job.progress("demos", fraction=0.1)

    def propose_instructions(self) -> None:
        job, proposer = self.job, GroundedProposer(self.prompt_lm, self.trainset, self.student, self.opt.seed,
                                                   self.opt.init_temperature)
        done = job.journaled(DataSummary)
        if done:
            summary = done[0].text
        else:
            try:
                summary = job.charged(proposer.describe_data)
            except (LMError, AdapterParseError) as exc:  # an aid to proposals: they go on without it
                summary = f"(no summary: {type(exc).__name__}: {str(exc)[:200]})"
            job.record(DataSummary(summary))
        proposed = {(e.predictor, e.index): e for e in job.journaled(InstructionProposal)}
        tasks = [(name, k) for name in self.names for k in range(1, self.n)]

        def one(task: tuple[str, int]) -> InstructionProposal:
            name, k = task
            if task in proposed:
                return proposed[task]
            demos = self.demo_sets[k % len(self.demo_sets)][name] or [dict(ex.items()) for ex in proposer.sample[:3]]
            try:
                text, error = job.charged(lambda: proposer.propose(name, k, demos, summary)), None
            except ProposalRejected as exc:
                text, error = None, str(exc)
            entry = InstructionProposal(name, k, proposer.tip(name, k), text, error)
            job.record(entry)
            return entry

        entries = self.map(one, tasks)
        for name, p in self.student.named_predictors():
            texts = [p.signature.instructions]
            for e in entries:
                if e.predictor == name and e.instruction is not None and e.instruction not in texts:
                    texts.append(e.instruction)
            self.instructions[name] = texts
        job.progress("proposals", fraction=0.2)

    def search(self) -> None:
        optuna = need_optuna("MIPROv2")
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # its per-trial INFO lines are ours to report
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # multivariate TPE
            sampler = optuna.samplers.TPESampler(seed=self.opt.seed, multivariate=True)
        study = optuna.create_study(direction="maximize", sampler=sampler)
        dists = self.distributions(optuna)
        journaled = {e.trial: e for e in self.job.journaled(Trial)}
        full_value = self.score_full(self.baseline)
        study.add_trial(optuna.trial.create_trial(params=self.params(self.baseline), distributions=dists,
                                                  value=full_value))
        t = 0
        while t < self.num_trials:
            asked = [study.ask(dists) for _ in range(min(TRIAL_ROUND, self.num_trials - t))]
            configs = [self.config(trial.params) for trial in asked]
            for j, config in enumerate(configs):
                old = journaled.get(t + j)
                if old is not None and [tuple(c) for c in old.config] != list(config):
                    raise ConfigError(f"the journal's trial {t + j} chose {old.config} but the sampler now "
                                      f"chooses {list(config)} (another Optuna version?): use a new run_dir")
            subsets = [self.minibatch(t + j) for j in range(len(configs))]
            scores = self.map(lambda pair: mean(self.board.score(self.program(pair[0]), self.key(pair[0]), pair[1],
                                                                  phase="trials", concurrency=self.per_eval)),
                               list(zip(configs, subsets)))
            chosen: list[tuple] = []  # configurations to score on the whole valset after this round
            for j, (trial, config, score) in enumerate(zip(asked, configs, scores)):
                number = t + j
                study.tell(trial, score)
                key = self.key(config)
                self.order.setdefault(key, config)
                self.trials[key] = self.trials.get(key, 0) + 1
                if not self.use_minibatch:
                    self.full[key] = score
                else:
                    self.batches.setdefault(key, []).append(score)
                if number not in journaled:
                    self.job.record(Trial(number, [list(c) for c in config], subsets[j], score))
                self.job.progress("trials", number, score if not self.use_minibatch else None,
                                  (number + 1) / self.num_trials * 0.8 + 0.2)
                if self.use_minibatch and ((number + 1) % self.opt.minibatch_full_eval_steps == 0
                                           or number + 1 == self.num_trials):
                    pick = self.best_unscored(exclude=chosen)
                    if pick is not None:
                        chosen.append(pick)
            # the round's full scores together (their choice does not depend on their scores), then to the sampler
            for config, value in zip(chosen, self.map(self.score_full, chosen)):
                study.add_trial(optuna.trial.create_trial(params=self.params(config), distributions=dists, value=value))
            t += len(asked)

    # --- scoring -----------------------------------------------------------------------------------

    def score_full(self, config: tuple) -> float:
        key = self.key(config)
        if key not in self.full:
            rows = self.board.score(self.program(config), key, range(len(self.valset)), phase="full",
                                    concurrency=self.job.max_concurrency)
            self.full[key] = mean(rows)
            self.order.setdefault(key, config)
            self.job.record_once(FullScore([list(c) for c in config], self.full[key]), "config")
            self.job.progress("full", None, self.full[key])
        return self.full[key]

    def best_unscored(self, exclude: Sequence[tuple] = ()) -> tuple | None:
        """The configuration with the best minibatch mean not yet scored on the whole valset (nor about to be)."""
        skip = {self.key(c) for c in exclude}
        waiting = [(mean_of(self.batches[k]), -i, k) for i, k in enumerate(self.order)
                   if k in self.batches and k not in self.full and k not in skip]
        return self.order[max(waiting)[2]] if waiting else None

    def minibatch(self, trial: int) -> list[int]:
        """Trial ``trial``'s minibatch: a function of the seed and the trial number alone."""
        if not self.use_minibatch:
            return list(range(len(self.valset)))
        return random.Random(f"{self.opt.seed}:minibatch:{trial}").sample(range(len(self.valset)),
                                                                           self.opt.minibatch_size)

    def best(self) -> tuple | None:
        if not self.full:
            return None
        keys = list(self.order)
        key = max(self.full, key=lambda k: (self.full[k], -keys.index(k)))
        return self.order[key]

    # --- configurations ----------------------------------------------------------------------------

    def map(self, fn: Callable, items: Sequence) -> list:
        return in_order(self.job, self.parallel, fn, items, "dspex-trial")

    def distributions(self, optuna: Any) -> dict:
        dists = {}
        for name in self.names:
            dists[f"{name}:instruction"] = optuna.distributions.CategoricalDistribution(
                list(range(len(self.instructions[name]))))
            dists[f"{name}:demos"] = optuna.distributions.CategoricalDistribution(list(range(len(self.demo_sets))))
        return dists

    def params(self, config: tuple) -> dict:
        out = {}
        for name, (i, d) in zip(self.names, config):
            out[f"{name}:instruction"], out[f"{name}:demos"] = i, d
        return out

    def config(self, params: dict) -> tuple:
        return tuple((int(params[f"{name}:instruction"]), int(params[f"{name}:demos"])) for name in self.names)

    def key(self, config: tuple) -> str:
        return "_".join(f"{i}.{d}" for i, d in config)

    def program(self, config: tuple) -> Module:
        return edited(self.student, {name: self.instructions[name][i] for name, (i, _) in zip(self.names, config)},
                      {name: self.demo_sets[d][name] for name, (_, d) in zip(self.names, config)})

    def candidates(self) -> list[CandidateScore]:
        out = []
        for cid, (key, config) in enumerate(self.order.items()):
            full = key in self.full
            score = self.full[key] if full else mean_of(self.batches.get(key, []))
            text = "; ".join(f"{name}: instruction {i}, demos {self.demo_names[d] if self.demo_names else d}"
                             for name, (i, d) in zip(self.names, config))
            out.append(CandidateScore(cid, text, score, 0, {name: self.instructions[name][i]
                                                            for name, (i, _) in zip(self.names, config)},
                                      full, self.trials.get(key, 0)))
        return out

def mean_of(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


__all__ = ["MIPROv2", "trials_for", "AUTO"]
