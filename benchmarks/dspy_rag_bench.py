"""Runs inside the DSPy venv: the RAG example's program on DSPy 3.4.1, on the local model through its
OpenAI-compatible server and the vectors the parent computed (DSPy's Embeddings searches them). Prints one
JSON line.

usage: dspy_rag_bench.py URL SPLIT_JSON
"""

import json
import sys
import time

import dspy
import numpy as np
from dspy.evaluate import answer_exact_match

url, split_path = sys.argv[1], sys.argv[2]
split = json.loads(open(split_path).read())
vectors = json.loads(open(split["vectors"]).read())
lookup = dict(zip(split["corpus"], vectors["corpus"]))
lookup.update(vectors["queries"])
lm = dspy.LM("openai/smollm2-135m", api_base=url, api_key="local", max_tokens=24, temperature=0.0)
writer = dspy.LM("openai/smollm2-135m", api_base=url, api_key="local", max_tokens=200, temperature=0.0)
dspy.configure(lm=lm)


def embed(texts):
    return np.array([lookup[t] for t in texts], dtype=np.float32)


search = dspy.retrievers.Embeddings(corpus=split["corpus"], embedder=embed, k=split["k"])


class RAG(dspy.Module):
    def __init__(self):
        super().__init__()
        self.respond = dspy.Predict("context: list[str], question -> answer")

    def forward(self, question):
        return self.respond(context=search(question).passages, question=question)


def ex(row):
    return dspy.Example(question=row["question"], answer=row["answer"]).with_inputs("question")


train, val, dev = ([ex(r) for r in split[k]] for k in ("train", "val", "dev"))


def calls():
    return len(lm.history) + len(writer.history)


out = {}
runs = (("closed-book", lambda: dspy.Predict("question -> answer")),
        ("RAG zero-shot", RAG),
        ("RAG, MIPROv2 auto=light", lambda: dspy.MIPROv2(metric=answer_exact_match, prompt_model=writer,
                                                         auto="light", num_threads=2).compile(
            RAG(), trainset=train, valset=val, minibatch=False)))
for name, make in runs:
    t0, before = time.perf_counter(), calls()
    try:
        program = make()
        compile_s, made = time.perf_counter() - t0, calls() - before
        result = dspy.Evaluate(devset=dev, metric=answer_exact_match, num_threads=2, display_progress=False,
                               max_errors=10 ** 6)(program)
        out[name] = {"dev": result.score / 100.0, "compile_s": compile_s, "calls": made}
    except Exception as exc:  # noqa: BLE001 - a failed row is reported, the others still run
        out[name] = {"error": f"{type(exc).__name__}: {str(exc)[:160]}"}
print(json.dumps(out))
