"""DSPy's ``dspy.predict.multi_chain_comparison``."""

from ..programs.ensembles import MultiChainComparison

__all__ = ["MultiChainComparison"]
