"""COPRO, SIMBA, MIPROv2 and GEPA side by side with DSPy 3.4.1 on a simulated two-predictor task
(benchmarks/two_rule_task.py: ``draft`` then ``final``; the score is 1.0 only when the draft predictor's
instruction names rule A and the final predictor's names rule B, zero-shot 0.25), the simulator answering in
50 ms. The same data, metric and simulated model for both; the same search sizes (SIZES, named in the table);
everything else at each library's defaults (DSPy's ``num_threads`` 8, dspex's ``max_concurrency`` 16 and
``parallel_trials`` 4). Each library runs in a process of its own against the simulator in this one. Per
optimizer and library: the valset score before and after, the compile's wall time and the LM calls the server
received for it (the scores are taken with another model name, so the log tells them apart); three runs with
the libraries interleaved, medians.

``python -m benchmarks.bench_two_rules [copro simba mipro gepa] [--repeats N]``
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time

import dspex
from benchmarks import two_rule_task as task
from benchmarks.bench_clients import DSPY_PY, HERE
from dspex.testing import Faults, ProviderServer
from dspex.testing import provider_server

KEY = "sk-bench"
SIZES = {"train": 32, "val": 32, "threads": None,  # DSPy's num_threads: None is its default (8)
         "breadth": 6, "depth": 2,  # COPRO
         "bsize": 16, "simba_candidates": 4, "max_steps": 4, "max_demos": 2,  # SIMBA
         "candidates": 6, "trials": 20, "minibatch": 10, "steps": 5, "demos": 2,  # MIPROv2
         "metric_calls": 400}  # GEPA
MODES = {"copro": f"COPRO, breadth {SIZES['breadth']}, depth {SIZES['depth']}, {SIZES['train']} train",
         "simba": f"SIMBA, bsize {SIZES['bsize']}, {SIZES['simba_candidates']} candidates, "
                  f"{SIZES['max_steps']} steps, max_demos {SIZES['max_demos']}, {SIZES['train']} train",
         "mipro": f"MIPROv2, {SIZES['candidates']} candidates, {SIZES['trials']} trials, "
                  f"minibatch {SIZES['minibatch']}, {SIZES['val']} val",
         "gepa": f"GEPA, max_metric_calls={SIZES['metric_calls']}, {SIZES['val']} val"}
REPEATS = 3


class _Handler(provider_server._Exchange):
    """The simulator's handler, answering a request for ``n`` choices with n choices, as OpenAI does (the
    simulated model joins its n answers with ``two_rule_task.SEPARATOR``). DSPy 3.4.1's COPRO asks for its
    ``n=breadth`` proposals as n requests of one choice each, as dspex does, so this only guards the task
    against a client that sends ``n``."""

    def _send_raw(self, entry, status, payload, headers, declared_length=None):
        if status == 200 and b"\\u001e" in payload:
            body = json.loads(payload)
            message = body["choices"][0]["message"]
            body["choices"] = [{"index": i, "message": {**message, "content": text}, "finish_reason": "stop"}
                               for i, text in enumerate(message["content"].split(task.SEPARATOR))]
            payload = json.dumps(body).encode()
        super()._send_raw(entry, status, payload, headers, declared_length)


class Simulator(ProviderServer):
    exchange = _Handler

    def __init__(self) -> None:
        model = task.Model()
        super().__init__(lambda req: model.answer(req.system, req.messages, req.params), faults=Faults(latency=0.05))

    def compile_calls(self) -> int:
        """Requests of the compile (model ``task``; the scores before and after use ``eval``)."""
        return sum(1 for r in self.log if isinstance(r.body, dict) and r.body.get("model") == "task")


class TwoStep(dspex.Module):
    def __init__(self, lm):
        super().__init__()
        self.draft = dspex.Predict("question -> draft", lm=lm)
        self.final = dspex.Predict("question, draft -> answer", lm=lm)

    def forward(self, question):
        draft = self.draft(question=question).draft
        return dspex.Prediction(draft=draft, answer=self.final(question=question, draft=draft).answer)


def examples(n: int, prefix: str) -> list[dspex.Example]:
    return [dspex.Example(**r).with_inputs("question") for r in task.rows(n, prefix)]


def judged(gold, pred) -> tuple[float, str]:
    return task.score_and_feedback(gold.draft, gold.answer, str(getattr(pred, "draft", "")),
                                   str(getattr(pred, "answer", "")))


def plain_metric(gold, pred, trace=None) -> float:
    return judged(gold, pred)[0]


def feedback_metric(gold, pred, trace=None):
    score, feedback = judged(gold, pred)
    return dspex.Prediction(score=score, feedback=feedback)


def dspex_side(url: str, mode: str, options: dict | None = None) -> dict:
    """dspex's compile against the simulator at ``url`` (run in a process of its own, as DSPy's side is, so
    that neither library shares its interpreter with the server); ``options``: the compile job's (e.g.
    ``max_concurrency``, ``parallel_trials``), for experiments."""
    options = options or {}
    with dspex.runtime("local", cache_dir=tempfile.mkdtemp(), log_level="error"):
        lm = dspex.LM("openai/task", api_key=KEY, base_url=url + "/v1", cache=False)
        eval_lm = dspex.LM("openai/eval", api_key=KEY, base_url=url + "/v1", cache=False)
        train, val = examples(SIZES["train"], "t"), examples(SIZES["val"], "v")

        def val_score(program) -> float:
            return dspex.Evaluate(val, plain_metric, max_concurrency=16, progress=False).run(
                program.deepcopy().set_lm(eval_lm)).mean

        student = TwoStep(lm)
        baseline = val_score(student)
        t0 = time.perf_counter()
        if mode == "copro":
            compiled = dspex.COPRO(metric=plain_metric, breadth=SIZES["breadth"], depth=SIZES["depth"],
                                   init_temperature=1.4).compile(student, trainset=train, **options)
        elif mode == "simba":
            compiled = dspex.SIMBA(metric=feedback_metric, bsize=SIZES["bsize"],
                                   num_candidates=SIZES["simba_candidates"], max_steps=SIZES["max_steps"],
                                   max_demos=SIZES["max_demos"]).compile(
                student, trainset=train, seed=0, **options)
        elif mode == "mipro":
            compiled = dspex.MIPROv2(metric=plain_metric, auto=None, num_candidates=SIZES["candidates"],
                                     num_trials=SIZES["trials"], minibatch_size=SIZES["minibatch"],
                                     minibatch_full_eval_steps=SIZES["steps"], max_bootstrapped_demos=SIZES["demos"],
                                     max_labeled_demos=SIZES["demos"]).compile(student, trainset=train, valset=val,
                                                                               **options)
        else:
            compiled = dspex.GEPA(metric=feedback_metric, reflection_lm=lm, max_metric_calls=SIZES["metric_calls"],
                                  reflection_minibatch_size=3, seed=0).compile(student, trainset=train, valset=val,
                                                                               **options)
        wall = time.perf_counter() - t0
        return {"wall": wall, "baseline": baseline, "score": val_score(compiled),
                "instructions": {name: p.signature.instructions for name, p in compiled.named_predictors()}}


def _side(command: list[str], cwd: str | None = None) -> dict:
    with Simulator() as sim:
        out = subprocess.run([*command, sim.base_url().removesuffix("/v1")], capture_output=True, text=True,
                             timeout=1200, cwd=cwd)
        if out.returncode != 0:
            return {"error": (out.stderr.strip().splitlines() or ["no output"])[-1][:200]}
        return {**json.loads(out.stdout.strip().splitlines()[-1]), "calls": sim.compile_calls()}


def ours(mode: str, options: dict | None = None) -> dict:
    return _side([sys.executable, "-m", "benchmarks.bench_two_rules", "--dspex-side", mode, json.dumps(options or {})],
                 cwd=str(HERE.parent))


def theirs(mode: str) -> dict | None:
    if not DSPY_PY.exists():
        return None
    return _side([str(DSPY_PY), str(HERE / "dspy_two_rules_bench.py"), mode, str(HERE), json.dumps(SIZES)])


def measure(modes: list[str], repeats: int) -> dict[str, dict[str, list[dict]]]:
    """Every mode ``repeats`` times, dspex and DSPy interleaved (who goes first alternates)."""
    runs: dict[str, dict[str, list[dict]]] = {m: {"dspex": [], "dspy": []} for m in modes}
    for r in range(repeats):
        for mode in modes:
            sides = (("dspex", ours), ("dspy", theirs))
            for side, fn in sides if r % 2 == 0 else sides[::-1]:
                result = fn(mode)
                print(f"run {r + 1} {mode} {side}: {json.dumps(result)}", file=sys.stderr, flush=True)
                if result is not None:
                    runs[mode][side].append(result)
    return runs


def median(rows: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def table(runs: dict[str, dict[str, list[dict]]]) -> str:
    lines = ["| optimizer (sim task, 50 ms) | DSPy 3.4.1: baseline → score, wall (LM calls) | "
             "dspex: baseline → score, wall (LM calls) | dspex vs DSPy: wall, calls | goal |",
             "|---|---|---|---|---|"]

    def cell(rows: list[dict]) -> str:
        ok = [r for r in rows if "wall" in r]
        if not ok:
            return rows[0]["error"] if rows else "not installed"
        return (f"{median(ok, 'baseline'):.2f} → {median(ok, 'score'):.2f}, {median(ok, 'wall'):.1f} s "
                f"({median(ok, 'calls'):.0f})")

    for mode, label in MODES.items():
        if mode not in runs:
            continue
        mine, d = [r for r in runs[mode]["dspex"] if "wall" in r], [r for r in runs[mode]["dspy"] if "wall" in r]
        ratio = (f"{median(mine, 'wall') / median(d, 'wall'):.2f}×, {median(mine, 'calls') / median(d, 'calls'):.2f}×"
                 if mine and d else "n/a")
        lines.append(f"| {label} | {cell(runs[mode]['dspy'])} | {cell(runs[mode]['dspex'])} | {ratio} | "
                     "score ≥ 0.95; ≤ 0.25×, ≤ 1.00× |")
    return "\n".join(lines)


def run(modes: list[str] | None = None, repeats: int = REPEATS) -> str:
    return table(measure(modes or list(MODES), repeats))


if __name__ == "__main__":
    args = sys.argv[1:]
    if args[:1] == ["--dspex-side"]:  # the child process of ours(): MODE OPTIONS URL
        print(json.dumps(dspex_side(args[3], args[1], json.loads(args[2]))))
        sys.exit(0)
    count = REPEATS
    if "--repeats" in args:
        at = args.index("--repeats")
        count = int(args[at + 1])
        del args[at:at + 2]
    print(run(args or None, count))
