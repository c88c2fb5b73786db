"""DSPy's ``dspy.dsp.colbertv2``: ``ColBERTv2`` (``dspex.retrievers.colbertv2``) and DSPy's request helpers.

``colbertv2_get_request_v2(url, query, k)`` / ``colbertv2_post_request_v2(url, query, k)`` are one search of
that server, by GET or POST, as a list of passage dicts (with ``long_text``); in dspex they go through the
same client pipeline as ``ColBERTv2`` (cache, limits, retries, ledger), so the un-suffixed and ``_wrapped``
names DSPy keeps for its cache layers are the same functions. DSPy's local-index classes
(``ColBERTv2RetrieverLocal``, ``ColBERTv2RerankerLocal``) need the ``colbert`` library and a GPU: not here.
"""

from __future__ import annotations

from ..retrievers.colbertv2 import ColBERTv2


def colbertv2_get_request_v2(url: str, query: str, k: int) -> list[dict]:
    """One ``GET <url>?query=...&k=...`` search: at most ``k`` passages, best first."""
    return ColBERTv2(url)._search(query, k)


def colbertv2_post_request_v2(url: str, query: str, k: int) -> list[dict]:
    """One ``POST <url>`` search with ``{"query", "k"}``: at most ``k`` passages, best first."""
    return ColBERTv2(url, post_requests=True)._search(query, k)


colbertv2_get_request = colbertv2_get_request_v2_wrapped = colbertv2_get_request_v2
colbertv2_post_request = colbertv2_post_request_v2_wrapped = colbertv2_post_request_v2

__all__ = ["ColBERTv2", "colbertv2_get_request_v2", "colbertv2_post_request_v2", "colbertv2_get_request",
           "colbertv2_post_request", "colbertv2_get_request_v2_wrapped", "colbertv2_post_request_v2_wrapped"]
