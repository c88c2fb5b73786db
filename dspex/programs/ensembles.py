"""Programs that call other programs several times: MultiChainComparison, BestOfN, Refine; and ``majority``."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any, Callable, Generator

import structlog

from ..errors import ConfigError
from ..primitives import Prediction
from ..signature import InputField, OutputField, ensure_signature
from ..clients.steps import arun_steps, run_steps
from .module import Module, call_later, call_now, combine
from .predict import ChainOfThought, Predict, dump_signature, load_signature

log = structlog.get_logger("dspex.programs")
Reward = Callable[[dict, Prediction], float]


class MultiChainComparison(Module):
    """DSPy's MultiChainComparison: ``mcc(completions, **inputs)`` shows ``M`` reasoning attempts (predictions
    with a ``rationale`` or ``reasoning`` and the signature's last output) to one call (``self.predict``),
    which compares them and gives the final answer with its own ``rationale``.

    dspex addition: called without ``completions``, it makes the ``M`` attempts itself (a ChainOfThought of
    the signature at ``temperature``, each its own rollout, with this module's ``lm`` and ``config``).
    """

    def __init__(self, signature: Any, M: int = 3, temperature: float = 0.7, lm: Any = None,  # noqa: N803 - DSPy's name
                 **config: Any) -> None:
        super().__init__()
        if not isinstance(M, int) or M < 1:
            raise ConfigError(f"MultiChainComparison needs M >= 1, got {M!r}")
        self.M, self.temperature = M, temperature
        base = ensure_signature(signature)
        self.last_key = list(base.output_fields)[-1]
        self._base, self._config = base, dict(config)
        compare = base
        for i in range(1, M + 1):
            compare = compare.append(f"reasoning_attempt_{i}",
                                     InputField(prefix=f"Student Attempt #{i}:", desc="${reasoning attempt}"), str)
        compare = compare.prepend("rationale", OutputField(
            prefix="Accurate Reasoning: Thank you everyone. Let's now holistically", desc="${corrected reasoning}"), str)
        self.predict = Predict(compare, lm=lm, temperature=temperature, **config)

    def forward(self, completions: Any = None, **inputs: Any) -> Prediction:
        return run_steps(self._steps(completions, inputs), call_now)

    async def aforward(self, completions: Any = None, **inputs: Any) -> Prediction:
        return await arun_steps(self._steps(completions, inputs), call_later)

    def _steps(self, completions: Any, inputs: dict) -> Generator[tuple, Any, Prediction]:
        made: list[Prediction] = []
        if completions is None:
            made = yield from self._attempts(inputs)
            completions = made
        completions = list(completions)
        if len(completions) != self.M:
            raise ConfigError(f"MultiChainComparison was given {len(completions)} attempts but M={self.M}: pass M "
                              "attempts, or set M to their number when building it")
        shown = {f"reasoning_attempt_{i + 1}": self._attempt_text(c) for i, c in enumerate(completions)}
        final = yield ("call", self.predict, {**shown, **inputs})
        return combine([*made, final], **dict(final.items())) if made else final

    def _attempt_text(self, completion: Any) -> str:
        def first_line(value: Any) -> str:
            text = str(value).strip()
            return text.split("\n")[0].strip()

        get = completion.get if hasattr(completion, "get") else (lambda k, d=None: getattr(completion, k, d))
        rationale = get("rationale", None)
        if rationale is None:
            rationale = get("reasoning", "")
        answer = get(self.last_key, "")
        return f"«I'm trying to {first_line(rationale)} I'm not sure but my prediction is {first_line(answer)}»"

    def _attempts(self, inputs: dict) -> Generator[tuple, Any, list[Prediction]]:
        attempts = []
        for i in range(self.M):
            attempt = ChainOfThought(self._base, lm=self.predict.lm,
                                     **{**self._config, "temperature": self.temperature, "rollout": i})
            attempts.append((yield ("call", attempt, inputs)))
        return attempts

    def dump_config(self) -> dict:
        return {"signature": dump_signature(self._base), "M": self.M, "temperature": self.temperature}

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
        self.fail_count = fail_count or N  # DSPy's: 0 or None means N

    def forward(self, **inputs: Any) -> Prediction:
        """As DSPy's: a failed rollout (any exception) counts, and the others may still succeed; the
        exception is raised once more than ``fail_count`` rollouts failed, or when none succeeded."""
        return run_steps(self._steps(inputs), call_now)

    async def aforward(self, **inputs: Any) -> Prediction:
        return await arun_steps(self._steps(inputs), call_later)

    def _steps(self, inputs: dict) -> Generator[tuple, Any, Prediction]:
        best, best_reward, spent, failures = None, float("-inf"), [], 0
        last_error: Exception | None = None
        for i in range(self.N):
            program = self._rollout(i, best, best_reward)
            try:
                pred = yield ("call", program, inputs)
            except Exception as exc:  # noqa: BLE001 - DSPy's BestOfN counts every failed rollout
                failures, last_error = failures + 1, exc
                log.info("rollout_failed", attempt=i, error=str(exc)[:200])
                if failures > self.fail_count:
                    raise
                continue
            spent.append(pred)
            reward = float(self.reward_fn(dict(inputs), pred))
            if reward > best_reward:
                best, best_reward = pred, reward
            if reward >= self.threshold:
                break
        if best is None:
            if last_error is not None:
                raise last_error
            raise ConfigError("no rollout ran")
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
