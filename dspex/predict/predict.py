"""DSPy's ``dspy.predict.predict``."""

from ..programs.predict import Predict, serialize_object

__all__ = ["Predict", "serialize_object"]
