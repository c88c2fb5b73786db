"""Runs inside the DSPy venv: DSPy's MIPROv2 / GEPA on the instruction-sensitive simulated task
(dspex/testing/instruction_task.py, loaded by path: no dspex import). Prints one JSON line.

usage: dspy_instructions_bench.py URL MODE REPO   (MODE: mipro | gepa; sizes in benchmarks/bench_instructions.py)
"""

import importlib.util
import json
import sys
import time

import dspy

url, mode, repo = sys.argv[1], sys.argv[2], sys.argv[3]
spec = importlib.util.spec_from_file_location("instruction_task", f"{repo}/dspex/testing/instruction_task.py")
task = importlib.util.module_from_spec(spec)
spec.loader.exec_module(task)
sizes = json.loads(sys.argv[4])

lm = dspy.LM("openai/task", api_base=url + "/v1", api_key="sk-bench", cache=False)
dspy.configure(lm=lm)


def metric(gold, pred, trace=None, pred_name=None, pred_trace=None):
    score, feedback = task.score_and_feedback(gold.answer, pred.answer)
    return dspy.Prediction(score=score, feedback=feedback)


def plain_metric(gold, pred, trace=None):
    return task.score_and_feedback(gold.answer, pred.answer)[0]


train = [dspy.Example(**r).with_inputs("question") for r in task.rows(sizes["train"], "t")]
val = [dspy.Example(**r).with_inputs("question") for r in task.rows(sizes["val"], "v")]
student = dspy.Predict("question -> answer")
t0 = time.perf_counter()
if mode == "mipro":
    optimizer = dspy.MIPROv2(metric=plain_metric, auto=None, num_candidates=sizes["candidates"],
                             max_bootstrapped_demos=sizes["demos"], max_labeled_demos=sizes["demos"])
    compiled = optimizer.compile(student, trainset=train, valset=val, num_trials=sizes["trials"],
                                 minibatch_size=sizes["minibatch"], minibatch_full_eval_steps=sizes["steps"])
else:
    optimizer = dspy.GEPA(metric=metric, reflection_lm=lm, max_metric_calls=sizes["metric_calls"],
                          reflection_minibatch_size=3, seed=0)
    compiled = optimizer.compile(student, trainset=train, valset=val)
wall = time.perf_counter() - t0
score = sum(plain_metric(ex, compiled(**ex.inputs())) for ex in val) / len(val)
print(json.dumps({"wall": wall, "score": score, "instruction": compiled.signature.instructions}))
