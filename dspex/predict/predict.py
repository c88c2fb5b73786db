"""DSPy's ``dspy.predict.predict``."""

from ..programs.predict import Predict, logger, serialize_object

__all__ = ["Predict", "serialize_object", "logger"]
