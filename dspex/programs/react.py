"""ReAct: think, call a tool, observe, repeat (at most ``max_iters``), then answer from the trajectory.

Tools are plain callables (or ``dspex.Tool``); their name, docstring and type hints make the schema the
model sees. The run keeps DSPy's trajectory: ``thought_i``, ``tool_name_i``, ``tool_args_i`` and
``observation_i`` (what the tool returned, as returned), shown to the model as fields formatted by the
adapter in force. A tool that raises gives the model an ``Execution error in <tool>: <traceback>``
observation instead of stopping the run. When the prompt outgrows the context window the oldest step is
dropped (``truncate_trajectory``, overridable) and the call retried, at most 3 times.

A tool may be a supervised actor: ``Tool.from_actor(ref, name, desc, args)`` calls ``ref.call(args)``.
``Tool`` itself lives in ``dspex.adapters.types.tool`` (DSPy's path); it is re-exported here.
"""

from __future__ import annotations

import asyncio
import logging
import traceback
from typing import Any, Iterator, Literal

from ..adapters import ChatAdapter
from ..adapters.types import tool as _tool_module
from ..adapters.types.tool import Tool
from ..errors import ConfigError, ContextWindowExceeded
from ..primitives import Prediction
from ..signature import InputField, OutputField, ensure_signature, make_signature
from ..utils import callback as _callback_module
from ..utils.exceptions import format_error_for_lm
from . import react_native
from .react_native import FINISH
from .module import Module, combine
from .predict import ChainOfThought, Predict
from .settings import setting

_ATTEMPTS = 3  # calls of one step with an ever shorter trajectory before giving up on it
_TRACEBACK_FRAMES = 5  # frames of a failing tool's traceback the model reads

logger = logging.getLogger("dspex.predict.react")  # DSPy's logger name
_INTERNAL_FILES = {__file__, _tool_module.__file__, _callback_module.__file__}


def _finished() -> str:
    """The ``finish`` tool: the agent has what it needs (a module-level function, so a ReAct pickles)."""
    return "Completed."


class ReAct(Module):
    """``ReAct("question -> answer", tools=[search, calculator], lm=lm, max_iters=20)``.

    ``react`` (a Predict) picks each step, ``extract`` (a ChainOfThought) answers from the trajectory; both
    are optimizable predictors under DSPy's names. ``max_iters`` may also be passed per call
    (``agent(question=..., max_iters=3)``), as in DSPy."""

    def __init__(self, signature: Any, tools: list[Any], lm: Any = None, max_iters: int = 20, **config: Any) -> None:
        super().__init__()
        if max_iters < 1:
            raise ConfigError(f"ReAct needs max_iters >= 1, got {max_iters}")
        self.signature = base = ensure_signature(signature)
        self.max_iters = max_iters
        wrapped = [Tool.from_callable(t) for t in tools]
        if any(t.name == FINISH for t in wrapped):
            raise ConfigError(f"a tool may not be named {FINISH!r}: it ends the loop")
        self.tools: dict[str, Tool] = {t.name: t for t in wrapped}
        inputs = ", ".join(f"`{n}`" for n in base.input_fields)
        outputs = ", ".join(f"`{n}`" for n in base.output_fields)
        self.tools[FINISH] = Tool(_finished, name=FINISH, args={}, desc=(
            f"Marks the task as complete: all the information needed to produce the outputs ({outputs}) is "
            "now available to be extracted."))
        listing = "\n".join(f"({i}) {tool}" for i, tool in enumerate(self.tools.values(), 1))
        instructions = "\n".join([
            *([f"{base.instructions}\n"] if base.instructions else []),
            f"You are an Agent. In each episode you are given the fields {inputs} as input, and you can see your "
            "trajectory so far.",
            f"Your goal is to use one or more of the supplied tools to collect the information needed to produce "
            f"{outputs}.\n",
            "To do this, in each turn give next_thought, next_tool_name and next_tool_args, also when finishing "
            "the task.",
            "After each tool call you receive the resulting observation, which is appended to your trajectory.\n",
            "In next_thought, reason about the current situation and plan the next steps.",
            "next_tool_name must be one of the following tools, and next_tool_args its arguments:\n",
            listing,
            "When providing `next_tool_args`, the value inside the field must be in JSON format",
        ])
        step_fields = dict(base.input_fields)
        step_fields["trajectory"] = InputField()
        step_fields["next_thought"] = OutputField()
        step_fields["next_tool_name"] = OutputField()
        step_fields["next_tool_args"] = OutputField()
        step = make_signature(step_fields, instructions, "ReActStep")
        step = step.with_updated_fields("trajectory", type_=str).with_updated_fields("next_thought", type_=str)
        step = step.with_updated_fields("next_tool_name", type_=Literal[tuple(self.tools)])  # type: ignore[misc]
        step = step.with_updated_fields("next_tool_args", type_=dict[str, Any])
        self.react = Predict(step, lm=lm, **config)
        extract = base.append("trajectory", InputField(), str)
        self.extract = ChainOfThought(extract, lm=lm, **config)

    # --- the loop ---------------------------------------------------------------------------------------

    def forward(self, **input_args: Any) -> Prediction:
        """The result has the signature's outputs and ``trajectory``, DSPy's dict: ``thought_0``,
        ``tool_name_0``, ``tool_args_0``, ``observation_0``, ..."""
        max_iters = input_args.pop("max_iters", self.max_iters)
        if react_native.uses_native_calls(self):  # the adapter asks for tool calls natively, and the LM makes them
            preds, trajectory = react_native.run(self, input_args, max_iters)
            final = self._call_with_potential_trajectory_truncation(self.extract, trajectory, **input_args)
            return self._result(preds, final, trajectory)
        trajectory: dict[str, Any] = {}
        preds: list[Any] = []
        for idx in range(max_iters):
            try:
                pred = self._call_with_potential_trajectory_truncation(self.react, trajectory, **input_args)
            except (ContextWindowExceeded, ValueError) as err:
                self._log_end(err)
                break
            preds.append(pred)
            self._record(trajectory, idx, pred)
            try:
                observation = self.tools[pred.next_tool_name](**_as_args(pred.next_tool_args))
            except Exception as err:  # noqa: BLE001 - any tool failure becomes an observation for the model
                observation = self._error_observation(pred.next_tool_name, err)
            trajectory[f"observation_{idx}"] = observation
            if pred.next_tool_name == FINISH:
                break
        final = self._call_with_potential_trajectory_truncation(self.extract, trajectory, **input_args)
        return self._result(preds, final, trajectory)

    async def aforward(self, **input_args: Any) -> Prediction:
        """``forward`` for ``await agent.acall(...)``: steps through ``acall``, tools through ``Tool.acall``
        (async tools are awaited)."""
        max_iters = input_args.pop("max_iters", self.max_iters)
        if react_native.uses_native_calls(self):  # the native loop's steps and tools, on a worker thread
            return await asyncio.to_thread(self.forward, **input_args, max_iters=max_iters)
        trajectory: dict[str, Any] = {}
        preds: list[Any] = []
        for idx in range(max_iters):
            try:
                pred = await self._async_call_with_potential_trajectory_truncation(self.react, trajectory,
                                                                                   **input_args)
            except (ContextWindowExceeded, ValueError) as err:
                self._log_end(err)
                break
            preds.append(pred)
            self._record(trajectory, idx, pred)
            try:
                observation = await self.tools[pred.next_tool_name].acall(**_as_args(pred.next_tool_args))
            except Exception as err:  # noqa: BLE001 - any tool failure becomes an observation for the model
                observation = self._error_observation(pred.next_tool_name, err)
            trajectory[f"observation_{idx}"] = observation
            if pred.next_tool_name == FINISH:
                break
        final = await self._async_call_with_potential_trajectory_truncation(self.extract, trajectory, **input_args)
        return self._result(preds, final, trajectory)

    @staticmethod
    def _record(trajectory: dict[str, Any], idx: int, pred: Any) -> None:
        trajectory[f"thought_{idx}"] = pred.next_thought
        trajectory[f"tool_name_{idx}"] = pred.next_tool_name
        trajectory[f"tool_args_{idx}"] = pred.next_tool_args

    @staticmethod
    def _error_observation(name: Any, err: BaseException) -> str:
        """DSPy's ``Execution error in <tool>: `` and the traceback, from the tool's own frames on (ReAct's
        and Tool's frames would only show the model dspex's internals)."""
        tb = err.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename in _INTERNAL_FILES:
            tb = tb.tb_next
        lines = traceback.format_exception(type(err), err, tb, limit=_TRACEBACK_FRAMES)
        return f"Execution error in {name}: \n" + "".join(lines).strip()

    @staticmethod
    def _log_end(err: BaseException) -> None:
        if isinstance(err, ContextWindowExceeded):
            logger.warning("Ending the trajectory: %s", format_error_for_lm(err, traceback_frames=_TRACEBACK_FRAMES))
        else:
            logger.warning("Ending the trajectory: Agent failed to select a valid tool: %s",
                           format_error_for_lm(err, traceback_frames=_TRACEBACK_FRAMES))

    @staticmethod
    def _result(preds: list[Any], final: Any, trajectory: dict[str, Any]) -> Prediction:
        outputs = dict(final.items()) if hasattr(final, "items") else dict(final)
        outputs.pop("trajectory", None)
        steps = [p for p in (*preds, final) if isinstance(p, Prediction)]
        return combine(steps, **outputs, trajectory=trajectory) if steps else Prediction(trajectory=trajectory,
                                                                                        **outputs)

    # --- the trajectory in the prompt ---------------------------------------------------------------------

    def _format_trajectory(self, trajectory: dict[str, Any]) -> str:
        """The trajectory as the model reads it: each entry a field, formatted by the adapter in force (the
        step predictor's own, else the configured one, else ChatAdapter)."""
        if not trajectory:
            return ""
        adapter = getattr(self.react, "adapter", None) or setting("adapter") or ChatAdapter()
        fields = {name: InputField() for name in trajectory}
        fields["x"] = OutputField()
        signature = make_signature(fields, "", "Trajectory")
        try:
            return adapter.format_user_message_content(signature, trajectory)
        except NotImplementedError:  # an adapter with no user-message format of its own (TextAdapter)
            return ChatAdapter().format_user_message_content(signature, trajectory)

    def _call_with_potential_trajectory_truncation(self, module: Any, trajectory: dict[str, Any],
                                                   **input_args: Any) -> Any:
        """``module(**input_args, trajectory=...)``; on ContextWindowExceededError the oldest step is dropped
        from ``trajectory`` (in place) and the call retried, up to 3 attempts in all."""
        tries = _Truncating(self, trajectory)
        for formatted in tries:
            try:
                return module(**input_args, trajectory=formatted)
            except ContextWindowExceeded as err:
                tries.failed(err)
        raise tries.exhausted()

    async def _async_call_with_potential_trajectory_truncation(self, module: Any, trajectory: dict[str, Any],
                                                               **input_args: Any) -> Any:
        """The same, awaiting ``module.acall``."""
        tries = _Truncating(self, trajectory)
        for formatted in tries:
            try:
                return await module.acall(**input_args, trajectory=formatted)
            except ContextWindowExceeded as err:
                tries.failed(err)
        raise tries.exhausted()

    def truncate_trajectory(self, trajectory: dict[str, Any]) -> dict[str, Any]:
        """Drop the oldest tool call (its thought, tool name, arguments and observation) from ``trajectory``,
        in place, and return it. A trajectory of one tool call cannot shrink: ContextWindowExceededError.
        Override it for another policy (e.g. summarizing old steps)."""
        keys = list(trajectory)
        if len(keys) <= 4:  # one step: thought, tool_name, tool_args, observation
            raise ContextWindowExceeded(
                message="The trajectory is too long so the prompt exceeded the context window, but it cannot be "
                        "truncated because it only has one tool call.")
        for key in keys[:4]:
            trajectory.pop(key)
        return trajectory


def _as_args(args: Any) -> dict[str, Any]:
    if args is None:
        return {}
    if isinstance(args, dict):
        return args
    raise ConfigError(f"the tool arguments must be a JSON object, got {args!r}")



class _Truncating:
    """The attempts of one call whose trajectory may exceed the context window: each attempt's formatted
    trajectory; after a failure the oldest step is dropped (``truncate_trajectory``); after the last, the
    error to raise. The sync and async calls share it and differ only in how they call."""

    def __init__(self, react: ReAct, trajectory: dict[str, Any]) -> None:
        self.react, self.trajectory, self.last_error = react, trajectory, None

    def __iter__(self) -> Iterator[str]:
        for _ in range(_ATTEMPTS):
            yield self.react._format_trajectory(self.trajectory)

    def failed(self, err: ContextWindowExceeded) -> None:
        logger.warning("Trajectory exceeded the context window, truncating the oldest tool call information.")
        self.last_error = err
        self.trajectory = self.react.truncate_trajectory(self.trajectory)

    def exhausted(self) -> ContextWindowExceeded:
        error = ContextWindowExceeded(
            message=f"The context window was exceeded even after {_ATTEMPTS} attempts to truncate the trajectory.")
        error.__cause__ = self.last_error
        return error

__all__ = ["ReAct", "Tool", "FINISH"]
