"""GEPA's remaining DSPy arguments: component_selector, instruction_proposer, log_dir, track_stats,
add_format_failure_as_feedback."""

from __future__ import annotations

import json
import re

import pytest

import dspex
from dspex.errors import ConfigError
from dspex.testing import instruction_task

from .conftest import feedback_metric, task_data


class TwoSteps(dspex.Module):
    def __init__(self, lm):
        super().__init__()
        self.draft = dspex.Predict("question -> answer", lm=lm)
        self.final = dspex.Predict("question -> answer", lm=lm)

    def forward(self, question):
        self.draft(question=question)
        return self.final(question=question)


def gepa(**options):
    return dspex.GEPA(metric=feedback_metric, max_metric_calls=200, use_merge=False, **options)


def journal(run_dir):
    return [json.loads(line) for line in (run_dir / "journal.jsonl").read_text().splitlines()]


def test_component_selector_all_reflects_on_every_predictor_in_one_proposal(task_lm, tmp_path):
    compiled = gepa(component_selector="all").compile(TwoSteps(task_lm), trainset=task_data(12, "t"),
                                                      valset=task_data(12, "v"), run_dir=tmp_path / "run")
    reflections = [e for e in journal(tmp_path / "run") if e["kind"] == "reflection"]
    by_slot: dict = {}
    for e in reflections:
        by_slot.setdefault((e["round"], e["slot"]), set()).add(e["component"])
    assert by_slot and all(components == {"draft", "final"} for components in by_slot.values())
    assert compiled.compile_report.score >= 95
    assert all(instruction_task.RULE in p.signature.instructions for p in compiled.predictors())


def test_an_instruction_proposer_replaces_the_reflection_lm(task_lm, task_sim):
    seen = []

    def proposer(candidate, reflective_dataset, components_to_update):
        seen.append((dict(candidate), reflective_dataset, list(components_to_update)))
        return {components_to_update[0]: instruction_task.WITH_RULE}

    compiled = gepa(instruction_proposer=proposer).compile(
        dspex.Predict("question -> answer", lm=task_lm), trainset=task_data(12, "t"), valset=task_data(12, "v"))
    assert compiled.compile_report.score >= 95
    candidate, dataset, components = seen[0]
    assert components == ["self"] and set(dataset) == {"self"}
    assert set(dataset["self"][0]) == {"Inputs", "Generated Outputs", "Feedback"}
    assert dataset["self"][0]["Inputs"]["question"].lower().startswith("t")
    assert not [r for r in task_sim.log if "new instruction" in json.dumps(r.body)]  # the LM was never asked


def test_log_dir_is_the_run_directory_and_track_stats_gives_detailed_results(task_lm, tmp_path):
    compiled = gepa(log_dir=str(tmp_path / "logs"), track_stats=True).compile(
        dspex.Predict("question -> answer", lm=task_lm), trainset=task_data(12, "t"), valset=task_data(12, "v"))
    assert (tmp_path / "logs" / "journal.jsonl").exists()
    results = compiled.detailed_results
    report = compiled.compile_report
    assert results.num_candidates == len(report.candidates) and results.best_candidate == results.candidates[
        results.best_idx]
    assert results.val_aggregate_scores[results.best_idx] * 100 == pytest.approx(report.score)
    assert results.total_metric_calls == report.metric_calls and results.log_dir == str(tmp_path / "logs")
    with pytest.raises(ConfigError, match="two run directories"):
        gepa(log_dir=str(tmp_path / "a")).compile(dspex.Predict("question -> answer", lm=task_lm),
                                                  trainset=task_data(12, "t"), run_dir=tmp_path / "b")


@pytest.mark.parametrize("options", [{"component_selector": "random"}, {"component_selector": lambda *a: ["x"]},
                                     {"instruction_proposer": "write one"}])
def test_unsupported_options_are_config_errors_saying_what_to_write(options):
    with pytest.raises(ConfigError):
        gepa(**options)


@pytest.mark.parametrize("shown", [True, False])
def test_parse_failures_reach_the_proposer_only_with_add_format_failure_as_feedback(tmp_path, shown):
    from dspex.testing import ProviderServer

    from .conftest import KEY, task_answer

    def half_garbled(req):
        asked = re.search(r"\[\[ ## question ## \]\]\n(\w+)", json.dumps(req.messages).replace("\\n", "\n"))
        if "new instruction" not in req.last_user and asked and asked.group(1)[-1] in "13579":
            return "no markers here"  # every re-ask too: the row fails to parse
        return task_answer(req)

    datasets = []

    def proposer(candidate, reflective_dataset, components_to_update):
        datasets.append(reflective_dataset["self"])
        return {"self": instruction_task.WITH_RULE}

    with ProviderServer(answer=half_garbled, api_key=KEY) as server, \
            dspex.runtime("local", cache_dir=tmp_path / "cache", log_level=None):
        lm = dspex.LM("openai/task", api_key=KEY, base_url=server.base_url())
        gepa(instruction_proposer=proposer, add_format_failure_as_feedback=shown, reflection_minibatch_size=6).compile(
            dspex.Predict("question -> answer", lm=lm), trainset=task_data(12, "t"), valset=task_data(12, "v"))
    failed = [r for d in datasets for r in d if r["Feedback"].startswith("The call failed")]
    assert datasets and (bool(failed) is shown)


def test_the_search_stops_once_a_candidate_is_perfect_on_every_validation_example(task_lm, tmp_path):
    def after_the_perfect_candidate(**options) -> list[str]:
        run = tmp_path / f"run-{len(options)}"
        dspex.GEPA(metric=feedback_metric, max_metric_calls=600, use_merge=False, **options).compile(
            dspex.Predict("question -> answer", lm=task_lm), trainset=task_data(12, "t"),
            valset=task_data(12, "v"), run_dir=run)
        entries = journal(run)
        perfect = next(n for n, e in enumerate(entries) if e["kind"] == "candidate" and e["score"] == 1.0)
        return [e["kind"] for e in entries[perfect + 1:]]

    assert not {"reflection", "proposal"} & set(after_the_perfect_candidate())  # nothing asked after it
    assert "reflection" in after_the_perfect_candidate(skip_perfect_score=False)  # DSPy's way: it goes on
