"""Example, Prediction and Usage: small immutable values with read access by key or attribute."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

from .errors import ExampleError


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


class _Record(Mapping[str, Any]):
    """Immutable mapping of fields, readable as ``r["name"]`` or ``r.name``."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, Any] | None = None, **fields: Any) -> None:
        merged = {**(data or {}), **fields}
        for key in merged:
            if not isinstance(key, str) or key.startswith("_"):
                raise ExampleError(f"field names must be strings not starting with '_', got {key!r}")
        object.__setattr__(self, "_data", merged)

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self._data[name]
        except KeyError:
            raise AttributeError(f"{type(self).__name__} has no field {name!r} (fields: {', '.join(self._data)})") from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable; use .copy({name}=...)")

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._state() == other._state()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(json.dumps(self.to_dict(), sort_keys=True, default=repr))

    def _state(self) -> tuple:
        return (self._data,)

    def to_dict(self) -> dict[str, Any]:
        return dict(self._data)

    def toDict(self) -> dict[str, Any]:  # noqa: N802 - DSPy's spelling
        return self.to_dict()

    def __getstate__(self) -> dict:
        return {"_data": self._data}

    def __setstate__(self, state: dict) -> None:
        object.__setattr__(self, "_data", state["_data"])


class Example(_Record):
    """A data point: fields, some of which are marked as inputs (``with_inputs``); the rest are labels."""

    __slots__ = ("_input_keys",)

    def __init__(self, data: Mapping[str, Any] | None = None, *, _inputs: Iterable[str] | None = None,
                 base: "Example | Mapping[str, Any] | None" = None, **fields: Any) -> None:
        if base is not None:  # DSPy's Example(base=ex, c=3): a copy of ``base`` with more fields
            if not isinstance(base, Mapping):
                raise ExampleError(f"Example(base=...) takes an Example or a mapping, got {type(base).__name__}")
            if _inputs is None and isinstance(base, Example):
                _inputs = base.input_keys
            base_data = base._data if isinstance(base, Example) else dict(base.items())
            data = {**base_data, **(data or {})}
        super().__init__(data, **fields)
        # a set, as DSPy's ``_input_keys`` (user code compares it to one); ``input_keys`` gives them in field order
        object.__setattr__(self, "_input_keys", frozenset(_inputs) if _inputs is not None else None)

    def __len__(self) -> int:
        """The fields, without DSPy's hidden ``dspy_``-prefixed ones (``dspy_uuid``, ``dspy_split``), as DSPy counts."""
        return sum(1 for k in self._data if not k.startswith("dspy_"))

    def keys(self, include_dspy: bool = False) -> list[str]:  # type: ignore[override]
        return [k for k in self._data if include_dspy or not k.startswith("dspy_")]

    def values(self, include_dspy: bool = False) -> list[Any]:  # type: ignore[override]
        return [self._data[k] for k in self.keys(include_dspy)]

    def items(self, include_dspy: bool = False) -> list[tuple[str, Any]]:  # type: ignore[override]
        return [(k, self._data[k]) for k in self.keys(include_dspy)]

    def without(self, *keys: str) -> "Example":
        """A copy without those fields (they also stop being inputs)."""
        inputs = [k for k in self._input_keys if k not in keys] if self._input_keys is not None else None
        return Example({k: v for k, v in self._data.items() if k not in keys}, _inputs=inputs)

    def with_inputs(self, *keys: str) -> "Example":
        missing = [k for k in keys if k not in self._data]
        if missing:
            raise ExampleError(f"with_inputs: {', '.join(missing)} not in this example (fields: {', '.join(self._data)})")
        return Example(self._data, _inputs=keys)

    @property
    def input_keys(self) -> tuple[str, ...] | None:
        """The input fields in field order (None: not marked yet)."""
        if self._input_keys is None:
            return None
        return tuple(k for k in self._data if k in self._input_keys)

    def _need_inputs(self) -> frozenset[str]:
        if self._input_keys is None:
            raise ExampleError("this example has no inputs marked; call .with_inputs('question', ...) first")
        return self._input_keys

    def inputs(self) -> "Example":
        keys = self._need_inputs()
        return Example({k: v for k, v in self._data.items() if k in keys}, _inputs=keys)

    def labels(self) -> "Example":
        keys = self._need_inputs()
        return Example({k: v for k, v in self._data.items() if k not in keys})

    def copy(self, **changes: Any) -> "Example":
        return Example({**self._data, **changes}, _inputs=self._input_keys)

    def _state(self) -> tuple:
        return (self._data, self._input_keys)

    def to_json(self) -> str:
        return json.dumps({"data": self._data, "inputs": list(self.input_keys) if self._input_keys is not None else None})

    @classmethod
    def from_json(cls, text: str) -> "Example":
        try:
            obj = json.loads(text)
            return cls(obj["data"], _inputs=obj.get("inputs"))
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ExampleError(f"not an Example JSON document: {exc}") from None

    def __getstate__(self) -> dict:
        return {"_data": self._data, "_input_keys": self._input_keys}

    def __setstate__(self, state: dict) -> None:
        object.__setattr__(self, "_data", state["_data"])
        object.__setattr__(self, "_input_keys", state["_input_keys"])

    def __repr__(self) -> str:
        return f"Example({self._data!r}, inputs={self.input_keys!r})"


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


def examples_from(rows: Iterable[Mapping[str, Any]], inputs: Sequence[str]) -> list[Example]:
    """Examples from dicts, each with ``inputs`` marked; ExampleError names the bad row."""
    out = []
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise ExampleError(f"row {i}: expected an object/dict, got {type(row).__name__}")
        missing = [k for k in inputs if k not in row]
        if missing:
            raise ExampleError(f"row {i}: missing input field(s) {', '.join(missing)} (has: {', '.join(row)})")
        out.append(Example(dict(row), _inputs=inputs))
    return out


def load_jsonl(path: str | Path, inputs: Sequence[str]) -> list[Example]:
    """Examples from a JSONL file (one object per line; blank lines skipped); errors give the line number."""
    rows = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ExampleError(f"{path}:{lineno}: not valid JSON ({exc.msg} at column {exc.colno})") from None
            if not isinstance(row, dict):
                raise ExampleError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
            missing = [k for k in inputs if k not in row]
            if missing:
                raise ExampleError(f"{path}:{lineno}: missing input field(s) {', '.join(missing)}")
            rows.append(Example(row, _inputs=inputs))
    return rows
