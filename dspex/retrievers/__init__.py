"""DSPy's ``dspy.retrievers``: ``Embeddings`` / ``EmbeddingsWithScores`` (nearest passages of a corpus by
embedding similarity; exact with numpy, FAISS for large corpora with ``dspex[faiss]``), ``ColBERTv2`` (a
ColBERTv2 search server's client, on the LM client pipeline) and ``Retrieve`` (a program step that asks the
retriever given, or the ``rm`` setting in force).

Importing this package does not import numpy: a retriever does when it is built or loaded.
"""

from ..errors import FaissNotInstalled, RetrieverNotConfigured, SavedIndexError, SavedIndexMissing
from .colbertv2 import ColBERTv2
from .embeddings import Embeddings, EmbeddingsWithScores
from .retrieve import Retrieve, single_query_passage

__all__ = ["ColBERTv2", "Embeddings", "EmbeddingsWithScores", "Retrieve", "single_query_passage", "FaissNotInstalled",
           "RetrieverNotConfigured", "SavedIndexError", "SavedIndexMissing"]
