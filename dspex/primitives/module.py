"""DSPy's ``dspy.primitives.module``: Module, and ``set_attribute_by_name`` (a top-layer path: Module is in
``dspex.programs``)."""

from ..programs.module import Module, set_attribute_by_name

__all__ = ["Module", "set_attribute_by_name"]
