"""The provider simulator's ColBERTv2 server: DSPy's ``ColBERTv2`` API over a small corpus, ranked deterministically.

``GET /colbert?query=...&k=...`` or ``POST /colbert`` with ``{"query": ..., "k": ...}`` (also at ``/``) answers
``{"query": ..., "topk": [{"text", "pid", "rank", "score", "prob"}, ...]}``, the shape of the ColBERT
repository's ``server.py`` (``k`` defaults to 10 and is at most 100, as there). The score of a passage is
its word overlap with the query: how many distinct lower-cased words (``\\w+``) of the query it contains;
ties go to the lower ``pid`` (the passage's index in the corpus), so every ranking is reproducible and a
test can compute it by hand. ``prob`` is the softmax of the returned scores. The faults of the other
routes apply (``ProviderServer`` draws them); a bad ``query`` / ``k`` is a 400 with ColBERT's error body.
"""

from __future__ import annotations

import math
import re
from typing import Any, Sequence

MAX_K = 100  # the ColBERT server's own cap

DEFAULT_PASSAGES = (
    "Paris is the capital and largest city of France.",
    "Berlin is the capital of Germany and its largest city.",
    "The Eiffel Tower is a wrought-iron lattice tower in Paris.",
    "Mount Everest is the highest mountain above sea level.",
    "The Nile is a major river in northeastern Africa.",
    "Python is a programming language created by Guido van Rossum.",
    "ColBERT is a retrieval model that scores passages by late interaction.",
    "The Pacific Ocean is the largest and deepest of the oceans.",
)
"""The corpus when ``ProviderServer(passages=...)`` is not given: eight one-line facts."""


class BadSearch(ValueError):
    """A search request the server refuses (answered 400)."""


def words(text: str) -> set[str]:
    """The distinct lower-cased words of ``text`` (what the overlap score counts)."""
    return set(re.findall(r"\w+", text.lower()))


def search(passages: Sequence[str], query: str, k: int) -> list[dict[str, Any]]:
    """The ``k`` best passages for ``query``, best first (module docstring: the score, ties, ``prob``)."""
    asked = words(query)
    scores = [float(len(asked & words(text))) for text in passages]
    ranked = sorted(range(len(passages)), key=lambda pid: (-scores[pid], pid))[:k]
    top = max((scores[pid] for pid in ranked), default=0.0)
    weights = [math.exp(scores[pid] - top) for pid in ranked]
    total = sum(weights) or 1.0
    return [{"text": passages[pid], "pid": pid, "rank": rank, "score": scores[pid], "prob": weight / total}
            for rank, (pid, weight) in enumerate(zip(ranked, weights), start=1)]


def parse_search(fields: Any) -> tuple[str, int]:
    """(query, k) from a GET's query parameters or a POST's JSON object; BadSearch says what is wrong."""
    if not isinstance(fields, dict):
        raise BadSearch("the search must be a JSON object {\"query\": ..., \"k\": ...} (or GET ?query=...&k=...)")
    query = fields.get("query")
    if not isinstance(query, str) or not query.strip():
        raise BadSearch("query must be a non-empty string")
    k = fields.get("k", 10)
    if isinstance(k, str) and k.strip().isdigit():
        k = int(k)  # a GET's parameters are strings
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= MAX_K:
        raise BadSearch(f"k must be an integer from 1 to {MAX_K}, got {k!r}")
    return query, k


def answer(passages: Sequence[str], fields: Any) -> dict[str, Any]:
    """The server's answer to one search (BadSearch for a bad one)."""
    query, k = parse_search(fields)
    return {"query": query, "topk": search(passages, query, k), "latency": 0.0}


def error_body(message: str) -> dict[str, Any]:
    """ColBERT's error answer (what DSPy's client checks for)."""
    return {"error": True, "message": message}


__all__ = ["DEFAULT_PASSAGES", "MAX_K", "BadSearch", "words", "search", "parse_search", "answer", "error_body"]
