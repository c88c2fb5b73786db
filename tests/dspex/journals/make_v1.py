"""How ``v1/`` was made: run with the code of the release before the journal's format version (commit
951755e), tiny compiles and an evaluation against the simulator, their run directories kept as format-1
journals, the program each compile gave beside it (``expected.json``). Not collected by pytest::

    git archive 951755e | tar -x -C /tmp/old
    cd /tmp/old && python /path/to/make_v1.py /tmp/old /tmp/v1   # then copy /tmp/v1 over journals/v1

The settings here and in ``test_journal_compat.py`` must stay the same (the journals' headers hold them).
"""
import json, shutil, sys
from pathlib import Path

root, out = Path(sys.argv[1]), Path(sys.argv[2])
sys.path.insert(0, str(root))
import dspex
from dspex.testing import ProviderServer
from tests.dspex.teleprompt.conftest import KEY, answer, data, exact, feedback_metric, task_answer, task_data


def program_json(compiled):
    return {name: {"instructions": p.signature.instructions, "demos": p.demos} for name, p in compiled.named_predictors()}


def run(name, answer_fn, make):
    with ProviderServer(answer=answer_fn, api_key=KEY) as sim, \
            dspex.runtime("local", cache_dir=out / "cache", log_level="error"):
        lm = dspex.LM("openai/task", api_key=KEY, base_url=sim.base_url(), cache=False)
        compiled = make(lm, out / name)
        report = compiled.compile_report
        (out / name / "expected.json").write_text(json.dumps(
            {"program": program_json(compiled), "score": report.score, "baseline": report.baseline_score,
             "candidates": [[c.id, c.score] for c in report.candidates], "requests": len(sim.log)}, indent=1) + "\n")


out.mkdir(parents=True, exist_ok=True)
run("bootstrap", answer, lambda lm, d: dspex.BootstrapFewShot(exact, max_bootstrapped_demos=2, max_labeled_demos=2).compile(
    dspex.Predict("question -> answer", lm=lm), trainset=data(6, "t"), run_dir=d))
run("random_search", answer, lambda lm, d: dspex.BootstrapFewShotWithRandomSearch(
    exact, num_candidate_programs=2, max_bootstrapped_demos=2, max_labeled_demos=2).compile(
    dspex.Predict("question -> answer", lm=lm), trainset=data(6, "t"), valset=data(4, "v"), run_dir=d))
run("mipro", task_answer, lambda lm, d: dspex.MIPROv2(
    metric=feedback_metric, auto=None, num_candidates=3, num_trials=4, minibatch_size=3, minibatch_full_eval_steps=2,
    max_bootstrapped_demos=1, max_labeled_demos=1).compile(
    dspex.Predict("question -> answer", lm=lm), trainset=task_data(6, "t"), valset=task_data(6, "v"), run_dir=d))
run("gepa", task_answer, lambda lm, d: dspex.GEPA(metric=feedback_metric, max_metric_calls=40).compile(
    dspex.Predict("question -> answer", lm=lm), trainset=task_data(4, "t"), valset=task_data(4, "v"), run_dir=d))
with ProviderServer(answer=answer, api_key=KEY) as sim, dspex.runtime("local", cache_dir=out / "cache", log_level="error"):
    lm = dspex.LM("openai/task", api_key=KEY, base_url=sim.base_url(), cache=False)
    (out / "evaluate").mkdir(exist_ok=True)
    result = dspex.Evaluate(data(6, "v"), exact, progress=False, journal=out / "evaluate" / "rows.jsonl").run(
        dspex.Predict("question -> answer", lm=lm))
    (out / "evaluate" / "expected.json").write_text(json.dumps({"score": result.score, "rows": [
        [r.index, r.score] for r in result.rows]}) + "\n")
shutil.rmtree(out / "cache")
