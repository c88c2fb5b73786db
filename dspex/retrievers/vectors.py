"""The numerical core of the retrievers: embedding texts into a checked matrix, exact nearest neighbours
with numpy, and the optional FAISS index for corpora too large to scan per query.

Pure functions over arrays, so each is testable alone; ``embeddings.py`` imports this module only when a
retriever is built or loaded (``import dspex`` does not pay for numpy).

Similarity is the dot product of the (by default unit-length) vectors: cosine similarity when normalized.
Ties are broken by corpus position (the earlier passage first), so results are the same on every run,
machine and thread count.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from ..errors import ConfigError, FaissNotInstalled

FAISS_EXTRA = "pip install 'dspex[faiss]' (faiss-cpu)"
CANDIDATES_PER_RESULT = 10  # FAISS proposes k * this many passages, re-ranked exactly (DSPy's factor)
MIN_POINTS_PER_LIST = 39  # FAISS's k-means wants this many training vectors per list (it warns below)
MAX_PROBES = 16  # inverted lists searched per query (DSPy's setting): recall against speed


def embed(embedder: Callable[[list[str]], Any], texts: Sequence[str], what: str) -> np.ndarray:
    """``embedder(texts)`` in one call, as a float32 ``(len(texts), dim)`` matrix of finite numbers.

    Accepts what DSPy's embedders return (a 2-D numpy array) and what ``dspex.Embedder`` returns (a list
    of lists of floats); anything else is a ConfigError naming ``what`` was being embedded."""
    texts = list(texts)
    raw = embedder(texts)
    try:
        matrix = np.asarray(raw, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"the embedder gave {type(raw).__name__} for {len(texts)} {what}, not a 2-D array of "
                          f"numbers (one row per text): {exc}") from None
    if matrix.ndim != 2 or matrix.shape[0] != len(texts) or matrix.shape[1] == 0:
        raise ConfigError(f"the embedder gave an array of shape {matrix.shape} for {len(texts)} {what}: expected "
                          f"({len(texts)}, dim), one vector per text")
    if not np.isfinite(matrix).all():
        raise ConfigError(f"the embedder gave NaN or infinite values for {what}")
    return matrix


def embed_in_batches(embedder: Callable[[list[str]], Any], texts: Sequence[str], batch: int,
                     what: str) -> np.ndarray:
    """The vectors of many ``texts``, ``batch`` texts per embedder call (one huge request would hold
    every vector of it in memory twice, and an HTTP endpoint may refuse it)."""
    parts = [embed(embedder, texts[start:start + batch], what) for start in range(0, len(texts), batch)]
    dims = {part.shape[1] for part in parts}
    if len(dims) > 1:
        raise ConfigError(f"the embedder gave vectors of different sizes {sorted(dims)} for the {what}")
    return np.concatenate(parts) if len(parts) > 1 else parts[0]


def normalized(matrix: np.ndarray) -> np.ndarray:
    """Each row scaled to unit length (a zero row stays zero: there is no direction to keep)."""
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return (matrix / np.maximum(norms, 1e-10)).astype(np.float32, copy=False)


def ranked(indices: np.ndarray, scores: np.ndarray, k: int) -> tuple[list[int], list[float]]:
    """The ``k`` best of ``indices`` by ``scores`` (highest first; equal scores: the lower index first)."""
    order = np.lexsort((indices, -scores))[:k]
    return indices[order].tolist(), scores[order].astype(float).tolist()


def exact_search(corpus: np.ndarray, queries: np.ndarray, k: int) -> list[tuple[list[int], list[float]]]:
    """Brute force: every passage scored against every query (one matrix product)."""
    scores = queries @ corpus.T
    everyone = np.arange(corpus.shape[0])
    return [ranked(everyone, row, k) for row in scores]


def faiss_module() -> Any:
    """The ``faiss`` module, or FaissNotInstalled saying what to do instead."""
    try:
        import faiss
    except ImportError:
        raise FaissNotInstalled(f"this corpus needs a FAISS index (its size reached brute_force_threshold): "
                                f"{FAISS_EXTRA}, or pass a larger brute_force_threshold= to search it by brute "
                                "force (exact, slower per query)") from None
    return faiss


def build_index(corpus: np.ndarray) -> Any:
    """An inverted-file FAISS index over ``corpus`` with inner-product distance (the score the results are
    ranked by), with about ``2 * sqrt(n)`` lists (fewer for a small corpus, so each list is trained on enough
    vectors). Flat lists, not product quantization: PQ needs the dimension to divide by its code size and
    hundreds of training vectors per code, which a user's threshold may not give."""
    faiss = faiss_module()
    count, dim = corpus.shape
    lists = max(1, min(int(2 * np.sqrt(count)), count // MIN_POINTS_PER_LIST))
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFFlat(quantizer, dim, lists, faiss.METRIC_INNER_PRODUCT)
    index.train(corpus)
    index.add(corpus)
    index.nprobe = min(MAX_PROBES, lists)  # faiss's Python wrapper keeps the quantizer alive with the index
    return index


def index_search(index: Any, corpus: np.ndarray, queries: np.ndarray, k: int) -> list[tuple[list[int], list[float]]]:
    """FAISS proposes ``k * CANDIDATES_PER_RESULT`` passages per query; they are scored exactly and ranked."""
    _, proposed = index.search(queries, min(corpus.shape[0], k * CANDIDATES_PER_RESULT))
    results = []
    for query, row in zip(queries, proposed):
        found = np.unique(row[row >= 0])  # -1: fewer neighbours in the probed lists than asked for
        results.append(ranked(found, corpus[found] @ query, k))
    return results


def index_to_bytes(index: Any) -> np.ndarray:
    """The index as a uint8 array (FAISS's own binary format, not a pickle), for pickling and copies."""
    return faiss_module().serialize_index(index)


def index_from_bytes(blob: np.ndarray) -> Any:
    return faiss_module().deserialize_index(blob)


__all__ = ["embed", "embed_in_batches", "normalized", "ranked", "exact_search", "faiss_module", "build_index",
           "index_search", "index_to_bytes", "index_from_bytes", "FAISS_EXTRA"]
