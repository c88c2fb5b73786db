"""Runs inside the DSPy venv: dspy.Evaluate over the provider simulator. Prints one JSON line.

usage: dspy_evaluate_bench.py URL N THREADS CPU_MS
"""

import json
import sys
import time

import dspy

url, n, threads, cpu_ms = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
lm = dspy.LM("openai/sim", api_base=url + "/v1", api_key="sk-bench", cache=False, max_tokens=64)
dspy.configure(lm=lm)
program = dspy.Predict("question -> answer")
devset = [dspy.Example(question=f"question {i}", answer="ok").with_inputs("question") for i in range(n)]


def metric(example, pred, trace=None):
    end = time.thread_time() + cpu_ms / 1000
    while time.thread_time() < end:
        pass
    return pred.answer == example.answer


for i in range(20):
    program(question=f"warm {i}")
t0, cpu0 = time.perf_counter(), time.process_time()
result = dspy.Evaluate(devset=devset, metric=metric, num_threads=threads, display_progress=False,
                       max_errors=10 ** 6)(program)
wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
rows = len(result.results) if hasattr(result, "results") else None
score = result.score if hasattr(result, "score") else float(result)
print(json.dumps({"wall": wall, "rows": rows, "score": score, "cpu_s": cpu}))
