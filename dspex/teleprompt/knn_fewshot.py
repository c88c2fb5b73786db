"""DSPy's ``dspy.teleprompt.knn_fewshot`` path: KNNFewShot lives in :mod:`dspex.teleprompt.knn`."""

from .knn import KNN, KNNFewShot, KNNProgram

__all__ = ["KNNFewShot", "KNN", "KNNProgram"]
