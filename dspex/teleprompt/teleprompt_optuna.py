"""DSPy's ``dspy.teleprompt.teleprompt_optuna`` path: BootstrapFewShotWithOptuna lives in
:mod:`dspex.teleprompt.optuna_fewshot`."""

from .optuna_fewshot import BootstrapFewShotWithOptuna

__all__ = ["BootstrapFewShotWithOptuna"]
