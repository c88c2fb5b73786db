"""The demo: a real local model (SmolLM2-135M on llama.cpp, no key, no network) classifies review
sentiment with ``Predict`` and the Text adapter, zero-shot and then with a few labelled demos.

    python -m dspex demo [--model local/smollm2-135m] [--n 80] [--demos 6]

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

from . import LM, ChainOfThought, ConfigError, Evaluate, Predict, Signature, TextAdapter, runtime
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
    return result.score, result.wall_s, failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dspex demo", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="local/smollm2-135m")
    parser.add_argument("--n", type=int, default=200, help="dev examples")
    parser.add_argument("--demos", type=int, default=6, help="labelled demos for the few-shot run")
    parser.add_argument("--cot", action="store_true", help="ChainOfThought instead of Predict")
    args = parser.parse_args(argv)
    train, dev = sentiment_split(args.n)
    QA = Signature("review -> sentiment", instructions="Classify the sentiment of the review as positive or negative.")
    events: list = []
    print(f"dspex demo: {args.model}, {len(dev)} dev reviews (UCI sentiment, CC BY 4.0)\n")
    t0 = time.monotonic()
    with runtime("local", cache_dir=tempfile.mkdtemp(prefix="dspex-demo-"), log_level="error") as rt:
        rt.actors.subscribe(events.append)
        try:
            lm = LM(args.model, max_tokens=8 if not args.cot else 128, cache=True)
        except ConfigError as exc:
            print(f"cannot start {args.model}: {exc}", file=sys.stderr)
            return 2
        print(f"runtime and model ready in {time.monotonic() - t0:.1f}s ({lm!r})")
        make = ChainOfThought if args.cot else Predict
        zero = make(QA, lm=lm, adapter=TextAdapter())
        acc0, wall0, fail0 = score(zero, dev)
        print(f"zero-shot:          accuracy {acc0:6.1%}  in {wall0:5.1f}s" + (f"  ({len(fail0)} failed)" if fail0 else ""))
        demos = [dict(e.items()) for e in _balanced(train, args.demos)]
        few = make(QA, lm=lm, adapter=TextAdapter(), demos=demos)
        acc1, wall1, fail1 = score(few, dev)
        print(f"with {len(demos)} demos:       accuracy {acc1:6.1%}  in {wall1:5.1f}s" + (f"  ({len(fail1)} failed)" if fail1 else ""))
        usage = lm.usage()
        print(f"\nLM usage: {usage.requests} requests, {usage.prompt_tokens} prompt + {usage.completion_tokens} "
              f"completion tokens, ${usage.cost:.4f}, {usage.retries} retries, {usage.cache_hits} cache hits")
        for failure in (fail0 + fail1)[:5]:
            print(f"  failed: {failure}")
    print(f"\nsupervision events ({len(events)}):")
    for e in events:
        print(f"  {e.summary()}")
    print(f"\ntotal wall time {time.monotonic() - t0:.1f}s; every actor and the model process are stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
