"""Predict, ChainOfThought, MultiChainComparison and BestOfN as DSPy has them: DSPy's state keys, LM state
with its class marker (custom classes only with the trusted opt-in, endpoint overrides dropped by default),
``reset``, positional-argument errors, type-mismatch warnings; and dspex's deliberate differences."""

from __future__ import annotations

import json
import logging

import pytest

import dspex as dspy
from dspex.clients.base_lm import LM_CLASS_STATE_KEY
from dspex.utils.dummies import DummyLM


@pytest.fixture
def rt(tmp_path):
    with dspy.runtime("local", cache_dir=tmp_path, log_level=None) as runtime:
        yield runtime


class DeployedLM(dspy.BaseLM):
    """A user's LM with a setting of its own in its state."""

    def __init__(self, model, *, deployment: str, **kwargs):
        super().__init__(model=model, **kwargs)
        self.deployment = deployment

    def dump_state(self):
        return {**super().dump_state(), "deployment": self.deployment}

    @classmethod
    def load_state(cls, state):
        state = {k: v for k, v in state.items() if k != LM_CLASS_STATE_KEY}
        return cls(**state)


class Outer:
    class InnerLM(dspy.BaseLM):
        pass


def test_reset_config_and_positional_arguments():
    p = dspy.Predict("question -> answer", temperature=0.5)
    p.lm, p.traces, p.train, p.demos = "x", ["t"], ["e"], [{"question": "q", "answer": "a"}]
    p.reset()
    assert (p.lm, p.traces, p.train, p.demos) == (None, [], [], [])
    p.update_config(n=2)
    assert p.get_config() == {"temperature": 0.5, "n": 2}
    with pytest.raises(ValueError, match="Positional arguments are not allowed.*'question'"):
        p("what?")


def test_dump_state_has_dspys_keys_and_json_demos(rt):
    p = dspy.Predict(dspy.Signature("question -> answer", "Answer briefly."))
    p.demos = [dspy.Example(question="q", answer="a").with_inputs("question")]
    state = p.dump_state()
    assert list(state) == ["traces", "train", "demos", "signature", "lm"]
    assert state["demos"] == [{"question": "q", "answer": "a"}] and state["lm"] is None
    assert state["signature"]["instructions"] == "Answer briefly."
    assert [f["prefix"] for f in state["signature"]["fields"]] == ["Question:", "Answer:"]
    json.dumps(state)
    p.lm = dspy.LM("openai/gpt-4o-mini", api_key="sk-never-saved-123456", temperature=1, max_tokens=100)
    lm_state = p.dump_state()["lm"]
    assert lm_state[LM_CLASS_STATE_KEY] == "dspy.clients.lm.LM" and lm_state["model"] == "openai/gpt-4o-mini"
    assert (lm_state["temperature"], lm_state["max_tokens"]) == (1, 100)
    assert "sk-never-saved" not in json.dumps(p.dump_state())
    back = dspy.Predict("question -> answer").load_state(json.loads(json.dumps(p.dump_state())))
    assert isinstance(back.lm, dspy.LM) and back.lm.dump_state() == lm_state
    assert back.signature.instructions == "Answer briefly." and back.demos == [{"question": "q", "answer": "a"}]


def test_load_state_reads_dspys_saved_predictor_and_dspexs_earlier_format(rt):
    dspy_state = {"traces": [], "train": [], "demos": [{"augmented": True, "question": "q", "answer": "a"}],
                  "signature": {"instructions": "Be terse.", "fields": [
                      {"prefix": "Question:", "description": "${question}"},
                      {"prefix": "Answer:", "description": "one word"}]},
                  "lm": None}
    p = dspy.Predict("question -> answer: int").load_state(dspy_state)
    assert p.signature.instructions == "Be terse." and p.signature.fields["answer"].desc == "one word"
    assert p.signature.fields["answer"].annotation is int  # types stay the program's own
    assert p.demos[0]["answer"] == "a" and p.lm is None
    earlier = {"signature": {"name": "StringSignature", "string": "question -> answer", "instructions": "Old.",
                             "fields": {"question": {"desc": "the q", "prefix": "Question:"}}, "types": {}},
               "demos": [], "adapter": "JSONAdapter", "lm": "openai/gpt-4o-mini", "config": {"temperature": 0.3}}
    q = dspy.Predict("question -> answer").load_state(earlier)
    assert q.signature.instructions == "Old." and isinstance(q.adapter, dspy.JSONAdapter)
    assert q.config == {"temperature": 0.3} and q.lm is None
    with pytest.raises(dspy.ConfigError):
        dspy.Predict("question -> answer").load_state({"signature": "question -> answer"})


def test_custom_lm_classes_load_only_with_the_trusted_opt_in(rt):
    p = dspy.Predict("input -> output")
    p.lm = DeployedLM(model="custom-model", deployment="prod")
    state = p.dump_state()
    assert state["lm"][LM_CLASS_STATE_KEY].endswith("test_predict_dspy.DeployedLM")
    with pytest.raises(ValueError, match="Refusing to import custom serialized LM class"):
        dspy.Predict("input -> output").load_state(state)
    loaded = dspy.Predict("input -> output").load_state(state, allow_unsafe_lm_state=True)
    assert isinstance(loaded.lm, DeployedLM) and loaded.lm.deployment == "prod"
    nested = dspy.Predict("input -> output")
    nested.lm = Outer.InnerLM(model="nested-model")
    loaded = dspy.Predict("input -> output").load_state(nested.dump_state(), allow_unsafe_lm_state=True)
    assert isinstance(loaded.lm, Outer.InnerLM) and loaded.lm.model == "nested-model"
    forged = DeployedLM(model="m", deployment="d", **{LM_CLASS_STATE_KEY: "evil.module.LM"})
    assert forged.dump_state()[LM_CLASS_STATE_KEY].endswith("DeployedLM")


def test_lm_state_without_a_class_is_dspex_lm_and_endpoint_overrides_need_the_opt_in(rt, caplog):
    p = dspy.Predict("q -> a")
    p.lm = dspy.LM("openai/gpt-4o-mini", temperature=1, max_tokens=100)
    state = p.dump_state()
    state["lm"].pop(LM_CLASS_STATE_KEY)
    assert isinstance(dspy.Predict("q -> a").load_state(state).lm, dspy.LM)
    state["lm"]["api_base"] = "http://override.invalid/v1"
    state["lm"]["api_key"] = "sk-from-a-file-123456"
    with caplog.at_level(logging.WARNING):
        safe = dspy.Predict("q -> a").load_state(state)
    assert "Ignoring unsafe LM config key" in caplog.text and "api_base" in caplog.text
    assert safe.lm.config.base_url != "http://override.invalid/v1"
    trusted = dspy.Predict("q -> a").load_state(state, allow_unsafe_lm_state=True)
    assert trusted.lm.config.base_url == "http://override.invalid/v1"
    for loaded in (safe, trusted):  # a key in a file is never used: it comes from the environment
        assert loaded.lm._key is None or loaded.lm._key.reveal() != "sk-from-a-file-123456"


def test_chain_of_thought_has_a_predict_and_dspys_state_keys(rt):
    lm = DummyLM([{"reasoning": "one more than one", "answer": "2"}])
    cot = dspy.ChainOfThought("question -> answer", lm=lm)
    assert list(cot.predict.signature.output_fields) == ["reasoning", "answer"]
    assert [n for n, _ in cot.named_predictors()] == ["predict"] and list(cot.dump_state()) == ["predict"]
    assert cot.signature is cot.predict.signature and cot.lm is lm  # the inner Predict's, through the CoT
    assert cot(question="1+1?").answer == "2"
    rebuilt = dspy.ChainOfThought.from_config(json.loads(json.dumps(cot.dump_config())))
    assert rebuilt.predict.signature == cot.predict.signature  # reasoning is not added twice

    class Program(dspy.Module):
        def __init__(self):
            super().__init__()
            self.respond = dspy.ChainOfThought("question -> answer")

    assert list(Program().dump_state()) == ["respond.predict"]


def test_multi_chain_comparison_takes_dspys_completions(rt):
    attempts = [dspy.Prediction(rationale="clear days are blue", answer="blue"),
                dspy.Prediction(reasoning="I think green", answer="green"),
                dspy.Prediction(rationale="pictures show blue", answer="blue")]
    lm = DummyLM([{"rationale": "most say blue", "answer": "blue"}])
    mcc = dspy.MultiChainComparison("question -> answer", lm=lm)
    out = mcc(attempts, question="Sky colour?")
    assert (out.rationale, out.answer) == ("most say blue", "blue")
    shown = lm.history[-1]["messages"][-1]["content"]
    assert "I'm trying to I think green I'm not sure but my prediction is green" in shown
    with pytest.raises(dspy.ConfigError, match="M=3"):
        mcc(attempts[:2], question="Sky colour?")
    assert [n for n, _ in mcc.named_predictors()] == ["predict"]


def test_best_of_n_counts_any_failure_and_raises_past_fail_count(rt):
    calls = []

    class Flaky(dspy.Module):
        def __init__(self):
            super().__init__()
            self.predictor = dspy.Predict("question -> answer")

        def forward(self, **kwargs):
            calls.append(1)
            if len(calls) <= 2:
                raise ValueError("deliberately failing")
            return self.predictor(**kwargs)

    with dspy.context(lm=DummyLM([{"answer": "Brussels"}] * 3)):
        assert dspy.BestOfN(Flaky(), N=3, reward_fn=lambda a, p: 1.0, threshold=1.0)(question="?").answer == "Brussels"
        calls.clear()
        with pytest.raises(ValueError):
            dspy.BestOfN(Flaky(), N=3, reward_fn=lambda a, p: 1.0, threshold=1.0, fail_count=1)(question="?")
        assert len(calls) == 2


def test_type_mismatch_warns_and_defaults_fill_missing_inputs(rt, caplog):
    class Typed(dspy.Signature):
        count: int = dspy.InputField()
        tags: list[str] = dspy.InputField()
        context: str = dspy.InputField(default="DEFAULT_CONTEXT")
        result: str = dspy.OutputField()

    lm = DummyLM([{"result": "ok"}] * 3)
    p = dspy.Predict(Typed, lm=lm)
    with caplog.at_level(logging.WARNING):
        p(count="x", tags=["a", 1])
    assert "Type mismatch for field 'count': expected int" in caplog.text
    assert "Type mismatch for field 'tags': expected list[str]" in caplog.text
    assert "DEFAULT_CONTEXT" in lm.history[-1]["messages"][-1]["content"]
    caplog.clear()
    with caplog.at_level(logging.WARNING), dspy.context(warn_on_type_mismatch=False):
        p(count="x", tags=["a"])
    assert "Type mismatch" not in caplog.text


def test_deliberate_differences_unknown_keyword_and_missing_input_are_errors(rt):
    p = dspy.Predict("question -> answer", lm=DummyLM([{"answer": "a"}]))
    with pytest.raises(dspy.ConfigError, match="bogus"):
        p(question="q", bogus=1)  # DSPy warns and drops it
    with pytest.raises(dspy.SignatureError, match="question"):
        p()  # DSPy warns and calls the LM without it
