"""Adapter format + parse cost per call, side by side with DSPy's ChatAdapter in the same run."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import dspex

N = 2000
HERE = Path(__file__).resolve().parent
DSPY_PY = HERE / ".venv-dspy" / "bin" / "python"


def ours(adapter: dspex.Adapter) -> float:
    sig = dspex.Signature("question, context -> answer", instructions="Answer the question from the context.")
    demos = [dspex.Example(question=f"q{i}", context=f"context {i}", answer=f"a{i}") for i in range(4)]
    inputs = {"question": "What is the capital of France?", "context": "France is a country in Europe."}
    answer = adapter.format_answer(sig, {"answer": "Paris"})
    for _ in range(100):
        adapter.format(sig, inputs, demos)
        adapter.parse(sig, answer)
    t0 = time.perf_counter()
    for _ in range(N):
        adapter.format(sig, inputs, demos)
        adapter.parse(sig, answer)
    return (time.perf_counter() - t0) / N


def dspy_chat() -> float | None:
    if not DSPY_PY.exists():
        return None
    out = subprocess.run([str(DSPY_PY), str(HERE / "dspy_adapter_bench.py"), str(N)], capture_output=True, text=True,
                         timeout=600, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def run() -> str:
    theirs = dspy_chat()
    rows = ["| adapter | format + parse per call | vs DSPy ChatAdapter (goal ≤ 0.5×) |", "|---|---|---|"]
    if theirs is not None:
        rows.append(f"| DSPy 3.4.1 ChatAdapter | {theirs * 1e6:.1f} µs | 1.00× |")
    for adapter in (dspex.ChatAdapter(), dspex.JSONAdapter(), dspex.TextAdapter()):
        t = ours(adapter)
        ratio = f"{t / theirs:.2f}×" if theirs else "DSPy not installed (run ./run bench)"
        rows.append(f"| dspex {adapter.name()} | {t * 1e6:.1f} µs | {ratio} |")
    return "\n".join(rows)
