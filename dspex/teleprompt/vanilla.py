"""DSPy's ``dspy.teleprompt.vanilla`` path: LabeledFewShot lives in :mod:`dspex.teleprompt.fewshot`."""

from .fewshot import LabeledFewShot

__all__ = ["LabeledFewShot"]
