"""SIMBA on the simulated provider. Questions are lower-case words (``t3``); the right answer is the question
in upper case. The task model answers the question as written (wrong: the baseline scores 0) unless its
instruction names the rule ("upper case") or a demo is shown; the teacher model (sample 0 with
``teacher_settings``) is always right, so the samples of every example differ. The simulated prompt model,
shown a better and a worse run, advises writing the answer in upper case."""

from __future__ import annotations

import json
import random
import shutil
import signal
import threading

import pytest

import dspex
from dspex.journal import SimbaBatch, SimbaFinal, SimbaProposal, SimbaScore, SimbaTrajectory, append, read
from dspex.teleprompt.simba_utils import (contrast, demo_drops, percentile, poisson, rank_buckets, softmax_sample,
                                          spaced, top_programs)
from dspex.testing import ProviderServer
from dspex.testing.instruction_task import RULE, output_fields, shows_rule

from ..scripted import TwoStep, chat
from .conftest import KEY

ORIGINAL = "Given the fields `question`, produce the fields `answer`."
ADVICE = "When the question is in lower case, write the answer in upper case."


def answering(req) -> str:
    fields = output_fields(req.system)
    if "module_advice" in fields:  # the prompt model, asked for a rule
        names = req.last_user.split("[[ ## module_names ## ]]\n", 1)[-1].split("\n", 1)[0].split(", ")
        advice = {name: ADVICE for name in names} if shows_rule(req.last_user) and req.model != "mute" else {}
        return chat(discussion="The worse run kept the case of the question.", module_advice=json.dumps(advice))
    question = req.last_user.split("[[ ## question ## ]]\n", 1)[-1].split("\n", 1)[0].strip()
    shown_demo = any(m["role"] == "assistant" for m in req.messages)
    right = req.model == "teacher" or RULE in req.system.lower() or shown_demo
    return chat(answer=question.upper() if right else question)


def is_rule_request(logged) -> bool:
    return "module_advice" in json.dumps(logged.body)


def data(n: int) -> list[dspex.Example]:
    return [dspex.Example(question=f"t{i}", answer=f"T{i}").with_inputs("question") for i in range(n)]


def exact(example, pred, trace=None) -> float:
    return float(pred.answer == example.answer)


@pytest.fixture
def sim():
    with ProviderServer(answer=answering, api_key=KEY) as server:
        yield server


@pytest.fixture
def lms(sim, tmp_path):
    with dspex.runtime("local", cache_dir=tmp_path / "cache", log_level="warning"):
        yield (dspex.LM("openai/task", api_key=KEY, base_url=sim.base_url(), cache=False),
               dspex.LM("openai/teacher", api_key=KEY, base_url=sim.base_url(), cache=False))


def simba(teacher, **options):
    settings = {"bsize": 4, "num_candidates": 3, "max_steps": 2, "max_demos": 2}
    return dspex.SIMBA(metric=exact, teacher_settings={"lm": teacher}, **{**settings, **options})


def compile_with(lms, optimizer=None, n=8, **job_options):
    student = dspex.Predict("question -> answer", lm=lms[0])
    return student, (optimizer or simba(lms[1])).compile(student, trainset=data(n), seed=1, **job_options)


def journal(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "journal.jsonl").read_text().splitlines()]


def shape(program) -> tuple:
    return tuple((name, p.signature.instructions, tuple(map(tuple, (sorted(d.items()) for d in p.demos))))
                 for name, p in program.named_predictors())


def test_rules_alone_lift_a_zero_baseline_and_leave_the_student_alone(lms):
    student, compiled = compile_with(lms, simba(lms[1], max_demos=0))
    report = compiled.compile_report
    assert report.baseline_score == 0.0 and report.score == 100.0 and report.stopped == "done"
    assert compiled.signature.instructions.startswith(ORIGINAL) and ADVICE in compiled.signature.instructions
    assert compiled.demos == [] and compiled is not student
    assert [name for name, _ in compiled.named_predictors()] == ["self"]  # not the candidate programs' too
    assert student.signature.instructions == ORIGINAL and student.demos == []
    scores = [c["score"] for c in compiled.candidate_programs]
    assert scores == sorted(scores, reverse=True) and scores[0] == 1.0 and scores[-1] == 0.0  # the student: last
    assert set(compiled.trial_logs) == {0, 1} and compiled.trial_logs[0]["batch"]
    assert any("train_score" in log for log in compiled.trial_logs.values())
    assert dspex.Evaluate(data(5), exact, progress=False).run(compiled).score == 100.0


def test_both_strategies_make_candidates(lms, tmp_path):
    compiled = compile_with(lms, simba(lms[1], max_steps=3, max_demos=1), run_dir=tmp_path / "run")[1]
    proposals = [e for e in journal(tmp_path / "run") if e["kind"] == "proposal" and e["built"]]
    assert [e for e in proposals if e["strategy"] == "demo" and e["note"].startswith("a demo")]
    assert [e for e in proposals if e["strategy"] == "rule" and e["advice"]]
    assert compiled.compile_report.score == 100.0
    serial = compile_with(lms, simba(lms[1], max_steps=3, max_demos=1), parallel_trials=1, max_concurrency=1)[1]
    assert shape(serial) == shape(compiled) and serial.trial_logs == compiled.trial_logs  # the same draws


def test_demos_alone_lift_the_baseline_and_stay_within_max_demos(lms, sim):
    mute = dspex.LM("openai/mute", api_key=KEY, base_url=sim.base_url(), cache=False)  # writes no rule
    compiled = compile_with(lms, simba(lms[1], max_steps=4, max_demos=1, prompt_model=mute))[1]
    assert compiled.compile_report.score == 100.0 and compiled.signature.instructions == ORIGINAL
    assert len(compiled.demos) == 1  # appended, and never more than max_demos (one dropped when full)
    assert compiled.demos[0]["answer"] == compiled.demos[0]["question"].upper()  # the teacher's right answer
    assert all(len(c["program"].demos) <= 1 for c in compiled.candidate_programs)
    assert any(is_rule_request(r) and r.body["model"] == "mute" for r in sim.log)


def test_the_journal_holds_every_step_and_a_resumed_compile_asks_nothing_again(lms, sim, tmp_path):
    first = compile_with(lms, run_dir=tmp_path / "run")[1]
    entries = journal(tmp_path / "run")
    kinds = [e["kind"] for e in entries]
    assert kinds.count("batch") == 2 and kinds.count("trajectory") == 2 * 3 * 4
    assert kinds.count("trial") == sum(len(log["candidate_scores"]) for log in first.trial_logs.values())
    assert kinds.count("full") == len(first.candidate_programs)
    asked = len(sim.log)
    again = compile_with(lms, run_dir=tmp_path / "run")[1]
    assert len(sim.log) == asked and again.compile_report.resumed_steps == len(entries) - 1
    assert shape(again) == shape(first) and again.trial_logs == first.trial_logs
    assert [(c["score"], shape(c["program"])) for c in again.candidate_programs] == \
           [(c["score"], shape(c["program"])) for c in first.candidate_programs]
    assert again.compile_report.candidates == first.compile_report.candidates
    assert again.compile_report.metric_calls == first.compile_report.metric_calls
    with pytest.raises(dspex.ConfigError, match="settings"):  # another bsize: not this journal's compile
        compile_with(lms, simba(lms[1], bsize=3), run_dir=tmp_path / "run")


def test_a_journal_cut_mid_step_resumes_from_that_step(lms, sim, tmp_path):
    first = compile_with(lms, run_dir=tmp_path / "run")[1]
    lines = (tmp_path / "run" / "journal.jsonl").read_text().splitlines()
    entries = [json.loads(line) for line in lines]
    cut = next(n for n, e in enumerate(entries) if e["kind"] == "batch" and e["step"] == 1) + 3  # 2 of its runs
    shutil.copytree(tmp_path / "run", tmp_path / "cut")
    (tmp_path / "cut" / "journal.jsonl").write_text("\n".join(lines[:cut]) + '\n{"kind": "traj')
    later_rules = [e for e in entries if e["kind"] == "proposal" and e["step"] == 1 and e["advice"] is not None]
    sim.clear_log()
    resumed = compile_with(lms, run_dir=tmp_path / "cut")[1]
    assert len([r for r in sim.log if is_rule_request(r)]) == len(later_rules)  # step 0's rules were not asked
    assert shape(resumed) == shape(first) and resumed.trial_logs == first.trial_logs
    assert resumed.compile_report.resumed_steps == cut - 1
    assert sorted(map(json.dumps, journal(tmp_path / "cut"))) == sorted(map(json.dumps, entries))  # each step once


def test_a_token_budget_returns_the_best_program_so_far(lms):
    full = compile_with(lms)[1].compile_report.usage.total_tokens
    compiled = compile_with(lms, budget_tokens=int(full * 0.7))[1]  # step 0 fits, not the rest
    report = compiled.compile_report
    assert report.stopped == "budget" and report.usage.total_tokens < full
    assert report.score == 100.0 and ADVICE in compiled.signature.instructions  # step 0's winner, on its batch
    assert [c["score"] for c in compiled.candidate_programs] == [1.0] and 0 in compiled.trial_logs
    early = compile_with(lms, budget_tokens=int(full * 0.4))[1]  # stopped within step 0: the student's copy
    assert early.compile_report.stopped == "budget" and early.compile_report.score is None
    assert early.signature.instructions == ORIGINAL and early.candidate_programs == []


def test_every_predictor_of_a_module_gets_its_rule(lms):
    compiled = simba(lms[1], max_demos=0).compile(TwoStep(lms[0]), trainset=data(8), seed=1)
    assert compiled.compile_report.score == 100.0
    assert [name for name, _ in compiled.named_predictors()] == ["draft", "polish"]
    assert all(p.signature.instructions.endswith(ADVICE) for p in compiled.predictors())


def test_ctrl_c_returns_the_best_program_so_far(tmp_path):
    interrupted = threading.Event()

    def interrupting(req) -> str:  # a real SIGINT, once, as the first rule is asked
        if "module_advice" in output_fields(req.system) and not interrupted.is_set():
            interrupted.set()
            signal.raise_signal(signal.SIGINT)
        return answering(req)

    with ProviderServer(answer=interrupting, api_key=KEY) as server, \
            dspex.runtime("local", cache_dir=tmp_path / "cache", log_level="warning"):
        lms = (dspex.LM("openai/task", api_key=KEY, base_url=server.base_url(), cache=False),
               dspex.LM("openai/teacher", api_key=KEY, base_url=server.base_url(), cache=False))
        student, compiled = compile_with(lms)
    assert interrupted.is_set() and compiled.compile_report.stopped == "cancelled"
    assert compiled.signature.instructions == ORIGINAL and compiled is not student  # stopped in step 0


def test_settings_are_checked():
    for bad in ({"bsize": 0}, {"num_candidates": 0}, {"max_steps": -1}, {"max_demos": -1},
                {"temperature_for_sampling": 0}, {"temperature_for_candidates": -1.0}, {"num_threads": 0},
                {"teacher_settings": "strong"}):
        with pytest.raises(dspex.ConfigError, match=next(iter(bad))):
            dspex.SIMBA(metric=exact, **bad)
    with pytest.raises(dspex.ConfigError, match="metric"):
        dspex.SIMBA(metric=None)
    with pytest.raises(TypeError):
        dspex.SIMBA(exact)  # keyword-only, as DSPy's
    optimizer = dspex.SIMBA(metric=exact)
    assert (optimizer.bsize, optimizer.num_candidates, optimizer.max_steps, optimizer.max_demos) == (32, 6, 8, 4)
    assert optimizer.strategies == ("demo", "rule") and dspex.SIMBA(metric=exact, max_demos=0).strategies == ("rule",)
    with pytest.raises(dspex.ConfigError, match="fewer than bsize=32"):  # DSPy asserts the same
        optimizer.compile(dspex.Predict("question -> answer"), trainset=data(5))


# --- the pure helpers ---------------------------------------------------------------------------------

def test_softmax_sampling_favours_the_best_and_flattens_with_temperature():
    averages = [0.0, 1.0, 0.5]

    def counts(temperature):
        rng = random.Random(0)
        drawn = [softmax_sample(rng, [0, 1, 2], averages, temperature) for _ in range(2000)]
        return [drawn.count(i) for i in range(3)]

    cold, hot = counts(0.2), counts(100.0)
    assert cold[1] > cold[2] > cold[0] and cold[1] > 1600
    assert all(600 < c < 740 for c in hot)
    assert softmax_sample(random.Random(3), [2], averages, 0.2) == 2
    assert counts(0.2) == cold  # seeded: the same draws again
    assert softmax_sample(random.Random(0), [0, 1], [1e6, 1e6 + 1], 0.01) in (0, 1)  # no overflow


def test_top_programs_keep_the_student_and_the_earliest_on_a_tie():
    assert top_programs([0.0, 0.9, 0.5, 0.9], 2) == [1, 0]
    assert top_programs([0.0, 0.9, 0.5, 0.9], 5) == [1, 3, 2, 0]
    assert top_programs([0.0], 3) == [0]


def test_percentile_interpolates_as_numpy_does():
    assert percentile([0, 0, 0, 1], 90) == pytest.approx(0.7)
    assert percentile([3, 1, 2], 10) == pytest.approx(1.2)
    assert percentile([5], 10) == 5 and percentile([0, 1], 100) == 1


def test_buckets_rank_by_gap_then_best_then_gap_to_the_mean():
    scores = [[1, 0, 1, 0.5],  # sample 0's score on each of four examples
              [0, 0, 1, 0.5],
              [1, 0, 1, 0.0]]
    assert rank_buckets(scores) == [0, 3, 2, 1]  # example 0: gap 1, mean 2/3; example 3: gap .5; then best 1, 0


def test_demo_drops_poisson_and_spacing():
    rng = random.Random(0)
    assert abs(sum(poisson(rng, 1.5) for _ in range(4000)) / 4000 - 1.5) < 0.1
    assert poisson(random.Random(0), 0.0) == 0
    assert demo_drops(random.Random(0), random.Random(1), [0, 0], 4) == []
    full = [demo_drops(random.Random(s), random.Random(s), [4, 1], 4) for s in range(50)]
    assert all(1 <= len(d) <= 4 and all(0 <= i < 4 for i in d) for d in full)  # full: at least one goes
    assert spaced(8, 7) == [0, 1, 3, 4, 5, 7, 8] and spaced(2, 7) == [0, 1, 2] and spaced(0, 7) == [0]


def test_contrast_picks_the_runs_a_rule_is_written_from():
    def run(score):
        return SimbaTrajectory(0, 0, 0, 0, score, {}, [], None, None)

    good, bad = run(1.0), run(0.0)
    assert contrast([good, bad], 0.0, 1.0) == (good, bad)
    assert contrast([good, good], 0.0, 1.0) is None  # the worst is no worse than the 90th percentile
    assert contrast([bad, bad], 0.0, 1.0) is None
    even = run(0.5)
    assert contrast([even, even], 0.0, 1.0) == (None, even)  # nothing better to show: the better run is N/A


def test_the_journal_entries_read_back_as_themselves(tmp_path):
    entries = [SimbaBatch(0, [3, 1], [[0, 0], [0, 2]]),
               SimbaTrajectory(0, 1, 3, 2, 1.0, {"answer": "T3"}, [{"predictor": "self", "inputs": {"question": "t3"},
                                                                     "outputs": {"answer": "T3"}}], "ok", None),
               SimbaProposal(0, 2, 3, 0, "rule", [1], {"self": ADVICE}, True, "a rule"),
               SimbaScore(0, 4, "ab12", [1.0, 0.0]), SimbaFinal(4, "ab12", 0.5)]
    for entry in entries:
        append(tmp_path / "j.jsonl", entry)
    assert list(read(tmp_path / "j.jsonl", SimbaBatch, SimbaTrajectory, SimbaProposal, SimbaScore,
                     SimbaFinal).entries) == entries
