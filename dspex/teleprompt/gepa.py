"""GEPA: reflective evolution of instructions over a Pareto front of per-example scores.

A candidate maps each predictor to its instruction; candidate 0 is the student's own. Each proposal
samples a parent from the per-validation-example Pareto fronts (dominated candidates removed, the rest
weighted by how many examples they win), picks the parent's next predictor round robin, runs the parent
on a ``reflection_minibatch_size`` minibatch of the trainset (a perfect minibatch is skipped), and shows
the reflection LM that predictor's inputs, answers and the metric's feedback. The child it writes is kept
only if its minibatch sum beats the parent's, and only then scored on the whole valset. A merge
(``use_merge``) combines two Pareto candidates that share an ancestor, each predictor from the side that
changed it, and is kept if it does at least as well as the better parent on a small stratified subsample.

Proposals are planned in rounds of ``ROUND`` from the pool as it stands at the round's start, with every
random draw made in a fixed order, so the result depends on the seed and not on ``parallel_trials``
(how many of a round's proposals run at once). (candidate, example) scores are kept on a score board:
nothing is scored twice and ``metric_calls`` counts every pair scored. The journal keeps every row and
every reflection, so a resumed compile replays to the same program without asking again.

Concurrency: up to ``parallel_trials`` evaluations at once, each with up to ``max_concurrency`` calls in
flight (as one ``Evaluate``); together they share the LM client's limits (``max_in_flight``, rate, breaker).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from ..errors import AdapterParseError, ConfigError
from ..evaluate.metric_call import MetricPlace, bind_metric
from ..journal import PoolCandidate, ProposalOutcome, Reflection
from ..primitives import Example
from ..programs import Module
from ..programs.settings import resolve_lm
from . import pareto
from .base import Teleprompter
from .candidates import ScoreBoard, in_order, digest, edited, instructions_of
from .job import DEFAULT_PARALLEL, CandidateScore, CompileJob
from .proposer import ProposalRejected, checked_instruction, reflect, reflective_dataset
from .validate import check_student, check_trainset, example_digest, structure

AUTO_CANDIDATES = {"light": 6, "medium": 12, "heavy": 18}
COMPONENT_SELECTORS = ("round_robin", "all")
ALL = "*"  # a proposal's component when component_selector="all": every predictor is reflected on
ROUND = 8  # proposals planned together (the most that can be in flight at once)
MERGE_SUBSAMPLE = 5


def auto_budget(num_preds: int, num_candidates: int, valset_size: int, minibatch_size: int = 35,
                full_eval_steps: int = 5) -> int:
    """The metric calls ``auto`` stands for, as DSPy sizes them (a MIPROv2-like run of the same size)."""
    trials = int(max(2 * (num_preds * 2) * math.log2(num_candidates), 1.5 * num_candidates))
    total = valset_size + num_candidates * 5 + trials * minibatch_size
    if trials == 0:
        return total
    return total + ((trials + 1) // full_eval_steps + 1 + (1 if trials < full_eval_steps else 0)) * valset_size


@dataclass(frozen=True)
class Proposal:
    """One slot of a round: a reflection on ``parent``'s ``component`` over ``batch`` (train indices), or
    a merge of ``parents`` (sharing ``ancestor``) checked on ``batch`` (val indices)."""

    round: int
    slot: int
    kind: str  # "reflect" | "merge"
    parents: tuple[int, ...]
    component: str
    batch: tuple[int, ...]
    merged: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class GEPAResult:
    """``track_stats=True``: the search as DSPy's ``detailed_results`` gives it (candidates in the order they
    joined the pool, each with its parents and valset scores)."""

    candidates: list[dict[str, str]]
    parents: list[list[int]]
    val_aggregate_scores: list[float]
    val_subscores: list[list[float]]
    best_idx: int
    best_candidate: dict[str, str]
    total_metric_calls: int
    seed: int
    log_dir: str | None = None

    @property
    def num_candidates(self) -> int:
        return len(self.candidates)

    @property
    def highest_score_achieved_per_val_task(self) -> list[float]:
        return [max(column) for column in zip(*self.val_subscores)] if self.val_subscores else []


@dataclass(frozen=True)
class Outcome:
    proposal: Proposal
    child: dict[str, str] | None  # None: nothing to keep
    note: str


class GEPA(Teleprompter):
    """DSPy's GEPA: instructions evolved by reflection on the metric's feedback, parents drawn from the
    per-example Pareto front, children kept when they beat their parent on a minibatch (see the module's
    doc). Set exactly one budget: ``auto`` ("light", "medium", "heavy"), ``max_metric_calls`` or
    ``max_full_evals``. ``reflection_lm`` writes the new instructions (default: the student's LM)."""

    journal_entries = (PoolCandidate, Reflection, ProposalOutcome)

    def __init__(self, metric: Callable, reflection_lm: Any = None, auto: str | None = None,
                 max_metric_calls: int | None = None, max_full_evals: int | None = None,
                 reflection_minibatch_size: int = 3, candidate_selection_strategy: str = "pareto",
                 use_merge: bool = True, max_merge_invocations: int = 5, seed: int = 0,
                 skip_perfect_score: bool = True, perfect_score: float = 1.0,
                 add_format_failure_as_feedback: bool = True, track_stats: bool = False,
                 log_dir: str | None = None, instruction_proposer: Callable | None = None,
                 component_selector: str = "round_robin") -> None:
        given = [name for name, v in (("auto", auto), ("max_metric_calls", max_metric_calls),
                                      ("max_full_evals", max_full_evals)) if v is not None]
        if len(given) != 1:
            raise ConfigError("set exactly one of auto= ('light', 'medium', 'heavy'), max_metric_calls= or "
                              f"max_full_evals= (got {', '.join(given) or 'none'})")
        if auto is not None and auto not in AUTO_CANDIDATES:
            raise ConfigError(f"auto must be one of {', '.join(map(repr, AUTO_CANDIDATES))}, got {auto!r}")
        for label, value in (("max_metric_calls", max_metric_calls), ("max_full_evals", max_full_evals),
                             ("reflection_minibatch_size", reflection_minibatch_size),
                             ("max_merge_invocations", max_merge_invocations + 1)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ConfigError(f"{label} must be a positive int, got {value!r}")
        if candidate_selection_strategy not in ("pareto", "current_best"):
            raise ConfigError(f"candidate_selection_strategy must be 'pareto' or 'current_best', "
                              f"got {candidate_selection_strategy!r}")
        if component_selector not in COMPONENT_SELECTORS:
            raise ConfigError(f"component_selector must be one of {', '.join(map(repr, COMPONENT_SELECTORS))}, got "
                              f"{component_selector!r} (a callable selector needs gepa's engine state, which dspex's "
                              "journaled engine does not expose)")
        if instruction_proposer is not None and not callable(instruction_proposer):
            raise ConfigError("instruction_proposer must be callable as proposer(candidate, reflective_dataset, "
                              f"components_to_update) -> {{component: instruction}}, got {instruction_proposer!r}")
        # DSPy's GEPA metric form (gold, pred, trace, pred_name, pred_trace) or an Evaluate-style metric; returning
        # a number or an object with .score and .feedback
        self.metric = bind_metric(metric, MetricPlace.FEEDBACK, "GEPA")
        self.reflection_lm, self.auto = reflection_lm, auto
        self.max_metric_calls, self.max_full_evals = max_metric_calls, max_full_evals
        self.reflection_minibatch_size, self.strategy = reflection_minibatch_size, candidate_selection_strategy
        self.use_merge, self.max_merge_invocations, self.seed = use_merge, max_merge_invocations, seed
        self.skip_perfect_score, self.perfect_score = skip_perfect_score, perfect_score
        self.add_format_failure_as_feedback, self.track_stats = add_format_failure_as_feedback, track_stats
        self.log_dir, self.instruction_proposer = log_dir, instruction_proposer
        self.component_selector = component_selector

    def budget(self, num_preds: int, train: int, val: int) -> int:
        """The metric calls this compile may make; ConfigError when not even one proposal fits."""
        if self.auto is not None:
            calls = auto_budget(num_preds, AUTO_CANDIDATES[self.auto], val)
        elif self.max_full_evals is not None:
            calls = self.max_full_evals * (train + val)
        else:
            calls = self.max_metric_calls  # type: ignore[assignment]
        floor = val + 3 * (self.reflection_minibatch_size + val)
        if calls < floor:
            raise ConfigError(f"a budget of {calls} metric calls cannot hold even one proposal: it needs about {floor} "
                              f"(the seed on the {val} validation examples, then parent and child minibatches of "
                              f"{self.reflection_minibatch_size} and a full score); raise max_metric_calls / "
                              "max_full_evals or use a smaller valset")
        return calls

    def compile(self, student: Module, *, trainset: Sequence[Example], teacher: Module | None = None,
                valset: Sequence[Example] | None = None, **job_options: Any) -> Module:
        """``valset`` defaults to the trainset (as DSPy's GEPA); a ``teacher`` is refused (as there)."""
        if teacher is not None:
            raise ConfigError("GEPA takes no teacher: it evolves the student's own instructions; drop teacher=")
        student = check_student(student)
        trainset = check_trainset(trainset, student)
        valset = check_trainset(valset, student, "valset") if valset is not None else list(trainset)
        names = [name for name, _ in student.named_predictors()]
        budget = self.budget(len(names), len(trainset), len(valset))
        settings = {"budget": budget, "mb": self.reflection_minibatch_size, "strategy": self.strategy,
                    "merge": self.use_merge, "merges": self.max_merge_invocations, "skip": self.skip_perfect_score,
                    "perfect": self.perfect_score}
        # later settings join the fingerprint only when they are not at their default, so a journal written
        # before they existed still resumes (tests/dspex/test_journal_compat.py)
        for key, value, default in (("format_feedback", self.add_format_failure_as_feedback, True),
                                    ("selector", self.component_selector, "round_robin"),
                                    ("proposer", _qualname(self.instruction_proposer), None)):
            if value != default:
                settings[key] = value
        if self.log_dir is not None:  # DSPy's name for the run directory
            if job_options.get("run_dir") not in (None, self.log_dir):
                raise ConfigError("GEPA(log_dir=...) and compile(run_dir=...) name two run directories: pass one")
            job_options["run_dir"] = self.log_dir
        lm = self.reflection_lm if self.reflection_lm is not None else resolve_lm(
            student.predictors()[0].lm, "GEPA's reflection LM (pass reflection_lm=)")
        job = self.job({"student": structure(student), "trainset": example_digest(trainset),
                        "valset": example_digest(valset), "settings": settings}, **job_options)
        evolution = _Evolution(self, job, student, trainset, valset, lm, names, budget)
        with job:
            evolution.run()
        best = evolution.best()
        scores = evolution.averages()
        program = edited(student, evolution.candidates[best]) if best is not None else student.deepcopy()
        if self.track_stats:
            program.detailed_results = evolution.detailed_results(job.run_dir)
        return job.report(program, best=scores[best] if best is not None else None,
                          baseline=scores[0] if scores else None, candidates=evolution.report(),
                          metric_calls=evolution.metric_calls)


class _Evolution:
    """One GEPA compile's state: the candidate pool, its ancestry, scores and random draws."""

    def __init__(self, opt: GEPA, job: CompileJob, student: Module, trainset: list[Example], valset: list[Example],
                 lm: Any, names: list[str], budget: int) -> None:
        self.opt, self.job, self.student, self.trainset, self.valset = opt, job, student, trainset, valset
        self.lm, self.names, self.budget = lm, names, budget
        self.parallel = min(job.parallel_trials or DEFAULT_PARALLEL, ROUND)
        self.per_eval = job.max_concurrency  # per evaluation, as for Evaluate; the LM client's max_in_flight caps the sum
        self.train = ScoreBoard(job, opt.metric, trainset, "gepa-train")
        self.val = ScoreBoard(job, opt.metric, valset, "gepa-val")
        self.rng = random.Random(opt.seed)
        self.candidates: list[dict[str, str]] = []
        self.parents: list[tuple[int, ...]] = []
        self.origins: list[str] = []
        self.val_scores: list[list[float]] = []
        self.next_component: list[int] = []
        self.queue: list[int] = []
        self.merges_due = self.merges_done = 0
        self.tried_merges: set[tuple] = set()
        self.reflections = {(e.round, e.slot, e.component): e for e in job.journaled(Reflection)}

    @property
    def metric_calls(self) -> int:
        return self.train.metric_calls + self.val.metric_calls

    def run(self) -> None:
        """Rounds until the budget is used, two rounds learn nothing, or (``skip_perfect_score``) a candidate
        scores ``perfect_score`` on every validation example: none can do better, so the rest of the budget
        would buy nothing (DSPy spends it). A stop (budget, Ctrl-C, the journal) goes up to the job's ``with``
        block."""
        self.add(instructions_of(self.student), (), "the student's own instructions")
        idle, round_ = 0, 0
        while idle < 2:
            if self.opt.skip_perfect_score and any(min(scores) >= self.opt.perfect_score
                                                   for scores in self.val_scores):
                break
            proposals = self.plan(round_)
            if not proposals:
                break
            before = self.metric_calls
            outcomes = self.map(self.execute, proposals)
            if not self.keep(outcomes) and self.metric_calls == before:
                idle += 1  # nothing left to learn from (every minibatch perfect and already scored)
            else:
                idle = 0
            round_ += 1

    # --- planning (sequential: every random draw in a fixed order) ----------------------------------

    def plan(self, round_: int) -> list[Proposal]:
        room, mb = self.budget - self.metric_calls, min(self.opt.reflection_minibatch_size, len(self.trainset))
        proposals: list[Proposal] = []
        if self.opt.use_merge and self.merges_due > 0 and self.merges_done < self.opt.max_merge_invocations:
            merge = self.find_merge(round_)
            if merge is not None and room >= len(merge.batch):
                proposals.append(merge)
                room -= len(merge.batch)
                self.merges_due -= 1
                self.merges_done += 1
        while len(proposals) < ROUND and room >= 2 * mb:
            parent = self.select()
            if self.opt.component_selector == "all":
                component = ALL
            else:
                component = self.names[self.next_component[parent] % len(self.names)]
                self.next_component[parent] += 1
            proposals.append(Proposal(round_, len(proposals), "reflect", (parent,), component, self.next_batch(mb)))
            room -= 2 * mb
        return proposals

    def select(self) -> int:
        averages = self.averages()
        if self.opt.strategy == "current_best" or len(self.candidates) == 1:
            return max(range(len(averages)), key=lambda c: (averages[c], -c))
        return pareto.select(pareto.front_wins(self.val_scores), self.rng)

    def next_batch(self, size: int) -> tuple[int, ...]:
        """The next minibatch of training indices (epochs of seeded shuffles, as GEPA samples them)."""
        while len(self.queue) < size:
            order = list(range(len(self.trainset)))
            self.rng.shuffle(order)
            self.queue.extend(order)
        batch, self.queue = self.queue[:size], self.queue[size:]
        return tuple(batch)

    def ancestors(self, c: int) -> set[int]:
        seen, todo = set(), list(self.parents[c])
        while todo:
            a = todo.pop()
            if a not in seen:
                seen.add(a)
                todo.extend(self.parents[a])
        return seen

    def find_merge(self, round_: int) -> Proposal | None:
        """Two Pareto candidates sharing an ancestor, each predictor taken from the side that changed it."""
        front = sorted(pareto.front_wins(self.val_scores))
        pairs = [(i, j) for n, i in enumerate(front) for j in front[n + 1:]]
        self.rng.shuffle(pairs)
        averages = self.averages()
        known = {digest(c) for c in self.candidates}
        for i, j in pairs:
            if i in self.ancestors(j) or j in self.ancestors(i):
                continue
            for a in sorted(self.ancestors(i) & self.ancestors(j), reverse=True):
                if (i, j, a) in self.tried_merges:
                    continue
                ci, cj, ca = self.candidates[i], self.candidates[j], self.candidates[a]
                useful = any((ci[n] == ca[n]) != (cj[n] == ca[n]) for n in self.names)
                merged = {n: (cj[n] if ci[n] == ca[n] else ci[n] if cj[n] == ca[n]
                              else (ci[n] if averages[i] >= averages[j] else cj[n])) for n in self.names}
                if not useful or digest(merged) in known:
                    continue
                self.tried_merges.add((i, j, a))
                return Proposal(round_, 0, "merge", (i, j), "", self.subsample(i, j), tuple(merged.items()))
        return None

    def subsample(self, i: int, j: int) -> tuple[int, ...]:
        """Validation examples where i wins, where j wins, and ties, taken in turn (seeded)."""
        si, sj = self.val_scores[i], self.val_scores[j]
        buckets = [[e for e in range(len(si)) if si[e] > sj[e]], [e for e in range(len(si)) if sj[e] > si[e]],
                   [e for e in range(len(si)) if si[e] == sj[e]]]
        for bucket in buckets:
            self.rng.shuffle(bucket)
        chosen: list[int] = []
        while len(chosen) < min(MERGE_SUBSAMPLE, len(si)):
            for bucket in buckets:
                if bucket and len(chosen) < MERGE_SUBSAMPLE:
                    chosen.append(bucket.pop())
        return tuple(sorted(chosen))

    # --- executing (concurrent) ----------------------------------------------------------------------

    def execute(self, p: Proposal) -> Outcome:
        if p.kind == "merge":
            return self.execute_merge(p)
        parent = self.candidates[p.parents[0]]
        rows = self.train.score(edited(self.student, parent), digest(parent), p.batch, phase="minibatch",
                                concurrency=self.per_eval)
        if self.opt.skip_perfect_score and all(r.score >= self.opt.perfect_score and r.error is None for r in rows):
            return Outcome(p, None, "the parent is perfect on the minibatch")
        child = dict(parent)
        for component in self.names if p.component == ALL else [p.component]:
            entry = self.reflections.get((p.round, p.slot, component))
            if entry is None:
                try:
                    text, error = self.job.charged(lambda: self.propose(parent, component, rows, p)), None
                except ProposalRejected as exc:
                    text, error = None, str(exc)
                entry = Reflection(p.round, p.slot, p.parents[0], component, text, error)
                self.job.record(entry)
            if entry.instruction is None:
                return Outcome(p, None, f"proposal skipped: {entry.error}")
            child[component] = entry.instruction
        child_rows = self.train.score(edited(self.student, child), digest(child), p.batch, phase="minibatch",
                                      concurrency=self.per_eval)
        before, after = sum(r.score for r in rows), sum(r.score for r in child_rows)
        if after > before:
            return Outcome(p, child, f"minibatch {after:g} > {before:g}")
        return Outcome(p, None, f"rejected: minibatch {after:g} <= {before:g}")

    def propose(self, parent: dict[str, str], component: str, rows: list, p: Proposal) -> str:
        """A new instruction for ``component``: the reflection LM's, or the user's ``instruction_proposer``."""
        if not self.opt.add_format_failure_as_feedback:  # DSPy's default: a parse failure is not shown
            rows = [r for r in rows if not isinstance(r.error, AdapterParseError)]
            if not rows:
                raise ProposalRejected("every minibatch example failed to parse (add_format_failure_as_feedback=True "
                                       "shows those failures to the reflection)")
        rollout = p.round * ROUND + p.slot + (self.names.index(component) * 1_000 if p.component == ALL else 0)
        if self.opt.instruction_proposer is None:
            return reflect(self.lm, parent[component], rows, component, rollout=rollout)
        proposed = self.opt.instruction_proposer(dict(parent), {component: reflective_dataset(rows, component)},
                                                 [component])
        if not isinstance(proposed, dict) or not isinstance(proposed.get(component), str):
            raise ProposalRejected(f"instruction_proposer returned {proposed!r:.200}: it must return "
                                   f"{{{component!r}: <instruction>}}")
        return checked_instruction(proposed[component], parent[component])

    def execute_merge(self, p: Proposal) -> Outcome:
        merged = dict(p.merged)
        rows = self.val.score(edited(self.student, merged), digest(merged), p.batch, phase="merge",
                              concurrency=self.per_eval)
        got = sum(r.score for r in rows)
        need = max(sum(self.val_scores[c][e] for e in p.batch) for c in p.parents)
        if got >= need:
            return Outcome(p, merged, f"merge subsample {got:g} >= {need:g}")
        return Outcome(p, None, f"merge rejected: subsample {got:g} < {need:g}")

    def keep(self, outcomes: list[Outcome]) -> bool:
        """Score the round's accepted children on the valset (those the budget still holds, in order)."""
        accepted, room = [], self.budget - self.metric_calls
        known = {digest(c) for c in self.candidates}
        for outcome in outcomes:
            p = outcome.proposal
            self.job.record_once(ProposalOutcome(p.round, p.slot, p.kind, list(p.parents), p.component, outcome.note),
                                 "round", "slot")
            if outcome.child is None or digest(outcome.child) in known:
                continue  # nothing kept, or a child another proposal of the round (or an earlier one) made already
            cost = len(self.val.missing(digest(outcome.child), range(len(self.valset))))
            if cost > room:
                break
            room -= cost
            known.add(digest(outcome.child))
            accepted.append(outcome)
        self.map(lambda o: self.val.score(edited(self.student, o.child), digest(o.child), range(len(self.valset)),
                                           phase="full", concurrency=self.per_eval), accepted)
        for outcome in accepted:
            p = outcome.proposal
            origin = (f"merge of {p.parents[0]} and {p.parents[1]}" if p.kind == "merge"
                      else f"reflection on {'every component' if p.component == ALL else p.component} "
                           f"of {p.parents[0]}")
            self.add(outcome.child, p.parents, origin)  # type: ignore[arg-type]
            if p.kind == "reflect":
                self.merges_due += 1
        return bool(accepted)

    def add(self, instructions: dict[str, str], parents: tuple[int, ...], origin: str) -> None:
        key = digest(instructions)
        rows = self.val.score(edited(self.student, instructions), key, range(len(self.valset)), phase="full",
                              concurrency=self.job.max_concurrency)
        self.candidates.append(dict(instructions))
        self.parents.append(tuple(parents))
        self.origins.append(origin)
        self.val_scores.append([r.score for r in rows])
        self.next_component.append(0)
        score = sum(self.val_scores[-1]) / len(rows)
        self.job.record_once(PoolCandidate(len(self.candidates) - 1, dict(instructions), list(parents), origin, score),
                             "id")
        self.job.progress("candidates", len(self.candidates) - 1, score, min(1.0, self.metric_calls / self.budget),
                          parents=parents)

    # --- results -------------------------------------------------------------------------------------

    def map(self, fn: Callable, items: Sequence) -> list:
        return in_order(self.job, self.parallel, fn, items, "dspex-gepa")

    def averages(self) -> list[float]:
        return [sum(s) / len(s) for s in self.val_scores]

    def best(self) -> int | None:
        averages = self.averages()
        return max(range(len(averages)), key=lambda c: (averages[c], -c)) if averages else None

    def detailed_results(self, run_dir: Any) -> "GEPAResult":
        averages = self.averages()
        best = self.best() or 0
        return GEPAResult(candidates=[dict(c) for c in self.candidates], parents=[list(p) for p in self.parents],
                          val_aggregate_scores=averages, val_subscores=[list(s) for s in self.val_scores],
                          best_idx=best, best_candidate=dict(self.candidates[best]) if self.candidates else {},
                          total_metric_calls=self.metric_calls, seed=self.opt.seed,
                          log_dir=str(run_dir) if run_dir is not None else None)

    def report(self) -> list[CandidateScore]:
        return [CandidateScore(c, self.origins[c], score, 0, dict(self.candidates[c]), True, 0, self.parents[c])
                for c, score in enumerate(self.averages())]

def _qualname(fn: Any) -> str | None:
    """A callable's name in the journal's settings (a resumed compile must use the same proposer)."""
    return None if fn is None else f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', type(fn).__name__)}"


__all__ = ["GEPA", "GEPAResult", "auto_budget"]
