"""COPRO: DSPy's coordinate ascent over each predictor's instruction and output prefix.

A candidate for a predictor is a pair: an instruction and the prefix of its last output field. The prompt
model proposes ``breadth - 1`` pairs per predictor at ``init_temperature``; with the predictor's own pair
they make the first round. Predictor by predictor, each candidate is the program with that predictor's
pair swapped in (the others as they stand) scored on the trainset with the metric, and the predictor then
keeps its best pair. Each of the ``depth - 1`` further rounds shows the prompt model the pairs tried so
far, ranked by score, and asks for ``breadth`` new ones. (With one predictor a round scores only its new
pairs; with several, every pair so far, since the other predictors have moved.) The best program scored
is returned; the student is never changed.

Unlike DSPy: a round's candidates are scored together (``parallel_trials`` at once, default 4, each with up
to ``max_concurrency`` calls in flight, together under the LM client's ``max_in_flight``), each proposal is a call of its own (a rollout id each, so the cache tells them
apart) and one that cannot be used is journaled and skipped, a program already scored is not scored
again, and every proposal and score is journaled, so ``compile(..., run_dir=same)`` resumes without
asking the prompt model again or re-scoring, and gives the same program. ``results_best`` and
``results_latest`` are keyed by predictor name (DSPy keys them by ``id()`` of an internal copy of each
predictor, which no caller can look up), and ``results_latest`` holds each predictor's own latest scores.
"""

from __future__ import annotations

import statistics
import threading
from typing import Any, Callable, Mapping, Sequence

from ..errors import AdapterParseError, BudgetExceeded, ConfigError, LMError
from ..evaluate import Evaluate
from ..journal import CoproProposal, CoproScore
from ..primitives import Example
from ..programs import Module, Predict
from ..programs.settings import resolve_lm, setting
from ..signature import InputField, OutputField, Signature
from .base import Teleprompter
from .candidates import ScoredProgram, digest, in_order
from .job import DEFAULT_PARALLEL, CandidateScore, CompileJob, CompileStopped, percent
from .proposer import ProposalRejected, checked_instruction
from .validate import check_student, check_trainset, example_digest, structure, tokens_per_call

Pair = tuple[str, str]  # (instruction, prefix of the last output field)
Config = dict[str, Pair]  # each predictor's pair: one candidate program
TOP = 10  # results_best: statistics of each predictor's ten best scores (DSPy's)
TO_JOB = {"num_threads": "max_concurrency", "max_concurrency": "max_concurrency", "workers": "workers"}
DISPLAY_ONLY = ("display_progress", "progress", "display_table", "provide_traceback")  # no bearing on a score


class ProposeInstruction(Signature):
    """You write instructions for large language models. Given the instruction a task's prompt gives today,
    propose a better one, one that leads a capable model to do the task well, and the short text that will
    open the model's answer. Unusual ideas are welcome."""

    basic_instruction: str = InputField(desc="the instruction as it is today")
    proposed_instruction: str = OutputField(desc="the new instruction for the language model")
    proposed_prefix_for_output_field: str = OutputField(desc="the text that opens the answer and sets the model "
                                                             "on its way")


class ProposeFromAttempts(Signature):
    """You write instructions for large language models. Below are instructions already tried on a task,
    each with the text that opened the answer and the score it earned, from the lowest score to the highest
    (higher is better). Propose a new instruction, and its opening text, that should score higher than all of
    them. Unusual ideas are welcome."""

    attempted_instructions: str = InputField(desc="the attempts so far with their scores, the best last")
    proposed_instruction: str = OutputField(desc="the new instruction for the language model")
    proposed_prefix_for_output_field: str = OutputField(desc="the text that opens the answer and sets the model "
                                                             "on its way")


class COPRO(Teleprompter):
    """DSPy's COPRO (see the module's doc): ``breadth`` candidates per predictor and round (> 1: the
    current pair is one), ``depth`` rounds, proposals by ``prompt_model`` (default: the LM in force, else
    the student's) at ``init_temperature``. The program returned has ``total_calls`` (candidate evaluations,
    as DSPy counts them) and ``candidate_programs``; with ``track_stats``, ``results_best`` and
    ``results_latest`` too."""

    journal_entries = (CoproProposal, CoproScore)

    def __init__(self, prompt_model: Any = None, metric: Callable | None = None, breadth: int = 10, depth: int = 3,
                 init_temperature: float = 1.4, track_stats: bool = False, **_kwargs: Any) -> None:
        if not isinstance(breadth, int) or isinstance(breadth, bool) or breadth <= 1:
            raise ConfigError(f"breadth must be an int greater than 1 (the candidates per round, the current one "
                              f"among them), got {breadth!r}")
        if not isinstance(depth, int) or isinstance(depth, bool) or depth < 1:
            raise ConfigError(f"depth must be an int >= 1 (the rounds of proposals), got {depth!r}")
        self.metric, self.breadth, self.depth, self.init_temperature = metric, breadth, depth, init_temperature
        self.prompt_model, self.track_stats = prompt_model, track_stats

    def compile(self, student: Module, *, trainset: Sequence[Example], eval_kwargs: Mapping[str, Any] | None = None,
                **job_options: Any) -> Module:
        """The best program found (see the class's doc). ``eval_kwargs`` are DSPy's Evaluate keywords:
        ``num_threads`` / ``max_concurrency`` / ``workers`` become the job's, the display ones are accepted
        and have no effect; ``job_options`` are the compile job's (run_dir, budgets, parallel_trials, ...)."""
        student = check_student(student)
        trainset = check_trainset(trainset, student)
        job_options = self._job_options(eval_kwargs, trainset, job_options)
        chosen = next((lm for lm in (self.prompt_model, setting("lm"), student.predictors()[0].lm) if lm is not None),
                      None)
        prompt_lm = resolve_lm(chosen, "COPRO's prompt model (pass prompt_model=)")
        start = {name: pair_of(p) for name, p in student.named_predictors()}
        settings = {"breadth": self.breadth, "depth": self.depth, "temperature": self.init_temperature, "start": start}
        job = self.job({"student": structure(student), "trainset": example_digest(trainset), "settings": settings},
                       **job_options)
        search = _Search(self, job, student, trainset, prompt_lm, start)
        with job:
            per_call = tokens_per_call(student, trainset[0])
            job.estimate(self.depth * self.breadth * len(start) * (len(trainset) + 1), per_call)
            job.refuse_if_baseline_cannot_fit(len(trainset), per_call)
            search.run()
        return search.finish()

    def _job_options(self, eval_kwargs: Mapping[str, Any] | None, trainset: list[Example],
                     job_options: dict[str, Any]) -> dict[str, Any]:
        """The job's options with ``eval_kwargs`` mapped onto them. Evaluate checks them first, so an unknown
        name or a bad value is its ConfigError; one that would change how candidates are scored is refused."""
        kwargs = dict(eval_kwargs or {})
        Evaluate(**{"devset": trainset, "metric": self.metric, **kwargs})
        options = dict(job_options)
        for key, value in kwargs.items():
            if key in TO_JOB:
                options.setdefault(TO_JOB[key], value)
            elif key not in DISPLAY_ONLY:
                raise ConfigError(f"COPRO scores its candidates through the compile job, which does not take "
                                  f"{key}=; eval_kwargs may hold {', '.join(TO_JOB)} and the display options "
                                  f"({', '.join(DISPLAY_ONLY)})")
        return options


class _Search:
    """One COPRO compile's state: the pairs proposed and scored per predictor, replayed from the journal."""

    def __init__(self, opt: COPRO, job: CompileJob, student: Module, trainset: list[Example], prompt_lm: Any,
                 start: Config) -> None:
        self.opt, self.job, self.student, self.trainset, self.prompt_lm = opt, job, student, trainset, prompt_lm
        self.start, self.names = start, list(start)
        self.current: Config = {name: (clean(i), clean(p)) for name, (i, p) in start.items()}
        self.baseline = dict(self.current)
        self.tried: dict[str, list[Pair]] = {name: [] for name in self.names}  # every pair so far, in order
        self.latest: dict[str, list[Pair]] = {}
        # per predictor: pair -> (score, the program that first reached it, round), in the order first scored
        self.evaluated: dict[str, dict[Pair, tuple[float, Config, int]]] = {name: {} for name in self.names}
        self.scores: dict[str, float] = {}  # program key -> trainset mean: each program is scored once
        self.order: dict[str, tuple[Config, str]] = {}  # program key -> (program, description), first scored first
        self.total_calls, self.reached = 0, 0
        self.stats = {which: {name: {"depth": [], "max": [], "average": [], "min": [], "std": []}
                              for name in self.names} for which in ("best", "latest")}
        self.proposed = {(e.round, e.predictor, e.slot): e for e in job.journaled(CoproProposal)}
        self.scored = {(e.round, e.predictor, e.slot): e for e in job.journaled(CoproScore)}
        self.parallel = job.parallel_trials or max(1, min(DEFAULT_PARALLEL, job.max_concurrency))
        self.per_eval = job.max_concurrency  # per evaluation, as for Evaluate; the LM client's max_in_flight caps the sum
        self._lock = threading.Lock()

    # --- the rounds ----------------------------------------------------------------------------------

    def run(self) -> None:
        """Every round; a stop (budget, Ctrl-C, the journal) goes up to the job's ``with`` block."""
        first = self.propose(0)
        for name in self.names:  # as DSPy: the proposals, then the predictor's own pair
            self.tried[name] = self.latest[name] = [*first[name], self.current[name]]
        for d in range(self.opt.depth):
            self.reached = d
            for name in self.names:
                self.score_round(d, name, self.tried[name] if len(self.names) > 1 else self.latest[name])
            self.job.progress("rounds", fraction=(d + 1) / self.opt.depth)
            if d == self.opt.depth - 1:
                break
            for name in self.names:
                self.add_stats("best", name, d, [s for s, _, _ in self.ranked(name)][:TOP])
            new = self.propose(d + 1)
            for name in self.names:
                self.tried[name] = [*self.tried[name], *new[name]]
                self.latest[name] = new[name]

    def propose(self, rnd: int) -> dict[str, list[Pair]]:
        """Round ``rnd``'s proposals for every predictor, asked together (or read from the journal)."""
        count = self.opt.breadth - 1 if rnd == 0 else self.opt.breadth
        inputs = {name: ({"basic_instruction": self.start[name][0]} if rnd == 0
                         else {"attempted_instructions": self.attempts(name)}) for name in self.names}

        def one(task: tuple[str, int]) -> CoproProposal:
            name, slot = task
            done = self.proposed.get((rnd, name, slot))
            if done is not None:
                return done
            try:
                instruction, prefix = self.job.charged(lambda: self.ask(rnd, slot, inputs[name]))
                entry = CoproProposal(rnd, name, slot, instruction, prefix, None)
            except ProposalRejected as exc:
                entry = CoproProposal(rnd, name, slot, None, None, str(exc))
            self.job.record(entry)
            return entry

        entries = in_order(self.job, self.parallel, one, [(n, s) for n in self.names for s in range(count)],
                           "dspex-proposal")
        return {name: [(e.instruction, e.prefix or "") for e in entries if e.predictor == name and e.instruction]
                for name in self.names}

    def ask(self, rnd: int, slot: int, inputs: dict[str, str]) -> Pair:
        """One proposal; ProposalRejected when the prompt model's answer is not a usable instruction."""
        signature = ProposeInstruction if rnd == 0 else ProposeFromAttempts
        predict = Predict(signature, lm=self.prompt_lm, temperature=self.opt.init_temperature, rollout=slot + 1)
        try:
            answer = predict(**inputs)
        except AdapterParseError as exc:
            raise ProposalRejected(f"the prompt model's answer could not be parsed: {exc}") from None
        except BudgetExceeded:
            raise  # not a bad proposal: the compile is out of budget (CompileJob.charged stops it)
        except LMError as exc:
            raise ProposalRejected(f"the prompt model failed: {type(exc).__name__}: {exc}") from None
        return (checked_instruction(clean(answer.proposed_instruction), ""),
                clean(answer.proposed_prefix_for_output_field))

    def attempts(self, name: str) -> str:
        """The ``breadth`` best pairs tried for ``name``, listed from the lowest score to the highest."""
        best = self.ranked(name)[:self.opt.breadth]
        return "\n\n".join(f"Attempt {n} (score {percent(score)}):\ninstruction: {pair[0]}\nanswer prefix: {pair[1]}"
                           for n, (score, pair, _) in enumerate(reversed(best), 1))

    def ranked(self, name: str) -> list[tuple[float, Pair, int]]:
        """``name``'s pairs by score, best first (the first scored first on a tie)."""
        rows = [(score, pair, d) for pair, (score, _, d) in self.evaluated[name].items()]
        return sorted(rows, key=lambda row: row[0], reverse=True)

    # --- scoring -------------------------------------------------------------------------------------

    def score_round(self, d: int, name: str, pairs: list[Pair]) -> None:
        """Score ``name``'s candidates of round ``d`` (the programs not yet scored, together), then let the
        predictor keep its best pair. What finished before a stop is kept and journaled."""
        configs = [{**self.current, name: pair} for pair in pairs]
        todo: dict[str, Config] = {}
        for slot, config in enumerate(configs):
            entry, key = self.scored.get((d, name, slot)), self.key(config)
            if entry is not None:
                if entry.config != jsonable(config):
                    raise ConfigError(f"{self.job.run_dir}: the journal's round {d} candidate {slot} for {name} was "
                                      f"{entry.config}, this compile's is {jsonable(config)}; use another run_dir")
                self.scores.setdefault(key, entry.score)
            elif key not in self.scores:
                todo[key] = config
        latest: list[float] = []
        try:
            in_order(self.job, self.parallel, self.evaluate, list(todo.values()), "dspex-candidate")
        finally:
            for slot, (pair, config) in enumerate(zip(pairs, configs)):
                score = self.fold(d, name, slot, pair, config)
                if score is not None and slot >= len(pairs) - self.opt.breadth:
                    latest.append(score)
        self.add_stats("latest", name, d, latest)
        if self.evaluated[name]:
            self.current[name] = max(self.evaluated[name].items(), key=lambda item: item[1][0])[0]

    def evaluate(self, config: Config) -> None:
        result = self.job.evaluate(self.program(config), self.trainset, self.opt.metric, phase="candidates",
                                   name=f"copro-{self.key(config)}", concurrency=self.per_eval)
        if result.aborted:  # cut short (the budget): no score
            raise CompileStopped("budget", f"a candidate's evaluation stopped: {result.aborted}")
        with self._lock:
            self.scores[self.key(config)] = result.mean

    def fold(self, d: int, name: str, slot: int, pair: Pair, config: Config) -> float | None:
        """Slot ``slot``'s score (None: not scored) journaled and added to what ``name`` has tried."""
        key = self.key(config)
        if key not in self.scores:
            return None
        score = self.scores[key]
        if (d, name, slot) not in self.scored:
            self.job.record(CoproScore(d, name, slot, jsonable(config), score))
        self.total_calls += 1
        self.order.setdefault(key, (config, f"round {d + 1}, {name}: candidate {slot + 1}"))
        old = self.evaluated[name].get(pair)
        if old is None or score > old[0]:
            self.evaluated[name][pair] = (score, config, d)
        self.job.progress("candidates", len(self.order) - 1, score)
        return score

    def add_stats(self, which: str, name: str, d: int, scores: list[float]) -> None:
        if not scores:
            return
        table, scores = self.stats[which][name], [percent(s) for s in scores]
        for field, value in (("depth", d), ("max", max(scores)), ("average", sum(scores) / len(scores)),
                             ("min", min(scores)), ("std", statistics.pstdev(scores))):
            table[field].append(value)

    # --- programs ------------------------------------------------------------------------------------

    def key(self, config: Config) -> str:
        return digest([[name, *config[name]] for name in self.names])

    def program(self, config: Config) -> Module:
        """A copy of the student with each predictor's pair from ``config`` (where it differs)."""
        copy = self.student.deepcopy()
        for name, predictor in copy.named_predictors():
            if config[name] != self.start[name]:
                instruction, prefix = config[name]
                signature = predictor.signature.with_instructions(instruction)
                predictor.signature = signature.with_updated_fields(list(signature.fields)[-1], prefix=prefix)
        return copy

    def finish(self) -> Module:
        """The best program scored (the student's copy if none was), with DSPy's attributes and the report."""
        everything = [(score, pair, config, d) for name in self.names
                      for pair, (score, config, d) in self.evaluated[name].items()]
        everything.sort(key=lambda row: row[0], reverse=True)
        kept, seen = [], set()
        for score, pair, config, d in everything:  # one entry per program (DSPy drops repeats too)
            if self.key(config) not in seen:
                seen.add(self.key(config))
                kept.append(ScoredProgram(percent(score), self.program(config), instruction=pair[0], prefix=pair[1],
                                          depth=d))
        compiled = kept[0]["program"] if kept else self.student.deepcopy()
        compiled.candidate_programs = kept
        compiled.total_calls = self.total_calls
        if self.opt.track_stats:
            for name in self.names:
                self.add_stats("best", name, self.reached, [s for s, _, _ in self.ranked(name)][:TOP])
            compiled.results_best, compiled.results_latest = self.stats["best"], self.stats["latest"]
        candidates = [CandidateScore(i, text, self.scores[key], 0, {n: config[n][0] for n in self.names})
                      for i, (key, (config, text)) in enumerate(self.order.items())]
        best = everything[0][0] if everything else None
        return self.job.report(compiled, best=best, baseline=self.scores.get(self.key(self.baseline)),
                               candidates=candidates, metric_calls=len(self.order) * len(self.trainset))


def pair_of(predictor: Any) -> Pair:
    """A predictor's instruction and the prefix of its signature's last field (DSPy's ``json_schema_extra``)."""
    signature = predictor.signature
    return signature.instructions, signature.fields[list(signature.fields)[-1]].json_schema_extra["prefix"]


def clean(text: Any) -> str:
    """A proposed text as DSPy takes it: surrounding quotes and whitespace dropped."""
    return str(text).strip('"').strip()


def jsonable(config: Config) -> dict[str, list[str]]:
    return {name: list(pair) for name, pair in config.items()}


__all__ = ["COPRO"]
