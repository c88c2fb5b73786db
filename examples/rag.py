"""RAG on this machine alone: the local embedder retrieves from a corpus that ships with dspex, the
local model (SmolLM2-135M) answers from the passages, and MIPROv2 compiles the program.

    python examples/rag.py [--train 24] [--val 24] [--dev 100] [--k 3] [--out compiled.json]

The task (``dspex.datasets.countries_qa``, ISO 3166 country facts, LGPL-2.1 data): a question's answer (an
alpha-3 code, a numeric code, an official name) stands in one passage of 280, so closed-book the model
scores 0 and a retriever is what gives it a chance. Scored by exact match after normalization
(``dspex.evaluate.answer_exact_match``). Prints the closed-book, zero-shot RAG and compiled RAG accuracy on
the dev questions, the retriever's recall, the compile's LM usage and where its journal is; stops every
actor and the model process on the way out, Ctrl-C included.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import dspex
from dspex.datasets import countries_qa
from dspex.evaluate import answer_exact_match


class RAG(dspex.Module):
    """Retrieve ``k`` passages for the question, answer from them."""

    def __init__(self, search: dspex.retrievers.Embeddings, lm: dspex.LM) -> None:
        super().__init__()
        self.search = search
        self.respond = dspex.Predict("context: list[str], question -> answer", lm=lm)

    def forward(self, question: str) -> dspex.Prediction:
        return self.respond(context=self.search(question).passages, question=question)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=24, help="questions MIPROv2 bootstraps demos from")
    parser.add_argument("--val", type=int, default=24, help="questions the candidates are scored on")
    parser.add_argument("--dev", type=int, default=100, help="held-out questions")
    parser.add_argument("--k", type=int, default=3, help="passages retrieved per question")
    parser.add_argument("--out", default=None, help="where to save the compiled program (default: a temp dir)")
    args = parser.parse_args(argv)
    data = countries_qa(args.train, args.val, args.dev)
    workdir = Path(tempfile.mkdtemp(prefix="dspex-rag-"))
    t0 = time.monotonic()
    print(f"RAG over {len(data.corpus)} ISO 3166 passages: {len(data.train)} train / {len(data.val)} val / "
          f"{len(data.dev)} dev questions\n")
    with dspex.runtime("local", cache_dir=workdir / "cache", log_level="error"):
        search = dspex.retrievers.Embeddings(corpus=data.corpus, embedder=dspex.Embedder("local/all-minilm-l6-v2"),
                                             k=args.k)
        recall = sum(any(e.answer in p for p in search(e.question).passages) for e in data.dev) / len(data.dev)
        print(f"corpus embedded in {time.monotonic() - t0:.1f}s; the answer is in the top {args.k} passages "
              f"for {recall:.0%} of dev questions")
        lm = dspex.LM("local/smollm2-135m", max_tokens=24)
        writer = lm.copy(max_tokens=200)  # the prompt model writes instructions: it needs room
        evaluate = dspex.Evaluate(data.dev, answer_exact_match, max_concurrency=4, progress=False)
        closed = evaluate.run(dspex.Predict("question -> answer", lm=lm))
        print(f"closed-book:          exact match {closed.mean:6.1%}")
        rag = RAG(search, lm)
        zero = evaluate.run(rag)
        print(f"RAG, zero-shot:       exact match {zero.mean:6.1%}")
        compiled = dspex.MIPROv2(answer_exact_match, prompt_model=writer, auto="light").compile(
            rag, trainset=data.train, valset=data.val, run_dir=workdir / "compile")
        report = compiled.compile_report
        tuned = evaluate.run(compiled)
        print(f"RAG, MIPROv2 (light): exact match {tuned.mean:6.1%}   lift {100 * (tuned.mean - zero.mean):+.1f} "
              f"points; compile {report.wall_s:.0f}s, {report.lm_calls} LM calls, journal in {report.run_dir}")
        out = Path(args.out) if args.out else workdir / "compiled.json"
        compiled.save(out)
        print(f"\nsaved to {out} (the retriever is rebuilt from the corpus, as in DSPy)")
        predictor = compiled.respond
        print(f"instruction: {predictor.signature.instructions!r}\ndemos: {len(predictor.demos)}")
    print(f"\ntotal wall time {time.monotonic() - t0:.0f}s; every actor and the model process are stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
