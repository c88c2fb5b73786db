"""DSPy's ``dspy.teleprompt.signature_opt`` path: COPRO lives in :mod:`dspex.teleprompt.copro`."""

from .copro import COPRO

__all__ = ["COPRO"]
