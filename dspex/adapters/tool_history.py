"""A conversation-history turn that called tools, replayed to the LM.

A ``History`` turn may hold a ``ToolCalls`` value with the ``tool_call_results`` of running them (ReAct and
agent loops keep their steps so). With native function calling the turn is replayed as the provider's own
messages: an assistant message carrying ``tool_calls`` (OpenAI's shape; each wire format maps it) and one
``tool`` message per result, matched by call id; calls whose results do not match their ids one for one are
replayed as text only. Without native calling the assistant turn shows the calls as text and a user message
shows their results, under a ``tool_call_results`` marker.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

from ..signature import InputField, SignatureMeta, make_signature
from .types.tool import ToolCallResults, ToolCalls
from .utils import serialize_for_json

Message = dict[str, Any]  # a chat message (base.py's alias: this module sits below it)

RESULTS_SIGNATURE = make_signature({"tool_call_results": (ToolCallResults, InputField())})


def tool_calls_in(turn: Mapping[str, Any]) -> tuple[str | None, ToolCalls | None]:
    """The turn's field holding tool calls (a ToolCalls, or its dict form) and the calls, if any."""
    for name, value in turn.items():
        if isinstance(value, ToolCalls) or (isinstance(value, Mapping) and "tool_calls" in value):
            return name, ToolCalls.model_validate(value)
    return None, None


def _results(calls: ToolCalls) -> ToolCallResults | None:
    results = calls.tool_call_results
    return ToolCallResults.model_validate(results) if results is not None else None


def _result_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(serialize_for_json(value), ensure_ascii=False)


def _as_message_call(call: Any) -> dict[str, Any]:
    arguments = json.dumps(serialize_for_json(call.args), ensure_ascii=False)
    return {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": arguments}}


def replay_turn(adapter: Any, signature: SignatureMeta, turn: Mapping[str, Any]) -> list[Message]:
    """The messages of one history turn, as ``adapter`` (a :class:`~dspex.adapters.base.Adapter`) formats
    its parts (``signature``: the request's, less the history field)."""
    field, calls = tool_calls_in(turn)
    results = _results(calls) if calls is not None else None
    messages: list[Message] = []
    # the output reminder stays on a turn that had inputs (the prompt then matches the original request's,
    # which a provider's prompt cache can reuse); a turn of outputs alone gets no user message
    user = adapter.format_user_message_content(signature, turn,
                                               main_request=any(n in turn for n in signature.input_fields))
    if user:
        messages.append({"role": "user", "content": user})
    if adapter.use_native_function_calling and calls is not None:
        shown = signature
        for name, info in signature.output_fields.items():
            if info.annotation is ToolCalls or turn.get(name) is None:
                shown = shown.delete(name)
        content = adapter.format_assistant_message_content(shown, turn) if shown.output_fields else ""
        ids = [call.id for call in calls.tool_calls]
        if results is not None and (not all(ids) or ids != [r.call_id for r in results.tool_call_results]):
            results = None  # results that do not answer these calls one for one are not replayed
        if content or results is not None:
            assistant: dict[str, Any] = {"role": "assistant", "content": content or None}
            if results is not None:
                assistant["tool_calls"] = [_as_message_call(call) for call in calls.tool_calls]
            messages.append(assistant)
        for result in results.tool_call_results if results is not None else ():
            messages.append({"role": "tool", "tool_call_id": result.call_id, "name": result.name,
                             "content": _result_text(result.value)})
        return messages
    shown_turn = turn
    if field is not None and results is not None:
        shown_turn = {**turn, field: calls.model_copy(update={"tool_call_results": None})}
    assistant_text = adapter.format_assistant_message_content(signature, shown_turn)
    if assistant_text:
        messages.append({"role": "assistant", "content": assistant_text})
    if results is not None:
        messages.append({"role": "user", "content": adapter.format_user_message_content(
            RESULTS_SIGNATURE, {"tool_call_results": results})})
    return messages


__all__ = ["tool_calls_in", "replay_turn", "RESULTS_SIGNATURE"]
