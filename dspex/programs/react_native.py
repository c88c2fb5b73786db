"""ReAct's loop on native tool calling: when the adapter in force asks for tool calls natively
(``use_native_function_calling=True``) and the LM can make them, each step is one request whose tools are
the provider's own function declarations, and the model's calls come back as the provider's tool calls.

A step's answer is a thought and any number of calls; they run in order, and the steps so far are replayed
to the model as a ``History`` of tool turns (each call and its result as the provider's own messages, see
:mod:`dspex.adapters.tool_history`), not as a trajectory rendered into text. The loop ends when the model
calls ``finish``, calls nothing, or ``max_iters`` steps have run; the ``extract`` predictor then answers from
the trajectory, as in the text loop. The trajectory dict keeps DSPy's keys (``thought_i``, ``tool_name_i``,
``tool_args_i``, ``observation_i``); a step with several calls holds lists there.

The step's instructions are the signature's own and the agent's rules; the ``react`` predictor's optimized
instructions and demos are written for the text fields (``next_tool_name``, ``next_tool_args``) and are not
used on this path.
"""

from __future__ import annotations

from typing import Any

from ..adapters.types import History
from ..adapters.types.tool import Tool, ToolCallResults, ToolCalls
from ..errors import ContextWindowExceeded
from ..signature import InputField, OutputField, SignatureMeta, make_signature
from .settings import resolve_lm

FINISH = "finish"  # the tool that ends the loop (ReAct's, on both paths)


def uses_native_calls(agent: Any) -> bool:
    """Whether this call of ``agent`` (a :class:`~dspex.programs.react.ReAct`) runs on native tool calls (the adapter asks for them and the LM makes
    them)."""
    predictor = agent.react
    if not callable(getattr(predictor, "adapter_for", None)):  # replaced by the user (a stub step): their loop
        return False
    lm = resolve_lm(predictor.lm, repr(predictor))
    adapter = predictor.adapter_for(lm)
    return bool(getattr(adapter, "use_native_function_calling", False) and getattr(lm, "supports_function_calling",
                                                                                    False))


def step_signature(base: SignatureMeta, finish: str) -> SignatureMeta:
    """The native step: the signature's inputs, the steps so far and the tools -> a thought and tool calls."""
    inputs = ", ".join(f"`{n}`" for n in base.input_fields)
    outputs = ", ".join(f"`{n}`" for n in base.output_fields)
    instructions = "\n".join([
        *([f"{base.instructions}\n"] if base.instructions else []),
        f"You are an Agent. You are given the fields {inputs}, and you can call the tools you are given to "
        f"collect the information needed to produce {outputs}.",
        "In each turn, think about the situation in next_thought, then call one or more tools; their results "
        "come back to you in the next turn.",
        f"When you have all the information needed, call the `{finish}` tool.",
    ])
    fields: dict[str, Any] = {name: field for name, field in base.input_fields.items()}
    fields["history"] = (History, InputField())
    fields["tools"] = (list[Tool], InputField())
    fields["next_thought"] = (str, OutputField())
    fields["tool_calls"] = (ToolCalls, OutputField())
    return make_signature(fields, instructions, "ReActNativeStep")


def run(agent: Any, input_args: dict[str, Any], max_iters: int) -> tuple[list[Any], dict[str, Any]]:
    """The steps' predictions and DSPy's trajectory dict, the loop run on native tool calls."""
    signature = step_signature(agent.signature, FINISH)
    tools = list(agent.tools.values())
    turns: list[dict[str, Any]] = []
    trajectory: dict[str, Any] = {}
    preds: list[Any] = []
    for idx in range(max_iters):
        try:
            pred = agent.react(**input_args, history=History(messages=list(turns)), tools=tools, signature=signature)
        except (ContextWindowExceeded, ValueError) as err:
            agent._log_end(err)
            break
        preds.append(pred)
        calls = [call if call.id else call.model_copy(update={"id": f"call_{idx}_{j}"})  # Gemini's carry no id
                 for j, call in enumerate(pred.tool_calls.tool_calls if pred.tool_calls is not None else [])]
        observations = [_run_call(agent, call) for call in calls]
        trajectory[f"thought_{idx}"] = pred.next_thought
        trajectory[f"tool_name_{idx}"] = _one_or_list([c.name for c in calls])
        trajectory[f"tool_args_{idx}"] = _one_or_list([c.args for c in calls])
        trajectory[f"observation_{idx}"] = _one_or_list(observations)
        turn: dict[str, Any] = dict(input_args) if idx == 0 else {}
        results = ToolCallResults.from_tool_calls_and_values(calls, observations) if calls else None
        turn.update(next_thought=pred.next_thought,
                    tool_calls=ToolCalls(tool_calls=calls, tool_call_results=results))
        turns.append(turn)
        if not calls or any(call.name == FINISH for call in calls):
            break
    return preds, trajectory


def _run_call(agent: Any, call: Any) -> Any:
    tool = agent.tools.get(call.name)
    if tool is None:
        return f"Execution error in {call.name}: no such tool (the tools are {', '.join(agent.tools)})"
    try:
        return tool(**(call.args or {}))
    except Exception as err:  # noqa: BLE001 - any tool failure becomes an observation for the model
        return agent._error_observation(call.name, err)


def _one_or_list(values: list[Any]) -> Any:
    """A step's value in DSPy's trajectory: the one call's, or the list of its calls'."""
    return values[0] if len(values) == 1 else values


__all__ = ["FINISH", "uses_native_calls", "step_signature", "run"]
