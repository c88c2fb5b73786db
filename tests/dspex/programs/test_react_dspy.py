"""ReAct and Tool as DSPy has them: the trajectory dict and its truncation, tool errors as observations,
typed and async tools, the attributes DSPy code reads from a Tool."""

from __future__ import annotations

import asyncio
import pickle
from typing import Any

import pydantic
import pytest

import dspex as dspy
from dspex.errors import ContextWindowExceededError
from dspex.utils.dummies import DummyLM
from dspex.utils.exceptions import format_error_for_lm


class Event(pydantic.BaseModel):
    name: str
    size: int = 1


def add(a: int, b: int = 0) -> int:
    """Add two integers."""
    return a + b


def explode(x: str) -> str:
    """Always fails."""
    raise ValueError(f"no luck with {x}")


# --- Tool ------------------------------------------------------------------------------------------------

def test_tool_is_one_class_under_dspys_paths():
    from dspex.adapters.types import Tool as from_types
    from dspex.adapters.types.tool import Tool as from_module
    from dspex.predict.react import Tool as from_dspy_predict

    assert dspy.Tool is dspy.programs.Tool is from_types is from_module is from_dspy_predict


def test_tool_reads_what_dspy_reads_from_the_function():
    tool = dspy.Tool(add, arg_desc={"a": "the first one"})
    assert (tool.name, tool.desc, tool.has_kwargs) == ("add", "Add two integers.", False)
    assert tool.args == {"a": {"type": "integer", "description": "the first one"}, "b": {"type": "integer", "default": 0}}
    assert tool.arg_types == {"a": int, "b": int} and tool.arg_desc == {"a": "the first one"}
    call = tool.format_as_litellm_function_call()
    assert call["type"] == "function" and call["function"]["name"] == "add"
    assert call["function"]["parameters"]["required"] == ["a"]
    assert str(tool) == ("add, whose description is <desc>Add two integers.</desc>. It takes arguments "
                         "{'a': {'type': 'integer', 'description': 'the first one'}, 'b': {'type': 'integer', "
                         "'default': 0}}.")
    assert repr(tool).startswith("Tool(name=add, desc=Add two integers.")


def test_tool_keeps_what_is_given_and_reads_callable_objects():
    given = dspy.Tool(lambda x: x, name="echo", desc="Echo it.", args={"x": {"type": "string"}})
    assert (given.name, given.desc, given.args) == ("echo", "Echo it.", {"x": {"type": "string"}})

    class Adder:
        def __call__(self, a: int, b: int) -> int:
            """Add two numbers."""
            return a + b

    tool = dspy.Tool(Adder())
    assert (tool.name, tool.desc) == ("Adder", "Add two numbers.")
    assert tool.args == {"a": {"type": "integer"}, "b": {"type": "integer"}}
    assert tool(a=1, b="2") == 3


def test_tool_validates_arguments_into_their_types():
    def schedule(events: list[list[Event]], note=None) -> Any:
        return events

    tool = dspy.Tool(schedule)
    assert tool.args["note"] == {"default": None}
    assert "$defs" not in str(tool.args["events"])  # references inlined, as DSPy does
    assert tool(events=[[{"name": "fair"}]]) == [[Event(name="fair")]]
    with pytest.raises(ValueError, match="Arg events is invalid"):
        tool(events=[[{"size": 2}]])
    with pytest.raises(ValueError, match="Arg when is not in the tool's args"):
        tool(events=[], when="now")

    def loose(x: int, **rest: Any) -> dict:
        return rest

    assert dspy.Tool(loose).has_kwargs and dspy.Tool(loose)(x=1, y=2) == {"y": 2}


def test_tool_acall_awaits_async_tools_and_runs_sync_ones():
    async def double(x: int) -> int:
        await asyncio.sleep(0)
        return 2 * x

    async def both() -> tuple:
        return await dspy.Tool(double).acall(x="4"), await dspy.Tool(add).acall(a=1, b=2)

    assert asyncio.run(both()) == (8, 3)
    assert dspy.Tool(double)(x=3) == 6  # a plain call runs an async tool to completion


def test_tool_call_runs_an_async_tool_inside_a_running_loop():
    async def double(x: int) -> int:
        return 2 * x

    async def from_sync_code_in_a_loop() -> int:
        return dspy.Tool(double)(x=5)

    assert asyncio.run(from_sync_code_in_a_loop()) == 10


# --- ReAct: the loop and its trajectory ------------------------------------------------------------------

def _script(*steps: dict, final: dict) -> DummyLM:
    return DummyLM([*steps, final])


def test_trajectory_keeps_raw_observations_and_tool_errors_in_dspys_format():
    lm = _script({"next_thought": "add", "next_tool_name": "add", "next_tool_args": {"a": 2, "b": 3}},
                 {"next_thought": "boom", "next_tool_name": "explode", "next_tool_args": {"x": "q"}},
                 {"next_thought": "bad", "next_tool_name": "add", "next_tool_args": {"a": "many"}},
                 {"next_thought": "done", "next_tool_name": "finish", "next_tool_args": {}},
                 final={"reasoning": "r", "answer": "5"})
    agent = dspy.ReAct("question -> answer", tools=[add, explode], lm=lm)
    out = agent(question="2+3?")
    traj = out.trajectory
    assert out.answer == "5" and traj["observation_0"] == 5 and traj["observation_3"] == "Completed."
    error = traj["observation_1"]
    assert error.startswith("Execution error in explode: \nTraceback (most recent call last):")
    assert error.endswith("ValueError: no luck with q")
    assert "self.tools" not in error and "with_callbacks" not in error  # only the tool's own frames
    assert traj["observation_2"].startswith("Execution error in add: \n")
    assert "Arg a is invalid" in traj["observation_2"]
    assert list(agent.tools) == ["add", "explode", "finish"]
    assert [n for n, _ in agent.named_predictors()] == ["react", "extract.predict"]
    # the model reads the trajectory as fields
    last_step = lm.history[3]["messages"][-1]["content"]
    assert "[[ ## observation_2 ## ]]" in last_step and "[[ ## thought_0 ## ]]" in last_step


def test_max_iters_may_be_given_per_call_and_bounds_the_loop():
    step = {"next_thought": "again", "next_tool_name": "add", "next_tool_args": {"a": 1, "b": 1}}
    lm = _script(step, step, final={"reasoning": "r", "answer": "?"})
    out = dspy.ReAct("question -> answer", tools=[add], lm=lm)(question="loop", max_iters=2)
    assert [k for k in out.trajectory if k.startswith("observation")] == ["observation_0", "observation_1"]
    assert dspy.ReAct("question -> answer", tools=[add]).max_iters == 20  # DSPy's default


def test_the_async_path_awaits_async_tools():
    async def lookup(key: str) -> str:
        await asyncio.sleep(0)
        return key.upper()

    lm = _script({"next_thought": "look", "next_tool_name": "lookup", "next_tool_args": {"key": "k"}},
                 {"next_thought": "done", "next_tool_name": "finish", "next_tool_args": {}},
                 final={"reasoning": "r", "answer": "K"})
    agent = dspy.ReAct("question -> answer", tools=[lookup])

    async def run() -> Any:
        with dspy.context(lm=lm):
            return await agent.acall(question="q")

    out = asyncio.run(run())
    assert out.answer == "K" and out.trajectory["observation_0"] == "K"


def test_a_tool_named_finish_is_refused():
    def finish() -> str:
        return "x"

    with pytest.raises(dspy.ConfigError, match="finish"):
        dspy.ReAct("question -> answer", tools=[finish])


# --- ReAct: the context window ---------------------------------------------------------------------------

def _steps(n: int) -> dict:
    traj: dict = {}
    for i in range(n):
        traj.update({f"thought_{i}": "t", f"tool_name_{i}": "add", f"tool_args_{i}": {}, f"observation_{i}": i})
    return traj


def test_truncation_drops_the_oldest_step_in_place_and_stops_at_one():
    agent = dspy.ReAct("question -> answer", tools=[add])
    traj = _steps(2)
    assert agent.truncate_trajectory(traj) is traj and list(traj)[0] == "thought_1"
    with pytest.raises(ContextWindowExceededError):
        agent.truncate_trajectory(traj)


def test_a_step_too_long_is_retried_shorter_then_given_up():
    agent = dspy.ReAct("question -> answer", tools=[add])
    seen = []

    def shrinking(**kwargs: Any) -> Any:
        seen.append(kwargs["trajectory"])
        if len(seen) < 3:
            raise ContextWindowExceededError()
        return dspy.Prediction(answer="ok")

    traj = _steps(3)
    assert agent._call_with_potential_trajectory_truncation(shrinking, traj, question="q").answer == "ok"
    assert list(traj) == list(_steps(3))[8:]  # two steps dropped, in place
    assert "thought_0" in seen[0] and "observation_2" in seen[2]

    def never(**kwargs: Any) -> Any:
        raise ContextWindowExceededError(message="too long", model="m")

    with pytest.raises(ContextWindowExceededError, match="even after 3 attempts") as info:
        agent._call_with_potential_trajectory_truncation(never, _steps(5), question="q")
    assert isinstance(info.value.__cause__, ContextWindowExceededError)


def test_context_window_errors_end_the_loop_and_extract_still_answers():
    agent = dspy.ReAct("question -> answer", tools=[add])

    def too_long(**kwargs: Any) -> Any:
        raise ContextWindowExceededError()

    agent.react = too_long
    agent.extract = lambda **kwargs: dspy.Prediction(answer="fallback")
    out = agent(question="q")
    assert out.answer == "fallback" and out.trajectory == {}


def test_context_window_error_is_dspys_and_pickles():
    err = ContextWindowExceededError()
    assert "Context window exceeded" in str(err) and "HTTP" not in str(err)
    again = pickle.loads(pickle.dumps(ContextWindowExceededError(message="long", model="openai/x")))
    assert isinstance(again, ContextWindowExceededError) and "long" in str(again) and again.model == "openai/x"
    assert dspy.errors.provider_error(400, "maximum context length exceeded").status == 400


def test_format_error_for_lm():
    try:
        raise ValueError("bad")
    except ValueError as exc:
        assert format_error_for_lm(exc) == "bad"
        text = format_error_for_lm(exc, traceback_frames=2)
    assert text.startswith("\nTraceback") and text.endswith("ValueError: bad")


# --- ReAct: copies and pickles ---------------------------------------------------------------------------

def test_react_pickles_and_deep_copies_with_its_tools():
    agent = dspy.ReAct("question -> answer", tools=[add, dspy.Tool(explode, desc="Fails.")], max_iters=4)
    for copy in (pickle.loads(pickle.dumps(agent)), agent.deepcopy()):
        assert list(copy.tools) == ["add", "explode", "finish"] and copy.max_iters == 4
        assert copy.tools["add"](a=1, b=2) == 3 and copy.tools["finish"]() == "Completed."
        assert copy.tools["explode"].desc == "Fails."


def test_tools_in_a_prompt_show_as_their_text_and_callables_validate_into_tools():
    from dspex.adapters.utils import format_field_value

    assert format_field_value(None, [dspy.Tool(add)]) == (
        '["add, whose description is <desc>Add two integers.</desc>. It takes arguments {\'a\': {\'type\': '
        '\'integer\'}, \'b\': {\'type\': \'integer\', \'default\': 0}}."]')
    tools = pydantic.TypeAdapter(list[dspy.Tool]).validate_python([add, dspy.Tool(explode)])
    assert [t.name for t in tools] == ["add", "explode"]
