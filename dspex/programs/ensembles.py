"""Programs that call other programs several times: MultiChainComparison, BestOfN, Refine; and ``majority``."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any, Callable

import structlog

from ..errors import ConfigError, DspexError
from ..primitives import Prediction
from ..signature import InputField, OutputField, ensure_signature, make_signature
from .module import Module, combine
from .predict import ChainOfThought, Predict, dump_signature, load_signature

log = structlog.get_logger("dspex.programs")
Reward = Callable[[dict, Prediction], float]


class MultiChainComparison(Module):
    """Make ``M`` reasoning attempts (ChainOfThought at ``temperature``), then one call compares them
    and gives the final answer with its own ``rationale``."""

    def __init__(self, signature: Any, M: int = 3, lm: Any = None, temperature: float = 0.7,  # noqa: N803 - DSPy's name
                 **config: Any) -> None:
        if M < 1:
            raise ConfigError(f"MultiChainComparison needs M >= 1, got {M}")
        self.M, self.temperature = M, temperature
        base = ensure_signature(signature)
        self.attempt = ChainOfThought(base, lm=lm, temperature=temperature, **config)
        compare = base
        for i in range(1, M + 1):
            compare = compare.append(f"reasoning_attempt_{i}", InputField(desc=f"student attempt {i}"), str)
        compare = compare.prepend("rationale", OutputField(desc="Compare the attempts; say which reasoning holds."), str)
        self.compare = Predict(compare, lm=lm, **config)

    def forward(self, **inputs: Any) -> Prediction:
        attempts = []
        for i in range(self.M):
            self.attempt.config["rollout"] = i
            attempts.append(self.attempt(**inputs))
        answers = {f"reasoning_attempt_{i + 1}": _summary(p, self.attempt.signature) for i, p in enumerate(attempts)}
        final = self.compare(**inputs, **answers)
        return combine([*attempts, final], **dict(final.items()))

    def dump_config(self) -> dict:
        sig = self.attempt.signature
        base = make_signature({n: f for n, f in sig.fields.items() if n != "reasoning"}, sig.custom_instructions, sig.__name__)
        return {"signature": dump_signature(base), "M": self.M, "temperature": self.temperature}

    @classmethod
    def from_config(cls, config: dict | None) -> "MultiChainComparison":
        if not config:
            raise ConfigError("MultiChainComparison needs its saved config")
        return cls(load_signature(config["signature"]), M=config["M"], temperature=config["temperature"])


def _summary(pred: Prediction, sig: Any) -> str:
    outs = [f"{n}: {pred[n]}" for n in sig.output_fields if n != "reasoning" and n in pred]
    return f"{pred.get('reasoning', '')} => {'; '.join(outs)}"


class BestOfN(Module):
    """Run ``module`` up to ``N`` times (fresh rollouts, ``temperature``); return the prediction with the
    highest ``reward_fn(inputs, prediction)``, stopping early once it reaches ``threshold``."""

    def __init__(self, module: Module, N: int, reward_fn: Reward, threshold: float,  # noqa: N803 - DSPy's name
                 temperature: float = 1.0, fail_count: int | None = None) -> None:
        if N < 1:
            raise ConfigError(f"{type(self).__name__} needs N >= 1, got {N}")
        self.module, self.N, self.reward_fn, self.threshold = module, N, reward_fn, threshold
        self.temperature = temperature
        self.fail_count = N if fail_count is None else fail_count

    def forward(self, **inputs: Any) -> Prediction:
        best, best_reward, spent, failures = None, float("-inf"), [], 0
        last_error: Exception | None = None
        for i in range(self.N):
            program = self._rollout(i, best, best_reward)
            try:
                pred = program(**inputs)
            except DspexError as exc:  # a failed rollout counts; the others may still succeed
                failures, last_error = failures + 1, exc
                log.info("rollout_failed", attempt=i, error=str(exc)[:200])
                if failures >= self.fail_count:
                    raise
                continue
            spent.append(pred)
            reward = float(self.reward_fn(dict(inputs), pred))
            if reward > best_reward:
                best, best_reward = pred, reward
            if reward >= self.threshold:
                break
        if best is None:
            raise last_error if last_error is not None else ConfigError("no rollout ran")
        return combine(spent, **dict(best.items()))

    def _rollout(self, i: int, best: Prediction | None, best_reward: float) -> Module:
        program = self.module.deepcopy()
        for p in program.predictors():
            p.config.update(rollout=i, temperature=self.temperature if i else p.config.get("temperature", 0.0))
        return program


class Refine(BestOfN):
    """BestOfN with feedback: after an attempt below ``threshold``, the next one is told its last
    answer and score, and asked to do better."""

    def _rollout(self, i: int, best: Prediction | None, best_reward: float) -> Module:
        program = super()._rollout(i, best, best_reward)
        if best is not None:
            shown = "; ".join(f"{k}={v!r}" for k, v in best.items())
            advice = (f"A previous attempt answered {shown} and scored {best_reward:g}, below the target "
                      f"{self.threshold:g}. Give a better answer.")
            for p in program.predictors():
                p.signature = p.signature.with_instructions(f"{p.signature.instructions}\n\n{advice}")
        return program


__all__ = ["MultiChainComparison", "BestOfN", "Refine"]


def _default_normalize(value: Any) -> str | None:
    """A vote's key: the text lowercased, punctuation and articles dropped, spaces collapsed (empty: no vote)."""
    text = re.sub(r"\b(a|an|the)\b", " ", re.sub(r"[^\w\s]", " ", str(value).lower()))
    return " ".join(text.split()) or None


def majority(prediction_or_completions: Any, normalize: Any = _default_normalize, field: str | None = None) -> Prediction:
    """DSPy's ``majority``: the completion whose ``field`` (default: the last output field) is the most
    common after ``normalize`` (ties: the first seen), as a Prediction. Accepts a Prediction (its
    completions) or a list of completions / predictions / dicts."""
    source = prediction_or_completions
    completions = list(source.completions if isinstance(source, Prediction) else source)
    if not completions:
        raise ConfigError("majority() needs at least one completion")
    rows = [dict(c.items()) if hasattr(c, "items") else dict(c) for c in completions]
    field = field or list(rows[0])[-1]
    votes: Counter = Counter()
    first: dict[Any, dict] = {}
    for row in rows:
        key = normalize(row.get(field)) if normalize is not None else row.get(field)
        if key is None:
            continue
        votes[key] += 1
        first.setdefault(key, row)
    if not votes:
        return Prediction.from_completions([rows[0]])
    winner = max(votes, key=lambda k: (votes[k], -list(first).index(k)))
    return Prediction.from_completions([first[winner]])
