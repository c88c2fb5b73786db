"""Journals written by an earlier release still read, and resume to the same program (as optuna tests its
JournalStorage against logs of older versions).

``journals/v1`` holds format-1 run directories: written by the release before the journal got its format
version (commit 951755e, no ``format`` in the header, rows without a ``kind``), by that release's own code
against the simulator (``journals/make_v1.py`` made them; ``expected.json`` is the program each compile
returned there). Today's code must resume each: the whole journal asks nothing again and gives that
program; a journal cut short (a crash) asks only what is missing and still gives that program.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import dspex
from dspex.errors import JournalTooNew
from dspex.journal import FORMAT, Header, read
from dspex.teleprompt.job import percent

from .teleprompt.conftest import KEY, answer, data, exact, feedback_metric, task_answer, task_data

V1 = Path(__file__).parent / "journals" / "v1"

# what make_v1.py compiled, with the same settings (the journal's header must match them)
COMPILES = {
    "bootstrap": (answer, lambda lm, run_dir: dspex.BootstrapFewShot(
        exact, max_bootstrapped_demos=2, max_labeled_demos=2).compile(
        dspex.Predict("question -> answer", lm=lm), trainset=data(6, "t"), run_dir=run_dir)),
    "random_search": (answer, lambda lm, run_dir: dspex.BootstrapFewShotWithRandomSearch(
        exact, num_candidate_programs=2, max_bootstrapped_demos=2, max_labeled_demos=2).compile(
        dspex.Predict("question -> answer", lm=lm), trainset=data(6, "t"), valset=data(4, "v"), run_dir=run_dir)),
    "mipro": (task_answer, lambda lm, run_dir: dspex.MIPROv2(
        metric=feedback_metric, auto=None, num_candidates=3, num_trials=4, minibatch_size=3,
        minibatch_full_eval_steps=2, max_bootstrapped_demos=1, max_labeled_demos=1).compile(
        dspex.Predict("question -> answer", lm=lm), trainset=task_data(6, "t"), valset=task_data(6, "v"),
        run_dir=run_dir)),
    "gepa": (task_answer, lambda lm, run_dir: dspex.GEPA(metric=feedback_metric, max_metric_calls=40).compile(
        dspex.Predict("question -> answer", lm=lm), trainset=task_data(4, "t"), valset=task_data(4, "v"),
        run_dir=run_dir)),
}


def program_json(compiled) -> dict:
    return {name: {"instructions": p.signature.instructions, "demos": p.demos}
            for name, p in compiled.named_predictors()}


def compile_in(tmp_path, name, run_dir):
    answer_fn, make = COMPILES[name]
    with dspex.testing.ProviderServer(answer=answer_fn, api_key=KEY) as sim, \
            dspex.runtime("local", cache_dir=tmp_path / "cache", log_level=None):
        lm = dspex.LM("openai/task", api_key=KEY, base_url=sim.base_url(), cache=False)
        compiled = make(lm, run_dir)
        return compiled, len(sim.log)


def copy_of(tmp_path, name) -> Path:
    run_dir = tmp_path / name
    shutil.copytree(V1 / name, run_dir, ignore=shutil.ignore_patterns("expected.json"))
    return run_dir


@pytest.mark.parametrize("name", sorted(COMPILES))
def test_a_whole_format_1_journal_resumes_to_its_program_asking_nothing(tmp_path, name):
    expected = json.loads((V1 / name / "expected.json").read_text())
    run_dir = copy_of(tmp_path, name)
    header = read(run_dir / "journal.jsonl").header
    assert header is not None and header.format == 1  # as that release wrote it
    compiled, asked = compile_in(tmp_path, name, run_dir)
    report = compiled.compile_report
    assert asked == 0 and report.stopped == "done" and report.resumed_steps > 0
    assert program_json(compiled) == expected["program"]
    assert (report.score, report.baseline_score) == (percent(expected["score"]), percent(expected["baseline"]))
    assert [[c.id, c.score] for c in report.candidates] == [[i, percent(s)] for i, s in expected["candidates"]]


@pytest.mark.parametrize("name", sorted(COMPILES))
def test_a_format_1_journal_cut_short_by_a_crash_resumes_to_the_same_program(tmp_path, name):
    """Half the steps kept (the last one torn), the evaluations' row journals gone: today's code goes on
    from the old journal, appending to it, and gives the program the uninterrupted old compile gave."""
    expected = json.loads((V1 / name / "expected.json").read_text())
    run_dir = copy_of(tmp_path, name)
    for rows in run_dir.glob("rows-*.jsonl"):
        rows.unlink()
    journal = run_dir / "journal.jsonl"
    lines = journal.read_bytes().splitlines(keepends=True)
    keep = max(2, len(lines) // 2)
    journal.write_bytes(b"".join(lines[:keep]) + lines[keep][:len(lines[keep]) // 2])  # torn mid-line
    compiled, asked = compile_in(tmp_path, name, run_dir)
    report = compiled.compile_report
    assert 0 < asked <= expected["requests"] and report.stopped == "done" and report.resumed_steps == keep - 1
    assert program_json(compiled) == expected["program"]
    assert report.score == percent(expected["score"])
    assert read(journal).header.format == 1  # the old journal went on as it was: one format in one file


def test_a_format_1_rows_journal_resumes_an_evaluation(tmp_path):
    expected = json.loads((V1 / "evaluate" / "expected.json").read_text())
    journal = tmp_path / "rows.jsonl"
    shutil.copy(V1 / "evaluate" / "rows.jsonl", journal)
    with dspex.testing.ProviderServer(answer=answer, api_key=KEY) as sim, \
            dspex.runtime("local", cache_dir=tmp_path / "cache", log_level=None):
        lm = dspex.LM("openai/task", api_key=KEY, base_url=sim.base_url(), cache=False)
        result = dspex.Evaluate(data(6, "v"), exact, progress=False, journal=journal, resume_from=journal).run(
            dspex.Predict("question -> answer", lm=lm))
        assert sim.log == []
    assert result.mean == expected["score"] and [[r.index, r.score] for r in result.rows] == expected["rows"]


def test_a_journal_from_a_newer_release_is_refused_with_the_fix(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    newer = Header(journal="compile", format=FORMAT + 1, optimizer="BootstrapFewShot", seed=0)
    (run_dir / "journal.jsonl").write_text(json.dumps(newer.to_json()) + "\n")
    with pytest.raises(JournalTooNew, match="upgrade dspex") as caught:
        compile_in(tmp_path, "bootstrap", run_dir)
    assert caught.value.format == FORMAT + 1 and caught.value.supported == FORMAT
    assert not (run_dir / "lock").exists()
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps(Header(journal="evaluation", format=FORMAT + 1).to_json()) + "\n")
    with dspex.testing.ProviderServer(answer=answer, api_key=KEY) as sim, \
            dspex.runtime("local", cache_dir=tmp_path / "cache", log_level=None):
        program = dspex.Predict("question -> answer", lm=dspex.LM("openai/task", api_key=KEY, base_url=sim.base_url()))
        for options in ({"resume_from": rows}, {"journal": rows}):  # neither read nor appended to
            with pytest.raises(JournalTooNew, match="upgrade dspex"):
                dspex.Evaluate(data(2, "v"), exact, progress=False, **options).run(program)
        assert sim.log == [] and len(rows.read_text().splitlines()) == 1
