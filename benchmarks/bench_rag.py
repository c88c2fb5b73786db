"""The RAG example (``examples/rag.py``) measured, dspex and DSPy 3.4.1 side by side on the same local model
(SmolLM2-135M, one model server process for DSPy; dspex's own supervised one) and the same retrieval: the
countries task (``dspex.datasets.countries_qa``: 24 train, 24 val, 100 dev), all-MiniLM-L6-v2 vectors of
the 280 passages, the top 3 per question. DSPy's ``dspy.retrievers.Embeddings`` searches the same vectors
(computed once here and handed over: DSPy's venv has no sentence-transformers). Rows: closed-book, zero-shot
RAG, RAG compiled by MIPROv2 ``auto="light"`` with the same model writing instructions (200 answer tokens);
without minibatches on both sides (the valset is smaller than DSPy's minibatch of 35, which DSPy refuses).
Score: exact match after normalization on the dev questions.

``python -m benchmarks.bench_rag [--no-dspy]`` (each row is also printed to stderr as it ends)
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import dspex
from benchmarks.bench_clients import DSPY_PY, HERE
from benchmarks.bench_quality import dspy_on_local_model
from dspex.datasets import countries_qa
from dspex.evaluate import answer_exact_match

sys.path.insert(0, str(HERE.parent / "examples"))
from rag import RAG  # noqa: E402  (the example's module, measured as users run it)

SIZES, K = (24, 24, 100), 3


def ours(vectors_out: Path) -> dict:
    task = countries_qa(*SIZES)
    out: dict = {}
    with dspex.runtime("local", cache_dir=tempfile.mkdtemp(), log_level="error"):
        embedder = dspex.Embedder("local/all-minilm-l6-v2")
        t0 = time.perf_counter()
        search = dspex.retrievers.Embeddings(corpus=task.corpus, embedder=embedder, k=K)
        out["index_s"] = time.perf_counter() - t0
        questions = [e.question for e in task.train + task.val + task.dev]
        out["recall"] = sum(any(e.answer in p for p in search(e.question).passages) for e in task.dev) / len(task.dev)
        vectors_out.write_text(json.dumps({"corpus": [list(map(float, v)) for v in search.corpus_embeddings],
                                           "queries": dict(zip(questions, embedder(questions)))}))
        lm = dspex.LM("local/smollm2-135m", max_tokens=24)
        writer = lm.copy(max_tokens=200)
        evaluate = dspex.Evaluate(task.dev, answer_exact_match, max_concurrency=2, progress=False)
        runs = (("closed-book", lambda: dspex.Predict("question -> answer", lm=lm)),
                ("RAG zero-shot", lambda: RAG(search, lm)),
                ("RAG, MIPROv2 auto=light", lambda: dspex.MIPROv2(answer_exact_match, prompt_model=writer,
                                                                  auto="light").compile(
                    RAG(search, lm), trainset=task.train, valset=task.val)))
        for name, make in runs:
            # writer is lm.copy(): the same client, whose usage() counts both handles' requests
            before, t0 = lm.usage().requests, time.perf_counter()
            program = make()
            compile_s = time.perf_counter() - t0
            out[name] = {"dev": evaluate.run(program).mean, "compile_s": compile_s,
                         "calls": lm.usage().requests - before}
            print(json.dumps({name: out[name]}), file=sys.stderr, flush=True)  # each row as it ends
    return out


def theirs(vectors: Path) -> dict | None:
    if not DSPY_PY.exists():
        return None
    task = countries_qa(*SIZES)
    rows = lambda exs: [{"question": e.question, "answer": e.answer} for e in exs]  # noqa: E731
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump({"train": rows(task.train), "val": rows(task.val), "dev": rows(task.dev), "corpus": task.corpus,
                   "k": K, "vectors": str(vectors)}, fh)
    return dspy_on_local_model("dspy_rag_bench.py", fh.name)


def run(dspy: bool = True) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        vectors = Path(tmp) / "vectors.json"
        mine = ours(vectors)
        d = (theirs(vectors) if dspy else None) or {}
    lines = [f"_Retrieval (the same for both): the answer's passage in the top {K} for {mine['recall']:.0%} of dev "
             f"questions; dspex embedded the corpus in {mine['index_s']:.1f} s._", "",
             "| program (countries task, SmolLM2-135M) | DSPy 3.4.1: dev exact match (compile s, LM calls) | "
             "dspex: dev exact match (compile s, LM calls) |", "|---|---|---|"]
    for name in ("closed-book", "RAG zero-shot", "RAG, MIPROv2 auto=light"):
        m, t = mine[name], d.get(name)
        cell = ("not run" if t is None else t["error"] if "error" in t
                else f"{t['dev']:.1%} ({t['compile_s']:.0f} s, {t['calls']})")
        lines.append(f"| {name} | {cell} | {m['dev']:.1%} ({m['compile_s']:.0f} s, {m['calls']}) |")
    if "error" in d:
        lines.append(f"\nDSPy's side failed: {d['error']}")
    return "\n".join(lines)


if __name__ == "__main__":
    print(run(dspy="--no-dspy" not in sys.argv[1:]))
