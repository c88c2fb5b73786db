"""Example: a data point, fields readable by key or attribute, some of them marked as inputs.

Examples are mutable as DSPy's are (``ex.a = 2``, ``ex["a"] = 1``, ``del ex["a"]``); dspex copies them
where a run takes them (Evaluate, the optimizers, worker processes), so a user's later change never races
a run and a run never changes the user's examples.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, MutableMapping, Sequence

from ..errors import ExampleError


def _plain(value: Any) -> Any:
    """A field value as plain data (pydantic models such as ``History`` dumped, nested Examples as dicts),
    for ``to_dict``."""
    if isinstance(value, _Record):
        return value.to_dict()
    if hasattr(value, "model_dump") and callable(value.model_dump):
        return value.model_dump()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _check_key(key: Any) -> None:
    if not isinstance(key, str) or key.startswith("_"):
        raise ExampleError(f"field names must be strings not starting with '_', got {key!r}")


class _Record(MutableMapping[str, Any]):
    """A mapping of fields, readable and writable as ``r["name"]`` or ``r.name`` (DSPy's Example and
    Prediction are mutable: ``r.a = 2``, ``r["a"] = 1``, ``del r["a"]``)."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, Any] | None = None, **fields: Any) -> None:
        merged = {**(data or {}), **fields}
        for key in merged:
            _check_key(key)
        object.__setattr__(self, "_data", merged)

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        _check_key(key)
        self._data[key] = value

    def __delitem__(self, key: str) -> None:
        del self._data[key]

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
        if name.startswith("_") or any(name in getattr(k, "__slots__", ()) for k in type(self).__mro__):
            object.__setattr__(self, name, value)
        else:
            self[name] = value

    def __delattr__(self, name: str) -> None:
        if name not in self._data:
            raise AttributeError(f"{type(self).__name__} has no field {name!r}")
        del self._data[name]

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._state() == other._state()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(json.dumps(self.to_dict(), sort_keys=True, default=repr))

    def _state(self) -> tuple:
        return (self._data,)

    def to_dict(self) -> dict[str, Any]:
        return {k: _plain(v) for k, v in self._data.items()}

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
        object.__setattr__(self, "_input_keys", set(_inputs) if _inputs is not None else None)

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

    def _need_inputs(self) -> set[str]:
        if self._input_keys is None:
            raise ExampleError("this example has no inputs marked; call .with_inputs('question', ...) first")
        return self._input_keys

    def inputs(self) -> "Example":
        keys = self._need_inputs()
        return Example._of({k: v for k, v in self._data.items() if k in keys}, set(keys))

    @staticmethod
    def _of(data: dict, inputs: "set[str] | frozenset[str] | None") -> "Example":
        """An Example of fields already checked (taken from another Example), made without checking them again
        (an evaluation makes one a row)."""
        made = object.__new__(Example)
        object.__setattr__(made, "_data", data)
        object.__setattr__(made, "_input_keys", inputs)
        return made

    def labels(self) -> "Example":
        keys = self._need_inputs()
        return Example({k: v for k, v in self._data.items() if k not in keys})

    def copy(self, **changes: Any) -> "Example":
        return Example({**self._data, **changes}, _inputs=self._input_keys)

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
        shown = {k: v for k, v in self._data.items() if not k.startswith("dspy_")}
        return f"Example({shown!r}) (input_keys={self._input_keys!r})"

    __str__ = __repr__


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
