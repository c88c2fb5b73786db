"""DSPy's ``dspy.primitives.base_module``: dspex has one module class (``BaseModule`` is ``Module``)."""

from ..programs.module import Module

BaseModule = Module

__all__ = ["BaseModule"]
