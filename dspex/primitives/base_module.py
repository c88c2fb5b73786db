"""DSPy's ``dspy.primitives.base_module``: dspex has one module class (``BaseModule`` is ``Module``); the
saved-file helpers (``get_dependency_versions``, ``logger``) are looked up here when a program saves or loads."""

from ..programs.module import Module, get_dependency_versions, logger

BaseModule = Module

__all__ = ["BaseModule", "get_dependency_versions", "logger"]
