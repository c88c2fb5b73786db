"""Compile quality on the real local model (SmolLM2-135M), dspex and DSPy 3.4.1 side by side on the same
fixed split of the UCI sentiment set: 140 train + 60 validation (random search scores its candidates
there) out of the 200 training reviews, and 300 dev reviews. Settings named: max_labeled_demos=6,
max_bootstrapped_demos=4, 4 shuffled candidates; everything else each library's default (dspex picks
the Text adapter for local models; DSPy uses its Chat adapter through the model's chat template).

``python -m benchmarks.bench_quality [fewshot | instructions | optimizers] [--only TEXT] [--no-dspy]`` (rows
whose name holds TEXT; dspex's side alone; each row is also printed to stderr as it ends): "optimizers" are issue 23's
COPRO (breadth 4, depth 2), SIMBA (bsize 16, 4 candidates, 4 steps, max_demos 2), InferRules (4 candidates,
5 rules) and BootstrapFewShotWithOptuna (4 trials, max_demos 4), the same sizes on DSPy's side; the same
model with 200 answer tokens proposes instructions, samples rules and writes InferRules' rules.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time

import dspex
from benchmarks.bench_clients import DSPY_PY, HERE
from dspex.demo import correct, sentiment_split
from dspex.local.models import resolve_model
from supervision.tcp import free_port

QA = dspex.Signature("review -> sentiment", instructions="Classify the sentiment of the review as positive or negative.")


def split() -> tuple[list, list, list]:
    train, dev = sentiment_split(300, train_size=200)
    return train[60:], train[:60], dev


def ours(which: str = "fewshot", only: str | None = None) -> dict:
    train, val, dev = split()
    out = {}
    with dspex.runtime("local", cache_dir=tempfile.mkdtemp(), log_level="error"):
        lm = dspex.LM("local/smollm2-135m", max_tokens=8)
        writer = lm.copy(max_tokens=200)  # the same model proposing / reflecting needs room for an instruction
        student = dspex.Predict(QA, lm=lm)
        runs = {
            "fewshot": (
                ("zero-shot", lambda: student),
                ("LabeledFewShot", lambda: dspex.LabeledFewShot(k=6).compile(student, trainset=train)),
                ("BootstrapFewShot", lambda: dspex.BootstrapFewShot(correct, max_bootstrapped_demos=4,
                                                                    max_labeled_demos=6).compile(student, trainset=train)),
                ("random search", lambda: dspex.BootstrapFewShotWithRandomSearch(
                    correct, num_candidate_programs=4, max_bootstrapped_demos=4, max_labeled_demos=6).compile(
                    student, trainset=train, valset=val)),
                ("random search, search_adapters", lambda: dspex.BootstrapFewShotWithRandomSearch(
                    correct, num_candidate_programs=4, max_bootstrapped_demos=4, max_labeled_demos=6,
                    search_adapters=True).compile(student, trainset=train, valset=val))),
            "instructions": (
                ("zero-shot", lambda: student),
                ("MIPROv2 auto=light", lambda: dspex.MIPROv2(correct, prompt_model=writer, auto="light").compile(
                    student, trainset=train, valset=val)),
                ("GEPA auto=light", lambda: dspex.GEPA(correct, reflection_lm=writer, auto="light").compile(
                    student, trainset=train, valset=val))),
            # issue 23's optimizers at the sizes in the module's doc (the same on DSPy's side)
            "optimizers": (
                ("COPRO", lambda: dspex.COPRO(prompt_model=writer, metric=correct, breadth=4, depth=2).compile(
                    student, trainset=train)),
                ("SIMBA", lambda: dspex.SIMBA(metric=correct, bsize=16, num_candidates=4, max_steps=4, max_demos=2,
                                              prompt_model=writer).compile(student, trainset=train)),
                ("InferRules", lambda: dspex.InferRules(num_candidates=4, num_rules=5, teacher_settings={"lm": writer},
                                                        metric=correct, max_bootstrapped_demos=4,
                                                        max_labeled_demos=6).compile(student, trainset=train,
                                                                                     valset=val)),
                ("BootstrapFewShotWithOptuna", lambda: dspex.BootstrapFewShotWithOptuna(
                    correct, num_candidate_programs=4, max_bootstrapped_demos=4, max_labeled_demos=6).compile(
                    student, max_demos=4, trainset=train, valset=val))),
        }[which]
        for name, make in runs:
            if only is not None and only not in name:
                continue
            t0 = time.perf_counter()
            before = lm.usage()
            program = make()
            compile_s = time.perf_counter() - t0
            result = dspex.Evaluate(dev, correct, max_concurrency=2, progress=False).run(program)
            after = lm.usage()
            out[name] = {"dev": result.mean, "compile_s": compile_s, "wall_s": time.perf_counter() - t0,
                         "calls": after.requests - before.requests, "tokens": after.total_tokens - before.total_tokens}
            print(json.dumps({name: out[name]}), file=sys.stderr, flush=True)  # each row as it ends: a long run
    return out


def theirs(which: str = "fewshot") -> dict | None:
    if not DSPY_PY.exists():
        return None
    train, val, dev = split()
    rows = lambda exs: [{"review": e.review, "sentiment": e.sentiment} for e in exs]  # noqa: E731
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump({"train": rows(train), "val": rows(val), "dev": rows(dev)}, fh)
    return dspy_on_local_model("dspy_quality_bench.py", fh.name, which)


def dspy_on_local_model(script: str, *args: str) -> dict:
    """Run ``benchmarks/<script> URL *args`` in DSPy's venv against a SmolLM2-135M server of its own (the same
    model file, the same server code dspex's runtime starts); its last stdout line is its JSON result."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "dspex.local.server", "--model", str(resolve_model("smollm2-135m")),
                               "--port", str(port)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        server.stdout.readline()  # its URL: it is listening
        out = subprocess.run([str(DSPY_PY), str(HERE / script), f"http://127.0.0.1:{port}/v1", *args],
                             capture_output=True, text=True, timeout=7200)
        if out.returncode != 0:
            return {"error": out.stderr.strip().splitlines()[-1][:200]}
        return json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        server.stdin.close()  # the model server exits when its stdin closes
        server.wait(timeout=30)


def run(which: str = "fewshot", only: str | None = None, dspy: bool = True) -> str:
    mine = ours(which, only)
    d = theirs(which) if dspy else None
    lines = ["| program | DSPy 3.4.1 dev accuracy (compile s) | dspex dev accuracy (compile s, LM calls, tokens) |",
             "|---|---|---|"]
    for name, m in mine.items():
        t = (d or {}).get(name)
        theirs_cell = ("not run" if t is None else t["error"] if "error" in t
                       else f"{t['dev']:.1%} ({t['compile_s']:.0f} s)")
        lines.append(f"| {name} | {theirs_cell} | {m['dev']:.1%} ({m['compile_s']:.0f} s, {m['calls']}, {m['tokens']}) |")
    return "\n".join(lines)


if __name__ == "__main__":
    # python -m benchmarks.bench_quality [fewshot | instructions | optimizers] [--only TEXT] [--no-dspy]
    args = sys.argv[1:]
    only = args[args.index("--only") + 1] if "--only" in args else None
    print(run(args[0] if args and not args[0].startswith("--") else "fewshot", only, "--no-dspy" not in args))
