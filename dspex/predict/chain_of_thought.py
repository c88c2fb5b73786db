"""DSPy's ``dspy.predict.chain_of_thought``."""

from ..programs.predict import ChainOfThought

__all__ = ["ChainOfThought"]
