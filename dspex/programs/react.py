"""ReAct: think, call a tool, observe, repeat (at most ``max_iters``), then answer from the trajectory.

Tools are plain callables; their name, docstring and type hints make the schema the model sees. A
tool that raises gives the model an ``Error: ...`` observation instead of stopping the run. A tool
may be a supervised actor: ``Tool.from_actor(ref, name, desc, args)`` calls ``ref.call(args)``.
"""

from __future__ import annotations

import inspect
import json
import typing
from dataclasses import dataclass, replace
from typing import Any, Callable, ClassVar, Literal

import pydantic

from ..errors import ConfigError
from ..primitives import Prediction
from ..signature import InputField, OutputField, ensure_signature, make_signature
from ..utils.callback import with_callbacks
from .module import Module, combine
from .predict import ChainOfThought, Predict

FINISH = "finish"


@dataclass(frozen=True)
class Tool:
    """A callable the agent may use: ``dspex.Tool(func)`` takes its name, description and argument
    schemas from the function (``args`` maps argument names to JSON schemas). Arguments are validated
    into their annotated types (pydantic models included); an ``async`` tool is awaited."""

    func: Callable[..., Any]
    name: str | None = None
    desc: str | None = None
    args: dict | None = None
    _callback_kind: ClassVar[str] = "tool"  # its calls fire the tool hooks (dspex.utils.callback)

    def __post_init__(self) -> None:
        if not callable(self.func):
            raise ConfigError(f"a tool must be callable, got {self.func!r}")
        name = self.name or getattr(self.func, "__name__", type(self.func).__name__)
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "desc", self.desc or inspect.getdoc(self.func) or f"the tool {name}")
        if self.args is None:
            object.__setattr__(self, "args", {n: _schema(a) for n, a in _annotations(self.func).items()})

    @classmethod
    def from_callable(cls, func: Callable[..., Any]) -> "Tool":
        return func if isinstance(func, Tool) else cls(func)

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

    @with_callbacks
    def __call__(self, **kwargs: Any) -> Any:
        hints = _annotations(self.func)
        values = {}
        for key, value in kwargs.items():
            annotation = hints.get(key, Any)
            try:
                values[key] = pydantic.TypeAdapter(annotation).validate_python(value) if annotation is not Any else value
            except pydantic.ValidationError as exc:
                raise ConfigError(f"tool {self.name}: argument {key!r} is not a valid {annotation}: "
                                  f"{exc.errors()[0]['msg']}") from None
        result = self.func(**values)
        if inspect.isawaitable(result):  # an async tool: run it to completion here (ReAct's loop is sync)
            import asyncio

            return asyncio.run(_awaited(result))
        return result

    def describe(self) -> str:
        return f"{self.name}: {self.desc} Arguments (JSON): {json.dumps(self.args)}"


def _annotations(func: Callable[..., Any]) -> dict[str, Any]:
    try:
        params = inspect.signature(func).parameters
    except (TypeError, ValueError):
        return {}
    hints: dict[str, Any] = {}
    try:
        resolved = typing.get_type_hints(func)
    except (NameError, TypeError):
        resolved = {}
    for name, param in params.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        annotation = resolved.get(name, param.annotation)
        hints[name] = Any if annotation is inspect.Parameter.empty else annotation
    return hints


def _schema(annotation: Any) -> dict:
    try:
        return pydantic.TypeAdapter(annotation).json_schema()
    except (pydantic.PydanticUserError, pydantic.PydanticSchemaGenerationError):
        return {}


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


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
        """The result's ``trajectory`` is DSPy's dict: ``thought_0``, ``tool_name_0``, ``tool_args_0``,
        ``observation_0``, ... (the model reads it rendered as text)."""
        steps: list[str] = []
        trajectory: dict[str, Any] = {}
        preds: list[Prediction] = []
        for i in range(self.max_iters):
            pred = self.react(**inputs, trajectory="\n".join(steps) or "(none yet)")
            preds.append(pred)
            name, args = pred.next_tool_name, pred.next_tool_args
            trajectory.update({f"thought_{i}": pred.next_thought, f"tool_name_{i}": name, f"tool_args_{i}": args})
            steps.append(f"Thought {i + 1}: {pred.next_thought}\nTool {i + 1}: {name} {json.dumps(args, default=str)}")
            if name == FINISH:
                trajectory[f"observation_{i}"] = "Completed."
                break
            observation = self._use(name, args)
            trajectory[f"observation_{i}"] = observation
            steps.append(f"Observation {i + 1}: {observation}")
        else:
            steps.append(f"(stopped after max_iters={self.max_iters} steps)")
        final = self.extract(**inputs, trajectory="\n".join(steps))
        return combine([*preds, final], **dict(final.items()), trajectory=trajectory)

    def _use(self, name: str, args: dict) -> str:
        try:
            result = self.tools[name](**args)
        except Exception as exc:  # noqa: BLE001 - any tool failure becomes an observation for the model
            return f"Error: {type(exc).__name__}: {exc}"
        return result if isinstance(result, str) else json.dumps(result, default=str)


__all__ = ["ReAct", "Tool", "FINISH"]
