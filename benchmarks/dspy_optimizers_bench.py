"""Runs inside the DSPy venv: DSPy's optimizers on the simulated task. Prints one JSON line.

usage: dspy_optimizers_bench.py URL MODE
  bootstrap      BootstrapFewShot(max_bootstrapped_demos=4) over 200 train examples
  random_search  BootstrapFewShotWithRandomSearch(num_candidate_programs=5 -> 8 candidates) on 50 val
"""

import json
import sys
import time

import dspy

sys.path.insert(0, sys.argv[3])
from optimizer_task import rows  # noqa: E402

url, mode = sys.argv[1], sys.argv[2]
dspy.configure(lm=dspy.LM("openai/task", api_base=url + "/v1", api_key="sk-bench", cache=False))


def metric(example, pred, trace=None):
    return pred.answer == example.answer


student = dspy.Predict("question -> answer")
train = [dspy.Example(**r).with_inputs("question") for r in rows(200, "t")]
val = [dspy.Example(**r).with_inputs("question") for r in rows(50, "v")]
t0 = time.perf_counter()
if mode == "bootstrap":
    compiled = dspy.BootstrapFewShot(metric=metric, max_bootstrapped_demos=4, max_labeled_demos=4).compile(
        student, trainset=train)
    out = {"demos": len(compiled.demos)}
else:
    compiled = dspy.BootstrapFewShotWithRandomSearch(metric=metric, num_candidate_programs=5,
                                                     max_bootstrapped_demos=2, max_labeled_demos=2
                                                     ).compile(student, trainset=train[:40], valset=val)
    out = {"demos": len(compiled.demos)}
out["wall"] = time.perf_counter() - t0
print(json.dumps(out))
