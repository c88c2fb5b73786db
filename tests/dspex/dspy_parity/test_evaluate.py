"""dspy.Evaluate habits: DSPy's argument names, evaluator(program), results triples, keyword trace,
programs that return plain values, and the metrics users reach for."""

from __future__ import annotations

import pytest

import dspex as dspy
from dspex.metrics import answer_exact_match, answer_passage_match, f1_score, normalize_text


def devset():
    return [dspy.Example(question=q, answer=a).with_inputs("question")
            for q, a in (("What is 1+1?", "2"), ("Capital of France?", "Paris"), ("Color of the sky?", "blue"))]


class Lookup(dspy.Module):
    ANSWERS = {"What is 1+1?": "2", "Capital of France?": "paris.", "Color of the sky?": "green"}

    def forward(self, question):
        return dspy.Prediction(answer=self.ANSWERS[question])


def test_dspy_argument_names_and_call_style():
    def metric(example, pred, trace=None, **kwargs):  # DSPy metrics often take **kwargs
        return answer_exact_match(example, pred)

    evaluator = dspy.Evaluate(devset=devset(), metric=metric, num_threads=2, display_progress=False,
                              display_table=False, max_errors=10)
    result = evaluator(Lookup())
    assert result.score == 66.67  # percent, as DSPy reports it
    assert [score for _, _, score in result.results] == [1.0, 1.0, 0.0]
    assert evaluator.run(Lookup(), devset=devset()[:1]).score == 100.0


def test_a_program_that_returns_a_plain_value_is_scored_like_any_other():
    class Plain(dspy.Module):
        def forward(self, question):
            return ["a", "list"] if "1+1" in question else question.upper()

    result = dspy.Evaluate(devset(), lambda ex, pred, trace=None: isinstance(pred, str), progress=False).run(Plain())
    assert [r.score for r in result.rows] == [0.0, 1.0, 1.0] and not result.errors
    assert result.to_table() and result.rows[0].to_json()["prediction"] == {"value": ["a", "list"]}


def test_failure_score_and_unknown_dspy_options():
    def broken(example, pred, trace=None):
        raise ValueError("boom")

    result = dspy.Evaluate(devset(), broken, failure_score=0.25, progress=False).run(Lookup())
    assert result.score == 25.0 and len(result.errors) == 3
    with pytest.raises(dspy.ConfigError, match="result.results"):
        dspy.Evaluate(devset(), broken, return_outputs=True)


def test_the_metrics_normalise_as_dspy_does():
    assert normalize_text("The  Eiffel-Tower!") == "eiffeltower"
    assert f1_score("the cat sat", "a cat sat down") == pytest.approx(0.8)
    ex = dspy.Example(question="q", answer=["Paris", "paris, France"]).with_inputs("question")
    assert answer_exact_match(ex, dspy.Prediction(answer="paris."))
    assert answer_exact_match(ex, dspy.Prediction(answer="paris in france"), frac=0.5)
    assert answer_passage_match(ex, dspy.Prediction(context=["It is in Paris, the capital."]))
    assert not answer_passage_match(ex, dspy.Prediction(context=["Lyon"]))


def test_example_and_prediction_habits():
    ex = dspy.Example(question="q", answer="a").with_inputs("question")
    more = dspy.Example(base=ex, context="c")
    assert more.toDict() == {"question": "q", "answer": "a", "context": "c"} and more.input_keys == ("question",)
    assert "base" not in more and more.get("missing", 7) == 7
    assert more.without("answer").toDict() == {"question": "q", "context": "c"}
    pred = dspy.Prediction.from_completions([{"answer": "1"}, {"answer": "2"}])
    assert pred.answer == "1" and pred.completions.answer == ["1", "2"] and len(pred.completions) == 2
    assert ex.toDict() == {"question": "q", "answer": "a"}  # base= and without() made copies: ex is unchanged
