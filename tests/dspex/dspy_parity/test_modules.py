"""Modules as DSPy users use them: load into an instance, whole-program saves, constructor arguments,
batch, aforward."""

from __future__ import annotations

import asyncio

import pytest

import dspex as dspy
from dspex.testing import ProviderServer

from ..scripted import chat

KEY = "sk-test-modules-123456"


class Shout(dspy.Module):
    def __init__(self, times: int = 1, suffix: str = "!"):
        self.times, self.suffix = times, suffix
        self.answer = dspy.Predict("question -> answer")

    def forward(self, question):
        pred = self.answer(question=question)
        return dspy.Prediction(answer=pred.answer * self.times + self.suffix)


class Async(dspy.Module):
    def __init__(self):
        self.answer = dspy.Predict("question -> answer")

    async def aforward(self, question):
        await asyncio.sleep(0)
        return await self.answer.acall(question=question)

    def forward(self, question):
        raise AssertionError("acall must use aforward")


@pytest.fixture
def lm(tmp_path):
    with ProviderServer(answer=chat(answer="hi"), api_key=KEY) as server, \
            dspy.runtime("local", cache_dir=tmp_path / "cache", log_level=None):
        model = dspy.LM("openai/m", api_base=server.base_url(), api_key=KEY)
        dspy.configure(lm=model)
        yield model


def test_constructor_arguments_save_and_load_back(lm, tmp_path):
    program = Shout(times=2, suffix="?")
    program.answer.demos = [{"question": "q", "answer": "a"}]
    program.save(tmp_path / "p.json")
    back = dspy.load(tmp_path / "p.json")
    assert (back.times, back.suffix, back.answer.demos) == (2, "?", program.answer.demos)
    assert back(question="x").answer == "hihi?"
    fresh = Shout()  # DSPy's state-only way: build it, then load the state
    fresh.load(tmp_path / "p.json")
    assert fresh.answer.demos == program.answer.demos


def test_whole_program_pickles_need_allow_pickle(lm, tmp_path):
    program = Shout(times=3)
    program.save(tmp_path / "p.pkl", save_program=True)
    with pytest.raises(dspy.ConfigError, match="allow_pickle"):
        dspy.load(tmp_path / "p.pkl")
    back = dspy.load(tmp_path / "p.pkl", allow_pickle=True)
    assert back(question="x").answer == "hihihi!"


def test_batch_and_aforward(lm):
    examples = [dspy.Example(question=f"q{i}").with_inputs("question") for i in range(5)]
    predictions = Shout().batch(examples, num_threads=3)
    assert [p.answer for p in predictions] == ["hi!"] * 5
    result = asyncio.run(Async().acall(question="x"))
    assert result.answer == "hi" and result.usage.total_tokens > 0


def test_named_predictors_lists_a_shared_predictor_once_and_survives_cycles():
    class Parent(dspy.Module):
        def __init__(self):
            shared = dspy.Predict("question -> answer")
            self.first, self.again = shared, shared
            self.child = Child(self)

    class Child(dspy.Module):
        def __init__(self, parent):
            self.parent = parent  # a reference back up: must not recurse forever
            self.own = dspy.Predict("question -> answer")

    assert [n for n, _ in Parent().named_predictors()] == ["first", "child.own"]
