"""A history turn that called tools: replayed natively (assistant tool_calls + tool messages) or as text."""

from __future__ import annotations

import json

import pytest

import dspex
from dspex.adapters import ChatAdapter, JSONAdapter
from dspex.adapters.types import History, Reasoning, Tool, ToolCallResults, ToolCalls


@pytest.fixture(autouse=True)
def rt(tmp_path):
    """The spy LM's client lives in this runtime (never the process's default one, which other tests see)."""
    with dspex.runtime("local", cache_dir=tmp_path, log_level=None) as runtime:
        yield runtime


def search(query: str) -> str:
    """Search for documents."""
    return query


class Agent(dspex.Signature):
    question: str = dspex.InputField()
    history: History = dspex.InputField()
    tools: list[Tool] = dspex.InputField()
    next_thought: Reasoning = dspex.OutputField()
    tool_calls: ToolCalls = dspex.OutputField()


class FunctionCaller(dspex.BaseLM):
    supports_function_calling = True

    def __init__(self) -> None:
        super().__init__("function/caller")
        self.calls: list[dict] = []

    def forward(self, prompt=None, messages=None, **kwargs):
        self.calls.append({"messages": messages, "kwargs": kwargs})
        raise KeyboardInterrupt  # stop at the boundary: only what was sent matters here


def sent(adapter, inputs, lm_kwargs=None):
    lm = FunctionCaller()
    try:
        adapter(lm, dict(lm_kwargs or {}), Agent, [], inputs)
    except KeyboardInterrupt:
        pass
    return lm.calls[0]["messages"], lm.calls[0]["kwargs"]


def history(ids, values, results_ids=None):
    calls = [ToolCalls.ToolCall(id=i, name="search", args={"query": f"q{n}"}) for n, i in enumerate(ids)]
    results = ToolCallResults(tool_call_results=[
        ToolCallResults.ToolCallResult(call_id=i, name="search", value=v)
        for i, v in zip(results_ids or ids, values)])
    return History(messages=[{"question": "Q1", "next_thought": Reasoning(content="Look it up."),
                              "tool_calls": ToolCalls(tool_calls=calls, tool_call_results=results)}])


def test_native_replay_sends_the_calls_and_one_tool_message_per_result():
    messages, kwargs = sent(ChatAdapter(use_native_function_calling=True),
                            {"question": "Q2", "history": history(["c1", "c2"], [{"n": 1}, "two"]),
                             "tools": [Tool(search)]})
    assistant = messages[2]
    assert assistant["role"] == "assistant" and "Look it up." in assistant["content"]
    assert [c["id"] for c in assistant["tool_calls"]] == ["c1", "c2"]
    assert json.loads(assistant["tool_calls"][0]["function"]["arguments"]) == {"query": "q0"}
    assert [(m["role"], m["tool_call_id"], m["content"]) for m in messages[3:5]] == [
        ("tool", "c1", '{"n": 1}'), ("tool", "c2", "two")]
    assert "Q2" in messages[5]["content"] and "tool_call_results" not in messages[5]["content"]
    assert kwargs["tools"][0]["function"]["name"] == "search"


def test_results_that_do_not_match_the_calls_are_not_replayed():
    messages, _ = sent(ChatAdapter(use_native_function_calling=True),
                       {"question": "Q2", "history": history(["c1"], ["x"], results_ids=["other"]),
                        "tools": [Tool(search)]})
    assert all("tool_calls" not in m and m["role"] != "tool" for m in messages)


def test_without_native_calling_the_results_are_a_user_turn_of_text():
    for adapter in (ChatAdapter(), JSONAdapter(use_native_function_calling=False)):
        messages = adapter.format(Agent, [], {"question": "Q2", "history": history(["c1"], ["cat"]),
                                              "tools": [Tool(search)]})
        assert [m["role"] for m in messages[1:]] == ["user", "assistant", "user", "user"]
        assert "tool_call_results" in messages[3]["content"] and "cat" in messages[3]["content"]
        assert "tool_call_results" not in messages[2]["content"]


def test_parallel_tool_calls_comes_with_a_tool_choice():
    _, kwargs = sent(ChatAdapter(use_native_function_calling=True, parallel_tool_calls=True),
                     {"question": "Q", "history": History(messages=[]), "tools": [Tool(search)]})
    assert kwargs["parallel_tool_calls"] is True and kwargs["tool_choice"] == "auto"
    _, kwargs = sent(ChatAdapter(use_native_function_calling=True, parallel_tool_calls=True),
                     {"question": "Q", "history": History(messages=[]), "tools": [Tool(search)]},
                     {"parallel_tool_calls": False, "tool_choice": "required"})
    assert kwargs["parallel_tool_calls"] is False and kwargs["tool_choice"] == "required"
