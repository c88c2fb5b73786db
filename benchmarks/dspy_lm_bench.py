"""Runs inside the DSPy venv: dspy.LM against the provider simulator. Prints one JSON line.

usage: dspy_lm_bench.py URL MODE N THREADS
  cpu         N sequential calls at 0 ms latency -> client CPU seconds per call
  throughput  N calls over THREADS threads       -> wall seconds
  faults      N calls over THREADS threads       -> wall seconds, failures, empty answers
"""

import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import dspy

url, mode, n, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
lm = dspy.LM("openai/sim", api_base=url + "/v1", api_key="sk-bench", cache=False, temperature=0.0, max_tokens=64)


def call(i):
    try:
        out = lm(messages=[{"role": "user", "content": f"question {i}"}])
        return "ok" if out and out[0] else "empty"
    except Exception as exc:  # noqa: BLE001 - the benchmark counts failures by type
        return type(exc).__name__


for i in range(20):
    call(-i - 1)  # warm up litellm's lazy imports
if mode == "cpu":
    c0 = time.process_time()
    for i in range(n):
        call(i)
    print(json.dumps({"cpu_per_call": (time.process_time() - c0) / n}))
else:
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(call, range(-200, 0)))  # warm: every thread and connection exists
        t0 = time.perf_counter()
        results = list(pool.map(call, range(n)))
        wall = time.perf_counter() - t0
    failures = {}
    for r in results:
        if r != "ok":
            failures[r] = failures.get(r, 0) + 1
    print(json.dumps({"wall": wall, "ok": results.count("ok"), "failures": failures}))
