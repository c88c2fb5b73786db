"""The demo: a real local model (SmolLM2-135M on llama.cpp, no key, no network) classifies review
sentiment; ``BootstrapFewShotWithRandomSearch`` compiles the program within a token budget, and the
compiled program is scored, saved and loaded back.

    python -m dspex demo [--model local/smollm2-135m] [--n 200] [--val 60] [--candidates 2]

With a provider key in the environment, ``--model openai/gpt-4o-mini`` runs the same program there.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path

from . import LM, BootstrapFewShotWithRandomSearch, ConfigError, Evaluate, Predict, Signature, load, runtime
from .primitives import Example

DATA = Path(__file__).resolve().parent / "data" / "sentiment" / "sentences.jsonl"


def sentiment_split(dev_size: int, train_size: int = 200) -> tuple[list[Example], list[Example]]:
    """A fixed, balanced split by a stable hash of each id: (train, dev)."""
    rows = [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows.sort(key=lambda r: hashlib.sha256(r["id"].encode()).hexdigest())
    examples = [Example(review=r["text"], sentiment=r["label"]).with_inputs("review") for r in rows]
    dev = _balanced(examples[:1000], dev_size)
    train = _balanced(examples[1000:], train_size)
    return train, dev


def _balanced(examples: list[Example], n: int) -> list[Example]:
    pos = [e for e in examples if e.sentiment == "positive"][: n // 2]
    neg = [e for e in examples if e.sentiment == "negative"][: n - n // 2]
    return [e for pair in zip(pos, neg) for e in pair]


def correct(example: Example, prediction: object, trace: object = None) -> bool:
    """The label is the first word of the answer (case and punctuation ignored)."""
    words = str(getattr(prediction, "sentiment", "")).strip().lower().split()
    return bool(words) and words[0].strip(".,!:;\"'") == example.sentiment


def score(program: Predict, dev: list[Example]) -> tuple[float, float, list[str]]:
    """Accuracy and wall time over ``dev`` with ``Evaluate`` (concurrent, one row per example, a
    progress bar); failed rows count as wrong and are listed with their typed errors."""
    result = Evaluate(dev, correct, max_concurrency=4, timeout_per_example=120.0).run(program)
    failures = [f"{type(r.error).__name__}: {str(r.error)[:120]}" for r in result.errors]
    return result.mean, result.wall_s, failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dspex demo", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="local/smollm2-135m")
    parser.add_argument("--n", type=int, default=200, help="dev examples")
    parser.add_argument("--val", type=int, default=60, help="validation examples the candidates are scored on")
    parser.add_argument("--candidates", type=int, default=2, help="shuffled bootstrap candidates")
    parser.add_argument("--budget-tokens", type=int, default=200_000, help="token budget of the compile")
    parser.add_argument("--out", default=None, help="where to save the compiled program (default: a temp dir)")
    args = parser.parse_args(argv)
    train, dev = sentiment_split(args.n)
    val, train = train[:args.val], train[args.val:]
    QA = Signature("review -> sentiment", instructions="Classify the sentiment of the review as positive or negative.")
    events: list = []
    print(f"dspex demo: {args.model}, {len(train)} train / {len(val)} val / {len(dev)} dev reviews "
          "(UCI sentiment, CC BY 4.0)\n")
    t0 = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="dspex-demo-"))
    with runtime("local", cache_dir=workdir / "cache", log_level="error") as rt:
        rt.subscribe(events.append)
        try:
            lm = LM(args.model, max_tokens=8)
        except ConfigError as exc:
            print(f"cannot start {args.model}: {exc}", file=sys.stderr)
            return 2
        print(f"runtime and model ready in {time.monotonic() - t0:.1f}s ({lm!r}, adapter {lm.default_adapter})")
        student = Predict(QA, lm=lm)
        acc0, wall0, fail0 = score(student, dev)
        print(f"zero-shot on dev:   accuracy {acc0:6.1%}  in {wall0:5.1f}s" + (f"  ({len(fail0)} failed)" if fail0 else ""))
        optimizer = BootstrapFewShotWithRandomSearch(correct, num_candidate_programs=args.candidates,
                                                     max_bootstrapped_demos=4, max_labeled_demos=6)
        compiled = optimizer.compile(student, trainset=train, valset=val, budget_tokens=args.budget_tokens,
                                     max_concurrency=4, run_dir=workdir / "compile")
        report = compiled.compile_report
        print(f"\nBootstrapFewShotWithRandomSearch ({report.stopped}, {report.wall_s:.1f}s, {report.lm_calls} LM calls, "
              f"{report.usage.total_tokens} tokens, journal in {report.run_dir}):")
        for c in report.candidates:
            print(f"  #{c.id:<2} {c.score:5.1f}%  {c.description}")
        acc1, wall1, fail1 = score(compiled, dev)
        print(f"\ncompiled on dev:    accuracy {acc1:6.1%}  in {wall1:5.1f}s   lift {100 * (acc1 - acc0):+.1f} points"
              + (f"  ({len(fail1)} failed)" if fail1 else ""))
        out = Path(args.out) if args.out else workdir / "compiled.json"
        compiled.save(out)
        reloaded = load(out, lm=lm)
        print(f"saved to {out}; dspex.load reads it back with {len(reloaded.demos)} demos")
        usage = lm.usage()
        print(f"\nLM usage: {usage.requests} requests, {usage.prompt_tokens} prompt + {usage.completion_tokens} "
              f"completion tokens, ${usage.cost:.4f}, {usage.retries} retries, {usage.cache_hits} cache hits")
        for failure in (fail0 + fail1)[:5]:
            print(f"  failed: {failure}")
    tree = [e for e in events if hasattr(e, "summary")]
    print(f"\nsupervision events ({len(tree)}):")
    for e in tree:
        print(f"  {e.summary()}")
    print(f"\ntotal wall time {time.monotonic() - t0:.1f}s; every actor and the model process are stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
