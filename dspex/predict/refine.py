"""DSPy's ``dspy.predict.refine``."""

from ..programs.ensembles import Refine

__all__ = ["Refine"]
