"""DSPy's ``dspy.predict.aggregation``."""

from ..programs.ensembles import majority

__all__ = ["majority"]
