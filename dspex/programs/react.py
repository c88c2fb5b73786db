"""ReAct: think, call a tool, observe, repeat (at most ``max_iters``), then answer from the trajectory.

Tools are plain callables; their name, docstring and type hints make the schema the model sees. A
tool that raises gives the model an ``Error: ...`` observation instead of stopping the run. A tool
may be a supervised actor: ``Tool.from_actor(ref, name, desc, args)`` calls ``ref.call(args)``.
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Literal

import pydantic

from ..errors import ConfigError
from ..primitives import Prediction
from ..signature import InputField, OutputField, ensure_signature, make_signature
from .module import Module, combine
from .predict import ChainOfThought, Predict

FINISH = "finish"


@dataclass(frozen=True)
class Tool:
    """A callable the agent may use: ``args`` maps argument names to JSON schemas."""

    func: Callable[..., Any]
    name: str
    desc: str
    args: dict = field(default_factory=dict)

    @classmethod
    def from_callable(cls, func: Callable[..., Any]) -> "Tool":
        if isinstance(func, Tool):
            return func
        if not callable(func):
            raise ConfigError(f"a tool must be callable, got {func!r}")
        hints = inspect.signature(func).parameters
        args = {}
        for name, param in hints.items():
            annotation = param.annotation if param.annotation is not inspect.Parameter.empty else Any
            try:
                args[name] = pydantic.TypeAdapter(annotation).json_schema()
            except pydantic.PydanticUserError:
                args[name] = {}
        name = getattr(func, "__name__", type(func).__name__)
        return cls(func, name, inspect.getdoc(func) or f"the tool {name}", args)

    @classmethod
    def from_actor(cls, ref: Any, name: str, desc: str, args: dict | None = None, timeout: float = 30.0,
                   child: str | None = None) -> "Tool":
        """A stateful tool living under supervision: each use is ``ref.call(args_dict)``. With ``child``,
        ``ref`` is its supervisor and every use calls the child's current incarnation (after a restart too)."""
        def use(**kwargs: Any) -> Any:
            target = ref.child(child) if child is not None else ref
            if target is None:
                raise ConfigError(f"the tool actor {child!r} is restarting; try again")
            return target.call(kwargs, timeout)

        return cls(use, name, desc, args or {})

    def __call__(self, **kwargs: Any) -> Any:
        return self.func(**kwargs)

    def describe(self) -> str:
        return f"{self.name}: {self.desc} Arguments (JSON): {json.dumps(self.args)}"


class ReAct(Module):
    """``ReAct("question -> answer", tools=[search, calculator], lm=lm, max_iters=6)``."""

    def __init__(self, signature: Any, tools: list[Any], lm: Any = None, max_iters: int = 6, **config: Any) -> None:
        if max_iters < 1:
            raise ConfigError(f"ReAct needs max_iters >= 1, got {max_iters}")
        base = ensure_signature(signature)
        self.tools = {t.name: t for t in (Tool.from_callable(f) for f in tools)}
        if FINISH in self.tools:
            raise ConfigError(f"a tool may not be named {FINISH!r}: it ends the loop")
        self.max_iters = max_iters
        names = tuple([*self.tools, FINISH])
        listing = "\n".join(f"- {t.describe()}" for t in self.tools.values())
        instructions = (f"{base.instructions}\n\nYou work in steps. In each step give your next thought, then pick "
                        f"a tool and its arguments as a JSON object. Tools:\n{listing}\n- {FINISH}: you have what you "
                        "need to answer (arguments: {}).")
        step_fields = {n: f for n, f in base.input_fields.items()}
        step_fields["trajectory"] = InputField(desc="your previous steps and their observations")
        step_fields["next_thought"] = OutputField()
        step_fields["next_tool_name"] = OutputField()
        step_fields["next_tool_args"] = OutputField()
        step_fields["next_tool_name"] = replace(step_fields["next_tool_name"], annotation=Literal[names])  # type: ignore[valid-type]
        step_fields["next_tool_args"] = replace(step_fields["next_tool_args"], annotation=dict[str, Any])
        self.react = Predict(make_signature(step_fields, instructions, "ReActStep"), lm=lm, **config)
        extract = base.append("trajectory", InputField(desc="the steps taken and what they observed"), str)
        self.extract = ChainOfThought(extract, lm=lm, **config)

    def forward(self, **inputs: Any) -> Prediction:
        steps: list[str] = []
        preds: list[Prediction] = []
        for i in range(self.max_iters):
            pred = self.react(**inputs, trajectory="\n".join(steps) or "(none yet)")
            preds.append(pred)
            name, args = pred.next_tool_name, pred.next_tool_args
            steps.append(f"Thought {i + 1}: {pred.next_thought}\nTool {i + 1}: {name} {json.dumps(args, default=str)}")
            if name == FINISH:
                break
            steps.append(f"Observation {i + 1}: {self._use(name, args)}")
        else:
            steps.append(f"(stopped after max_iters={self.max_iters} steps)")
        trajectory = "\n".join(steps)
        final = self.extract(**inputs, trajectory=trajectory)
        return combine([*preds, final], **dict(final.items()), trajectory=trajectory)

    def _use(self, name: str, args: dict) -> str:
        try:
            result = self.tools[name](**args)
        except Exception as exc:  # noqa: BLE001 - any tool failure becomes an observation for the model
            return f"Error: {type(exc).__name__}: {exc}"
        return result if isinstance(result, str) else json.dumps(result, default=str)


__all__ = ["ReAct", "Tool", "FINISH"]
