"""Prediction (what a module returns: output fields plus usage, cost, raw text and trace) and Usage."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from ..errors import ExampleError
from .example import _Record


@dataclass(frozen=True)
class Usage:
    """Token counts as the provider reported them. ``unconfirmed_tokens`` of them are an upper bound
    instead: attempts the provider answered (and bills) with a body whose counts could not be read."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    unconfirmed_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: "Usage") -> "Usage":
        return Usage(self.prompt_tokens + other.prompt_tokens, self.completion_tokens + other.completion_tokens,
                     self.unconfirmed_tokens + other.unconfirmed_tokens)


class Completions(tuple):
    """A prediction's completions: a tuple of field dicts; ``completions.answer`` lists one field (DSPy's shape)."""

    def __getattr__(self, name: str) -> list:
        if name.startswith("_"):
            raise AttributeError(name)
        if self and all(name in c for c in self):
            return [c[name] for c in self]
        raise AttributeError(f"the completions have no field {name!r}")


class Prediction(_Record):
    """Output fields as attributes, plus ``usage``, ``cost``, ``raw`` text and the ``trace`` of sub-calls."""

    __slots__ = ("usage", "cost", "raw", "trace", "completions")

    def __init__(self, data: Mapping[str, Any] | None = None, *, usage: Usage = Usage(), cost: float = 0.0,
                 raw: str = "", trace: Sequence[Any] = (), completions: Sequence[Mapping[str, Any]] | None = None,
                 **fields: Any) -> None:
        super().__init__(data, **fields)
        object.__setattr__(self, "usage", usage)
        object.__setattr__(self, "cost", cost)
        object.__setattr__(self, "raw", raw)
        object.__setattr__(self, "trace", tuple(trace))
        object.__setattr__(self, "completions", Completions(dict(c) for c in completions) if completions is not None
                           else Completions((dict(self._data),)))

    def copy(self, **changes: Any) -> "Prediction":
        return Prediction({**self._data, **changes}, usage=self.usage, cost=self.cost, raw=self.raw, trace=self.trace,
                          completions=self.completions)

    @classmethod
    def from_completions(cls, completions: Sequence[Mapping[str, Any]], **kwargs: Any) -> "Prediction":
        """DSPy's shape: the first completion's fields, all of them in ``completions``."""
        items = [dict(c) for c in completions]
        if not items:
            raise ExampleError("Prediction.from_completions needs at least one completion")
        return cls(items[0], completions=items, **kwargs)

    def get_lm_usage(self) -> dict[str, dict[str, Any]]:
        """DSPy's shape: per model, the tokens and cost of every LM call made for this prediction (the
        trace's steps; a prediction without one counts as one call to an unnamed model)."""
        steps = [s for s in self.trace if hasattr(s, "usage")]
        totals: dict[str, dict[str, Any]] = {}
        for step in steps or [None]:
            model = (getattr(step, "model", "") or "unknown") if step is not None else "unknown"
            usage, cost = (step.usage, step.cost) if step is not None else (self.usage, self.cost)
            entry = totals.setdefault(model, {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0,
                                              "cost": 0.0})
            entry["prompt_tokens"] += usage.prompt_tokens
            entry["completion_tokens"] += usage.completion_tokens
            entry["total_tokens"] += usage.total_tokens
            entry["cost"] += cost
        return totals

    def _state(self) -> tuple:
        return (self._data, self.usage, self.cost, self.raw, self.trace)

    def __getstate__(self) -> dict:
        return {"_data": self._data, "usage": self.usage, "cost": self.cost, "raw": self.raw, "trace": self.trace,
                "completions": self.completions}

    def __setstate__(self, state: dict) -> None:
        for key, value in state.items():
            object.__setattr__(self, key, value)

    def __repr__(self) -> str:
        return f"Prediction({self._data!r}, usage={self.usage}, cost={self.cost})"

    # --- a prediction with a ``score`` is a number (DSPy's metrics return them: summed, divided, compared) ---

    def __float__(self) -> float:
        if "score" not in self._data:
            raise ExampleError("this Prediction has no 'score' field, so it is not a number (a metric's "
                               "Prediction needs score=...)")
        return float(self._data["score"])

    def _other(self, other: Any, op: str) -> float:
        if isinstance(other, Prediction):
            return float(other)
        if isinstance(other, (int, float)) and not isinstance(other, bool):
            return float(other)
        raise TypeError(f"unsupported operand for Prediction {op}: {type(other).__name__}")

    def __add__(self, other: Any) -> float:
        return float(self) + self._other(other, "+")

    def __radd__(self, other: Any) -> float:
        return self._other(other, "+") + float(self)

    def __truediv__(self, other: Any) -> float:
        return float(self) / self._other(other, "/")

    def __rtruediv__(self, other: Any) -> float:
        return self._other(other, "/") / float(self)

    def __lt__(self, other: Any) -> bool:
        return float(self) < self._other(other, "<")

    def __le__(self, other: Any) -> bool:
        return float(self) <= self._other(other, "<=")

    def __gt__(self, other: Any) -> bool:
        return float(self) > self._other(other, ">")

    def __ge__(self, other: Any) -> bool:
        return float(self) >= self._other(other, ">=")
