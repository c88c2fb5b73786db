"""Programs against the provider simulator with scripted answers (good, wrong formats, tool errors, loops)."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import textwrap

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dspex
from dspex.testing import ProviderServer

from ..scripted import chat

KEY = "sk-test-programs-123456"


@pytest.fixture
def script():
    """A server whose answer is chosen by a list of (predicate on the last user text, answer) rules."""
    rules: list = []

    def answer(req):
        for pred, text in rules:
            if pred(req):
                return text(req) if callable(text) else text
        return chat(answer="default")

    with ProviderServer(answer=answer, api_key=KEY) as server:
        server.rules = rules
        yield server


@pytest.fixture
def lm(script, tmp_path):
    with dspex.runtime("local", cache_dir=tmp_path, log_level=None):
        yield dspex.LM("openai/sim", api_key=KEY, base_url=script.base_url(), rpm=None, cache=False)


def test_predict_and_chain_of_thought(script, lm):
    script.rules.append((lambda r: "reasoning" in r.prompt_text, chat(reasoning="2 and 3 make 5", answer="5")))
    script.rules.append((lambda r: True, chat(answer="Paris")))
    pred = dspex.Predict("question -> answer", lm=lm)(question="Capital of France?")
    assert pred.answer == "Paris" and pred.usage.prompt_tokens > 0
    assert pred.trace[0].outputs == {"answer": "Paris"} and pred.trace[0].inputs == {"question": "Capital of France?"}
    cot = dspex.ChainOfThought("question -> answer: int", lm=lm)
    out = cot(question="2+3?")
    assert out.reasoning == "2 and 3 make 5" and out.answer == 5
    assert list(cot.signature.output_fields) == ["reasoning", "answer"]


def test_parse_failure_reasks_then_falls_back_to_json_then_raises(script, lm):
    calls = []

    def bad_then_json(req):
        calls.append(req)
        if "response_format" in req.params or "JSON" in req.prompt_text:
            return json.dumps({"answer": 42})
        return "I think it is forty-two"  # no field markers at all

    script.rules.append((lambda r: True, bad_then_json))
    pred = dspex.Predict("question -> answer: int", lm=lm)(question="?")
    assert pred.answer == 42 and len(calls) == 3  # first try, one re-ask, JSON fallback
    assert "could not be parsed" in calls[1].last_user
    script.rules[:] = [(lambda r: True, "never parseable")]
    with pytest.raises(dspex.AdapterParseError) as info:
        dspex.Predict("question -> answer: int", lm=lm)(question="?")
    assert info.value.raw_text == "never parseable"


def test_missing_lm_is_a_clear_error():
    with pytest.raises(dspex.ConfigError, match="set_lm"):
        dspex.Predict("q -> a")(q="x")


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def broken(x: str) -> str:
    """Always fails."""
    raise RuntimeError("the search index is down")


def test_react_uses_tools_and_turns_tool_errors_into_observations(script, lm):
    def step(req):
        text = req.last_user
        if "observation_1" in text:  # the trajectory's fields, as DSPy shows them
            return chat(next_thought="done", next_tool_name="finish", next_tool_args="{}")
        if "observation_0" in text:
            return chat(next_thought="look it up", next_tool_name="broken", next_tool_args='{"x": "q"}')
        return chat(next_thought="add them", next_tool_name="add", next_tool_args='{"a": 2, "b": 3}')

    script.rules.append((lambda r: "Next Tool Name" in r.prompt_text or "next_tool_name" in r.prompt_text, step))
    script.rules.append((lambda r: True, chat(reasoning="the tool said 5", answer="5")))
    agent = dspex.ReAct("question -> answer", tools=[add, broken], lm=lm, max_iters=6)
    out = agent(question="2+3?")
    assert out.answer == "5"
    assert out.trajectory["observation_0"] == 5 and out.trajectory["tool_args_0"] == {"a": 2, "b": 3}
    error = out.trajectory["observation_1"]  # DSPy's format: the tool's name, then the traceback
    assert error.startswith("Execution error in broken: \nTraceback")
    assert error.endswith("RuntimeError: the search index is down")
    assert out.trajectory["tool_name_2"] == "finish"
    assert [n for n, _ in agent.named_predictors()] == ["react", "extract.predict"]  # DSPy's names
    assert len(out.trace) == 4  # three steps and the extraction


def test_react_loop_that_never_finishes_is_bounded(script, lm):
    script.rules.append((lambda r: "next_tool_name" in r.prompt_text or "Next Tool Name" in r.prompt_text,
                         chat(next_thought="again", next_tool_name="add", next_tool_args='{"a": 1, "b": 1}')))
    script.rules.append((lambda r: True, chat(reasoning="gave up", answer="unknown")))
    out = dspex.ReAct("question -> answer", tools=[add], lm=lm, max_iters=3)(question="loop?")
    assert [k for k in out.trajectory if k.startswith("observation")] == ["observation_0", "observation_1",
                                                                          "observation_2"]


def called(how):
    """Call a module as ``module(**inputs)`` or ``asyncio.run(module.acall(**inputs))``."""
    import asyncio

    return (lambda module, **inputs: module(**inputs)) if how == "sync" else \
        (lambda module, **inputs: asyncio.run(module.acall(**inputs)))


@pytest.mark.parametrize("how", ["sync", "async"])
def test_multichain_comparison_best_of_n_and_refine(script, lm, how):
    call = called(how)
    seen_rollouts = []
    script.rules.append((lambda r: "reasoning_attempt_3" in r.prompt_text,
                         chat(rationale="attempt 2 is right", answer="B")))
    script.rules.append((lambda r: "reasoning" in r.prompt_text.lower(),
                         lambda r: seen_rollouts.append(r.params.get("temperature")) or chat(reasoning="r", answer="A")))
    mcc = dspex.MultiChainComparison("question -> answer", M=3, lm=lm)
    out = call(mcc, question="which?")
    assert out.answer == "B" and out.rationale == "attempt 2 is right" and len(out.trace) == 4
    assert seen_rollouts == [0.7, 0.7, 0.7]

    answers = iter(["wrong", "wrong", "right", "never"])
    script.rules[:] = [(lambda r: True, lambda r: chat(answer=next(answers)))]
    best = dspex.BestOfN(dspex.Predict("q -> answer", lm=lm), N=4,
                         reward_fn=lambda args, pred: float(pred.answer == "right"), threshold=1.0)
    assert call(best, q="x").answer == "right"

    prompts = []
    script.rules[:] = [(lambda r: True, lambda r: prompts.append(r.prompt_text) or chat(answer=str(len(prompts))))]
    ref = dspex.Refine(dspex.Predict("q -> answer", lm=lm), N=3, reward_fn=lambda a, p: float(p.answer == "3"),
                       threshold=1.0)
    assert call(ref, q="x").answer == "3"
    assert "scored 0, below the target 1" in prompts[1]  # the next attempt sees the feedback
    if how == "async":  # each a task on the runtime's loop, not a thread per call
        assert dspex.evaluate.async_runner.runs_async(ref) and runs_on_loop(lm)


def runs_on_loop(lm):
    """The LM's last request ran on the runtime's event loop thread (dspex-loop)."""
    return lm._need_runtime().engines.loop.state.value == "running"


class Pipeline(dspex.Module):
    def __init__(self):
        self.draft = dspex.ChainOfThought("question -> draft")
        self.polish = dspex.Predict("question, draft -> answer", demos=[{"question": "q", "draft": "d", "answer": "a"}])

    def forward(self, question):
        d = self.draft(question=question)
        a = self.polish(question=question, draft=d.draft)
        return dspex.combine([d, a], answer=a.answer)


def test_user_module_names_copies_save_and_load(script, lm, tmp_path):
    script.rules.append((lambda r: "reasoning" in r.prompt_text.lower(), chat(reasoning="r", draft="a draft")))
    script.rules.append((lambda r: True, chat(answer="final")))
    program = Pipeline().set_lm(lm)
    assert [n for n, _ in program.named_predictors()] == ["draft.predict", "polish"]  # DSPy's names
    out = program(question="?")
    assert out.answer == "final" and len(out.trace) == 2
    fresh = program.reset_copy()
    assert fresh.polish.demos == [] and program.polish.demos and fresh.polish.lm is lm
    path = tmp_path / "p.json"
    program.save(path)
    text = path.read_text()
    assert KEY not in text and '"model": "openai/sim"' in text  # the LM's DSPy state, never its key
    loaded = dspex.load(path, lm=lm)
    assert isinstance(loaded, Pipeline) and loaded.dump_state() == program.dump_state()
    assert loaded(question="?").answer == "final"


def test_load_rejects_corrupt_and_incompatible_files(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(dspex.ConfigError, match="cannot read"):
        dspex.load(bad)
    bad.write_text(json.dumps({"dspex_format": 99, "class": "x:y"}))
    with pytest.raises(dspex.ConfigError, match="format 99"):
        dspex.load(bad)
    bad.write_text(json.dumps({"dspex_format": 1, "class": "os:getcwd", "state": {}}))
    with pytest.raises(dspex.ConfigError, match="not a dspex Module"):
        dspex.load(bad)


def test_program_pickled_to_another_process_runs_there(script, lm, tmp_path):
    script.rules.append((lambda r: True, chat(answer="from the other process")))
    blob = pickle.dumps(dspex.Predict("question -> answer", lm=lm, temperature=0.0))
    assert KEY.encode() not in blob
    code = textwrap.dedent(f"""
        import os, pickle, sys, dspex
        program = pickle.loads(sys.stdin.buffer.read())
        with dspex.runtime("local", cache_dir={str(tmp_path)!r}, log_level="error") as rt:
            program.lm.bind(rt)
            print(program(question="?").answer)
    """)
    out = subprocess.run([sys.executable, "-c", code], input=blob, capture_output=True, timeout=60,
                         env={**__import__("os").environ, "OPENAI_API_KEY": KEY})
    assert out.returncode == 0, out.stderr.decode()[-2000:]
    assert out.stdout.decode().strip() == "from the other process"


NAMES = st.sampled_from(["question", "context", "answer", "score", "notes", "title", "topic", "label"])
TYPES = st.sampled_from(["str", "int", "float", "bool", "list[str]", "dict[str, int]", "Literal['a', 'b']"])


@st.composite
def signatures(draw):
    names = draw(st.lists(NAMES, min_size=2, max_size=5, unique=True))
    cut = draw(st.integers(1, len(names) - 1))
    side = lambda ns: ", ".join(f"{n}: {draw(TYPES)}" for n in ns)  # noqa: E731
    instructions = draw(st.text(alphabet="abc xyz.", max_size=30))
    return dspex.Signature(f"{side(names[:cut])} -> {side(names[cut:])}", instructions=instructions or None)


@st.composite
def programs(draw, depth=0):
    kind = draw(st.sampled_from(["predict", "cot", "nested"] if depth < 2 else ["predict", "cot"]))
    if kind == "nested":
        parts = draw(st.lists(programs(depth=depth + 1), min_size=1, max_size=3))
        holder = Holder()
        holder.parts = parts
        return holder
    cls = dspex.Predict if kind == "predict" else dspex.ChainOfThought
    sig = draw(signatures())
    demos = [{n: "x" for n in sig.fields}] * draw(st.integers(0, 2))
    return cls(sig, demos=demos, adapter=draw(st.sampled_from([dspex.ChatAdapter(), dspex.JSONAdapter(),
                                                               dspex.TextAdapter()])))


class Holder(dspex.Module):
    def __init__(self):
        self.parts = []

    def dump_config(self):
        return {"parts": [{"class": f"{type(p).__module__}:{type(p).__qualname__}", "config": p.dump_config()}
                          for p in self.parts]}

    @classmethod
    def from_config(cls, config):
        import importlib

        holder = cls()
        for part in config["parts"]:
            mod, name = part["class"].split(":")
            holder.parts.append(getattr(importlib.import_module(mod), name).from_config(part["config"]))
        return holder


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(program=programs())
def test_any_composition_survives_save_and_load(program, tmp_path):
    path = tmp_path / "prog.json"
    program.save(path)
    loaded = dspex.load(path)
    assert type(loaded) is type(program)
    assert loaded.dump_state() == program.dump_state()
    for (n1, p1), (n2, p2) in zip(program.named_predictors(), loaded.named_predictors()):
        assert n1 == n2 and p1.signature == p2.signature and p1.demos == p2.demos
        assert type(p1.adapter) is type(p2.adapter)


def test_react_tool_can_be_a_supervised_actor(script, lm):
    """A stateful tool lives under supervision; a crash of the tool is an observation and a restart."""
    from supervision import ChildSpec, SupervisorSpec

    from tests.dspex.programs.tools import Tally

    rt = dspex.current_runtime()
    sup = rt.actors.start_supervisor(SupervisorSpec(intensity=3), [ChildSpec("tally", Tally)], name="tools")
    tally = dspex.Tool.from_actor(sup, "tally", "Add n to a running total and return it.",
                                  {"n": {"type": "integer"}}, child="tally")

    def step(req):
        text = req.last_user
        if "observation_2" in text:
            return chat(next_thought="done", next_tool_name="finish", next_tool_args="{}")
        if "observation_1" in text:
            return chat(next_thought="more", next_tool_name="tally", next_tool_args='{"n": 5}')
        if "observation_0" in text:
            return chat(next_thought="break it", next_tool_name="tally", next_tool_args='{"n": -1}')
        return chat(next_thought="count", next_tool_name="tally", next_tool_args='{"n": 2}')

    script.rules.append((lambda r: "next_tool_name" in r.prompt_text, step))
    script.rules.append((lambda r: True, chat(reasoning="r", answer="ok")))
    out = dspex.ReAct("question -> answer", tools=[tally], lm=lm, max_iters=5)(question="count")
    assert out.trajectory["observation_0"] == 2
    crash = out.trajectory["observation_1"]  # the actor crashed on n < 0
    assert crash.startswith("Execution error in tally: ") and "CallFailed" in crash
    assert out.trajectory["observation_2"] == 5  # restarted by its supervisor, state fresh
