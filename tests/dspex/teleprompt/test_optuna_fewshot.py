"""BootstrapFewShotWithOptuna: demo sets bootstrapped, a seeded TPE search over which set each predictor
gets, every trial journaled and replayed. The simulated model answers a training question ``t<i>`` right
when i is even (so those are the bootstrapped demos); any other question only when the demo of ``t6`` is in
its prompt: so the score depends on the demo set chosen, and only some sets hold that demo."""

from __future__ import annotations

import inspect
import json
import re
import signal
import threading

import pytest

import dspex
from dspex.journal import OptunaTrial, read
from dspex.teleprompt import optuna_fewshot, teleprompt_optuna
from dspex.testing import ProviderServer

from ..scripted import TwoStep, chat
from .conftest import KEY, data, exact

WANTED = "t6"
QUESTION = re.compile(r"\[\[ ## question ## \]\]\n([^\n]*)")


def answer(req) -> str:
    question = (QUESTION.findall(req.last_user) or [""])[0]
    shown = {q for m in req.messages[:-1] if m["role"] == "user" for q in QUESTION.findall(m["content"])}
    right = int(question[1:]) % 2 == 0 if question.startswith("t") else WANTED in shown
    return chat(answer=question.upper() if right else "wrong")


@pytest.fixture
def sim():
    with ProviderServer(answer=answer, api_key=KEY) as server:
        yield server


@pytest.fixture
def lm(sim, tmp_path):
    with dspex.runtime("local", cache_dir=tmp_path / "cache", log_level="warning"):
        yield dspex.LM("openai/task", api_key=KEY, base_url=sim.base_url(), cache=False)


def optuna(**options):
    return dspex.BootstrapFewShotWithOptuna(exact, **{"max_labeled_demos": 0, "num_candidate_programs": 6, **options})


def compile_with(lm, optimizer=None, student=None, **job_options):
    student = student or dspex.Predict("question -> answer", lm=lm)
    return student, (optimizer or optuna()).compile(student, max_demos=2, trainset=data(12, "t"),
                                                    valset=data(6, "v"), **job_options)


def questions(demos) -> list[str]:
    return [d["question"] for d in demos]


def test_the_search_finds_the_demo_set_that_helps_and_leaves_the_student_alone(lm):
    student, compiled = compile_with(lm)
    report = compiled.compile_report
    assert dspex.Evaluate(data(6, "v"), exact, progress=False).run(student).score == 0.0  # zero-shot
    assert report.score == 100.0 and report.stopped == "done" and WANTED in questions(compiled.demos)
    assert len(report.candidates) == 6 and min(c.score for c in report.candidates) == 0.0  # the choice matters
    assert all(d["question"][1:].isdigit() and int(d["question"][1:]) % 2 == 0 for d in compiled.demos)
    assert student.demos == [] and compiled is not student
    assert report.metric_calls == len({c.description for c in report.candidates}) * 6  # a configuration once


def test_the_same_seed_gives_the_same_program_however_many_trials_run_at_once(lm):
    one = compile_with(lm, parallel_trials=1)[1]
    many = compile_with(lm, parallel_trials=6)[1]
    assert one.demos == many.demos and one.compile_report.candidates == many.compile_report.candidates
    other = compile_with(lm, optuna(seed=3))[1]
    assert [c.description for c in other.compile_report.candidates] != [
        c.description for c in one.compile_report.candidates]


def test_every_demo_set_is_scored_before_the_sampler_draws(lm):
    for seed in (0, 1, 2):  # seed 0's random start drew one set four times out of four
        compiled = compile_with(lm, optuna(num_candidate_programs=4, seed=seed))[1]
        assert len({c.description for c in compiled.compile_report.candidates}) == 4


def test_each_predictor_chooses_its_own_demo_set(lm, tmp_path):
    program = TwoStep(lm)
    compiled = compile_with(lm, student=program, run_dir=tmp_path / "run")[1]
    trials = read(tmp_path / "run" / "journal.jsonl", *optuna().journal_entries).of(OptunaTrial)
    assert len(trials) == 6 and all(set(t.demo_sets) == {"draft", "polish"} for t in trials)
    assert len({tuple(t.demo_sets.values()) for t in trials}) > 1
    assert compiled.compile_report.score == 100.0 and WANTED in questions(compiled.polish.demos)
    assert program.draft.demos == [] and program.polish.demos == []


def test_a_resumed_compile_asks_nothing_again_and_gives_the_identical_program(lm, sim, tmp_path):
    first = compile_with(lm, run_dir=tmp_path / "run")[1]
    asked = len(sim.log)
    again = compile_with(lm, run_dir=tmp_path / "run")[1]
    assert len(sim.log) == asked and again.compile_report.resumed_steps > 0
    assert again.demos == first.demos and again.compile_report.candidates == first.compile_report.candidates
    # killed after its third trial (a torn line last): the other trials are scored again, to the same program
    lines = (tmp_path / "run" / "journal.jsonl").read_text().splitlines()
    cut = [i for i, line in enumerate(lines) if json.loads(line)["kind"] == "candidate"][2]
    (tmp_path / "cut").mkdir()
    (tmp_path / "cut" / "journal.jsonl").write_text("\n".join(lines[:cut + 1]) + '\n{"kind": "candi')
    resumed = compile_with(lm, run_dir=tmp_path / "cut")[1]
    assert 0 < len(sim.log) - asked < asked  # the demo sets and three trials came from the journal
    assert resumed.demos == first.demos and resumed.compile_report.candidates == first.compile_report.candidates
    with pytest.raises(dspex.ConfigError, match="seed"):
        compile_with(lm, optuna(seed=5), run_dir=tmp_path / "run")


def test_a_budget_returns_the_best_trial_so_far(lm):
    full = compile_with(lm, parallel_trials=1)[1].compile_report
    compiled = compile_with(lm, parallel_trials=1, budget_tokens=full.usage.total_tokens * 3 // 4)[1]
    report = compiled.compile_report
    assert report.stopped == "budget" and 1 <= len(report.candidates) < 6
    best = max(report.candidates, key=lambda c: c.score)
    assert report.score == best.score and report.usage.total_tokens < full.usage.total_tokens


def test_ctrl_c_returns_the_best_trial_so_far(tmp_path):
    interrupted, valset_calls = threading.Event(), []

    def interrupting(req) -> str:  # a real SIGINT, once, in the second trial's evaluation
        question = (QUESTION.findall(req.last_user) or [""])[0]
        if question.startswith("v"):
            valset_calls.append(question)
            if len(valset_calls) == 8 and not interrupted.is_set():
                interrupted.set()
                signal.raise_signal(signal.SIGINT)
        return answer(req)

    with ProviderServer(answer=interrupting, api_key=KEY) as server, \
            dspex.runtime("local", cache_dir=tmp_path / "cache", log_level="error"):
        lm = dspex.LM("openai/task", api_key=KEY, base_url=server.base_url(), cache=False)
        compiled = compile_with(lm, parallel_trials=1, max_concurrency=1)[1]
    report = compiled.compile_report
    assert interrupted.is_set() and report.stopped == "cancelled" and len(report.candidates) == 1
    assert report.score == report.candidates[0].score


def test_settings_are_checked_and_dspys_names_are_there():
    for bad in ({"num_candidate_programs": 0}, {"max_rounds": 0}, {"max_labeled_demos": -1}, {"num_threads": 0},
                {"teacher_settings": "lm"}, {"seed": "x"}):
        with pytest.raises(dspex.ConfigError):
            optuna(**bad)
    with pytest.raises(dspex.ConfigError, match="metric"):
        dspex.BootstrapFewShotWithOptuna(None)
    with pytest.raises(dspex.ConfigError, match="max_demos"):
        optuna().compile(dspex.Predict("question -> answer"), max_demos=-1, trainset=data(2, "t"))
    default = dspex.BootstrapFewShotWithOptuna(exact)
    assert (default.max_bootstrapped_demos, default.max_labeled_demos, default.max_rounds,
            default.num_candidate_programs, default.num_threads) == (4, 16, 1, 16, None)
    assert (default.min_num_samples, default.max_num_samples, default.num_candidate_sets) == (1, 4, 16)
    assert teleprompt_optuna.BootstrapFewShotWithOptuna is dspex.BootstrapFewShotWithOptuna
    assert optuna_fewshot.param_name("polish") == "demo_index_for_polish"
    params = inspect.signature(dspex.BootstrapFewShotWithOptuna.compile).parameters  # DSPy's, max_demos included
    assert list(params)[:2] == ["self", "student"] and all(
        params[p].kind is inspect.Parameter.KEYWORD_ONLY for p in ("teacher", "max_demos", "trainset", "valset"))
