"""SIMBA's pure parts: the seeded draws (softmax over the pool, Poisson demo drops), the ranking of a
mini-batch's examples by how much their samples differ, the pool's program value and its two strategies
(append a demo, append a rule), the rule-writing signature, and a sample's run as the journal keeps it.

Every draw takes its generator as an argument: the optimizer owns the only ones (seeded), so a compile
replays its draws exactly when it resumes from its journal.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from ..adapters.base import to_jsonable
from ..evaluate.result import EvalRow
from ..journal import SimbaTrajectory
from ..primitives import Prediction
from ..signature import InputField, OutputField, Signature
from .candidates import digest

TRUNCATED = " [... truncated]"


def softmax_sample(rng: random.Random, idxs: Sequence[int], averages: Sequence[float], temperature: float) -> int:
    """One of ``idxs``, drawn with weight exp(average / temperature) (one ``rng.choices``, as DSPy draws)."""
    if not idxs:
        raise ValueError("no programs to sample from")
    top = max(averages[i] for i in idxs)
    weights = [math.exp((averages[i] - top) / temperature) for i in idxs]  # shifted: no overflow
    total = sum(weights)
    return rng.choices(list(idxs), weights=[w / total for w in weights], k=1)[0]


def top_programs(averages: Sequence[float], k: int) -> list[int]:
    """The ``k`` programs with the best averages (the earliest on a tie), the student (0) always among them."""
    top = sorted(range(len(averages)), key=lambda i: averages[i], reverse=True)[:k]
    if 0 not in top and top:
        top[-1] = 0
    return list(dict.fromkeys(top))


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile, interpolated linearly between the closest ranks (numpy's default)."""
    ordered = sorted(values)
    at = (len(ordered) - 1) * q / 100
    low = math.floor(at)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (at - low)


def rank_buckets(scores: Sequence[Sequence[float]]) -> list[int]:
    """``scores[m][i]``: sample m's score on example i. The examples, most variable first: by the gap
    between their best and worst sample, then the best, then the gap between the best and the mean."""
    def key(i: int) -> tuple[float, float, float]:
        column = [row[i] for row in scores]
        best = max(column)
        return best - min(column), best, best - sum(column) / len(column)

    return sorted(range(len(scores[0])), key=key, reverse=True)


def poisson(rng: random.Random, lam: float) -> int:
    """A Poisson draw of mean ``lam`` (Knuth's product of uniforms)."""
    limit, k, product = math.exp(-lam), 0, rng.random()
    while product > limit:
        k, product = k + 1, product * rng.random()
    return k


def demo_drops(rng: random.Random, counts_rng: random.Random, counts: Sequence[int], max_demos: int) -> list[int]:
    """The demo positions a candidate drops from every predictor: Poisson-many (mean: how full the fullest
    predictor is), at least one when it is full; positions drawn with replacement, as DSPy's."""
    most, cap = max(counts, default=0), max_demos if max_demos > 0 else 3
    drop = min(max(poisson(counts_rng, most / cap), int(most >= cap)), most)
    return [rng.randrange(most) for _ in range(drop)]


def spaced(last: int, n: int) -> list[int]:
    """``n`` evenly spaced positions in 0..``last`` (repeats dropped): the winners scored at the end."""
    return [0] if last < 1 else list(dict.fromkeys(round(i * last / (n - 1)) for i in range(n)))


def contrast(bucket: Sequence[SimbaTrajectory], p10: float, p90: float
             ) -> tuple[SimbaTrajectory | None, SimbaTrajectory | None] | None:
    """The (better, worse) samples a rule is written from (None for one not worth showing), or None when
    the bucket teaches nothing: its best is no better than the batch's 10th percentile or its worst no
    worse than the 90th."""
    good, bad = bucket[0], bucket[-1]
    if good.score <= p10 or bad.score >= p90:
        return None
    if good.score <= bad.score:
        return (good, None) if good.score > p90 else (None, bad)
    return good, bad


def truncated(value: Any, limit: int) -> Any:
    """A demo's input as shown: cut at ``limit`` characters (0: never) and marked, so a long document does
    not fill every later prompt."""
    text = str(value)
    return f"{text[:limit]}{TRUNCATED}" if limit and len(text) > limit else value


@dataclass(frozen=True)
class Candidate:
    """A program of the pool: each predictor's instruction and demos (the rest is the student's)."""

    instructions: dict[str, str]
    demos: dict[str, list[dict]]

    @property
    def key(self) -> str:
        return digest({"instructions": self.instructions, "demos": self.demos})

    def dropping(self, positions: Sequence[int]) -> "Candidate":
        """Without the demos at ``positions`` in every predictor (room for the one a strategy appends)."""
        return Candidate(self.instructions, {n: [d for i, d in enumerate(ds) if i not in positions]
                                             for n, ds in self.demos.items()})

    def with_demo(self, good: SimbaTrajectory, limit: int) -> "Candidate":
        """The last call of each predictor in ``good`` appended as a demo (inputs cut at ``limit``)."""
        last = {s["predictor"]: {**{k: truncated(v, limit) for k, v in s["inputs"].items()}, **s["outputs"]}
                for s in good.trace if s.get("predictor") in self.demos}
        return Candidate(self.instructions, {n: [*ds, last[n]] if n in last else ds for n, ds in self.demos.items()})

    def with_rules(self, advice: Mapping[str, str]) -> "Candidate":
        """Each advised predictor's instruction with its advice appended as a paragraph."""
        return Candidate({n: f"{i}\n\n{advice[n]}" if advice.get(n) else i for n, i in self.instructions.items()},
                         self.demos)


class WriteRules(Signature):
    """Two runs of a language-model program on the same input are shown: one earned a higher reward than the
    other. For each of the program's modules, write advice that it will read in its instructions from now on,
    so that on inputs like these it acts as in the better run and not as in the worse one. The module will
    not see these runs: make the advice concrete enough to change what it does, general enough to apply to
    similar inputs, and about that module's own part of the task. Give every module name exactly once."""

    program: str = InputField(desc="the program's modules: names, signatures and instructions")
    program_inputs: str = InputField(desc="what the program was given")
    expected: str = InputField(desc="the example's reference fields, which the program does not see")
    worse_trajectory: str = InputField(desc="each module's inputs and outputs in the worse run")
    worse_outputs: str = InputField(desc="the worse run's outputs")
    worse_reward: str = InputField(desc="the worse run's reward and what the metric said about it")
    better_trajectory: str = InputField(desc="each module's inputs and outputs in the better run")
    better_outputs: str = InputField(desc="the better run's outputs")
    better_reward: str = InputField(desc="the better run's reward and what the metric said about it")
    module_names: str = InputField(desc="the modules to advise")
    discussion: str = OutputField(desc="which module went wrong in the worse run, and how")
    module_advice: dict[str, str] = OutputField(desc="module name -> advice of the form: when the module is given "
                                                     "<such input>, it should <do this> and avoid <that>")


def trajectory(step: int, sample: int, example: int, program: int, row: EvalRow) -> SimbaTrajectory:
    """One sample's run as the journal keeps it (plain JSON: what a resumed compile reads back)."""
    pred = row.prediction
    outputs = to_jsonable(dict(pred.items())) if isinstance(pred, Prediction) else None
    steps = [{"predictor": s.predictor, "inputs": to_jsonable(s.inputs), "outputs": to_jsonable(s.outputs)}
             for s in (getattr(pred, "trace", None) or [])]
    error = None if row.error is None else f"{type(row.error).__name__}: {str(row.error)[:300]}"
    return SimbaTrajectory(step, sample, example, program, row.score, outputs, steps, row.feedback, error)


def dumps(value: Any) -> str:
    """A value as the prompt model reads it: indented JSON (what JSON cannot hold, as its text)."""
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


__all__ = ["softmax_sample", "top_programs", "percentile", "rank_buckets", "poisson", "demo_drops", "spaced",
           "contrast", "truncated", "Candidate", "WriteRules", "trajectory", "dumps"]
