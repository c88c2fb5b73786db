"""Callbacks as DSPy documents them: hooks around modules, LM requests, adapter format/parse, tools and
evaluations; global (``configure``/``context``) or per instance; call ids that name the parent call."""

from __future__ import annotations

import asyncio

import pytest
from structlog.testing import capture_logs

import dspex as dspy
from dspex.utils.callback import ACTIVE_CALL_ID, BaseCallback, with_callbacks
from dspex.utils.callback_context import _bind_active_call_id
from dspex.utils.dummies import DummyLM


class Recorder(BaseCallback):
    def __init__(self):
        self.calls = []

    def __getattribute__(self, name):
        if name.startswith("on_"):
            return lambda call_id, *rest: self.calls.append((name, call_id, ACTIVE_CALL_ID.get(), rest))
        return super().__getattribute__(name)

    def names(self):
        return [c[0] for c in self.calls]


@pytest.fixture
def rt(tmp_path):
    with dspy.runtime("local", cache_dir=tmp_path, log_level=None) as runtime:
        yield runtime


class Adder(dspy.Module):
    @with_callbacks
    def forward(self, x: int, y: int = 2) -> int:
        return x + y


def test_a_decorated_method_reports_its_named_inputs_and_output(rt):
    rec = Recorder()
    dspy.configure(callbacks=[rec])
    assert Adder().forward(1) == 3
    (start, call_id, parent, (instance, inputs)), (end, end_id, _, (outputs, error)) = rec.calls
    assert (start, end, inputs, outputs, error, parent) == ("on_module_start", "on_module_end", {"x": 1, "y": 2},
                                                           3, None, None)
    assert call_id == end_id and isinstance(instance, Adder)
    dspy.configure(callbacks=[])
    assert Adder().forward(1) == 3 and len(rec.calls) == 2


def test_per_instance_callbacks_and_errors_reach_the_end_hook_unchanged(rt):
    rec = Recorder()
    boom = ValueError("boom")

    class Failing(dspy.Module):
        def forward(self):
            raise boom

    with pytest.raises(ValueError) as raised:
        Failing(callbacks=[rec])()
    assert raised.value is boom and rec.calls[-1][0] == "on_module_end" and rec.calls[-1][3] == (None, boom)
    Failing()  # another instance has no callbacks
    assert len(rec.calls) == 2 and ACTIVE_CALL_ID.get() is None


def test_a_predict_call_fires_module_adapter_and_lm_hooks_in_order(rt):
    rec = Recorder()
    with dspy.context(lm=DummyLM([{"answer": "4"}]), callbacks=[rec]):
        assert dspy.Predict("question -> answer")(question="2+2?").answer == "4"
    assert rec.names() == ["on_module_start", "on_adapter_format_start", "on_adapter_format_end", "on_lm_start",
                           "on_lm_end", "on_adapter_parse_start", "on_adapter_parse_end", "on_module_end"]
    module_id = rec.calls[0][1]
    assert all(parent == module_id for _, _, parent, _ in rec.calls[1:-1])  # children name the module call
    messages = rec.calls[2][3][0]
    assert messages[-1]["role"] == "user" and rec.calls[6][3][0] == {"answer": "4"}


def test_nested_modules_tools_and_an_evaluation_report_their_parents(rt):
    rec = Recorder()

    def lookup(query: str) -> str:
        return query.upper()

    class Agent(dspy.Module):
        def __init__(self):
            super().__init__()
            self.tool = dspy.Tool(lookup)

        def forward(self, query):
            return dspy.Prediction(answer=self.tool(query=query))

    dspy.configure(callbacks=[rec])
    assert Agent()("hi").answer == "HI"  # positional inputs, as DSPy modules take them
    assert rec.names() == ["on_module_start", "on_tool_start", "on_tool_end", "on_module_end"]
    assert rec.calls[1][2] == rec.calls[0][1]
    rec.calls.clear()
    devset = [dspy.Example(query="a", answer="A").with_inputs("query")]
    result = dspy.Evaluate(devset=devset, metric=lambda e, p: e.answer == p.answer, display_progress=False)(Agent())
    assert result.score == 100.0
    names = rec.names()
    assert names[0] == "on_evaluate_start" and names[-1] == "on_evaluate_end" and "on_tool_start" in names
    assert rec.calls[-1][3][0] is result


def test_a_failing_callback_is_logged_and_the_call_goes_on(rt):
    class Broken(BaseCallback):
        def on_module_start(self, call_id, instance, inputs):
            raise RuntimeError("observer bug")

    dspy.configure(callbacks=[Broken()])
    with capture_logs() as logs:
        assert Adder().forward(2) == 4
    assert [(e["event"], e["hook"]) for e in logs] == [("callback_failed", "on_module_start")]
    assert "observer bug" in logs[0]["error"]


def test_the_active_call_id_follows_work_into_threads_and_tasks(rt):
    seen = []

    class Parent(dspy.Module):
        def forward(self):
            seen.append(("parent", ACTIVE_CALL_ID.get()))
            bound = _bind_active_call_id(lambda: seen.append(("thread", ACTIVE_CALL_ID.get())))
            import threading

            worker = threading.Thread(target=bound)
            worker.start()
            worker.join()
            return dspy.Prediction()

    dspy.configure(callbacks=[Recorder()])
    Parent()()
    assert seen[0][1] is not None and seen[1] == ("thread", seen[0][1])
    assert ACTIVE_CALL_ID.get() is None

    class Slow(dspy.Module):
        @with_callbacks
        async def run(self):
            await asyncio.Event().wait()

    rec = Recorder()

    async def cancel():
        task = asyncio.create_task(Slow(callbacks=[rec]).run())
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancel())
    assert rec.names() == ["on_module_start", "on_module_end"]
    assert isinstance(rec.calls[1][3][1], asyncio.CancelledError)


def test_n_completions_are_one_lm_call_to_the_callbacks_and_n_requests_to_the_provider(rt):
    from dspex.testing import ProviderServer

    from ..scripted import chat

    rec = Recorder()
    with ProviderServer(answer=lambda req: chat(answer="4"), api_key="sk-test-0123456789abcdef") as server:
        lm = dspy.LM("openai/m", api_key="sk-test-0123456789abcdef", base_url=server.base_url(), cache=False)
        with dspy.context(callbacks=[rec]):
            pred = dspy.Predict("question -> answer", lm=lm, n=3)(question="2+2?")
        assert len(server.log) == 3 and len(pred.completions) == 3  # each completion leased and booked
    lm_calls = [c for c in rec.calls if c[0].startswith("on_lm")]
    assert [c[0] for c in lm_calls] == ["on_lm_start", "on_lm_end"]
    assert lm_calls[0][3][1]["overrides"]["n"] == 3 and len(lm_calls[1][3][0]) == 3
    assert [c[0] for c in rec.calls].count("on_adapter_parse_start") == 3


def test_an_evaluation_row_is_reported_but_a_predict_in_it_is_the_evaluate_calls_child_as_in_dspy(rt):
    rec = Recorder()
    dspy.configure(callbacks=[rec], lm=DummyLM([{"answer": "4"}] * 3))
    devset = [dspy.Example(question=f"q{i}", answer="4").with_inputs("question") for i in range(3)]
    dspy.Evaluate(devset=devset, metric=lambda e, p: e.answer == p.answer, num_threads=1)(
        dspy.Predict("question -> answer"))
    evaluate_id = next(c[1] for c in rec.calls if c[0] == "on_evaluate_start")
    rows = [c for c in rec.calls if c[0] == "on_evaluate_row_start"]
    modules = [c for c in rec.calls if c[0] == "on_module_start"]
    assert len(rows) == 3 and all(parent == evaluate_id for _, _, parent, _ in rows)
    assert len(modules) == 3 and all(parent == evaluate_id for _, _, parent, _ in modules)
    assert len([c for c in rec.calls if c[0] == "on_evaluate_row_end"]) == 3
