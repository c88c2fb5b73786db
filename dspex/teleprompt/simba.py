"""SIMBA: DSPy's Stochastic Introspective Mini-Batch Ascent.

A pool of programs starts with the student (its average is 0, as DSPy's: it is never scored on a mini-batch).
Each of ``max_steps`` steps draws the next ``bsize`` train examples (seeded epochs of shuffles) and runs
``num_candidates`` samples on each: sample ``m`` of an example runs a program drawn from the pool's best
(softmax over their mini-batch averages at ``temperature_for_sampling``) at temperature 1.0 and rollout
``m`` (with ``teacher_settings``, sample 0 runs the teacher LM). The examples whose samples scored most
apart (max-to-min gap, then max, then max-to-mean gap) come first; for each, in that order, a program drawn
from the pool at ``temperature_for_candidates`` (some of its demos dropped, more the fuller it is) becomes a
candidate by one of two strategies, drawn at random: append a demo (the best sample's predictor calls) or
append a rule (the prompt model contrasts the best and the worst sample and writes advice that is appended
to each predictor's instruction), until ``num_candidates + 1`` candidates are made. They are scored on the
step's mini-batch and join the pool; the best is the step's winner. At the end the student and up to
``num_candidates`` evenly spaced winners are scored on the whole trainset and the best is returned.

Unlike DSPy: a step's samples, rules and candidate scores run concurrently (a step's sample groups up to
``max_concurrency`` at once, its rules and candidate scores ``parallel_trials`` at once, default 4, each evaluation with up to
``max_concurrency`` calls in flight, together under the LM client's ``max_in_flight``); a program is scored on an example once (DSPy's cache does the same
for it); the demo-drop counts come from a second seeded generator (DSPy's is numpy's), so the main one
draws what DSPy's draws; ``trial_logs`` are keyed by step (with its batch and scores); and every step (the
batch and the programs sampled on it, each trajectory, each strategy's outcome with the prompt model's
rule, each candidate's scores) is journaled, so ``compile(..., run_dir=same)`` after a crash replays to the
same program without asking or scoring again.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, replace
from typing import Any, Callable, Mapping, Sequence

from ..errors import AdapterParseError, BudgetExceeded, ConfigError, LMError
from ..evaluate.metric_call import MetricPlace, bind_metric
from ..journal import SimbaBatch, SimbaFinal, SimbaProposal, SimbaScore, SimbaTrajectory
from ..primitives import Example
from ..programs import Module, Predict
from ..programs.settings import resolve_lm, setting
from .base import Teleprompter
from .candidates import ScoreBoard, ScoredProgram, edited, in_order, instructions_of
from .fewshot import Demo
from .job import DEFAULT_PARALLEL, CandidateScore, CompileJob, CompileStopped, fingerprint
from .proposer import ProposalRejected, describe_program
from .simba_utils import (Candidate, WriteRules, contrast, demo_drops, dumps, percentile, rank_buckets,
                          softmax_sample, spaced, top_programs, trajectory)
from .validate import check_student, check_trainset, example_digest, structure, tokens_per_call



class SIMBA(Teleprompter):
    """DSPy's SIMBA (see the module's doc). The program returned has ``candidate_programs`` (the programs
    scored at the end, best first, each ``{"score": mean, "program": ...}``) and ``trial_logs``."""

    journal_entries = (SimbaBatch, SimbaTrajectory, SimbaProposal, SimbaScore, SimbaFinal)

    def __init__(self, *, metric: Callable, bsize: int = 32, num_candidates: int = 6, max_steps: int = 8,
                 max_demos: int = 4, prompt_model: Any = None, teacher_settings: dict | None = None,
                 demo_input_field_maxlen: int = 100_000, num_threads: int | None = None,
                 temperature_for_sampling: float = 0.2, temperature_for_candidates: float = 0.2) -> None:
        bind_metric(metric, MetricPlace.EVALUATE, "SIMBA")  # ConfigError now for a metric it cannot call
        for label, value, least in (("bsize", bsize, 1), ("num_candidates", num_candidates, 1),
                                    ("max_steps", max_steps, 0), ("max_demos", max_demos, 0),
                                    ("demo_input_field_maxlen", demo_input_field_maxlen, 0)):
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise ConfigError(f"{label} must be an int >= {least}, got {value!r}")
        if num_threads is not None and (not isinstance(num_threads, int) or num_threads < 1):
            raise ConfigError(f"num_threads must be an int >= 1 or None, got {num_threads!r}")
        for label, value in (("temperature_for_sampling", temperature_for_sampling),
                             ("temperature_for_candidates", temperature_for_candidates)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ConfigError(f"{label} must be a number > 0 (a softmax temperature), got {value!r}")
        if teacher_settings is not None and not isinstance(teacher_settings, dict):
            raise ConfigError(f"teacher_settings must be a dict (e.g. {{'lm': teacher_lm}}), got {teacher_settings!r}")
        self.metric, self.bsize, self.num_candidates, self.max_steps = metric, bsize, num_candidates, max_steps
        self.max_demos, self.prompt_model, self.teacher_settings = max_demos, prompt_model, teacher_settings
        self.demo_input_field_maxlen, self.num_threads = demo_input_field_maxlen, num_threads
        self.temperature_for_sampling = float(temperature_for_sampling)
        self.temperature_for_candidates = float(temperature_for_candidates)
        self.strategies = ("demo", "rule") if max_demos > 0 else ("rule",)

    def compile(self, student: Module, *, trainset: Sequence[Example], seed: int = 0, **job_options: Any) -> Module:
        """The best program found (see the module's doc); ``job_options`` are the compile job's (run_dir,
        budget_usd / budget_tokens, max_concurrency, parallel_trials, ...)."""
        student = check_student(student)
        trainset = check_trainset(trainset, student)
        if len(trainset) < self.bsize:
            raise ConfigError(f"the trainset has {len(trainset)} examples, fewer than bsize={self.bsize}: pass more "
                              "examples or a smaller bsize")
        if self.num_threads is not None:
            job_options.setdefault("max_concurrency", self.num_threads)
        chosen = next((lm for lm in (self.prompt_model, setting("lm"), student.predictors()[0].lm) if lm is not None),
                      None)
        prompt_lm = resolve_lm(chosen, "SIMBA's prompt model (pass prompt_model=)")
        teacher = (self.teacher_settings or {}).get("lm")
        settings = {"bsize": self.bsize, "candidates": self.num_candidates, "steps": self.max_steps,
                    "demos": self.max_demos, "maxlen": self.demo_input_field_maxlen,
                    "teacher": str(getattr(teacher, "model", teacher)) if self.teacher_settings else None,
                    "temperatures": [self.temperature_for_sampling, self.temperature_for_candidates]}
        job = CompileJob(type(self).__name__, seed, fingerprint(student=structure(student), settings=settings,
                                                                trainset=example_digest(trainset)),
                         entries=self.journal_entries, **job_options)
        ascent = _Ascent(self, job, student, trainset, prompt_lm, seed)
        with job:
            per_call = tokens_per_call(student, trainset[0])
            k = self.num_candidates
            job.estimate(self.max_steps * (2 * k + 1) * self.bsize + (k + 1) * len(trainset), per_call)
            job.refuse_if_baseline_cannot_fit(self.bsize, per_call)
            ascent.run()
        return ascent.finish()


@dataclass(frozen=True)
class _Plan:
    """One bucket's candidate as drawn: its source program, the demos it drops and its strategy."""

    slot: int
    position: int  # in the batch
    source: int
    dropped: list[int]
    strategy: str
    bucket: list[SimbaTrajectory]  # the example's samples, best first


class _Ascent:
    """One SIMBA compile's state: the pool, its scores and the random draws, replayed from the journal."""

    def __init__(self, opt: SIMBA, job: CompileJob, student: Module, trainset: list[Example], prompt_lm: Any,
                 seed: int) -> None:
        self.opt, self.job, self.student, self.trainset, self.prompt_lm = opt, job, student, trainset, prompt_lm
        self.rng, self.counts_rng = random.Random(seed), random.Random(f"simba-demo-drops-{seed}")
        demos = {name: [dict(d.items()) for d in p.demos] for name, p in student.named_predictors()}
        self.pool, self.scores = [Candidate(instructions_of(student), demos)], [[]]
        self.origins, self.parents = ["the student"], [()]
        self.winners, self.won, self.picks, self.finals = [0], {}, [], {}  # won: winner -> its step
        self.pairs: set[tuple[str, int]] = set()  # (program, example) pairs scored: the report's metric_calls
        self.trial_logs: dict[int, dict] = {}
        self.board = ScoreBoard(job, opt.metric, trainset, "simba")
        self.batches = {e.step: e for e in job.journaled(SimbaBatch)}
        self.runs = {(e.step, e.sample, e.example): e for e in job.journaled(SimbaTrajectory)}
        self.proposals = {(e.step, e.slot): e for e in job.journaled(SimbaProposal)}
        self.scored = {(e.step, e.program): e for e in job.journaled(SimbaScore)}
        self.journaled_finals = {e.program: e for e in job.journaled(SimbaFinal)}
        self.parallel = job.parallel_trials or max(1, min(DEFAULT_PARALLEL, job.max_concurrency))
        self.per_eval = job.max_concurrency  # per evaluation, as for Evaluate; the LM client's max_in_flight caps the sum
        self._lock = threading.Lock()

    def average(self, p: int) -> float:
        return sum(self.scores[p]) / len(self.scores[p]) if self.scores[p] else 0.0

    def program(self, c: Candidate) -> Module:
        copy = edited(self.student, c.instructions)
        for name, predictor in copy.named_predictors():
            predictor.demos = [Demo(d) for d in c.demos[name]]
        return copy

    def check(self, what: str, journaled: Any, now: Any) -> None:
        if journaled != now:
            raise ConfigError(f"{self.job.run_dir}: the journal's {what} was {journaled!r:.200}, this compile's is "
                              f"{now!r:.200}; use another run_dir")

    # --- the steps -----------------------------------------------------------------------------------

    def run(self) -> None:
        """Every step, then the final scores; a stop (budget, Ctrl-C, the journal) goes up to the job."""
        order, cursor, size = list(range(len(self.trainset))), 0, self.opt.bsize
        self.rng.shuffle(order)
        for step in range(self.opt.max_steps):
            if cursor + size > len(order):
                self.rng.shuffle(order)
                cursor = 0
            batch, cursor = order[cursor:cursor + size], cursor + size
            self.step(step, batch)
            self.job.progress("steps", fraction=(step + 1) / (self.opt.max_steps + 1))
        self.score_finals()

    def step(self, step: int, batch: list[int]) -> None:
        k, averages = self.opt.num_candidates, [self.average(p) for p in range(len(self.pool))]
        top = top_programs(averages, k)
        chosen = [[softmax_sample(self.rng, top, averages, self.opt.temperature_for_sampling) for _ in batch]
                  for _ in range(k)]
        entry = SimbaBatch(step, batch, chosen)
        if step in self.batches:
            self.check(f"step {step}'s batch", self.batches[step], entry)
        else:
            self.job.record(entry)
        runs = self.sample(step, batch, chosen)
        everything = [r.score for row in runs for r in row]
        p10, p90 = percentile(everything, 10), percentile(everything, 90)
        log = self.trial_logs[step] = {"batch": batch, "baseline_score": sum(everything) / len(everything)}
        built = self.build(step, batch, runs, top, averages, p10, p90)
        first = len(self.pool)
        scores = in_order(self.job, self.parallel, lambda item: self.score_new(step, batch, first + item[0], item[1]),
                          list(enumerate(c for c, _ in built)), "dspex-simba-score")
        for (candidate, proposal), row in zip(built, scores):
            self.pool.append(candidate)
            self.scores.append(row)
            self.pairs.update((candidate.key, i) for i in batch)
            self.parents.append((proposal.source,))
            self.origins.append(f"step {step + 1}: a {proposal.strategy} for example {proposal.example} on program "
                                f"{proposal.source} ({proposal.note})")
        means = [sum(row) / len(row) for row in scores]
        log["candidate_scores"] = means
        if means:
            self.winners.append(first + means.index(max(means)))
            self.won[self.winners[-1]] = step
            log["best_score"] = max(means)

    def sample(self, step: int, batch: list[int], chosen: list[list[int]]) -> list[list[SimbaTrajectory]]:
        """Every sample's run on every example of the batch (those not journaled, by program and sample)."""
        groups: dict[tuple[int, int], list[int]] = {}
        unfinished: set[tuple[int, int]] = set()
        for m, row in enumerate(chosen):
            for pos, p in enumerate(row):
                groups.setdefault((m, p), []).append(pos)
                if (step, m, batch[pos]) not in self.runs:
                    unfinished.add((m, p))

        def run(item: tuple[tuple[int, int], list[int]]) -> None:
            # a group's whole evaluation, under a name fixed by the step alone: after a kill between its rows'
            # entries, its rows journal answers what was answered and only the rest is asked
            (m, p), positions = item
            result = self.job.evaluate(self.sampler(self.program(self.pool[p]), m),
                                       [self.trainset[batch[pos]] for pos in positions], self.opt.metric,
                                       phase="trajectories", name=f"sampled-{step}-{m}-{p}",
                                       concurrency=self.per_eval)
            if result.aborted:  # cut short (the budget): no trajectories
                raise CompileStopped("budget", f"a sample's evaluation stopped: {result.aborted}")
            for row in result.rows:
                example = batch[positions[row.index]]
                if (step, m, example) in self.runs:
                    continue  # journaled before the kill
                entry = trajectory(step, m, example, p, row)
                self.job.record(entry)
                with self._lock:
                    self.runs[(step, m, entry.example)] = entry

        # after the first step a step's samples are a dozen small groups: up to max_concurrency of them at
        # once, each at max_concurrency (the LM client's max_in_flight caps the sum; max_concurrency=1 still
        # runs one call at a time), where parallel_trials at a time left most of it idle behind the slowest
        todo = [item for item in groups.items() if item[0] in unfinished]
        in_order(self.job, max(self.parallel, self.job.max_concurrency), run, todo, "dspex-simba-sample")
        return [[self.runs[(step, m, i)] for i in batch] for m in range(len(chosen))]

    def sampler(self, program: Module, m: int) -> Module:
        """``program`` as sample ``m`` runs it: at temperature 1.0 and rollout ``m`` (sample 0 with the
        teacher's LM at its own temperature, when there are teacher_settings)."""
        teacher = self.opt.teacher_settings
        for predictor in program.predictors():
            if teacher and m == 0:  # as DSPy: empty settings are no teacher
                predictor.lm = teacher.get("lm") or predictor.lm
                predictor.config = {**predictor.config, "rollout": 0}
            else:
                predictor.config = {**predictor.config, "temperature": 1.0, "rollout": m}
        return program

    def build(self, step: int, batch: list[int], runs: list[list[SimbaTrajectory]], top: list[int],
              averages: list[float], p10: float, p90: float) -> list[tuple[Candidate, SimbaProposal]]:
        """Up to ``num_candidates + 1`` candidates, from the most variable examples on. Each is drawn as DSPy
        draws it, in bucket order; the rules of a round are asked together, and when some fail, more buckets
        are drawn for the places left (so the draws are those of DSPy's one-by-one loop)."""
        ranked = rank_buckets([[r.score for r in row] for row in runs])
        need, built, slot = self.opt.num_candidates + 1, [], 0
        while len(built) < need and slot < len(ranked):
            plans = []
            while len(built) + len(plans) < need and slot < len(ranked):
                position = ranked[slot]
                source = softmax_sample(self.rng, top, averages, self.opt.temperature_for_candidates)
                counts = [len(ds) for ds in self.pool[source].demos.values()]
                dropped = demo_drops(self.rng, self.counts_rng, counts, self.opt.max_demos)
                strategy = self.rng.choice(self.opt.strategies)
                bucket = sorted((row[position] for row in runs), key=lambda r: r.score, reverse=True)
                plans.append(_Plan(slot, position, source, dropped, strategy, bucket))
                slot += 1
            made = in_order(self.job, self.parallel, lambda plan: self.apply(step, batch, plan, p10, p90), plans,
                            "dspex-simba-rule")
            built.extend(item for item in made if item is not None)
        return built

    def apply(self, step: int, batch: list[int], plan: _Plan, p10: float, p90: float
              ) -> tuple[Candidate, SimbaProposal] | None:
        """The plan's candidate (None: its strategy failed), the rule read from the journal if it is there."""
        base = self.pool[plan.source].dropping(plan.dropped)
        good = plan.bucket[0]
        entry = self.proposals.get((step, plan.slot))
        if entry is None:
            entry = SimbaProposal(step, plan.slot, batch[plan.position], plan.source, plan.strategy, plan.dropped,
                                  None, True, "")
            if plan.strategy == "demo":
                note = "skipped: the best sample is no better than the batch's 10th percentile" \
                    if good.score <= p10 else "a demo from the best sample"
                entry = replace(entry, note=note)
            else:
                pair = contrast(plan.bucket, p10, p90)
                try:
                    advice = None if pair is None else self.job.charged(
                        lambda: self.ask(base, batch[plan.position], *pair))
                    note = "skipped: the samples differ too little" if pair is None else "a rule from the prompt model"
                    entry = replace(entry, advice=advice, note=note)
                except ProposalRejected as exc:
                    entry = replace(entry, built=False, note=str(exc))
            self.job.record(entry)
        else:
            self.check(f"step {step} candidate {plan.slot}",
                       (entry.example, entry.source, entry.strategy, entry.dropped),
                       (batch[plan.position], plan.source, plan.strategy, plan.dropped))
        if not entry.built:
            return None
        if plan.strategy == "demo" and good.score > p10:
            return base.with_demo(good, self.opt.demo_input_field_maxlen), entry
        return base.with_rules(entry.advice or {}), entry

    def ask(self, base: Candidate, example: int, good: SimbaTrajectory | None, bad: SimbaTrajectory | None
            ) -> dict[str, str]:
        """The prompt model's rule for each predictor of ``base``, from a better and a worse sample of train
        example ``example``; ProposalRejected when its answer cannot be used."""
        ex, names = self.trainset[example], list(base.instructions)

        def side(t: SimbaTrajectory | None) -> tuple[str, str, str]:
            if t is None:
                return "[]", '{"N/A": "not available"}', "N/A"
            calls = [{"module": s["predictor"], "inputs": s["inputs"], "outputs": s["outputs"]} for s in t.trace]
            return dumps(calls), dumps(t.outputs or {}), f"{t.score:g}" + (f" ({t.feedback})" if t.feedback else "")

        (bt, bo, br), (wt, wo, wr) = side(good), side(bad)
        predict = Predict(WriteRules, lm=self.prompt_lm)
        try:
            answer = predict(program=describe_program(self.program(base)),
                             program_inputs=dumps(dict(ex.inputs().items())), expected=dumps(dict(ex.labels().items())), worse_trajectory=wt, worse_outputs=wo,
                             worse_reward=wr, better_trajectory=bt, better_outputs=bo, better_reward=br,
                             module_names=", ".join(names))
        except AdapterParseError as exc:
            raise ProposalRejected(f"the prompt model's rule could not be parsed: {exc}") from None
        except BudgetExceeded:
            raise  # not a bad rule: the compile is out of budget (CompileJob.charged stops it)
        except LMError as exc:
            raise ProposalRejected(f"the prompt model failed: {type(exc).__name__}: {exc}") from None
        advice = answer.module_advice
        if not isinstance(advice, Mapping):
            raise ProposalRejected(f"the prompt model's module_advice is not a mapping: {advice!r:.200}")
        return {str(k): str(v).strip() for k, v in advice.items() if str(v).strip()}

    def score_new(self, step: int, batch: list[int], index: int, candidate: Candidate) -> list[float]:
        """The mini-batch scores of the candidate that becomes pool program ``index``."""
        entry = self.scored.get((step, index))
        if entry is not None:
            self.check(f"program {index}", entry.key, candidate.key)
            return list(entry.scores)
        rows = self.board.score(self.program(candidate), candidate.key, batch, phase="minibatch",
                                concurrency=self.per_eval)
        scores = [r.score for r in rows]
        self.job.record(SimbaScore(step, index, candidate.key, scores))
        return scores

    def score_finals(self) -> None:
        """The student and evenly spaced winners, scored on the whole trainset."""
        self.picks = [self.winners[i] for i in spaced(len(self.winners) - 1, self.opt.num_candidates + 1)]

        def one(p: int) -> None:
            candidate, entry = self.pool[p], self.journaled_finals.get(p)
            if entry is None:
                rows = self.board.score(self.program(candidate), candidate.key, range(len(self.trainset)),
                                        phase="full", concurrency=self.per_eval)
                entry = SimbaFinal(p, candidate.key, sum(r.score for r in rows) / len(rows))
                self.job.record(entry)
            self.check(f"program {p}", entry.key, candidate.key)
            with self._lock:
                self.finals[p] = entry.score
                self.pairs.update((candidate.key, i) for i in range(len(self.trainset)))
            self.job.progress("full", p, entry.score)

        in_order(self.job, self.parallel, one, self.picks, "dspex-simba-final")

    # --- the result ----------------------------------------------------------------------------------

    def finish(self) -> Module:
        """The best program scored on the trainset; stopped before that, the winner with the best mini-batch
        score (the student's copy when no step finished). DSPy's attributes and the report attached."""
        if self.finals:
            ranked = [(self.finals[p], p) for p in self.picks if p in self.finals]
        else:
            ranked = [(self.average(p), p) for p in self.winners[1:]]
        ranked.sort(key=lambda item: item[0], reverse=True)  # stable: the earliest on a tie
        best = ranked[0][1] if ranked else 0
        compiled = self.program(self.pool[best])
        compiled.simba_idx = best
        compiled.candidate_programs = []
        for score, p in ranked:
            program = self.program(self.pool[p])
            program.simba_idx = p
            compiled.candidate_programs.append(ScoredProgram(score, program))
        for p, score in self.finals.items():
            if p in self.won:
                self.trial_logs[self.won[p]]["train_score"] = score
        compiled.trial_logs = self.trial_logs
        report = [CandidateScore(p, self.origins[p], self.finals.get(p, self.average(p)), 0,
                                 dict(c.instructions), p in self.finals, 1 if self.scores[p] else 0, self.parents[p])
                  for p, c in enumerate(self.pool) if p in self.finals or self.scores[p]]
        return self.job.report(compiled, best=ranked[0][0] if ranked else None, baseline=self.finals.get(0),
                               candidates=report, metric_calls=len(self.pairs) + len(self.runs))


__all__ = ["SIMBA"]
