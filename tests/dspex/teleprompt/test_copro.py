"""COPRO on the instruction-sensitive simulated task: the student answers right only when its instruction
names the rule. The simulated prompt model proposes an instruction without the rule from the student's
instruction alone, and one naming it once it is shown the attempts so far: so the rule is found in the
second round, and only there."""

from __future__ import annotations

import json
import shutil
import signal
import threading

import pytest

import dspex
from dspex.journal import CoproProposal, CoproScore, append, read
from dspex.testing import ProviderServer
from dspex.testing.instruction_task import WITH_RULE, WITHOUT_RULE, output_fields

from ..scripted import chat
from .conftest import KEY, feedback_metric, task_answer, task_data

ORIGINAL = "Given the fields `question`, produce the fields `answer`."
PREFIX = "Upper-case answer:"


def proposing(req) -> str:
    if "proposed_instruction" not in output_fields(req.system):
        return task_answer(req)
    if "[[ ## attempted_instructions ## ]]" in req.last_user:  # a later round: it sees the scores
        return chat(proposed_instruction=WITH_RULE, proposed_prefix_for_output_field=PREFIX)
    return chat(proposed_instruction=f'"{WITHOUT_RULE}"', proposed_prefix_for_output_field="Answer:")


def is_proposal(logged) -> bool:
    return "proposed_instruction" in json.dumps(logged.body)


@pytest.fixture
def sim():
    with ProviderServer(answer=proposing, api_key=KEY) as server:
        yield server


@pytest.fixture
def lm(sim, tmp_path):
    with dspex.runtime("local", cache_dir=tmp_path / "cache", log_level="warning"):
        yield dspex.LM("openai/task", api_key=KEY, base_url=sim.base_url(), cache=False)


def copro(**options):
    return dspex.COPRO(metric=feedback_metric, **{"breadth": 3, "depth": 2, **options})


def compile_with(lm, optimizer=None, **job_options):
    student = dspex.Predict("question -> answer", lm=lm)
    return student, (optimizer or copro()).compile(student, trainset=task_data(8, "t"), **job_options)


def journal(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "journal.jsonl").read_text().splitlines()]


def test_the_search_finds_the_instruction_in_the_second_round_and_leaves_the_student_alone(lm):
    student, compiled = compile_with(lm)
    report = compiled.compile_report
    assert report.baseline_score == 50.0 and report.score == 100.0 and report.stopped == "done"
    assert compiled.signature.instructions == WITH_RULE
    assert compiled.signature.fields["answer"].json_schema_extra["prefix"] == PREFIX  # the last output field's
    assert compiled is not student and student.signature.instructions == ORIGINAL
    assert student.signature.fields["answer"].json_schema_extra["prefix"] == "Answer:"
    assert {c.instructions["self"] for c in report.candidates} == {ORIGINAL, WITHOUT_RULE, WITH_RULE}  # quotes dropped
    assert compiled.candidate_programs[0]["program"] is compiled and compiled.candidate_programs[0]["score"] == 100.0
    assert len(compiled.candidate_programs) > 1 and len(compiled.named_predictors()) == 1  # the others are not its own
    assert dspex.Evaluate(task_data(6, "x"), feedback_metric, progress=False).run(compiled).score == 100.0
    _, shallow = compile_with(lm, copro(depth=1))  # one round: the proposals never see a score
    assert shallow.compile_report.score == 50.0 and WITH_RULE not in shallow.signature.instructions


def test_breadth_candidates_per_round_and_depth_rounds_in_the_journal_and_the_prompt_model_calls(lm, sim, tmp_path):
    compiled = compile_with(lm, copro(breadth=4, depth=3), run_dir=tmp_path / "run")[1]
    entries = journal(tmp_path / "run")
    proposals = [(e["round"], e["slot"]) for e in entries if e["kind"] == "proposal"]
    scores = [(e["round"], e["slot"]) for e in entries if e["kind"] == "candidate"]
    assert sorted(proposals) == [(0, s) for s in range(3)] + [(r, s) for r in (1, 2) for s in range(4)]
    assert sorted(scores) == [(r, s) for r in range(3) for s in range(4)]  # the predictor's own pair is round 0's last
    assert len([r for r in sim.log if is_proposal(r)]) == 3 + 4 + 4  # one call per proposal
    assert compiled.total_calls == 12  # candidate evaluations, as DSPy counts them
    # a program is scored once: the original, the one without the rule, the one with it
    assert compiled.compile_report.metric_calls == 3 * 8
    assert len([r for r in sim.log if not is_proposal(r)]) == 3 * 8


def test_track_stats_gives_dspys_statistics_per_predictor_and_depth(lm):
    compiled = compile_with(lm, copro(track_stats=True))[1]
    assert compiled.total_calls == 6
    best, latest = compiled.results_best["self"], compiled.results_latest["self"]
    assert latest == {"depth": [0, 1], "max": [50.0, 100.0], "average": [50.0, 100.0], "min": [50.0, 100.0],
                      "std": [0.0, 0.0]}
    assert best["depth"] == [0, 1] and best["max"] == [50.0, 100.0] and best["min"] == [50.0, 50.0]
    assert set(compiled.results_best) == set(compiled.results_latest) == {"self"}
    assert not hasattr(compile_with(lm)[1], "results_best")  # only with track_stats, as DSPy


def test_several_predictors_rescore_every_pair_so_far_each_round(lm, tmp_path):
    class TwoStep(dspex.Module):
        def __init__(self):
            super().__init__()
            self.draft = dspex.Predict("question -> draft", lm=lm)
            self.final = dspex.Predict("question, draft -> answer", lm=lm)

        def forward(self, question):
            return self.final(question=question, draft=self.draft(question=question).draft)

    compiled = copro().compile(TwoStep(), trainset=task_data(6, "t"), run_dir=tmp_path / "run")
    entries = journal(tmp_path / "run")
    per_round = [sum(1 for e in entries if e["kind"] == "candidate" and e["round"] == r) for r in (0, 1)]
    assert per_round == [2 * 3, 2 * (3 + 3)]  # round 1: each predictor's three old pairs and three new ones
    assert sum(1 for e in entries if e["kind"] == "proposal") == 2 * 2 + 2 * 3
    assert compiled.compile_report.score == 100.0 and compiled.final.signature.instructions == WITH_RULE


def test_a_resumed_compile_asks_nothing_again_and_gives_the_identical_program(lm, sim, tmp_path):
    first = compile_with(lm, run_dir=tmp_path / "run")[1]
    asked = len(sim.log)
    again = compile_with(lm, run_dir=tmp_path / "run")[1]
    assert len(sim.log) == asked and again.compile_report.resumed_steps == len(journal(tmp_path / "run")) - 1
    assert again.signature == first.signature and again.total_calls == first.total_calls
    assert again.compile_report.candidates == first.compile_report.candidates
    # killed after round 0 (a torn line last): round 1's proposals are asked again, nothing is re-scored
    lines = (tmp_path / "run" / "journal.jsonl").read_text().splitlines()
    shutil.copytree(tmp_path / "run", tmp_path / "cut")
    (tmp_path / "cut" / "journal.jsonl").write_text("\n".join(lines[:6]) + '\n{"kind": "propo')
    sim.clear_log()
    resumed = compile_with(lm, run_dir=tmp_path / "cut")[1]
    assert len(sim.log) == 3 and all(is_proposal(r) for r in sim.log)
    assert resumed.signature == first.signature and resumed.compile_report.score == first.compile_report.score
    with pytest.raises(dspex.ConfigError, match="settings"):  # another breadth: not this journal's compile
        compile_with(lm, copro(breadth=4), run_dir=tmp_path / "run")


def test_a_budget_returns_the_best_program_so_far(lm):
    full = compile_with(lm)[1].compile_report.usage.total_tokens
    compiled = compile_with(lm, budget_tokens=4000)[1]  # round 0 fits, round 1 does not
    report = compiled.compile_report
    assert report.stopped == "budget" and report.score == 50.0 and compiled.total_calls == 3
    assert compiled.signature.instructions != WITH_RULE and report.usage.total_tokens < full


def test_ctrl_c_returns_the_best_program_so_far(tmp_path):
    interrupted = threading.Event()

    def interrupting(req) -> str:  # a real SIGINT, once, as round 1's proposals are asked
        if "[[ ## attempted_instructions ## ]]" in req.last_user and not interrupted.is_set():
            interrupted.set()
            signal.raise_signal(signal.SIGINT)
        return proposing(req)

    with ProviderServer(answer=interrupting, api_key=KEY) as server, \
            dspex.runtime("local", cache_dir=tmp_path / "cache", log_level="warning"):
        lm = dspex.LM("openai/task", api_key=KEY, base_url=server.base_url(), cache=False)
        compiled = compile_with(lm)[1]
    report = compiled.compile_report
    assert interrupted.is_set() and report.stopped == "cancelled"
    assert report.score == 50.0 and compiled.total_calls == 3 and compiled.signature.instructions != WITH_RULE


def test_settings_and_eval_kwargs_are_checked():
    with pytest.raises(dspex.ConfigError, match="breadth"):
        dspex.COPRO(metric=feedback_metric, breadth=1)
    with pytest.raises(dspex.ConfigError, match="depth"):
        dspex.COPRO(metric=feedback_metric, depth=0)
    optimizer = dspex.COPRO(metric=feedback_metric, verbose=True)  # DSPy's other keywords are taken
    settings = (optimizer.breadth, optimizer.depth, optimizer.init_temperature, optimizer.track_stats)
    assert settings == (10, 3, 1.4, False) and optimizer.prompt_model is None
    student = dspex.Predict("question -> answer")
    with pytest.raises(dspex.ConfigError, match="Evaluate does not take return_outputs="):
        optimizer.compile(student, trainset=task_data(2, "t"), eval_kwargs={"return_outputs": True})
    with pytest.raises(dspex.ConfigError, match="does not take failure_score="):
        optimizer.compile(student, trainset=task_data(2, "t"), eval_kwargs={"failure_score": 0.5})
    with pytest.raises(dspex.ConfigError, match="metric"):
        dspex.COPRO().compile(student, trainset=task_data(2, "t"))


def test_the_journal_entries_read_back_as_themselves(tmp_path):
    entries = [CoproProposal(1, "self", 2, WITH_RULE, PREFIX, None), CoproProposal(0, "self", 0, None, None, "empty"),
               CoproScore(1, "self", 2, {"self": [WITH_RULE, PREFIX]}, 0.75)]
    for entry in entries:
        append(tmp_path / "j.jsonl", entry)
    assert list(read(tmp_path / "j.jsonl", CoproProposal, CoproScore).entries) == entries
