"""A user module's result carries every predictor call made inside it, named by named_predictors()."""

from __future__ import annotations

import dspex
from dspex.programs import trace

from ..scripted import TwoStep
from .test_programs import lm, script  # noqa: F401  (fixtures)




def test_every_step_of_a_user_module_is_in_its_result(lm):  # noqa: F811
    program = TwoStep(lm)
    pred = program(question="q1")
    assert [s.predictor for s in pred.trace] == ["draft", "polish"]
    assert pred.usage.total_tokens == sum(s.usage.total_tokens for s in pred.trace) > 0
    assert pred.usage.prompt_tokens > pred.trace[1].usage.prompt_tokens  # both calls counted, not the last


def test_an_explicit_scope_names_a_lone_predictor_and_nests():
    predict = dspex.Predict("q -> a")
    with trace.collect(predict) as steps:
        assert trace.step_name(predict) == "self"
        trace.record(trace.TraceStep("self", {"q": 1}, {"a": 2}))
        inner = dspex.Predict("q -> a")
        assert trace.step_name(inner) == "Predict"  # not part of the traced program
    assert len(steps) == 1 and not trace.in_scope()
