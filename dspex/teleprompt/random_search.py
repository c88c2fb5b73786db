"""BootstrapFewShotWithRandomSearch: DSPy's candidate set, scored with several candidates in flight.

Candidates (as DSPy builds them): zero-shot, labeled demos only, an unshuffled bootstrap, then
bootstraps of shuffled trainsets with a random number of demos. ``search_adapters=True`` makes the
adapter (Chat / JSON / Text) part of each candidate: for small models the prompt's shape matters more
than its demos. Candidates are scored on the valset in batches of ``parallel`` at once, sharing
``max_concurrency``; every score is journaled, so a resumed compile scores only what is missing and
picks the same best (the highest score, the earliest candidate on a tie).
"""

from __future__ import annotations

import random
from typing import Any, Callable, Sequence

from ..adapters import ADAPTERS
from ..errors import ConfigError, DspexError
from ..evaluate.metric_call import MetricPlace, bind_metric
from ..primitives import Example
from ..programs import Module
from .candidates import in_order
from .fewshot import BootstrapFewShot, check_student, check_trainset, example_digest, labeled_demos, structure
from .job import CandidateScore, CompileJob, CompileStopped, fingerprint



class BootstrapFewShotWithRandomSearch:
    def __init__(self, metric: Callable, num_candidate_programs: int = 16, max_bootstrapped_demos: int = 4,
                 max_labeled_demos: int = 16, stop_at_score: float | None = None, search_adapters: bool = False,
                 seed: int = 0, metric_threshold: float | None = None, max_rounds: int = 1,
                 parallel: int | None = None) -> None:
        bind_metric(metric, MetricPlace.BOOTSTRAP, "BootstrapFewShotWithRandomSearch")  # it bootstraps demos
        if not isinstance(num_candidate_programs, int) or num_candidate_programs < 0:
            raise ConfigError(f"num_candidate_programs must be an int >= 0, got {num_candidate_programs!r}")
        self.metric, self.num_candidate_programs = metric, num_candidate_programs
        self.max_bootstrapped_demos, self.max_labeled_demos = max_bootstrapped_demos, max_labeled_demos
        self.stop_at_score, self.search_adapters, self.seed = stop_at_score, search_adapters, seed
        self.metric_threshold, self.max_rounds, self.parallel = metric_threshold, max_rounds, parallel

    def plan(self, student: Module) -> list[dict]:
        """The candidates, in order: what each is (the journal and the report say it)."""
        rng = random.Random(self.seed)
        adapters = list(ADAPTERS) if self.search_adapters else [None]
        plan = []
        for adapter in adapters:
            plan.append({"kind": "zero-shot", "adapter": adapter})
            plan.append({"kind": "labeled", "adapter": adapter})
        plan.append({"kind": "bootstrap", "adapter": adapters[0], "shuffle": None,
                     "demos": self.max_bootstrapped_demos})
        for seed in range(self.num_candidate_programs):
            plan.append({"kind": "bootstrap", "adapter": rng.choice(adapters), "shuffle": seed,
                         "demos": rng.randint(1, max(1, self.max_bootstrapped_demos))})
        for i, item in enumerate(plan):
            item["id"] = i
        return plan

    def compile(self, student: Module, *, trainset: Sequence[Example], valset: Sequence[Example] | None = None,
                teacher: Module | None = None, **job_options: Any) -> Module:
        student = check_student(student)
        trainset = check_trainset(trainset, student)
        if valset is None:
            raise ConfigError("BootstrapFewShotWithRandomSearch needs valset= (the examples candidates are scored "
                              "on); pass a held-out split, e.g. valset=dev")
        valset = check_trainset(valset, student, "valset")
        plan = self.plan(student)
        settings = {"n": self.num_candidate_programs, "boot": self.max_bootstrapped_demos,
                    "labeled": self.max_labeled_demos, "adapters": self.search_adapters,
                    "threshold": self.metric_threshold, "stop": self.stop_at_score}
        job = CompileJob("BootstrapFewShotWithRandomSearch", self.seed,
                         fingerprint(student=structure(student), trainset=example_digest(trainset),
                                     valset=example_digest(valset), settings=settings), **job_options)
        per_call = tokens_per_call(student, valset[0])
        job.estimate(len(plan) * (len(valset) + len(trainset)), per_call)
        job.refuse_if_baseline_cannot_fit(len(valset), per_call)
        scored = {e["id"]: e for e in job.journaled("candidate")}
        booter = BootstrapFewShot(self.metric, self.metric_threshold, self.max_bootstrapped_demos,
                                  self.max_labeled_demos, self.max_rounds, seed=self.seed)
        parallel = self.parallel or max(1, min(4, job.max_concurrency // 4))
        per_candidate = max(1, job.max_concurrency // parallel)
        stopped, programs = "done", {}
        try:
            for start in range(0, len(plan), parallel):
                batch = plan[start:start + parallel]

                def build_and_score(item: dict) -> dict | None:
                    program = self.build(job, booter, student, teacher, trainset, item)
                    programs[item["id"]] = program
                    if item["id"] in scored:
                        return None  # scored before the crash: the journal has it
                    result = job.evaluate(program, valset, self.metric, phase="candidates", name=f"candidate-{item['id']}",
                                          concurrency=per_candidate)
                    return {"kind": "candidate", "id": item["id"], "description": describe(item),
                            "score": result.score, "lm_calls": result.usage.requests, "complete": not result.aborted}

                for entry in in_order(job, parallel, build_and_score, batch, "dspex-candidate"):
                    if entry is not None and entry["complete"]:  # one cut short by the budget is no score
                        scored[entry["id"]] = entry
                        job.record(entry)
                        job.progress("candidates", entry["id"], entry["score"], (entry["id"] + 1) / len(plan))
                best = _best(scored)
                if self.stop_at_score is not None and best is not None and best["score"] >= self.stop_at_score:
                    break
        except CompileStopped as stop:
            stopped = stop.reason
        except KeyboardInterrupt:  # Ctrl-C between evaluations: the best so far, as Evaluate does
            stopped = "cancelled"
        except BaseException:
            job.close()
            raise
        best = _best(scored)
        if best is None:
            compiled = student.reset_copy()
        else:
            compiled = programs.get(best["id"]) or self.build(job, booter, student, teacher, trainset,
                                                              plan[best["id"]])
        baseline = scored.get(0, {}).get("score")
        candidates = [CandidateScore(e["id"], e["description"], e["score"], e["lm_calls"])
                      for e in sorted(scored.values(), key=lambda e: e["id"])]
        compiled.compile_report = job.report(baseline, best["score"] if best else None, candidates, stopped)
        return job.finish(compiled)

    def build(self, job: CompileJob, booter: BootstrapFewShot, student: Module, teacher: Module | None,
              trainset: list[Example], item: dict) -> Module:
        """The candidate program ``item`` describes (bootstraps journal their traces by candidate)."""
        if item["kind"] == "zero-shot":
            program = student.reset_copy()
        elif item["kind"] == "labeled":
            program = student.reset_copy()
            demos = labeled_demos(trainset, self.max_labeled_demos, random.Random(self.seed))
            for predictor in program.predictors():
                predictor.demos = list(demos)
        else:
            order = list(range(len(trainset)))
            if item["shuffle"] is not None:
                random.Random(item["shuffle"]).shuffle(order)
            program, _ = booter.compile_in(job, student, trainset, teacher, order=order, max_demos=item["demos"],
                                           tag=f"candidate-{item['id']}")
        if item.get("adapter"):
            for predictor in program.predictors():
                predictor.adapter = ADAPTERS[item["adapter"]]()
        return program


def tokens_per_call(program: Module, example: Example) -> int:
    """A rough size of one call: the first predictor's zero-shot prompt (4 characters a token) and its
    answer budget."""
    import json

    predictor = program.predictors()[0]
    adapter = predictor.adapter_for(predictor.lm)
    try:
        prompt = adapter.format(predictor.signature, dict(example.inputs()), [])
    except DspexError:
        return 256
    answer = int(predictor.config.get("max_tokens", getattr(getattr(predictor.lm, "config", None), "max_tokens", 256)))
    return len(json.dumps(prompt)) // 4 + min(answer, 256)


def describe(item: dict) -> str:
    text = {"zero-shot": "zero-shot", "labeled": "labeled demos only"}.get(item["kind"])
    if text is None:
        text = (f"bootstrap {item['demos']} demos, " + ("unshuffled" if item["shuffle"] is None
                                                        else f"shuffle seed {item['shuffle']}"))
    return text + (f", {item['adapter']}" if item.get("adapter") else "")


def _best(scored: dict) -> dict | None:
    if not scored:
        return None
    return max(scored.values(), key=lambda e: (e["score"], -e["id"]))


__all__ = ["BootstrapFewShotWithRandomSearch"]
