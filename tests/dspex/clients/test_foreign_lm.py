"""An LM object that is not a dspex LM (DSPy's duck-typed LM: ``lm(messages=...)`` -> completions)."""

from __future__ import annotations

from unittest import mock

import pytest

import dspex
from dspex.errors import ConfigError, MalformedResponse


class MyClient:
    model = "my/client"

    def __init__(self):
        self.seen = []

    def __call__(self, messages=None, **kwargs):
        self.seen.append(kwargs)
        return ["[[ ## answer ## ]]\nfrom my client"]


def test_a_plain_callable_object_answers_a_predictor():
    client = MyClient()
    pred = dspex.Predict("question -> answer", lm=client, temperature=0.3)(question="hi?")
    assert pred.answer == "from my client"
    assert client.seen == [{"temperature": 0.3}]  # the call's options reach it; dspex's own stay home


def test_a_mock_with_the_lm_spec_is_called_as_dspy_calls_it():
    lm = mock.MagicMock(spec=dspex.LM)
    lm.return_value = ["[[ ## answer ## ]]\n4"]
    with dspex.context(lm=lm):
        assert dspex.Predict("question -> answer")(question="2+2?").answer == "4"
    lm.assert_called_once()
    assert lm.call_args.kwargs["messages"][-1]["role"] == "user"


def test_an_object_that_answers_garbage_is_a_typed_error():
    with pytest.raises(MalformedResponse, match="list of completions"):
        dspex.Predict("question -> answer", lm=lambda messages=None, **kw: 42)(question="hi?")


def test_something_that_cannot_be_called_is_a_config_error():
    with pytest.raises(ConfigError, match="lm must be"):
        dspex.Predict("question -> answer", lm=object())(question="hi?")


def test_an_async_call_awaits_the_objects_own_acall_on_the_callers_loop():
    import asyncio

    class AsyncClient:
        model = "my/async"

        def __init__(self):
            self.loops = []

        def __call__(self, messages=None, **kwargs):
            raise AssertionError("the sync call is not used under acall")

        async def acall(self, messages=None, **kwargs):
            self.loops.append(asyncio.get_running_loop())
            return ["[[ ## answer ## ]]\nawaited"]

    client = AsyncClient()

    async def main():
        pred = await dspex.Predict("question -> answer", lm=client).acall(question="hi?")
        return pred, asyncio.get_running_loop()

    pred, loop = asyncio.run(main())
    assert pred.answer == "awaited" and client.loops == [loop]
