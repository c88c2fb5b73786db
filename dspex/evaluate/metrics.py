"""DSPy's path ``dspy.evaluate.metrics``: the metrics live in :mod:`dspex.metrics`."""

from ..metrics import (EM, F1, HotPotF1, answer_exact_match, answer_passage_match, em_score, f1_score,
                       hotpot_f1_score, normalize_text, precision_score)

__all__ = ["EM", "F1", "HotPotF1", "normalize_text", "em_score", "f1_score", "hotpot_f1_score", "precision_score",
           "answer_exact_match", "answer_passage_match"]
