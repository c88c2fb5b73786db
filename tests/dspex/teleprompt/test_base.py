"""The optimizer skeleton: every optimizer is a Teleprompter; ``with job:`` turns a stop or Ctrl-C into
``job.stopped`` and always lets the run directory go; one more optimizer is one class (here, in a test)."""

from __future__ import annotations

import inspect
import random

import pytest

import dspex
from dspex.errors import JournalWriteError
from dspex.journal import JournalType, ScoredCandidate, read
from dspex.teleprompt import CompileJob, CompileStopped, Teleprompter
from dspex.teleprompt.validate import check_student, check_trainset, example_digest, structure

from .conftest import data, exact

OPTIMIZERS = [dspex.LabeledFewShot, dspex.BootstrapFewShot, dspex.BootstrapFewShotWithRandomSearch, dspex.KNNFewShot,
              dspex.MIPROv2, dspex.GEPA]


@pytest.mark.parametrize("cls", OPTIMIZERS, ids=lambda c: c.__name__)
def test_every_optimizer_is_a_teleprompter_with_dspy_s_compile(cls):
    assert issubclass(cls, Teleprompter) and cls.__doc__
    params = inspect.signature(cls.compile).parameters
    assert list(params)[:2] == ["self", "student"]
    assert all(params[p].kind is inspect.Parameter.KEYWORD_ONLY
               for p in ("trainset", "teacher", "valset") if p in params)


def test_get_params_are_the_settings():
    assert dspex.BootstrapFewShotWithRandomSearch(exact, num_candidate_programs=3, seed=7).get_params() == {
        "metric": exact, "num_candidate_programs": 3, "max_bootstrapped_demos": 4, "max_labeled_demos": 16,
        "stop_at_score": None, "search_adapters": False, "seed": 7, "metric_threshold": None, "max_rounds": 1,
        "parallel": None, "num_threads": None, "max_errors": None, "teacher_settings": None}


def job(run_dir) -> CompileJob:
    return CompileJob("Test", 0, {"student": "x"}, run_dir=run_dir, entries=(ScoredCandidate,))


@pytest.mark.parametrize("stop, stopped", [(CompileStopped("budget", "spent"), "budget"),
                                           (KeyboardInterrupt(), "cancelled")])
def test_a_stop_or_ctrl_c_ends_the_block_as_job_stopped_and_the_run_dir_goes(tmp_path, stop, stopped):
    compile_job = job(tmp_path)
    assert (tmp_path / "lock").exists()
    with compile_job:
        compile_job.record(ScoredCandidate(0, "zero-shot", 0.5, 3, True))
        raise stop
    assert compile_job.stopped == stopped and not (tmp_path / "lock").exists()
    program = dspex.Predict("question -> answer")
    assert compile_job.report(program, best=0.5).compile_report.stopped == stopped
    assert read(tmp_path / "journal.jsonl", ScoredCandidate, journal=JournalType.COMPILE).entries == (
        ScoredCandidate(0, "zero-shot", 0.5, 3, True),)


def test_any_other_error_goes_on_up_and_the_run_dir_still_goes(tmp_path):
    compile_job = job(tmp_path)
    with pytest.raises(ZeroDivisionError):
        with compile_job:
            1 / 0
    assert not (tmp_path / "lock").exists()
    job(tmp_path).close()  # the next compile on it is let in


def test_a_journal_the_disk_refuses_stops_the_block_and_the_report_carries_the_program(tmp_path):
    compile_job = job(tmp_path)
    (tmp_path / "journal.jsonl").unlink()
    (tmp_path / "journal.jsonl").symlink_to("/dev/full")
    with compile_job:
        compile_job.record(ScoredCandidate(0, "zero-shot", 0.5, 3, True))
        raise AssertionError("not reached: the refused write ends the block")
    program = dspex.Predict("question -> answer")
    with pytest.raises(JournalWriteError, match="No space left") as caught:
        compile_job.report(program)
    assert caught.value.result is program and program.compile_report.stopped == "journal"


class PickLabeled(Teleprompter):
    """A whole optimizer in one class: ``n`` seeded samples of labeled demos, each scored on the valset and
    journaled; the best is returned; a resumed compile scores only what is missing."""

    journal_entries = (ScoredCandidate,)

    def __init__(self, metric, n: int = 3, k: int = 2, seed: int = 0) -> None:
        self.metric, self.n, self.k, self.seed = metric, n, k, seed

    def compile(self, student, *, trainset, teacher=None, valset=None, **job_options):
        student = check_student(student)
        trainset, valset = check_trainset(trainset, student), check_trainset(valset, student, "valset")
        job = self.job({"student": structure(student), "trainset": example_digest(trainset),
                        "valset": example_digest(valset), "settings": [self.n, self.k]}, **job_options)
        programs = []
        for i in range(self.n):
            program = student.reset_copy()
            for predictor in program.predictors():
                predictor.demos = [dict(ex.items()) for ex in random.Random(self.seed + i).sample(trainset, self.k)]
            programs.append(program)
        scored = {}
        with job:
            scored = {e.id: e for e in job.journaled(ScoredCandidate)}
            for i, program in enumerate(programs):
                if i not in scored:
                    result = job.evaluate(program, valset, self.metric, phase="candidates", name=f"candidate-{i}")
                    scored[i] = ScoredCandidate(i, f"sample {i}", result.mean, result.usage.requests, True)
                    job.record(scored[i])
        best = max(scored.values(), key=lambda e: (e.score, -e.id), default=None)
        return job.report(programs[best.id] if best else student.reset_copy(), best=best and best.score,
                          candidates=[])


def test_an_optimizer_is_one_class_journaled_and_resumable(lm, sim, tmp_path):
    student = dspex.Predict("question -> answer", lm=lm)
    first = PickLabeled(exact).compile(student, trainset=data(6, "t"), valset=data(4, "v"), run_dir=tmp_path / "run")
    asked = len(sim.log)
    again = PickLabeled(exact).compile(student, trainset=data(6, "t"), valset=data(4, "v"), run_dir=tmp_path / "run")
    assert first.compile_report.score == 100.0 and first.compile_report.optimizer == "PickLabeled"
    assert len(sim.log) == asked and again.demos == first.demos and again.compile_report.resumed_steps == 3
