"""DSPy habits that used to give silent wrong answers (issue 20 §1): metrics of every arity DSPy users write,
a run whose every row failed, a call-time ``lm=``, ``lm(...)`` returning DSPy's list, history keys, and
Example's hidden fields. Against the real simulator on 127.0.0.1."""

from __future__ import annotations

import pytest

import dspex as dspy
from dspex.evaluate.metric_call import MetricPlace, bind_metric
from dspex.testing import ProviderServer
from dspex.teleprompt import EvaluationFailed

from ..scripted import chat

KEY = "sk-test-habits-123456"


@pytest.fixture
def world(tmp_path):
    def answer(req):
        return chat(answer="2", confidence="high") if "confidence" in req.prompt_text else chat(answer="2")

    with ProviderServer(answer=answer, api_key=KEY) as server, \
            dspy.runtime("local", cache_dir=tmp_path, log_level=None):
        lm = dspy.LM("openai/m", api_base=server.base_url(), api_key=KEY, num_retries=0)
        dspy.configure(lm=lm)
        yield server, lm


def devset(n=4):
    return [dspy.Example(question=f"What is {i}+{2 - i}?", answer="2").with_inputs("question") for i in range(n)]


# --- metrics of every arity --------------------------------------------------------------------------------

def validate(example, pred):  # the form of most DSPy tutorials
    return example.answer == pred.answer


@pytest.mark.parametrize("metric", [
    validate,
    lambda e, p: e.answer == p.answer,
    lambda e, p, t=None: e.answer == p.answer,
    lambda e, p, trace: e.answer == p.answer,            # a required third parameter gets the trace (None)
    lambda e, p, *, trace: e.answer == p.answer,         # a keyword-only trace
    lambda *args: args[0].answer == args[1].answer,
    lambda e, p, trace=None, **kwargs: e.answer == p.answer,
], ids=["def-two", "lambda-two", "lambda-three-default", "three-required", "trace-keyword-only", "varargs",
        "kwargs"])
def test_evaluate_scores_a_metric_of_any_dspy_arity(world, metric):
    result = dspy.Evaluate(devset=devset(), metric=metric, display_progress=False)(dspy.Predict("question -> answer"))
    assert result.score == 100.0 and not result.errors and not result.all_failed


def test_a_metric_that_cannot_take_the_place_s_arguments_is_refused_before_anything_is_sent(world):
    server, _ = world
    for metric in (lambda e: True, lambda e, p, q, r: True, lambda: True):
        with pytest.raises(dspy.ConfigError, match=r"metric\(example, prediction\)"):
            dspy.Evaluate(devset=devset(), metric=metric)
    with pytest.raises(dspy.ConfigError, match=r"trace"):
        dspy.BootstrapFewShot(metric=validate)  # bootstrapping passes the trace: the metric must take it
    with pytest.raises(dspy.ConfigError, match=r"trace"):
        dspy.BootstrapFewShotWithRandomSearch(metric=lambda e, p: True)
    with pytest.raises(dspy.ConfigError, match="metric"):
        dspy.Evaluate(devset=devset(), metric="exact_match")
    assert server.log == []


def test_each_place_calls_the_metric_as_dspy_does():
    seen = []

    def five(gold, pred, trace=None, pred_name=None, pred_trace=None):
        seen.append((trace, pred_name, pred_trace))
        return 1.0

    def three(example, pred, trace=None):
        seen.append(trace)
        return 1.0

    assert bind_metric(five, MetricPlace.FEEDBACK)("g", "p", "t") == 1.0 and seen[-1] == ("t", None, None)
    bind_metric(three, MetricPlace.BOOTSTRAP)("e", "p", ["step"])
    assert seen[-1] == ["step"]
    bind_metric(three, MetricPlace.EVALUATE)("e", "p", ["ignored"])
    assert seen[-1] is None  # Evaluate calls metric(example, prediction): trace keeps its default
    two = bind_metric(lambda e, p: 0.5, MetricPlace.FEEDBACK, "GEPA")  # GEPA also scores an Evaluate-style metric
    assert two("g", "p", "t") == 0.5


def test_bootstrap_gives_a_three_argument_metric_the_trace(world):
    traces = []

    def metric(example, pred, trace=None):
        traces.append(trace)
        return example.answer == pred.answer

    compiled = dspy.BootstrapFewShot(metric=metric, max_bootstrapped_demos=2, max_labeled_demos=0).compile(
        dspy.Predict("question -> answer"), trainset=devset())
    assert compiled.predictors()[0].demos and any(t for t in traces)


# --- every row failing is not a score ------------------------------------------------------------------------

def broken(example, pred):
    raise ValueError("the metric is broken")


def test_an_evaluation_whose_every_row_failed_says_so(world, capsys):
    result = dspy.Evaluate(devset=devset(), metric=broken, display_progress=False)(dspy.Predict("question -> answer"))
    assert result.all_failed and result.score == 0.0
    err = capsys.readouterr().err
    assert "every one of the 4 rows" in err and "MetricError" in err and "the metric is broken" in err


def test_a_healthy_evaluation_prints_nothing_alarming(world, capsys):
    result = dspy.Evaluate(devset=devset(), metric=validate, display_progress=False)(dspy.Predict("question -> answer"))
    assert not result.all_failed and "warning" not in capsys.readouterr().err


@pytest.mark.parametrize("make", [
    lambda lm: dspy.BootstrapFewShotWithRandomSearch(metric=lambda e, p, t=None: broken(e, p), num_candidate_programs=1,
                                                  max_bootstrapped_demos=1, max_labeled_demos=1),
    lambda lm: dspy.MIPROv2(metric=lambda e, p, t=None: broken(e, p), auto=None, num_candidates=2, num_trials=2,
                         max_bootstrapped_demos=1, max_labeled_demos=1),
    lambda lm: dspy.GEPA(metric=lambda e, p, t=None, n=None, pt=None: broken(e, p), max_metric_calls=40,
                         reflection_lm=lm),
], ids=["random-search", "mipro", "gepa"])
def test_optimizers_refuse_to_take_an_all_failed_evaluation_for_a_score(world, make, tmp_path):
    with pytest.raises((EvaluationFailed, dspy.teleprompt.NoTracePassed), match="metric"):
        make(world[1]).compile(dspy.Predict("question -> answer"), trainset=devset(6), valset=devset(4))


# --- a call-time lm= and unknown keywords -------------------------------------------------------------------

def test_a_call_time_lm_answers_and_an_unknown_keyword_is_named(world, tmp_path):
    server, lm = world
    with ProviderServer(answer=lambda req: chat(answer="from lm2"), api_key=KEY) as other:
        lm2 = dspy.LM("openai/m2", api_base=other.base_url(), api_key=KEY)
        qa = dspy.Predict("question -> answer")
        assert qa(question="q", lm=lm2).answer == "from lm2"
        assert len(other.log) == 1 and server.log == []
        assert qa(question="q").answer == "2"  # the call-time LM was for that call only
    with pytest.raises(dspy.ConfigError, match="bogus"):
        qa(question="q", bogus=1)


def test_call_time_demos_and_signature(world):
    server, _ = world
    qa = dspy.Predict("question -> answer")
    qa(question="q", demos=[{"question": "demo question", "answer": "demo answer"}])
    assert "demo question" in str(server.log[-1].body["messages"])
    assert qa.demos == []  # for that call only
    pred = qa(question="q", signature="question -> answer, confidence")
    assert "confidence" in str(server.log[-1].body["messages"]) and pred.answer == "2"


# --- lm(...) and lm.history as DSPy's -------------------------------------------------------------------------

def test_lm_call_returns_a_list_and_history_has_dspy_s_keys(world):
    _, lm = world
    out = lm("hello")
    assert isinstance(out, list) and len(out) == 1 and isinstance(out[0], str) and out[0]
    assert lm(messages=[{"role": "user", "content": "hello"}]) == out
    assert len(lm("more", n=3)) == 3
    entry = lm.history[-1]
    for key in ("prompt", "messages", "kwargs", "response", "outputs", "usage", "cost", "timestamp", "uuid", "model"):
        assert key in entry, key
    assert isinstance(entry["usage"], dict) and entry["usage"]["total_tokens"] > 0
    assert entry["prompt"] == "more" and entry["outputs"] == [entry["response"]]
    assert KEY not in repr(lm.history)
    with pytest.raises(dspy.ConfigError):
        lm()


# --- Example as DSPy's ----------------------------------------------------------------------------------------

def test_example_hides_dspy_fields_and_input_keys_compare_to_a_set():
    ex = dspy.Example(question="q", answer="a", dspy_uuid="1", dspy_split="train").with_inputs("question")
    assert len(ex) == 2 and list(ex.keys()) == ["question", "answer"]
    assert "dspy_uuid" in ex.keys(include_dspy=True) and len(ex.items(include_dspy=True)) == 4
    assert ex._input_keys == {"question"} and ex.input_keys == ("question",)
    assert dspy.Example(base=ex).dspy_uuid == "1"  # a copy keeps them
    assert dict(ex) == {"question": "q", "answer": "a"}


def test_lm_call_gives_dicts_when_the_answer_carries_logprobs_or_tool_calls(tmp_path):
    import json

    from ..test_hardening import Raw

    logprobs = {"content": [{"token": "hi", "logprob": -0.1}]}
    tool_calls = [{"id": "call_1", "type": "function", "function": {"name": "add", "arguments": "{\"a\": 1}"}}]

    def body(raw):
        asked = json.loads(raw)
        message = {"role": "assistant", "content": None if asked.get("tools") else "hi"}
        choice = {"message": message, "logprobs": logprobs if asked.get("logprobs") else None}
        if asked.get("tools"):
            message["tool_calls"] = tool_calls
        return json.dumps({"choices": [choice], "usage": {"prompt_tokens": 3, "completion_tokens": 1}}).encode()

    with Raw(body) as server, dspy.runtime("local", cache_dir=tmp_path, log_level=None):
        lm = dspy.LM("openai/m", api_key=KEY, base_url=server.url)
        assert lm("plain") == ["hi"]
        assert lm("with logprobs", logprobs=True) == [{"text": "hi", "logprobs": logprobs}]
        tools = [{"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}]
        assert lm("call a tool", tools=tools) == [{"text": "", "tool_calls": tool_calls}]  # no text: still an answer
        assert lm("call a tool", tools=tools) == [{"text": "", "tool_calls": tool_calls}]  # the same from the cache
        assert lm.history[-1]["outputs"] == [{"text": "", "tool_calls": tool_calls}]
