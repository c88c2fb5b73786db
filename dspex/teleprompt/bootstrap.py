"""DSPy's ``dspy.teleprompt.bootstrap`` path: BootstrapFewShot lives in :mod:`dspex.teleprompt.fewshot`."""

from .fewshot import BootstrapFewShot, NoTracePassed

__all__ = ["BootstrapFewShot", "NoTracePassed"]
