"""DSPy's ``dspy.predict.react``."""

from ..programs.react import ReAct, Tool

__all__ = ["ReAct", "Tool"]
