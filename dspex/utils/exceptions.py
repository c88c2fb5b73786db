"""DSPy's ``dspy.utils.exceptions``: the error names DSPy code imports from there (dspex's own tree is
``dspex.errors``)."""

from ..errors import AdapterParseError, ContextWindowExceededError, DSPyError, LMError

__all__ = ["AdapterParseError", "ContextWindowExceededError", "DSPyError", "LMError"]
