"""InferRules on the instruction-sensitive simulated task: the student answers right only when its
instruction names the rule ("upper case"), demos or not. The simulated rule writer names the rule when the
worked examples show it, but only on every other request: so some candidates are better than others, and
the search has to score them to pick one."""

from __future__ import annotations

import inspect
import itertools
import json
import signal
import threading

import pytest

import dspex
from dspex.journal import RuleInduction, ScoredCandidate, read
from dspex.teleprompt.infer_rules import rule_examples, with_rules
from dspex.testing import ProviderServer
from dspex.testing.instruction_task import RULE, output_fields, shows_rule

from ..scripted import chat
from .conftest import KEY, feedback_metric, task_answer, task_data

ORIGINAL = "Given the fields `question`, produce the fields `answer`."
GOOD, BAD = "1. Write the answer as the question in upper case.", "1. Answer the question as it is asked."


def writing_rules(counter=None, garbage: bool = False):
    counter = counter if counter is not None else itertools.count()
    lock = threading.Lock()

    def answer(req) -> str:
        if "natural_language_rules" not in output_fields(req.system):
            return task_answer(req)
        if garbage:
            return "no fields here"
        with lock:
            n = next(counter)
        good = n % 2 == 0 and shows_rule(req.last_user)
        return chat(reasoning="The examples share a pattern.", natural_language_rules=GOOD if good else BAD)

    return answer


def is_rules(logged) -> bool:
    return "natural_language_rules" in json.dumps(logged.body)


@pytest.fixture
def sim():
    with ProviderServer(answer=writing_rules(), api_key=KEY) as server:
        yield server


@pytest.fixture
def lm(sim, tmp_path):
    with dspex.runtime("local", cache_dir=tmp_path / "cache", log_level="warning"):
        yield dspex.LM("openai/task", api_key=KEY, base_url=sim.base_url(), cache=False)


def infer(**options):
    settings = {"num_candidates": 3, "num_rules": 2, "metric": feedback_metric, "max_bootstrapped_demos": 2,
                "max_labeled_demos": 2, **options}
    return dspex.InferRules(**settings)


def compile_with(lm, optimizer=None, **job_options):
    student = dspex.Predict("question -> answer", lm=lm)
    return student, (optimizer or infer()).compile(student, trainset=task_data(8, "t"), valset=task_data(6, "v"),
                                                   **job_options)


def test_the_rules_lift_the_score_over_the_bootstrapped_program_and_leave_the_student_alone(lm, sim):
    student, compiled = compile_with(lm)
    report = compiled.compile_report
    before = dspex.Evaluate(task_data(6, "v"), feedback_metric, progress=False).run(student).score
    assert before == 50.0 and report.score == 100.0 and report.stopped == "done"
    assert compiled.signature.instructions == with_rules(ORIGINAL, GOOD) and RULE in compiled.signature.instructions
    assert compiled.demos and student.demos == [] and student.signature.instructions == ORIGINAL
    assert sorted(c.score for c in report.candidates) == [50.0, 100.0, 100.0] and report.metric_calls == 3 * 6
    rules_asked = [r for r in sim.log if is_rules(r)]
    assert len(rules_asked) == 3 and all(r.body["temperature"] == 1.0 for r in rules_asked)
    shown = rules_asked[0].body["messages"][-1]["content"]
    assert "t0" in shown and "T0" in shown and "v0" not in shown  # worked examples from the trainset only
    assert dspex.Evaluate(task_data(6, "x"), feedback_metric, progress=False).run(compiled).score == 100.0


def test_teacher_settings_lm_writes_the_rules(lm, sim):
    writer = dspex.LM("openai/writer", api_key=KEY, base_url=sim.base_url(), cache=False)
    compiled = compile_with(lm, infer(teacher_settings={"lm": writer}))[1]
    rules_models = {r.body["model"] for r in sim.log if is_rules(r)}
    task_models = {r.body["model"] for r in sim.log if not is_rules(r)}
    assert rules_models == {"writer"} and task_models == {"task"}  # the predictor's own LM runs the task (as DSPy)
    assert compiled.compile_report.score == 100.0


def test_without_a_valset_the_second_half_of_the_trainset_scores(lm, sim):
    compiled = infer().compile(dspex.Predict("question -> answer", lm=lm), trainset=task_data(8, "t"))
    assert compiled.compile_report.metric_calls == 3 * 4 and compiled.compile_report.score == 100.0
    shown = next(r for r in sim.log if is_rules(r)).body["messages"][-1]["content"]
    assert "t3" in shown.lower() and "t4" not in shown.lower()


def test_a_resumed_compile_asks_nothing_again_and_gives_the_identical_program(lm, sim, tmp_path):
    first = compile_with(lm, run_dir=tmp_path / "run")[1]
    asked = len(sim.log)
    again = compile_with(lm, run_dir=tmp_path / "run")[1]
    assert len(sim.log) == asked and again.compile_report.resumed_steps > 0
    assert again.signature == first.signature and again.demos == first.demos
    assert again.compile_report.candidates == first.compile_report.candidates
    journal = read(tmp_path / "run" / "journal.jsonl", *infer().journal_entries)
    assert sorted(e.candidate for e in journal.of(RuleInduction)) == [0, 1, 2]
    assert sorted(e.id for e in journal.of(ScoredCandidate)) == [0, 1, 2]
    with pytest.raises(dspex.ConfigError, match="settings"):  # other settings: not this journal's compile
        compile_with(lm, infer(num_rules=5), run_dir=tmp_path / "run")


def test_a_budget_returns_the_best_candidate_so_far(lm):
    full = compile_with(lm, parallel_trials=1)[1].compile_report
    compiled = compile_with(lm, parallel_trials=1, budget_tokens=full.usage.total_tokens // 2)[1]
    report = compiled.compile_report
    assert report.stopped == "budget" and 1 <= len(report.candidates) < 3
    assert report.usage.total_tokens < full.usage.total_tokens
    best = max(report.candidates, key=lambda c: c.score)  # the best scored so far, its rules on the program
    assert report.score == best.score and compiled.signature.instructions == best.instructions["self"]


def test_ctrl_c_returns_the_best_candidate_so_far(tmp_path):
    interrupted, rules = threading.Event(), writing_rules()
    asked = itertools.count()

    def interrupting(req) -> str:  # a real SIGINT, once, as the second candidate's rules are asked
        if "natural_language_rules" in output_fields(req.system) and next(asked) == 1:
            interrupted.set()
            signal.raise_signal(signal.SIGINT)
        return rules(req)

    with ProviderServer(answer=interrupting, api_key=KEY) as server, \
            dspex.runtime("local", cache_dir=tmp_path / "cache", log_level="error"):
        lm = dspex.LM("openai/task", api_key=KEY, base_url=server.base_url(), cache=False)
        compiled = compile_with(lm, parallel_trials=1)[1]
    report = compiled.compile_report
    assert interrupted.is_set() and report.stopped == "cancelled" and len(report.candidates) == 1
    assert report.score == 100.0 and compiled.signature.instructions == with_rules(ORIGINAL, GOOD)


def test_an_unusable_induction_is_journaled_and_the_predictor_keeps_its_instruction(tmp_path):
    with ProviderServer(answer=writing_rules(garbage=True), api_key=KEY) as server, \
            dspex.runtime("local", cache_dir=tmp_path / "cache", log_level="error"):
        lm = dspex.LM("openai/task", api_key=KEY, base_url=server.base_url(), cache=False)
        compiled = compile_with(lm, infer(num_candidates=2), run_dir=tmp_path / "run")[1]
    entries = read(tmp_path / "run" / "journal.jsonl", *infer().journal_entries).of(RuleInduction)
    assert [(e.rules, "could not be parsed" in e.error) for e in entries] == [(None, True), (None, True)]
    assert compiled.signature.instructions == ORIGINAL and compiled.demos  # the bootstrapped program
    assert compiled.compile_report.score is None and compiled.compile_report.candidates == ()


def test_the_worked_examples_are_a_predictors_own_fields():
    train = [dspex.Example(question="q1", answer="Q1", extra="x").with_inputs("question")]
    draft = dspex.Predict("question -> draft").signature
    polish = dspex.Predict("question, draft -> answer").signature
    assert rule_examples(polish, train, []) == [{"question": "q1", "answer": "Q1"}]
    demos = [{"question": "q1", "draft": "d1"}]
    assert rule_examples(draft, train, demos) == demos  # the data does not carry its output: its demos do


def test_settings_are_checked():
    for bad in ({"num_candidates": 0}, {"num_rules": "ten"}, {"num_threads": 0}, {"max_bootstrapped_demos": -1},
                {"teacher_settings": "lm"}, {"breadth": 3}, {"metric": None}):
        with pytest.raises(dspex.ConfigError):
            infer(**bad)
    optimizer = dspex.InferRules(metric=feedback_metric)
    assert (optimizer.num_candidates, optimizer.num_rules, optimizer.num_threads) == (10, 10, None)
    assert optimizer.max_bootstrapped_demos == 4 and optimizer.max_labeled_demos == 16  # BootstrapFewShot's
    with pytest.raises(dspex.ConfigError, match="at least 2"):
        optimizer.compile(dspex.Predict("question -> answer"), trainset=task_data(1, "t"))
    assert dspex.teleprompt.infer_rules.InferRules is dspex.InferRules
    assert isinstance(optimizer, dspex.BootstrapFewShot)  # as DSPy's, it extends BootstrapFewShot
    params = inspect.signature(dspex.InferRules.compile).parameters  # DSPy's compile(student, *, teacher, ...)
    assert list(params)[:2] == ["self", "student"] and all(
        params[p].kind is inspect.Parameter.KEYWORD_ONLY for p in ("teacher", "trainset", "valset"))
