"""Experimental APIs (DSPy's ``dspy.experimental``): they may change or go without notice."""

from ..adapters.types.citation import Citations
from ..adapters.types.document import Document

__all__ = ["Citations", "Document"]
