"""A ``dspy.Reasoning`` output on a model that thinks natively: the adapter leaves the field to the model,
asks with ``reasoning_effort`` (each wire format as its provider takes it) and reads the thinking back."""

from __future__ import annotations

import json

import pytest

import dspex as dspy
from dspex.testing import ProviderServer, SimAnswer

from ..scripted import chat

KEY = "sk-test-0123456789abcdef"
THINKING = "Paris is the capital, so the answer is Paris."
MODELS = {"anthropic": "claude-sonnet-4-5", "gemini": "gemini-2.5-flash", "openai": "deepseek-reasoner"}
ASKED = {"anthropic": '"thinking": {"type": "enabled", "budget_tokens": 1024}',
         "gemini": '"thinkingConfig": {"thinkingBudget": 1024, "includeThoughts": true}',
         "openai": '"reasoning_effort": "low"'}


class Capital(dspy.Signature):
    """Name the capital."""

    country: str = dspy.InputField()
    reasoning: dspy.Reasoning = dspy.OutputField()
    answer: str = dspy.OutputField()


def answer(req):
    if "reasoning" in req.system:  # the field is in the prompt: the model writes it as text
        return chat(reasoning="written in the answer", answer="Paris")
    return SimAnswer(chat(answer="Paris"), reasoning=THINKING)


@pytest.fixture
def world(tmp_path):
    with ProviderServer(answer=answer, api_key=KEY) as server, \
            dspy.runtime("local", cache_dir=tmp_path / "cache", log_level=None):
        yield server


def lm_for(server, provider, model=None, **kwargs):
    return dspy.LM(f"{provider}/{model or MODELS[provider]}", api_key=KEY, api_base=server.base_url(provider),
                   cache=False, rpm=None, **kwargs)


@pytest.mark.parametrize("provider", sorted(MODELS))
def test_a_thinking_model_fills_the_reasoning_field_with_its_own_thinking(world, provider):
    pred = dspy.Predict(Capital, lm=lm_for(world, provider))(country="France")
    assert pred.answer == "Paris" and pred.reasoning == dspy.Reasoning(content=THINKING)
    body = json.dumps(world.log[-1].body)
    assert ASKED[provider] in body and "reasoning_effort" not in body.replace(ASKED["openai"], "")
    assert world.log[-1].completion_tokens > 5  # the thinking is billed as output


def test_anthropic_thinking_is_sent_at_its_default_temperature_within_max_tokens(world):
    dspy.Predict(Capital, lm=lm_for(world, "anthropic", temperature=0.0, max_tokens=300))(country="France")
    body = world.log[-1].body
    assert "temperature" not in body and body["max_tokens"] > body["thinking"]["budget_tokens"]


def test_a_model_that_keeps_its_thinking_to_itself_writes_the_field_as_text(world):
    pred = dspy.Predict(Capital, lm=lm_for(world, "openai", "gpt-4o-mini"))(country="France")
    assert pred.reasoning == "written in the answer" and "reasoning_effort" not in world.log[-1].body


def test_reasoning_effort_none_on_the_lm_keeps_the_field_in_the_prompt(world):
    pred = dspy.Predict(Capital, lm=lm_for(world, "anthropic", reasoning_effort=None))(country="France")
    assert pred.reasoning == "written in the answer" and "thinking" not in world.log[-1].body


def test_an_unknown_effort_is_a_config_error_naming_the_known_ones(world):
    from dspex.errors import ConfigError

    with pytest.raises(ConfigError, match="reasoning_effort"):
        dspy.Predict(Capital, lm=lm_for(world, "gemini", reasoning_effort="extreme"))(country="France")
