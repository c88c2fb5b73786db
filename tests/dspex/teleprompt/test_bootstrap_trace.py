"""bootstrap_trace_data (DSPy's): the program run over a data set through Evaluate, one entry per example
with DSPy's keys and a (predictor, inputs, prediction) triple per predictor call; failed parses kept or
not as ``capture_failed_parses`` and ``raise_on_error`` say. The simulated model answers questions in
upper case, and cannot be parsed on a question containing "bad" (nor fill its second field on "half")."""

from __future__ import annotations

import json

import pytest

import dspex
from dspex.teleprompt import bootstrap_trace
from dspex.teleprompt.bootstrap_trace import FailedPrediction, bootstrap_trace_data
from dspex.testing import ProviderServer

from ..scripted import TwoStep, chat
from .conftest import KEY

KEYS = {"example", "prediction", "trace", "example_ind", "score"}


def answer(req) -> str:
    text = req.prompt_text
    if "bad" in text:
        return "This is an invalid JSON!"
    json_mode = "Respond with a JSON object" in req.last_user
    values = {"answer": "X"} if "half" in text else {"answer": "UP", "note": "n"}
    return json.dumps(values) if json_mode else chat(**values)


@pytest.fixture
def sim():
    with ProviderServer(answer=answer, api_key=KEY) as server:
        yield server


@pytest.fixture
def lm(sim, tmp_path):
    with dspex.runtime("local", cache_dir=tmp_path / "cache", log_level="error"):
        yield dspex.LM("openai/task", api_key=KEY, base_url=sim.base_url(), cache=False)


def examples(*questions: str) -> list[dspex.Example]:
    return [dspex.Example(question=q, answer="UP").with_inputs("question") for q in questions]


def right(example, pred, trace=None) -> bool:
    return pred.answer == example.answer


def test_one_entry_per_example_with_dspys_keys_and_a_trace_triple_per_predictor_call(lm):
    program = TwoStep(lm)
    data = bootstrap_trace_data(program, examples("q0", "q1", "q2"), metric=right, num_threads=2)
    assert [d["example_ind"] for d in data] == [0, 1, 2] and all(set(d) == KEYS for d in data)
    assert [d["example"].question for d in data] == ["q0", "q1", "q2"] and all(d["score"] == 1.0 for d in data)
    for d in data:
        assert isinstance(d["prediction"], dspex.Prediction) and d["prediction"].answer == "UP"
        (first, first_inputs, first_out), (second, second_inputs, second_out) = d["trace"]
        assert first is program.draft and second is program.polish  # the program's own predictors
        assert first_inputs == {"question": d["example"].question} and first_out.answer == "UP"
        assert second_inputs == {"question": d["example"].question, "draft": "UP"} and second_out.answer == "UP"
    without_metric = bootstrap_trace_data(program, examples("q0"))
    assert set(without_metric[0]) == KEYS - {"score"}  # as DSPy: a score only with a metric


def test_a_failed_parse_is_kept_as_a_failed_prediction_when_captured(lm):
    program = dspex.Predict("question -> answer, note", lm=lm)
    data = bootstrap_trace_data(program, examples("q0", "bad", "half"), metric=right, capture_failed_parses=True)
    assert len(data) == 3
    ok, bad, half = data
    assert ok["prediction"].answer == "UP" and ok["score"] == 1.0 and ok["trace"][0][0] is program
    assert isinstance(bad["prediction"], FailedPrediction)
    assert bad["prediction"].completion_text == "This is an invalid JSON!"
    assert bad["prediction"].format_reward == -1 and bad["score"] == -1  # nothing parsed: format_failure_score
    assert bad["trace"] == [(program, {"question": "bad"}, bad["prediction"])]
    assert half["prediction"].format_reward == -0.5 and half["score"] == -0.5  # one of two fields read
    custom = bootstrap_trace_data(program, examples("half"), metric=right, capture_failed_parses=True,
                                  failure_score=1, format_failure_score=-3)
    assert custom[0]["score"] == -1  # halfway from format_failure_score to failure_score


def test_an_uncaptured_parse_failure_raises_or_is_left_out(lm):
    program = dspex.Predict("question -> answer, note", lm=lm)
    with pytest.raises(dspex.AdapterParseError):
        bootstrap_trace_data(program, examples("q0", "bad"), metric=right)
    data = bootstrap_trace_data(program, examples("q0", "bad", "q2"), metric=right, raise_on_error=False)
    assert [d["example_ind"] for d in data] == [0, 2]


def test_capture_crashes_keeps_a_program_error_but_never_an_lm_error(lm, sim):
    class Crashing(dspex.Module):
        def __init__(self):
            self.predict = dspex.Predict("question -> answer", lm=lm)

        def forward(self, question):
            self.predict(question=question)
            raise RuntimeError("a real code failure")

    program = Crashing()
    data = bootstrap_trace_data(program, examples("q0"), capture_crashes=True)
    assert isinstance(data[0]["prediction"], FailedPrediction)
    assert "RuntimeError: a real code failure" in data[0]["prediction"].completion_text
    assert [t[0] for t in data[0]["trace"]] == [program.predict]  # the calls made before the crash
    with pytest.raises(RuntimeError, match="a real code failure"):
        bootstrap_trace_data(program, examples("q0"))
    refused = dspex.LM("openai/task", api_key="sk-wrong-key-123456", base_url=sim.base_url(), cache=False)
    student = dspex.Predict("question -> answer", lm=refused)  # an LMError: the provider's, not the program's
    assert bootstrap_trace_data(student, examples("q0"), capture_crashes=True, raise_on_error=False) == []
    with pytest.raises(dspex.LMError):
        bootstrap_trace_data(student, examples("q0"), capture_crashes=True)


def test_the_program_is_left_as_it_was_and_callback_metadata_reaches_the_evaluation(lm, monkeypatch):
    program = TwoStep(lm)
    before = program.dump_state()
    seen = {}
    real = bootstrap_trace.Evaluate

    class Watching(real):
        def __call__(self, *args, callback_metadata=None, **kwargs):
            seen["metadata"] = callback_metadata
            return super().__call__(*args, callback_metadata=callback_metadata, **kwargs)

    monkeypatch.setattr(bootstrap_trace, "Evaluate", Watching)
    bootstrap_trace_data(program, examples("q0"), metric=right, callback_metadata={"disable_logging": True})
    assert seen["metadata"] == {"disable_logging": True} and program.dump_state() == before
    assert dspex.bootstrap_trace_data is bootstrap_trace_data is dspex.teleprompt.bootstrap_trace_data


def test_on_worker_processes_the_trace_names_the_callers_own_predictors(sim, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)  # the examples run on worker processes
    with dspex.runtime("multiproc", cache_dir=tmp_path / "cache", log_level="error"):
        lm = dspex.LM("openai/task", api_key=KEY, base_url=sim.base_url(), cache=False)
        program = TwoStep(lm)
        data = bootstrap_trace_data(program, examples("q0", "bad"), metric=right, capture_failed_parses=True)
    assert [[t[0] for t in d["trace"]] for d in data] == [[program.draft, program.polish], [program.draft]]
    assert data[0]["score"] == 1.0 and isinstance(data[1]["prediction"], FailedPrediction)
