"""The metrics DSPy users reach for, with DSPy's normalisation (lower case, no punctuation, no articles,
single spaces). The metrics take ``(example, prediction, trace=None)`` like any metric; the scores
(``EM``, ``F1``, ``HotPotF1``, ``em_score``, ``f1_score``, ...) take a prediction text and references.
Also at DSPy's path, ``dspex.evaluate.metrics``."""

from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter
from typing import Any, Mapping

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)
_YES_NO = ("yes", "no", "noanswer")


def normalize_text(text: Any) -> str:
    """NFD, lower case, punctuation and English articles removed, whitespace collapsed (SQuAD's)."""
    text = unicodedata.normalize("NFD", str(text)).lower().translate(_PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _overlap(prediction: str, ground_truth: str) -> tuple[int, int, int]:
    """(tokens in common, prediction tokens, reference tokens), after normalisation."""
    pred, truth = normalize_text(prediction).split(), normalize_text(ground_truth).split()
    return sum((Counter(pred) & Counter(truth)).values()), len(pred), len(truth)


def em_score(prediction: Any, ground_truth: Any) -> bool:
    """The two texts are equal after normalisation."""
    return normalize_text(prediction) == normalize_text(ground_truth)


def f1_score(prediction: Any, ground_truth: Any) -> float:
    """Token-level F1 of two texts after normalisation (SQuAD's); 0 when nothing is in common (two
    empty texts included, as DSPy scores them)."""
    common, n_pred, n_truth = _overlap(str(prediction), str(ground_truth))
    if common == 0:
        return 0.0
    precision, recall = common / n_pred, common / n_truth
    return 2 * precision * recall / (precision + recall)


def precision_score(prediction: Any, ground_truth: Any) -> float:
    """The share of the prediction's tokens found in the reference (after normalisation)."""
    common, n_pred, _ = _overlap(str(prediction), str(ground_truth))
    return 0.0 if common == 0 else common / n_pred


def hotpot_f1_score(prediction: Any, ground_truth: Any) -> float:
    """F1 as HotPotQA scores it: a yes / no / noanswer on either side must match exactly, else 0."""
    pred, truth = normalize_text(prediction), normalize_text(ground_truth)
    if (pred in _YES_NO or truth in _YES_NO) and pred != truth:
        return 0.0
    return f1_score(pred, truth)


def _references(answers_list: Any) -> list:
    if not isinstance(answers_list, list):
        raise ValueError(f"`answers_list` must be a list, got {type(answers_list)}")
    return answers_list


def EM(prediction: Any, answers_list: list) -> bool:  # noqa: N802 - DSPy's name
    """The prediction equals one of the references after normalisation."""
    return any(em_score(prediction, answer) for answer in _references(answers_list))


def F1(prediction: Any, answers_list: list) -> float:  # noqa: N802 - DSPy's name
    """The best token F1 of the prediction against the references."""
    return max(f1_score(prediction, answer) for answer in _references(answers_list))


def HotPotF1(prediction: Any, answers_list: list) -> float:  # noqa: N802 - DSPy's name
    """The best HotPotQA F1 of the prediction against the references."""
    return max(hotpot_f1_score(prediction, answer) for answer in _references(answers_list))


def _field(obj: Any, name: str, default: Any = None) -> Any:
    if isinstance(obj, Mapping) and name in obj:
        return obj[name]
    return getattr(obj, name, default)


def _answers(example: Any) -> list[str]:
    answer = _field(example, "answer", "")
    if isinstance(answer, (list, tuple)):
        return [str(a) for a in answer]
    if isinstance(answer, str):
        return [answer]
    raise ValueError(f"example.answer must be a str or a list of str, got {type(answer).__name__}")


def answer_exact_match(example: Any, pred: Any, trace: Any = None, frac: float = 1.0) -> bool:
    """The prediction's answer equals one of the example's (normalised); with ``frac`` < 1, its F1 with
    one of them reaches ``frac``."""
    guess = _field(pred, "answer", pred)
    answers = _answers(example)
    if frac >= 1.0:
        return EM(guess, answers)
    return F1(guess, answers) >= frac


def _tokens(text: Any) -> list[str]:
    return normalize_text(text).split()


def _contains(passage: list[str], answer: list[str]) -> bool:
    """``answer``'s tokens appear, in order and next to each other, among ``passage``'s."""
    if not answer:
        return False
    width = len(answer)
    return any(passage[i:i + width] == answer for i in range(len(passage) - width + 1))


def answer_passage_match(example: Any, pred: Any, trace: Any = None) -> bool:
    """One of the example's answers appears (normalised, as whole words) in one of the prediction's
    passages (``pred.context``, or ``pred.passages``)."""
    passages = _field(pred, "context", None) or _field(pred, "passages", None) or []
    passages = [passages] if isinstance(passages, str) else list(passages)
    answers = [_tokens(a) for a in _answers(example)]
    return any(_contains(_tokens(p), a) for p in passages for a in answers)


__all__ = ["normalize_text", "em_score", "f1_score", "precision_score", "hotpot_f1_score", "EM", "F1", "HotPotF1",
           "answer_exact_match", "answer_passage_match"]
