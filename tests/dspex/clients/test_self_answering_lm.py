"""An LM subclass that answers in its own ``__call__`` (DSPy's test doubles): every request of a program
reaches that method; named without a provider it needs none until its ``super().__call__`` sends."""

from __future__ import annotations

import pytest

import dspex
from dspex.errors import ConfigError
from dspex.testing import ProviderServer

from ..scripted import chat

KEY = "sk-test-0123456789abcdef"


class SpyLM(dspex.LM):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls = []

    def __call__(self, prompt=None, messages=None, **kwargs):
        self.calls.append({"messages": messages, "kwargs": kwargs})
        if self.model.startswith("openai/"):
            return super().__call__(prompt=prompt, messages=messages, **kwargs)
        return ["[[ ## answer ## ]]\nfrom the spy"]


@pytest.fixture
def rt(tmp_path):
    with dspex.runtime("local", cache_dir=tmp_path / "cache", log_level=None) as runtime:
        yield runtime


def test_a_spy_named_without_a_provider_answers_every_request_of_a_program(rt):
    spy = SpyLM("dummy_model")
    with dspex.context(lm=spy):
        pred = dspex.Predict("question -> answer")(question="hi?")
    assert pred.answer == "from the spy" and spy.model == "dummy_model"
    assert "hi?" in spy.calls[0]["messages"][-1]["content"]


def test_its_super_call_needs_a_provider_and_says_so(rt):
    class PassThrough(SpyLM):
        def __call__(self, prompt=None, messages=None, **kwargs):
            return dspex.LM.__call__(self, prompt=prompt, messages=messages, **kwargs)

    with pytest.raises(ConfigError, match="names no provider"):
        PassThrough("dummy_model")(messages=[{"role": "user", "content": "hi"}])


def test_a_spy_with_a_provider_sees_the_request_and_its_super_call_is_leased_and_booked(rt):
    with ProviderServer(answer=lambda req: chat(answer="from the server"), api_key=KEY) as server:
        spy = SpyLM("openai/spy", api_key=KEY, base_url=server.base_url(), cache=False)
        pred = dspex.Predict("question -> answer", lm=spy)(question="hi?")
        assert pred.answer == "from the server" and len(spy.calls) == 1 and len(server.log) == 1
        assert spy.usage().ok == 1


def test_the_plain_lm_still_refuses_a_model_without_a_provider(rt):
    with pytest.raises(ConfigError, match="provider/model"):
        dspex.LM("dummy_model")


def test_lm_acall_gives_the_same_list_as_the_call(rt):
    import asyncio

    with ProviderServer(answer=lambda req: "plain text", api_key=KEY) as server:
        lm = dspex.LM("openai/m", api_key=KEY, base_url=server.base_url(), cache=False)
        assert asyncio.run(lm.acall("hi")) == lm("hi") == ["plain text"]
