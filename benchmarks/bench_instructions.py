"""Instruction optimizers side by side with DSPy 3.4.1: MIPROv2 and GEPA on the instruction-sensitive
simulated task (dspex/testing/instruction_task.py: zero-shot 0.5, 1.0 once the instruction names the
rule), the simulator answering in 50 ms. Same sizes for both (num_candidates, trials, minibatch; GEPA's
max_metric_calls); DSPy at its defaults otherwise, dspex at its defaults and at ``parallel_trials=8``
(the setting the figure names). Score is the returned program's on the valset.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time

import dspex
from benchmarks.bench_clients import DSPY_PY, HERE
from dspex.testing import Faults, ProviderServer, instruction_task

KEY = "sk-bench"
SIZES = {"train": 30, "val": 30, "candidates": 6, "trials": 16, "minibatch": 10, "steps": 5, "demos": 2,
         "metric_calls": 300}


def server() -> ProviderServer:
    return ProviderServer(lambda req: instruction_task.answer_text(req.system, req.messages),
                          faults=Faults(latency=0.05))


def examples(n: int, prefix: str) -> list[dspex.Example]:
    return [dspex.Example(**r).with_inputs("question") for r in instruction_task.rows(n, prefix)]


def metric(example, pred, trace=None):
    score, feedback = instruction_task.score_and_feedback(example.answer, pred.answer)
    return dspex.Prediction(score=score, feedback=feedback)


def ours(mode: str, parallel: int | None) -> dict:
    with server() as sim, dspex.runtime("local", cache_dir=tempfile.mkdtemp(), log_level="error"):
        lm = dspex.LM("openai/task", api_key=KEY, base_url=sim.base_url(), cache=False)
        student = dspex.Predict("question -> answer", lm=lm)
        train, val = examples(SIZES["train"], "t"), examples(SIZES["val"], "v")
        options = {} if parallel is None else {"parallel_trials": parallel}
        t0 = time.perf_counter()
        if mode == "mipro":
            compiled = dspex.MIPROv2(metric=metric, auto=None, num_candidates=SIZES["candidates"],
                                     num_trials=SIZES["trials"], minibatch_size=SIZES["minibatch"],
                                     minibatch_full_eval_steps=SIZES["steps"], max_bootstrapped_demos=SIZES["demos"],
                                     max_labeled_demos=SIZES["demos"]).compile(student, trainset=train, valset=val,
                                                                               **options)
        else:
            compiled = dspex.GEPA(metric=metric, reflection_lm=lm, max_metric_calls=SIZES["metric_calls"]).compile(
                student, trainset=train, valset=val, **options)
        wall = time.perf_counter() - t0
        report = compiled.compile_report
        return {"wall": wall, "calls": len(sim.log), "score": report.score / 100,  # fractions, as the DSPy side prints them
                "baseline": report.baseline_score / 100,
                "metric_calls": report.metric_calls}


def theirs(mode: str) -> dict | None:
    if not DSPY_PY.exists():
        return None
    with server() as sim:
        out = subprocess.run([str(DSPY_PY), str(HERE / "dspy_instructions_bench.py"), sim.base_url().removesuffix("/v1"),
                              mode, str(HERE.parent), json.dumps(SIZES)], capture_output=True, text=True, timeout=3600)
        if out.returncode != 0:
            return {"error": out.stderr.strip().splitlines()[-1][:200]}
        return {**json.loads(out.stdout.strip().splitlines()[-1]), "calls": len(sim.log)}


def run() -> str:
    lines = ["| optimizer (sim task, 50 ms) | DSPy 3.4.1: score, wall (LM calls) | dspex default: score, wall (LM calls)"
             " | dspex parallel_trials=8: score, wall (LM calls) | parallel_trials=8 vs DSPy wall | goal |",
             "|---|---|---|---|---|---|"]
    for mode, label in (("mipro", f"MIPROv2, {SIZES['candidates']} candidates, {SIZES['trials']} trials, "
                                  f"minibatch {SIZES['minibatch']}, {SIZES['val']} val"),
                        ("gepa", f"GEPA, max_metric_calls={SIZES['metric_calls']}, {SIZES['val']} val")):
        default, fast, d = ours(mode, None), ours(mode, 8), theirs(mode)

        def cell(r: dict) -> str:
            return f"{r['score']:.2f}, {r['wall']:.1f} s ({r['calls']})"

        dspy_cell = cell(d) if d and "wall" in d else (d["error"] if d else "not installed")
        ratio = f"{fast['wall'] / d['wall']:.2f}×" if d and "wall" in d else "n/a"
        lines.append(f"| {label} | {dspy_cell} | {cell(default)} | {cell(fast)} | {ratio} | ≤ 0.25×, score ≥ 0.95 |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(run())
