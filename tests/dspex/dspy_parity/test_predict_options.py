"""Predict's options as DSPy users pass them: per-call config, framework options that never reach the
HTTP body, unknown options named, a Prediction given as an input."""

from __future__ import annotations

import pytest

import dspex as dspy
from dspex.testing import ProviderServer

from ..scripted import chat

KEY = "sk-test-options-123456"


@pytest.fixture
def world(tmp_path):
    with ProviderServer(answer=lambda req: chat(answer=str(req.params.get("temperature"))), api_key=KEY) as server, \
            dspy.runtime("local", cache_dir=tmp_path, log_level=None):
        yield server, dspy.LM("openai/m", api_base=server.base_url(), api_key=KEY, model_type="chat", num_retries=2)


def test_per_call_config_is_honoured(world):
    server, lm = world
    qa = dspy.Predict("question -> answer", lm=lm)
    assert qa(question="q").answer == "0.0"
    assert qa(question="q", config={"temperature": 0.7}).answer == "0.7"
    assert lm.config.retries == 2


def test_framework_options_never_reach_the_http_body_and_rollout_id_keys_the_cache(world):
    server, lm = world
    qa = dspy.Predict("question -> answer", lm=lm)
    qa(question="same", config={"rollout_id": 1})
    qa(question="same", config={"rollout_id": 2})  # another rollout: asked again, not a cache hit
    qa(question="same", config={"rollout_id": 1})  # the first rollout again: from the cache
    bodies = [e.body for e in server.log]
    assert len(bodies) == 2 and not any(k in b for b in bodies for k in ("rollout_id", "model_type", "num_retries"))


def test_unknown_options_are_named(world):
    _, lm = world
    with pytest.raises(dspy.ConfigError, match="temprature"):
        dspy.Predict("question -> answer", lm=lm)(question="q", config={"temprature": 0.5})
    with pytest.raises(dspy.ConfigError, match="model_type"):
        dspy.LM("openai/m", api_base="http://127.0.0.1:9/v1", api_key=KEY, model_type="text")


def test_a_prediction_passed_as_an_input_renders_as_its_fields(world):
    server, lm = world
    first = dspy.Prediction(answer="42", reasoning="because")
    dspy.Predict("question, previous -> answer", lm=lm)(question="q", previous=first)
    assert '"answer": "42"' in server.log[-1].body["messages"][-1]["content"]


def test_history_and_inspect_history_are_bounded_and_keyless(world, capsys):
    server, lm = world
    qa = dspy.Predict("question -> answer", lm=lm)
    for i in range(3):
        qa(question=f"q{i}")
    assert [h["response"] for h in lm.history][-1].startswith("[[ ## answer ## ]]")
    text = dspy.inspect_history(n=2)
    assert text.count("RESPONSE:") == 2 and "q2" in text and KEY not in text
    assert KEY not in capsys.readouterr().out
    from dspex.clients.engines import HISTORY

    for i in range(HISTORY + 5):
        lm.request(f"fill {i}")
    assert len(dspy.current_runtime().engines.history()) == HISTORY


def test_n_completions_are_all_kept(tmp_path):
    count = iter(range(100))
    with ProviderServer(answer=lambda req: chat(answer=f"a{next(count)}"), api_key=KEY) as server, \
            dspy.runtime("local", cache_dir=tmp_path, log_level=None):
        lm = dspy.LM("openai/m", api_base=server.base_url(), api_key=KEY)
        pred = dspy.Predict("question -> answer", n=3, lm=lm)(question="q")
        assert len(pred.completions) == 3 and len(set(pred.completions.answer)) == 3
        assert pred.answer == pred.completions.answer[0]
        assert len(server.log) == 3 and pred.usage.total_tokens == sum(
            e.prompt_tokens + e.completion_tokens for e in server.log)
        assert all("n" not in e.body for e in server.log)
