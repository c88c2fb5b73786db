"""DSPy's ``dspy.teleprompt.teleprompt`` path: Teleprompter lives in :mod:`dspex.teleprompt.base`."""

from .base import Teleprompter

__all__ = ["Teleprompter"]
