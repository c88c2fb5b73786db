"""The metrics DSPy users reach for, with DSPy's normalisation (lower case, no punctuation, no articles,
single spaces). Each takes ``(example, prediction, trace=None)`` like any metric, except ``f1_score``."""

from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter
from typing import Any

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)


def normalize_text(text: Any) -> str:
    text = unicodedata.normalize("NFD", str(text)).lower().translate(_PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _answers(example: Any) -> list[str]:
    answer = example["answer"] if "answer" in example else ""
    return [str(a) for a in answer] if isinstance(answer, (list, tuple)) else [str(answer)]


def f1_score(prediction: str, ground_truth: str) -> float:
    """Token-level F1 of two texts after normalisation (SQuAD's)."""
    pred, truth = normalize_text(prediction).split(), normalize_text(ground_truth).split()
    common = sum((Counter(pred) & Counter(truth)).values())
    if not pred or not truth or common == 0:
        return float(pred == truth)
    precision, recall = common / len(pred), common / len(truth)
    return 2 * precision * recall / (precision + recall)


def answer_exact_match(example: Any, pred: Any, trace: Any = None, frac: float = 1.0) -> bool:
    """The prediction's answer equals one of the example's (normalised); with ``frac`` < 1, its F1 with
    one of them reaches ``frac``."""
    guess = getattr(pred, "answer", pred)
    if frac >= 1.0:
        return any(normalize_text(guess) == normalize_text(a) for a in _answers(example))
    return max(f1_score(str(guess), a) for a in _answers(example)) >= frac


def answer_passage_match(example: Any, pred: Any, trace: Any = None) -> bool:
    """One of the example's answers appears (normalised) in one of the prediction's passages / context."""
    passages = getattr(pred, "context", None) or getattr(pred, "passages", None) or []
    passages = [passages] if isinstance(passages, str) else list(passages)
    return any(normalize_text(a) in normalize_text(p) for a in _answers(example) for p in passages)


__all__ = ["normalize_text", "f1_score", "answer_exact_match", "answer_passage_match"]
