"""Runs inside the DSPy venv: DSPy ChatAdapter format + parse cost per call (3-field signature, 4 demos)."""

import sys
import time

import dspy

N = int(sys.argv[1]) if len(sys.argv) > 1 else 2000


class QA(dspy.Signature):
    """Answer the question from the context."""

    question: str = dspy.InputField()
    context: str = dspy.InputField()
    answer: str = dspy.OutputField()


demos = [dspy.Example(question=f"q{i}", context=f"context {i}", answer=f"a{i}").with_inputs("question", "context")
         for i in range(4)]
adapter = dspy.ChatAdapter()
answer = "[[ ## answer ## ]]\nParis\n\n[[ ## completed ## ]]"
inputs = {"question": "What is the capital of France?", "context": "France is a country in Europe."}
for _ in range(100):
    adapter.format(QA, demos, inputs)
    adapter.parse(QA, answer)
t0 = time.perf_counter()
for _ in range(N):
    adapter.format(QA, demos, inputs)
    adapter.parse(QA, answer)
print((time.perf_counter() - t0) / N)
