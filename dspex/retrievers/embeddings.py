"""DSPy's embedding retrievers: ``Embeddings`` (the ``k`` passages of a corpus nearest to a query) and
``EmbeddingsWithScores`` (the same, with their similarity scores).

``Embeddings(corpus, embedder, k=5)``: the corpus is embedded once, in batches, when the retriever is built;
each query is one embedder call. ``embedder`` is any callable from a list of texts to one vector per text:
a ``dspex.Embedder`` (cached, over the client pipeline), a function returning a 2-D numpy array (DSPy's
habit), ``dspex.utils.DummyVectorizer()`` in tests.

Search is exact (numpy) below ``brute_force_threshold`` passages; at or above it, a FAISS index proposes
candidates that are then scored exactly. Without faiss installed that is a :class:`FaissNotInstalled`
error naming the fix, never a silent fallback to a scan that may take minutes.

Where dspex differs from DSPy, it is safer: ``load`` never unpickles (``allow_pickle=False``), a damaged
directory is a typed error that names the file, and ``__call__`` takes ``k=`` so a retriever is also a
``rm`` for ``dspex.Retrieve`` (``dspex.configure(rm=Embeddings(...))``).
"""

from __future__ import annotations

import os
from typing import Any, Callable, Iterable, Sequence

from ..errors import ConfigError
from ..primitives import Prediction
from ..utils.callback import with_callbacks

# numpy (in .vectors and .saved) is imported when a retriever is built or loaded, not by ``import dspex``
EMBED_BATCH = 1024  # corpus texts per embedder call at construction


class Embeddings:
    """The ``k`` passages of ``corpus`` most similar to a query (module docstring).

    Attributes as DSPy's: ``corpus``, ``embedder``, ``k``, ``normalize``, ``corpus_embeddings`` (a float32
    ``(len(corpus), dim)`` array), ``index`` (the FAISS index, or None for exact search)."""

    client_handle = True  # its embedder may ask a client actor: an evaluation worker process binds it there

    def __init__(self, corpus: list[str], embedder: Callable[[list[str]], Any], k: int = 5,
                 callbacks: list[Any] | None = None, cache: bool = False, brute_force_threshold: int = 20_000,
                 normalize: bool = True) -> None:
        from . import vectors

        if cache is not False:
            raise ConfigError("Embeddings does not cache (as DSPy's): a dspex.Embedder caches the vectors it "
                              "computes itself (cache=True is its default), so pass embedder=dspex.Embedder(...)")
        corpus = _checked_corpus(corpus)
        self.embedder = _checked_embedder(embedder)
        self.k = _checked_k(k)
        self.normalize = _checked_flag(normalize, "normalize")
        if not isinstance(brute_force_threshold, int) or isinstance(brute_force_threshold, bool) \
                or brute_force_threshold < 0:
            raise ConfigError(f"brute_force_threshold must be an int >= 0, got {brute_force_threshold!r}")
        self.brute_force_threshold = brute_force_threshold
        self.callbacks = list(callbacks or [])
        self.corpus = corpus
        if len(corpus) >= brute_force_threshold:
            vectors.faiss_module()  # before embedding a large corpus: say faiss is missing at once, not after
        matrix = vectors.embed_in_batches(self.embedder, corpus, EMBED_BATCH, "corpus passages")
        self.corpus_embeddings = vectors.normalized(matrix) if normalize else matrix
        self.index = vectors.build_index(self.corpus_embeddings) if len(corpus) >= brute_force_threshold else None

    def bind(self, runtime: Any) -> "Embeddings":
        """Embed queries through ``runtime``'s clients from now on (an evaluation worker binds the program's
        retriever to the runtime it attached to); an embedder without clients is left as it is."""
        bind = getattr(self.embedder, "bind", None)
        if getattr(type(self.embedder), "client_handle", False) and bind is not None:
            bind(runtime)
        return self

    def __repr__(self) -> str:
        search = "faiss" if self.index is not None else "exact"
        return f"{type(self).__name__}({len(self.corpus)} passages, k={self.k}, {search} search)"

    @with_callbacks
    def __call__(self, query: str, k: int | None = None) -> Prediction:
        """``forward(query)``; ``k`` overrides ``self.k`` for this call (as a ``rm(query, k=...)`` is called)."""
        return self.forward(query, k)

    def forward(self, query: str, k: int | None = None) -> Prediction:
        """The ``k`` nearest passages: ``Prediction(passages=[...], indices=[...])``, most similar first
        (``indices``: their positions in ``corpus``). One embedder call."""
        if not isinstance(query, str):
            raise ConfigError(f"{type(self).__name__} searches with a string query, got {type(query).__name__}: "
                              "use .batch(queries) for several")
        return self._prediction(*self._search([query], k)[0])

    def batch(self, queries: Sequence[str], k: int | None = None) -> list[Prediction]:
        """One prediction per query, in order; the queries are embedded together (one embedder call per
        ``EMBED_BATCH`` of them)."""
        queries = list(queries)
        if not all(isinstance(q, str) for q in queries):
            raise ConfigError(f"{type(self).__name__}.batch takes a list of string queries")
        return [self._prediction(*found) for found in self._search(queries, k)] if queries else []

    def _search(self, queries: list[str], k: int | None) -> list[tuple[list[str], list[int], list[float]]]:
        from . import vectors

        k = self.k if k is None else _checked_k(k)
        embedded = vectors.embed_in_batches(self.embedder, queries, EMBED_BATCH, "queries")
        if embedded.shape[1] != self.corpus_embeddings.shape[1]:
            raise ConfigError(f"the embedder gave {embedded.shape[1]}-dim query vectors for a corpus of "
                              f"{self.corpus_embeddings.shape[1]}-dim vectors: use the embedder the corpus was "
                              "embedded with")
        embedded = vectors.normalized(embedded) if self.normalize else embedded
        found = (vectors.index_search(self.index, self.corpus_embeddings, embedded, k) if self.index is not None
                 else vectors.exact_search(self.corpus_embeddings, embedded, k))
        return [([self.corpus[i] for i in indices], indices, scores) for indices, scores in found]

    def _prediction(self, passages: list[str], indices: list[int], scores: list[float]) -> Prediction:
        return Prediction(passages=passages, indices=indices)

    # --- saving --------------------------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> None:
        """Write the retriever into the directory ``path``: ``config.json`` (k, normalize, threshold, corpus),
        ``corpus_embeddings.npy`` and, with an index, ``faiss_index.bin`` (DSPy's layout; no pickle)."""
        from . import saved

        saved.write(path, k=self.k, normalize=self.normalize, brute_force_threshold=self.brute_force_threshold,
                    corpus=self.corpus, corpus_embeddings=self.corpus_embeddings, index=self.index)

    def load(self, path: str | os.PathLike, embedder: Callable[[list[str]], Any]) -> "Embeddings":
        """Replace this retriever's corpus, vectors, index and settings by those saved in ``path``; queries
        are embedded with ``embedder`` (the one the corpus was embedded with). Returns self. Nothing is
        unpickled; a missing file raises SavedIndexMissing, a damaged one SavedIndexError."""
        from . import saved

        stored = saved.read(path)
        self.embedder = _checked_embedder(embedder)
        self.k, self.normalize, self.brute_force_threshold = stored.k, stored.normalize, stored.brute_force_threshold
        self.corpus, self.corpus_embeddings, self.index = stored.corpus, stored.corpus_embeddings, stored.index
        self.callbacks = getattr(self, "callbacks", [])
        return self

    @classmethod
    def from_saved(cls, path: str | os.PathLike, embedder: Callable[[list[str]], Any]) -> "Embeddings":
        """A retriever read from ``path`` (see :meth:`load`), without embedding the corpus again."""
        return cls.__new__(cls).load(path, embedder)

    # --- copies and pickles --------------------------------------------------------------------------

    def __deepcopy__(self, memo: dict) -> "Embeddings":
        """A copy with its own settings that shares the corpus, vectors and index: they are never changed
        after construction, and a program copied by an optimizer must not copy a whole corpus each time."""
        fresh = type(self).__new__(type(self))
        fresh.__dict__.update(self.__dict__)  # not copy.copy: that would go through __getstate__
        fresh.callbacks = list(getattr(self, "callbacks", []))
        memo[id(self)] = fresh
        return fresh

    def __getstate__(self) -> dict:
        """As pickled for worker processes: the FAISS index as its own binary format (a SWIG object does
        not pickle)."""
        state = dict(self.__dict__)
        if state.get("index") is not None:
            from . import vectors

            state["index"] = vectors.index_to_bytes(state["index"])
            state["_index_is_bytes"] = True
        return state

    def __setstate__(self, state: dict) -> None:
        if state.pop("_index_is_bytes", False):
            from . import vectors

            state["index"] = vectors.index_from_bytes(state["index"])
        self.__dict__.update(state)


class EmbeddingsWithScores(Embeddings):
    """:class:`Embeddings` whose predictions also carry ``scores``: the similarity of each passage to the
    query (cosine when ``normalize``), for thresholds and re-ranking downstream."""

    def forward(self, query: str, k: int | None = None) -> Prediction:
        """``Prediction(passages=[...], indices=[...], scores=[...])``, most similar first."""
        return super().forward(query, k)

    def _prediction(self, passages: list[str], indices: list[int], scores: list[float]) -> Prediction:
        return Prediction(passages=passages, indices=indices, scores=scores)


def _checked_corpus(corpus: Any) -> list[str]:
    if isinstance(corpus, (str, bytes)) or not isinstance(corpus, Iterable):
        raise ConfigError(f"corpus must be a list of strings, got {type(corpus).__name__}")
    corpus = list(corpus)
    if not corpus:
        raise ConfigError("corpus is empty: there is nothing to retrieve")
    bad = next((i for i, text in enumerate(corpus) if not isinstance(text, str)), None)
    if bad is not None:
        raise ConfigError(f"corpus[{bad}] is a {type(corpus[bad]).__name__}: a corpus is a list of strings")
    return corpus


def _checked_embedder(embedder: Any) -> Callable[[list[str]], Any]:
    if not callable(embedder):
        raise ConfigError(f"embedder must be callable (list of texts -> one vector per text), e.g. "
                          f"dspex.Embedder('openai/text-embedding-3-small'); got {type(embedder).__name__}")
    return embedder


def _checked_k(k: Any) -> int:
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ConfigError(f"k must be an int >= 1, got {k!r}")
    return k


def _checked_flag(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be True or False, got {value!r}")
    return value


__all__ = ["Embeddings", "EmbeddingsWithScores", "EMBED_BATCH"]
