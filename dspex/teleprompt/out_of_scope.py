"""DSPy's optimizers that dspex does not offer, each a ConfigError that says why and what to use instead.

``BootstrapFinetune`` and ``BetterTogether`` fine-tune the weights of the program's LM: they need a model
dspex can train (a GPU, a provider's fine-tuning API); none is supported yet. ``AvatarOptimizer`` is
deprecated in DSPy. Constructing one raises at once, before any data or LM is touched, so a ported
script stops at the line that needs changing.
"""

from __future__ import annotations

from typing import Any, NoReturn

from ..errors import ConfigError
from .base import Teleprompter

INSTEAD = ("prompt optimization instead: dspex.MIPROv2, dspex.GEPA, dspex.SIMBA or dspex.BootstrapFewShotWithRandomSearch "
           "(they compile the same program, resumably, within a budget)")


class _OutOfScope(Teleprompter):
    why: str = ""

    def __init__(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise ConfigError(f"{type(self).__name__} is not available in dspex: {self.why}; use {INSTEAD}")


class BootstrapFinetune(_OutOfScope):
    """DSPy's fine-tuning optimizer: not available (see the module's doc)."""

    why = "it fine-tunes the LM's weights, and dspex supports no fine-tunable model yet"


class BetterTogether(_OutOfScope):
    """DSPy's prompt-and-weights optimizer: not available (see the module's doc)."""

    why = "it alternates prompt optimization with fine-tuning the LM's weights, and dspex supports no fine-tunable model yet"


class AvatarOptimizer(_OutOfScope):
    """DSPy's deprecated agent optimizer: not available (see the module's doc)."""

    why = "DSPy deprecated it"


__all__ = ["BootstrapFinetune", "BetterTogether", "AvatarOptimizer"]
