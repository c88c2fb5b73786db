"""DSPy's ``dspy.predict.best_of_n``."""

from ..programs.ensembles import BestOfN

__all__ = ["BestOfN"]
