"""Optimizers side by side with DSPy 3.4.1 on the same simulated task (benchmarks/optimizer_task.py),
the simulator answering in 50 ms, defaults otherwise:

* BootstrapFewShot(max_bootstrapped_demos=4) over 200 train examples where the teacher passes 1 in 40
  (so both have to scan the trainset): wall time (goal ≤ 0.2× DSPy);
* random search with 8 candidates scored on 50 validation examples (goal ≤ 0.33× DSPy's wall).
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time

import dspex
from benchmarks.bench_clients import DSPY_PY, HERE
from benchmarks.optimizer_task import answer_text, rows
from dspex.testing import Faults, ProviderServer

KEY = "sk-bench"


def server() -> ProviderServer:
    return ProviderServer(lambda req: answer_text(req.messages, req.last_user), faults=Faults(latency=0.05))


def examples(n: int, prefix: str) -> list[dspex.Example]:
    return [dspex.Example(**r).with_inputs("question") for r in rows(n, prefix)]


def exact(example, pred, trace=None):
    return pred.answer == example.answer


def ours(mode: str) -> dict:
    with server() as sim, dspex.runtime("local", cache_dir=tempfile.mkdtemp(), log_level="error"):
        lm = dspex.LM("openai/task", api_key=KEY, base_url=sim.base_url(), cache=False)
        student = dspex.Predict("question -> answer", lm=lm)
        t0 = time.perf_counter()
        if mode == "bootstrap":
            compiled = dspex.BootstrapFewShot(exact, max_bootstrapped_demos=4, max_labeled_demos=4).compile(
                student, trainset=examples(200, "t"))
        else:
            compiled = dspex.BootstrapFewShotWithRandomSearch(
                exact, num_candidate_programs=5, max_bootstrapped_demos=2, max_labeled_demos=2).compile(
                student, trainset=examples(40, "t"), valset=examples(50, "v"))
        wall = time.perf_counter() - t0
        return {"wall": wall, "calls": len(sim.log), "demos": len(compiled.demos),
                "score": compiled.compile_report.score}


def theirs(mode: str) -> dict | None:
    if not DSPY_PY.exists():
        return None
    with server() as sim:
        out = subprocess.run([str(DSPY_PY), str(HERE / "dspy_optimizers_bench.py"), sim.base_url().removesuffix("/v1"),
                              mode, str(HERE)], capture_output=True, text=True, timeout=3600)
        if out.returncode != 0:
            return {"error": out.stderr.strip().splitlines()[-1][:200]}
        return {**json.loads(out.stdout.strip().splitlines()[-1]), "calls": len(sim.log)}


def run() -> str:
    lines = ["| optimizer | DSPy 3.4.1 wall (LM calls) | dspex wall (LM calls) | dspex vs DSPy | goal |",
             "|---|---|---|---|---|"]
    for mode, label, goal in (("bootstrap", "BootstrapFewShot, 200 train, 1 in 40 passes", "≤ 0.20×"),
                              ("random_search", "random search, 8 candidates × 50 val", "≤ 0.33×")):
        mine, d = ours(mode), theirs(mode)
        if d and "wall" in d:
            lines.append(f"| {label} | {d['wall']:.1f} s ({d['calls']}) | {mine['wall']:.1f} s ({mine['calls']}) | "
                         f"{mine['wall'] / d['wall']:.2f}× | {goal} |")
        else:
            lines.append(f"| {label} | {d['error'] if d else 'not installed'} | {mine['wall']:.1f} s "
                         f"({mine['calls']}) | n/a | {goal} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(run())
