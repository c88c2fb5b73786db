"""Runs inside the DSPy venv: DSPy as a new user writes it (default LM settings). Prints one JSON line.

usage: dspy_defaults_bench.py URL MODE N THREADS
  predict   N sequential Predict calls (0 ms server)          -> client CPU seconds per call
  evaluate  dspy.Evaluate over N examples with THREADS threads -> wall, rows, score, failures
"""

import json
import sys
import time

import dspy

url, mode, n, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
dspy.configure(lm=dspy.LM("openai/sim", api_base=url + "/v1", api_key="sk-bench"))
program = dspy.Predict("question -> answer")
for i in range(20):
    program(question=f"warm {i} {time.time()}")  # litellm's lazy imports; distinct, so no cache hit
if mode == "predict":
    c0 = time.process_time()
    for i in range(n):
        program(question=f"question {i} {time.time()}")
    print(json.dumps({"cpu_per_call": (time.process_time() - c0) / n}))
else:
    stamp = time.time()
    devset = [dspy.Example(question=f"question {i} {stamp}", answer="ok").with_inputs("question") for i in range(n)]

    def metric(example, pred, trace=None):
        return pred.answer == example.answer

    t0 = time.perf_counter()
    result = dspy.Evaluate(devset=devset, metric=metric, num_threads=threads, display_progress=False,
                           max_errors=10 ** 6)(program)
    wall = time.perf_counter() - t0
    ok = sum(1 for _, pred, score in result.results if score)
    print(json.dumps({"wall": wall, "rows": len(result.results), "ok": ok, "score": result.score}))
