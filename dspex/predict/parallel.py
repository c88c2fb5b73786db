"""DSPy's ``dspy.predict.parallel``."""

from ..programs.parallel import Parallel

__all__ = ["Parallel"]
