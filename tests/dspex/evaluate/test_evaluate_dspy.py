"""DSPy's Evaluate habits on dspex: call-time overrides, num_threads (1 = the calling thread), save_as_csv /
save_as_json, display_table, DSPy's EvaluationResult form, Ctrl-C raising from evaluator(program),
max_errors counting this run's failures, and dspex.evaluate.metrics / auto_evaluation."""

from __future__ import annotations

import csv
import json
import signal
import threading
import time

import pytest

import dspex as dspy
from dspex.evaluate import EvaluationCancelled, EvaluationResult, load_journal
from dspex.evaluate.auto_evaluation import CompleteAndGrounded, SemanticF1
from dspex.evaluate.metrics import EM, F1, HotPotF1, answer_exact_match, answer_passage_match, f1_score
from dspex.utils.dummies import DummyLM

QA = {"What is 1+1?": "2", "What is 2+2?": "4", "Capital of France?": "Paris"}


def devset():
    return [dspy.Example(question=q, answer=a).with_inputs("question") for q, a in QA.items()]


class Lookup(dspy.Module):
    def __init__(self, answers=None, delay=0.0):
        super().__init__()
        self.answers, self.delay = answers or QA, delay

    def forward(self, question):
        time.sleep(self.delay)
        if question not in self.answers:
            raise ValueError(f"no answer for {question}")
        return dspy.Prediction(answer=self.answers[question])


def test_dspy_attributes_and_call_time_overrides(tmp_path):
    ev = dspy.Evaluate(devset=devset(), metric=answer_exact_match, display_progress=False)
    assert ev.num_threads is None and not ev.display_progress and ev.devset == devset()
    assert ev.metric is answer_exact_match
    assert ev(Lookup()).score == 100.0

    def never(example, pred, trace=None):
        return False

    calls = []
    one = devset()[:1]
    result = ev(Lookup(), metric=never, devset=one, num_threads=3, display_progress=False,
                callback_metadata={"who": "test"})
    assert result.score == 0.0 and len(result.results) == 1
    assert ev.metric is answer_exact_match and len(ev.devset) == 3  # the overrides were for that call only
    assert ev.run(Lookup(), devset=one, metric=lambda e, p: calls.append(1) or 1.0).score == 100.0 and calls == [1]
    with pytest.raises(dspy.ConfigError):
        ev(Lookup(), num_threads=0)


def test_num_threads_one_runs_every_example_in_the_calling_thread():
    threads = []

    def metric(example, pred, trace=None):
        threads.append(threading.current_thread())
        return answer_exact_match(example, pred)

    result = dspy.Evaluate(devset=devset(), metric=metric, num_threads=1, display_progress=False)(Lookup())
    assert result.score == 100.0 and threads == [threading.main_thread()] * 3
    assert [r.worker for r in result.rows] == ["main"] * 3


def test_failed_rows_take_failure_score_and_an_empty_prediction_in_results():
    program = Lookup({"What is 1+1?": "2"})
    result = dspy.Evaluate(devset=devset(), metric=answer_exact_match, failure_score=0.5,
                           display_progress=False)(program)
    assert [score for *_, score in result.results] == [1.0, 0.5, 0.5]
    ex, pred, _ = result.results[1]
    assert isinstance(pred, dspy.Prediction) and dict(pred.items()) == {} and ex.question == "What is 2+2?"
    assert result.score == round(100 * 2 / 3, 2) and len(result.rows) == 3


def test_save_as_json_and_csv_write_dspys_records(tmp_path):
    history = dspy.History(messages=[{"question": "Q0", "answer": "A0"}])
    data = [dspy.Example(question=q, answer=a, history=history).with_inputs("question") for q, a in QA.items()]
    out_json, out_csv = tmp_path / "r.json", tmp_path / "r.csv"
    ev = dspy.Evaluate(devset=data, metric=answer_exact_match, display_progress=False, save_as_json=str(out_json))
    program = Lookup({"What is 1+1?": "2", "What is 2+2?": "5"})
    assert ev(program, save_as_csv=str(out_csv)).score == round(100 / 3, 2)
    records = json.loads(out_json.read_text())
    assert records[0] == {"question": "What is 1+1?", "example_answer": "2", "history":
                          {"messages": [{"question": "Q0", "answer": "A0"}]}, "pred_answer": "2",
                          "answer_exact_match": 1.0}
    assert records[1]["pred_answer"] == "5" and records[1]["answer_exact_match"] == 0.0
    assert "pred_answer" not in records[2] and records[2]["answer_exact_match"] == 0.0  # the program failed
    rows = list(csv.DictReader(out_csv.open()))
    assert len(rows) == 3 and json.loads(rows[0]["history"])["messages"][0]["answer"] == "A0"
    assert rows[0]["pred_answer"] == "2" and rows[2]["pred_answer"] == ""


def test_a_program_returning_a_plain_value_is_saved_under_prediction(tmp_path):
    out = tmp_path / "r.json"

    def upper(question):
        return question.upper()

    dspy.Evaluate(devset=devset()[:1], metric=lambda e, p: 1, display_progress=False, save_as_json=out)(upper)
    assert json.loads(out.read_text()) == [{"question": "What is 1+1?", "answer": "2",
                                            "prediction": "WHAT IS 1+1?", "<lambda>": 1.0}]


def test_display_table_prints_dspys_columns_and_cuts_at_a_number(capsys):
    ev = dspy.Evaluate(devset=devset(), metric=answer_exact_match, display_progress=False, display_table=True)
    assert ev.display_table is True
    ev(Lookup())
    out = capsys.readouterr().out
    assert "question" in out and "example_answer" in out and "pred_answer" in out and "answer_exact_match" in out
    assert "Capital of France?" in out and "✔️ [1.000]" in out
    ev(Lookup(), display_table=1)
    out = capsys.readouterr().out
    assert "What is 1+1?" in out and "Capital of France?" not in out and "... 2 more rows not displayed ..." in out
    ev(Lookup(), display_table=False)
    assert capsys.readouterr().out == ""


def test_dspys_evaluation_result_form():
    ex = dspy.Example(question="What is 1+1?", answer="2").with_inputs("question")
    result = EvaluationResult(score=100.0, results=[(ex, {"answer": "2"}, 100.0)])
    assert repr(result) == "EvaluationResult(score=100.0, results=<list of 1 results>)"
    assert result.score == 100.0 and result["score"] == 100.0 and result.results == [(ex, {"answer": "2"}, 100.0)]
    run = dspy.Evaluate(devset=devset(), metric=answer_exact_match, display_progress=False)(Lookup())
    assert repr(run) == "EvaluationResult(score=100.0, results=<list of 3 results>)"
    assert "rows=3" in str(run) and run.mean == 1.0


@pytest.mark.parametrize("num_threads", [1, 2])
def test_ctrl_c_raises_from_the_dspy_call_with_the_partial_result(num_threads):
    data = devset() * 3
    timer = threading.Timer(0.5, signal.raise_signal, args=(signal.SIGINT,))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt) as info:
            dspy.Evaluate(devset=data, metric=answer_exact_match, num_threads=num_threads,
                          display_progress=False)(Lookup(delay=0.3))
    finally:
        timer.cancel()
    partial = info.value.result
    assert partial.aborted == "interrupted" and len(partial.rows) == 9
    cancelled = [r for r in partial.rows if isinstance(r.error, EvaluationCancelled)]
    assert 0 < len(cancelled) < 9


def test_max_errors_counts_the_failures_of_this_run_only(tmp_path):
    journal = tmp_path / "run.jsonl"
    data = devset()
    first = dspy.Evaluate(data, answer_exact_match, progress=False, journal=journal, max_concurrency=1,
                          max_errors=5).run(Lookup({"What is 1+1?": "2"}))
    assert len(first.errors) == 2 and first.aborted is None
    # the two failures found in the journal are not this run's: max_errors=1 is not reached by them
    again = dspy.Evaluate(data, answer_exact_match, progress=False, resume_from=journal, max_errors=1,
                          journal=tmp_path / "again.jsonl").run(Lookup({"What is 1+1?": "2"}))
    assert again.aborted is None and len(again.rows) == 3
    more = dspy.Evaluate(data + devset(), answer_exact_match, progress=False, num_threads=1,
                         max_errors=1).run(Lookup({"What is 1+1?": "2"}))
    assert more.aborted == "max_errors=1 reached" and len(more.rows) == 6
    assert sum(isinstance(r.error, EvaluationCancelled) for r in more.rows) == 4


def test_a_journal_holds_examples_with_a_history(tmp_path):
    history = dspy.History(messages=[{"question": "Q0", "answer": "A0"}])
    data = [dspy.Example(question="What is 1+1?", answer="2", history=history).with_inputs("question")]
    journal = tmp_path / "run.jsonl"
    dspy.Evaluate(data, answer_exact_match, progress=False, journal=journal).run(Lookup())
    (row,) = load_journal(journal)
    assert row.score == 1.0 and row.example["history"] == {"messages": [{"question": "Q0", "answer": "A0"}]}


def test_metrics_at_dspys_path():
    ex = dspy.Example(question="q", answer=["Paris", "the city of light"]).with_inputs("question")
    assert answer_exact_match(ex, dspy.Prediction(answer="paris!"))
    assert answer_exact_match(ex, {"answer": "The Paris"})
    assert not answer_exact_match(ex, dspy.Prediction(answer="Lyon"))
    assert answer_exact_match(ex, dspy.Prediction(answer="city of light paris"), frac=0.5)
    assert EM("The Eiffel Tower", ["Eiffel Tower", "Louvre"]) and not EM("paris", ["Paris, France"])
    assert round(F1("Eiffel Tower is in Paris", ["Paris"]), 2) == 0.33
    assert HotPotF1("yes", ["no"]) == 0.0 and HotPotF1("yes", ["yes"]) == 1.0
    assert f1_score("", "") == 0.0  # as DSPy scores two empty texts
    with pytest.raises(ValueError):
        EM("x", "x")
    assert answer_passage_match(ex, dspy.Prediction(context=["It is in Paris, the capital."]))
    assert not answer_passage_match(ex, dspy.Prediction(context=["comparison of cities"]))  # whole words only
    assert not answer_passage_match(dspy.Example(answer="par"), dspy.Prediction(context=["Paris"]))


def test_semantic_f1_and_complete_and_grounded_judge_with_chain_of_thought():
    dspy.configure(lm=DummyLM([{"reasoning": "r", "precision": 0.8, "recall": 0.6},
                               {"reasoning": "r", "precision": 0.2, "recall": 0.2}]))
    try:
        example = dspy.Example(question="q", response="truth")
        metric = SemanticF1(threshold=0.5)
        assert isinstance(metric, dspy.Module) and len(metric.named_predictors()) == 1
        scored = metric(example, dspy.Prediction(response="answer"))
        assert isinstance(scored, dspy.Prediction) and scored.score == pytest.approx(2 * 0.48 / 1.4)
        assert metric(example, dspy.Prediction(response="answer"), trace=True).score is False
        dspy.configure(lm=DummyLM([{"reasoning": "r", "ground_truth_key_ideas": "a", "system_response_key_ideas": "a",
                                    "discussion": "d", "completeness": 1.0},
                                   {"reasoning": "r", "system_response_claims": "c", "discussion": "d",
                                    "groundedness": 1.5}]))  # clamped to 1
        judged = CompleteAndGrounded()(example, dspy.Prediction(response="answer", context="ctx"))
        assert judged.score == 1.0
    finally:
        dspy.configure(lm=None)


def test_an_llm_judge_scores_an_evaluation():
    dspy.configure(lm=DummyLM([{"reasoning": "r", "precision": 1.0, "recall": 1.0}] * 3))
    try:
        data = [dspy.Example(question=q, response=a).with_inputs("question") for q, a in QA.items()]

        class Answer(dspy.Module):
            def forward(self, question):
                return dspy.Prediction(response=QA[question])

        result = dspy.Evaluate(devset=data, metric=SemanticF1(), num_threads=1, display_progress=False)(Answer())
        assert result.score == 100.0 and not result.errors
    finally:
        dspy.configure(lm=None)
