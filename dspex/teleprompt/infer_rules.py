"""InferRules: DSPy's rule induction on top of BootstrapFewShot.

1. Demos are bootstrapped exactly as :class:`~dspex.teleprompt.BootstrapFewShot` does (the same teacher
   runs, journal and resume).
2. Each of ``num_candidates`` candidates asks the LM, once per predictor, to induce ``num_rules``
   natural-language rules from worked examples of that predictor's task (the training examples reduced
   to its fields; for a predictor whose fields the data does not carry, its bootstrapped demos), at
   temperature 1.0 with a rollout id of its own, so the candidates differ. The rules are appended to the
   predictor's instructions. When the examples do not fit the LM's context window, half of them are
   dropped and it is asked again.
3. Each candidate is scored on the valset (DSPy's default: the second half of the trainset, the first
   half bootstrapping) and the best is returned (the earliest on a tie), with its demos.

Unlike DSPy: the candidates are made and scored ``parallel_trials`` at once (default 4, sharing
``max_concurrency``); an induction that cannot be used (an unparseable answer, a failing LM) is journaled
and its predictor keeps its instruction; and every induced rule set and every score is journaled, so
``compile(..., run_dir=same)`` replays to the identical program without asking again. A budget, Ctrl-C
or a refused journal write returns the best candidate scored so far (the bootstrapped program without
rules when none was).
"""

from __future__ import annotations

import inspect
import random
import threading
from typing import Any, Mapping, Sequence

from ..adapters.base import render_value
from ..errors import AdapterParseError, BudgetExceeded, ConfigError, ContextWindowExceeded, LMError
from ..journal import BootstrapBatch, BootstrapTrace, RuleInduction, ScoredCandidate
from ..primitives import Example
from ..programs import ChainOfThought, Module
from ..programs.settings import context, resolve_lm
from ..signature import InputField, OutputField, Signature
from .candidates import edited, in_order
from .fewshot import BootstrapFewShot
from .job import DEFAULT_PARALLEL, CandidateScore, CompileJob, CompileStopped
from .proposer import ProposalRejected
from .validate import check_student, check_trainset, example_digest, structure, tokens_per_call

BOOTSTRAP_KEYWORDS = tuple(k for k in inspect.signature(BootstrapFewShot).parameters if k != "teacher_settings")


class InduceRules(Signature):
    """Write rules for a task from worked examples of it."""

    examples_text: str = InputField(desc="worked examples of the task, each with its inputs and its outputs")
    natural_language_rules: str = OutputField(desc="the rules, one per line")


def rules_instruction(num_rules: int) -> str:
    """The rule writer's instruction, asking for ``num_rules`` rules."""
    return (f"Study the worked examples of a task below and write {num_rules} short rules, in plain language, that "
            "together say how to do this kind of task well. Each rule must be concrete enough to act on and say "
            "to which inputs it applies; do not repeat a rule in other words.")


def with_rules(instructions: str, rules: str) -> str:
    """A predictor's instructions with induced rules appended."""
    return f"{instructions}\n\nFollow these rules when you answer:\n{rules}"


def rule_examples(signature: Any, trainset: Sequence[Example], demos: Sequence[Mapping[str, Any]]) -> list[dict]:
    """The worked examples a predictor's rules are induced from: the training examples that carry at least
    one of its inputs and one of its outputs, reduced to its fields; when none does (a middle step of a
    program, whose fields are not in the data), its demos reduced the same way."""
    inputs, outputs = list(signature.input_fields), list(signature.output_fields)

    def reduced(record: Mapping[str, Any]) -> dict:
        return {k: record[k] for k in (*inputs, *outputs) if k in record}

    def shows(record: Mapping[str, Any]) -> bool:
        return any(k in record for k in inputs) and any(k in record for k in outputs)

    from_data = [reduced(dict(ex.items())) for ex in trainset if shows(dict(ex.items()))]
    return from_data or [reduced(d) for d in demos if shows(d)]


def format_examples(records: Sequence[Mapping[str, Any]], signature: Any) -> str:
    """The worked examples as the rule writer reads them."""
    blocks = []
    for n, record in enumerate(records, 1):
        ins = "\n".join(f"{k}: {render_value(record[k])}" for k in signature.input_fields if k in record)
        outs = "\n".join(f"{k}: {render_value(record[k])}" for k in signature.output_fields if k in record)
        blocks.append(f"Example {n}\nInputs:\n{ins}\nOutputs:\n{outs}")
    return "\n\n".join(blocks)


def program(base: Module, rules: Mapping[str, str]) -> Module:
    """A copy of ``base`` with ``rules`` (by predictor name) appended to those predictors' instructions."""
    own = {name: p.signature.instructions for name, p in base.named_predictors()}
    return edited(base, {name: with_rules(own[name], text) for name, text in rules.items()})


def rollout_for(rng: random.Random) -> int:
    """A rollout id for one induction (so each candidate's request is its own, in the cache too)."""
    return rng.randint(1, 10**9)


def induce(lm: Any, records: Sequence[Mapping[str, Any]], signature: Any, num_rules: int, rollout: int
           ) -> tuple[str, int]:
    """The rules the LM induces from ``records`` and how many of them it was shown (half dropped each time
    they do not fit its context window); ProposalRejected when no usable rules come back."""
    shown = list(records)
    if not shown:
        raise ProposalRejected("no worked example shows this predictor's fields")
    writer = InduceRules.with_instructions(rules_instruction(num_rules))
    while True:
        predict = ChainOfThought(writer, lm=lm, temperature=1.0, rollout=rollout)
        try:
            answer = predict(examples_text=format_examples(shown, signature))
        except ContextWindowExceeded:
            if len(shown) == 1:
                raise ProposalRejected("not even one worked example fits the LM's context window") from None
            shown = shown[:max(1, len(shown) // 2)]
            continue
        except AdapterParseError as exc:
            raise ProposalRejected(f"the LM's rules could not be parsed: {exc}") from None
        except BudgetExceeded:
            raise  # not a bad induction: the compile is out of budget (CompileJob.charged stops it)
        except LMError as exc:
            raise ProposalRejected(f"the LM failed: {type(exc).__name__}: {exc}") from None
        rules = str(answer.natural_language_rules).strip()
        if not rules:
            raise ProposalRejected("the LM wrote no rules")
        return rules, len(shown)


class InferRules(BootstrapFewShot):
    """DSPy's InferRules (see the module's doc): ``num_candidates`` rule sets of ``num_rules`` rules per
    predictor, each scored on the valset; ``num_threads`` is the job's ``max_concurrency``; the other
    keywords (``metric``, required, ``max_bootstrapped_demos``, ``max_labeled_demos``, ...) are
    BootstrapFewShot's. ``teacher_settings`` are the settings the teacher runs in, and the rule writer too:
    their ``"lm"`` writes the rules (by default each predictor's own LM writes its own)."""

    journal_entries = (BootstrapTrace, BootstrapBatch, RuleInduction, ScoredCandidate)

    def __init__(self, num_candidates: int = 10, num_rules: int = 10, num_threads: int | None = None,
                 teacher_settings: dict | None = None, **bootstrap_kwargs: Any) -> None:
        unknown = sorted(set(bootstrap_kwargs) - set(BOOTSTRAP_KEYWORDS))
        if unknown:
            raise ConfigError(f"InferRules does not take {', '.join(f'{k}=' for k in unknown)}; it takes "
                              f"num_candidates=, num_rules=, num_threads=, teacher_settings= and BootstrapFewShot's "
                              f"{', '.join(f'{k}=' for k in BOOTSTRAP_KEYWORDS)}")
        if teacher_settings is not None and not isinstance(teacher_settings, dict):
            raise ConfigError(f"teacher_settings must be a dict (e.g. {{'lm': teacher_lm}}), got {teacher_settings!r}")
        super().__init__(teacher_settings=teacher_settings, **bootstrap_kwargs)
        if self.metric is None:
            raise ConfigError("InferRules needs metric=: it bootstraps demos and scores each candidate with it")
        for label, value in (("num_candidates", num_candidates), ("num_rules", num_rules)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{label} must be an int >= 1, got {value!r}")
        if num_threads is not None and (not isinstance(num_threads, int) or isinstance(num_threads, bool)
                                        or num_threads < 1):
            raise ConfigError(f"num_threads must be an int >= 1 or None, got {num_threads!r}")
        self.num_candidates, self.num_rules, self.num_threads = num_candidates, num_rules, num_threads

    def settings(self) -> dict:
        teacher = self.teacher_settings.get("lm")
        return {**super().settings(), "candidates": self.num_candidates, "rules": self.num_rules,
                "writer": str(getattr(teacher, "model", teacher)) if teacher is not None else None}

    def compile(self, student: Module, *, teacher: Module | None = None, trainset: Sequence[Example],
                valset: Sequence[Example] | None = None, **job_options: Any) -> Module:
        """The best candidate by its valset score (see the module's doc); ``job_options`` are the compile
        job's (run_dir, budget_usd / budget_tokens, max_concurrency, parallel_trials, ...)."""
        student = check_student(student)
        trainset = check_trainset(trainset, student)
        if valset is None:  # as DSPy: the first half bootstraps and induces, the second half scores
            if len(trainset) < 2:
                raise ConfigError("InferRules without valset= needs at least 2 training examples to split; pass "
                                  "valset=")
            cut = len(trainset) // 2
            trainset, valset = trainset[:cut], trainset[cut:]
        valset = check_trainset(valset, student, "valset")
        if self.num_threads is not None:
            job_options.setdefault("max_concurrency", self.num_threads)
        job = self.job({"student": structure(student), "trainset": example_digest(trainset),
                        "valset": example_digest(valset), "settings": self.settings()}, **job_options)
        search = _Candidates(self, job, student, trainset, valset, teacher)
        with job:
            per_call = tokens_per_call(student, valset[0])
            job.estimate(len(trainset) + self.num_candidates * (len(search.names) + len(valset)), per_call)
            job.refuse_if_baseline_cannot_fit(len(valset), per_call)
            search.run()
        return search.finish()


class _Candidates:
    """One InferRules compile's state: the bootstrapped program, each candidate's rules and score."""

    def __init__(self, opt: InferRules, job: CompileJob, student: Module, trainset: list[Example],
                 valset: list[Example], teacher: Module | None) -> None:
        self.opt, self.job, self.student, self.teacher = opt, job, student, teacher
        self.trainset, self.valset = trainset, valset
        self.names = [name for name, _ in student.named_predictors()]
        self.base: Module | None = None  # the bootstrapped program, once built
        self.rules: dict[int, dict[str, str]] = {}  # candidate -> predictor -> its rules
        self.scores: dict[int, ScoredCandidate] = {}
        self.induced = {(e.candidate, e.predictor): e for e in job.journaled(RuleInduction)}
        self.scored = {e.id: e for e in job.journaled(ScoredCandidate)}
        self.parallel = job.parallel_trials or max(1, min(DEFAULT_PARALLEL, job.max_concurrency))
        self.per_eval = max(1, job.max_concurrency // self.parallel)
        self._lock = threading.Lock()

    def run(self) -> None:
        """Bootstrap, then the candidates in rounds of ``parallel``; a stop (budget, Ctrl-C, the journal)
        goes up to the job's ``with`` block."""
        base, _ = self.opt.compile_in(self.job, self.student, self.trainset, self.teacher)
        self.base = base
        self.job.progress("bootstrap", fraction=0.2)
        n = self.opt.num_candidates
        for start in range(0, n, self.parallel):
            in_order(self.job, self.parallel, lambda c: self.candidate(base, c),
                     list(range(start, min(n, start + self.parallel))), "dspex-rules")

    def candidate(self, base: Module, c: int) -> None:
        """Candidate ``c``: its rules per predictor (each asked or read from the journal), then its score."""
        rules = {}
        for name, predictor in base.named_predictors():
            entry = self.induction(c, name, predictor)
            if entry.rules is not None:
                rules[name] = entry.rules
        if not rules:  # no predictor got rules: the candidate is the bootstrapped program itself
            return
        entry = self.scored.get(c)
        if entry is None:
            result = self.job.evaluate(program(base, rules), self.valset, self.opt.metric, phase="candidates",
                                       name=f"rules-{c}", concurrency=self.per_eval)
            if result.aborted:  # cut short: no score
                raise CompileStopped("budget", f"candidate {c}'s evaluation stopped: {result.aborted}")
            entry = ScoredCandidate(c, f"candidate {c + 1}: rules for {', '.join(rules)}", result.mean,
                                    result.usage.requests, True)
            self.job.record(entry)
        with self._lock:
            self.rules[c], self.scores[c] = rules, entry
        self.job.progress("candidates", c, entry.score, 0.2 + 0.8 * len(self.scores) / self.opt.num_candidates)

    def induction(self, c: int, name: str, predictor: Any) -> RuleInduction:
        """Candidate ``c``'s rules for predictor ``name`` (the journal's, else asked and journaled)."""
        done = self.induced.get((c, name))
        if done is not None:
            return done
        records = rule_examples(predictor.signature, self.trainset, predictor.demos)
        owner = f"InferRules' rule writer for {name} (pass teacher_settings={{'lm': ...}})"
        lm = resolve_lm(self.opt.teacher_settings.get("lm") or predictor.lm, owner)
        rollout = rollout_for(random.Random(f"{self.opt.seed}:rules:{c}:{name}"))

        def ask() -> tuple[str, int]:
            with context(**self.opt.teacher_settings):  # as DSPy: the rule writer runs in the teacher's settings
                return induce(lm, records, predictor.signature, self.opt.num_rules, rollout)

        try:
            rules, shown = self.job.charged(ask)
            entry = RuleInduction(c, name, rules, shown, None)
        except ProposalRejected as exc:
            entry = RuleInduction(c, name, None, len(records), str(exc))
        self.job.record(entry)
        return entry

    def finish(self) -> Module:
        """The best candidate scored (else the bootstrapped program, else the student's copy), reported."""
        base = self.base if self.base is not None else self.student.reset_copy()  # scores: only once it is built
        best = max(self.scores.values(), key=lambda e: (e.score, -e.id)) if self.scores else None
        compiled = program(base, self.rules[best.id]) if best is not None else base
        candidates = []
        for c, entry in sorted(self.scores.items()):
            candidate = program(base, self.rules[c])
            instructions = {name: p.signature.instructions for name, p in candidate.named_predictors()}
            candidates.append(CandidateScore(c, entry.description, entry.score, entry.lm_calls, instructions))
        return self.job.report(compiled, best=best.score if best is not None else None, candidates=candidates,
                               metric_calls=len(self.scores) * len(self.valset))


__all__ = ["InferRules"]
