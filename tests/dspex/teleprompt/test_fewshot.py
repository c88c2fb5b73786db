"""LabeledFewShot and BootstrapFewShot against the simulated task where demos help."""

from __future__ import annotations

import pytest

import dspex
from dspex.teleprompt import EvaluationFailed

from ..scripted import TwoStep
from .conftest import data, exact


def score(program, dev) -> float:
    return dspex.Evaluate(dev, exact, progress=False).run(program).mean


def test_labeled_few_shot_is_seeded_and_leaves_the_student_alone(lm):
    student = dspex.Predict("question -> answer", lm=lm)
    train, dev = data(20, "t"), data(10, "d")
    a = dspex.LabeledFewShot(k=4, seed=0).compile(student, trainset=train)
    b = dspex.LabeledFewShot(k=4, seed=0).compile(student, trainset=train)
    c = dspex.LabeledFewShot(k=4, seed=1).compile(student, trainset=train)
    assert a.demos == b.demos != c.demos and len(a.demos) == 4
    assert student.demos == [] and a.compile_report.seed == 0
    assert score(student, dev) == 0.5 and score(a, dev) == 1.0


def test_bootstrap_lifts_the_score_from_passing_traces_and_stops_early(lm, sim):
    student = dspex.Predict("question -> answer", lm=lm)
    train, dev = data(40, "t"), data(10, "d")
    compiled = dspex.BootstrapFewShot(exact, max_bootstrapped_demos=3, max_labeled_demos=3).compile(
        student, trainset=train)
    assert [d["question"] for d in compiled.demos] == ["t0", "t2", "t4"]  # the first passes, in trainset order
    assert all(d["answer"] == d["question"].upper() for d in compiled.demos)
    asked = len(sim.log)
    assert asked < 40  # stopped once it had its demos (the rest cancelled, not waited for)
    assert student.demos == [] and score(compiled, dev) == 1.0
    report = compiled.compile_report
    assert report.stopped == "done" and report.optimizer == "BootstrapFewShot" and report.lm_calls == asked
    again = dspex.BootstrapFewShot(exact, max_bootstrapped_demos=3, max_labeled_demos=3).compile(
        student, trainset=train)
    assert again.demos == compiled.demos  # same seed, same program




def test_each_predictor_of_a_two_step_module_gets_its_own_demos(lm):
    compiled = dspex.BootstrapFewShot(exact, max_bootstrapped_demos=2, max_labeled_demos=2).compile(
        TwoStep(lm), trainset=data(10, "t"))
    assert [set(d) for d in compiled.draft.demos] == [{"question", "answer"}] * 2
    assert [set(d) for d in compiled.polish.demos] == [{"question", "draft", "answer"}] * 2
    assert score(compiled, data(6, "d")) == 1.0


def test_a_teacher_of_another_structure_and_bad_trainsets_are_refused(lm):
    student = dspex.Predict("question -> answer", lm=lm)
    boot = dspex.BootstrapFewShot(exact)
    with pytest.raises(dspex.ConfigError, match="teacher"):
        boot.compile(student, trainset=data(4), teacher=TwoStep(lm))
    with pytest.raises(dspex.ConfigError, match="non-empty"):
        boot.compile(student, trainset=[])
    with pytest.raises(dspex.ConfigError, match="lacks the input"):
        boot.compile(student, trainset=[dspex.Example(query="x", answer="X").with_inputs("query")])


class Retrieving(dspex.Module):
    """A RAG-shaped module: its predictor reads a ``context`` that forward supplies, not the example."""

    def __init__(self, lm):
        super().__init__()
        self.respond = dspex.Predict("context, question -> answer", lm=lm)

    def forward(self, question):
        return self.respond(context=f"passage about {question}", question=question)


def test_a_module_is_checked_against_what_its_forward_takes_not_what_its_predictor_reads(lm):
    boot = dspex.BootstrapFewShot(exact, max_bootstrapped_demos=1, max_labeled_demos=1)
    compiled = boot.compile(Retrieving(lm), trainset=data(4, "t"))  # no "context" in the examples: forward makes it
    assert [set(d) for d in compiled.respond.demos] == [{"context", "question", "answer"}]
    with pytest.raises(dspex.ConfigError, match=r"lacks the input field\(s\) \['question'\]"):
        boot.compile(Retrieving(lm), trainset=[dspex.Example(query="x", answer="X").with_inputs("query")])
    with pytest.raises(dspex.ConfigError, match="lacks the input"):  # forward(**inputs): its first predictor's
        boot.compile(dspex.ChainOfThought("question -> answer", lm=lm),
                     trainset=[dspex.Example(query="x", answer="X").with_inputs("query")])


def test_a_metric_that_fails_on_every_row_is_a_typed_error_naming_the_first_errors(lm):
    def broken(example, pred, trace=None):
        raise ValueError("metric bug")

    with pytest.raises(EvaluationFailed, match="MetricError: the metric raised ValueError: metric bug"):
        dspex.BootstrapFewShot(broken).compile(dspex.Predict("question -> answer", lm=lm), trainset=data(4))


def test_a_compile_publishes_its_progress_on_the_runtime_bus(lm):
    events: list = []
    dspex.current_runtime().subscribe(events.append)
    dspex.BootstrapFewShot(exact, max_bootstrapped_demos=2).compile(dspex.Predict("question -> answer", lm=lm),
                                                                    trainset=data(8, "t"))
    progress = [e for e in events if isinstance(e, dspex.CompileProgress)]
    assert progress and progress[-1].finished and progress[-1].optimizer == "BootstrapFewShot"
    assert {e.phase for e in progress} >= {"bootstrap", "finished"}
    assert progress[-1].calls >= 2


def test_the_job_lets_its_run_dir_go_when_the_compile_ends_or_fails(lm, tmp_path):
    student = dspex.Predict("question -> answer", lm=lm)
    dspex.BootstrapFewShot(exact, max_bootstrapped_demos=1).compile(student, trainset=data(4), run_dir=tmp_path / "a")
    with pytest.raises(dspex.ConfigError, match="teacher"):
        dspex.BootstrapFewShot(exact).compile(student, trainset=data(4), teacher=TwoStep(lm), run_dir=tmp_path / "b")
    assert not (tmp_path / "a" / "lock").exists() and not (tmp_path / "b" / "lock").exists()


def test_labeled_few_shot_takes_examples_without_inputs_marked_they_are_only_demos():
    student = dspex.Predict("question -> answer")
    trainset = [dspex.Example(question=f"q{i}", answer=f"a{i}") for i in range(3)]
    compiled = dspex.LabeledFewShot(k=2).compile(student, trainset=trainset)
    assert len(compiled.predictors()[0].demos) == 2 and student.demos == []


@pytest.mark.parametrize("name", ["BootstrapFinetune", "BetterTogether", "AvatarOptimizer"])
def test_dspys_optimizers_out_of_scope_are_config_errors_naming_what_to_use(name):
    from dspex.errors import ConfigError

    with pytest.raises(ConfigError, match="MIPROv2"):
        getattr(dspex, name)(metric=lambda ex, pred, trace=None: 1.0)
