"""DSPy's ``dspy.retrievers``: ``Embeddings`` / ``EmbeddingsWithScores`` (nearest passages of a corpus by
embedding similarity; exact with numpy, FAISS for large corpora with ``dspex[faiss]``) and ``Retrieve``
(a program step that asks the retriever given, or the ``rm`` setting in force).

Importing this package does not import numpy: a retriever does when it is built or loaded.
"""

from ..errors import FaissNotInstalled, RetrieverNotConfigured, SavedIndexError, SavedIndexMissing
from .embeddings import Embeddings, EmbeddingsWithScores
from .retrieve import Retrieve, single_query_passage

__all__ = ["Embeddings", "EmbeddingsWithScores", "Retrieve", "single_query_passage", "FaissNotInstalled",
           "RetrieverNotConfigured", "SavedIndexError", "SavedIndexMissing"]
