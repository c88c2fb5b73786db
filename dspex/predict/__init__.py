"""DSPy's ``dspy.predict`` paths (``dspex.predict.Predict``, ``dspex.predict.predict.Predict`` ...): the
modules live in ``dspex.programs``; these names let DSPy code and tests import them where DSPy has them."""

from ..programs import (BestOfN, ChainOfThought, MultiChainComparison, Parallel, Predict, ReAct, Refine, Tool,
                        majority)

__all__ = ["Predict", "ChainOfThought", "ReAct", "Tool", "MultiChainComparison", "BestOfN", "Refine", "majority",
           "Parallel"]
