"""Runs inside the DSPy venv: DSPy's COPRO / SIMBA / MIPROv2 / GEPA on the two-predictor simulated task
(benchmarks/two_rule_task.py, loaded by path: no dspex import). Prints one JSON line.

usage: dspy_two_rules_bench.py MODE BENCH_DIR SIZES URL   (MODE: copro | simba | mipro | gepa; SIZES: JSON,
from benchmarks/bench_two_rules.py)

The task LM is ``openai/task``; the baseline and final scores are taken on the valset with ``openai/eval``
(the same simulated model), so the server's log tells the compile's calls apart.
"""

import importlib.util
import json
import sys
import time

import dspy

mode, bench_dir, sizes, url = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4]
spec = importlib.util.spec_from_file_location("two_rule_task", f"{bench_dir}/two_rule_task.py")
task = importlib.util.module_from_spec(spec)
spec.loader.exec_module(task)

lm = dspy.LM("openai/task", api_base=url + "/v1", api_key="sk-bench", cache=False)
eval_lm = dspy.LM("openai/eval", api_base=url + "/v1", api_key="sk-bench", cache=False)
dspy.configure(lm=lm)
THREADS = {"num_threads": sizes["threads"]} if sizes["threads"] else {}  # None: DSPy's default (8)


class TwoStep(dspy.Module):
    def __init__(self):
        super().__init__()
        self.draft = dspy.Predict("question -> draft")
        self.final = dspy.Predict("question, draft -> answer")

    def forward(self, question):
        draft = self.draft(question=question).draft
        return dspy.Prediction(draft=draft, answer=self.final(question=question, draft=draft).answer)


def judged(gold, pred):
    return task.score_and_feedback(gold.draft, gold.answer, str(getattr(pred, "draft", "")),
                                   str(getattr(pred, "answer", "")))


def plain_metric(gold, pred, trace=None):
    return judged(gold, pred)[0]


def feedback_metric(gold, pred, trace=None, pred_name=None, pred_trace=None):
    score, feedback = judged(gold, pred)
    return dspy.Prediction(score=score, feedback=feedback)


def val_score(program):
    with dspy.context(lm=eval_lm):
        return dspy.Evaluate(devset=val, metric=plain_metric, num_threads=16)(program).score / 100


train = [dspy.Example(**r).with_inputs("question") for r in task.rows(sizes["train"], "t")]
val = [dspy.Example(**r).with_inputs("question") for r in task.rows(sizes["val"], "v")]
student = TwoStep()
baseline = val_score(student)
t0 = time.perf_counter()
if mode == "copro":
    compiled = dspy.COPRO(metric=plain_metric, breadth=sizes["breadth"], depth=sizes["depth"],
                          init_temperature=1.4).compile(student, trainset=train, eval_kwargs=THREADS)
elif mode == "simba":
    compiled = dspy.SIMBA(metric=feedback_metric, bsize=sizes["bsize"], num_candidates=sizes["simba_candidates"],
                          max_steps=sizes["max_steps"], max_demos=sizes["max_demos"], **THREADS).compile(
        student, trainset=train, seed=0)
elif mode == "mipro":
    compiled = dspy.MIPROv2(metric=plain_metric, auto=None, num_candidates=sizes["candidates"],
                            max_bootstrapped_demos=sizes["demos"], max_labeled_demos=sizes["demos"],
                            **THREADS).compile(student, trainset=train, valset=val,
                                                         num_trials=sizes["trials"], minibatch_size=sizes["minibatch"],
                                                         minibatch_full_eval_steps=sizes["steps"])
else:
    compiled = dspy.GEPA(metric=feedback_metric, reflection_lm=lm, max_metric_calls=sizes["metric_calls"],
                         reflection_minibatch_size=3, seed=0, **THREADS).compile(
        student, trainset=train, valset=val)
wall = time.perf_counter() - t0
print(json.dumps({"wall": wall, "baseline": baseline, "score": val_score(compiled),
                  "instructions": {name: p.signature.instructions for name, p in compiled.named_predictors()}}))
