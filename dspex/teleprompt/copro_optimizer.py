"""DSPy's ``dspy.teleprompt.copro_optimizer`` path: COPRO lives in :mod:`dspex.teleprompt.copro`."""

from .copro import COPRO

__all__ = ["COPRO"]
